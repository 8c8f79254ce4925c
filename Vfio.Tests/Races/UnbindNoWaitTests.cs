// The no-wait unbind design (VfioDesign.Unbind = NoWait) and its scenario unbind-nowait:
// with the kernel's wait the scenario holds on every seed, controlled and real threads, and
// leaks nothing; without it every seed ends in a KASAN use-after-free of the
// vfio_pci_core_device that RaceFinding names UseAfterFree. Sequentially: the no-wait unbind
// returns at once with the device fd still open, and the fd's next ioctl is the BUG.

using NUnit.Framework;
using Vfio.Core;
using Vfio.Kernel;
using Vfio.Pci;
using Vfio.Platform.Proc;
using Vfio.Sim;
using Vfio.Sim.Races;
using Vfio.Sim.Scenarios;

namespace Vfio.Tests.Races;

public sealed class UnbindNoWaitTests
{
    private const string Edu = "0000:01:00.0";

    private static readonly ulong[] s_seeds = [1, 2, 3, 5, 8, 13, 21, 34];

    private static Scenario Scenario => ScenarioCatalog.Default.Get("unbind-nowait");

    private static ScenarioResult Run(SchedulerMode mode, ulong seed, bool fix, KernelProfile? profile = null)
        => Scenario.Run(new ScenarioOptions
        {
            Seed = seed,
            Mode = mode,
            Strategy = StrategySpec.Random,
            Profile = profile ?? KernelProfile.Linux6_12,
            Trace = false,
            Fix = fix,
        });

    [Test]
    public void TheCatalogueDescribesTheDesign_WithItsFixSwitchAndDetector()
    {
        RaceInfo race = Scenario.Race!;
        Assert.That(race.Item, Is.EqualTo("design: unbind without waiting"));
        Assert.That(race.Kernels, Is.EqualTo("proposed, never merged"));
        Assert.That(race.FixSwitch, Is.EqualTo("VfioDesign.Unbind = NoWait"));
        Assert.That(race.FixCommits, Does.Contain("vfio_unregister_group_dev"));
        Assert.That(race.Detectors, Is.EqualTo(new[] { RaceDetector.UseAfterFree }));
    }

    [Test]
    public void WithTheUnbindWait_TheUserIsAskedAndReleases_AndNothingLeaks(
        [Values] SchedulerMode mode, [ValueSource(nameof(s_seeds))] ulong seed, [Values("linux-6.12", "linux-6.1")] string profile)
    {
        ScenarioResult r = Run(mode, seed, fix: true, KernelProfile.Parse(profile));
        Assert.That(r.Outcome, Is.EqualTo(ScenarioOutcome.Passed), r.Describe());
        Assert.That(RaceFinding.Of(r), Is.Null);
        Assert.That(r.Sim.UnexpectedWarnings, Is.Empty);
    }

    [Test]
    public void WithTheUnbindWait_PctExplorationFindsNothing()
    {
        ExplorationResult e = Scenario.Explore(new ExploreOptions { SeedCount = 12, Strategy = StrategySpec.Pct() }, new ScenarioOptions { Fix = true, Trace = false });
        Assert.That(e.Failures, Is.Empty, e.ToString());
    }

    [Test]
    [LeavesKernelWarnings] // the freed device is used on purpose
    public void WithoutTheWait_EverySeedIsAKasanUseAfterFreeOfTheDevice(
        [Values] SchedulerMode mode, [ValueSource(nameof(s_seeds))] ulong seed)
    {
        ScenarioResult r = Run(mode, seed, fix: false);
        Assert.That(r.Outcome, Is.EqualTo(ScenarioOutcome.Failed), r.Describe());
        RaceFinding? f = RaceFinding.Of(r);
        Assert.That(f, Is.Not.Null);
        Assert.That(f!.Detector, Is.EqualTo(RaceDetector.UseAfterFree), f.Report);
        Assert.That(f.Summary, Does.StartWith("BUG: KASAN: slab-use-after-free in vfio_"));
        Assert.That(f.Summary, Does.Contain("vfio_pci_core_device vfio0 (0000:01:00.0) was freed by task unbind/"), "vfio-pci's remove, in the administrator's unbind, freed it");
        Assert.That(f.Summary, Does.Contain("accessed by task vcpu/"), "the user's vCPU thread touched it");
    }

