using NUnit.Framework;
using Vfio.Kernel;

namespace Vfio.Tests.Kernel;

public sealed class GuidedStrategyTests
{
    [Test]
    public void WithoutDeviations_TheRunningTaskGoesOn_AndTheLowestIdRunsWhenItStops()
    {
        RunResult r = SearchPrograms.Run(SearchPrograms.TwoIncrements, StrategySpec.Guided([]));

        // main (1) spawns a (2) and b (3) and exits; then a runs to its end, then b.
        Assert.That(Schedule(r), Is.EqualTo(new[] { "1 kthread_run 1", "1 kthread_run 1", "1 exit 2", "2 refcount_inc 2", "2 exit 3", "3 refcount_inc 3", "3 exit 0" }));
        Assert.That(r.Trace.Strategy, Is.EqualTo("guided(0)"));
    }

    [Test]
    public void ADeviation_RunsItsTaskAtThatTasksNthPoint()
    {
        // At main's second point (spawning b) b runs; at b's first point (its inc) a runs.
        RunResult r = SearchPrograms.Run(SearchPrograms.TwoIncrements, StrategySpec.Guided([new(1, 2, 3), new(3, 1, 2)]));

        Assert.That(Schedule(r), Is.EqualTo(new[] { "1 kthread_run 1", "1 kthread_run 3", "3 refcount_inc 2", "2 refcount_inc 2", "2 exit 1", "1 exit 3", "3 exit 0" }));
    }

    [Test]
    public void ADeviationToATaskThatCannotRun_IsIgnored()
    {
        // Task 9 does not exist; at main's first point b does not exist yet.
        RunResult r = SearchPrograms.Run(SearchPrograms.TwoIncrements, StrategySpec.Guided([new(1, 3, 9), new(1, 1, 3)]));
        RunResult plain = SearchPrograms.Run(SearchPrograms.TwoIncrements, StrategySpec.Guided([]));

        Assert.That(Schedule(r), Is.EqualTo(Schedule(plain)));
    }

    [Test]
    public void InvalidDeviations_AreRejected()
    {
        Assert.That(
            () => SearchPrograms.Run(SearchPrograms.TwoIncrements, StrategySpec.Guided([new(1, 0, 2)])),
            Throws.ArgumentException.With.Message.Contains("count from 1"));
    }

    [Test]
    public void TheRecord_HoldsEveryDecisionPoint_WithThePendingOperations()
    {
        RunResult r = SearchPrograms.Run(SearchPrograms.LostUpdate, StrategySpec.Guided([new(2, 2, 3)]));
        ScheduleRecord rec = r.Record!;

        // main spawns a: {main, a}; spawns b: {main, a, b}; calls join(a): {main, a, b}; blocks in it: {a, b}.
        Assert.That(rec.Decisions[0].RunnableCount, Is.EqualTo(2));
        Assert.That(rec.Decisions[2].CurrentCanRun, Is.True);
        Assert.That(rec.Decisions[3].CurrentCanRun, Is.False);
        Assert.That(rec.Decisions[3].Default, Is.EqualTo(2));

        // a read the count and, at its second point (refcount_set), is switched away from in favour of b: a preemption.
        RecordedDecision d = rec.Decisions[5];
        Assert.That((d.Current, d.Point, d.CurrentCanRun, d.Chosen), Is.EqualTo((2, 2, true, 3)));
        PendingOp[] runnable = rec.Runnable.GetRange(d.RunnableStart, d.RunnableCount).ToArray();
        Assert.That(runnable.Select(p => (p.Task, p.Op)), Is.EqualTo(new[] { (2, SchedOp.RefcountSet), (3, SchedOp.Start) }));
        Assert.That(runnable[0].Object, Is.GreaterThanOrEqualTo(0));
        Assert.That(runnable[1].Object, Is.GreaterThanOrEqualTo(0).And.Not.EqualTo(runnable[0].Object), "a start names the task itself");
        Assert.That(rec.Preemptions, Is.EqualTo(1));
        Assert.That(rec.Deviations(), Is.EqualTo(new[] { new ScheduleDeviation(2, 2, 3) }));
        Assert.That(r.Report, Does.Contain("an update was lost"));
    }

    [Test]
    public void BlockedTasks_ArePendingOnTheirWaitObject()
    {
        // a holds m and is preempted before unlocking; b blocks on m; a unlocks and exits; b resumes from its block.
        static void Program(SimKernel k)
        {
            var m = new KMutex(k, "m");
            KTask a = k.Spawn("a", () =>
            {
                m.Lock();
                m.Unlock();
            });
            KTask b = k.Spawn("b", () =>
            {
                m.Lock();
                m.Unlock();
            });
            a.Join();
            b.Join();
        }

        RunResult r = SearchPrograms.Run(Program, StrategySpec.Guided([new(2, 2, 3)]));
        ScheduleRecord rec = r.Record!;

        Assert.That(r.Passed, Is.True, r.Describe());
        Assert.That(rec.Steps.Any(s => s.Task == 3 && s.Op == SchedOp.Block), Is.True);
    }

    [Test]
    public void TheInterleavingHash_IgnoresTheOrderOfIndependentSteps_ButNotOfDependentOnes()
    {
        // b's inc of y before or after a's inc of x: one class. Under LostUpdate, whether b's
        // read comes before a's set or after it: two classes.
        ulong? plain = SearchPrograms.Run(SearchPrograms.TwoIncrements, StrategySpec.Guided([new(1, 3, 3), new(3, 1, 2)])).InterleavingHash;
        ulong? swapped = SearchPrograms.Run(SearchPrograms.TwoIncrements, StrategySpec.Guided([new(1, 3, 3), new(3, 1, 2), new(2, 1, 3)])).InterleavingHash;
        Assert.That(plain, Is.Not.Null);
        Assert.That(swapped, Is.EqualTo(plain));

        ulong? serial = SearchPrograms.Run(SearchPrograms.LostUpdate, StrategySpec.Guided([])).InterleavingHash;
        ulong? lost = SearchPrograms.Run(SearchPrograms.LostUpdate, StrategySpec.Guided([new(2, 1, 3)])).InterleavingHash;
        Assert.That(lost, Is.Not.EqualTo(serial));
    }

    [Test]
    public void TheInterleavingHash_IsComputedForOtherStrategiesOnlyWhenAskedFor_AndIsStable()
    {
        static RunResult Run(bool hash) => new SimKernel(new KernelConfig
        {
            Mode = SchedulerMode.Controlled,
            Seed = 7,
            Strategy = StrategySpec.Random,
            InterleavingHash = hash,
        }).Run("main", () => ControlledSchedulerTests.Busy(KTask.Current.Kernel));

        RunResult first = Run(hash: true);
        Assert.That(first.InterleavingHash, Is.Not.Null);
        Assert.That(Run(hash: true).InterleavingHash, Is.EqualTo(first.InterleavingHash));
        Assert.That(Run(hash: false).InterleavingHash, Is.Null);
    }

    private static string[] Schedule(RunResult r)
        => [.. r.Trace.Records.Where(x => x.Kind == TraceRecordKind.Step).Select(x => $"{x.TaskId} {x.Op} {x.NextTaskId}")];
}
