using NUnit.Framework;
using Vfio.Kernel;

namespace Vfio.Tests.Kernel;

[TestFixture(SchedulerMode.Real)]
[TestFixture(SchedulerMode.Controlled)]
public sealed class RwSemaphoreTests(SchedulerMode mode)
{
    [Test]
    public void ReadersShareTheSemaphore()
    {
        int maxReaders = 0;
        RunResult r = Runs.Run(mode, k =>
        {
            var sem = new RwSemaphore(k, "memory_lock");
            var both = new Completion(k, "both");
            var go = new Completion(k, "go");
            var readers = Enumerable.Range(0, 2).Select(i => k.Spawn($"r{i}", () =>
            {
                sem.DownRead();
                both.Complete();
                go.Wait();
                sem.UpRead();
            })).ToList();
            both.Wait();
            both.Wait();
            maxReaders = sem.ReaderCount;
            go.CompleteAll();
            readers.ForEach(t => t.Join());
        });

        Runs.AssertPassed(r);
        Assert.That(maxReaders, Is.EqualTo(2));
    }

    [Test]
    public void AWriterExcludesReaders_AndWaitsForThemToLeave()
    {
        var log = new List<string>();
        RunResult r = Runs.Run(mode, k =>
        {
            var sem = new RwSemaphore(k, "sem");
            var logLock = new KMutex(k, "log");
            void Log(string s)
            {
                logLock.Lock();
                log.Add(s);
                logLock.Unlock();
            }

            sem.DownRead();
            KTask writer = k.Spawn("writer", () =>
            {
                sem.DownWrite();
                Log("writer in");
                sem.UpWrite();
            });
            Runs.SpinUntil(() => sem.IsContended);
            Log("reader out");
            sem.UpRead();
            writer.Join();
            sem.DownWrite();
            Invariant.Check(sem.Writer == k.CurrentTask, "main is the writer");
            sem.UpWrite();
        });

        Runs.AssertPassed(r);
        Assert.That(log, Is.EqualTo(new[] { "reader out", "writer in" }));
    }

    // Deadlocks on purpose with main holding its read lock: with real threads, whether the
    // aborted main task also gets lockdep's locks-held-at-exit report depends on timing.
    [LeavesKernelWarnings]
    [Test]
    public void AQueuedWriterBlocksNewReaders()
    {
        bool trylockWhileWriterQueued = true;
        var order = new List<string>();
        RunResult r = Runs.Run(mode, k =>
        {
            var sem = new RwSemaphore(k, "sem");
            var orderLock = new KMutex(k, "order");
            sem.DownRead();
            KTask writer = k.Spawn("writer", () =>
            {
                sem.DownWrite();
                orderLock.Lock();
                order.Add("writer");
                orderLock.Unlock();
                sem.UpWrite();
            });
            Runs.SpinUntil(() => sem.IsContended);
            KTask reader = k.Spawn("late-reader", () =>
            {
                trylockWhileWriterQueued = sem.DownReadTrylock();
                if (trylockWhileWriterQueued)
                {
                    sem.UpRead();
                }

                sem.DownRead();
                orderLock.Lock();
                order.Add("reader");
                orderLock.Unlock();
                sem.UpRead();
            });
            reader.Join();
        });

        // main never releases its read hold before joining the late reader, which waits
        // behind the writer, which waits for main: a deadlock, by design of rwsem fairness.
        Runs.AssertOutcome(r, RunOutcome.Deadlock);
        Assert.That(trylockWhileWriterQueued, Is.False);
        Assert.That(order, Is.Empty);
        Assert.That(r.Graph!.For("writer")!.Holders, Is.EqualTo(new[] { "main/1" }));
        Assert.That(r.Graph!.For("late-reader")!.Operation, Is.EqualTo("down_read"));
    }

    // A test of lockdep: the recursive-read report is what it checks.
    [LeavesKernelWarnings]
    [Test]
    public void ReadingTwiceBehindAWriter_Deadlocks_AndLockdepSaysRecursiveLocking()
    {
        RunResult r = Runs.Run(mode, k =>
        {
            var sem = new RwSemaphore(k, "vdev.memory_lock");
            sem.DownRead();
            k.Spawn("writer", () => { sem.DownWrite(); sem.UpWrite(); });
            Runs.SpinUntil(() => sem.IsContended);
            sem.DownRead(); // The nested read queues behind the writer.
        });

        Runs.AssertOutcome(r, RunOutcome.Deadlock);
        Assert.That(r.Warnings[0].Title, Is.EqualTo("WARNING: possible recursive locking detected"));
        Assert.That(r.Graph!.Cycle, Is.Not.Empty);
    }

    [Test]
    public void DowngradeWrite_AdmitsQueuedReaders_ButNotWriters()
    {
        int readersAfterDowngrade = 0;
        bool writeTry = true;
        RunResult r = Runs.Run(mode, k =>
        {
            var sem = new RwSemaphore(k, "sem");
            sem.DownWrite();
            var readers = Enumerable.Range(0, 2).Select(i => k.Spawn($"r{i}", () => { sem.DownRead(); sem.UpRead(); })).ToList();
            Runs.SpinUntil(() => sem.IsContended);
            sem.DowngradeWrite();
            readersAfterDowngrade = sem.ReaderCount;
            writeTry = sem.DownWriteTrylock();
            readers.ForEach(t => t.Join());
            sem.UpRead();
        });

        Runs.AssertPassed(r);
        Assert.That(readersAfterDowngrade, Is.GreaterThanOrEqualTo(1));
        Assert.That(writeTry, Is.False);
    }

