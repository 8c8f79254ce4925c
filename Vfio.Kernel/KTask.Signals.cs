// Models the parts of kernel/signal.c and kernel/sched/core.c that sleeping primitives
// depend on: pending signals that interrupt TASK_INTERRUPTIBLE / TASK_KILLABLE sleeps,
// cond_resched() and msleep() on the virtual clock.

namespace Vfio.Kernel;

/// <summary>Signal numbers (x86-64) used by simulated tasks.</summary>
public static class Signals
{
    /// <summary>SIGINT.</summary>
    public const int SIGINT = 2;
    /// <summary>SIGBUS: a mapping's fault handler could not provide the page (e.g. device memory whose decode is off).</summary>
    public const int SIGBUS = 7;
    /// <summary>SIGKILL: the only signal a killable sleep honours.</summary>
    public const int SIGKILL = 9;
    /// <summary>SIGUSR1.</summary>
    public const int SIGUSR1 = 10;
    /// <summary>SIGSEGV: an access to an address with no mapping or without the permission.</summary>
    public const int SIGSEGV = 11;
    /// <summary>SIGTERM.</summary>
    public const int SIGTERM = 15;
}

public sealed partial class KTask
{
    // Bit n set = signal n pending. Written with Interlocked by any task.
    private long _pendingSignals;

    /// <summary>signal_pending(): any signal is pending.</summary>
    public bool SignalPending => Volatile.Read(ref _pendingSignals) != 0;

    /// <summary>fatal_signal_pending(): SIGKILL is pending.</summary>
    public bool FatalSignalPending => (Volatile.Read(ref _pendingSignals) & (1L << Signals.SIGKILL)) != 0;

    /// <summary>True when signal <paramref name="signo"/> is pending.</summary>
    public bool IsSignalPending(int signo) => (Volatile.Read(ref _pendingSignals) & (1L << signo)) != 0;

    /// <summary>
    /// send_sig(): makes <paramref name="signo"/> pending on this task and wakes it if it
    /// sleeps interruptibly (or killably, for SIGKILL). The signal stays pending until
    /// <see cref="FlushSignals"/>; a sleep it interrupted returns -ERESTARTSYS.
    /// </summary>
    public void SendSignal(int signo)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(signo, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(signo, 63);
        KTask sender = CurrentFor(Kernel);
        Kernel.BeforeOp(sender, SchedOp.Signal, this);
        Interlocked.Or(ref _pendingSignals, 1L << signo);
        if (Kernel.Trace.Enabled)
        {
            Kernel.Trace.Event(sender, "signal_generate", this, $"sig={signo}");
        }

        if (Kernel.TimelineActive && State == TaskState.Blocked && SignalInterrupts(WaitKind))
        {
            Kernel.Trace.Wake($"signal {signo}", this); // The timeline's arrow from sender to the interrupted sleeper.
        }

        Kernel.Scheduler.WakeForSignal(this);
    }

    /// <summary>flush_signals(): forgets every pending signal (what delivery to user space would do).</summary>
    public void FlushSignals() => Interlocked.Exchange(ref _pendingSignals, 0);

    /// <summary>cond_resched(): a voluntary scheduling point (a bug with a spinlock held, as in the kernel).</summary>
    public static void Schedule()
    {
        KTask t = Current;
        t.Kernel.Lockdep.MightSleep(t, null, "cond_resched");
        t.Kernel.BeforeOp(t, SchedOp.Yield, null);
        t.Kernel.Scheduler.Yield(t);
    }

    /// <summary>msleep(): sleeps <paramref name="ms"/> milliseconds of virtual time, uninterruptibly.</summary>
    public static void Msleep(int ms)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(ms);
        KTask t = Current;
        SleepUntil(t, WaitKind.Uninterruptible, ms);
    }

    /// <summary>
    /// msleep_interruptible(): sleeps <paramref name="ms"/> milliseconds of virtual time or
    /// until a signal; returns the milliseconds left (0 when the full time passed).
    /// </summary>
    public static long MsleepInterruptible(int ms)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(ms);
        KTask t = Current;
        return SleepUntil(t, WaitKind.Interruptible, ms);
    }

    private static long SleepUntil(KTask t, WaitKind kind, int ms)
    {
        SimKernel k = t.Kernel;
        k.Lockdep.MightSleep(t, null, "msleep");
        k.BeforeOp(t, SchedOp.Msleep, null);
        long deadline = k.Clock.NowNs + (ms * 1_000_000L);
        while (true)
        {
            long now = k.Clock.NowNs;
            if (now >= deadline)
            {
                return 0;
            }

            if (t.SignalInterrupts(kind))
            {
                return (deadline - now + 999_999) / 1_000_000;
            }

            t.BeginWait(null, SchedOp.Msleep, kind, deadline);
            k.Scheduler.Park(t);
            t.EndWait();
        }
    }
}
