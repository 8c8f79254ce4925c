// Replays a recorded schedule: at every scheduling point the code must be where the
// trace says (same task, same operation, same object), and the trace's choice must be
// runnable. The first mismatch ends the run with a divergence report rather than
// silently exploring a different interleaving.

namespace Vfio.Kernel;

/// <summary>A replay met code that no longer follows its trace.</summary>
public sealed class ReplayDivergenceException : Exception
{
    /// <summary>Creates the exception.</summary>
    public ReplayDivergenceException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception.</summary>
    public ReplayDivergenceException()
    {
    }

    /// <summary>Creates the exception.</summary>
    public ReplayDivergenceException(string message, Exception inner)
        : base(message, inner)
    {
    }
}

internal sealed class ReplayStrategy(RunTrace trace) : Strategy
{
    private readonly List<TraceRecord> _schedule = [.. trace.Schedule];
    private int _pos;

    public override KTask Choose(KTask current, List<KTask> runnable, SchedOp op, KernelObject? obj, long step)
    {
        TraceRecord r = Expect(step, current, op, obj);
        if (r.NextTaskId == 0)
        {
            throw Diverged(r.Step, $"the trace ends the run here, but tasks can still run after {current.DisplayName} reached {Where(op, obj)}");
        }

        foreach (KTask t in runnable)
        {
            if (t.Id == r.NextTaskId)
            {
                return t;
            }
        }

        throw Diverged(r.Step, $"the trace runs task {r.NextTaskId} next, but it cannot run now (runnable: {string.Join(", ", runnable.Select(t => t.DisplayName))})");
    }

    public override void OnClockAdvance(long timeNs)
    {
        if (_pos >= _schedule.Count)
        {
            throw Diverged(-1, $"the trace has ended, but every task fell asleep and the clock must advance to t={SimClock.FormatNs(timeNs)}");
        }

        TraceRecord r = _schedule[_pos];
        if (r.Kind != TraceRecordKind.Clock || r.TimeNs != timeNs)
        {
            throw Diverged(r.Step, $"the trace has {Describe(r)}, but every task fell asleep and the clock advances to t={SimClock.FormatNs(timeNs)}");
        }

        _pos++;
    }

    public override void OnLastExit(KTask t, long step)
    {
        TraceRecord r = Expect(step, t, SchedOp.Exit, null);
        if (r.NextTaskId != 0)
        {
            throw Diverged(r.Step, $"the trace runs task {r.NextTaskId} after {t.DisplayName} exits, but no task is left");
        }
    }

    public override string? CheckFinished()
        => _pos < _schedule.Count
            ? $"REPLAY DIVERGED: the run finished after {_pos} of the trace's {_schedule.Count} schedule records; next in the trace: {Describe(_schedule[_pos])}"
            : null;

    private TraceRecord Expect(long step, KTask current, SchedOp op, KernelObject? obj)
    {
        if (_pos >= _schedule.Count)
        {
            throw Diverged(step, $"the trace has ended, but {current.DisplayName} reached {Where(op, obj)}");
        }

        TraceRecord r = _schedule[_pos];
        if (r.Kind != TraceRecordKind.Step || r.TaskId != current.Id || r.Op != op.KernelName() || r.Object != obj?.Name)
        {
            throw Diverged(r.Step, $"the trace has {Describe(r)}, the code has {current.DisplayName} at {Where(op, obj)}");
        }

        _pos++;
        return r;
    }

    private static string Where(SchedOp op, KernelObject? obj) => obj is null ? op.KernelName() : $"{op.KernelName()}({obj.Name})";

    private static string Describe(TraceRecord r) => r.Kind == TraceRecordKind.Clock
        ? $"a clock advance to t={SimClock.FormatNs(r.TimeNs)}"
        : $"{r.Task} at {(r.Object is null ? r.Op : $"{r.Op}({r.Object})")}";

    private static ReplayDivergenceException Diverged(long step, string what)
        => new(step >= 0 ? $"REPLAY DIVERGED at step {step}: {what}" : $"REPLAY DIVERGED: {what}");
}
