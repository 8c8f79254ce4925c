// Tests Vfio.Sim/VfioSim*.cs and VfioSimBuilder.cs: the builder boots what it was told
// (profile, scheduler, seed, machine, modules, design), and each host call goes through
// sysfs and the syscalls as user space would — with the kernel's errno and reason when
// the kernel refuses, and nothing left behind.

using NUnit.Framework;
using Vfio.Core;
using Vfio.Core.Client;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Machine;
using Vfio.Platform.Mm;
using Vfio.Platform.Proc;
using Vfio.Sim;
using Vfio.Sim.Drivers;

namespace Vfio.Tests.Sim;

public sealed class VfioSimTests
{
    private const string Edu = "0000:01:00.0";
    private const string PairF1 = "0000:02:00.1";

    [Test]
    public void CreateDefault_BootsTheDefaultMachine_WithVfioType1AndVfioPci_OnAControlledLinux612Kernel()
    {
        VfioSim sim = VfioSim.CreateDefault(seed: 9);
        Assert.That(sim.Kernel.Mode, Is.EqualTo(SchedulerMode.Controlled));
        Assert.That(sim.Kernel.Seed, Is.EqualTo(9UL));
        Assert.That(sim.Profile, Is.EqualTo(KernelProfile.Linux6_12));
        Assert.That(sim.VfioOrNull, Is.Not.Null);
        Assert.That(sim.Type1, Is.Not.Null);
        Assert.That(sim.VfioPci, Is.Not.Null);
        Assert.That(sim.Kvm, Is.Null);
        Assert.That(sim.Machine.Vfs.Exists("/dev/vfio/vfio"), Is.True);
        Assert.That(sim.DriverOf(Edu), Is.EqualTo("edu"));
        Assert.That(sim.GroupOf(Edu), Is.EqualTo(2));
    }

    [Test]
    public void AfterARunThatFailed_TheHostCanStillLookAtTheMachine()
    {
        VfioSim sim = VfioSim.CreateDefault();
        RunResult run = sim.Run(() =>
        {
            sim.Spawn("user");
            KTask other = sim.Kernel.Spawn("other", () => KTask.Msleep(1000));
            throw new InvalidOperationException("the body fails while another task still sleeps");
        });

        Assert.That(run.Outcome, Is.EqualTo(RunOutcome.Failed), run.Describe());
        Assert.That(sim.CheckInvariants(), Is.Empty, "the checkers take kernel locks from the host thread");
        Assert.That(sim.SysfsRead("/sys/bus/pci/devices/0000:01:00.0/vendor"), Is.EqualTo("0x1234"));
    }

    [Test]
    public void TheBuilder_LoadsOnlyWhatItWasTold_AndItsDependencies()
    {
        VfioSim bare = VfioSim.CreateBuilder().Build();
        Assert.That(bare.VfioOrNull, Is.Null);
        Assert.That(() => bare.Vfio, Throws.InvalidOperationException.With.Message.Contains("AddVfio()"));

        VfioSim type1 = VfioSim.CreateBuilder().AddType1().AddKvm().UseProfile(KernelProfile.Linux6_1).UseScheduler(SchedulerMode.Real).Build();
        Assert.That(type1.VfioOrNull, Is.Not.Null, "type1 needs vfio, which is loaded first");
        Assert.That(type1.VfioPci, Is.Null);
        Assert.That(type1.Kvm, Is.Not.Null);
        Assert.That(type1.Profile, Is.EqualTo(KernelProfile.Linux6_1));
        Assert.That(type1.Kernel.Mode, Is.EqualTo(SchedulerMode.Real));
    }

    [Test]
    public void UseDesign_ReachesTheVfioCore()
    {
        VfioSim sim = VfioSim.CreateBuilder().UseDesign(d => d with { Unbind = VfioUnbindPolicy.SilentBlock }).AddVfioPci().Build();
        Assert.That(sim.Vfio.Design.Unbind, Is.EqualTo(VfioUnbindPolicy.SilentBlock));
        Assert.That(sim.Vfio.Design.GroupNodes, Is.EqualTo(VfioDesign.Default.GroupNodes));
    }

