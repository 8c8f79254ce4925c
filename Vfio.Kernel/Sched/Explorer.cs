// Race exploration: run one scenario under a strategy for a range of seeds, each on a
// fresh kernel, and report the first failing seed with its trace. Seeds are independent,
// so a range can be split across machines with a shard index (--shard i/N) and the
// results merged by seed.

using System.Globalization;

namespace Vfio.Kernel;

/// <summary>What to explore: strategy, seed range, shard, budget.</summary>
public sealed record ExploreOptions
{
    /// <summary>The strategy; default PCT with depth 3.</summary>
    public StrategySpec Strategy { get; init; } = StrategySpec.Pct();

    /// <summary>The first seed of the range.</summary>
    public ulong FirstSeed { get; init; } = 1;

    /// <summary>How many seeds the range holds.</summary>
    public int SeedCount { get; init; } = 100;

    /// <summary>This shard's index in [0, <see cref="ShardCount"/>).</summary>
    public int ShardIndex { get; init; }

    /// <summary>How many shards the range is split into (seed belongs to shard (seed − first) mod count).</summary>
    public int ShardCount { get; init; } = 1;

    /// <summary>Scheduling steps per run before it is a liveness failure.</summary>
    public long StepBudget { get; init; } = 100_000;

    /// <summary>Stop at the first failing seed (default) or run the whole range.</summary>
    public bool StopAtFirstFailure { get; init; } = true;

    /// <summary>Adjusts each run's kernel configuration (profile, lockdep, trace).</summary>
    public Func<KernelConfig, KernelConfig>? Configure { get; init; }

    /// <summary>The seeds of this shard, in order.</summary>
    public IEnumerable<ulong> ShardSeeds()
    {
        if (ShardCount < 1 || ShardIndex < 0 || ShardIndex >= ShardCount)
        {
            throw new ArgumentOutOfRangeException(nameof(ShardIndex), $"shard {ShardIndex}/{ShardCount} is not valid: need 0 <= index < count");
        }

        for (int i = 0; i < SeedCount; i++)
        {
            if (i % ShardCount == ShardIndex)
            {
                yield return FirstSeed + (ulong)i;
            }
        }
    }

    /// <summary>The kernel configuration of seed <paramref name="seed"/>.</summary>
    public KernelConfig ConfigFor(ulong seed)
    {
        var c = new KernelConfig { Mode = SchedulerMode.Controlled, Seed = seed, Strategy = Strategy, StepBudget = StepBudget };
        return Configure?.Invoke(c) ?? c;
    }
}

/// <summary>The outcome of an exploration.</summary>
public sealed class ExplorationResult
{
    internal ExplorationResult(int runs, IReadOnlyList<RunResult> failures)
    {
        Runs = runs;
        Failures = failures;
    }

    /// <summary>Runs executed.</summary>
    public int Runs { get; }

    /// <summary>Failing runs, in seed order.</summary>
    public IReadOnlyList<RunResult> Failures { get; }

    /// <summary>The first failing run, or null.</summary>
    public RunResult? FirstFailure => Failures.Count > 0 ? Failures[0] : null;

    /// <summary>True when no run failed.</summary>
    public bool Passed => Failures.Count == 0;

    /// <summary>A summary line and, on failure, the first failure's report.</summary>
    public string Describe()
        => FirstFailure is null
            ? string.Create(CultureInfo.InvariantCulture, $"{Runs} runs, no failure")
            : string.Create(CultureInfo.InvariantCulture, $"{Runs} runs, {Failures.Count} failed; first failing seed {FirstFailure.Seed}:\n{FirstFailure.Describe()}");

    /// <inheritdoc/>
    public override string ToString() => Describe();
}

/// <summary>Explores and replays scenarios under the controlled scheduler.</summary>
public static class Explorer
{
    /// <summary>Runs <paramref name="scenario"/> once per seed of the shard, each on a fresh kernel.</summary>
    public static ExplorationResult Explore(ExploreOptions options, Action<SimKernel> scenario)
    {
        ArgumentNullException.ThrowIfNull(scenario);
        return Explore(options, (ulong seed) => RunSeed(options, seed, scenario));
    }

    /// <summary>
    /// Explores with a runner of one seed's run (which builds its own kernel from
    /// <see cref="ExploreOptions.ConfigFor(ulong)"/>, for instance a host that boots a
    /// machine before the run): once per seed of the shard, stopping as the options say.
    /// </summary>
    public static ExplorationResult Explore(ExploreOptions options, Func<ulong, RunResult> runSeed)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(runSeed);
        int runs = 0;
        var failures = new List<RunResult>();
        foreach (ulong seed in options.ShardSeeds())
        {
            RunResult r = runSeed(seed);
            runs++;
            if (!r.Passed)
            {
                failures.Add(r);
                if (options.StopAtFirstFailure)
                {
                    break;
                }
            }
        }

        return new ExplorationResult(runs, failures);
    }

    /// <summary>Runs <paramref name="scenario"/> for one seed on a fresh kernel.</summary>
    public static RunResult RunSeed(ExploreOptions options, ulong seed, Action<SimKernel> scenario)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(scenario);
        var k = new SimKernel(options.ConfigFor(seed));
        return k.Run("main", () => scenario(k));
    }

    /// <summary>
    /// Replays <paramref name="trace"/> against <paramref name="scenario"/> on a fresh
    /// kernel. The run follows the trace step for step; if the code no longer does what
    /// the trace says, the outcome is <see cref="RunOutcome.ReplayDivergence"/>.
    /// </summary>
    public static RunResult Replay(RunTrace trace, Action<SimKernel> scenario, Func<KernelConfig, KernelConfig>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(trace);
        ArgumentNullException.ThrowIfNull(scenario);
        if (trace.Mode != SchedulerMode.Controlled)
        {
            throw new ArgumentException("only traces of controlled runs can be replayed; real-mode traces have no schedule", nameof(trace));
        }

        var c = new KernelConfig
        {
            Mode = SchedulerMode.Controlled,
            Seed = trace.Seed,
            Strategy = StrategySpec.Replay(trace),
            StepBudget = trace.StepBudget,
            // A trace from a profile this build does not know cannot replay faithfully.
            Profile = KernelProfile.Presets.FirstOrDefault(p => p.Name == trace.Profile)
                ?? throw new ArgumentException(
                    $"the trace was recorded under kernel profile '{trace.Profile}', which this build does not know: use one of {string.Join(", ", KernelProfile.Presets.Select(p => p.Name))}",
                    nameof(trace)),
        };
        c = configure?.Invoke(c) ?? c;
        var k = new SimKernel(c);
        return k.Run("main", () => scenario(k));
    }
}
