// Models kernel/locking/rwsem.c (v6.12): many readers or one writer, sleeping. Waiters
// queue FIFO and new readers do not overtake a queued writer, which is why a task that
// takes the read side twice can deadlock behind a writer (lockdep reports the recursive
// read as it does in the kernel). On release the lock is handed to the waiter(s) at the
// head of the queue: one writer, or every reader up to the next writer.

using System.Diagnostics;
using System.Runtime.CompilerServices;

namespace Vfio.Kernel;

/// <summary><c>struct rw_semaphore</c>.</summary>
public sealed class RwSemaphore : KernelObject
{
    private const int ModeRead = 1;
    private const int ModeWrite = 2;

    // Protects everything below.
    private readonly Lock _wl = new();
    private WaitList _waiters;
    private KTask? _writer;
    private readonly List<KTask> _readers = [];

    /// <summary>init_rwsem(); the lock class defaults as for <see cref="KMutex"/>.</summary>
    public RwSemaphore(SimKernel kernel, string name, LockClass? lockClass = null)
        : base(kernel, name)
    {
        Class = lockClass ?? LockClass.ForInstanceName(name);
    }

    /// <inheritdoc/>
    public override string Kind => "rw_semaphore";

    internal override string WakeHint => "up_read()/up_write()";

    /// <summary>The lockdep class.</summary>
    public LockClass Class { get; }

    /// <summary>The writer holding the semaphore, or null.</summary>
    public KTask? Writer
    {
        get
        {
            lock (_wl)
            {
                return _writer;
            }
        }
    }

    /// <summary>How many read holds are outstanding.</summary>
    public int ReaderCount
    {
        get
        {
            lock (_wl)
            {
                return _readers.Count;
            }
        }
    }

    /// <summary>rwsem_is_contended(): true when tasks are queued waiting for it.</summary>
    public bool IsContended
    {
        get
        {
            lock (_wl)
            {
                return !_waiters.IsEmpty;
            }
        }
    }

    /// <summary>rwsem_is_locked().</summary>
    public bool IsLocked
    {
        get
        {
            lock (_wl)
            {
                return _writer is not null || _readers.Count > 0;
            }
        }
    }

    /// <summary>down_read().</summary>
    public void DownRead([CallerMemberName] string caller = "", [CallerLineNumber] int line = 0)
        => Acquire(ModeRead, WaitKind.Uninterruptible, SchedOp.DownRead, caller, line);

    /// <summary>down_read_interruptible(): 0 or -EINTR.</summary>
    public int DownReadInterruptible([CallerMemberName] string caller = "", [CallerLineNumber] int line = 0)
        => Acquire(ModeRead, WaitKind.Interruptible, SchedOp.DownRead, caller, line);

    /// <summary>down_read_killable(): 0 or -EINTR.</summary>
    public int DownReadKillable([CallerMemberName] string caller = "", [CallerLineNumber] int line = 0)
        => Acquire(ModeRead, WaitKind.Killable, SchedOp.DownRead, caller, line);

    /// <summary>down_write().</summary>
    public void DownWrite([CallerMemberName] string caller = "", [CallerLineNumber] int line = 0)
        => Acquire(ModeWrite, WaitKind.Uninterruptible, SchedOp.DownWrite, caller, line);

    /// <summary>down_write_killable(): 0 or -EINTR.</summary>
    public int DownWriteKillable([CallerMemberName] string caller = "", [CallerLineNumber] int line = 0)
        => Acquire(ModeWrite, WaitKind.Killable, SchedOp.DownWrite, caller, line);

    /// <summary>down_read_trylock(): fails if a writer holds or waits.</summary>
    public bool DownReadTrylock([CallerMemberName] string caller = "", [CallerLineNumber] int line = 0)
        => TryAcquire(ModeRead, SchedOp.DownReadTrylock, caller, line);

    /// <summary>down_write_trylock(): fails if anyone holds or waits.</summary>
    public bool DownWriteTrylock([CallerMemberName] string caller = "", [CallerLineNumber] int line = 0)
        => TryAcquire(ModeWrite, SchedOp.DownWriteTrylock, caller, line);

