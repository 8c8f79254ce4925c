// Tests the lifecycle race scenarios of the catalogue (races 1–4, seeds 000 and 004 in
// docs/races.md; Vfio.Sim/Scenarios/Lifecycle): with the fix on, nothing is found over a seed
// list under the controlled scheduler (random and PCT) nor with real threads; with the fix off,
// some seed of a fixed list fails, and RaceFinding.Of names the scenario's detector.

using NUnit.Framework;
using Vfio.Kernel;
using Vfio.Sim.Races;
using Vfio.Sim.Scenarios;

namespace Vfio.Tests.Races;

public sealed class CatalogueLifecycleTests
{
    private static readonly ulong[] s_seeds = [1, 2, 3, 5, 8, 13, 21, 34];

    // The fixed list the fix-off tests search: seeds 1 to 24.
    private static readonly ulong[] s_searchSeeds = [.. Enumerable.Range(1, 24).Select(i => (ulong)i)];

    private static readonly string[] s_names =
    [
        "driver-bind-into-live-group",
        "unbind-vs-viability",
        "group-open-vs-removal",
        "getfd-vs-unregister",
        "unbind-group-lifetime",
        "kvm-group-vs-container-change",
    ];

    private static ScenarioResult Run(string name, ulong seed, bool fix, SchedulerMode mode = SchedulerMode.Controlled, StrategySpec? strategy = null, IReadOnlyList<string>? designs = null)
        => ScenarioCatalog.Default.Get(name).Run(new ScenarioOptions
        {
            Seed = seed,
            Fix = fix,
            Mode = mode,
            Strategy = strategy ?? StrategySpec.Random,
            Designs = designs ?? [],
            Trace = false,
        });

    /// <summary>Runs the scenario with the fix off over the search seeds and returns what each failing seed found.</summary>
    private static List<(ulong Seed, RaceFinding Finding)> FindingsWithTheFixOff(string name, StrategySpec? strategy = null, IReadOnlyList<string>? designs = null, ulong[]? seeds = null)
    {
        var found = new List<(ulong, RaceFinding)>();
        foreach (ulong seed in seeds ?? s_searchSeeds)
        {
            ScenarioResult r = Run(name, seed, fix: false, strategy: strategy, designs: designs);
            Assert.That(r.Outcome, Is.Not.EqualTo(ScenarioOutcome.Unmet), r.Describe());
            if (RaceFinding.Of(r) is { } f)
            {
                found.Add((seed, f));
            }
        }

        return found;
    }

    private static string Describe(List<(ulong Seed, RaceFinding Finding)> found)
        => found.Count == 0 ? "nothing found" : string.Join("\n", found.Select(x => $"seed {x.Seed}: {x.Finding}"));

    [Test]
    public void EveryScenario_NamesItsRace_AFixSwitch_AndItsDetectors([ValueSource(nameof(s_names))] string name)
    {
        RaceInfo? race = ScenarioCatalog.Default.Get(name).Race;
        Assert.That(race, Is.Not.Null);
        Assert.That(race!.Item, Is.Not.Empty);
        Assert.That(race.FixSwitch, Is.Not.Null.And.Not.Empty);
        Assert.That(race.Detectors, Is.Not.Empty);
        Assert.That(ScenarioCatalog.Default.Get(name).Kind, Is.EqualTo(ScenarioKind.Race));
    }

    [Test]
    public void WithTheFixOn_NothingIsFound_UnderTheControlledScheduler(
        [ValueSource(nameof(s_names))] string name, [ValueSource(nameof(s_seeds))] ulong seed)
    {
        ScenarioResult r = Run(name, seed, fix: true);
        Assert.That(RaceFinding.Of(r), Is.Null, r.Describe());
        Assert.That(r.Outcome, Is.EqualTo(ScenarioOutcome.Passed), r.Describe());
        Assert.That(r.Sim.CheckInvariants(), Is.Empty);
    }

