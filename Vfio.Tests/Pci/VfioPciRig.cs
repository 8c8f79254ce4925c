// Test rig for Vfio.Pci on the host (Vfio.Sim): the default machine booted with vfio, the
// type1 backend and vfio-pci, and a user process that binds a function to vfio-pci and
// opens it the host's way (sysfs, then /dev/vfio/vfio, /dev/vfio/N and GET_DEVICE_FD),
// with struct-typed ioctl helpers on the raw fds.

using System.Runtime.InteropServices;
using System.Text;
using NUnit.Framework;
using Vfio.Core;
using Vfio.Core.Uapi;
using Vfio.Iommu.Type1;
using Vfio.Kernel;
using Vfio.Pci;
using Vfio.Platform;
using Vfio.Platform.Fs;
using Vfio.Platform.Pci;
using Vfio.Platform.Proc;
using Vfio.Sim;

namespace Vfio.Tests.Pci;

/// <summary>A booted host with vfio, type1 and vfio-pci, and a root process <see cref="P"/>.</summary>
internal sealed class VfioPciRig
{
    public const string Edu = "0000:01:00.0";
    public const string Nic = "0000:05:00.0";

    public VfioPciRig(VfioSim sim)
    {
        Sim = sim;
        P = sim.Spawn("user");
    }

    public VfioSim Sim { get; }

    public SimMachine M => Sim.Machine;

    public VfioCore Vfio => Sim.Vfio;

    public VfioIommuType1 Type1 => Sim.Type1!;

    public VfioPciDriver Driver => Sim.VfioPci!;

    public SimProcess P { get; }

    /// <summary>The host's builder with the tests' kernel settings (<see cref="Runs.Kernel"/>'s budget and watchdog); add modules and build.</summary>
    public static VfioSimBuilder Builder(SchedulerMode mode, ulong seed = 1)
        => VfioSim.CreateBuilder()
            .UseScheduler(mode)
            .UseSeed(seed)
            .ConfigureKernel(k => k with { StepBudget = 200_000, RealWatchdog = TimeSpan.FromSeconds(30) });

    /// <summary>Boots the default machine with vfio-pci (and <paramref name="options"/>), runs <paramref name="body"/> as its main task and asserts it completed.</summary>
    public static void Run(SchedulerMode mode, Action<VfioPciRig> body, ulong seed = 1, VfioPciOptions? options = null)
    {
        var rig = new VfioPciRig(Builder(mode, seed).AddVfioPci(options).Build());
        Runs.AssertPassed(rig.Sim.Run(() => body(rig)));
    }

    public PciDevice Dev(string bdf) => M.Pci.Find(bdf) ?? throw new AssertionException($"no {bdf}");

    public VfioPciCoreDevice Vdev(string bdf) => Dev(bdf).DriverData as VfioPciCoreDevice ?? throw new AssertionException($"{bdf} is not bound to vfio-pci");

    /// <summary>Binds <paramref name="bdf"/> to vfio-pci (from whatever driver it has).</summary>
    public void BindToVfio(string bdf) => Sim.Bind(bdf, VfioPciDriver.DriverName);

    public int GroupId(string bdf) => Dev(bdf).IommuGroup!.Id;

    /// <summary>Container, group in it, TYPE1v2; returns (container fd, group fd).</summary>
    public (int Container, int Group) OpenContainerAndGroup(string bdf)
    {
        int container = P.Open("/dev/vfio/vfio");
        Assert.That(container, Is.GreaterThanOrEqualTo(0));
        int group = P.Open($"/dev/vfio/{GroupId(bdf)}");
        Assert.That(group, Is.GreaterThanOrEqualTo(0), ErrorReason.Current);
        int cfd = container;
        Assert.That(Ioctl(group, VfioIoctl.GroupSetContainer, ref cfd), Is.Zero, ErrorReason.Current);
        Assert.That(P.Ioctl(container, VfioIoctl.SetIommu, VfioExtension.Type1v2), Is.Zero, ErrorReason.Current);
        return (container, group);
    }

    public long GetDeviceFd(int group, string name)
    {
        byte[] s = Encoding.ASCII.GetBytes(name + "\0");
        return P.Ioctl(group, VfioIoctl.GroupGetDeviceFd, s);
    }

