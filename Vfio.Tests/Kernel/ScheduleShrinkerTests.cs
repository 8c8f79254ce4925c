using NUnit.Framework;
using Vfio.Kernel;

namespace Vfio.Tests.Kernel;

public sealed class ScheduleShrinkerTests
{
    [TestCase(StrategyKind.Random)]
    [TestCase(StrategyKind.Pct)]
    public void AFailingRunWithManyPreemptions_ShrinksToOne_AndReplaysByteForByte(StrategyKind kind)
    {
        // A lost update hidden among a bystander's steps: random and PCT runs that find it
        // switch tasks far more often than the one preemption it needs.
        Action<SimKernel> program = SearchPrograms.LostUpdateWithBystander;
        StrategySpec strategy = kind == StrategyKind.Random ? StrategySpec.Random : StrategySpec.Pct(3, 40);
        RunResult failing = FirstFailure(program, strategy);

        ShrinkResult s = ScheduleShrinker.Shrink(
            failing.Trace,
            SearchPrograms.Runner(program, failing.Seed),
            r => r.Report?.Contains("an update was lost", StringComparison.Ordinal) == true);

        Assert.That(s.PreemptionsBefore, Is.GreaterThan(1));
        Assert.That(s.PreemptionsAfter, Is.EqualTo(1));
        Assert.That(s.StepsAfter, Is.LessThanOrEqualTo(s.StepsBefore));
        Assert.That(s.StepsBefore, Is.EqualTo(failing.Steps));
        Assert.That(s.Shrunk.Steps, Is.EqualTo(s.StepsAfter));
        Assert.That(s.Runs, Is.GreaterThan(1).And.LessThan(200));
        Assert.That(s.Shrunk.Report, Does.Contain("an update was lost"));

        RunResult replay = Explorer.Replay(s.Shrunk.Trace, program);
        Assert.That(replay.Trace.ToJson(), Is.EqualTo(s.Shrunk.Trace.ToJson()));
        Assert.That(replay.Outcome, Is.EqualTo(RunOutcome.Failed));
    }

    [Test]
    public void TheShrunkTrace_ReplaysTheSameAfterARoundTripThroughJson()
    {
        RunResult failing = FirstFailure(SearchPrograms.LostUpdate, StrategySpec.Random);
        ShrinkResult s = ScheduleShrinker.Shrink(failing.Trace, SearchPrograms.Runner(SearchPrograms.LostUpdate, failing.Seed), r => !r.Passed);

        string json = s.Shrunk.Trace.ToJson();
        RunResult replay = Explorer.Replay(RunTrace.Parse(json), SearchPrograms.LostUpdate);

        Assert.That(replay.Trace.ToJson(), Is.EqualTo(json));
    }

    [Test]
    public void ADeadlock_ShrinksToTheSinglePreemptionThatCausesIt()
    {
        RunResult failing = FirstFailure(SearchPrograms.Abba, StrategySpec.Random, lockdep: false);
        ShrinkResult s = ScheduleShrinker.Shrink(
            failing.Trace,
            SearchPrograms.Runner(SearchPrograms.Abba, failing.Seed, lockdep: false),
            r => r.Outcome == RunOutcome.Deadlock);

        Assert.That(s.PreemptionsAfter, Is.EqualTo(1));
        Assert.That(s.Shrunk.Outcome, Is.EqualTo(RunOutcome.Deadlock));
    }

    [Test]
    public void TheRunBudget_StopsShrinking_WithTheBestScheduleSoFar()
    {
        RunResult failing = FirstFailure(SearchPrograms.LostUpdateWithBystander, StrategySpec.Random);
        ShrinkResult s = ScheduleShrinker.Shrink(
            failing.Trace,
            SearchPrograms.Runner(SearchPrograms.LostUpdateWithBystander, failing.Seed),
            r => !r.Passed,
            maxRuns: 2);

        Assert.That(s.Runs, Is.EqualTo(2));
        Assert.That(s.Shrunk.Passed, Is.False);
    }

    [Test]
    public void AScheduleThatNoLongerFails_IsReported()
    {
        RunResult failing = FirstFailure(SearchPrograms.LostUpdate, StrategySpec.Random);

        // The program was fixed since: an atomic increment cannot lose an update.
        static void Fixed(SimKernel k)
        {
            var r = new RefCount(k, "users");
            KTask a = k.Spawn("a", () => r.Inc());
            KTask b = k.Spawn("b", () => r.Inc());
            a.Join();
            b.Join();
        }

        Assert.That(
            () => ScheduleShrinker.Shrink(failing.Trace, SearchPrograms.Runner(Fixed, failing.Seed), r => !r.Passed),
            Throws.InvalidOperationException.With.Message.Contains("does not fail when it is run again"));
    }

    private static RunResult FirstFailure(Action<SimKernel> program, StrategySpec strategy, bool lockdep = true)
    {
        for (ulong seed = 1; seed <= 500; seed++)
        {
            RunResult r = SearchPrograms.Run(program, strategy, seed, lockdep);
            if (!r.Passed)
            {
                return r;
            }
        }

        Assert.Fail($"no seed of 1..500 made {strategy} fail");
        throw new InvalidOperationException();
    }
}
