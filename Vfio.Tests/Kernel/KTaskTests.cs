using NUnit.Framework;
using Vfio.Kernel;
using Warn = Vfio.Kernel.Warn;

namespace Vfio.Tests.Kernel;

[TestFixture(SchedulerMode.Real)]
[TestFixture(SchedulerMode.Controlled)]
public sealed class KTaskTests(SchedulerMode mode)
{
    [Test]
    public void CurrentIsTheRunningTask_AndTasksGetDistinctIds()
    {
        var seen = new List<string>();
        RunResult r = Runs.Run(mode, k =>
        {
            seen.Add(KTask.Current.DisplayName);
            KTask child = k.Spawn("child", () =>
            {
                lock (seen)
                {
                    seen.Add(KTask.Current.DisplayName);
                }
            });
            child.Join();
            seen.Add(child.HasExited ? "exited" : "running");
        });

        Runs.AssertPassed(r);
        Assert.That(seen, Is.EqualTo(new[] { "main/1", "child/2", "exited" }));
    }

    [Test]
    public void JoiningItself_IsAProgrammingError()
    {
        RunResult r = Runs.Run(mode, k => k.CurrentTask.Join());

        Runs.AssertOutcome(r, RunOutcome.Failed);
        Assert.That(r.Exception, Is.TypeOf<InvalidOperationException>());
    }

    [Test]
    public void Signals_StayPendingUntilFlushed_AndOnlySigkillIsFatal()
    {
        var states = new List<(bool Pending, bool Fatal)>();
        RunResult r = Runs.Run(mode, k =>
        {
            KTask me = k.CurrentTask;
            states.Add((me.SignalPending, me.FatalSignalPending));
            me.SendSignal(Signals.SIGTERM);
            states.Add((me.SignalPending, me.FatalSignalPending));
            me.SendSignal(Signals.SIGKILL);
            states.Add((me.SignalPending, me.FatalSignalPending));
            me.FlushSignals();
            states.Add((me.SignalPending, me.FatalSignalPending));
        });

        Runs.AssertPassed(r);
        Assert.That(states, Is.EqualTo(new[] { (false, false), (true, false), (true, true), (false, false) }));
    }

    [Test]
    public void Msleep_AdvancesVirtualTime()
    {
        long before = 0, after = 0;
        RunResult r = Runs.Run(mode, k =>
        {
            before = k.Clock.NowNs;
            KTask.Msleep(10_000);
            after = k.Clock.NowNs;
        });

        Runs.AssertPassed(r);
        Assert.That(after - before, Is.GreaterThanOrEqualTo(10_000_000_000L));
        if (mode == SchedulerMode.Controlled)
        {
            Assert.That(after - before, Is.EqualTo(10_000_000_000L));
        }
    }

    [Test]
    public void MsleepInterruptible_ReturnsTheMillisecondsLeftWhenSignalled()
    {
        long left = 0;
        RunResult r = Runs.Run(mode, k =>
        {
            KTask sleeper = k.Spawn("sleeper", () => left = KTask.MsleepInterruptible(3_600_000));
            Runs.SpinUntil(() => sleeper.State == TaskState.Blocked);
            sleeper.SendSignal(Signals.SIGINT);
            sleeper.Join();
        });

        Runs.AssertPassed(r);
        Assert.That(left, Is.InRange(1, 3_600_000));
        if (mode == SchedulerMode.Controlled)
        {
            Assert.That(left, Is.EqualTo(3_600_000), "no virtual time passes while another task can run");
        }
    }

    [Test]
    public void AnExceptionInATask_FailsTheRun_AndUnwindsTheOtherTasks()
    {
        bool otherUnwound = false;
        RunResult r = Runs.Run(mode, k =>
        {
            var never = new Completion(k, "never");
            k.Spawn("sleeper", () =>
            {
                try
                {
                    never.Wait();
                }
                finally
                {
                    otherUnwound = true;
                }
            });
            k.Spawn("crasher", () => throw new InvalidDataException("device returned garbage"));
            never.Wait();
        });

        Runs.AssertOutcome(r, RunOutcome.Failed);
        Assert.That(r.FailedTask, Does.StartWith("crasher/"));
        Assert.That(r.Exception, Is.TypeOf<InvalidDataException>());
        Assert.That(otherUnwound, Is.True);
    }