    /// <summary>up_read().</summary>
    public void UpRead()
    {
        KTask t = Before(SchedOp.UpRead);
        bool held;
        lock (_wl)
        {
            held = _readers.Remove(t);
            if (!held && _readers.Count > 0)
            {
                // Releasing a read hold taken by another task is legal for rwsems (non-owner release).
                _readers.RemoveAt(_readers.Count - 1);
                held = true;
            }

            GrantLocked();
        }

        if (!held)
        {
            Warn.Report(Kernel, t, WarningKind.Warn, $"DEBUG_RWSEMS_WARN_ON(count < 0): up_read({Name}) with no reader", nameof(UpRead), "rwsem.c", 0);
        }
    }

    /// <summary>up_write().</summary>
    public void UpWrite()
    {
        KTask t = Before(SchedOp.UpWrite);
        KTask? prev;
        lock (_wl)
        {
            prev = _writer;
            _writer = null;
            GrantLocked();
        }

        if (!ReferenceEquals(prev, t))
        {
            Warn.Report(Kernel, t, WarningKind.Warn,
                prev is null
                    ? $"DEBUG_RWSEMS_WARN_ON(!writer): up_write({Name}) with no writer"
                    : $"DEBUG_RWSEMS_WARN_ON(owner != current): up_write({Name}) by {t.DisplayName}, owned by {prev.DisplayName}",
                nameof(UpWrite), "rwsem.c", 0);
        }
    }

    /// <summary>downgrade_write(): turns the caller's write hold into a read hold and admits queued readers.</summary>
    public void DowngradeWrite()
    {
        KTask t = KTask.CurrentFor(Kernel);
        Kernel.BeforeOp(t, SchedOp.DowngradeWrite, this);
        lock (_wl)
        {
            if (!ReferenceEquals(_writer, t))
            {
                throw new InvalidOperationException($"downgrade_write({Name}) by {t.DisplayName}, which does not hold it for writing");
            }

            _writer = null;
            _readers.Add(t);
            GrantLocked();
        }

        if (Kernel.LockdepActive && Kernel.Lockdep.IsHeld(t, this))
        {
            Kernel.Lockdep.Downgrade(t, this);
        }
    }

    /// <summary>lockdep_assert_held(): WARNs unless the current task holds it in either mode; the warning names the function that asserted.</summary>
    public void AssertHeld([CallerMemberName] string caller = "", [CallerFilePath] string file = "", [CallerLineNumber] int line = 0)
    {
        KTask t = KTask.CurrentFor(Kernel);
        bool held;
        lock (_wl)
        {
            held = ReferenceEquals(_writer, t) || _readers.Contains(t);
        }

        if (!held)
        {
            Warn.Report(Kernel, t, WarningKind.Lockdep, $"lockdep_assert_held({Name}): not held by {t.DisplayName}", caller, file, line);
        }
    }

    /// <summary>lockdep_assert_held_write(): WARNs unless the current task holds it for writing.</summary>
    public void AssertHeldWrite([CallerMemberName] string caller = "", [CallerFilePath] string file = "", [CallerLineNumber] int line = 0)
    {
        KTask t = KTask.CurrentFor(Kernel);
        if (!ReferenceEquals(Writer, t))
        {
            Warn.Report(Kernel, t, WarningKind.Lockdep, $"lockdep_assert_held_write({Name}): not held for writing by {t.DisplayName}", caller, file, line);
        }
    }

    /// <summary>lockdep_assert_held_read(): WARNs unless the current task holds it for reading (a write hold does not count).</summary>
    public void AssertHeldRead([CallerMemberName] string caller = "", [CallerFilePath] string file = "", [CallerLineNumber] int line = 0)
    {
        KTask t = KTask.CurrentFor(Kernel);
        bool held;
        lock (_wl)
        {
            held = _readers.Contains(t);
        }

        if (!held)
        {
            Warn.Report(Kernel, t, WarningKind.Lockdep, $"lockdep_assert_held_read({Name}): not held for reading by {t.DisplayName}", caller, file, line);
        }
    }

    /// <summary>
    /// <see cref="AssertHeld"/> in debug builds only (see <see cref="OwnedLock.DebugAssertHeld"/>):
    /// the call is removed wherever it is compiled without DEBUG.
    /// </summary>
    [Conditional("DEBUG")]
    public void DebugAssertHeld([CallerMemberName] string caller = "", [CallerFilePath] string file = "", [CallerLineNumber] int line = 0)
        => AssertHeld(caller, file, line);

    private KTask Before(SchedOp op)
    {
        KTask t = KTask.CurrentFor(Kernel);
        Kernel.BeforeOp(t, op, this);
        if (Kernel.LockdepActive)
        {
            Kernel.Lockdep.Release(t, this);
        }

        Kernel.Trace.LockReleased(t, this);
        return t;
    }

