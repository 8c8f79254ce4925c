// A rig for the display samples: the default machine with vfio, type1 and the mdev core,
// mdpy and mbochs loaded without their parent registration (the core's registration is
// not available on this branch yet), mdevs created as the core's create does it (device_add
// on the mdev bus, then the parent's driver attached), and the raw open sequence
// (container, group, SET_CONTAINER, SET_IOMMU, device fd).

using System.Runtime.InteropServices;
using NUnit.Framework;
using Vfio.Core;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Mdev;
using Vfio.Mdev.Samples.Mbochs;
using Vfio.Mdev.Samples.Mdpy;
using Vfio.Platform.Mm;
using Vfio.Platform.Proc;
using Vfio.Sim;

namespace Vfio.Tests.Mdev;

internal sealed class DisplayRig
{
    private int _uuids;

    public DisplayRig(KernelProfile? profile = null, int mdpyCount = Mdpy.DefaultCount, int mbochsMiB = Mbochs.DefaultMBytes)
    {
        Mdpy? mdpy = null;
        Mbochs? mbochs = null;
        Sim = VfioSim.CreateBuilder()
            .UseProfile(profile ?? KernelProfile.Linux6_12)
            .AddMdev()
            .AddModule(sim =>
            {
                mdpy = Mdpy.LoadUnregistered(sim.Machine, mdpyCount);
                mbochs = Mbochs.LoadUnregistered(sim.Machine, mbochsMiB);
            })
            .Build();
        Mdpy = mdpy!;
        Mbochs = mbochs!;
        User = Sim.Spawn("user");
    }

    public VfioSim Sim { get; }

    public Mdpy Mdpy { get; }

    public Mbochs Mbochs { get; }

    public SimProcess User { get; }

    public MdevCore Core => Sim.Mdev!;

    public PhysMem Memory => Sim.Machine.Memory;

    public void Run(Action body) => Runs.AssertPassed(Sim.Run(body));

    /// <summary>What creating an mdev of <paramref name="type"/> does after the core's checks: device_add on the mdev bus, then the parent's driver attached. The probe's errno (the device is deleted again on failure).</summary>
    public int Create(MdevType type, out MdevDevice mdev)
    {
        var uuid = new Guid(++_uuids, 0, 0, [0, 0, 0, 0, 0, 0, 0, 1]);
        mdev = new MdevDevice(Sim.Machine, uuid, type, static _ => { });
        Assert.That(Core.Bus.AddDevice(mdev), Is.Zero);
        int err = Core.Bus.DeviceDriverAttach(type.Parent!.Driver, mdev);
        if (err != 0)
        {
            Core.Bus.RemoveDevice(mdev);
        }

        return err;
    }

    public MdevDevice CreateOk(MdevType type)
    {
        Assert.That(Create(type, out MdevDevice mdev), Is.Zero, ErrorReason.Current);
        return mdev;
    }

    /// <summary>The core's remove: device_del (the driver's remove waits for every fd).</summary>
    public void Remove(MdevDevice mdev) => Core.Bus.RemoveDevice(mdev);

    public (int Container, int Group, int Device) Open(VfioDevice vdev)
    {
        int c = User.Open("/dev/vfio/vfio");
        int g = User.Open(vdev.Group!.DevPath);
        Assert.That(c, Is.GreaterThanOrEqualTo(0));
        Assert.That(g, Is.GreaterThanOrEqualTo(0));
        int cfd = c;
        Assert.That(User.Ioctl(g, VfioIoctl.GroupSetContainer, MemoryMarshal.AsBytes(MemoryMarshal.CreateSpan(ref cfd, 1))), Is.Zero);
        Assert.That(User.Ioctl(c, VfioIoctl.SetIommu, VfioExtension.Type1v2), Is.Zero);
        byte[] name = new byte[vdev.Dev.Name.Length + 1];
        System.Text.Encoding.ASCII.GetBytes(vdev.Dev.Name, name);
        long d = User.Ioctl(g, VfioIoctl.GroupGetDeviceFd, name);
        Assert.That(d, Is.GreaterThanOrEqualTo(0), ErrorReason.Current);
        return (c, g, (int)d);
    }

    public void CloseAll((int Container, int Group, int Device) fds)
    {
        User.Close(fds.Device);
        User.Close(fds.Group);
        User.Close(fds.Container);
    }

    public long Ioctl<T>(int fd, uint cmd, ref T arg)
        where T : unmanaged
        => User.Ioctl(fd, cmd, MemoryMarshal.AsBytes(MemoryMarshal.CreateSpan(ref arg, 1)));

    public VfioRegionInfo RegionInfo(int fd, uint index, out long ret)
    {
        var info = new VfioRegionInfo { Argsz = VfioRegionInfo.MinSz, Index = index };
        ret = Ioctl(fd, VfioIoctl.DeviceGetRegionInfo, ref info);
        return info;
    }

    public long Plane(int fd, VfioGfxPlaneFlags flags, out VfioDeviceGfxPlaneInfo plane, uint planeType = DrmPlaneType.Primary)
    {
        plane = new VfioDeviceGfxPlaneInfo { Argsz = (uint)VfioArg.SizeOf<VfioDeviceGfxPlaneInfo>(), Flags = flags, DrmPlaneType = planeType };
        return Ioctl(fd, VfioIoctl.DeviceQueryGfxPlane, ref plane);
    }

    public ulong Map(int fd, ulong length, long offset, MapFlags flags = MapFlags.MAP_SHARED)
        => (ulong)User.Mmap(0, length, Prot.PROT_READ | Prot.PROT_WRITE, flags, fd, offset);

    public uint ReadU32(ulong addr)
    {
        Span<byte> b = stackalloc byte[4];
        Assert.That(User.CpuRead(addr, b), Is.Zero);
        return BitConverter.ToUInt32(b);
    }

    public void WriteU32(ulong addr, uint v) => Assert.That(User.CpuWrite(addr, BitConverter.GetBytes(v)), Is.Zero);

    public uint PreadU32(int fd, long offset)
    {
        byte[] b = new byte[4];
        Assert.That(User.Pread(fd, b, offset), Is.EqualTo(4), ErrorReason.Current);
        return BitConverter.ToUInt32(b);
    }

    public void PwriteU32(int fd, long offset, uint v) => Assert.That(User.Pwrite(fd, BitConverter.GetBytes(v), offset), Is.EqualTo(4), ErrorReason.Current);

    public void PwriteU16(int fd, long offset, ushort v) => Assert.That(User.Pwrite(fd, BitConverter.GetBytes(v), offset), Is.EqualTo(2), ErrorReason.Current);
}