    [Test]
    public void BugOn_IsAKernelPanic()
    {
        RunResult r = Runs.Run(mode, k => Bug.On(true, "vfio_group_nb_verify() failed"));

        Runs.AssertOutcome(r, RunOutcome.Panic);
        Assert.That(r.Exception!.Message, Does.StartWith("kernel BUG at KTaskTests.cs:").And.Contain("vfio_group_nb_verify() failed"));
    }

    [Test]
    public void WarnOn_ReturnsItsCondition_AndRecordsWhereItFired()
    {
        bool fired = false, quiet = true;
        RunResult r = Runs.Run(mode, k =>
        {
            k.ExpectWarning("group still in use");
            fired = Warn.On(true, "group still in use");
            quiet = Warn.On(false, "never printed");
        });

        Runs.AssertPassed(r);
        Assert.That(fired, Is.True);
        Assert.That(quiet, Is.False);
        KernelWarning w = r.Warnings.Single();
        Assert.That(w.Text, Does.Contain("WARNING: task main/1 at KTaskTests.cs:").And.Contain("group still in use"));
        Assert.That(w.Expected, Is.True);
    }

    [Test]
    public void WarnOnWithAnInterpolatedMessage_FormatsItOnlyWhenItFires()
    {
        long quietBytes = -1;
        int formatted = 0;
        RunResult r = Runs.Run(mode, k =>
        {
            k.ExpectWarning("pfn_list of 7 pages");
            var counted = new FormatCounter(() => formatted++);
            int pages = 7;
            Warn.On(k, false, $"pfn_list of {pages} pages {counted}");
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < 100; i++)
            {
                Warn.On(k, false, $"pfn_list of {pages} pages {counted}");
                Warn.On(false, $"pfn_list of {pages} pages {counted}");
                Bug.On(false, $"pfn_list of {pages} pages {counted}");
            }

            quietBytes = GC.GetAllocatedBytesForCurrentThread() - before;
            Assert.That(Warn.On(k, true, $"pfn_list of {pages} pages {counted}"), Is.True);
        });

        Runs.AssertPassed(r);
        Assert.That(quietBytes, Is.Zero, "a WARN that does not fire allocates nothing");
        Assert.That(formatted, Is.EqualTo(1), "only the firing WARN formatted its message");
        Assert.That(r.Warnings.Single().Text, Does.Contain("pfn_list of 7 pages counted"));
    }

    private sealed class FormatCounter(Action onFormat)
    {
        public override string ToString()
        {
            onFormat();
            return "counted";
        }
    }

    [Test]
    public void WarnOnOnce_ReportsOnlyTheFirstTimeAtACallSite()
    {
        int fired = 0;
        RunResult r = Runs.Run(mode, k =>
        {
            k.ExpectWarning("once");
            for (int i = 0; i < 3; i++)
            {
                if (Warn.OnOnce(true, "once"))
                {
                    fired++;
                }
            }
        });

        Runs.AssertPassed(r);
        Assert.That(fired, Is.EqualTo(3));
        Assert.That(r.Warnings, Has.Count.EqualTo(1));
    }

    // A test of lockdep: the locks-held-at-exit report is what it checks.
    [LeavesKernelWarnings]
    [Test]
    public void ExitingWithALockHeld_IsReported()
    {
        RunResult r = Runs.Run(mode, k => new KMutex(k, "forgotten").Lock());

        Runs.AssertOutcome(r, RunOutcome.UnexpectedWarning);
        Assert.That(r.Warnings.Single().Title, Is.EqualTo("WARNING: main/1 still has locks held!"));
        Assert.That(r.Warnings.Single().Text, Does.Contain("#0: forgotten (forgotten)"));
    }
}

