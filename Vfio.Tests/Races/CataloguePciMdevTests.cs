// The race catalogue's vfio-pci and mdev scenarios (races 8–12 and 15 of docs/races.md)
// through their fix switch: with the fix on, a seed list under the controlled scheduler and
// real-threads runs find nothing; with it off, some seed of a fixed list fails and
// RaceFinding.Of names a detector the scenario's Race entry lists.

using NUnit.Framework;
using Vfio.Kernel;
using Vfio.Sim.Races;
using Vfio.Sim.Scenarios;

namespace Vfio.Tests.Races;

/// <summary>Runs a catalogue scenario with its fix switch, for the catalogue tests.</summary>
internal static class CatalogueRuns
{
    /// <summary>The seeds every fix-on exploration covers.</summary>
    public static readonly ulong[] FixedSeeds = [1, 2, 3, 5, 8, 13, 21, 34];

    public static ScenarioResult Run(string name, ulong seed, bool fix, SchedulerMode mode = SchedulerMode.Controlled, StrategySpec? strategy = null)
        => ScenarioCatalog.Default.Get(name).Run(new ScenarioOptions
        {
            Seed = seed,
            Fix = fix,
            Mode = mode,
            Strategy = strategy ?? StrategySpec.Random,
            Trace = false,
        });

    /// <summary>The fix on: every seed of <see cref="FixedSeeds"/> passes, without a finding or a WARN.</summary>
    public static void AssertFixHolds(string name, SchedulerMode mode, StrategySpec? strategy = null)
    {
        foreach (ulong seed in FixedSeeds)
        {
            ScenarioResult r = Run(name, seed, fix: true, mode, strategy);
            Assert.That(RaceFinding.Of(r), Is.Null, $"{name}, seed {seed}, {mode}: {r.Describe()}");
            Assert.That(r.Outcome, Is.EqualTo(ScenarioOutcome.Passed), r.Describe());
            Assert.That(r.Sim.UnexpectedWarnings, Is.Empty, $"{name}, seed {seed}");
        }
    }

    /// <summary>
    /// The fix off: runs seeds 1..<paramref name="seeds"/> under <paramref name="strategy"/>
    /// (stopping once <paramref name="enough"/> found it) and returns the findings; each must
    /// be one of the scenario's detectors, and at least one seed must find the bug.
    /// </summary>
    public static List<RaceFinding> AssertFixOffIsFound(string name, int seeds, StrategySpec? strategy = null, int enough = int.MaxValue)
    {
        RaceInfo race = ScenarioCatalog.Default.Get(name).Race!;
        var findings = new List<RaceFinding>();
        for (ulong seed = 1; seed <= (ulong)seeds; seed++)
        {
            ScenarioResult r = Run(name, seed, fix: false, SchedulerMode.Controlled, strategy);
            if (RaceFinding.Of(r) is { } f)
            {
                Assert.That(race.Detectors, Does.Contain(f.Detector), $"{name}, seed {seed}: {f}\n{f.Report}");
                findings.Add(f);
                if (findings.Count >= enough)
                {
                    break;
                }
            }
            else
            {
                Assert.That(r.Outcome, Is.EqualTo(ScenarioOutcome.Passed), r.Describe());
            }
        }

        Assert.That(findings, Is.Not.Empty, $"no seed of 1..{seeds} found the bug of {name} with its fix off");
        TestContext.Out.WriteLine($"{name}: {findings.Count} of {seeds} seeds found it; first: {findings[0]}");
        return findings;
    }

    /// <summary>The catalogue entry is complete and names a fix switch.</summary>
    public static void AssertEntry(string name, string item)
    {
        Scenario s = ScenarioCatalog.Default.Get(name);
        Assert.That(s.Kind, Is.EqualTo(ScenarioKind.Race));
        Assert.That(s.Race, Is.Not.Null);
        Assert.That(s.Race!.Item, Is.EqualTo(item));
        Assert.That(s.Race.FixSwitch, Is.Not.Null.And.Not.Empty);
        Assert.That(s.Race.FixCommits, Does.Match("[0-9a-f]{12}"));
        Assert.That(s.Race.Detectors, Is.Not.Empty);
    }
}

public sealed class CataloguePciMdevTests
{
    private const string ErrReq = "err-req-vs-release";
    private const string TriggerSwap = "intx-trigger-swap";
    private const string UnmaskVsDisable = "intx-unmask-vs-disable";
    private const string AutoEnable = "intx-exclusive-autoenable";
    private const string MemoryDisable = "bar-access-vs-memory-disable";
    private const string Ioeventfd = "ioeventfd-vs-reset";
    private const string BarFaults = "bar-faults-after-zap";
    private const string Mdev = "mdev-create-remove-vs-unregister";

