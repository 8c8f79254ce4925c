// The race catalogue's KVM and type1 scenarios (races 7, 13 and 14 of docs/races.md)
// through their fix switch: with the fix on, a seed list under the controlled scheduler and
// real-threads runs find nothing; with it off, seeds of a fixed list fail and
// RaceFinding.Of names the detector the scenario's Race entry lists.

using NUnit.Framework;
using Vfio.Kernel;
using Vfio.Sim.Races;

namespace Vfio.Tests.Races;

public sealed class CatalogueKvmType1Tests
{
    private const string Replay = "replay-unwind";
    private const string LockedVm = "locked-vm-across-exec";

    private static readonly string[] s_names = [Replay, LockedVm];

    [TestCase(Replay, "13")]
    [TestCase(LockedVm, "14")]
    public void EachScenario_HasACatalogueEntryWithAFixSwitch(string name, string item) => CatalogueRuns.AssertEntry(name, item);

    [Test]
    public void WithTheFixOn_TheSeedListFindsNothing([ValueSource(nameof(s_names))] string name, [Values] SchedulerMode mode) => CatalogueRuns.AssertFixHolds(name, mode);

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
