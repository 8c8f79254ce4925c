// Models kernel/locking/mutex.c and include/linux/mutex.h (v6.12): a sleeping lock with a
// single owner, not recursive, released only by its owner. The owner/sleeper mechanics
// are in OwnedLock; this file adds the mutex API, scheduling points and lockdep.

using System.Runtime.CompilerServices;

namespace Vfio.Kernel;

/// <summary>
/// <c>struct mutex</c>: a sleeping lock with one owner. Locking it again from the owner
/// deadlocks (and lockdep reports it); unlocking from another task WARNs.
/// </summary>
public sealed class KMutex : OwnedLock
{
    /// <summary>
    /// Creates a mutex named <paramref name="name"/>. The lock class defaults to the name
    /// with instance indices removed (<c>vfio_group[26].group_lock</c> →
    /// <c>vfio_group.group_lock</c>), like the kernel's per-init-site lock class.
    /// </summary>
    public KMutex(SimKernel kernel, string name, LockClass? lockClass = null)
        : base(kernel, name, lockClass)
    {
    }

    /// <inheritdoc/>
    public override string Kind => "mutex";

    internal override string WakeHint => "mutex_unlock()";

    /// <summary>mutex_lock(): sleeps until the mutex is free, then takes it.</summary>
    public void Lock([CallerMemberName] string caller = "", [CallerLineNumber] int line = 0)
        => LockCore(WaitKind.Uninterruptible, 0, caller, line);

    /// <summary>mutex_lock_nested(): as <see cref="Lock"/> with a lockdep subclass for legal nesting within one class.</summary>
    public void LockNested(int subclass, [CallerMemberName] string caller = "", [CallerLineNumber] int line = 0)
        => LockCore(WaitKind.Uninterruptible, subclass, caller, line);

    /// <summary>mutex_lock_interruptible(): 0, or -EINTR when a signal arrives while sleeping.</summary>
    public int LockInterruptible([CallerMemberName] string caller = "", [CallerLineNumber] int line = 0)
        => LockCore(WaitKind.Interruptible, 0, caller, line);

    /// <summary>mutex_lock_killable(): 0, or -EINTR when SIGKILL arrives while sleeping.</summary>
    public int LockKillable([CallerMemberName] string caller = "", [CallerLineNumber] int line = 0)
        => LockCore(WaitKind.Killable, 0, caller, line);

    /// <summary>mutex_trylock(): takes the mutex if it is free; never sleeps.</summary>
    public bool TryLock([CallerMemberName] string caller = "", [CallerLineNumber] int line = 0)
    {
        KTask t = KTask.CurrentFor(Kernel);
        Kernel.BeforeOp(t, SchedOp.MutexTrylock, this);
        if (!TryTake(t))
        {
            return false;
        }

        if (Kernel.LockdepActive)
        {
            Kernel.Lockdep.Acquired(t, this, Class, 0, read: false, trylock: true, caller, line);
        }

        Kernel.Trace.LockAcquired(t, this, "trylock");
        return true;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private int LockCore(WaitKind kind, int subclass, string caller, int line)
    {
        KTask t = KTask.CurrentFor(Kernel);

        // mutex_lock() calls might_sleep() before it looks at the lock, so taking even a
        // free mutex in atomic context is reported.
        Kernel.Lockdep.MightSleep(t, this);
        int flags = Kernel.Flags;
        if (flags != 0)
        {
            Kernel.BeforeOp(t, SchedOp.MutexLock, this);
            if ((flags & SimKernel.FlagLockdep) != 0)
            {
                Kernel.Lockdep.BeforeAcquire(t, this, Class, subclass, read: false, caller, line);
            }
        }

        if (!TryTake(t))
        {
            if ((flags & SimKernel.FlagTrace) != 0)
            {
                Kernel.Trace.Event(t, "lock_contended", this);
            }

            int r = TakeSlow(t, kind, SchedOp.MutexLock);
            if (r != 0)
            {
                return r;
            }
        }

        if (flags != 0)
        {
            AfterLock(t, flags, subclass, caller, line);
        }

        return 0;
    }

    private void AfterLock(KTask t, int flags, int subclass, string caller, int line)
    {
        if ((flags & SimKernel.FlagLockdep) != 0)
        {
            Kernel.Lockdep.Acquired(t, this, Class, subclass, read: false, trylock: false, caller, line);
        }

        if ((flags & SimKernel.FlagTrace) != 0)
        {
            Kernel.Trace.LockAcquired(t, this, null);
        }
    }

    /// <summary>mutex_unlock(): releases the mutex and wakes one sleeper.</summary>
    public void Unlock()
    {
        KTask t = KTask.CurrentFor(Kernel);
        int flags = Kernel.Flags;
        if (flags != 0)
        {
            Kernel.BeforeOp(t, SchedOp.MutexUnlock, this);
            if ((flags & SimKernel.FlagLockdep) != 0)
            {
                Kernel.Lockdep.Release(t, this);
            }

            if ((flags & SimKernel.FlagTrace) != 0)
            {
                Kernel.Trace.LockReleased(t, this);
            }
        }

        KTask? prev = Release();
        if (!ReferenceEquals(prev, t))
        {
            WarnBadRelease(t, prev, "mutex_unlock");
        }
    }

    /// <summary>Takes the mutex for a <c>using</c> scope (the kernel's <c>guard(mutex)</c>).</summary>
    public Guard Scoped([CallerMemberName] string caller = "", [CallerLineNumber] int line = 0)
    {
        Lock(caller, line);
        return new Guard(this);
    }

    /// <summary>Releases the mutex when disposed.</summary>
    public readonly struct Guard(KMutex mutex) : IDisposable
    {
        /// <summary>mutex_unlock().</summary>
        public void Dispose() => mutex.Unlock();
    }
}
