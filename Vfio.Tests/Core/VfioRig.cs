// A test rig for the vfio core on the host (Vfio.Sim): the default machine with vfio
// loaded, the sample vfio bus driver registered as "vfio-test" standing in for vfio-pci, a
// Moq IOMMU backend standing in for type1, and raw-syscall helpers for the group and
// container ioctls. Boot, bind, unbind, spawn and open are the host's.

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
using Vfio.Sim;
using Vfio.Sim.Drivers;

namespace Vfio.Tests.Core;

/// <summary>The default machine with vfio, the test driver and a Moq backend.</summary>
internal sealed class VfioRig
{
    public const string Edu = "0000:01:00.0";
    public const string PairF0 = "0000:02:00.0";
    public const string PairF1 = "0000:02:00.1";
    public const string Nic = "0000:05:00.0";

    public VfioRig(
        SchedulerMode mode = SchedulerMode.Real,
        ulong seed = 1,
        VfioOptions? options = null,
        KernelProfile? profile = null,
        bool backend = true,
        StrategySpec? strategy = null,
        MachineDescription? machine = null,
        Func<VfioSimBuilder, VfioSimBuilder>? modules = null)
    {
        Backend = new Mock<IVfioIommuDriver>();
        Backend.SetupGet(b => b.Name).Returns("mock-type1");
        Backend.Setup(b => b.Ioctl(It.IsAny<object?>(), VfioIoctl.CheckExtension, It.Is<ulong>(a => a == VfioExtension.Type1 || a == VfioExtension.Type1v2))).Returns(1);
        object? data = new();
        Backend.Setup(b => b.Open(It.Is<ulong>(a => a == VfioExtension.Type1 || a == VfioExtension.Type1v2), out data)).Returns(0);
        SampleVfioPciDriver? driver = null;
        VfioSimBuilder builder = VfioSim.CreateBuilder()
            .UseScheduler(mode)
            .UseSeed(seed)
            .UseStrategy(strategy ?? StrategySpec.Random)
            .UseProfile(profile ?? KernelProfile.Linux6_12)
            .ConfigureKernel(k => k with { StepBudget = 2_000_000, RealWatchdog = TimeSpan.FromSeconds(30) })
            .AddVfio(options);
        if (machine is not null)
        {
            builder.UseMachine(machine);
        }

        builder = modules?.Invoke(builder) ?? builder;
        builder.AddPciDriver(_ => driver = new SampleVfioPciDriver("vfio-test"));
        if (backend)
        {
            builder.AddModule(sim => Assert.That(sim.Vfio.RegisterIommuDriver(Backend.Object), Is.Zero));
        }

        Sim = builder.Build();
        Driver = driver!;
        User = Sim.Spawn("user");
    }

    /// <summary>The booted host: kernel, machine, vfio and whatever <c>modules</c> added.</summary>
    public VfioSim Sim { get; }

    public SimKernel Kernel => Sim.Kernel;

    public SimMachine Machine => Sim.Machine;

    public VfioCore Vfio => Sim.Vfio;

    public SampleVfioPciDriver Driver { get; }

    public Mock<IVfioIommuDriver> Backend { get; }

    public SimProcess User { get; }

    /// <summary>Runs <paramref name="body"/> as the main task and asserts the run completed (no deadlock, warning or lockdep report).</summary>
    public void Run(Action body) => Runs.AssertPassed(Sim.Run(body));

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

    /// <summary>Binds <paramref name="name"/> to vfio-test (from whatever driver it has).</summary>
    public void Bind(string name) => Sim.Bind(name, Driver.Name);

    /// <summary>Unbinds <paramref name="name"/> (blocks while the device is in use, as the kernel does); the driver it had.</summary>
    public string? Unbind(string name) => Sim.Unbind(name);

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

    /// <summary>Container + group + SET_CONTAINER + SET_IOMMU + device fd for <paramref name="name"/> (the host's open sequence), as raw fds.</summary>
    public (int Container, int Group, int Device) OpenAll(string name, uint iommuType = VfioExtension.Type1v2)
    {
        VfioSession s = Sim.Open(User, name, iommuType);
        return (s.Container.Fd, s.Group.Fd, s.Device.Fd);
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
