// Describes a controlled-scheduling strategy independently of any run, so it can be
// written into traces, parsed from the command line and instantiated per run.

using System.Globalization;

namespace Vfio.Kernel;

/// <summary>The scheduling strategies of the controlled scheduler.</summary>
public enum StrategyKind
{
    /// <summary>At every point pick a runnable task uniformly at random.</summary>
    Random,
    /// <summary>Probabilistic concurrency testing with bug depth d (Burckhardt et al., ASPLOS 2010).</summary>
    Pct,
    /// <summary>Rotate through runnable tasks in id order, switching every <c>quantum</c> points.</summary>
    RoundRobin,
    /// <summary>Follow a recorded trace step by step; fail on divergence.</summary>
    Replay,
    /// <summary>Run without preemption except at the given deviations (bounded search and shrinking).</summary>
    Guided,
}

/// <summary>An immutable description of a strategy: <c>random</c>, <c>pct(d=3,k=200)</c>, <c>round-robin(q=1)</c>, <c>replay</c>.</summary>
public sealed record StrategySpec
{
    private StrategySpec(StrategyKind kind, int depth = 0, int maxSteps = 0, int quantum = 0, RunTrace? trace = null)
    {
        Kind = kind;
        Depth = depth;
        MaxSteps = maxSteps;
        Quantum = quantum;
        ReplayTrace = trace;
    }

    /// <summary>Which strategy.</summary>
    public StrategyKind Kind { get; }

    /// <summary>PCT: the bug depth d (number of priority change points + 1).</summary>
    public int Depth { get; }

    /// <summary>PCT: the expected number of steps k over which change points are spread.</summary>
    public int MaxSteps { get; }

    /// <summary>Round-robin: scheduling points between switches.</summary>
    public int Quantum { get; }

    /// <summary>Replay: the trace to follow.</summary>
    public RunTrace? ReplayTrace { get; }

    /// <summary>Uniform random choice at every point.</summary>
    public static StrategySpec Random { get; } = new(StrategyKind.Random);

    /// <summary>PCT with depth <paramref name="depth"/> over about <paramref name="maxSteps"/> steps.</summary>
    public static StrategySpec Pct(int depth = 3, int maxSteps = 1000)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(depth, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxSteps, 1);
        return new(StrategyKind.Pct, depth, maxSteps);
    }

    /// <summary>Round-robin switching every <paramref name="quantum"/> points.</summary>
    public static StrategySpec RoundRobin(int quantum = 1)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(quantum, 1);
        return new(StrategyKind.RoundRobin, quantum: quantum);
    }

    /// <summary>Replays <paramref name="trace"/>.</summary>
    public static StrategySpec Replay(RunTrace trace)
    {
        ArgumentNullException.ThrowIfNull(trace);
        return new(StrategyKind.Replay, trace: trace);
    }

    /// <summary>
    /// A guided schedule: the running task goes on while it can (when it blocks or exits, the
    /// lowest-id runnable task runs), except at <paramref name="deviations"/>.
    /// </summary>
    public static StrategySpec Guided(IReadOnlyList<ScheduleDeviation> deviations)
    {
        ArgumentNullException.ThrowIfNull(deviations);
        return new(StrategyKind.Guided) { Deviations = deviations };
    }

    /// <summary>Guided: the forced switches.</summary>
    public IReadOnlyList<ScheduleDeviation> Deviations { get; private init; } = [];

    /// <summary>Parses <c>random</c>, <c>pct</c>, <c>pct:3</c>, <c>pct:3:200</c>, <c>pct(d=3,k=200)</c>, <c>round-robin</c>, <c>rr:2</c>.</summary>
    public static StrategySpec Parse(string text)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(text);
        string t = text.Trim().ToLowerInvariant();
        string name = t;
        var args = new List<int>();
        int open = t.IndexOfAny(['(', ':']);
        if (open >= 0)
        {
            name = t[..open];
            foreach (string part in t[(open + 1)..].TrimEnd(')').Split([',', ':'], StringSplitOptions.RemoveEmptyEntries))
            {
                string v = part.Contains('=', StringComparison.Ordinal) ? part[(part.IndexOf('=', StringComparison.Ordinal) + 1)..] : part;
                if (!int.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out int n))
                {
                    throw new FormatException($"bad strategy argument '{part}' in '{text}'");
                }

                args.Add(n);
            }
        }

        return name switch
        {
            "random" => Random,
            "pct" => Pct(args.Count > 0 ? args[0] : 3, args.Count > 1 ? args[1] : 1000),
            "round-robin" or "rr" or "roundrobin" => RoundRobin(args.Count > 0 ? args[0] : 1),
            _ => throw new FormatException($"unknown strategy '{text}': use random, pct(d=3,k=1000) or round-robin(q=1); replay takes a trace file"),
        };
    }

    /// <inheritdoc/>
    public override string ToString() => Kind switch
    {
        StrategyKind.Random => "random",
        StrategyKind.Pct => string.Create(CultureInfo.InvariantCulture, $"pct(d={Depth},k={MaxSteps})"),
        StrategyKind.RoundRobin => string.Create(CultureInfo.InvariantCulture, $"round-robin(q={Quantum})"),
        StrategyKind.Guided => string.Create(CultureInfo.InvariantCulture, $"guided({Deviations.Count})"),
        _ => "replay",
    };
}
