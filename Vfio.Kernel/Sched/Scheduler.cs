// The contract between primitives and the two scheduler modes. Primitives are written
// once against it: they check their condition under their own internal lock, enqueue the
// task, release the lock and Park(); wakers dequeue and Unpark(). Park has permit
// semantics, so a wake that arrives between enqueue and Park is never lost.

namespace Vfio.Kernel;

internal abstract class Scheduler
{
    protected Scheduler(SimKernel kernel) => Kernel = kernel;

    protected SimKernel Kernel { get; }

    /// <summary>Scheduling steps taken in the current or last run (controlled mode).</summary>
    public abstract long Steps { get; }

    /// <summary>True while Run() is in progress.</summary>
    public abstract bool IsRunning { get; }

    /// <summary>
    /// A scheduling point before <paramref name="op"/>. Controlled: the strategy may run
    /// another task. Both modes: throws <see cref="KTaskAbortedException"/> in a failed run.
    /// </summary>
    public abstract void Point(KTask t, SchedOp op, KernelObject? obj);

    /// <summary>
    /// Sleeps the current task <paramref name="t"/> as described by its wait fields until
    /// unparked, its deadline passes or (per its WaitKind) a signal is pending.
    /// </summary>
    public abstract WakeReason Park(KTask t);

    /// <summary>Wakes <paramref name="t"/> (or makes its next Park return at once).</summary>
    public abstract void Unpark(KTask t);

    /// <summary>Wakes <paramref name="t"/> if it sleeps in a way a newly pending signal interrupts.</summary>
    public abstract void WakeForSignal(KTask t);

    /// <summary>cond_resched(): the point was already taken; real mode yields the thread.</summary>
    public abstract void Yield(KTask t);

    public abstract KTask Spawn(KTask parent, string name, Action body, object? context);

    /// <summary>Creates and starts a task for a timer callback (no parent, no scheduling point).</summary>
    public abstract void SpawnTimerTask(string name, Action body);

    public abstract RunResult Run(string name, Action body);

    /// <summary>Throws when the calling thread may not be adopted (a foreign thread during a controlled run).</summary>
    public abstract void CheckAdoptionAllowed();

    /// <summary>Someone moved the virtual clock: wake timed sleepers whose deadline passed.</summary>
    public abstract void OnClockAdvanced(KTask? by);

    /// <summary>Records a fatal failure (first one wins) and aborts the run.</summary>
    public abstract void Fail(RunOutcome outcome, string report, Exception? exception, KTask? task, bool captureGraph);

    protected static void RunBody(KTask t)
    {
        t.Body!();
    }
}