    [Test]
    public void AMachineDescription_AndAFactory_AreBooted()
    {
        VfioSim described = VfioSim.CreateBuilder().UseMachine(MachineDescriptionReader.Default with { Iommu = null }).Build();
        Assert.That(described.Machine.Iommu, Is.Null);

        VfioSim coded = VfioSim.CreateBuilder().UseMachine(k => new Vfio.Platform.SimMachine(k)).Build();
        Assert.That(coded.Machine.Pci.Devices, Is.Empty);

        Assert.That(() => VfioSim.CreateBuilder().UseMachine(_ => new Vfio.Platform.SimMachine()).Build(),
            Throws.InvalidOperationException.With.Message.Contains("on the kernel it is given"));
        Assert.That(() => VfioSim.CreateBuilder().UseMachineFile("/nonexistent/machine.json").Build(), Throws.InstanceOf<IOException>());
    }

    [Test]
    public void Bind_GoesThroughSysfs_AndUnbindAndReprobe_GiveTheDeviceBack()
    {
        VfioSim sim = VfioSim.CreateDefault();
        sim.Bind(Edu);
        Assert.That(sim.DriverOf(Edu), Is.EqualTo("vfio-pci"));
        Assert.That(sim.SysfsRead($"/sys/bus/pci/devices/{Edu}/driver_override"), Is.EqualTo("vfio-pci"));
        Assert.That(sim.Machine.Vfs.Exists("/dev/vfio/2"), Is.True);
        sim.Bind(Edu);
        Assert.That(sim.DriverOf(Edu), Is.EqualTo("vfio-pci"), "binding again where it is bound does nothing");

        Assert.That(sim.Unbind(Edu), Is.EqualTo("vfio-pci"));
        Assert.That(sim.DriverOf(Edu), Is.Null);
        Assert.That(sim.SysfsRead($"/sys/bus/pci/devices/{Edu}/driver_override"), Is.EqualTo("(null)"));
        Assert.That(sim.Reprobe(Edu), Is.EqualTo("edu"));
    }

    [Test]
    public void ABindTheKernelRefuses_ThrowsWithTheErrnoAndTheReason_AndAnUnknownFunctionIsAnArgumentError()
    {
        VfioSim sim = VfioSim.CreateDefault();
        var e = Assert.Throws<VfioException>(() => sim.Bind(Edu, "no-such-driver"))!;
        Assert.That(e.Errno, Is.EqualTo(Errno.ENODEV));
        Assert.That(e.Message, Does.Contain("no-such-driver did not take 0000:01:00.0"));
        Assert.That(() => sim.Bind("0000:1f:00.0"), Throws.ArgumentException.With.Message.Contains("has no PCI function 0000:1f:00.0"));
        Assert.That(() => sim.SysfsWrite("/sys/bus/pci/drivers/vfio-pci/bind", "0000:1f:00.0"), Throws.InstanceOf<VfioException>().With.Property(nameof(VfioException.Errno)).EqualTo(Errno.ENODEV));
    }

    [Test]
    public void Open_TakesAProcessToAnOpenDevice_AndDisposeClosesEverything()
    {
        VfioSim sim = VfioSim.CreateDefault();
        sim.Bind(Edu);
        SimProcess p = sim.Spawn("qemu");
        int fdsBefore = p.Files.Open.Count;
        using (VfioSession s = sim.Open(p, Edu))
        {
            Assert.That(s.GroupId, Is.EqualTo(2));
            Assert.That(s.Group.GetStatus(), Is.EqualTo(VfioGroupFlags.Viable | VfioGroupFlags.ContainerSet));
            Assert.That(s.Device.GetInfo().Info.NumRegions, Is.GreaterThan(0));
            Assert.That(p.Files.Open.Count, Is.EqualTo(fdsBefore + 3));
        }

        Assert.That(p.Files.Open.Count, Is.EqualTo(fdsBefore));
        Assert.That(sim.Unbind(Edu), Is.EqualTo("vfio-pci"), "nothing holds the device: the unbind does not wait");
    }

    [Test]
    public void AnOpenTheKernelRefuses_Throws_AndLeavesNoFdBehind()
    {
        VfioSim sim = VfioSim.CreateDefault();
        sim.Bind(PairF1);                        // group 4 also holds 0000:02:00.0, bound to igb: not viable
        SimProcess p = sim.Spawn("qemu");
        int fdsBefore = p.Files.Open.Count;
        var e = Assert.Throws<VfioException>(() => sim.Open(p, PairF1))!;
        Assert.That(e.Errno, Is.EqualTo(Errno.EPERM));
        Assert.That(e.Ioctl, Is.EqualTo("VFIO_GROUP_SET_CONTAINER"));
        Assert.That(p.Files.Open.Count, Is.EqualTo(fdsBefore));
    }

