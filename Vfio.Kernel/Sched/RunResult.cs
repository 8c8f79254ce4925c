// The result of Kernel.Run: how the run ended, the evidence (report, wait-for graph,
// exception, warnings) and the trace that replays it.

using System.Text;

namespace Vfio.Kernel;

/// <summary>How a run ended.</summary>
public enum RunOutcome
{
    /// <summary>Every task exited normally and no unexpected warning was printed.</summary>
    Completed,
    /// <summary>A task threw (an assertion, a simulator API misuse, an unexpected exception).</summary>
    Failed,
    /// <summary>BUG_ON or another kernel panic.</summary>
    Panic,
    /// <summary>No task could run and no timer was pending: the wait-for graph says who waits for whom.</summary>
    Deadlock,
    /// <summary>The step budget (controlled) or the wall-clock watchdog (real) ran out while tasks still waited or spun.</summary>
    Liveness,
    /// <summary>Every task finished, but the kernel printed a warning no test expected.</summary>
    UnexpectedWarning,
    /// <summary>A replay met code that no longer follows the trace.</summary>
    ReplayDivergence,
}

/// <summary>The result of <see cref="SimKernel.Run(string, Action)"/>.</summary>
public sealed class RunResult
{
    internal RunResult(
        RunOutcome outcome,
        string? report,
        Exception? exception,
        string? failedTask,
        WaitForGraph? graph,
        IReadOnlyList<KernelWarning> warnings,
        RunTrace trace)
    {
        Outcome = outcome;
        Report = report;
        Exception = exception;
        FailedTask = failedTask;
        Graph = graph;
        Warnings = warnings;
        Trace = trace;
    }

    /// <summary>How the run ended.</summary>
    public RunOutcome Outcome { get; }

    /// <summary>True when the run completed with no failure and no unexpected warning.</summary>
    public bool Passed => Outcome == RunOutcome.Completed;

    /// <summary>The deadlock, liveness, divergence or failure report, as text.</summary>
    public string? Report { get; }

    /// <summary>The exception that failed the run, if one did.</summary>
    public Exception? Exception { get; }

    /// <summary>The task in which the failure surfaced (<c>comm/pid</c>).</summary>
    public string? FailedTask { get; }

    /// <summary>The wait-for graph at a deadlock or liveness failure.</summary>
    public WaitForGraph? Graph { get; }

    /// <summary>Every warning the kernel printed during the run.</summary>
    public IReadOnlyList<KernelWarning> Warnings { get; }

    /// <summary>The trace: header, schedule (controlled mode) and events; replayable in controlled mode.</summary>
    public RunTrace Trace { get; }

    /// <summary>The seed of the run.</summary>
    public ulong Seed => Trace.Seed;

    /// <summary>
    /// The run's interleaving class: a 64-bit hash of its happens-before order (per kernel
    /// object, the order in which tasks operated on it; operations without an object order
    /// against everything). Two runs that differ only by the order of operations on
    /// different objects hash equal. Set for guided runs and for controlled runs with
    /// <see cref="KernelConfig.InterleavingHash"/>; null otherwise.
    /// </summary>
    public ulong? InterleavingHash { get; internal set; }

    /// <summary>Guided runs: the steps and decision points, for the bounded search and the shrinker.</summary>
    internal ScheduleRecord? Record { get; set; }

    /// <summary>Scheduling steps taken (controlled mode).</summary>
    public long Steps => Trace.StepCount;

    /// <summary>A one-line summary followed by the report, for test failure messages.</summary>
    public string Describe()
    {
        var sb = new StringBuilder();
        sb.Append("outcome=").Append(Outcome)
          .Append(" seed=").Append(Trace.Seed)
          .Append(" strategy=").Append(Trace.Strategy)
          .Append(" steps=").Append(Trace.StepCount);
        if (FailedTask is not null)
        {
            sb.Append(" task=").Append(FailedTask);
        }

        sb.AppendLine();
        if (Report is not null)
        {
            sb.AppendLine(Report);
        }

        if (Exception is not null && Outcome is RunOutcome.Failed or RunOutcome.Panic)
        {
            sb.AppendLine(Exception.ToString());
        }

        foreach (KernelWarning w in Warnings)
        {
            if (!w.Expected)
            {
                sb.AppendLine(w.Text);
            }
        }

        return sb.ToString();
    }

    /// <inheritdoc/>
    public override string ToString() => Describe();
}
