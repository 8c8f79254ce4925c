// The controlled scheduler: every task is a real thread, but exactly one runs at a time.
// A task gives up the CPU only at a scheduling point (every primitive operation), when it
// sleeps, or when it exits; the strategy picks who runs next from the runnable tasks in
// id order, so a seed fully determines the interleaving. When nothing can run, virtual
// time jumps to the next timer or timed sleep; when nothing is pending either, the run
// is a deadlock and the wait-for graph says why.
//
// Hand-off protocol: the running task sets _current to the chosen task, releases that
// task's Gate and waits on its own. State below is touched only by the running task (the
// gates order memory between tasks) and by the controller thread before the first task
// starts and after the run is over.
//
// A failed run (exception, BUG, deadlock, budget, divergence) sets the kernel's Aborted
// flag; the controller then releases the remaining tasks one at a time and each unwinds
// with KTaskAbortedException from its next scheduling point.
//
// Threads: a task runs on a pooled worker thread (TaskWorker), whose gate is the task's
// Gate; the first release starts the task. Workers are reused across runs and kernels.

using System.Text;

namespace Vfio.Kernel;

internal sealed class ControlledScheduler : Scheduler
{
    private readonly List<KTask> _runnable = [];
    private readonly ManualResetEventSlim _done = new(false);
    private readonly Action<KTask> _threadMain;

    private Strategy? _strategy;
    private ScheduleRecorder? _recorder;
    private KTask? _current;
    private bool _running;
    private long _steps;
    private int _live;

    public ControlledScheduler(SimKernel kernel)
        : base(kernel)
    {
        _threadMain = ThreadMain;
    }

    public override long Steps => Volatile.Read(ref _steps);

    public override bool IsRunning => _running;

    public override void CheckAdoptionAllowed()
    {
        if (_running)
        {
            throw new InvalidOperationException(
                $"thread '{Thread.CurrentThread.Name ?? Environment.CurrentManagedThreadId.ToString(System.Globalization.CultureInfo.InvariantCulture)}' " +
                "used a kernel object during a controlled run but is not a task of that run: only tasks created with kernel.Spawn inside kernel.Run may run simulated code.");
        }
    }

    // ---- Run.

    public override RunResult Run(string name, Action body)
    {
        if (_running)
        {
            throw new InvalidOperationException("a controlled run is already in progress on this kernel; Run is not reentrant");
        }

        if (KTask.CurrentOrNull is { IsScheduled: true } caller && ReferenceEquals(caller.Kernel, Kernel))
        {
            throw new InvalidOperationException($"task {caller.DisplayName} called Run inside a run; spawn tasks with kernel.Spawn instead");
        }

        BeginRun();
        _steps = 0;
        _live = 0;
        _done.Reset();
        StrategySpec spec = Kernel.Config.Strategy;
        bool guided = spec.Kind == StrategyKind.Guided;
        _recorder = guided || Kernel.Config.InterleavingHash ? new ScheduleRecorder(recordDecisions: guided) : null;
        _strategy = Strategy.Create(spec, Kernel.Seed, _recorder);
        _running = true;

        KTask main = CreateTask(name, body);
        _current = main;
        main.State = TaskState.Running;
        main.Gate!.Release();

        WaitForRunEnd();
        if (Failed)
        {
            Teardown();
        }
        else
        {
            string? divergence = _strategy.CheckFinished() ?? Kernel.Faults.CheckReplayFinished();
            if (divergence is not null)
            {
                Fail(RunOutcome.ReplayDivergence, divergence, null, null, captureGraph: false);
            }
        }

        _running = false;
        _current = null;
        RunResult result = FinishRun();
        if (_recorder is not null)
        {
            result.InterleavingHash = _recorder.Hash;
            result.Record = _recorder.Record;
            _recorder = null;
        }

        return result;
    }

