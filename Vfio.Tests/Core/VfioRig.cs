// A test rig for the vfio core: the default machine with vfio loaded, a minimal vfio bus
// driver ("vfio-test") standing in for vfio-pci, a Moq IOMMU backend standing in for
// type1, and raw-syscall helpers for the group and container ioctls.

using System.Runtime.InteropServices;
using Moq;
using NUnit.Framework;
using Vfio.Core;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform;
using Vfio.Platform.Iommu;
using Vfio.Platform.Machine;
using Vfio.Platform.Pci;
using Vfio.Platform.Proc;

namespace Vfio.Tests.Core;

/// <summary>The vfio device ops of the test driver: counts calls and lets a test hook request().</summary>
internal sealed class TestVfioOps : VfioDeviceOps
{
    public override string Name => "vfio-test";

    public int Opens;
    public int Closes;
    public int Releases;
    public readonly System.Collections.Concurrent.ConcurrentQueue<uint> Requests = new();
    public Action<VfioDevice, uint>? OnRequest { get; set; }
    public Func<VfioDevice, int>? OnOpen;

    public override int OpenDevice(VfioDevice device)
    {
        int err = OnOpen?.Invoke(device) ?? 0;
        if (err == 0)
        {
            Interlocked.Increment(ref Opens);
        }

        return err;
    }

    public override void CloseDevice(VfioDevice device) => Interlocked.Increment(ref Closes);

    public override void Release(VfioDevice device) => Interlocked.Increment(ref Releases);

    public override void Request(VfioDevice device, uint count)
    {
        Requests.Enqueue(count);

        OnRequest?.Invoke(device, count);
    }

    public override long Ioctl(VfioDevice device, uint cmd, ulong arg) => cmd == VfioIoctl.DeviceReset ? 0 : Errno.ENOTTY.Negative();
}

/// <summary>A vfio bus driver for core tests: binds only by driver_override and registers one vfio_device per PCI device.</summary>
internal sealed class TestVfioDriver : PciDriver
{
    public readonly System.Collections.Concurrent.ConcurrentDictionary<PciDevice, VfioDevice> Devices = new();
    public TestVfioOps Ops { get; } = new();
    public bool Emulated { get; set; }

    /// <summary>Ops for devices probed from now on instead of <see cref="Ops"/> (e.g. an emulated-IOMMU device with dma_unmap).</summary>
    public IVfioDeviceOps? CustomOps { get; set; }

    public TestVfioDriver()
        : base("vfio-test")
    {
    }

    public override bool DriverManagedDma => true;

    public override int Probe(PciDevice dev, PciDeviceId id)
    {
        VfioDevice? vdev = VfioDevice.Alloc(dev, CustomOps ?? Ops, () => new TestVfioDevice(), out int err);
        if (vdev is null)
        {
            return err;
        }

        err = Emulated ? vdev.RegisterEmulatedIommuDev() : vdev.RegisterGroupDev();
        if (err != 0)
        {
            vdev.PutDevice();
            return err;
        }

        Devices[dev] = vdev;

        return 0;
    }

    public override void Remove(PciDevice dev)
    {
        VfioDevice vdev = Devices[dev];
        vdev.UnregisterGroupDev();
        Devices.TryRemove(dev, out _);

        vdev.PutDevice();
    }

    internal sealed class TestVfioDevice : VfioDevice
    {
    }
}

/// <summary>The default machine with vfio, the test driver and a Moq backend.</summary>
internal sealed class VfioRig
{
    public const string Edu = "0000:01:00.0";
    public const string PairF0 = "0000:02:00.0";
    public const string PairF1 = "0000:02:00.1";
    public const string Nic = "0000:05:00.0";

    public VfioRig(SchedulerMode mode = SchedulerMode.Real, ulong seed = 1, VfioOptions? options = null, KernelProfile? profile = null, bool backend = true, StrategySpec? strategy = null, MachineDescription? machine = null)
    {
        Kernel = new SimKernel(new KernelConfig
        {
            Mode = mode,
            Seed = seed,
            Strategy = strategy ?? StrategySpec.Random,
            StepBudget = 2_000_000,
            RealWatchdog = TimeSpan.FromSeconds(30),
            Profile = profile ?? KernelProfile.Linux6_12,
        });
        Machine = machine is null ? MachineBuilder.Default(Kernel) : MachineBuilder.Build(machine, Kernel);
        Vfio = VfioCore.Load(Machine, options);
        Driver = new TestVfioDriver();
        Assert.That(Machine.Pci.RegisterDriver(Driver), Is.Zero);
        Backend = new Mock<IVfioIommuDriver>();
        Backend.SetupGet(b => b.Name).Returns("mock-type1");
        Backend.Setup(b => b.Ioctl(It.IsAny<object?>(), VfioIoctl.CheckExtension, It.Is<ulong>(a => a == VfioExtension.Type1 || a == VfioExtension.Type1v2))).Returns(1);
        object? data = new();
        Backend.Setup(b => b.Open(It.Is<ulong>(a => a == VfioExtension.Type1 || a == VfioExtension.Type1v2), out data)).Returns(0);
        if (backend)
        {
            Assert.That(Vfio.RegisterIommuDriver(Backend.Object), Is.Zero);
        }

        User = Machine.CreateProcess("user", Credentials.Root);
    }