    [Test]
    public void WithTheFixOn_NothingIsFound_WithRealThreads([ValueSource(nameof(s_names))] string name, [Values(1UL, 2UL, 3UL)] ulong seed)
    {
        ScenarioResult r = Run(name, seed, fix: true, SchedulerMode.Real);
        Assert.That(RaceFinding.Of(r), Is.Null, r.Describe());
    }

    [Test]
    public void WithTheFixOn_APctExploration_FindsNothing([ValueSource(nameof(s_names))] string name)
    {
        ExplorationResult found = ScenarioCatalog.Default.Get(name).Explore(
            new ExploreOptions { Strategy = StrategySpec.Pct(3, 2000), SeedCount = 40 },
            new ScenarioOptions { Fix = true, Trace = false });
        Assert.That(found.Passed, Is.True, found.Describe());
    }

    [Test]
    public void Race1_WithTheLegacyNotifier_ABindIntoTheLiveGroup_IsAKernelBug_OnSomeSeed()
    {
        List<(ulong Seed, RaceFinding Finding)> found = FindingsWithTheFixOff("driver-bind-into-live-group");
        Assert.That(found, Is.Not.Empty, Describe(found));
        Assert.That(found.Select(x => x.Finding.Detector), Is.All.EqualTo(RaceDetector.WarnOrBug), Describe(found));
        Assert.That(found[0].Finding.Summary, Does.Contain("vfio_group_nb_verify").And.Contain("0000:02:00.1 bound to igb"));
    }

    [Test]
    public void Race1_WithTheFixOn_BothOfTheKernelsOutcomesHappen_TheProbeRefusedOrTheGroupRefused()
    {
        var outcomes = new HashSet<string>();
        foreach (StrategySpec strategy in new[] { StrategySpec.Random, StrategySpec.Pct(3, 2000) })
        {
            foreach (ulong seed in s_searchSeeds)
            {
                ScenarioResult r = Run("driver-bind-into-live-group", seed, fix: true, strategy: strategy);
                Assert.That(r.Outcome, Is.EqualTo(ScenarioOutcome.Passed), r.Describe());
                outcomes.Add(r.Steps.Single(x => x.Title == "the race's outcome").Output);
            }
        }

        Assert.That(outcomes, Has.Some.StartsWith("bind EBUSY").And.Some.Contain("SET_CONTAINER EPERM"), string.Join("\n", outcomes));
    }

    [Test]
    public void Race2_WithoutDeviceTracking_ViableDropsDuringTheStalledUnbind_OnSomeSeed()
    {
        List<(ulong Seed, RaceFinding Finding)> found = FindingsWithTheFixOff("unbind-vs-viability");
        Assert.That(found, Is.Not.Empty, Describe(found));
        Assert.That(found.Select(x => x.Finding.Detector), Is.All.EqualTo(RaceDetector.Invariant), Describe(found));
        Assert.That(found[0].Finding.Summary, Does.Contain("VIABLE"));
    }

    [Test]
    public void Race3_WithoutItsOwnIommuGroupReference_AWonGroupFdUsesTheFreedIommuGroup_OnSomeSeed()
    {
        List<(ulong Seed, RaceFinding Finding)> found = FindingsWithTheFixOff("group-open-vs-removal");
        Assert.That(found, Is.Not.Empty, Describe(found));
        Assert.That(found.Select(x => x.Finding.Detector), Is.All.EqualTo(RaceDetector.UseAfterFree), Describe(found));
        Assert.That(found[0].Finding.Summary, Does.Contain("use-after-free").And.Contain("iommu_group"));

        // PCT lets the removal finish first on some seeds: an open that loses holds nothing to misuse.
        List<(ulong Seed, RaceFinding Finding)> pct = FindingsWithTheFixOff("group-open-vs-removal", StrategySpec.Pct(3, 2000));
        Assert.That(pct, Has.Count.LessThan(s_searchSeeds.Length), Describe(pct));
    }

    [Test]
    public void Race4_OnLinux61_ReopensStarveTheUnbind_OnSomeSeed()
    {
        List<(ulong Seed, RaceFinding Finding)> found = FindingsWithTheFixOff("getfd-vs-unregister");
        Assert.That(found, Is.Not.Empty, Describe(found));
        Assert.That(found.Select(x => x.Finding.Detector), Is.All.EqualTo(RaceDetector.StalledUnbind), Describe(found));
        Assert.That(found[0].Finding.Summary, Does.Contain("opened during its wait"));
    }

