// Models include/linux/wait.h and kernel/sched/wait.c (v6.12): sleep until a condition
// holds. The waiter enqueues itself *before* testing the condition, so a waker that sets
// the condition and then calls wake_up() can never be missed. The condition is evaluated
// outside the queue's lock and must not sleep (as in the kernel, where the task is no
// longer TASK_RUNNING while it is evaluated).
//
// Entries with a wake function (add_wait_queue with a custom func, as poll and irqfd use)
// are called by wake_up() after the queue's lock is dropped, so a function may reach
// scheduling points; like the kernel's they must not sleep. The kernel calls them under the
// queue's lock, which remove_wait_queue() takes too, so once an entry is removed no call of
// it is running; here wake_up() counts the calls of each entry it is about to make (under
// the lock) and remove_wait_queue() waits for that entry's calls still running (not its
// own, when a wake function removes its entry).
//
// sleep_on() is kept for what it teaches: it sleeps without a condition, so a wake-up
// that comes between the caller's check and the sleep is lost. The kernel removed it in
// v3.15 for exactly that reason.

namespace Vfio.Kernel;

/// <summary><c>wait_queue_head_t</c>: tasks sleeping until a condition becomes true.</summary>
public sealed class WaitQueue : KernelObject
{
    // Protects _waiters and writes of _entries. _entries is copy-on-write: add and remove
    // replace the array, so a wake-up iterates the array it read without copying it.
    private readonly Lock _wl = new();
    private WaitList _waiters;
    private WaitQueueEntry[] _entries = [];

    // Where remove_wait_queue() waits for an entry's calls in flight (made on first need),
    // and how many removers wait there.
    private WaitQueue? _idle;
    private int _removers;

    /// <summary>init_waitqueue_head().</summary>
    public WaitQueue(SimKernel kernel, string name)
        : base(kernel, name)
    {
    }

    /// <inheritdoc/>
    public override string Kind => "wait_queue";

    internal override string WakeHint => "wake_up()";

    /// <summary>waitqueue_active(): true when some task sleeps on the queue or an entry is registered.</summary>
    public bool HasSleepers
    {
        get
        {
            lock (_wl)
            {
                return !_waiters.IsEmpty || _entries.Length > 0;
            }
        }
    }

    /// <summary>wait_event(): sleeps uninterruptibly until <paramref name="condition"/> is true.</summary>
    public void WaitEvent(Func<bool> condition) => WaitCore(condition, Completion.MaxScheduleTimeout, WaitKind.Uninterruptible);