    [Test]
    public void Spawn_GivesTheCredentialsAndLimitsAsked()
    {
        VfioSim sim = VfioSim.CreateDefault();
        SimProcess root = sim.Spawn("root");
        SimProcess user = sim.Spawn("student", Credentials.User, new ResourceLimits { MemlockBytes = 64 << 10 });
        Assert.That(root.Credentials, Is.EqualTo(Credentials.Root));
        Assert.That(user.Credentials.Uid, Is.EqualTo(1000));
        Assert.That(user.Limits.MemlockBytes, Is.EqualTo(64 << 10));
        Assert.That(user.Comm, Is.EqualTo("student"));
    }

    [Test]
    public void Allocate_GivesUserMemory_ThatReadsBackWhatWasWritten_AndRefusesOutOfRangeAccess()
    {
        VfioSim sim = VfioSim.CreateDefault();
        SimProcess p = sim.Spawn("user");
        using UserBuffer b = VfioSim.Allocate(p, 3 * 4096);
        b.Fill(0x5a);
        b.Write(4096, "edu"u8);
        Assert.That(b.Read(4095, 5), Is.EqualTo(new byte[] { 0x5a, (byte)'e', (byte)'d', (byte)'u', 0x5a }));
        Assert.That(() => b.Read(3 * 4096 - 2, 4), Throws.InstanceOf<ArgumentOutOfRangeException>());
        Assert.That(p.Mm.FindVma(b.Address), Is.Not.Null);
        b.Dispose();
        Assert.That(p.Mm.FindVma(b.Address), Is.Null, "Dispose unmaps");
        Assert.That(() => VfioSim.Allocate(p, 0), Throws.InstanceOf<VfioException>().With.Property(nameof(VfioException.Errno)).EqualTo(Errno.EINVAL));
    }

    [Test]
    public void CheckInvariants_IsEmptyOnAHealthySystem_AndCoversEveryType1Container()
    {
        VfioSim sim = VfioSim.CreateDefault();
        sim.Bind(Edu);
        SimProcess p = sim.Spawn("qemu");
        using VfioSession s = sim.Open(p, Edu);
        using UserBuffer b = VfioSim.Allocate(p, 1 << 20, MapFlags.MAP_POPULATE);
        s.Container.MapDma(b.Address, 0, b.Size);
        Assert.That(sim.PinnedPages, Is.EqualTo(256));
        Assert.That(sim.CheckInvariants(), Is.Empty);
        s.Container.UnmapDma(0, b.Size);
        Assert.That(sim.PinnedPages, Is.Zero);
    }

    [Test]
    public void AddPciDriver_RegistersItAtBoot_AndTheSampleDriverBindsLikeAnyVfioDriver()
    {
        VfioSim sim = VfioSim.CreateBuilder().AddType1().AddPciDriver(_ => new SampleVfioPciDriver()).Build();
        sim.Bind(Edu, SampleVfioPciDriver.DefaultName);
        var driver = (SampleVfioPciDriver)sim.Device(Edu).Driver!;
        Assert.That(driver.DeviceOf(sim.Device(Edu)).Group!.Id, Is.EqualTo(2));
        SimProcess p = sim.Spawn("user");
        using (VfioSession s = sim.Open(p, Edu))
        {
            s.Device.Reset();
            Assert.That(driver.Ops.Opens, Is.EqualTo(1));
        }

        Assert.That(driver.Ops.Closes, Is.EqualTo(1));
        sim.Unbind(Edu);
        Assert.That(driver.Ops.Releases, Is.EqualTo(1));
        Assert.That(driver.Devices, Is.Empty);
    }

    [Test]
    public void Run_RunsTheBodyAsAKernelTask_AndKeepsItsResult()
    {
        VfioSim sim = VfioSim.CreateDefault();
        string? comm = null;
        RunResult r = sim.Run(() => comm = sim.Kernel.CurrentTask.Comm);
        Assert.That(r.Passed, Is.True, r.Describe());
        Assert.That(comm, Is.EqualTo("main"));
        Assert.That(sim.LastRun, Is.SameAs(r));
        Assert.That(sim.ToString(), Does.Contain("linux-6.12, Controlled scheduler, seed 1"));
    }
}
