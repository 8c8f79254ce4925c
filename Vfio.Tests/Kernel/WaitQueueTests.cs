using NUnit.Framework;
using Vfio.Kernel;

namespace Vfio.Tests.Kernel;

[TestFixture(SchedulerMode.Real)]
[TestFixture(SchedulerMode.Controlled)]
public sealed class WaitQueueTests(SchedulerMode mode)
{
    [Test]
    public void WaitEvent_ReturnsAtOnceWhenTheConditionHolds()
    {
        bool sleepers = true;
        RunResult r = Runs.Run(mode, k =>
        {
            var wq = new WaitQueue(k, "wq");
            wq.WaitEvent(() => true);
            sleepers = wq.HasSleepers;
        });

        Runs.AssertPassed(r);
        Assert.That(sleepers, Is.False);
    }

    [Test]
    public void WaitEvent_SleepsUntilTheConditionIsSetAndWokenUp()
    {
        int users = 3;
        RunResult r = Runs.Run(mode, k =>
        {
            var wq = new WaitQueue(k, "container_q");
            for (int i = 0; i < 3; i++)
            {
                k.Spawn($"user{i}", () =>
                {
                    KTask.Msleep(10);
                    Interlocked.Decrement(ref users);
                    wq.WakeUp();
                });
            }

            wq.WaitEvent(() => Volatile.Read(ref users) == 0);
        });

        Runs.AssertPassed(r);
        Assert.That(users, Is.Zero);
    }

    [Test]
    public void SettingTheConditionWithoutWakeUp_LeavesTheSleeperAsleep()
    {
        RunResult r = Runs.Run(mode, k =>
        {
            bool flag = false;
            var wq = new WaitQueue(k, "wq");
            KTask waiter = k.Spawn("waiter", () => wq.WaitEvent(() => Volatile.Read(ref flag)));
            Runs.SpinUntil(() => waiter.State == TaskState.Blocked);
            Volatile.Write(ref flag, true);
            waiter.Join();
        });

        Runs.AssertOutcome(r, RunOutcome.Deadlock);
        WaitEdge e = r.Graph!.For("waiter")!;
        Assert.That(e.Operation, Is.EqualTo("wait_event"));
        Assert.That(e.Hint, Is.EqualTo("wake_up()"));
    }

    [Test]
    public void WaitEventTimeout_ReportsTimeoutAsZero_AndSuccessAsJiffiesLeft()
    {
        long timedOut = -1, satisfied = -1, immediate = -1;
        RunResult r = Runs.Run(mode, k =>
        {
            var wq = new WaitQueue(k, "wq");
            bool flag = false;
            timedOut = wq.WaitEventTimeout(() => Volatile.Read(ref flag), 25);
            k.Spawn("setter", () => { KTask.Msleep(100); Volatile.Write(ref flag, true); wq.WakeUp(); });
            satisfied = wq.WaitEventTimeout(() => Volatile.Read(ref flag), SimClock.SecondsToJiffies(3600));
            immediate = wq.WaitEventTimeout(() => true, 0);
        });

        Runs.AssertPassed(r);
        Assert.That(timedOut, Is.Zero);
        Assert.That(immediate, Is.EqualTo(1), "a true condition with no time left still reports 1");
        if (mode == SchedulerMode.Controlled)
        {
            Assert.That(satisfied, Is.EqualTo(SimClock.SecondsToJiffies(3600) - SimClock.MsecsToJiffies(100)));
        }
        else
        {
            Assert.That(satisfied, Is.InRange(1, SimClock.SecondsToJiffies(3600)));
        }
    }

    [Test]
    public void WaitEventInterruptible_ReturnsErestartsysOnASignal_AndZeroOnSuccess()
    {
        int interrupted = 0, ok = -1;
        RunResult r = Runs.Run(mode, k =>
        {
            var wq = new WaitQueue(k, "wq");
            KTask sleeper = k.Spawn("sleeper", () => interrupted = wq.WaitEventInterruptible(() => false));
            Runs.SpinUntil(() => sleeper.State == TaskState.Blocked);
            sleeper.SendSignal(Signals.SIGINT);
            sleeper.Join();
            ok = wq.WaitEventInterruptible(() => true);
        });

        Runs.AssertPassed(r);
        Assert.That(interrupted, Is.EqualTo(-(int)Errno.ERESTARTSYS));
        Assert.That(ok, Is.Zero);
    }

    [Test]
    public void WaitEventInterruptibleTimeout_PrefersATrueConditionOverAPendingSignal()
    {
        long ret = 0;
        RunResult r = Runs.Run(mode, k =>
        {
            var wq = new WaitQueue(k, "wq");
            k.CurrentTask.SendSignal(Signals.SIGINT);
            ret = wq.WaitEventInterruptibleTimeout(() => true, 10);
        });

        Runs.AssertPassed(r);
        Assert.That(ret, Is.EqualTo(10));
    }

    [Test]
    public void WaitEventKillable_OnlySigkillInterrupts()
    {
        int ret = 0;
        RunResult r = Runs.Run(mode, k =>
        {
            var wq = new WaitQueue(k, "wq");
            KTask sleeper = k.Spawn("sleeper", () => ret = wq.WaitEventKillable(() => false));
            Runs.SpinUntil(() => sleeper.State == TaskState.Blocked);
            sleeper.SendSignal(Signals.SIGINT);
            KTask.Msleep(5);
            Invariant.Check(!sleeper.HasExited, "SIGINT must not end a killable sleep");
            sleeper.SendSignal(Signals.SIGKILL);
            sleeper.Join();
        });

        Runs.AssertPassed(r);
        Assert.That(ret, Is.EqualTo(-(int)Errno.ERESTARTSYS));
    }

    [Test]
    public void AConditionThatSleeps_IsRefused()
    {
        RunResult r = Runs.Run(mode, k =>
        {
            var wq = new WaitQueue(k, "wq");
            var m = new KMutex(k, "m");
            var c = new Completion(k, "never");
            wq.WaitEvent(() =>
            {
                c.Wait();
                return true;
            });
            m.Lock();
        });

        Runs.AssertOutcome(r, RunOutcome.Failed);
        Assert.That(r.Exception, Is.TypeOf<InvalidOperationException>());
        Assert.That(r.Exception!.Message, Does.StartWith("do not call blocking ops when !TASK_RUNNING"));
    }
}
