using NUnit.Framework;
using Vfio.Kernel;

namespace Vfio.Tests.Kernel;

public sealed class BoundedSearchTests
{
    // TwoIncrements by hand (main=1 spawns a=2 and b=3, then exits; a and b each do one
    // refcount_inc). Decision points: main at each spawn (main can go on), main's exit (free
    // choice of a or b), and a's or b's inc while the other can run. Bound 0: main runs to
    // its exit, then a or b runs first and to its end: 2 schedules. Bound 1 adds 7 (main
    // preempted at its first spawn, 1; at its second by a or b, 4; a or b preempted before
    // its inc after main's exit, 2). Bound 2 adds 15 more.
    [TestCase(0, 2)]
    [TestCase(1, 9)]
    [TestCase(2, 24)]
    public void ATinyProgram_IsExhausted_WithTheScheduleCountWorkedOutByHand(int bound, int expected)
    {
        BoundedSearchResult r = BoundedSearch.Run(
            new BoundedSearchOptions { PreemptionBound = bound, PartialOrderReduction = false },
            SearchPrograms.Runner(SearchPrograms.TwoIncrements));

        Assert.That(r.Exhausted, Is.True);
        Assert.That(r.Schedules, Is.EqualTo(expected));
        Assert.That(r.Failures, Is.Empty);
        Assert.That(r.DistinctInterleavings, Is.InRange(1, expected));
    }

    [Test]
    public void ALostUpdate_IsMissedWithoutPreemptions_AndFoundWithOne()
    {
        Func<StrategySpec, RunResult> run = SearchPrograms.Runner(SearchPrograms.LostUpdate);

        BoundedSearchResult none = BoundedSearch.Run(new BoundedSearchOptions { PreemptionBound = 0 }, run);
        BoundedSearchResult one = BoundedSearch.Run(new BoundedSearchOptions { PreemptionBound = 1 }, run);

        Assert.That(none.Failures, Is.Empty);
        Assert.That(none.Exhausted, Is.True);
        Assert.That(one.Failures, Has.Count.EqualTo(1));
        Assert.That(one.Exhausted, Is.False, "the search stopped at the failure");
        Assert.That(one.Failures[0].Report, Does.Contain("an update was lost"));
    }

    [Test]
    public void AnAbbaDeadlock_IsFoundWithOnePreemption_AndTheWaitForGraphShowsTheCycle()
    {
        Func<StrategySpec, RunResult> run = SearchPrograms.Runner(SearchPrograms.Abba, lockdep: false);

        BoundedSearchResult none = BoundedSearch.Run(new BoundedSearchOptions { PreemptionBound = 0 }, run);
        BoundedSearchResult one = BoundedSearch.Run(new BoundedSearchOptions { PreemptionBound = 1 }, run);

        Assert.That(none.Failures, Is.Empty);
        Assert.That(one.Failures, Has.Count.EqualTo(1));
        Assert.That(one.Failures[0].Outcome, Is.EqualTo(RunOutcome.Deadlock));
        Assert.That(one.Failures[0].Graph!.Cycle, Is.Not.Empty);
    }

    [Test]
    public void ABugNeedingTwoPreemptions_IsMissedWithOne_AndFoundWithTwo()
    {
        Func<StrategySpec, RunResult> run = SearchPrograms.Runner(SearchPrograms.TwoPreemptions);

        BoundedSearchResult one = BoundedSearch.Run(new BoundedSearchOptions { PreemptionBound = 1 }, run);
        BoundedSearchResult two = BoundedSearch.Run(new BoundedSearchOptions { PreemptionBound = 2 }, run);

        Assert.That(one.Failures, Is.Empty);
        Assert.That(one.Exhausted, Is.True);
        Assert.That(two.Failures, Has.Count.EqualTo(1));
        Assert.That(two.Failures[0].Report, Does.Contain("saw both of a's updates"));
    }

    [Test]
    public void Reduction_RunsFewerSchedules_AndFindsTheSameBug()
    {
        Func<StrategySpec, RunResult> run = SearchPrograms.Runner(SearchPrograms.LostUpdateWithBystander);
        var options = new BoundedSearchOptions { PreemptionBound = 1, StopAtFirstFailure = false };

        BoundedSearchResult off = BoundedSearch.Run(options with { PartialOrderReduction = false }, run);
        BoundedSearchResult on = BoundedSearch.Run(options, run);

        Assert.That(on.Exhausted && off.Exhausted, Is.True);
        Assert.That(on.Schedules, Is.LessThan(off.Schedules));
        Assert.That(on.Failures, Is.Not.Empty);
        Assert.That(off.Failures, Is.Not.Empty);
        Assert.That(on.Failures.Select(f => f.Report).Distinct(), Is.EquivalentTo(off.Failures.Select(f => f.Report).Distinct()));
    }

