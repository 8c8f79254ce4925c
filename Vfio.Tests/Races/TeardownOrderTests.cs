// Seed 002, the teardown order of a vfio device against walks of its device set
// (VfioDesign.TeardownBeforeLeavingDeviceSet) and its scenario teardown-vs-device-set-walk:
// in the v6.1 order (the device leaves the set, then vfio-pci's release destroys its locks)
// the scenario holds on every seed, controlled and real threads, on both profiles, and
// leaks nothing; in the ≤v6.0 order some seeds of a fixed list end in a KASAN report of the
// hot reset's try-lock of port 1's destroyed vma_lock. Sequentially: where the unbind of a
// set member stands when it waits for the set lock (torn down or not), and the hot reset's
// walk run in that window.

using NUnit.Framework;
using Vfio.Core;
using Vfio.Kernel;
using Vfio.Pci;
using Vfio.Platform.Fs;
using Vfio.Platform.Proc;
using Vfio.Sim;
using Vfio.Sim.Races;
using Vfio.Sim.Scenarios;

namespace Vfio.Tests.Races;

public sealed class TeardownOrderTests
{
    private const string Port0 = "0000:08:00.0";
    private const string Port1 = "0000:08:00.1";

    private static readonly ulong[] s_seeds = [1, 2, 3, 5, 8, 13, 21, 34];

    private static readonly ulong[] s_bugSeeds = [.. Enumerable.Range(1, 40).Select(i => (ulong)i)];

    private static Scenario Scenario => ScenarioCatalog.Default.Get("teardown-vs-device-set-walk");

    [Test]
    public void TheCatalogueDescribesSeed002_WithItsFixSwitchAndDetector()
    {
        RaceInfo race = Scenario.Race!;
        Assert.That(race.Item, Is.EqualTo("seed 002"));
        Assert.That(race.Kernels, Is.EqualTo("≤ v6.0"));
        Assert.That(race.FixSwitch, Is.EqualTo("VfioDesign.TeardownBeforeLeavingDeviceSet"));
        Assert.That(race.FixCommits, Does.Contain("vfio_pci_core_uninit_device").And.Contain("not established"));
        Assert.That(race.Detectors, Is.EqualTo(new[] { RaceDetector.UseAfterFree }));
        Assert.That(ScenarioCatalog.Default.All, Does.Contain(Scenario));
    }

    [Test]
    public void InTheV61Order_EveryResetSeesAWholeSetOrNoPort1_AndNothingLeaks(
        [Values] SchedulerMode mode, [ValueSource(nameof(s_seeds))] ulong seed, [Values("linux-6.12", "linux-6.1")] string profile)
    {
        ScenarioResult r = Scenario.Run(new ScenarioOptions
        {
            Seed = seed,
            Mode = mode,
            Strategy = StrategySpec.Random,
            Profile = KernelProfile.Parse(profile),
            Trace = false,
            Fix = true,
        });
        Assert.That(r.Outcome, Is.EqualTo(ScenarioOutcome.Passed), r.Describe());
        Assert.That(RaceFinding.Of(r), Is.Null);
        Assert.That(r.Sim.UnexpectedWarnings, Is.Empty);
    }

    [Test]
    public void InTheV61Order_PctExplorationFindsNothing()
    {
        ExplorationResult e = Scenario.Explore(new ExploreOptions { SeedCount = 12, Strategy = StrategySpec.Pct() }, new ScenarioOptions { Fix = true, Trace = false, Profile = KernelProfile.Linux6_1 });
        Assert.That(e.Failures, Is.Empty, e.ToString());
    }

    [Test]
    [LeavesKernelWarnings] // the destroyed lock is used on purpose
    public void InTheV60Order_SomeSeedOfAFixedListIsAKasanReportOfPort1sVmaLock()
    {
        var found = new List<RaceFinding>();
        int passed = 0;
        foreach (ulong seed in s_bugSeeds)
        {
            ScenarioResult r = Scenario.Run(new ScenarioOptions { Seed = seed, Strategy = StrategySpec.Random, Trace = false, Fix = false });
            if (r.Outcome == ScenarioOutcome.Passed)
            {
                passed++;
                continue;
            }

            RaceFinding? f = RaceFinding.Of(r);
            Assert.That(f, Is.Not.Null, r.Describe());
            found.Add(f!);
        }

        Assert.That(found, Is.Not.Empty, $"none of {s_bugSeeds.Length} seeds hit the window");
        foreach (RaceFinding f in found)
        {
            Assert.That(f.Detector, Is.EqualTo(RaceDetector.UseAfterFree), f.Report);
            Assert.That(f.Summary, Does.StartWith("BUG: KASAN: slab-use-after-free in vfio_pci_zap_and_vma_lock: vma_lock of vfio_pci_core_device vfio"));
            Assert.That(f.Summary, Does.Contain($"({Port1}), destroyed was freed by task unbind/"), "vfio-pci's uninit, in the administrator's unbind, destroyed it");
            Assert.That(f.Summary, Does.Contain("accessed by task hot-reset/"), "the user's hot reset walked the set");
        }

        TestContext.Out.WriteLine($"{found.Count} of {s_bugSeeds.Length} seeds found the bug, {passed} passed");
    }

