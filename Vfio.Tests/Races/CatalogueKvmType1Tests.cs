// The race catalogue's KVM and type1 scenarios (races 7, 13 and 14 of docs/races.md)
// through their fix switch: with the fix on, a seed list under the controlled scheduler and
// real-threads runs find nothing; with it off, seeds of a fixed list fail and
// RaceFinding.Of names the detector the scenario's Race entry lists.

using NUnit.Framework;
using Vfio.Kernel;
using Vfio.Sim.Races;
using Vfio.Sim.Scenarios;

namespace Vfio.Tests.Races;

public sealed class CatalogueKvmType1Tests
{
    private const string Replay = "replay-unwind";
    private const string LockedVm = "locked-vm-across-exec";
    private const string KvmLockOrder = "kvm-vfio-lock-order";

    private static readonly string[] s_names = [KvmLockOrder, Replay, LockedVm];

    [TestCase(KvmLockOrder, "7")]
    [TestCase(Replay, "13")]
    [TestCase(LockedVm, "14")]
    public void EachScenario_HasACatalogueEntryWithAFixSwitch(string name, string item) => CatalogueRuns.AssertEntry(name, item);

    [Test]
    public void WithTheFixOn_TheSeedListFindsNothing([ValueSource(nameof(s_names))] string name, [Values] SchedulerMode mode) => CatalogueRuns.AssertFixHolds(name, mode);

    [Test]
    public void Race7_WithTheFixOn_PctOverTheSeedListFindsNothingEither()
        => CatalogueRuns.AssertFixHolds(KvmLockOrder, SchedulerMode.Controlled, StrategySpec.Pct(3));

    [Test]
    [LeavesKernelWarnings] // the fix-off runs reproduce the lockdep report on purpose
    public void Race7_WithTheFixOff_LockdepReportsTheInversionOnEverySeed_AndSomeSeedsDeadlock()
    {
        var detectors = new List<RaceDetector>();
        foreach (ulong seed in CatalogueRuns.FixedSeeds)
        {
            ScenarioResult r = CatalogueRuns.Run(KvmLockOrder, seed, fix: false);
            RaceFinding? f = RaceFinding.Of(r);
            Assert.That(f, Is.Not.Null, $"seed {seed}: {r.Describe()}");
            detectors.Add(f!.Detector);
            Assert.That(string.Join("\n", r.Sim.Kernel.Warnings.Select(w => w.Text)), Does.Contain("possible circular locking dependency"), $"seed {seed}: lockdep saw the inversion; {f}");
        }

        Assert.That(detectors, Has.All.AnyOf(RaceDetector.Lockdep, RaceDetector.Deadlock));
        Assert.That(detectors, Has.Some.EqualTo(RaceDetector.Deadlock), "some schedule of the seed list deadlocks");
        Assert.That(detectors, Has.Some.EqualTo(RaceDetector.Lockdep), "some schedule does not deadlock, and lockdep still reports");
    }

    [Test]
    [LeavesKernelWarnings] // the variant's runs reproduce the recursive locking on purpose
    public void Race7_TheOrderBefore51cdc8bc120e_SelfDeadlocksWhenTheDevicesCloseDropsTheLastVmReference_ForSomeSeed()
    {
        var found = new List<RaceFinding>();
        foreach (ulong seed in CatalogueRuns.FixedSeeds)
        {
            ScenarioResult r = ScenarioCatalog.Default.Get(KvmLockOrder).Run(new ScenarioOptions { Seed = seed, Trace = false, Designs = ["KvmLocking=GroupLockAtVmDestroy"] });
            if (RaceFinding.Of(r) is { } f)
            {
                found.Add(f);
                Assert.That(f.Detector, Is.EqualTo(RaceDetector.Deadlock), $"seed {seed}: {f.Report}");
                Assert.That(f.Summary, Does.Contain("group_lock"), "the task that dropped the VM's last reference waits for the group lock it holds");

                // Lockdep speaks first: of the recursion, or of the cycle the same order makes with KVM_DEV_VFIO_FILE_ADD.
                Assert.That(string.Join("\n", r.Sim.Kernel.Warnings.Select(w => w.Text)), Does.Contain("possible recursive locking detected").Or.Contain("possible circular locking dependency"), $"seed {seed}: {f}");
            }
            else
            {
                Assert.That(r.Outcome, Is.EqualTo(ScenarioOutcome.Passed), r.Describe());
            }
        }

        Assert.That(found, Is.Not.Empty, "no seed let the device's close drop the VM's last reference");
    }

    [Test]
    public void Race13_WithTheFixOff_TheFailedReplayLeavesItsChunksPinnedAndCharged_OnEverySeed()
    {
        List<RaceFinding> found = CatalogueRuns.AssertFixOffIsFound(Replay, 8);
        Assert.That(found, Has.Count.EqualTo(8));
        Assert.That(found.Select(f => f.Detector), Has.All.EqualTo(RaceDetector.Leak));
        Assert.That(found.Select(f => f.Summary), Has.All.Contain("still pinned and charged"));
    }

    [Test]
    [LeavesKernelWarnings] // the fix-off runs underflow locked_vm on purpose
    public void Race14_WithTheFixOff_QIsNotChargedForWhatItMaps_OnEverySeed()
    {
        List<RaceFinding> found = CatalogueRuns.AssertFixOffIsFound(LockedVm, 8);
        Assert.That(found, Has.Count.EqualTo(8));
        Assert.That(found.Select(f => f.Detector), Has.All.EqualTo(RaceDetector.Invariant));
    }
}
