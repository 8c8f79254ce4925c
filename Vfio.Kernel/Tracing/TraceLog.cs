// The kernel's trace buffer. In controlled mode it always records the schedule (the
// steps a replay follows); structured events are recorded only while Enabled, and every
// emitter checks Enabled first so tracing costs one field read when off.

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
            Add(TraceRecordKind.Event, t, "task_start", t.DisplayName, 0, null);
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