    private bool TryAcquire(int mode, SchedOp op, string caller, int line)
    {
        KTask t = KTask.CurrentFor(Kernel);
        Kernel.BeforeOp(t, op, this);
        lock (_wl)
        {
            if (!CanTakeLocked(mode))
            {
                return false;
            }

            TakeLocked(t, mode);
        }

        if (Kernel.LockdepActive)
        {
            Kernel.Lockdep.Acquired(t, this, Class, 0, read: mode == ModeRead, trylock: true, caller, line);
        }

        Kernel.Trace.LockAcquired(t, this, mode == ModeRead ? "read trylock" : "write trylock");
        return true;
    }

    private int Acquire(int mode, WaitKind kind, SchedOp op, string caller, int line)
    {
        KTask t = KTask.CurrentFor(Kernel);
        Kernel.Lockdep.MightSleep(t, this); // down_read()/down_write() start with might_sleep().
        Kernel.BeforeOp(t, op, this);
        bool lockdep = Kernel.LockdepActive;
        if (lockdep)
        {
            Kernel.Lockdep.BeforeAcquire(t, this, Class, 0, read: mode == ModeRead, caller, line);
        }

        bool granted;
        lock (_wl)
        {
            granted = CanTakeLocked(mode);
            if (granted)
            {
                TakeLocked(t, mode);
            }
            else
            {
                t.BeginWait(this, op, kind, long.MaxValue);
                t.WaitMode = mode;
                t.Granted = false;
                _waiters.Add(t, this);
            }
        }

        if (!granted)
        {
            while (true)
            {
                WakeReason why = Kernel.Scheduler.Park(t);
                lock (_wl)
                {
                    if (t.Granted)
                    {
                        Kernel.Cost.Charge(CostOp.LockHandoff);
                        break;
                    }

                    if (why == WakeReason.Signaled)
                    {
                        _waiters.Remove(t, this);
                        GrantLocked(); // Our leaving may let the waiters behind us in.
                        t.EndWait();
                        return Errno.EINTR.Negative();
                    }
                }
            }

            t.EndWait();
        }

        if (lockdep && Kernel.LockdepActive)
        {
            Kernel.Lockdep.Acquired(t, this, Class, 0, read: mode == ModeRead, trylock: false, caller, line);
        }

        Kernel.Trace.LockAcquired(t, this, mode == ModeRead ? "read" : "write");
        return 0;
    }

    private bool CanTakeLocked(int mode)
    {
        AssertWaitLockHeld();
        return _writer is null && _waiters.IsEmpty && (mode == ModeRead || _readers.Count == 0);
    }

    private void TakeLocked(KTask t, int mode)
    {
        AssertWaitLockHeld();
        if (mode == ModeRead)
        {
            _readers.Add(t);
        }
        else
        {
            _writer = t;
        }
    }

    /// <summary>Hands the semaphore to the head of the queue: one writer, or the leading readers.</summary>
    private void GrantLocked()
    {
        AssertWaitLockHeld();
        if (_writer is not null)
        {
            return;
        }

        while (_waiters.First is { } w)
        {
            if (w.WaitMode == ModeWrite)
            {
                if (_readers.Count == 0)
                {
                    _waiters.Remove(w, this);
                    _writer = w;
                    w.Granted = true;
                    WakeTimeline(w);
                    Kernel.Scheduler.Unpark(w);
                }

                return;
            }

            _waiters.Remove(w, this);
            _readers.Add(w);
            w.Granted = true;
            WakeTimeline(w);
            Kernel.Scheduler.Unpark(w);
        }
    }

    // The *Locked helpers run under _wl, a host lock rather than a kernel one, so the check
    // is the host lock's own owner test (one thread-id comparison); a miss is a bug in this
    // file, reported as an exception.
    private void AssertWaitLockHeld()
    {
        if (!_wl.IsHeldByCurrentThread)
        {
            throw new InvalidOperationException($"rw_semaphore {Name}: its state was touched without the wait-list lock held");
        }
    }

    internal override void CollectHolders(List<KTask> holders)
    {
        lock (_wl)
        {
            if (_writer is not null)
            {
                holders.Add(_writer);
            }

            foreach (KTask r in _readers)
            {
                if (!holders.Contains(r))
                {
                    holders.Add(r);
                }
            }
        }
    }
}