    /// <summary>Binds <paramref name="bdf"/> and opens it the host's way; returns (container, group, device) fds.</summary>
    public (int Container, int Group, int Device) Open(string bdf)
    {
        BindToVfio(bdf);
        VfioSession s = Sim.Open(P, bdf);
        return (s.Container.Fd, s.Group.Fd, s.Device.Fd);
    }

    public void CloseAll((int Container, int Group, int Device) fds)
    {
        Assert.That(P.Close(fds.Device), Is.Zero);
        Assert.That(P.Close(fds.Group), Is.Zero);
        Assert.That(P.Close(fds.Container), Is.Zero);
    }

    public long Ioctl<T>(int fd, uint cmd, ref T value)
        where T : unmanaged
        => P.Ioctl(fd, cmd, MemoryMarshal.AsBytes(MemoryMarshal.CreateSpan(ref value, 1)));

    public long RegionInfo(int fd, uint index, out VfioRegionInfo info, uint argsz = 32)
    {
        info = new VfioRegionInfo { Argsz = argsz, Index = index };
        return Ioctl(fd, VfioIoctl.DeviceGetRegionInfo, ref info);
    }

    public long IrqInfo(int fd, uint index, out VfioIrqInfo info)
    {
        info = new VfioIrqInfo { Argsz = 16, Index = index };
        return Ioctl(fd, VfioIoctl.DeviceGetIrqInfo, ref info);
    }

    /// <summary>SET_IRQS with an s32 eventfd payload.</summary>
    public long SetIrqEventfd(int fd, uint index, int efd, uint count = 1)
    {
        byte[] b = new byte[24];
        WriteHeader(b, 24, VfioIrqSetFlags.DataEventfd | VfioIrqSetFlags.ActionTrigger, index, 0, count);
        BitConverter.TryWriteBytes(b.AsSpan(20), efd);
        return P.Ioctl(fd, VfioIoctl.DeviceSetIrqs, b);
    }

    public long SetIrqs(int fd, uint argsz, VfioIrqSetFlags flags, uint index, uint start, uint count, ReadOnlySpan<byte> data = default)
    {
        byte[] b = new byte[Math.Max(20 + data.Length, 20)];
        WriteHeader(b, argsz, flags, index, start, count);
        data.CopyTo(b.AsSpan(20));
        return P.Ioctl(fd, VfioIoctl.DeviceSetIrqs, b);
    }

    private static void WriteHeader(byte[] b, uint argsz, VfioIrqSetFlags flags, uint index, uint start, uint count)
    {
        BitConverter.TryWriteBytes(b.AsSpan(0), argsz);
        BitConverter.TryWriteBytes(b.AsSpan(4), (uint)flags);
        BitConverter.TryWriteBytes(b.AsSpan(8), index);
        BitConverter.TryWriteBytes(b.AsSpan(12), start);
        BitConverter.TryWriteBytes(b.AsSpan(16), count);
    }

    public uint Read32(int fd, int region, long offset)
    {
        byte[] b = new byte[4];
        long n = P.Pread(fd, b, VfioPciIndex.IndexToOffset(region) + offset);
        Assert.That(n, Is.EqualTo(4), ErrorReason.Current);
        return BitConverter.ToUInt32(b);
    }

    public long Write32(int fd, int region, long offset, uint value)
        => P.Pwrite(fd, BitConverter.GetBytes(value), VfioPciIndex.IndexToOffset(region) + offset);

    public EventFdContext EventFd(int efd)
    {
        SimFile f = P.Files.Get(efd)!;
        try
        {
            return EventFdContext.FromFile(f)!;
        }
        finally
        {
            f.Put();
        }
    }

    /// <summary>The eventfd's reference count without the one this peek takes.</summary>
    public int EventFdRefs(int efd)
    {
        EventFdContext ctx = EventFd(efd);
        int refs = ctx.ReferenceCount;
        ctx.Put();
        return refs - 1;
    }

    public ulong EventFdCount(int efd)
    {
        EventFdContext ctx = EventFd(efd);
        ulong n = ctx.Count;
        ctx.Put();
        return n;
    }
}