    private void WaitForRunEnd()
    {
        TimeSpan stall = Kernel.Config.ControlledStallTimeout;
        long lastSteps = -1;
        while (!_done.Wait(stall))
        {
            long steps = Volatile.Read(ref _steps);
            if (steps == lastSteps)
            {
                KTask? cur = Volatile.Read(ref _current);
                Fail(
                    RunOutcome.Liveness,
                    $"LIVENESS: task {cur?.DisplayName ?? "?"} ran for {stall.TotalSeconds:0} s of wall time without reaching a scheduling point " +
                    $"(last at {cur?.LastOp.KernelName() ?? "?"}); it is spinning in code that never calls a kernel primitive",
                    null,
                    cur,
                    captureGraph: true);
                return;
            }

            lastSteps = steps;
        }
    }

    private void Teardown()
    {
        // The task that failed is unwinding on its own; let it finish first, then release
        // the others one at a time so no two threads of the run ever execute together.
        var pending = new List<KTask>(Tasks);
        KTask? running = _current;
        if (running is not null && running.OnWorker && !running.WorkerDone)
        {
            JoinThread(running);
        }

        foreach (KTask t in pending)
        {
            if (t.OnWorker && !ReferenceEquals(t, running) && TaskWorker.ReleaseUnlessDone(t))
            {
                JoinThread(t);
            }
        }
    }

    private static void JoinThread(KTask t)
    {
        if (!TaskWorker.Join(t, TimeSpan.FromSeconds(30)))
        {
            // A task that swallows KTaskAbortedException and spins: leave the background thread.
            t.Failure ??= new KTaskAbortedException($"task {t.DisplayName} did not unwind after the run was aborted");
        }
    }

    private KTask CreateTask(string name, Action body, object? context = null)
    {
        var t = new KTask(Kernel, Kernel.NextTaskId(), name, body, scheduled: true, adopted: false)
        {
            State = TaskState.Runnable,
            Context = context,
        };
        TaskWorker.Assign(t, _threadMain);
        Tasks.Add(t);
        _live++;
        return t;
    }

    // Runs on the task's worker once its Gate is first released.
    private void ThreadMain(KTask t)
    {
        KTask.SetCurrent(t);
        try
        {
            if ((Kernel.Flags & SimKernel.FlagAborted) == 0)
            {
                RunBody(t);
            }
        }
        finally
        {
            ExitTask(t);
            KTask.SetCurrent(null);
        }
    }

    private void ExitTask(KTask t)
    {
        if (Failed)
        {
            t.State = TaskState.Exited;
            return;
        }

        t.MarkExited();
        _live--;
        if (_live == 0)
        {
            _recorder?.AtPoint(t, SchedOp.Exit, null);
            long step = ++_steps;
            try
            {
                _strategy!.OnLastExit(t, step);
            }
            catch (ReplayDivergenceException e)
            {
                Fail(RunOutcome.ReplayDivergence, e.Message, e, t, captureGraph: false);
                return;
            }

            RecordStep(t, SchedOp.Exit, null, null);
            _done.Set();
            return;
        }

        KTask? next = PickNext(t, SchedOp.Exit, null);
        if (next is null)
        {
            return; // PickNext recorded the deadlock.
        }

        _current = next;
        next.State = TaskState.Running;
        next.Gate!.Release();
    }

    // ---- Scheduling points.

    public override void Point(KTask t, SchedOp op, KernelObject? obj)
    {
        if (!t.IsScheduled)
        {
            // Setup code outside a run, or the host looking at what a finished (even an
            // aborted) run left: single-threaded, nothing to schedule, nothing to abort.
            return;
        }

        ThrowIfAborted();

        if (t.PreemptCount > 0 || t.ObserverDepth > 0)
        {
            // A spinlock holder runs with preemption disabled: no switch until it unlocks.
            // An observer (strace decoding an argument) must not change the schedule it watches.
            return;
        }

        t.LastOp = op;
        t.LastObject = obj;
        KTask? next = PickNext(t, op, obj);
        if (next is null)
        {
            throw new KTaskAbortedException();
        }

        if (!ReferenceEquals(next, t))
        {
            t.State = TaskState.Runnable;
            SwitchTo(t, next);
        }
    }