    [TestCase(true)]
    [TestCase(false)]
    public void AnUnbindWaitingForTheSetLock_HasTornTheDeviceDownOnlyInTheV60Order(bool v60Order)
    {
        VfioSim sim = VfioSim.CreateBuilder().UseProfile(KernelProfile.Linux6_1).AddVfioPci()
            .UseDesign(d => d with { TeardownBeforeLeavingDeviceSet = v60Order }).Build();
        Runs.AssertPassed(sim.Run(() =>
        {
            sim.Bind(Port0, VfioPciDriver.DriverName);
            sim.Bind(Port1, VfioPciDriver.DriverName);
            var port1 = (VfioPciCoreDevice)sim.Device(Port1).DriverData!;
            VfioDeviceSet set = port1.DevSet!;
            int freedBefore = sim.Kernel.Kasan.FreedCount;

            // Hold the set lock (as a walker would) while the administrator unbinds port 1.
            set.Lock.Lock();
            SimProcess admin = sim.Spawn("admin");
            KTask unbinder = admin.SpawnThread("unbind", () => sim.Unbind(Port1, admin));
            KTask.Msleep(100);
            Assert.That(unbinder.HasExited, Is.False, "the unbind waits for the set lock");
            Assert.That(set.DevicesLocked, Does.Contain(port1), "port 1 is still on the set's list");
            Assert.That(sim.Kernel.Kasan.FreedCount - freedBefore, Is.EqualTo(v60Order ? 3 : 0),
                v60Order ? "igate, ioeventfds_lock and vma_lock are destroyed already" : "nothing is torn down before the device leaves the set");
            set.Lock.Unlock();
            unbinder.Join();

            Assert.That(port1.IsReleased, Is.True);
            Assert.That(sim.Kernel.Kasan.FreedCount - freedBefore, Is.EqualTo(4), "the three locks and the device");
        }));
    }

    [Test]
    [LeavesKernelWarnings] // the destroyed lock is used on purpose
    public void InTheV60Order_AHotResetWalkingTheSetInTheWindow_IsTheKasanReport()
    {
        VfioSim sim = VfioSim.CreateBuilder().UseProfile(KernelProfile.Linux6_1).AddVfioPci()
            .UseDesign(d => d with { TeardownBeforeLeavingDeviceSet = true }).Build();
        string? kasan = null;
        RunResult run = sim.Run(() =>
        {
            sim.Bind(Port0, VfioPciDriver.DriverName);
            sim.Bind(Port1, VfioPciDriver.DriverName);
            var port1 = (VfioPciCoreDevice)sim.Device(Port1).DriverData!;
            VfioDeviceSet set = port1.DevSet!;
            SimProcess user = sim.Spawn("qemu");
            VfioSession s0 = sim.Open(user, Port0);
            VfioSession s1 = sim.Open(user, Port1);
            s1.Device.Dispose();

            set.Lock.Lock();
            SimProcess admin = sim.Spawn("admin");
            KTask unbinder = admin.SpawnThread("unbind", () => sim.Unbind(Port1, admin));
            KTask.Msleep(100);
            Assert.That(set.DevicesLocked, Does.Contain(port1), "in the window: torn down, still on the list");

            // The walk VFIO_DEVICE_PCI_HOT_RESET makes under the set lock, with both group files.
            SimFile[] groups = [user.Files.Get(s0.Group.Fd)!, user.Files.Get(s1.Group.Fd)!];
            try
            {
                _ = VfioPciCoreDevice.DevSetHotResetLocked(set, groups);
            }
            catch (KernelPanicException e)
            {
                kasan = e.Message;
                throw;
            }
        });

        Assert.That(run.Outcome, Is.EqualTo(RunOutcome.Panic), run.Describe());
        Assert.That(kasan, Does.StartWith("BUG: KASAN: slab-use-after-free in vfio_pci_zap_and_vma_lock: vma_lock of vfio_pci_core_device vfio"));
        Assert.That(kasan, Does.Contain($"({Port1}), destroyed was freed by task unbind/"));
        Assert.That(kasan, Does.Contain("Freed by task unbind/").And.Contain(" vfio_pci_core_uninit_device\n"));
        Assert.That(kasan, Does.Contain("Accessed by task main/").And.Contain(" vfio_pci_zap_and_vma_lock\n"));
    }
}
