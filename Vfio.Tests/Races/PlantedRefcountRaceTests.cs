// The planted check-then-act bug on a refcount (SelfTest.PlantedRefcountRace): users put
// their reference and the last put completes the completion unregister sleeps on. The
// buggy put reads the count, decides whether it is the last, and only then decrements;
// two puts that read the same value both decide "not last", nobody completes, and
// unregister sleeps forever: a lost wake-up. PCT must find it within a fixed seed budget,
// its trace must replay to the same failure, and the fixed put (refcount_dec_and_test)
// must pass the same budget, under the controlled scheduler and with real threads.

using NUnit.Framework;
using Vfio.Kernel;

namespace Vfio.Tests.Races;

public sealed class PlantedRefcountRaceTests
{
    private static readonly ExploreOptions Budget = SelfTest.PlantedRaceBudget;

    private static void Buggy(SimKernel k) => SelfTest.PlantedRefcountRace(k, buggy: true);

    private static void Fixed(SimKernel k) => SelfTest.PlantedRefcountRace(k, buggy: false);

    [Test]
    public void Pct_FindsTheLostWakeup_WithinTheSeedBudget()
    {
        ExplorationResult found = Explorer.Explore(Budget, Buggy);

        Assert.That(found.Passed, Is.False, $"PCT did not find the planted bug in {Budget.SeedCount} seeds");
        RunResult failure = found.FirstFailure!;
        TestContext.Out.WriteLine($"found at seed {failure.Seed} after {found.Runs} runs");
        TestContext.Out.WriteLine(failure.Describe());
        Assert.That(failure.Outcome, Is.EqualTo(RunOutcome.Deadlock), failure.Describe());
        WaitEdge unregister = failure.Graph!.For("unregister")!;
        Assert.That(unregister.Operation, Is.EqualTo("wait_for_completion"));
        Assert.That(unregister.ObjectName, Is.EqualTo("vfio_device[0].comp"));
    }

    [Test]
    public void TheFailingTrace_ReplaysToTheSameFailure()
    {
        RunResult failure = Explorer.Explore(Budget, Buggy).FirstFailure!;
        RunTrace trace = RunTrace.Parse(failure.Trace.ToJson());

        RunResult replayed = Explorer.Replay(trace, Buggy);

        Assert.That(replayed.Outcome, Is.EqualTo(RunOutcome.Deadlock), replayed.Describe());
        Assert.That(replayed.Report, Is.EqualTo(failure.Report));
        Assert.That(replayed.Trace.ToJson(), Is.EqualTo(failure.Trace.ToJson()));
    }

    [Test]
    public void TheFixedPut_PassesTheSameBudget()
    {
        ExplorationResult result = Explorer.Explore(Budget with { StopAtFirstFailure = false }, Fixed);

        Assert.That(result.Passed, Is.True, result.Describe());
        Assert.That(result.Runs, Is.EqualTo(Budget.SeedCount));
    }

    [Test]
    public void TheFixedPut_PassesInRealMode()
    {
        for (int i = 0; i < 200; i++)
        {
            SimKernel k = Runs.Kernel(SchedulerMode.Real);
            RunResult r = k.Run("main", () => Fixed(k));
            Assert.That(r.Outcome, Is.EqualTo(RunOutcome.Completed), $"iteration {i}: {r.Describe()}");
        }
    }

    [Test]
    public void TheBuggyPut_InRealMode_OnlyEverFailsAsALostWakeup()
    {
        // Real threads find the window only by luck; whatever happens must be either a
        // clean run or exactly this deadlock, never a crash of the simulator.
        int deadlocks = 0;
        for (int i = 0; i < 50; i++)
        {
            SimKernel k = Runs.Kernel(SchedulerMode.Real);
            k.ExpectWarning("refcount_t", count: 10);
            RunResult r = k.Run("main", () => Buggy(k));
            Assert.That(r.Outcome, Is.AnyOf(RunOutcome.Completed, RunOutcome.Deadlock), r.Describe());
            if (r.Outcome == RunOutcome.Deadlock)
            {
                deadlocks++;
                Assert.That(r.Graph!.For("unregister")!.ObjectName, Is.EqualTo("vfio_device[0].comp"));
            }
        }

        TestContext.Out.WriteLine($"real mode hit the lost wake-up in {deadlocks} of 50 runs");
    }

    [Test]
    public void RandomAndRoundRobinStrategies_AlsoReachTheBug()
    {
        ExplorationResult random = Explorer.Explore(Budget with { Strategy = StrategySpec.Random }, Buggy);
        Assert.That(random.Passed, Is.False, "random exploration over the same budget");

        // Switching at every point interleaves the two users' read and decrement.
        ExplorationResult rr = Explorer.Explore(Budget with { Strategy = StrategySpec.RoundRobin(1), SeedCount = 1 }, Buggy);
        Assert.That(rr.FirstFailure?.Outcome, Is.EqualTo(RunOutcome.Deadlock));
    }
}
