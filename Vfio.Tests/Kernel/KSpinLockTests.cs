using NUnit.Framework;
using Vfio.Kernel;

namespace Vfio.Tests.Kernel;

[TestFixture(SchedulerMode.Real)]
[TestFixture(SchedulerMode.Controlled)]
public sealed class KSpinLockTests(SchedulerMode mode)
{
    [Test]
    public void ProvidesMutualExclusion()
    {
        long counter = 0;
        RunResult r = Runs.Run(mode, k =>
        {
            var s = new KSpinLock(k, "kvm_ref_lock");
            var probe = new RefCount(k, "probe", 1);
            var tasks = Enumerable.Range(0, 3).Select(i => k.Spawn($"t{i}", () =>
            {
                for (int j = 0; j < 100; j++)
                {
                    s.Lock();
                    long v = counter;
                    probe.Read(); // A scheduling point, but not a preemption point under a spinlock.
                    counter = v + 1;
                    s.Unlock();
                }
            })).ToList();
            tasks.ForEach(t => t.Join());
        }, seed: 11);

        Runs.AssertPassed(r);
        Assert.That(counter, Is.EqualTo(300));
    }

    [Test]
    public void HoldingItDisablesPreemption_AndCondReschedIsABug()
    {
        var order = new List<string>();
        RunResult r = Runs.Run(mode, k =>
        {
            var s = new KSpinLock(k, "lock");
            var go = new Completion(k, "go");
            var rc = new RefCount(k, "rc", 1);
            KTask other = k.Spawn("other", () =>
            {
                go.Wait();
                lock (order)
                {
                    order.Add("other");
                }
            });
            s.Lock();
            go.Complete();
            for (int i = 0; i < 20; i++)
            {
                rc.Read();
            }

            lock (order)
            {
                order.Add("holder");
            }

            s.Unlock();
            other.Join();
            k.ExpectWarning("cond_resched");
            s.Lock();
            KTask.Schedule();
            s.Unlock();
        }, strategy: StrategySpec.RoundRobin());

        Runs.AssertPassed(r);
        if (mode == SchedulerMode.Controlled)
        {
            Assert.That(order, Is.EqualTo(new[] { "holder", "other" }), "round-robin would switch at every point, but not under the spinlock");
        }

        Assert.That(r.Warnings.Single().Kind, Is.EqualTo(WarningKind.SleepInAtomic));
    }

    // A test of might_sleep: the sleeping-in-atomic BUG is what it checks.
    [LeavesKernelWarnings]
    [Test]
    public void TakingAFreeMutexWhileHoldingIt_IsABugReport()
    {
        RunResult r = Runs.Run(mode, k =>
        {
            var s = new KSpinLock(k, "kvm_ref_lock");
            var m = new KMutex(k, "free_mutex");
            s.Lock();
            m.Lock(); // mutex_lock() calls might_sleep() before it finds the mutex free.
            m.Unlock();
            s.Unlock();
        });

        Runs.AssertOutcome(r, RunOutcome.UnexpectedWarning);
        KernelWarning w = r.Warnings.Single();
        Assert.That(w.Kind, Is.EqualTo(WarningKind.SleepInAtomic));
        Assert.That(w.Text, Does.Contain("mutex free_mutex"));
    }

    // A test of might_sleep: the sleeping-in-atomic BUG is what it checks.
    [LeavesKernelWarnings]
    [Test]
    public void TakingAFreeRwsemOrWaitingOnATrueConditionWhileHoldingIt_IsABugReport([Values("down_read", "down_write", "wait_event")] string op)
    {
        RunResult r = Runs.Run(mode, k =>
        {
            var s = new KSpinLock(k, "kvm_ref_lock");
            var sem = new RwSemaphore(k, "free_rwsem");
            var wq = new WaitQueue(k, "wq");
            s.Lock();
            switch (op)
            {
                case "down_read":
                    sem.DownRead();
                    sem.UpRead();
                    break;
                case "down_write":
                    sem.DownWrite();
                    sem.UpWrite();
                    break;
                default:
                    wq.WaitEvent(() => true);
                    break;
            }

            s.Unlock();
        });

        Runs.AssertOutcome(r, RunOutcome.UnexpectedWarning);
        Assert.That(r.Warnings.Single().Kind, Is.EqualTo(WarningKind.SleepInAtomic));
    }

    // A test of might_sleep: the sleeping-in-atomic BUG is what it checks.
    [LeavesKernelWarnings]
    [Test]
    public void SleepingWhileHoldingIt_IsABugReport()
    {
        RunResult r = Runs.Run(mode, k =>
        {
            var s = new KSpinLock(k, "kvm_ref_lock");
            var c = new Completion(k, "c");
            c.Complete();
            s.Lock();
            c.Wait(); // wait_for_completion() may sleep, so might_sleep() complains even though it won't.
            s.Unlock();
        });

        Runs.AssertOutcome(r, RunOutcome.UnexpectedWarning);
        KernelWarning w = r.Warnings.Single();
        Assert.That(w.Kind, Is.EqualTo(WarningKind.SleepInAtomic));
        Assert.That(w.Text, Does.Contain("BUG: sleeping function called from invalid context").And.Contain("kvm_ref_lock"));
    }

    // A test of lockdep_assert_held: the WARN when the lock is not held is what it checks.
    [LeavesKernelWarnings]
    [Test]
    public void AssertHeld_WarnsOnlyWhenTheCallerDoesNotHoldIt()
    {
        RunResult r = Runs.Run(mode, k =>
        {
            var s = new KSpinLock(k, "s");
            s.Lock();
            s.AssertHeld();
            s.DebugAssertHeld();
            s.Unlock();
            s.AssertHeld();
        });

        Runs.AssertOutcome(r, RunOutcome.UnexpectedWarning);
        KernelWarning w = r.Warnings.Single();
        Assert.That(w.Kind, Is.EqualTo(WarningKind.Lockdep));
        Assert.That(w.Title, Does.Contain("lockdep_assert_held(s): not held by main/1"));
    }

    [Test]
    public void TryLock_FailsWhenHeld_AndThePreemptCountIsBalanced()
    {
        bool second = true;
        int countInside = 0, countAfter = -1;
        RunResult r = Runs.Run(mode, k =>
        {
            var s = new KSpinLock(k, "s");
            Invariant.Check(s.TryLock(), "a free spinlock can be taken");
            countInside = k.CurrentTask.PreemptCount;
            k.Spawn("other", () => second = s.TryLock()).Join();
            s.Unlock();
            countAfter = k.CurrentTask.PreemptCount;
        });

        Runs.AssertPassed(r);
        Assert.That(second, Is.False);
        Assert.That(countInside, Is.EqualTo(1));
        Assert.That(countAfter, Is.Zero);
    }
}
