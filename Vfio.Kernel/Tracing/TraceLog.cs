// The kernel's trace buffer. In controlled mode it always records the schedule (the
// steps a replay follows); structured events are recorded only while Enabled, and every
// emitter checks Enabled first so tracing costs one field read when off.
//
// With KernelConfig.Timeline the primitives also record the timeline (lock holds, sleeps,
// wake-ups, counters) for RunTrace.ToPerfetto. Each timeline call site tests the kernel's
// flags word first (SimKernel.TimelineActive, or TimelineEnabled outside Vfio.Kernel), so
// a kernel without the timeline pays one flag test and allocates nothing. _lock is a leaf:
// it is taken under the primitives' internal wait-list locks and takes nothing itself.

namespace Vfio.Kernel;

/// <summary>
/// Trace events of a kernel and, in controlled mode, the schedule of the current run.
/// Emit events from simulated code as <c>if (k.Trace.Enabled) k.Trace.Event(...)</c>.
/// </summary>
public sealed class TraceLog
{
    private readonly SimKernel _kernel;

    // Protects _records: events arrive from every task in real mode.
    private readonly Lock _lock = new();
    private readonly List<TraceRecord> _records = [];
    private volatile bool _enabled;
    private int _runWarningStart;

    internal TraceLog(SimKernel kernel, bool enabled)
    {
        _kernel = kernel;
        _enabled = enabled;
    }

    /// <summary>Whether structured events are recorded. The schedule is recorded regardless in controlled mode.</summary>
    public bool Enabled
    {
        get => _enabled;
        set
        {
            _enabled = value;
            if (value)
            {
                _kernel.SetFlag(SimKernel.FlagTrace);
            }
            else
            {
                _kernel.ClearFlag(SimKernel.FlagTrace);
            }
        }
    }

    /// <summary>Whether the timeline is recorded (<see cref="KernelConfig.Timeline"/>): lock holds, sleeps, wake-ups and counters.</summary>
    public bool TimelineEnabled => _kernel.TimelineActive;

    /// <summary>A snapshot of everything recorded since the last run started (or since creation).</summary>
    public IReadOnlyList<TraceRecord> Records
    {
        get
        {
            lock (_lock)
            {
                return [.. _records];
            }
        }
    }

    /// <summary>Forgets every record.</summary>
    public void Clear()
    {
        lock (_lock)
        {
            _records.Clear();
        }
    }

    /// <summary>
    /// Records a structured event by <paramref name="task"/> on <paramref name="obj"/>.
    /// Does nothing when tracing is off; callers that build a detail string should test
    /// <see cref="Enabled"/> first so the string is never built.
    /// </summary>
    public void Event(KTask? task, string name, KernelObject? obj, string? detail = null)
    {
        if (!_enabled)
        {
            return;
        }

        Add(TraceRecordKind.Event, task, name, obj?.Name, 0, detail);
    }

    /// <summary>Records a structured event on a named thing that is not a kernel object.</summary>
    public void Event(KTask? task, string name, string? objectName, string? detail = null)
    {
        if (!_enabled)
        {
            return;
        }

        Add(TraceRecordKind.Event, task, name, objectName, 0, detail);
    }

    /// <summary>
    /// Records that the counter <paramref name="name"/> now has <paramref name="value"/>, for
    /// a counter track of the timeline. Does nothing unless <see cref="TimelineEnabled"/>;
    /// callers that build the name should test it first so the name is never built.
    /// </summary>
    public void Counter(string name, long value)
    {
        if (!_kernel.TimelineActive)
        {
            return;
        }

        Add(TraceRecordKind.Counter, KTask.CurrentOrNull, "counter", name, 0, value.ToString(System.Globalization.CultureInfo.InvariantCulture));
    }

    // ---- Timeline records written by the primitives (callers test the trace flag first).

    /// <summary>A lock was taken: a timeline hold with the timeline on, else the lock_acquire event.</summary>
    internal void LockAcquired(KTask t, KernelObject lk, string? mode)
    {
        if (!_enabled)
        {
            return; // The timeline implies tracing: one field read when both are off.
        }

        if (_kernel.TimelineActive)
        {
            Add(TraceRecordKind.Acquire, t, "lock_acquire", lk.Name, 0, mode is null ? lk.Kind : $"{lk.Kind} {mode}");
        }
        else
        {
            Add(TraceRecordKind.Event, t, "lock_acquire", lk.Name, 0, mode);
        }
    }

    /// <summary>A lock is released: the end of a timeline hold with the timeline on, else the lock_release event.</summary>
    internal void LockReleased(KTask t, KernelObject lk)
    {
        if (!_enabled)
        {
            return;
        }

        if (_kernel.TimelineActive)
        {
            Add(TraceRecordKind.Release, t, "lock_release", lk.Name, 0, null);
        }
        else
        {
            Add(TraceRecordKind.Event, t, "lock_release", lk.Name, 0, null);
        }
    }

