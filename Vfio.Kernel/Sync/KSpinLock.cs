// Models include/linux/spinlock.h (v6.12): a lock that is held briefly and under which the
// holder must not sleep. Holding one raises the task's preempt count; sleeping with a
// positive count is reported as "sleeping function called from invalid context".
// A contended acquirer spins in the kernel; here it waits on the lock (in controlled mode
// that is a scheduling decision like any other), which changes timing but not outcomes.

using System.Runtime.CompilerServices;

namespace Vfio.Kernel;

/// <summary><c>spinlock_t</c>: a short-held lock under which the holder must not sleep.</summary>
public sealed class KSpinLock : OwnedLock
{
    /// <summary>Creates a spinlock; the lock class defaults as for <see cref="KMutex"/>.</summary>
    public KSpinLock(SimKernel kernel, string name, LockClass? lockClass = null)
        : base(kernel, name, lockClass)
    {
    }

    /// <inheritdoc/>
    public override string Kind => "spinlock";

    internal override string WakeHint => "spin_unlock()";

    /// <summary>spin_lock().</summary>
    public void Lock([CallerMemberName] string caller = "", [CallerLineNumber] int line = 0)
    {
        KTask t = KTask.CurrentFor(Kernel);
        int flags = Kernel.Flags;
        if (flags != 0)
        {
            Kernel.BeforeOp(t, SchedOp.SpinLock, this);
            if ((flags & SimKernel.FlagLockdep) != 0)
            {
                Kernel.Lockdep.BeforeAcquire(t, this, Class, 0, read: false, caller, line);
            }
        }

        if (!TryTake(t))
        {
            TakeSlow(t, WaitKind.Uninterruptible, SchedOp.SpinLock);
        }

        t.PreemptCount++;
        if ((flags & SimKernel.FlagLockdep) != 0)
        {
            Kernel.Lockdep.Acquired(t, this, Class, 0, read: false, trylock: false, caller, line);
        }

        if ((flags & SimKernel.FlagTrace) != 0)
        {
            Kernel.Trace.LockAcquired(t, this, null);
        }
    }

    /// <summary>spin_trylock().</summary>
    public bool TryLock([CallerMemberName] string caller = "", [CallerLineNumber] int line = 0)
    {
        KTask t = KTask.CurrentFor(Kernel);
        Kernel.BeforeOp(t, SchedOp.SpinTrylock, this);
        if (!TryTake(t))
        {
            return false;
        }

        t.PreemptCount++;
        if (Kernel.LockdepActive)
        {
            Kernel.Lockdep.Acquired(t, this, Class, 0, read: false, trylock: true, caller, line);
        }

        Kernel.Trace.LockAcquired(t, this, "trylock");
        return true;
    }

    /// <summary>spin_unlock().</summary>
    public void Unlock()
    {
        KTask t = KTask.CurrentFor(Kernel);
        int flags = Kernel.Flags;
        if (flags != 0)
        {
            Kernel.BeforeOp(t, SchedOp.SpinUnlock, this);
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
        if (ReferenceEquals(prev, t))
        {
            t.PreemptCount--;
        }
        else
        {
            WarnBadRelease(t, prev, "spin_unlock");
        }
    }
}