    [Test]
    public void AnInterruptedWriter_LeavesTheQueue_AndLetsReadersBehindItIn()
    {
        int writerRet = 0;
        RunResult r = Runs.Run(mode, k =>
        {
            var sem = new RwSemaphore(k, "sem");
            sem.DownRead();
            KTask writer = k.Spawn("writer", () => writerRet = sem.DownWriteKillable());
            Runs.SpinUntil(() => sem.IsContended);
            KTask reader = k.Spawn("reader", () => { sem.DownRead(); sem.UpRead(); });
            Runs.SpinUntil(() => reader.State == TaskState.Blocked);
            writer.SendSignal(Signals.SIGKILL);
            writer.Join();
            reader.Join();
            sem.UpRead();
        });

        Runs.AssertPassed(r);
        Assert.That(writerRet, Is.EqualTo(-(int)Errno.EINTR));
    }

    // A test of the rwsem's owner check: the up_write-by-a-non-owner WARN is what it checks.
    [LeavesKernelWarnings]
    [Test]
    public void UpWriteByANonOwner_Warns()
    {
        RunResult r = Runs.Run(mode, k =>
        {
            k.ExpectWarning("bad unlock balance");
            var sem = new RwSemaphore(k, "sem");
            sem.DownWrite();
            k.Spawn("other", sem.UpWrite).Join();
        });

        Runs.AssertOutcome(r, RunOutcome.UnexpectedWarning);
        Assert.That(r.Warnings.Last().Title, Does.Contain("up_write(sem) by other/2, owned by main/1"));
    }

    // A test of lockdep_assert_held_write: the WARN of a reader is what it checks.
    [LeavesKernelWarnings]
    [Test]
    public void AssertHeld_AcceptsEitherMode_AssertHeldWrite_OnlyWriters()
    {
        RunResult r = Runs.Run(mode, k =>
        {
            var sem = new RwSemaphore(k, "sem");
            sem.DownRead();
            sem.AssertHeld();
            sem.AssertHeldWrite();
            sem.UpRead();
        });

        Runs.AssertOutcome(r, RunOutcome.UnexpectedWarning);
        Assert.That(r.Warnings.Single().Title, Does.Contain("lockdep_assert_held_write(sem)"));
    }

    // A test of lockdep_assert_held: the WARN when the lock is not held is what it checks.
    [LeavesKernelWarnings]
    [Test]
    public void AssertHeld_WarnsWhenOnlyAnotherTaskHoldsIt([Values] bool write)
    {
        RunResult r = Runs.Run(mode, k =>
        {
            var sem = new RwSemaphore(k, "sem");
            if (write)
            {
                sem.DownWrite();
            }
            else
            {
                sem.DownRead();
            }

            k.Spawn("other", () =>
            {
                sem.AssertHeld();
                sem.AssertHeldWrite();
            }).Join();
            if (write)
            {
                sem.UpWrite();
            }
            else
            {
                sem.UpRead();
            }
        });

        Runs.AssertOutcome(r, RunOutcome.UnexpectedWarning);
        Assert.That(r.Warnings.Select(w => w.Title), Is.EqualTo(new[]
        {
            "WARNING: lockdep_assert_held(sem): not held by other/2",
            "WARNING: lockdep_assert_held_write(sem): not held for writing by other/2",
        }));
    }

    // A test of lockdep_assert_held: the WARN when the lock is not held is what it checks.
    [LeavesKernelWarnings]
    [Test]
    public void AssertHeldRead_AcceptsOnlyReaders()
    {
        RunResult r = Runs.Run(mode, k =>
        {
            var sem = new RwSemaphore(k, "sem");
            sem.DownRead();
            sem.AssertHeldRead();
            sem.UpRead();
            sem.DownWrite();
            sem.AssertHeld();
            sem.AssertHeldRead();
            sem.UpWrite();
        });

        Runs.AssertOutcome(r, RunOutcome.UnexpectedWarning);
        Assert.That(r.Warnings.Single().Title, Does.Contain("lockdep_assert_held_read(sem): not held for reading by main/1"));
    }

    // A test of lockdep_assert_held: the WARN when the lock is not held is what it checks.
    [LeavesKernelWarnings]
    [Test]
    public void DebugAssertHeld_ChecksInDebugBuildsOnly()
    {
        RunResult r = Runs.Run(mode, k =>
        {
            var sem = new RwSemaphore(k, "sem");
            sem.DownRead();
            sem.DebugAssertHeld();
            sem.UpRead();
            sem.DebugAssertHeld();
        });

#if DEBUG
        Runs.AssertOutcome(r, RunOutcome.UnexpectedWarning);
        Assert.That(r.Warnings.Single().Title, Does.Contain("lockdep_assert_held(sem): not held by main/1"));
#else
        Runs.AssertPassed(r);
#endif
    }
}
