// The classic lost wake-up, with the API the kernel removed for it: sleep_on() tests a
// condition and then sleeps, so a wake-up between the test and the sleep is lost.
// wait_event() queues the sleeper before testing the condition, which closes the window.

using NUnit.Framework;
using Vfio.Kernel;

namespace Vfio.Tests.Races;

public sealed class LostWakeupTests
{
    private static readonly ExploreOptions Budget = new()
    {
        Strategy = StrategySpec.Pct(depth: 2, maxSteps: 30),
        SeedCount = 200,
        StepBudget = 10_000,
    };

    private static void Scenario(SimKernel k, bool useSleepOn)
    {
        var users = new RefCount(k, "group[0].container_users", 1);
        var wq = new WaitQueue(k, "container_q");
        KTask user = k.Spawn("container_put", () =>
        {
            if (users.DecAndTest())
            {
                wq.WakeUp();
            }
        });

        if (useSleepOn)
        {
            while (users.Read() != 0)
            {
                wq.SleepOn();
            }
        }
        else
        {
            wq.WaitEvent(() => users.Read() == 0);
        }

        user.Join();
    }

    [Test]
    public void SleepOn_LosesTheWakeup_AndPctFindsIt()
    {
        ExplorationResult r = Explorer.Explore(Budget, k => Scenario(k, useSleepOn: true));

        Assert.That(r.Passed, Is.False);
        RunResult f = r.FirstFailure!;
        Assert.That(f.Outcome, Is.EqualTo(RunOutcome.Deadlock), f.Describe());
        Assert.That(f.Graph!.For("main")!.Operation, Is.EqualTo("sleep_on"));
        RunResult replayed = Explorer.Replay(f.Trace, k => Scenario(k, useSleepOn: true));
        Assert.That(replayed.Report, Is.EqualTo(f.Report));
    }

    [Test]
    public void WaitEvent_PassesTheSameBudget()
    {
        ExplorationResult r = Explorer.Explore(Budget with { StopAtFirstFailure = false }, k => Scenario(k, useSleepOn: false));
        Assert.That(r.Passed, Is.True, r.Describe());
    }

    [Test]
    public void WaitEvent_PassesInRealMode()
    {
        for (int i = 0; i < 200; i++)
        {
            SimKernel k = Runs.Kernel(SchedulerMode.Real);
            RunResult r = k.Run("main", () => Scenario(k, useSleepOn: false));
            Assert.That(r.Outcome, Is.EqualTo(RunOutcome.Completed), $"iteration {i}: {r.Describe()}");
        }
    }
}
