// Tests Vfio.Sim/Races/RaceLab.cs (with RaceSchedule.cs and RaceExploration.cs): seeded
// exploration finds a race with its fix off and nothing with it on; its result does not
// depend on the number of jobs; the shards of an exploration merge into the unsharded
// result; replay files round-trip byte for byte and replay to the same finding; a body of
// the caller's own explores as the catalogue's scenarios do.

using NUnit.Framework;
using Vfio.Kernel;
using Vfio.Sim;
using Vfio.Sim.Races;
using Vfio.Sim.Scenarios;

namespace Vfio.Tests.Sim;

/// <summary>A lost update: two tasks increment a counter, under a mutex only when the fix is on.</summary>
internal sealed class LostUpdateRace : Scenario
{
    public const string ScenarioName = "lab-lost-update";

    public override string Name => ScenarioName;

    public override string Description => "Two tasks read, yield and write back a counter; with the fix off they take no lock, so one update can be lost.";

    public override ScenarioKind Kind => ScenarioKind.Race;

    public override RaceInfo Race { get; } = new()
    {
        Item = "test",
        Kernels = "linux-6.1 (in this test)",
        FixCommits = "none (a test of the lab)",
        FixSwitch = "profile linux-6.1",
        Detectors = [RaceDetector.Invariant],
    };

    public override void ApplyFix(VfioSimBuilder builder, bool on)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.UseProfile(on ? KernelProfile.Linux6_12 : KernelProfile.Linux6_1);
    }

    public override void Configure(VfioSimBuilder builder)
    {
        // Nothing to load: the body touches no device.
    }

    public override void Execute(ScenarioContext context) => Body(context);

    public static void Body(ScenarioContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        SimKernel k = context.Sim.Kernel;
        bool locked = k.Profile == KernelProfile.Linux6_12;
        var mutex = new KMutex(k, "lab.counter_lock");
        int counter = 0;
        void Increment()
        {
            if (locked)
            {
                mutex.Lock();
            }

            int seen = counter;
            KTask.Schedule();
            counter = seen + 1;
            if (locked)
            {
                mutex.Unlock();
            }
        }

        KTask a = k.Spawn("inc-a", Increment);
        KTask b = k.Spawn("inc-b", Increment);
        a.Join();
        b.Join();
        ScenarioContext.Detect(RaceDetector.Invariant, counter == 2, "counter = 2 after two increments", $"counter = {counter}");
    }

    public static ScenarioCatalog Catalog { get; } = ScenarioCatalog.Default.With(new LostUpdateRace());
}

public sealed class RaceLabTests
{
    private static readonly Scenario s_race = LostUpdateRace.Catalog.Get(LostUpdateRace.ScenarioName);

    private static RaceExploration Explore(bool fix, int schedules = 40, int jobs = 1, int shard = 0, int shards = 1, bool keepGoing = false, bool shrink = false)
        => RaceLab.Explore(
            s_race,
            new RaceExploreOptions { Schedules = schedules, Strategy = StrategySpec.Random, Jobs = jobs, ShardIndex = shard, ShardCount = shards, StopAtFirstBug = !keepGoing, Shrink = shrink },
            new ScenarioOptions { Fix = fix });

    [Test]
    public void WithTheFixOn_AnExplorationFindsNothing_AndCountsItsSchedules()
    {
        RaceExploration r = Explore(fix: true);
        Assert.That(r.Passed, Is.True, r.Describe());
        Assert.That(r.Schedules, Is.EqualTo(40));
        Assert.That(r.Exhausted, Is.Null, "seeded exploration does not claim to exhaust anything");
        Assert.That(r.DistinctInterleavings, Is.InRange(2, 40));
    }

    [Test]
    public void WithTheFixOff_AnExplorationStopsAtTheLowestFailingSeed_AndNamesTheDetector()
    {
        RaceExploration all = Explore(fix: false, keepGoing: true);
        Assert.That(all.Bugs, Has.Count.EqualTo(1), "every failing seed shows the same check, so one bug");
        ulong first = all.Bugs[0].Seed;

        RaceExploration r = Explore(fix: false);
        Assert.That(r.Passed, Is.False);
        Assert.That(r.Bugs, Has.Count.EqualTo(1));
        RaceBug bug = r.Bugs[0];
        Assert.That(bug.Seed, Is.EqualTo(first));
        Assert.That(r.Schedules, Is.EqualTo((long)first), "seeds 1 … first ran, no more");
        Assert.That(bug.Finding.Detector, Is.EqualTo(RaceDetector.Invariant));
        Assert.That(bug.Finding.Summary, Does.StartWith("expected counter = 2 after two increments; found counter = 1"));
        Assert.That(bug.Schedule.Fix, Is.False);
        Assert.That(bug.Schedule.Profile, Is.EqualTo("linux-6.1"));
        Assert.That(bug.Schedule.Trace.Records.Any(x => x.Kind != TraceRecordKind.Step && x.Kind != TraceRecordKind.Clock), Is.True, "the replay file's run was recorded with the trace on");
        Assert.That(bug.Original, Is.Null, "not shrunk when shrinking is off");
    }

