// A rig for the display samples: the default machine with vfio, type1, the mdev core, mdpy
// and mbochs loaded by the builder; mdevs created and removed by writing the sysfs create
// and remove files as a user would, and the raw open sequence (container, group,
// SET_CONTAINER, SET_IOMMU, device fd).

using System.Runtime.InteropServices;
using NUnit.Framework;
using Vfio.Core;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Mdev;
using Vfio.Mdev.Samples.Mbochs;
using Vfio.Mdev.Samples.Mdpy;
using Vfio.Platform.Fs;
using Vfio.Platform.Mm;
using Vfio.Platform.Proc;
using Vfio.Sim;

namespace Vfio.Tests.Mdev;

internal sealed class DisplayRig
{
    private int _uuids;

    public DisplayRig(KernelProfile? profile = null, int mdpyCount = Mdpy.DefaultCount, int mbochsMiB = Mbochs.DefaultMBytes)
    {
        Sim = VfioSim.CreateBuilder()
            .UseProfile(profile ?? KernelProfile.Linux6_12)
            .AddMdpy(mdpyCount)
            .AddMbochs(mbochsMiB)
            .Build();
        Mdpy = Sim.Mdpy!;
        Mbochs = Sim.Mbochs!;
        User = Sim.Spawn("user");
    }

    public VfioSim Sim { get; }

    public Mdpy Mdpy { get; }

    public Mbochs Mbochs { get; }

    public SimProcess User { get; }

    public MdevCore Core => Sim.Mdev!;

    public PhysMem Memory => Sim.Machine.Memory;

    public void Run(Action body) => Runs.AssertPassed(Sim.Run(body));

    /// <summary><c>echo &lt;uuid&gt; &gt; /sys/class/mdev_bus/&lt;parent&gt;/mdev_supported_types/&lt;type&gt;/create</c>: 0 or the write's -errno.</summary>
    public int Create(MdevType type, out MdevDevice mdev)
    {
        var uuid = new Guid(++_uuids, 0, 0, [0, 0, 0, 0, 0, 0, 0, 1]);
        long r = SysfsWrite($"/sys/class/mdev_bus/{type.Parent!.Dev.Name}/mdev_supported_types/{type.DirName}/create", uuid.ToString("D"));
        mdev = null!;
        if (r < 0)
        {
            return (int)r;
        }

        foreach (MdevDevice d in Core.Devices)
        {
            if (d.Uuid == uuid)
            {
                mdev = d;
            }
        }

        Assert.That(mdev, Is.Not.Null);
        return 0;
    }

    /// <summary>The type's <c>available_instances</c> attribute.</summary>
    public int AvailableInstances(MdevType type)
    {
        int fd = User.Open($"/sys/class/mdev_bus/{type.Parent!.Dev.Name}/mdev_supported_types/{type.DirName}/available_instances", OpenFlags.O_RDONLY);
        Assert.That(fd, Is.GreaterThanOrEqualTo(0));
        byte[] b = new byte[32];
        long n = User.Read(fd, b);
        User.Close(fd);
        return int.Parse(System.Text.Encoding.ASCII.GetString(b, 0, (int)n).Trim(), System.Globalization.CultureInfo.InvariantCulture);
    }

    private long SysfsWrite(string path, string value)
    {
        int fd = User.Open(path, OpenFlags.O_WRONLY);
        if (fd < 0)
        {
            return fd;
        }

        long r = User.Write(fd, System.Text.Encoding.ASCII.GetBytes(value));
        User.Close(fd);
        return r;
    }

    public MdevDevice CreateOk(MdevType type)
    {
        Assert.That(Create(type, out MdevDevice mdev), Is.Zero, ErrorReason.Current);
        return mdev;
    }

    /// <summary><c>echo 1 &gt; /sys/bus/mdev/devices/&lt;uuid&gt;/remove</c> (the driver's remove waits for every fd).</summary>
    public void Remove(MdevDevice mdev) => Assert.That(SysfsWrite($"/sys/bus/mdev/devices/{mdev.Name}/remove", "1"), Is.EqualTo(1), ErrorReason.Current);

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