    [Test]
    [LeavesKernelWarnings] // the freed device is used on purpose
    public void NoWait_UnbindReturnsAtOnceWithTheFdOpen_AndTheFdsNextIoctlIsTheKasanBug()
    {
        VfioSim sim = VfioSim.CreateBuilder().AddVfioPci().UseDesign(d => d with { Unbind = VfioUnbindPolicy.NoWait }).Build();
        long unbindTook = -1;
        string? kasan = null;
        RunResult run = sim.Run(() =>
        {
            sim.Bind(Edu, VfioPciDriver.DriverName);
            SimProcess user = sim.Spawn("qemu");
            VfioSession session = sim.Open(user, Edu);
            Assert.That(session.Device.GetInfo().Info.NumRegions, Is.GreaterThan(0), "the device works before the unbind");
            SimProcess admin = sim.Spawn("admin");
            long before = sim.Kernel.Clock.NowNs;
            Assert.That(sim.Unbind(Edu, admin), Is.EqualTo(VfioPciDriver.DriverName));
            unbindTook = sim.Kernel.Clock.NowNs - before;
            Assert.That(sim.DriverOf(Edu), Is.Null, "edu is unbound although its fd is open");
            try
            {
                _ = session.Device.GetInfo();
            }
            catch (KernelPanicException e)
            {
                kasan = e.Message;
                throw;
            }
        });

        Assert.That(unbindTook, Is.LessThan(SimClock.NsPerJiffy * 10), "the unbind did not wait for the user");
        Assert.That(run.Outcome, Is.EqualTo(RunOutcome.Panic), run.Describe());
        Assert.That(kasan, Does.StartWith("BUG: KASAN: slab-use-after-free in vfio_device_fops_unl_ioctl: vfio_pci_core_device vfio0 (0000:01:00.0) was freed by task main/"));
        Assert.That(kasan, Does.Contain("Freed by task main/").And.Contain(" vfio_device_release\n"));
        Assert.That(kasan, Does.Contain("Accessed by task main/").And.Contain(" vfio_device_fops_unl_ioctl\n"));
        Assert.That(sim.Dmesg(), Does.Contain("BUG: KASAN: slab-use-after-free in vfio_device_fops_unl_ioctl"));
        Assert.That(sim.Warnings.Select(w => w.Title), Has.Some.Contains("vfio_group_detach_container: group 2 has container_users 2"),
            "the group's teardown found the open device still using the container");
    }

    [Test]
    public void TheKernelsUnbind_FreesTheDeviceOnlyAfterTheLastClose()
    {
        VfioSim sim = VfioSim.CreateBuilder().AddVfioPci().Build();
        Runs.AssertPassed(sim.Run(() =>
        {
            sim.Bind(Edu, VfioPciDriver.DriverName);
            SimProcess user = sim.Spawn("qemu");
            VfioSession session = sim.Open(user, Edu);
            SimProcess admin = sim.Spawn("admin");
            int freedBefore = sim.Kernel.Kasan.FreedCount;
            KTask unbinder = admin.SpawnThread("unbind", () => sim.Unbind(Edu, admin));
            KTask.Msleep(25_000);
            Assert.That(sim.Kernel.Kasan.FreedCount, Is.EqualTo(freedBefore), "nothing is freed while the fd is open");
            Assert.That(session.Device.GetInfo().Info.NumRegions, Is.GreaterThan(0), "the fd still works during the wait");
            session.Dispose();
            unbinder.Join();
            Assert.That(sim.Kernel.Kasan.FreedCount, Is.GreaterThan(freedBefore), "the last put freed the device");
        }));
    }
}
