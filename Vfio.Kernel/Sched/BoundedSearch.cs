// Bounded-exhaustive schedule search (CHESS-style iterative preemption bounding) with
// partial-order reduction, and the shrinking of a failing schedule. Both work by
// re-execution: every schedule is a fresh run that a Guided strategy steers.
//
// SKELETON: the signatures are fixed; the bodies are being written.

namespace Vfio.Kernel;

/// <summary>
/// A forced context switch of a guided schedule: when task <see cref="TaskId"/> reaches its
/// <see cref="Point"/>-th scheduling point (counted from 1 per task), task
/// <see cref="NextTaskId"/> runs next instead of the default choice.
/// </summary>
/// <param name="TaskId">The task that is preempted (or blocks).</param>
/// <param name="Point">Its scheduling point, counted from 1.</param>
/// <param name="NextTaskId">The task that runs next.</param>
public readonly record struct ScheduleDeviation(int TaskId, int Point, int NextTaskId);

/// <summary>What a bounded search explores.</summary>
public sealed record BoundedSearchOptions
{
    /// <summary>At most this many preemptions (switches away from a task that could go on) per schedule.</summary>
    public int PreemptionBound { get; init; } = 2;

    /// <summary>Skip schedules that only reorder independent steps (sleep sets over kernel objects).</summary>
    public bool PartialOrderReduction { get; init; } = true;

    /// <summary>Stop after this many schedules even if the bounded space is not exhausted.</summary>
    public int MaxSchedules { get; init; } = int.MaxValue;

    /// <summary>This shard's index in [0, <see cref="ShardCount"/>).</summary>
    public int ShardIndex { get; init; }

    /// <summary>How many shards split the search tree (by the first deviation of a schedule).</summary>
    public int ShardCount { get; init; } = 1;

    /// <summary>Stop at the first failing schedule (default) or search on.</summary>
    public bool StopAtFirstFailure { get; init; } = true;
}

/// <summary>Progress of a search or exploration, for progress bars.</summary>
/// <param name="Schedules">Schedules run so far.</param>
/// <param name="DistinctInterleavings">Distinct interleavings (happens-before classes) among them.</param>
/// <param name="Failures">Failing schedules so far.</param>
public readonly record struct SearchProgress(long Schedules, long DistinctInterleavings, long Failures);

/// <summary>The outcome of a bounded search.</summary>
public sealed class BoundedSearchResult
{
    internal BoundedSearchResult(long schedules, long distinct, bool exhausted, IReadOnlyList<RunResult> failures)
    {
        Schedules = schedules;
        DistinctInterleavings = distinct;
        Exhausted = exhausted;
        Failures = failures;
    }

    /// <summary>Schedules run.</summary>
    public long Schedules { get; }

    /// <summary>Distinct interleavings covered (runs whose happens-before order differed).</summary>
    public long DistinctInterleavings { get; }

    /// <summary>True when every schedule within the preemption bound (up to reduction) was run.</summary>
    public bool Exhausted { get; }

    /// <summary>The failing runs, in the order found.</summary>
    public IReadOnlyList<RunResult> Failures { get; }
}

/// <summary>Bounded-exhaustive search over schedules.</summary>
public static class BoundedSearch
{
    /// <summary>
    /// Runs every schedule with at most <see cref="BoundedSearchOptions.PreemptionBound"/>
    /// preemptions, once per equivalence class when reduction is on. <paramref name="runOne"/>
    /// runs one schedule on a fresh kernel configured with the strategy it is given (a guided
    /// strategy) and returns the result.
    /// </summary>
    public static BoundedSearchResult Run(BoundedSearchOptions options, Func<StrategySpec, RunResult> runOne, Action<SearchProgress>? progress = null)
        => throw new NotImplementedException("BoundedSearch.Run is being written");
}

/// <summary>The outcome of shrinking a failing schedule.</summary>
public sealed class ShrinkResult
{
    internal ShrinkResult(RunResult shrunk, int preemptionsBefore, int preemptionsAfter, long stepsBefore, long stepsAfter, int runs)
    {
        Shrunk = shrunk;
        PreemptionsBefore = preemptionsBefore;
        PreemptionsAfter = preemptionsAfter;
        StepsBefore = stepsBefore;
        StepsAfter = stepsAfter;
        Runs = runs;
    }

    /// <summary>The smallest failing run found; its trace replays it.</summary>
    public RunResult Shrunk { get; }

    /// <summary>Preemptions of the original schedule.</summary>
    public int PreemptionsBefore { get; }

    /// <summary>Preemptions of the shrunk schedule.</summary>
    public int PreemptionsAfter { get; }

    /// <summary>Steps of the original run.</summary>
    public long StepsBefore { get; }

    /// <summary>Steps of the shrunk run.</summary>
    public long StepsAfter { get; }

    /// <summary>Runs the shrinking took.</summary>
    public int Runs { get; }
}

/// <summary>Reduces a failing schedule while it still fails.</summary>
public static class ScheduleShrinker
{
    /// <summary>
    /// Shrinks <paramref name="failing"/> (a controlled run's trace): fewer preemptions, then
    /// fewer steps, keeping only schedules for which <paramref name="stillFails"/> holds.
    /// <paramref name="runOne"/> runs one schedule on a fresh kernel with the strategy it is given.
    /// </summary>
    public static ShrinkResult Shrink(RunTrace failing, Func<StrategySpec, RunResult> runOne, Func<RunResult, bool> stillFails, int maxRuns = 2000)
        => throw new NotImplementedException("ScheduleShrinker.Shrink is being written");
}