    [Test]
    public void ABugsSchedule_ReplaysToTheSameFinding_InThisProcess()
    {
        RaceBug bug = Explore(fix: false).Bugs[0];
        ScenarioResult again = RaceLab.Replay(bug.Schedule, LostUpdateRace.Catalog);
        Assert.That(bug.Schedule.IsReproducedBy(again), Is.True, again.Describe());
        Assert.That(again.Trace!.ToJson(), Is.EqualTo(bug.Schedule.Trace.ToJson()), "the replay records the same trace, byte for byte");
        Assert.That(() => RaceLab.Replay(bug.Schedule), Throws.ArgumentException.With.Message.Contains("no scenario is called 'lab-lost-update'"));
    }

    [TestCase(false)]
    [TestCase(true)]
    public void TheResult_DoesNotDependOnTheNumberOfJobs(bool keepGoing)
    {
        RaceExploration one = Explore(fix: false, schedules: 60, jobs: 1, keepGoing: keepGoing);
        RaceExploration three = Explore(fix: false, schedules: 60, jobs: 3, keepGoing: keepGoing);
        Assert.That(three.Schedules, Is.EqualTo(one.Schedules));
        Assert.That(three.FailingSchedules, Is.EqualTo(one.FailingSchedules));
        Assert.That(three.DistinctInterleavings, Is.EqualTo(one.DistinctInterleavings));
        Assert.That(three.Bugs.Select(b => b.Seed), Is.EqualTo(one.Bugs.Select(b => b.Seed)));
        Assert.That(three.Bugs.Select(b => b.Schedule.ToJson()), Is.EqualTo(one.Bugs.Select(b => b.Schedule.ToJson())));
    }

    [Test]
    public void TheShardsOfAnExploration_MergeIntoTheUnshardedOne_ThroughTheirSummaryFiles()
    {
        RaceExploration whole = Explore(fix: false, schedules: 45, keepGoing: true);
        RaceExploration[] parts = [.. Enumerable.Range(0, 3).Select(k => RaceExploration.Parse(Explore(fix: false, schedules: 45, shard: k, shards: 3, keepGoing: true).ToJson()))];
        Assert.That(parts.Select(p => p.Schedules), Is.EqualTo(new long[] { 15, 15, 15 }));

        RaceExploration merged = RaceExploration.Merge(parts);
        Assert.That(merged.Schedules, Is.EqualTo(whole.Schedules));
        Assert.That(merged.FailingSchedules, Is.EqualTo(whole.FailingSchedules));
        Assert.That(merged.DistinctInterleavings, Is.EqualTo(whole.DistinctInterleavings));
        Assert.That(merged.Bugs.Select(b => b.Schedule.ToJson()), Is.EqualTo(whole.Bugs.Select(b => b.Schedule.ToJson())));
        Assert.That(merged.Exhausted, Is.Null);
        Assert.That(() => RaceExploration.Merge([whole, RaceExploration.Parse(Explore(fix: true, schedules: 1).ToJson().Replace("lab-lost-update", "other", StringComparison.Ordinal))]), Throws.ArgumentException);
    }

    [Test]
    public void AReplayFile_RoundTripsByteForByte()
    {
        RaceSchedule s = Explore(fix: false).Bugs[0].Schedule;
        string json = s.ToJson();
        Assert.That(json, Does.StartWith("{\n  \"format\": \"vfio-sim-race\",\n  \"version\": 1,\n  \"scenario\": \"lab-lost-update\",\n  \"fix\": false,\n  \"designs\": [],\n  \"profile\": \"linux-6.1\",\n  \"finding\": {\"detector\": \"Invariant\""));
        RaceSchedule back = RaceSchedule.Parse(json);
        Assert.That(back.ToJson(), Is.EqualTo(json));
        Assert.That(back.Finding!.Detector, Is.EqualTo(RaceDetector.Invariant));
        Assert.That(back.Trace.Seed, Is.EqualTo(s.Trace.Seed));
    }

