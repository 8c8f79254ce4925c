using NUnit.Framework;
using Vfio.Kernel;

namespace Vfio.Tests.Kernel;

[TestFixture(SchedulerMode.Real)]
[TestFixture(SchedulerMode.Controlled)]
public sealed class LockdepTests(SchedulerMode mode)
{
    // A test of lockdep: the AB-BA report is what it checks.
    [LeavesKernelWarnings]
    [Test]
    public void AbBaAcrossTwoTasks_IsReported_InARunWhereNoDeadlockHappens()
    {
        RunResult r = Runs.Run(mode, k =>
        {
            var a = new KMutex(k, "vfio_group[3].group_lock");
            var b = new KMutex(k, "kvm[0].lock");
            // Strictly one after the other: the orders conflict, but nothing ever waits.
            k.Spawn("open", () => { a.Lock(); b.Lock(); b.Unlock(); a.Unlock(); }).Join();
            k.Spawn("release", () => { b.Lock(); a.Lock(); a.Unlock(); b.Unlock(); }).Join();
        });

        Runs.AssertOutcome(r, RunOutcome.UnexpectedWarning);
        KernelWarning w = r.Warnings.Single();
        Assert.That(w.Kind, Is.EqualTo(WarningKind.Lockdep));
        Assert.That(w.Task, Does.StartWith("release/"));
        TestContext.Out.WriteLine(w.Text);
        Assert.That(w.Text, Does.Contain("WARNING: possible circular locking dependency detected"));
        Assert.That(w.Text, Does.Contain("is trying to acquire lock:\nvfio_group[3].group_lock (vfio_group.group_lock)"));
        Assert.That(w.Text, Does.Contain("but task is already holding lock:\nkvm[0].lock (kvm.lock)"));
        Assert.That(w.Text, Does.Contain("which lock already depends on the new lock."));
        Assert.That(w.Text, Does.Contain("open/2 acquired (kvm.lock)"));
        Assert.That(w.Text, Does.Contain("lock(kvm.lock);").And.Contain("lock(vfio_group.group_lock);"));
        Assert.That(w.Text, Does.Contain("*** DEADLOCK ***"));
        Assert.That(w.Text, Does.Contain("1 lock held by release/3:"));
    }

    [Test]
    public void ExpectedSplats_DoNotFailTheRun()
    {
        RunResult r = Runs.Run(mode, k =>
        {
            k.ExpectWarning("circular locking dependency");
            var a = new KMutex(k, "a");
            var b = new KMutex(k, "b");
            a.Lock(); b.Lock(); b.Unlock(); a.Unlock();
            b.Lock(); a.Lock(); a.Unlock(); b.Unlock();
        });

        Runs.AssertPassed(r);
        Assert.That(r.Warnings.Single().Expected, Is.True);
    }

    // A test of lockdep: the three-lock cycle report is what it checks.
    [LeavesKernelWarnings]
    [Test]
    public void ALongerCycle_ShowsTheChain()
    {
        RunResult r = Runs.Run(mode, k =>
        {
            var a = new KMutex(k, "a");
            var b = new KMutex(k, "b");
            var c = new KMutex(k, "c");
            a.Lock(); b.Lock(); b.Unlock(); a.Unlock();
            b.Lock(); c.Lock(); c.Unlock(); b.Unlock();
            c.Lock(); a.Lock(); a.Unlock(); c.Unlock();
        });

        Runs.AssertOutcome(r, RunOutcome.UnexpectedWarning);
        Assert.That(r.Warnings.Single().Text, Does.Contain("Chain exists of:\n  a --> b --> c"));
    }

    // A test of lockdep: the recursive-locking report without a subclass is what it checks.
    [LeavesKernelWarnings]
    [Test]
    public void NestingTwoLocksOfOneClass_NeedsASubclass()
    {
        RunResult unannotated = Runs.Run(mode, k =>
        {
            var parent = new KMutex(k, "dev[0].lock");
            var child = new KMutex(k, "dev[1].lock");
            parent.Lock();
            child.Lock();
            child.Unlock();
            parent.Unlock();
        });
        Runs.AssertOutcome(unannotated, RunOutcome.UnexpectedWarning);
        Assert.That(unannotated.Warnings.Single().Text, Does.Contain("possible recursive locking detected").And.Contain("May be due to missing lock nesting notation"));

        RunResult annotated = Runs.Run(mode, k =>
        {
            var parent = new KMutex(k, "dev[0].lock");
            var child = new KMutex(k, "dev[1].lock");
            parent.Lock();
            child.LockNested(1);
            child.Unlock();
            parent.Unlock();
        });
        Runs.AssertPassed(annotated);
    }