    [TestCase(ErrReq, "8")]
    [TestCase(TriggerSwap, "9")]
    [TestCase(UnmaskVsDisable, "10")]
    [TestCase(AutoEnable, "10")]
    [TestCase(MemoryDisable, "11")]
    [TestCase(Ioeventfd, "11")]
    [TestCase(BarFaults, "12")]
    [TestCase(Mdev, "15")]
    public void EachScenario_HasACatalogueEntryWithAFixSwitch(string name, string item) => CatalogueRuns.AssertEntry(name, item);

    private static readonly string[] s_names = [ErrReq, TriggerSwap, UnmaskVsDisable, AutoEnable, MemoryDisable, Ioeventfd, BarFaults, Mdev];

    [Test]
    public void WithTheFixOn_TheSeedListFindsNothing([ValueSource(nameof(s_names))] string name, [Values] SchedulerMode mode) => CatalogueRuns.AssertFixHolds(name, mode);

    [Test]
    [LeavesKernelWarnings] // the fix-off runs reproduce the bug on purpose
    public void Race8_WithTheFixOff_TheUnlockedReleaseIsAUseAfterFree_ForSomeSeed()
    {
        List<RaceFinding> found = CatalogueRuns.AssertFixOffIsFound(ErrReq, 60, enough: 1);
        Assert.That(found.Select(f => f.Detector), Has.All.EqualTo(RaceDetector.UseAfterFree));
    }

    [Test]
    [LeavesKernelWarnings] // the fix-off runs reproduce the bug on purpose
    public void Race9_WithTheFixOff_ANullOrReleasedTriggerIsSignalled_OnEverySeed()
    {
        List<RaceFinding> found = CatalogueRuns.AssertFixOffIsFound(TriggerSwap, 8);
        Assert.That(found, Has.Count.EqualTo(8));
    }

    [Test]
    [LeavesKernelWarnings] // the fix-off runs reproduce the bug on purpose
    public void Race10_WithTheFixOff_TheUnlockedConfigUnmaskUsesAReleasedTrigger_ForSomeSeed()
    {
        List<RaceFinding> found = CatalogueRuns.AssertFixOffIsFound(UnmaskVsDisable, 20);
        Assert.That(found.Select(f => f.Detector), Has.Some.EqualTo(RaceDetector.UseAfterFree));
    }

    [Test]
    public void Race10_WithTheFixOff_TheExclusiveLineIsLeftDisabledTwice_OnEverySeed()
    {
        List<RaceFinding> found = CatalogueRuns.AssertFixOffIsFound(AutoEnable, 8);
        Assert.That(found, Has.Count.EqualTo(8));
        Assert.That(found.Select(f => f.Detector), Has.All.EqualTo(RaceDetector.Invariant));
        Assert.That(found.Select(f => f.Summary), Has.All.Contain("disabled it twice"));
    }

    [Test]
    public void Race11_WithTheFixOff_AnAccessReachesEduWhileItDoesNotDecode()
    {
        List<RaceFinding> found = CatalogueRuns.AssertFixOffIsFound(MemoryDisable, 8);
        Assert.That(found.Select(f => f.Detector), Has.All.EqualTo(RaceDetector.Invariant));
    }

    [Test]
    [LeavesKernelWarnings] // the fix-off runs reproduce the bug on purpose
    public void Race11_WithTheFixOff_TheIoeventfdHandlerSleepsInAtomicContext()
    {
        List<RaceFinding> found = CatalogueRuns.AssertFixOffIsFound(Ioeventfd, 8);
        Assert.That(found.Select(f => f.Detector), Has.All.EqualTo(RaceDetector.WarnOrBug));
        Assert.That(found.Select(f => f.Summary), Has.All.Contain("sleeping function called from invalid context"));
    }

    [Test]
    public void Race12_WithTheFixOff_RacingFaultsListTheVmaTwiceOrGetASpuriousSigbus()
    {
        List<RaceFinding> found = CatalogueRuns.AssertFixOffIsFound(BarFaults, 8);
        Assert.That(found.Select(f => f.Detector), Has.All.EqualTo(RaceDetector.Invariant));
    }

    [Test]
    [LeavesKernelWarnings] // the fix-off runs reproduce the bug on purpose
    public void Race15_WithTheFixOff_AnMdevOutlivesItsFreedParent()
    {
        List<RaceFinding> found = CatalogueRuns.AssertFixOffIsFound(Mdev, 8);
        Assert.That(found.Select(f => f.Detector), Has.Some.EqualTo(RaceDetector.UseAfterFree));
    }
}
