using NUnit.Framework;
using Vfio.Kernel;

namespace Vfio.Tests.Kernel;

[TestFixture(SchedulerMode.Real)]
[TestFixture(SchedulerMode.Controlled)]
public sealed class CompletionTests(SchedulerMode mode)
{
    [Test]
    public void CompleteBeforeWait_LetsOneWaitThrough_AndIsConsumed()
    {
        bool doneBefore = false, tryAfter = true, doneAfter = true;
        RunResult r = Runs.Run(mode, k =>
        {
            var c = new Completion(k, "c");
            c.Complete();
            doneBefore = c.IsDone;
            c.Wait();
            doneAfter = c.IsDone;
            tryAfter = c.TryWait();
        });

        Runs.AssertPassed(r);
        Assert.That(doneBefore, Is.True);
        Assert.That(doneAfter, Is.False);
        Assert.That(tryAfter, Is.False);
    }

    [Test]
    public void Complete_WakesExactlyOneOfTwoWaiters()
    {
        int woken = 0;
        long jiffiesLeftForSecond = -1;
        RunResult r = Runs.Run(mode, k =>
        {
            var c = new Completion(k, "c");
            var started = new Completion(k, "started");
            KTask a = k.Spawn("a", () => { started.Complete(); c.Wait(); Interlocked.Increment(ref woken); });
            KTask b = k.Spawn("b", () => { started.Complete(); c.Wait(); Interlocked.Increment(ref woken); });
            started.Wait();
            started.Wait();
            c.Complete();
            // Exactly one of them gets through; the other still needs one more complete().
            Runs.SpinUntil(() => Volatile.Read(ref woken) == 1);
            jiffiesLeftForSecond = c.IsDone ? 1 : 0;
            c.Complete();
            a.Join();
            b.Join();
        });

        Runs.AssertPassed(r);
        Assert.That(woken, Is.EqualTo(2));
        Assert.That(jiffiesLeftForSecond, Is.Zero, "the first complete() was consumed by one waiter");
    }

    [Test]
    public void CompleteAll_ReleasesEveryWaiter_AndEveryLaterWait_UntilReinit()
    {
        int passed = 0;
        bool doneAfterReinit = true;
        RunResult r = Runs.Run(mode, k =>
        {
            var c = new Completion(k, "c");
            var tasks = Enumerable.Range(0, 3).Select(i => k.Spawn($"w{i}", () => { c.Wait(); Interlocked.Increment(ref passed); })).ToList();
            c.CompleteAll();
            c.Complete(); // Stays at UINT_MAX.
            tasks.ForEach(t => t.Join());
            c.Wait();
            c.Wait();
            Interlocked.Add(ref passed, 2);
            c.Reinit();
            doneAfterReinit = c.IsDone;
        });

        Runs.AssertPassed(r);
        Assert.That(passed, Is.EqualTo(5));
        Assert.That(doneAfterReinit, Is.False);
    }

    [Test]
    public void WaitTimeout_ReturnsZeroWhenTheTimePasses()
    {
        long ret = -1, start = 0, end = 0;
        RunResult r = Runs.Run(mode, k =>
        {
            var c = new Completion(k, "c");
            start = k.Clock.Jiffies;
            ret = c.WaitTimeout(SimClock.SecondsToJiffies(10));
            end = k.Clock.Jiffies;
        });

        Runs.AssertPassed(r);
        Assert.That(ret, Is.Zero);
        Assert.That(end - start, Is.GreaterThanOrEqualTo(10 * SimClock.HZ));
        if (mode == SchedulerMode.Controlled)
        {
            Assert.That(end - start, Is.EqualTo(10 * SimClock.HZ), "virtual time jumps exactly to the deadline");
        }
    }

    [Test]
    public void WaitTimeout_ReturnsTheJiffiesLeftWhenCompletedInTime()
    {
        // An hour of virtual time: in real mode that is 3.6 s of wall time, far more than
        // the completer's 2 s (2 ms) sleep needs even on a loaded machine.
        long ret = -1;
        RunResult r = Runs.Run(mode, k =>
        {
            var c = new Completion(k, "c");
            k.Spawn("completer", () => { KTask.Msleep(2000); c.Complete(); });
            ret = c.WaitTimeout(SimClock.SecondsToJiffies(3600));
        });

        Runs.AssertPassed(r);
        if (mode == SchedulerMode.Controlled)
        {
            Assert.That(ret, Is.EqualTo(3598 * SimClock.HZ));
        }
        else
        {
            // Real threads: the waiter may start after the completer already finished, and
            // then gets the whole timeout back.
            Assert.That(ret, Is.InRange(1, 3600 * SimClock.HZ));
        }
    }

