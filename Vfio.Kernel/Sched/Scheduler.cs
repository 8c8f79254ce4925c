// The contract between primitives and the two scheduler modes. Primitives are written
// once against it: they check their condition under their own internal lock, enqueue the
// task, release the lock and Park(); wakers dequeue and Unpark(). Park has permit
// semantics, so a wake that arrives between enqueue and Park is never lost.

namespace Vfio.Kernel;

internal abstract class Scheduler
{
    // The run's first fatal failure, under StateLock: one can surface on a task thread and
    // on a watchdog at the same time.
    private bool _failed;
    private RunOutcome _outcome;
    private string? _report;
    private Exception? _exception;
    private string? _failedTask;
    private WaitForGraph? _graph;

    protected Scheduler(SimKernel kernel) => Kernel = kernel;

    protected SimKernel Kernel { get; }

    /// <summary>Guards the failure record; a mode may guard its own run state with it too.</summary>
    protected Lock StateLock { get; } = new();

    /// <summary>The tasks of the current run, for the wait-for graph of a failure.</summary>
    protected List<KTask> Tasks { get; } = [];

    /// <summary>True once the current run has failed.</summary>
    protected bool Failed => Volatile.Read(ref _failed);

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

    /// <summary>Records a fatal failure (the first one wins) and aborts the run.</summary>
    public void Fail(RunOutcome outcome, string report, Exception? exception, KTask? task, bool captureGraph)
    {
        lock (StateLock)
        {
            if (_failed)
            {
                return;
            }

            _failed = true;
            _outcome = outcome;
            _exception = exception;
            _failedTask = task?.DisplayName;
            if (captureGraph)
            {
                _graph = WaitForGraph.Capture(Tasks);
                report = report + "\n" + _graph.Render();
            }

            _report = report;
        }

        Kernel.SetFlag(SimKernel.FlagAborted);
        OnFailed();
    }

    /// <summary>A failure was recorded: wake whatever waits for the run to end.</summary>
    protected abstract void OnFailed();

    /// <summary>Starts a run with no failure recorded and no tasks; call before any task runs.</summary>
    protected void BeginRun()
    {
        lock (StateLock)
        {
            Tasks.Clear();
            _failed = false;
            _outcome = RunOutcome.Completed;
            _report = null;
            _exception = null;
            _failedTask = null;
            _graph = null;
        }

        Kernel.ClearFlag(SimKernel.FlagAborted);
        Kernel.Trace.BeginRun();
    }

    /// <summary>The run's result, with its failure if one was recorded.</summary>
    protected RunResult FinishRun()
        => Kernel.Trace.FinishRun(_outcome, _report, _exception, _failedTask, _graph, Kernel.Config.WarningsFailRuns);

    /// <summary>Runs a task's body; an exception other than the abort fails the run.</summary>
    protected void RunBody(KTask t)
    {
        try
        {
            Kernel.Trace.TaskStart(t);
            t.Body!();
            Kernel.Lockdep.CheckNoLocksHeld(t);
        }
        catch (KTaskAbortedException)
        {
            // The run failed elsewhere (or here, already recorded): unwind quietly.
        }
        catch (Exception e)
        {
            t.Failure = e;
            Fail(e is KernelPanicException ? RunOutcome.Panic : RunOutcome.Failed, $"task {t.DisplayName} failed: {e.GetType().Name}: {e.Message}", e, t, captureGraph: false);
        }
    }
}