public sealed class KTaskModeSpecificTests
{
    [Test]
    public void RealMode_AdoptsAPlainThread_OnFirstUse()
    {
        var k = new SimKernel();
        var m = new KMutex(k, "m");
        m.Lock();
        Assert.That(m.Owner, Is.SameAs(k.CurrentTask));
        Assert.That(k.CurrentTask.IsAdopted, Is.True);
        m.Unlock();
    }

    [Test]
    public void ControlledMode_RefusesToSpawnOutsideARun()
    {
        SimKernel k = Runs.Kernel(SchedulerMode.Controlled);
        Assert.That(() => k.Spawn("x", () => { }), Throws.InvalidOperationException.With.Message.Contains("inside kernel.Run"));
    }

    [Test]
    public void ControlledMode_RefusesAForeignThreadDuringARun()
    {
        SimKernel k = Runs.Kernel(SchedulerMode.Controlled);
        var m = new KMutex(k, "m");
        Exception? seen = null;
        RunResult r = k.Run(() =>
        {
            // A raw .NET thread is invisible to the scheduler: it may not touch kernel objects.
            var rogue = new Thread(() =>
            {
                try
                {
                    m.Lock();
                }
                catch (InvalidOperationException e)
                {
                    seen = e;
                }
            });
            rogue.Start();
            rogue.Join();
        });

        Runs.AssertPassed(r);
        Assert.That(seen?.Message, Does.Contain("is not a task of that run"));
    }

    [Test]
    public void ControlledMode_SetupCodeOutsideARun_RunsWithoutScheduling_ButMayNotWaitForAnotherTask()
    {
        SimKernel k = Runs.Kernel(SchedulerMode.Controlled);
        var m = new KMutex(k, "m");
        m.Lock();
        m.Unlock();
        var c = new Completion(k, "c");
        Assert.That(() => c.Wait(), Throws.InvalidOperationException.With.Message.Contains("outside a controlled run"));
    }

    [Test]
    public void ControlledMode_SetupCodeOutsideARun_MaySleepForATime_TheClockJumps_AndTimersDueMeanwhileFire()
    {
        SimKernel k = Runs.Kernel(SchedulerMode.Controlled);
        _ = k.CurrentTask;                       // this thread is k's task now (KTask.Msleep sleeps on the current task's kernel)
        var c = new Completion(k, "c");
        long fired = -1;
        using (ITimer timer = k.Clock.CreateTimer(_ =>
        {
            fired = k.Clock.NowNs;
            c.Complete();
        }, null, TimeSpan.FromMilliseconds(30), Timeout.InfiniteTimeSpan))
        {
            KTask.Msleep(100);
        }

        Assert.That(k.Clock.NowNs, Is.EqualTo(100_000_000L));
        Assert.That(fired, Is.EqualTo(30_000_000L));
        Assert.That(c.IsDone, Is.True);

        var d = new Completion(k, "d");
        using ITimer completes = k.Clock.CreateTimer(_ => d.Complete(), null, TimeSpan.FromMilliseconds(5), Timeout.InfiniteTimeSpan);
        Assert.That(d.WaitTimeout(SimClock.SecondsToJiffies(1)), Is.GreaterThan(0), "the timer completes d 5 ms in");
        Assert.That(k.Clock.NowNs, Is.EqualTo(105_000_000L));

        var never = new Completion(k, "never");
        long left = never.WaitTimeout(SimClock.SecondsToJiffies(1));
        Assert.That(left, Is.Zero, "nothing completes it: the wait times out after a second of virtual time");
        Assert.That(k.Clock.NowNs, Is.EqualTo((105_000_000L / SimClock.NsPerJiffy + SimClock.HZ) * SimClock.NsPerJiffy), "a second counted in jiffies from the current jiffy");
    }

    [Test]
    public void Run_IsNotReentrant()
    {
        SimKernel k = Runs.Kernel(SchedulerMode.Controlled);
        RunResult r = k.Run(() => k.Run(() => { }));

        Runs.AssertOutcome(r, RunOutcome.Failed);
        Assert.That(r.Exception, Is.TypeOf<InvalidOperationException>());
    }
}