    public SimKernel Kernel { get; }

    public SimMachine Machine { get; }

    public VfioCore Vfio { get; }

    public TestVfioDriver Driver { get; }

    public Mock<IVfioIommuDriver> Backend { get; }

    public SimProcess User { get; }

    /// <summary>Runs <paramref name="body"/> as the main task and asserts the run completed (no deadlock, warning or lockdep report).</summary>
    public void Run(Action body) => Runs.AssertPassed(Kernel.Run("main", body));

    public PciDevice Dev(string name) => Machine.Pci.Find(name) ?? throw new AssertionException($"no device {name}");

    public int GroupId(string name) => Dev(name).IommuGroup!.Id;

    public VfioDevice VDev(string name) => Driver.Devices[Dev(name)];

    /// <summary>Sleeps on the virtual clock (so timers and other tasks run) until <paramref name="condition"/> holds.</summary>
    public static void WaitUntil(Func<bool> condition)
    {
        while (!condition())
        {
            KTask.Msleep(100);
        }
    }

    public VfioGroup Group(string name) => VDev(name).Group!;

    /// <summary>Unbinds <paramref name="name"/> from its driver and binds it to vfio-test.</summary>
    public void Bind(string name)
    {
        PciDevice d = Dev(name);
        if (d.Driver is { } drv)
        {
            Assert.That(Machine.Sysfs.Write($"/sys/bus/pci/drivers/{drv.Name}/unbind", name), Is.GreaterThan(0), $"unbind {name} from {drv.Name}");
        }

        Assert.That(Machine.Sysfs.Write($"/sys/bus/pci/devices/{name}/driver_override", "vfio-test"), Is.GreaterThan(0));
        Assert.That(Machine.Sysfs.Write("/sys/bus/pci/drivers_probe", name), Is.GreaterThan(0));
        Assert.That(d.Driver?.Name, Is.EqualTo("vfio-test"), $"{name} bound to vfio-test");
    }

    /// <summary>Unbinds from vfio-test (blocks while the device is in use, as the kernel does).</summary>
    public long Unbind(string name) => Machine.Sysfs.Write("/sys/bus/pci/drivers/vfio-test/unbind", name);

    public string GroupPath(string name) => "/dev/vfio/" + VfioCore.Dec(GroupId(name));

    // ---- Raw syscalls.

    public int OpenContainer() => User.Open("/dev/vfio/vfio");

    public int OpenGroup(string name) => User.Open(GroupPath(name));

    public long GetStatus(int groupFd, out VfioGroupFlags flags, uint argsz = 8)
    {
        var st = new VfioGroupStatus { Argsz = argsz };
        long r = User.Ioctl(groupFd, VfioIoctl.GroupGetStatus, MemoryMarshal.AsBytes(MemoryMarshal.CreateSpan(ref st, 1)));
        flags = st.Flags;
        return r;
    }

    public long SetContainer(int groupFd, int containerFd)
    {
        int fd = containerFd;
        return User.Ioctl(groupFd, VfioIoctl.GroupSetContainer, MemoryMarshal.AsBytes(MemoryMarshal.CreateSpan(ref fd, 1)));
    }

    public long UnsetContainer(int groupFd) => User.Ioctl(groupFd, VfioIoctl.GroupUnsetContainer);

    public long SetIommu(int containerFd, uint type = VfioExtension.Type1v2) => User.Ioctl(containerFd, VfioIoctl.SetIommu, type);

    public long GetDeviceFd(int groupFd, string name)
    {
        byte[] s = new byte[name.Length + 1];
        System.Text.Encoding.ASCII.GetBytes(name, s);
        return User.Ioctl(groupFd, VfioIoctl.GroupGetDeviceFd, s);
    }

    /// <summary>Container + group + SET_CONTAINER + SET_IOMMU + device fd for <paramref name="name"/>.</summary>
    public (int Container, int Group, int Device) OpenAll(string name)
    {
        int c = OpenContainer();
        int g = OpenGroup(name);
        Assert.That(c, Is.GreaterThanOrEqualTo(0));
        Assert.That(g, Is.GreaterThanOrEqualTo(0));
        Assert.That(SetContainer(g, c), Is.Zero, ErrorReason.Current);
        Assert.That(SetIommu(c), Is.Zero, ErrorReason.Current);
        long d = GetDeviceFd(g, name);
        Assert.That(d, Is.GreaterThanOrEqualTo(0), ErrorReason.Current);
        return (c, g, (int)d);
    }

    /// <summary>The refcounts a leak would show in.</summary>
    public string Snapshot(string name)
    {
        VfioDevice v = VDev(name);
        VfioGroup g = v.Group!;
        IommuGroup ig = Dev(name).IommuGroup!;
        return $"reg={v.RegistrationCount} dev={v.ReferenceCount} files={v.OpenFileCount} open={v.OpenCountUnlocked} " +
               $"grp={g.ReferenceCount} users={g.ContainerUsersSnapshot} iommu_ref={ig.ReferenceCount} owner={(ig.Owner is null ? "none" : "vfio")} fds={User.Files.Open.Count}";
    }
}
