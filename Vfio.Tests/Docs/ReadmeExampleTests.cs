// The README's code, run as written (file output replaced by strings), so it stays true.

using NUnit.Framework;
using Vfio.Kernel;

namespace Vfio.Tests.Docs;

public sealed class ReadmeExampleTests
{
    [Test]
    public void TheFiveMinuteTour_RunsAsWritten()
    {
        var k = new SimKernel(new KernelConfig
        {
            Mode = SchedulerMode.Controlled,
            Seed = 42,
            Strategy = StrategySpec.Pct(depth: 3, maxSteps: 200),
        });

        RunResult r = k.Run(() =>
        {
            var groupLock = new KMutex(k, "vfio_group[26].group_lock");
            var comp = new Completion(k, "vfio_device[0].comp");
            KTask unbind = k.Spawn("unbind", () => comp.WaitTimeout(SimClock.SecondsToJiffies(10)));
            groupLock.Lock();
            groupLock.Unlock();
            unbind.Join();
        });

        Sim.AssertPassed(r);
        Assert.That(r.Describe(), Does.StartWith("outcome=Completed seed=42 strategy=pct(d=3,k=200)"));
        Assert.That(k.Clock.NowNs, Is.EqualTo(10_000_000_000L));
        Assert.That(RunTrace.Parse(r.Trace.ToJson()).StepCount, Is.EqualTo(r.Steps));
        Assert.That(r.Trace.ToChromeTrace(), Does.StartWith("{\"traceEvents\":["));

        static void MyScenario(SimKernel kernel) => SelfTest.PlantedRefcountRace(kernel, buggy: true);
        ExplorationResult found = Explorer.Explore(
            new ExploreOptions { Strategy = StrategySpec.Pct(2, 40), SeedCount = 200, ShardIndex = 0, ShardCount = 1 },
            kernel => MyScenario(kernel));
        string json = found.FirstFailure!.Trace.ToJson();
        RunResult again = Explorer.Replay(RunTrace.Parse(json), kernel => MyScenario(kernel));
        Assert.That(again.Outcome, Is.EqualTo(RunOutcome.Deadlock));
    }
}
