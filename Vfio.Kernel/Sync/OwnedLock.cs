// The owner-and-sleepers core shared by KMutex and KSpinLock.
//
// Fast path: one compare-exchange on _owner to take, one exchange to release, plus a read
// of _waiterCount. Slow path: under _wl the task counts itself as a waiter, retries the
// compare-exchange, and only then enqueues and parks. Release exchanges _owner to null
// *before* reading _waiterCount; with full-fence atomics on both sides either the
// waiter's retry sees the free lock or the releaser sees the waiter and wakes it. A
// woken waiter retries rather than receiving the lock, so it can be stolen, as on the
// kernel's optimistic-spin path. A signalled waiter tries the lock before giving up
// (as __mutex_lock_common() does) and, if a release had already dequeued it, passes that
// wake-up on before returning -EINTR.

using System.Diagnostics;
using System.Runtime.CompilerServices;

namespace Vfio.Kernel;

/// <summary>A lock with a single owner task: the common part of <see cref="KMutex"/> and <see cref="KSpinLock"/>.</summary>
public abstract class OwnedLock : KernelObject
{
    private KTask? _owner;
    private int _waiterCount;

    // Protects _waiters and orders waiter registration against release.
    private readonly Lock _wl = new();
    private WaitList _waiters;

    private protected OwnedLock(SimKernel kernel, string name, LockClass? lockClass)
        : base(kernel, name)
    {
        Class = lockClass ?? LockClass.ForInstanceName(name);
    }

    /// <summary>The lockdep class (by default the instance name without bracketed indices).</summary>
    public LockClass Class { get; }

    /// <summary>The task holding the lock, or null.</summary>
    public KTask? Owner => Volatile.Read(ref _owner);

    /// <summary>True while some task holds the lock.</summary>
    public bool IsLocked => Volatile.Read(ref _owner) is not null;

    private protected bool TryTake(KTask t) => Interlocked.CompareExchange(ref _owner, t, null) is null;

    /// <summary>Sleeps until the lock is taken (0) or a signal <paramref name="kind"/> honours arrives (-EINTR).</summary>
    private protected int TakeSlow(KTask t, WaitKind kind, SchedOp op)
    {
        while (true)
        {
            lock (_wl)
            {
                Interlocked.Increment(ref _waiterCount);
                if (TryTake(t))
                {
                    Interlocked.Decrement(ref _waiterCount);
                    return 0;
                }

                t.BeginWait(this, op, kind, long.MaxValue);
                _waiters.Add(t, this);
            }

            WakeReason why = Kernel.Scheduler.Park(t);
            bool dequeuedByWaker;
            lock (_wl)
            {
                dequeuedByWaker = !_waiters.Remove(t, this);
                if (!dequeuedByWaker)
                {
                    Interlocked.Decrement(ref _waiterCount);
                }
            }

            t.EndWait();

            // __mutex_lock_common() tries the lock before it looks at signal_pending(): a
            // waiter that was signalled but can have the lock takes it.
            if (TryTake(t))
            {
                Kernel.Cost.Charge(CostOp.LockHandoff);
                return 0;
            }

            if (why == WakeReason.Signaled)
            {
                // A release may have picked us to wake just as the signal came. We leave
                // without the lock, so hand that wake-up to the next sleeper; otherwise it
                // would sleep on behind a free lock.
                if (dequeuedByWaker)
                {
                    WakeOne();
                }

                return Errno.EINTR.Negative();
            }
        }
    }

    /// <summary>Clears the owner, wakes one sleeper, and returns who owned the lock before.</summary>
    private protected KTask? Release()
    {
        KTask? prev = Interlocked.Exchange(ref _owner, null);
        if (Volatile.Read(ref _waiterCount) != 0)
        {
            WakeOne();
        }

        return prev;
    }

    private void WakeOne()
    {
        lock (_wl)
        {
            KTask? w = _waiters.RemoveFirst(this);
            if (w is not null)
            {
                Interlocked.Decrement(ref _waiterCount);
                WakeTimeline(w);
                Kernel.Scheduler.Unpark(w);
            }
        }
    }

    private protected void WarnBadRelease(KTask t, KTask? prev, string function)
    {
        // DEBUG_LOCKS_WARN_ON in the kernel's lock debugging code.
        Warn.Report(Kernel, t, WarningKind.Warn,
            prev is null
                ? $"DEBUG_LOCKS_WARN_ON(!locked): {t.DisplayName} called {function} on {Name}, which was not locked"
                : $"DEBUG_LOCKS_WARN_ON(owner != current): {t.DisplayName} called {function} on {Name}, owned by {prev.DisplayName}",
            function, Kind, 0);
    }

    /// <summary>
    /// lockdep_assert_held(): WARNs unless the current task owns the lock. The warning
    /// names the function that asserted, as the kernel's splat does. The check is one
    /// thread-static read and one owner comparison; it does not depend on lockdep being on.
    /// </summary>
    public void AssertHeld([CallerMemberName] string caller = "", [CallerFilePath] string file = "", [CallerLineNumber] int line = 0)
    {
        KTask t = KTask.CurrentFor(Kernel);
        if (!ReferenceEquals(Volatile.Read(ref _owner), t))
        {
            Warn.Report(Kernel, t, WarningKind.Lockdep, $"lockdep_assert_held({Name}): not held by {t.DisplayName}", caller, file, line);
        }
    }

    /// <summary>
    /// <see cref="AssertHeld"/> in debug builds only, for code that runs per page or per
    /// entry: the call is removed wherever it is compiled without DEBUG, so release builds
    /// (and the benchmarks) pay nothing. Race exploration runs in release, so use it only
    /// below an entry point that asserts the same lock with <see cref="AssertHeld"/>.
    /// </summary>
    [Conditional("DEBUG")]
    public void DebugAssertHeld([CallerMemberName] string caller = "", [CallerFilePath] string file = "", [CallerLineNumber] int line = 0)
        => AssertHeld(caller, file, line);

    internal override void CollectHolders(List<KTask> holders)
    {
        if (Volatile.Read(ref _owner) is { } o)
        {
            holders.Add(o);
        }
    }
}
