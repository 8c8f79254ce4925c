using NUnit.Framework;
using Vfio.Kernel;

namespace Vfio.Tests.Kernel;

[TestFixture(SchedulerMode.Real)]
[TestFixture(SchedulerMode.Controlled)]
public sealed class KMutexTests(SchedulerMode mode)
{
    [Test]
    public void LockThenUnlock_TracksTheOwner()
    {
        KTask? ownerInside = null;
        bool lockedInside = false, lockedAfter = true;
        RunResult r = Runs.Run(mode, k =>
        {
            var m = new KMutex(k, "dev[0].lock");
            m.Lock();
            ownerInside = m.Owner;
            lockedInside = m.IsLocked;
            m.Unlock();
            lockedAfter = m.IsLocked;
        });

        Runs.AssertPassed(r);
        Assert.That(ownerInside?.Comm, Is.EqualTo("main"));
        Assert.That(lockedInside, Is.True);
        Assert.That(lockedAfter, Is.False);
    }

    [Test]
    public void TryLock_FailsWhileAnotherTaskHoldsIt_AndSucceedsOnceFree()
    {
        bool whileHeld = true, afterRelease = false;
        RunResult r = Runs.Run(mode, k =>
        {
            var m = new KMutex(k, "m");
            var held = new Completion(k, "held");
            var release = new Completion(k, "release");
            KTask holder = k.Spawn("holder", () =>
            {
                m.Lock();
                held.Complete();
                release.Wait();
                m.Unlock();
            });
            held.Wait();
            whileHeld = m.TryLock();
            release.Complete();
            holder.Join();
            afterRelease = m.TryLock();
            if (afterRelease)
            {
                m.Unlock();
            }
        });

        Runs.AssertPassed(r);
        Assert.That(whileHeld, Is.False);
        Assert.That(afterRelease, Is.True);
    }

    [Test]
    public void ProtectsAReadModifyWriteAcrossSchedulingPoints()
    {
        const int tasks = 4, rounds = 50;
        int counter = 0;
        RunResult r = Runs.Run(mode, k =>
        {
            var m = new KMutex(k, "counter_lock");
            var all = new List<KTask>();
            for (int i = 0; i < tasks; i++)
            {
                all.Add(k.Spawn($"w{i}", () =>
                {
                    for (int j = 0; j < rounds; j++)
                    {
                        m.Lock();
                        int v = counter;
                        KTask.Schedule(); // Another task may run here; it must not get in.
                        counter = v + 1;
                        m.Unlock();
                    }
                }));
            }

            foreach (KTask t in all)
            {
                t.Join();
            }
        }, seed: 7);

        Runs.AssertPassed(r);
        Assert.That(counter, Is.EqualTo(tasks * rounds));
    }

    // A test of the mutex's owner checks: the bad-unlock WARNs are what it checks.
    [LeavesKernelWarnings]
    [Test]
    public void UnlockByAnotherTask_Warns_AndTheRunFailsUnlessExpected()
    {
        RunResult r = Runs.Run(mode, k =>
        {
            var m = new KMutex(k, "m");
            m.Lock();
            k.Spawn("intruder", m.Unlock).Join();
        });

        // As with lockdep and DEBUG_MUTEXES on: lockdep sees a release by a task that does
        // not hold the lock, and the mutex debug code sees the wrong owner.
        Runs.AssertOutcome(r, RunOutcome.UnexpectedWarning);
        Assert.That(r.Warnings.Select(w => w.Title), Is.EqualTo(new[]
        {
            "WARNING: bad unlock balance detected!",
            "WARNING: DEBUG_LOCKS_WARN_ON(owner != current): intruder/2 called mutex_unlock on m, owned by main/1",
        }));

        RunResult expected = Runs.Run(mode, k =>
        {
            k.ExpectWarning("bad unlock balance");
            k.ExpectWarning("owner != current");
            var m = new KMutex(k, "m");
            m.Lock();
            k.Spawn("intruder", m.Unlock).Join();
        });
        Runs.AssertPassed(expected);
        Assert.That(expected.Warnings, Has.Count.EqualTo(2));
        Assert.That(expected.Warnings.All(w => w.Expected), Is.True);
    }

    [Test]
    public void LockInterruptible_ReturnsEintrOnASignal_AndLeavesTheHolderInPlace()
    {
        int ret = 0;
        string? ownerAfter = null;
        RunResult r = Runs.Run(mode, k =>
        {
            var m = new KMutex(k, "m");
            m.Lock();
            KTask waiter = k.Spawn("waiter", () => ret = m.LockInterruptible());
            waiter.SendSignal(Signals.SIGINT);
            waiter.Join();
            ownerAfter = m.Owner?.DisplayName;
            m.Unlock();
        });

        Runs.AssertPassed(r);
        Assert.That(ret, Is.EqualTo(-(int)Errno.EINTR));
        Assert.That(ownerAfter, Is.EqualTo("main/1"));
    }

