// Models kernel/sched/completion.c (v6.12): a counter of "done" events with sleepers.
// complete() adds one and wakes one sleeper; complete_all() sets done to UINT_MAX (every
// present and future wait returns); a wait consumes one unless done is UINT_MAX. Timed
// waits take and return jiffies: 0 when the time ran out, otherwise the jiffies left
// (at least 1). Interruptible and killable waits return -ERESTARTSYS when interrupted;
// a completion that is already done wins over a pending signal.

namespace Vfio.Kernel;

/// <summary><c>struct completion</c>: one-shot or counted "this has happened" events.</summary>
public sealed class Completion : KernelObject
{
    /// <summary>MAX_SCHEDULE_TIMEOUT: wait without a time limit.</summary>
    public const long MaxScheduleTimeout = long.MaxValue;

    // Protects _done and _waiters.
    private readonly Lock _wl = new();
    private uint _done;
    private WaitList _waiters;

    /// <summary>init_completion().</summary>
    public Completion(SimKernel kernel, string name)
        : base(kernel, name)
    {
    }

    /// <inheritdoc/>
    public override string Kind => "completion";

    internal override string WakeHint => "complete()";

    /// <summary>completion_done(): true when a wait would not sleep.</summary>
    public bool IsDone
    {
        get
        {
            lock (_wl)
            {
                return _done != 0;
            }
        }
    }

    /// <summary>complete(): records one event and wakes one sleeper.</summary>
    public void Complete()
    {
        KTask t = KTask.CurrentFor(Kernel);
        Kernel.BeforeOp(t, SchedOp.Complete, this);
        lock (_wl)
        {
            if (_done != uint.MaxValue)
            {
                _done++;
            }

            if (_waiters.RemoveFirst(this) is { } w)
            {
                WakeTimeline(w);
                Kernel.Scheduler.Unpark(w);
            }
        }

        Kernel.Trace.Event(t, "complete", this);
    }

    /// <summary>complete_all(): every present and future wait returns until <see cref="Reinit"/>.</summary>
    public void CompleteAll()
    {
        KTask t = KTask.CurrentFor(Kernel);
        Kernel.BeforeOp(t, SchedOp.CompleteAll, this);
        lock (_wl)
        {
            _done = uint.MaxValue;
            while (_waiters.RemoveFirst(this) is { } w)
            {
                WakeTimeline(w);
                Kernel.Scheduler.Unpark(w);
            }
        }

        Kernel.Trace.Event(t, "complete_all", this);
    }

    /// <summary>reinit_completion(): forgets past events.</summary>
    public void Reinit()
    {
        KTask t = KTask.CurrentFor(Kernel);
        Kernel.BeforeOp(t, SchedOp.ReinitCompletion, this);
        lock (_wl)
        {
            _done = 0;
        }
    }

    /// <summary>try_wait_for_completion(): consumes an event if one is available; never sleeps.</summary>
    public bool TryWait()
    {
        KTask t = KTask.CurrentFor(Kernel);
        Kernel.BeforeOp(t, SchedOp.TryWaitForCompletion, this);
        lock (_wl)
        {
            if (_done == 0)
            {
                return false;
            }

            if (_done != uint.MaxValue)
            {
                _done--;
            }

            return true;
        }
    }

    /// <summary>wait_for_completion(): sleeps uninterruptibly until an event is available.</summary>
    public void Wait() => DoWait(MaxScheduleTimeout, WaitKind.Uninterruptible);

    /// <summary>wait_for_completion_timeout(): 0 if <paramref name="jiffies"/> passed, else the jiffies left (≥ 1).</summary>
    public long WaitTimeout(long jiffies) => DoWait(CheckTimeout(jiffies), WaitKind.Uninterruptible);

    /// <summary>wait_for_completion_interruptible(): 0, or -ERESTARTSYS when a signal interrupts the sleep.</summary>
    public int WaitInterruptible() => (int)DoWait(MaxScheduleTimeout, WaitKind.Interruptible);

    /// <summary>wait_for_completion_interruptible_timeout(): -ERESTARTSYS, 0 (timed out) or the jiffies left.</summary>
    public long WaitInterruptibleTimeout(long jiffies) => DoWait(CheckTimeout(jiffies), WaitKind.Interruptible);

    /// <summary>wait_for_completion_killable(): 0, or -ERESTARTSYS when SIGKILL interrupts the sleep.</summary>
    public int WaitKillable() => (int)DoWait(MaxScheduleTimeout, WaitKind.Killable);

    /// <summary>wait_for_completion_killable_timeout(): -ERESTARTSYS, 0 (timed out) or the jiffies left.</summary>
    public long WaitKillableTimeout(long jiffies) => DoWait(CheckTimeout(jiffies), WaitKind.Killable);

    private static long CheckTimeout(long jiffies)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(jiffies);
        return jiffies;
    }

    private long DoWait(long timeout, WaitKind kind)
    {
        KTask t = KTask.CurrentFor(Kernel);
        Kernel.BeforeOp(t, SchedOp.WaitForCompletion, this);
        Kernel.Lockdep.MightSleep(t, this);
        SimClock clock = Kernel.Clock;
        long expire = timeout == MaxScheduleTimeout ? long.MaxValue : clock.Jiffies + timeout;
        bool waited = false;
        while (true)
        {
            lock (_wl)
            {
                if (_done != 0)
                {
                    if (_done != uint.MaxValue)
                    {
                        _done--;
                    }

                    if (waited)
                    {
                        Kernel.Cost.Charge(CostOp.LockHandoff);
                    }

                    return timeout == MaxScheduleTimeout ? 0 : Math.Max(1, expire - clock.Jiffies);
                }

                if (t.SignalInterrupts(kind))
                {
                    return Errno.ERESTARTSYS.Negative();
                }

                if (expire != long.MaxValue && clock.Jiffies >= expire)
                {
                    return 0;
                }

                t.BeginWait(this, SchedOp.WaitForCompletion, kind, clock.JiffiesToDeadlineNs(expire));
                _waiters.Add(t, this);
            }

            Kernel.Scheduler.Park(t);
            waited = true;
            lock (_wl)
            {
                _waiters.Remove(t, this);
            }

            t.EndWait();
        }
    }
}