    [Test]
    public void Reduction_WithABoundThatDoesNotCut_CoversEveryInterleavingClass()
    {
        // With a bound no schedule reaches, sleep sets are complete: every class the full
        // search sees is seen with reduction too, from fewer schedules.
        foreach (Action<SimKernel> program in new Action<SimKernel>[] { SearchPrograms.TwoIncrements, SearchPrograms.SameObject })
        {
            Func<StrategySpec, RunResult> run = SearchPrograms.Runner(program);
            var options = new BoundedSearchOptions { PreemptionBound = 50, StopAtFirstFailure = false };

            BoundedSearchResult off = BoundedSearch.Run(options with { PartialOrderReduction = false }, run);
            BoundedSearchResult on = BoundedSearch.Run(options, run);

            Assert.That(on.Exhausted && off.Exhausted, Is.True);
            Assert.That(on.DistinctInterleavings, Is.EqualTo(off.DistinctInterleavings));
            Assert.That(on.Schedules, Is.LessThan(off.Schedules));
        }
    }

    [Test]
    public void MaxSchedules_CapsTheSearch_AndThenItIsNotExhausted()
    {
        var progress = new List<SearchProgress>();
        BoundedSearchResult r = BoundedSearch.Run(
            new BoundedSearchOptions { PreemptionBound = 2, PartialOrderReduction = false, MaxSchedules = 5 },
            SearchPrograms.Runner(SearchPrograms.TwoIncrements),
            progress.Add);

        Assert.That(r.Schedules, Is.EqualTo(5));
        Assert.That(r.Exhausted, Is.False);
        Assert.That(progress[^1].Schedules, Is.EqualTo(5));
    }

    [Test]
    public void Progress_IsReportedEverySixteenSchedulesAndAtTheEnd()
    {
        var progress = new List<SearchProgress>();
        BoundedSearchResult r = BoundedSearch.Run(
            new BoundedSearchOptions { PreemptionBound = 2, PartialOrderReduction = false },
            SearchPrograms.Runner(SearchPrograms.TwoIncrements),
            progress.Add);

        Assert.That(progress.Select(p => p.Schedules), Is.EqualTo(new long[] { 16, 24 }));
        Assert.That(progress[^1].DistinctInterleavings, Is.EqualTo(r.DistinctInterleavings));
    }

    [TestCase(true)]
    [TestCase(false)]
    public void Shards_PartitionTheSchedulesOfTheWholeSearch(bool reduction)
    {
        // Every counted run is collected (as a "failure") to compare the schedules themselves.
        Func<StrategySpec, RunResult> run = SearchPrograms.Runner(SearchPrograms.LostUpdateWithBystander);
        var options = new BoundedSearchOptions { PreemptionBound = 1, PartialOrderReduction = reduction, StopAtFirstFailure = false };
        BoundedSearchResult all = BoundedSearch.Run(options, run, static _ => true);
        List<string> whole = [.. all.Failures.Select(Schedule)];

        const int shards = 3;
        var seen = new List<string>();
        long sum = 0;
        for (int i = 0; i < shards; i++)
        {
            BoundedSearchResult part = BoundedSearch.Run(options with { ShardIndex = i, ShardCount = shards }, run, static _ => true);
            Assert.That(part.Exhausted, Is.True);
            Assert.That(part.Schedules, Is.GreaterThan(0), $"shard {i} got no schedule");
            Assert.That(part.Failures.Any(f => Schedule(f).Length == 0), Is.EqualTo(i == 0), "the deviation-free schedule belongs to shard 0");
            seen.AddRange(part.Failures.Select(Schedule));
            sum += part.Schedules;
        }

        Assert.That(sum, Is.EqualTo(all.Schedules));
        Assert.That(whole, Is.Unique);
        Assert.That(seen, Is.Unique);
        Assert.That(seen, Is.EquivalentTo(whole));
    }

    [Test]
    public void TheSearchOrder_IsDeterministic()
    {
        var first = new List<string>();
        var second = new List<string>();
        var options = new BoundedSearchOptions { PreemptionBound = 1, StopAtFirstFailure = false };

        BoundedSearch.Run(options, Recording(SearchPrograms.LostUpdateWithBystander, first));
        BoundedSearch.Run(options, Recording(SearchPrograms.LostUpdateWithBystander, second));

        Assert.That(second, Is.EqualTo(first));
    }

    [Test]
    public void BadOptions_AreRejected()
    {
        Func<StrategySpec, RunResult> run = SearchPrograms.Runner(SearchPrograms.TwoIncrements);
        Assert.That(() => BoundedSearch.Run(new BoundedSearchOptions { ShardIndex = 2, ShardCount = 2 }, run), Throws.InstanceOf<ArgumentOutOfRangeException>());
        Assert.That(() => BoundedSearch.Run(new BoundedSearchOptions { PreemptionBound = -1 }, run), Throws.InstanceOf<ArgumentOutOfRangeException>());
        Assert.That(
            () => BoundedSearch.Run(new BoundedSearchOptions(), _ => SearchPrograms.Run(SearchPrograms.TwoIncrements, StrategySpec.Random)),
            Throws.InvalidOperationException.With.Message.Contains("strategy it is given"));
    }

    private static string Schedule(RunResult r) => string.Join(" ", r.Record!.Deviations().Select(d => $"{d.TaskId}@{d.Point}->{d.NextTaskId}"));

    /// <summary>A runner that also writes down each schedule it is given, as text.</summary>
    private static Func<StrategySpec, RunResult> Recording(Action<SimKernel> program, List<string> schedules)
        => spec =>
        {
            schedules.Add(string.Join(" ", spec.Deviations.Select(d => $"{d.TaskId}@{d.Point}->{d.NextTaskId}")));
            return SearchPrograms.Run(program, spec);
        };
}