    public override WakeReason Park(KTask t)
    {
        ThrowIfAborted();
        lock (t.ParkLock)
        {
            if (t.Permit)
            {
                t.Permit = false;
                return WakeReason.Woken;
            }
        }

        if (t.SignalInterrupts(t.WaitKind))
        {
            return WakeReason.Signaled;
        }

        if (t.WaitDeadlineNs <= Kernel.Clock.NowNs)
        {
            return WakeReason.TimedOut;
        }

        if (!t.IsScheduled && !_running && t.WaitDeadlineNs != long.MaxValue)
        {
            // Outside a run the calling thread is the only one (boot, or a host call before
            // Run): nobody else can wake it, but time can. Jump the clock to each timer due
            // before the deadline (a timer may wake it) and then to the deadline.
            while (true)
            {
                long until = Math.Min(Kernel.Clock.NextTimerDueNs, t.WaitDeadlineNs);
                Kernel.Clock.AdvanceToIdle(until);
                lock (t.ParkLock)
                {
                    if (t.Permit)
                    {
                        t.Permit = false;
                        return WakeReason.Woken;
                    }
                }

                if (until >= t.WaitDeadlineNs)
                {
                    return WakeReason.TimedOut;
                }
            }
        }

        if (!t.IsScheduled)
        {
            throw new InvalidOperationException(
                $"{t.DisplayName} would sleep in {t.WaitOp.KernelName()}({t.WaitObject?.Name}) outside a controlled run, where no other task can wake it; " +
                "run the scenario inside kernel.Run");
        }

        t.State = TaskState.Blocked;
        KTask? next = PickNext(t, SchedOp.Block, t.WaitObject);
        if (next is null)
        {
            throw new KTaskAbortedException();
        }

        if (ReferenceEquals(next, t))
        {
            t.State = TaskState.Running; // Its own timeout woke it while everything else slept.
        }
        else
        {
            SwitchTo(t, next);
        }

        lock (t.ParkLock)
        {
            t.Permit = false;
        }

        return t.WakeReason;
    }

    public override void Unpark(KTask t)
    {
        lock (t.ParkLock)
        {
            t.Permit = true;
            if (t.State == TaskState.Blocked)
            {
                t.WakeReason = WakeReason.Woken;
                t.State = TaskState.Runnable;
            }
        }
    }

    public override void WakeForSignal(KTask t)
    {
        lock (t.ParkLock)
        {
            if (t.State == TaskState.Blocked && t.SignalInterrupts(t.WaitKind))
            {
                t.WakeReason = WakeReason.Signaled;
                t.State = TaskState.Runnable;
            }
        }
    }

    public override void Yield(KTask t)
    {
    }

    public override KTask Spawn(KTask parent, string name, Action body, object? context)
    {
        if (!_running || !parent.IsScheduled)
        {
            throw new InvalidOperationException(
                $"in controlled mode tasks are spawned by tasks of a run: call kernel.Spawn(\"{name}\", ...) inside kernel.Run(...)");
        }

        ThrowIfAborted();
        KTask t = CreateTask(name, body, context);
        Kernel.Trace.TaskSpawn(parent, t);
        Point(parent, SchedOp.Spawn, t);
        return t;
    }

    public override void SpawnTimerTask(string name, Action body)
    {
        if (!_running)
        {
            throw new InvalidOperationException("a timer fired outside a controlled run");
        }

        CreateTask(name, body);
    }

    public override void OnClockAdvanced(KTask? by)
    {
        long now = Kernel.Clock.NowNs;
        foreach (KTask t in Tasks)
        {
            if (t.State == TaskState.Blocked && t.WaitDeadlineNs <= now)
            {
                lock (t.ParkLock)
                {
                    t.WakeReason = WakeReason.TimedOut;
                    t.State = TaskState.Runnable;
                }
            }
        }
    }

