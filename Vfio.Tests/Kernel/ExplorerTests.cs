using NUnit.Framework;
using Vfio.Kernel;

namespace Vfio.Tests.Kernel;

public sealed class ExplorerTests
{
    [Test]
    public void Shards_PartitionTheSeedRange()
    {
        var all = new List<ulong>();
        for (int i = 0; i < 3; i++)
        {
            all.AddRange(new ExploreOptions { FirstSeed = 100, SeedCount = 10, ShardIndex = i, ShardCount = 3 }.ShardSeeds());
        }

        Assert.That(all.Order(), Is.EqualTo(Enumerable.Range(100, 10).Select(i => (ulong)i)));
        Assert.That(new ExploreOptions { FirstSeed = 100, SeedCount = 10, ShardIndex = 1, ShardCount = 3 }.ShardSeeds(), Is.EqualTo(new ulong[] { 101, 104, 107 }));
        Assert.That(() => new ExploreOptions { ShardIndex = 3, ShardCount = 3 }.ShardSeeds().ToList(), Throws.TypeOf<ArgumentOutOfRangeException>());
    }

    [Test]
    public void Explore_StopsAtTheFirstFailure_OrCollectsThemAll()
    {
        // Fails on odd seeds only.
        static void Scenario(SimKernel k) => Invariant.Check(k.Seed % 2 == 0, $"seed {k.Seed} is odd");

        ExplorationResult first = Explorer.Explore(new ExploreOptions { FirstSeed = 2, SeedCount = 6 }, Scenario);
        Assert.That(first.Runs, Is.EqualTo(2));
        Assert.That(first.FirstFailure!.Seed, Is.EqualTo(3UL));
        Assert.That(first.FirstFailure.Exception, Is.TypeOf<InvariantViolationException>());

        ExplorationResult all = Explorer.Explore(new ExploreOptions { FirstSeed = 2, SeedCount = 6, StopAtFirstFailure = false }, Scenario);
        Assert.That(all.Runs, Is.EqualTo(6));
        Assert.That(all.Failures.Select(f => f.Seed), Is.EqualTo(new ulong[] { 3, 5, 7 }));
        Assert.That(all.Describe(), Does.StartWith("6 runs, 3 failed; first failing seed 3"));
    }

    [Test]
    public void Replay_RefusesRealModeTraces()
    {
        RunResult real = new SimKernel().Run(() => { });
        Assert.That(() => Explorer.Replay(real.Trace, _ => { }), Throws.ArgumentException.With.Message.Contains("only traces of controlled runs"));
    }

    [Test]
    public void Replay_RefusesATraceFromAnUnknownProfile_InsteadOfReplayingItAs6_12()
    {
        RunResult run = Runs.Run(SchedulerMode.Controlled, _ => { });
        var trace = new RunTrace(run.Trace.Version, run.Trace.Seed, run.Trace.Strategy, run.Trace.Mode, "linux-5.4", run.Trace.StepBudget, run.Trace.Outcome, []);

        Assert.That(() => Explorer.Replay(trace, _ => { }), Throws.ArgumentException.With.Message.Contains("'linux-5.4'").And.Message.Contains("linux-6.12"));
    }
}