    [Test]
    public void Seed000_WithTheEarlyCore_ViableDropsOrTheKeptGroupFdUsesAFreedIommuGroup_OnSomeSeed()
    {
        List<(ulong Seed, RaceFinding Finding)> found = FindingsWithTheFixOff("unbind-group-lifetime");
        Assert.That(found, Is.Not.Empty, Describe(found));
        Assert.That(found.All(x => x.Finding.Detector is RaceDetector.Invariant or RaceDetector.UseAfterFree), Is.True, Describe(found));
    }

    [Test]
    public void Seed000_WithTheEarlyCore_ButDevicesTrackedDuringUnbind_TheKeptGroupFdUsesTheFreedIommuGroup()
    {
        // The poller catches the stalled unbind first; with the unbound_list back, what is left
        // is the group fd kept across the device's removal.
        List<(ulong Seed, RaceFinding Finding)> found = FindingsWithTheFixOff("unbind-group-lifetime", designs: ["TrackDevicesDuringUnbind=true"], seeds: s_seeds);
        Assert.That(found.Select(x => x.Seed), Is.EqualTo(s_seeds), Describe(found));
        Assert.That(found.Select(x => x.Finding.Detector), Is.All.EqualTo(RaceDetector.UseAfterFree), Describe(found));
        Assert.That(found[0].Finding.Summary, Does.Contain("iommu_group"));
    }

    [Test]
    public void Seed004_WithTheUncheckedExternalUser_KvmUsesAFreedOrMissingContainer_OnSomeSeed()
    {
        List<(ulong Seed, RaceFinding Finding)> found = FindingsWithTheFixOff("kvm-group-vs-container-change");
        Assert.That(found, Is.Not.Empty, Describe(found));
        Assert.That(found.All(x => x.Finding.Detector is RaceDetector.UseAfterFree or RaceDetector.WarnOrBug), Is.True, Describe(found));
        Assert.That(found.All(x => x.Finding.Summary.Contains("check_extension", StringComparison.Ordinal)), Is.True, Describe(found));
    }

    [Test]
    public void Seed004_WithTheUncheckedExternalUser_PctFindsKvmTakingTheLockOfTheFreedContainer()
    {
        // The coherency check read container A, then waited for its lock while the move
        // detached the group and dropped A's last reference (PCT seed 26 of 1–40).
        ulong[] seeds = [.. Enumerable.Range(1, 40).Select(i => (ulong)i)];
        List<(ulong Seed, RaceFinding Finding)> found = FindingsWithTheFixOff("kvm-group-vs-container-change", StrategySpec.Pct(3, 2000), seeds: seeds);
        Assert.That(found.Select(x => x.Finding.Detector), Does.Contain(RaceDetector.UseAfterFree), Describe(found));
        Assert.That(found.First(x => x.Finding.Detector == RaceDetector.UseAfterFree).Finding.Summary,
            Does.Contain("KASAN: slab-use-after-free in vfio_external_check_extension: vfio_container").And.Contain("was freed by task move"));
    }

    [Test]
    public void Seed004_WithTheCheckedExternalUser_UnsetIsEbusyWhileKvmHoldsTheGroup_AndNothingBreaks()
    {
        int busySeeds = 0;
        foreach (ulong seed in s_seeds)
        {
            ScenarioResult r = Run("kvm-group-vs-container-change", seed, fix: true, designs: ["ExternalUsers=Checked"]);
            Assert.That(r.Outcome, Is.EqualTo(ScenarioOutcome.Passed), r.Describe());
            if (!r.Steps[^1].Output.Contains("EBUSY 0 time", StringComparison.Ordinal))
            {
                busySeeds++;
            }
        }

        Assert.That(busySeeds, Is.GreaterThan(0), "some schedule has the mover try UNSET_CONTAINER while KVM holds the group");
    }
}