    internal void Block(KTask t, SchedOp op, KernelObject? obj)
        => Add(TraceRecordKind.Block, t, op.KernelName(), obj?.Name, 0, null);

    internal void Unblock(KTask t)
        => Add(TraceRecordKind.Unblock, t, "wake_up_process", t.WaitObject?.Name, 0, null);

    /// <summary>The running task (the waker) makes <paramref name="wakee"/>, asleep on <paramref name="what"/> (an object's name, or a signal), runnable.</summary>
    internal void Wake(string what, KTask wakee)
        => Add(TraceRecordKind.Wake, KTask.CurrentOrNull, "wake", what, wakee.Id, wakee.DisplayName);

    /// <summary>A kernel BUG (BUG_ON, KASAN) as a timeline instant.</summary>
    internal void Bug(KTask? t, string message)
        => Add(TraceRecordKind.Warning, t, "bug", null, 0, message);

    internal void Step(long step, KTask task, SchedOp op, KernelObject? obj, KTask? next)
    {
        lock (_lock)
        {
            _records.Add(new TraceRecord(
                _records.Count, TraceRecordKind.Step, step, _kernel.Clock.NowNs, task.Id, task.DisplayName,
                op.KernelName(), obj?.Name, next?.Id ?? 0, null));
        }
    }

    internal void ClockAdvance(long timeNs)
    {
        lock (_lock)
        {
            _records.Add(new TraceRecord(
                _records.Count, TraceRecordKind.Clock, _kernel.Scheduler.Steps, timeNs, 0, "kernel", SchedOp.ClockAdvance.KernelName(), null, 0, null));
        }
    }

    internal void Fault(KTask? task, string site, long hit, bool fail)
    {
        Add(TraceRecordKind.Fault, task, "should_fail", site, 0, fail ? $"hit {hit}: FAIL" : $"hit {hit}: pass");
    }

    internal void Warning(KTask? task, KernelWarning w)
    {
        Add(TraceRecordKind.Warning, task, w.Kind.ToString().ToLowerInvariant(), null, 0, w.Title);
    }

    internal void TaskStart(KTask t)
    {
        if (_enabled)
        {
            // The timeline places the task in its process (the task's context when it starts).
            string? process = _kernel.TimelineActive && t.Context is IProcessIdentity p
                ? string.Create(System.Globalization.CultureInfo.InvariantCulture, $"pid {p.Pid} {p.Comm}")
                : null;
            Add(TraceRecordKind.Event, t, "task_start", t.DisplayName, 0, process);
        }
    }

    internal void TaskSpawn(KTask parent, KTask child)
    {
        if (_enabled)
        {
            Add(TraceRecordKind.Event, parent, "task_spawn", child.DisplayName, 0, null);
        }
    }

    private void Add(TraceRecordKind kind, KTask? task, string op, string? obj, int next, string? detail)
    {
        if (KTask.CurrentOrNull is { ObserverDepth: > 0 } && kind is TraceRecordKind.Event or TraceRecordKind.Wake or TraceRecordKind.Acquire or TraceRecordKind.Release)
        {
            return; // What an observer's primitives do is not part of the run (SimKernel.Unobserved).
        }

        lock (_lock)
        {
            _records.Add(new TraceRecord(
                _records.Count, kind, _kernel.Scheduler.Steps, _kernel.Clock.NowNs, task?.Id ?? 0, task?.DisplayName ?? "kernel", op, obj, next, detail));
        }
    }

    // ---- Run boundaries.

    internal void BeginRun()
    {
        lock (_lock)
        {
            _records.Clear();
        }

        _runWarningStart = _kernel.Warnings.Count;
    }

    internal RunResult FinishRun(RunOutcome outcome, string? report, Exception? exception, string? failedTask, WaitForGraph? graph, bool warningsFail)
    {
        IReadOnlyList<KernelWarning> all = _kernel.Warnings;
        var warnings = new List<KernelWarning>();
        for (int i = _runWarningStart; i < all.Count; i++)
        {
            warnings.Add(all[i]);
        }

        if (outcome == RunOutcome.Completed && warningsFail)
        {
            foreach (KernelWarning w in warnings)
            {
                if (!w.Expected)
                {
                    outcome = RunOutcome.UnexpectedWarning;
                    report = $"the kernel printed a warning no test expected: {w.Title}";
                    failedTask = w.Task;
                    break;
                }
            }
        }

        KernelConfig c = _kernel.Config;
        var trace = new RunTrace(
            RunTrace.CurrentVersion,
            _kernel.Seed,
            c.Mode == SchedulerMode.Controlled ? (c.Strategy.Kind == StrategyKind.Replay ? c.Strategy.ReplayTrace!.Strategy : c.Strategy.ToString()) : "real",
            c.Mode,
            c.Profile.Name,
            c.StepBudget,
            outcome,
            Records);
        return new RunResult(outcome, report, exception, failedTask, graph, warnings, trace);
    }
}