    [Test]
    public void ASignalledWaiterPickedByUnlock_DoesNotSwallowTheWakeUp_OfTheWaiterBehindIt()
    {
        // A holds, B sleeps interruptibly, C sleeps uninterruptibly; B is signalled and A
        // unlocks. Whichever way B's signal and A's wake-up race, C must get the lock.
        int runs = mode == SchedulerMode.Controlled ? 64 : 16;
        for (ulong seed = 1; seed <= (ulong)runs; seed++)
        {
            int retB = 1;
            bool cLocked = false;
            RunResult r = Runs.Run(mode, k =>
            {
                var m = new KMutex(k, "m");
                m.Lock();
                KTask b = k.Spawn("B", () =>
                {
                    retB = m.LockInterruptible();
                    if (retB == 0)
                    {
                        m.Unlock();
                    }
                });
                Runs.SpinUntil(() => b.State == TaskState.Blocked && b.WaitObject is KMutex);
                KTask c = k.Spawn("C", () =>
                {
                    m.Lock();
                    cLocked = true;
                    m.Unlock();
                });
                Runs.SpinUntil(() => c.State == TaskState.Blocked && c.WaitObject is KMutex);
                b.SendSignal(Signals.SIGINT);
                m.Unlock();
                b.Join();
                c.Join();
            }, seed: seed);

            Runs.AssertPassed(r);
            Assert.That(cLocked, Is.True, $"seed {seed}");
            Assert.That(retB, Is.EqualTo(0).Or.EqualTo(-(int)Errno.EINTR), $"seed {seed}");
        }
    }

    [Test]
    public void LockKillable_IgnoresOrdinarySignals_ButNotSigkill()
    {
        int ret = 1;
        RunResult r = Runs.Run(mode, k =>
        {
            var m = new KMutex(k, "m");
            var released = new Completion(k, "released");
            m.Lock();
            KTask waiter = k.Spawn("waiter", () =>
            {
                ret = m.LockKillable();
                if (ret == 0)
                {
                    m.Unlock();
                }
            });
            waiter.SendSignal(Signals.SIGTERM);
            waiter.SendSignal(Signals.SIGKILL);
            waiter.Join();
            m.Unlock();
            released.Complete();
        });

        Runs.AssertPassed(r);
        Assert.That(ret, Is.EqualTo(-(int)Errno.EINTR));
    }

    // A test of lockdep: the recursive-locking report is what it checks.
    [LeavesKernelWarnings]
    [Test]
    public void LockingTwiceFromTheOwner_IsReportedByLockdep_AndDeadlocks()
    {
        RunResult r = Runs.Run(mode, k =>
        {
            var m = new KMutex(k, "vfio.group_lock");
            m.Lock();
            m.Lock();
        });

        Runs.AssertOutcome(r, RunOutcome.Deadlock);
        Assert.That(r.Warnings.Single().Title, Is.EqualTo("WARNING: possible recursive locking detected"));
        WaitEdge? e = r.Graph!.For("main");
        Assert.That(e!.ObjectName, Is.EqualTo("vfio.group_lock"));
        Assert.That(e.Holders, Is.EqualTo(new[] { "main/1" }));
    }

    [Test]
    public void ScopedGuard_UnlocksOnDispose()
    {
        bool inside = false, after = true;
        RunResult r = Runs.Run(mode, k =>
        {
            var m = new KMutex(k, "m");
            using (m.Scoped())
            {
                inside = m.IsLocked;
            }

            after = m.IsLocked;
        });

        Runs.AssertPassed(r);
        Assert.That(inside, Is.True);
        Assert.That(after, Is.False);
    }

    // A test of lockdep_assert_held: the WARN when the lock is not held is what it checks.
    [LeavesKernelWarnings]
    [Test]
    public void AssertHeld_WarnsOnlyWhenTheCallerDoesNotHoldIt()
    {
        RunResult r = Runs.Run(mode, k =>
        {
            var m = new KMutex(k, "m");
            m.Lock();
            m.AssertHeld();
            m.Unlock();
            m.AssertHeld();
        });

        Runs.AssertOutcome(r, RunOutcome.UnexpectedWarning);
        Assert.That(r.Warnings.Single().Title, Does.Contain("lockdep_assert_held(m): not held by main/1"));
    }

    // A test of lockdep_assert_held: the WARN when the lock is not held is what it checks.
    [LeavesKernelWarnings]
    [Test]
    public void AssertHeld_WarnsWhenAnotherTaskHoldsIt_AndNamesTheFunctionThatAsserted()
    {
        RunResult r = Runs.Run(mode, k =>
        {
            var m = new KMutex(k, "m");
            m.Lock();
            k.Spawn("other", () => m.AssertHeld()).Join();
            m.Unlock();
        });

        Runs.AssertOutcome(r, RunOutcome.UnexpectedWarning);
        KernelWarning w = r.Warnings.Single();
        Assert.That(w.Kind, Is.EqualTo(WarningKind.Lockdep));
        Assert.That(w.Title, Does.Contain("lockdep_assert_held(m): not held by other/2"));
        Assert.That(w.Text, Does.Contain("KMutexTests.cs:").And.Contain(nameof(AssertHeld_WarnsWhenAnotherTaskHoldsIt_AndNamesTheFunctionThatAsserted)));
    }

    // A test of lockdep_assert_held: the WARN when the lock is not held is what it checks.
    [LeavesKernelWarnings]
    [Test]
    public void DebugAssertHeld_ChecksInDebugBuildsOnly()
    {
        RunResult r = Runs.Run(mode, k =>
        {
            var m = new KMutex(k, "m");
            m.Lock();
            m.DebugAssertHeld();
            m.Unlock();
            m.DebugAssertHeld();
        });

#if DEBUG
        Runs.AssertOutcome(r, RunOutcome.UnexpectedWarning);
        Assert.That(r.Warnings.Single().Title, Does.Contain("lockdep_assert_held(m): not held by main/1"));
#else
        Runs.AssertPassed(r);
#endif
    }

    [Test]
    public void TheLockClassDropsInstanceIndices()
    {
        var k = new SimKernel();
        Assert.That(new KMutex(k, "vfio_group[26].group_lock").Class.Name, Is.EqualTo("vfio_group.group_lock"));
        Assert.That(new KMutex(k, "vfio_group[27].group_lock").Class, Is.SameAs(new KMutex(k, "vfio_group[26].group_lock").Class));
    }
}
