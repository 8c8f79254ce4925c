// One line of a run's trace: a scheduling step, a jump of virtual time, a structured
// event, a fault-injection decision or a warning; with the timeline on, also lock holds,
// sleeps, wake-ups and counter values (the kinds after Warning, added in format version 1
// without a bump: older files simply have none of them).

namespace Vfio.Kernel;

/// <summary>What a <see cref="TraceRecord"/> records.</summary>
public enum TraceRecordKind
{
    /// <summary>A scheduling decision: <c>Task</c> reached <c>Op</c> on <c>Object</c>; <c>Next</c> runs next.</summary>
    Step,
    /// <summary>Nothing could run; virtual time jumped to <c>TimeNs</c>.</summary>
    Clock,
    /// <summary>A structured trace event (only when tracing is enabled).</summary>
    Event,
    /// <summary>A fault-injection site was evaluated while injection was armed; <c>Detail</c> says pass or fail.</summary>
    Fault,
    /// <summary>A kernel warning (WARN, lockdep, refcount); <c>Op</c> <c>bug</c> is a kernel BUG (timeline only).</summary>
    Warning,
    /// <summary>Timeline: <c>Task</c> took the lock <c>Object</c>; <c>Detail</c> is the lock's kind and mode (<c>mutex</c>, <c>rw_semaphore read</c>, <c>spinlock trylock</c>).</summary>
    Acquire,
    /// <summary>Timeline: <c>Task</c> released the lock <c>Object</c>.</summary>
    Release,
    /// <summary>Timeline: <c>Task</c> starts to sleep in <c>Op</c> (<c>mutex_lock</c>, <c>wait_for_completion</c>) on <c>Object</c> (none for <c>msleep</c>).</summary>
    Block,
    /// <summary>Timeline: <c>Task</c> runs again after sleeping on <c>Object</c> (woken, timed out, signalled, or the wait was over before it slept).</summary>
    Unblock,
    /// <summary>Timeline: <c>Task</c> woke the task <c>NextTaskId</c> (named in <c>Detail</c>) sleeping on <c>Object</c> (or interrupted its sleep with <c>signal N</c>).</summary>
    Wake,
    /// <summary>Timeline: the counter named <c>Object</c> has the value in <c>Detail</c> (an integer).</summary>
    Counter,
}

/// <summary>One record of a <see cref="RunTrace"/>.</summary>
/// <param name="Seq">Position in the trace (0-based).</param>
/// <param name="Kind">What this record is.</param>
/// <param name="Step">The scheduling step it belongs to.</param>
/// <param name="TimeNs">Virtual time.</param>
/// <param name="TaskId">The acting task's id (0 for the kernel itself).</param>
/// <param name="Task">The acting task's <c>comm/pid</c>.</param>
/// <param name="Op">The operation or event name (<c>mutex_lock</c>).</param>
/// <param name="Object">The object's name, if any.</param>
/// <param name="NextTaskId">For steps: the task chosen to run next (0 when none); for wake-ups: the task woken.</param>
/// <param name="Detail">Free text: event details, the fault decision, the warning title.</param>
public sealed record TraceRecord(
    long Seq,
    TraceRecordKind Kind,
    long Step,
    long TimeNs,
    int TaskId,
    string Task,
    string Op,
    string? Object,
    int NextTaskId,
    string? Detail);
