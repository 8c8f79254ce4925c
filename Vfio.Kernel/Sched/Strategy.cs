// Runtime strategies of the controlled scheduler. Each picks the next task from the
// runnable list (always in task-id order, so choices depend only on the seed and the
// program). Separate RNG stream from kernel.Random: replays take choices from the trace
// yet kernel code still draws the same numbers.

namespace Vfio.Kernel;

internal abstract class Strategy
{
    public static Strategy Create(StrategySpec spec, ulong seed, ScheduleRecorder? recorder = null) => spec.Kind switch
    {
        StrategyKind.Random => new RandomStrategy(seed),
        StrategyKind.Pct => new PctStrategy(seed, spec.Depth, spec.MaxSteps),
        StrategyKind.RoundRobin => new RoundRobinStrategy(spec.Quantum),
        StrategyKind.Replay => new ReplayStrategy(spec.ReplayTrace!),
        StrategyKind.Guided => new GuidedStrategy(spec.Deviations, recorder ?? throw new ArgumentNullException(nameof(recorder), "the guided strategy counts scheduling points with the run's recorder")),
        _ => throw new ArgumentOutOfRangeException(nameof(spec), spec.Kind, "unknown strategy"),
    };

    /// <summary>
    /// Picks the task to run after <paramref name="current"/> reached <paramref name="op"/>.
    /// <paramref name="runnable"/> holds the runnable tasks (and current, if it can go on)
    /// in id order and is never empty.
    /// </summary>
    public abstract KTask Choose(KTask current, List<KTask> runnable, SchedOp op, KernelObject? obj, long step);

    /// <summary>Virtual time is about to jump to <paramref name="timeNs"/> because nothing could run.</summary>
    public virtual void OnClockAdvance(long timeNs)
    {
    }

    /// <summary>The last task of the run exited at <paramref name="step"/>.</summary>
    public virtual void OnLastExit(KTask t, long step)
    {
    }

    /// <summary>After a run that did not fail: a divergence report when a replay has steps left, else null.</summary>
    public virtual string? CheckFinished() => null;
}

internal sealed class RandomStrategy(ulong seed) : Strategy
{
    private readonly KRandom _rng = new(seed, stream: 1);

    public override KTask Choose(KTask current, List<KTask> runnable, SchedOp op, KernelObject? obj, long step)
        => runnable.Count == 1 ? runnable[0] : runnable[_rng.Next(runnable.Count)];
}

internal sealed class RoundRobinStrategy(int quantum) : Strategy
{
    private int _ticks;

    public override KTask Choose(KTask current, List<KTask> runnable, SchedOp op, KernelObject? obj, long step)
    {
        bool currentCanRun = runnable.Contains(current);
        if (currentCanRun && ++_ticks < quantum)
        {
            return current;
        }

        _ticks = 0;
        // The first runnable task after current in id order, wrapping around.
        foreach (KTask t in runnable)
        {
            if (t.Id > current.Id)
            {
                return t;
            }
        }

        return runnable[0];
    }
}

/// <summary>
/// PCT: every task gets a random priority above d; d−1 change points are drawn uniformly
/// from [1, k]; at each step the highest-priority runnable task runs, and at the i-th
/// change point the running task drops to priority i (below every initial priority).
/// Finds any bug of depth d with probability at least 1/(n·k^(d−1)).
/// </summary>
internal sealed class PctStrategy : Strategy
{
    private readonly KRandom _rng;
    private readonly int _depth;
    private readonly long[] _changePoints;
    private int _nextChange;

    public PctStrategy(ulong seed, int depth, int maxSteps)
    {
        _rng = new KRandom(seed, stream: 1);
        _depth = depth;
        int changes = Math.Min(depth - 1, maxSteps);
        var points = new SortedSet<long>();
        while (points.Count < changes)
        {
            points.Add(1 + _rng.Next(maxSteps));
        }

        _changePoints = [.. points];
    }

    public override KTask Choose(KTask current, List<KTask> runnable, SchedOp op, KernelObject? obj, long step)
    {
        foreach (KTask t in runnable)
        {
            if (t.Priority == 0)
            {
                // New task: a random rank in the high band (ties broken by id below).
                t.Priority = _depth + 1 + _rng.Next(1 << 30);
            }
        }

        if (current.Priority == 0)
        {
            current.Priority = _depth + 1 + _rng.Next(1 << 30);
        }

        if (_nextChange < _changePoints.Length && step >= _changePoints[_nextChange])
        {
            _nextChange++;
            current.Priority = _nextChange;
        }

        KTask best = runnable[0];
        for (int i = 1; i < runnable.Count; i++)
        {
            if (runnable[i].Priority > best.Priority)
            {
                best = runnable[i];
            }
        }

        return best;
    }
}