    [Test]
    public void TrylockAddsNoDependency()
    {
        RunResult r = Runs.Run(mode, k =>
        {
            var a = new KMutex(k, "a");
            var b = new KMutex(k, "b");
            b.Lock();
            Invariant.Check(a.TryLock(), "a is free");
            a.Unlock();
            b.Unlock();
            a.Lock();
            b.Lock();
            b.Unlock();
            a.Unlock();
        });

        Runs.AssertPassed(r);
    }

    [Test]
    public void TheFirstReportTurnsTheValidatorOff()
    {
        bool before = false, after = true;
        RunResult r = Runs.Run(mode, k =>
        {
            k.ExpectWarning("circular");
            before = k.Lockdep.Enabled;
            var a = new KMutex(k, "a");
            var b = new KMutex(k, "b");
            var c = new KMutex(k, "c");
            a.Lock(); b.Lock(); b.Unlock(); a.Unlock();
            b.Lock(); a.Lock(); a.Unlock(); b.Unlock();
            after = k.Lockdep.Enabled;
            c.Lock(); c.Lock(); // Would be a recursive-locking splat, but validation is off now.
        });

        Runs.AssertOutcome(r, RunOutcome.Deadlock);
        Assert.That(before, Is.True);
        Assert.That(after, Is.False);
        Assert.That(r.Warnings, Has.Count.EqualTo(1));
    }

    [Test]
    public void RecordsDependencies_AndHeldLocks()
    {
        IReadOnlyList<(string, string)> deps = [];
        IReadOnlyList<string> held = [];
        RunResult r = Runs.Run(mode, k =>
        {
            var groups = new KMutex(k, "vfio.group_lock");
            var group = new KMutex(k, "vfio_group[0].group_lock");
            var sem = new RwSemaphore(k, "vfio_device_set[0].lock");
            groups.Lock();
            group.Lock();
            sem.DownRead();
            held = k.Lockdep.HeldLocks(k.CurrentTask);
            sem.UpRead();
            group.Unlock();
            groups.Unlock();
            deps = k.Lockdep.Dependencies;
        });

        Runs.AssertPassed(r);
        Assert.That(deps, Is.EqualTo(new[]
        {
            ("vfio.group_lock", "vfio_group.group_lock"),
            ("vfio_group.group_lock", "vfio_device_set.lock"),
        }));
        Assert.That(held, Has.Count.EqualTo(3));
        Assert.That(held[2], Does.StartWith("vfio_device_set[0].lock (vfio_device_set.lock) [read], at: "));
    }

    // A test of lockdep: the cycle through a read lock is what it checks.
    [LeavesKernelWarnings]
    [Test]
    public void ReadLocksTakePartInCycles()
    {
        RunResult r = Runs.Run(mode, k =>
        {
            var sem = new RwSemaphore(k, "memory_lock");
            var m = new KMutex(k, "igate");
            sem.DownRead(); m.Lock(); m.Unlock(); sem.UpRead();
            m.Lock(); sem.DownWrite(); sem.UpWrite(); m.Unlock();
        });

        Runs.AssertOutcome(r, RunOutcome.UnexpectedWarning);
        Assert.That(r.Warnings.Single().Title, Is.EqualTo("WARNING: possible circular locking dependency detected"));
    }

    [Test]
    public void WithLockdepOff_NothingIsReported()
    {
        RunResult r = Runs.Run(mode, k =>
        {
            var a = new KMutex(k, "a");
            var b = new KMutex(k, "b");
            a.Lock(); b.Lock(); b.Unlock(); a.Unlock();
            b.Lock(); a.Lock(); a.Unlock(); b.Unlock();
        }, lockdep: false);

        Runs.AssertPassed(r);
        Assert.That(r.Warnings, Is.Empty);
    }
}