    [Test]
    public void WaitTimeout_OnACompletionAlreadyDone_ReturnsAtLeastOne()
    {
        long zeroTimeout = -1, full = -1;
        RunResult r = Runs.Run(mode, k =>
        {
            var c = new Completion(k, "c");
            c.Complete();
            c.Complete();
            zeroTimeout = c.WaitTimeout(0);
            full = c.WaitTimeout(100);
        });

        Runs.AssertPassed(r);
        Assert.That(zeroTimeout, Is.EqualTo(1));
        Assert.That(full, Is.InRange(1, 100));
        if (mode == SchedulerMode.Controlled)
        {
            Assert.That(full, Is.EqualTo(100));
        }
    }

    [Test]
    public void WaitInterruptible_ReturnsErestartsysWhenSignalled()
    {
        int pendingAtCall = 0, whileSleeping = 0;
        bool stillPending = false;
        RunResult r = Runs.Run(mode, k =>
        {
            var c = new Completion(k, "c");
            k.CurrentTask.SendSignal(Signals.SIGINT);
            pendingAtCall = c.WaitInterruptible();
            stillPending = k.CurrentTask.SignalPending;
            k.CurrentTask.FlushSignals();

            KTask sleeper = k.Spawn("sleeper", () => whileSleeping = c.WaitInterruptible());
            Runs.SpinUntil(() => sleeper.State == TaskState.Blocked);
            sleeper.SendSignal(Signals.SIGUSR1);
            sleeper.Join();
        });

        Runs.AssertPassed(r);
        Assert.That(pendingAtCall, Is.EqualTo(-(int)Errno.ERESTARTSYS));
        Assert.That(stillPending, Is.True, "the signal stays pending for delivery");
        Assert.That(whileSleeping, Is.EqualTo(-(int)Errno.ERESTARTSYS));
    }

    [Test]
    public void ADoneCompletionWinsOverAPendingSignal()
    {
        int ret = -1;
        RunResult r = Runs.Run(mode, k =>
        {
            var c = new Completion(k, "c");
            c.Complete();
            k.CurrentTask.SendSignal(Signals.SIGINT);
            ret = c.WaitInterruptible();
        });

        Runs.AssertPassed(r);
        Assert.That(ret, Is.Zero);
    }

    [Test]
    public void WaitInterruptibleTimeout_GivesEachOfItsThreeResults()
    {
        long timedOut = -1, completed = -1, signalled = 0;
        RunResult r = Runs.Run(mode, k =>
        {
            var c = new Completion(k, "c");
            timedOut = c.WaitInterruptibleTimeout(5);
            c.Complete();
            completed = c.WaitInterruptibleTimeout(50);
            k.CurrentTask.SendSignal(Signals.SIGINT);
            signalled = c.WaitInterruptibleTimeout(50);
            k.CurrentTask.FlushSignals();
        });

        Runs.AssertPassed(r);
        Assert.That(timedOut, Is.Zero);
        Assert.That(completed, Is.InRange(1, 50));
        Assert.That(signalled, Is.EqualTo(-(long)Errno.ERESTARTSYS));
    }

    [Test]
    public void WaitKillable_IgnoresOrdinarySignals_ButHonoursSigkill()
    {
        long afterTerm = -1;
        int afterKill = 0;
        RunResult r = Runs.Run(mode, k =>
        {
            var c = new Completion(k, "c");
            k.CurrentTask.SendSignal(Signals.SIGTERM);
            afterTerm = c.WaitKillableTimeout(3);
            k.CurrentTask.SendSignal(Signals.SIGKILL);
            afterKill = c.WaitKillable();
        });

        Runs.AssertPassed(r);
        Assert.That(afterTerm, Is.Zero, "SIGTERM does not end a killable sleep; the timeout does");
        Assert.That(afterKill, Is.EqualTo(-(int)Errno.ERESTARTSYS));
    }

    [Test]
    public void AWaitNobodyCompletes_IsADeadlockNamingTheCompletion()
    {
        RunResult r = Runs.Run(mode, k => new Completion(k, "vfio_device[0].comp").Wait());

        Runs.AssertOutcome(r, RunOutcome.Deadlock);
        WaitEdge e = r.Graph!.For("main")!;
        Assert.That(e.Operation, Is.EqualTo("wait_for_completion"));
        Assert.That(e.ObjectName, Is.EqualTo("vfio_device[0].comp"));
        Assert.That(e.Holders, Is.Empty);
        Assert.That(r.Report, Does.Contain("needs complete()"));
    }
}