    /// <summary>
    /// wait_event_timeout(): 0 if the condition was still false when <paramref name="jiffies"/>
    /// passed; otherwise the jiffies left (at least 1).
    /// </summary>
    public long WaitEventTimeout(Func<bool> condition, long jiffies)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(jiffies);
        return WaitCore(condition, jiffies, WaitKind.Uninterruptible);
    }

    /// <summary>wait_event_interruptible(): 0 when the condition holds, -ERESTARTSYS on a signal.</summary>
    public int WaitEventInterruptible(Func<bool> condition) => (int)WaitCore(condition, Completion.MaxScheduleTimeout, WaitKind.Interruptible);

    /// <summary>wait_event_interruptible_timeout(): -ERESTARTSYS, 0 (timed out) or the jiffies left.</summary>
    public long WaitEventInterruptibleTimeout(Func<bool> condition, long jiffies)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(jiffies);
        return WaitCore(condition, jiffies, WaitKind.Interruptible);
    }

    /// <summary>wait_event_killable(): 0 when the condition holds, -ERESTARTSYS on SIGKILL.</summary>
    public int WaitEventKillable(Func<bool> condition) => (int)WaitCore(condition, Completion.MaxScheduleTimeout, WaitKind.Killable);

    /// <summary>
    /// wake_up() / wake_up_all(): wakes every sleeper (each re-tests its condition) and
    /// calls every entry's wake function with <paramref name="key"/> (the poll mask, for
    /// poll wake-ups).
    /// </summary>
    public void WakeUp(object? key = null)
    {
        KTask t = KTask.CurrentFor(Kernel);
        Kernel.BeforeOp(t, SchedOp.WakeUp, this);
        WaitQueueEntry[] entries;
        lock (_wl)
        {
            while (_waiters.RemoveFirst(this) is { } w)
            {
                WakeTimeline(w);
                Kernel.Scheduler.Unpark(w);
            }

            entries = _entries;
            foreach (WaitQueueEntry e in entries)
            {
                Interlocked.Increment(ref e.InFlight);
            }
        }

        int called = 0;
        try
        {
            for (; called < entries.Length; called++)
            {
                WaitQueueEntry e = entries[called];
                WaitQueueEntry? outer = t.RunningWake;
                t.RunningWake = e;
                try
                {
                    e.Wake(e, key);
                }
                finally
                {
                    t.RunningWake = outer;
                    Interlocked.Decrement(ref e.InFlight);
                }
            }
        }
        finally
        {
            // A wake function that threw leaves the rest uncalled: they are not in flight.
            for (int i = called + 1; i < entries.Length; i++)
            {
                Interlocked.Decrement(ref entries[i].InFlight);
            }

            if (entries.Length != 0 && Volatile.Read(ref _removers) != 0)
            {
                _idle!.WakeUp();
            }
        }

        Kernel.Trace.Event(t, "wake_up", this);
    }

    /// <summary>add_wait_queue() with a wake function: <paramref name="entry"/> is called on every wake-up until removed.</summary>
    public void AddEntry(WaitQueueEntry entry)
    {
        ArgumentNullException.ThrowIfNull(entry);
        lock (_wl)
        {
            if (entry.Queue is not null)
            {
                throw new InvalidOperationException($"wait queue entry is already on {entry.Queue.Name}");
            }

            entry.Queue = this;
            _entries = [.. _entries, entry];
        }
    }

    /// <summary>
    /// remove_wait_queue(): stops calling <paramref name="entry"/>, and returns once no call
    /// of it is running (except the caller's own, from inside the wake function). Returns
    /// false if it was not on this queue.
    /// </summary>
    public bool RemoveEntry(WaitQueueEntry entry)
    {
        ArgumentNullException.ThrowIfNull(entry);
        lock (_wl)
        {
            if (!ReferenceEquals(entry.Queue, this))
            {
                return false;
            }

            entry.Queue = null;
            int at = Array.IndexOf(_entries, entry);
            if (at < 0)
            {
                return false;
            }

            var next = new WaitQueueEntry[_entries.Length - 1];
            Array.Copy(_entries, next, at);
            Array.Copy(_entries, at + 1, next, at, next.Length - at);
            _entries = next;
        }

        // No wake-up can start a call of the entry now; wait for the ones already running.
        int own = ReferenceEquals(KTask.CurrentFor(Kernel).RunningWake, entry) ? 1 : 0;
        if (Volatile.Read(ref entry.InFlight) > own)
        {
            WaitForCalls(entry, own);
        }

        return true;
    }

    /// <summary>Sleeps until <paramref name="entry"/>'s wake function runs only <paramref name="own"/> times (the caller's own call).</summary>
    private void WaitForCalls(WaitQueueEntry entry, int own)
    {
        lock (_wl)
        {
            _idle ??= new WaitQueue(Kernel, Name + ".remove");
        }

        Interlocked.Increment(ref _removers);
        try
        {
            _idle.WaitEvent(() => Volatile.Read(ref entry.InFlight) <= own);
        }
        finally
        {
            Interlocked.Decrement(ref _removers);
        }
    }

    /// <summary>
    /// sleep_on() (removed in Linux 3.15): sleeps until the next <see cref="WakeUp"/>, with
    /// no condition. Racy by design — a wake-up before the sleep is lost. Use only to
    /// demonstrate lost wake-ups; real code uses <see cref="WaitEvent"/>.
    /// </summary>
    public void SleepOn()
    {
        KTask t = KTask.CurrentFor(Kernel);
        Kernel.BeforeOp(t, SchedOp.SleepOn, this);
        Kernel.Lockdep.MightSleep(t, this);
        lock (_wl)
        {
            t.BeginWait(this, SchedOp.SleepOn, WaitKind.Uninterruptible, long.MaxValue);
            _waiters.Add(t, this);
        }

        Kernel.Scheduler.Park(t);
        lock (_wl)
        {
            _waiters.Remove(t, this);
        }

        t.EndWait();
    }

    private long WaitCore(Func<bool> condition, long timeout, WaitKind kind)
    {
        ArgumentNullException.ThrowIfNull(condition);
        KTask t = KTask.CurrentFor(Kernel);

        // wait_event*() call might_sleep() before the first test of the condition.
        Kernel.Lockdep.MightSleep(t, this);
        Kernel.BeforeOp(t, SchedOp.WaitEvent, this);
        bool timed = timeout != Completion.MaxScheduleTimeout;
        if (Evaluate(t, condition))
        {
            return timed ? Math.Max(1, timeout) : 0;
        }

        SimClock clock = Kernel.Clock;
        long expire = timed ? clock.Jiffies + timeout : long.MaxValue;
        while (true)
        {
            lock (_wl)
            {
                t.BeginWait(this, SchedOp.WaitEvent, kind, timed ? clock.JiffiesToDeadlineNs(expire) : long.MaxValue);
                _waiters.Add(t, this);
            }

            bool interrupted = t.SignalInterrupts(kind);
            long left = timed ? Math.Max(0, expire - clock.Jiffies) : 0;
            bool done = Evaluate(t, condition);
            if (done || interrupted || (timed && left == 0))
            {
                Dequeue(t);
                if (done)
                {
                    return timed ? Math.Max(1, left) : 0;
                }

                return interrupted ? Errno.ERESTARTSYS.Negative() : 0;
            }

            Kernel.Scheduler.Park(t);
            Dequeue(t);
        }
    }

    private static bool Evaluate(KTask t, Func<bool> condition)
    {
        // The kernel evaluates the condition with the task already off TASK_RUNNING: it may
        // look at state (and pass scheduling points) but must not sleep.
        t.InWaitCondition++;
        try
        {
            return condition();
        }
        finally
        {
            t.InWaitCondition--;
        }
    }

    private void Dequeue(KTask t)
    {
        lock (_wl)
        {
            _waiters.Remove(t, this);
        }

        t.EndWait();
    }
}

/// <summary>
/// <c>wait_queue_entry_t</c> with a custom wake function (<c>init_waitqueue_func_entry</c>):
/// what poll tables and irqfds hang on a wait queue instead of a sleeping task.
/// </summary>
public sealed class WaitQueueEntry
{
    /// <summary>Creates an entry whose <paramref name="wake"/> function receives the entry and the wake-up key.</summary>
    public WaitQueueEntry(Action<WaitQueueEntry, object?> wake, object? owner = null)
    {
        ArgumentNullException.ThrowIfNull(wake);
        Wake = wake;
        Owner = owner;
    }

    /// <summary>The wake function.</summary>
    public Action<WaitQueueEntry, object?> Wake { get; }

    /// <summary>Whatever the registrant wants to find again in its wake function (<c>entry-&gt;private</c>).</summary>
    public object? Owner { get; }

    /// <summary>The queue the entry is on, or null.</summary>
    public WaitQueue? Queue { get; internal set; }

    // Calls of Wake that a wake-up has committed to and not finished (incremented under the
    // queue's lock, decremented after each call).
    internal int InFlight;
}