    [TestCase("")]
    [TestCase("[]")]
    [TestCase("{\"format\": \"vfio-sim-trace\", \"version\": 1}")]
    [TestCase("{\"format\": \"vfio-sim-race\", \"version\": 2}")]
    [TestCase("{\"format\": \"vfio-sim-race\", \"version\": 1, \"scenario\": \"x\"}")]
    public void AMalformedReplayFile_IsAFormatException(string json)
        => Assert.That(() => RaceSchedule.Parse(json), Throws.TypeOf<FormatException>());

    [Test]
    public void AReplayFile_WithAnUnknownDetectorOrDesign_IsAFormatException()
    {
        string json = Explore(fix: false).Bugs[0].Schedule.ToJson();
        Assert.That(() => RaceSchedule.Parse(json.Replace("\"Invariant\"", "\"Gremlins\"", StringComparison.Ordinal)), Throws.TypeOf<FormatException>().With.Message.Contains("unknown detector 'Gremlins'"));
        Assert.That(() => RaceSchedule.Parse(json.Replace("\"designs\": []", "\"designs\": [\"Colour=blue\"]", StringComparison.Ordinal)), Throws.TypeOf<FormatException>().With.Message.Contains("no design variant is called 'Colour'"));
    }

    [Test]
    public void ABodyOfYourOwn_ExploresAndReplays_ThroughACatalogueThatHoldsIt()
    {
        Scenario mine = Scenario.Create("my-lost-update", "the lost update, unlocked", _ => { }, c =>
        {
            SimKernel k = c.Sim.Kernel;
            int counter = 0;
            void Increment()
            {
                int seen = counter;
                KTask.Schedule();
                counter = seen + 1;
            }

            KTask a = k.Spawn("a", Increment);
            KTask b = k.Spawn("b", Increment);
            a.Join();
            b.Join();
            ScenarioContext.Check(counter == 2, "counter = 2", $"counter = {counter}");
        });
        RaceExploration r = RaceLab.Explore(mine, new RaceExploreOptions { Schedules = 40, Strategy = StrategySpec.Random, Shrink = false });
        Assert.That(r.Passed, Is.False);
        Assert.That(r.Bugs[0].Finding.Detector, Is.EqualTo(RaceDetector.Invariant));
        ScenarioResult again = RaceLab.Replay(RaceSchedule.Parse(r.Bugs[0].Schedule.ToJson()), ScenarioCatalog.Default.With(mine));
        Assert.That(r.Bugs[0].Schedule.IsReproducedBy(again), Is.True, again.Describe());
    }

    [Test]
    public void BadOptions_AreRejectedBeforeAnythingRuns()
    {
        Assert.That(() => Explore(fix: true, shard: 3, shards: 3), Throws.ArgumentException.With.Message.Contains("shard 3/3 is not valid"));
        Assert.That(() => Explore(fix: true, jobs: 0), Throws.ArgumentException.With.Message.Contains("jobs"));
        Assert.That(() => RaceLab.Explore(s_race, new RaceExploreOptions(), new ScenarioOptions { Designs = ["Colour=blue"] }), Throws.ArgumentException.With.Message.Contains("no design variant is called 'Colour'"));
        Scenario noSwitch = ScenarioCatalog.Default.Get("group-open-vs-removal");
        if (noSwitch.Race?.FixSwitch is null)
        {
            Assert.That(() => RaceLab.Explore(noSwitch, new RaceExploreOptions { Schedules = 1 }, new ScenarioOptions { Fix = true }), Throws.InvalidOperationException.With.Message.Contains("has no fix switch"));
        }
    }

    [Test]
    public void Progress_IsReportedForEverySchedule()
    {
        var seen = new System.Collections.Concurrent.ConcurrentBag<SearchProgress>();
        RaceExploration r = RaceLab.Explore(s_race, new RaceExploreOptions { Schedules = 20, Strategy = StrategySpec.Random, Jobs = 2, Progress = new Collect(seen) }, new ScenarioOptions { Fix = true });
        Assert.That(seen, Has.Count.EqualTo(20));
        Assert.That(seen.Max(p => p.Schedules), Is.EqualTo(20));
        Assert.That(seen.Max(p => p.DistinctInterleavings), Is.EqualTo(r.DistinctInterleavings));
    }

    private sealed class Collect(System.Collections.Concurrent.ConcurrentBag<SearchProgress> into) : IProgress<SearchProgress>
    {
        public void Report(SearchProgress value) => into.Add(value);
    }