    /// <summary>
    /// Counts a step, enforces the budget, and asks the strategy who runs next. Returns
    /// null when the run has just failed (deadlock or budget); the caller unwinds.
    /// </summary>
    private KTask? PickNext(KTask current, SchedOp op, KernelObject? obj)
    {
        long step = ++_steps;
        if (step > Kernel.Config.StepBudget)
        {
            Fail(RunOutcome.Liveness, LivenessReport(), null, current, captureGraph: true);
            return null;
        }

        _recorder?.AtPoint(current, op, obj);
        while (true)
        {
            _runnable.Clear();
            foreach (KTask t in Tasks)
            {
                if (t.State == TaskState.Runnable || (ReferenceEquals(t, current) && t.State == TaskState.Running))
                {
                    _runnable.Add(t);
                }
            }

            if (_runnable.Count > 0)
            {
                KTask next;
                try
                {
                    next = _strategy!.Choose(current, _runnable, op, obj, step);
                }
                catch (ReplayDivergenceException e)
                {
                    Fail(RunOutcome.ReplayDivergence, e.Message, e, current, captureGraph: false);
                    return null;
                }

                _recorder?.Chosen(current, _runnable, next);
                RecordStep(current, op, obj, next);
                return next;
            }

            // Nothing can run: let virtual time pass to the next timer or timed sleep.
            long wake = long.MaxValue;
            foreach (KTask t in Tasks)
            {
                if (t.State == TaskState.Blocked && t.WaitDeadlineNs < wake)
                {
                    wake = t.WaitDeadlineNs;
                }
            }

            wake = Math.Min(wake, Kernel.Clock.NextTimerDueNs);
            if (wake == long.MaxValue)
            {
                RecordStep(current, op, obj, null);
                Fail(RunOutcome.Deadlock, DeadlockHeader(current, op, obj), null, current, captureGraph: true);
                return null;
            }

            try
            {
                _strategy!.OnClockAdvance(wake);
            }
            catch (ReplayDivergenceException e)
            {
                Fail(RunOutcome.ReplayDivergence, e.Message, e, current, captureGraph: false);
                return null;
            }

            Kernel.Clock.AdvanceToIdle(wake);
            Kernel.Trace.ClockAdvance(wake);
            OnClockAdvanced(null);
        }
    }

    private void RecordStep(KTask current, SchedOp op, KernelObject? obj, KTask? next)
    {
        Kernel.Trace.Step(_steps, current, op, obj, next);
    }

    private void SwitchTo(KTask from, KTask to)
    {
        _current = to;
        to.State = TaskState.Running;
        to.Gate!.Release();
        from.Gate!.Wait();
        ThrowIfAborted();
    }

    private void ThrowIfAborted()
    {
        if ((Kernel.Flags & SimKernel.FlagAborted) != 0)
        {
            throw new KTaskAbortedException();
        }
    }

    // ---- Failures.

    protected override void OnFailed() => _done.Set();

    private string DeadlockHeader(KTask current, SchedOp op, KernelObject? obj)
    {
        var sb = new StringBuilder();
        sb.Append("DEADLOCK: no task can run and no timer is pending (step ")
          .Append(_steps).Append(", t=").Append(SimClock.FormatNs(Kernel.Clock.NowNs)).Append("); ")
          .Append(current.DisplayName).Append(" was the last to run, at ").Append(op.KernelName());
        if (obj is not null)
        {
            sb.Append('(').Append(obj.Name).Append(')');
        }

        return sb.ToString();
    }

    private string LivenessReport()
        => $"LIVENESS: step budget of {Kernel.Config.StepBudget} scheduling steps exhausted at t={SimClock.FormatNs(Kernel.Clock.NowNs)}; " +
           "tasks still waiting or spinning:";
}