    [Test]
    [LeavesKernelWarnings] // the v5.1 mdev core reproduces the use-after-free on purpose
    public void TheMdevRace_WithTheParentSynchronisationOff_IsAUseAfterFree_OnTheFirstSeed()
    {
        RaceExploration r = RaceLab.Explore(
            ScenarioCatalog.Default.Get("mdev-create-remove-vs-unregister"),
            new RaceExploreOptions { Schedules = 5, Strategy = StrategySpec.Random, Shrink = false },
            new ScenarioOptions { Designs = ["Mdev.SynchronizeWithParentRemoval=false"] });
        Assert.That(r.Schedules, Is.EqualTo(1));
        Assert.That(r.Bugs[0].Finding.Detector, Is.EqualTo(RaceDetector.UseAfterFree), r.Bugs[0].Finding.Report);
        Assert.That(r.Bugs[0].Schedule.Designs, Is.EqualTo(new[] { "Mdev.SynchronizeWithParentRemoval=false" }));
        Assert.That(r.Bugs[0].Schedule.IsReproducedBy(RaceLab.Replay(r.Bugs[0].Schedule)), Is.True);
    }

    // ---- Needs the bounded search (BoundedSearch.Run, ScheduleShrinker.Shrink).

    [Test]
    public void Shrinking_KeepsTheDetector_NeverGrowsTheSchedule_AndTheResultReplays()
    {
        RaceBug bug = Explore(fix: false, shrink: true).Bugs[0];
        Assert.That(bug.Original, Is.Not.Null, "the exploration shrank the schedule");
        Assert.That(bug.Finding.Detector, Is.EqualTo(RaceDetector.Invariant));
        Assert.That(bug.Schedule.Trace.StepCount, Is.LessThanOrEqualTo(bug.Original!.Trace.StepCount));
        Assert.That(bug.Schedule.IsReproducedBy(RaceLab.Replay(RaceSchedule.Parse(bug.Schedule.ToJson()), LostUpdateRace.Catalog)), Is.True);

        RaceSchedule again = RaceLab.Shrink(bug.Original, LostUpdateRace.Catalog);
        Assert.That(again.Finding!.Detector, Is.EqualTo(RaceDetector.Invariant));
        Assert.That(again.Trace.StepCount, Is.LessThanOrEqualTo(bug.Original.Trace.StepCount));
    }

    [Test]
    public void ExhaustiveSearch_WithTheFixOn_ExhaustsTheBoundedSpace_AndFindsNothing()
    {
        RaceExploration r = RaceLab.Explore(s_race, new RaceExploreOptions { Exhaustive = true, Preemptions = 2, Schedules = 5000 }, new ScenarioOptions { Fix = true });
        Assert.That(r.Passed, Is.True, r.Describe());
        Assert.That(r.Exhausted, Is.True, r.Describe());
        Assert.That(r.DistinctInterleavings, Is.GreaterThan(1));
    }

    [Test]
    public void ExhaustiveSearch_WithTheFixOff_FindsTheLostUpdate_WithOneJobOrTwo()
    {
        foreach (int jobs in new[] { 1, 2 })
        {
            RaceExploration r = RaceLab.Explore(s_race, new RaceExploreOptions { Exhaustive = true, Preemptions = 1, Jobs = jobs, Shrink = false }, new ScenarioOptions { Fix = false });
            Assert.That(r.Passed, Is.False, $"jobs {jobs}: {r.Describe()}");
            Assert.That(r.Bugs[0].Finding.Detector, Is.EqualTo(RaceDetector.Invariant));
            Assert.That(r.Bugs[0].Schedule.IsReproducedBy(RaceLab.Replay(r.Bugs[0].Schedule, LostUpdateRace.Catalog)), Is.True);
        }
    }

    [Test]
    public void ExhaustiveShards_MergeIntoTheUnshardedSearch()
    {
        RaceExploreOptions o = new() { Exhaustive = true, Preemptions = 2, Schedules = 100_000, StopAtFirstBug = false, Shrink = false };
        RaceExploration whole = RaceLab.Explore(s_race, o, new ScenarioOptions { Fix = true });
        RaceExploration merged = RaceExploration.Merge(Enumerable.Range(0, 2).Select(k => RaceLab.Explore(s_race, o with { ShardIndex = k, ShardCount = 2 }, new ScenarioOptions { Fix = true })));
        Assert.That(merged.Exhausted, Is.EqualTo(whole.Exhausted));
        Assert.That(merged.Schedules, Is.EqualTo(whole.Schedules));
        Assert.That(merged.DistinctInterleavings, Is.EqualTo(whole.DistinctInterleavings));
    }
}
