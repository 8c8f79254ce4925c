// The race lab: explore a race scenario (or a body of your own) over many schedules —
// random, PCT or round-robin over a seed range, or bounded-exhaustive with a preemption
// bound — on all cores or one shard of a CI matrix; write what it finds as replay files;
// replay and shrink them. `vfio-sim race` is a thin front-end over this class.
//
// SKELETON: the signatures are fixed; the bodies are being written.

using Vfio.Kernel;
using Vfio.Sim.Scenarios;

namespace Vfio.Sim.Races;

/// <summary>How <see cref="RaceLab.Explore(Scenario, RaceExploreOptions, ScenarioOptions?)"/> explores.</summary>
public sealed record RaceExploreOptions
{
    /// <summary>Schedules to run (seeds <see cref="FirstSeed"/> on); with <see cref="Exhaustive"/>, a cap.</summary>
    public int Schedules { get; init; } = 100;

    /// <summary>The first seed of the range.</summary>
    public ulong FirstSeed { get; init; } = 1;

    /// <summary>The strategy of seeded exploration: random, PCT (default, depth 3) or round-robin.</summary>
    public StrategySpec Strategy { get; init; } = StrategySpec.Pct();

    /// <summary>Bounded-exhaustive search instead of seeded schedules.</summary>
    public bool Exhaustive { get; init; }

    /// <summary>Exhaustive: at most this many preemptions per schedule.</summary>
    public int Preemptions { get; init; } = 2;

    /// <summary>Worker threads (each runs its own kernels); default 1.</summary>
    public int Jobs { get; init; } = 1;

    /// <summary>This shard's index in [0, <see cref="ShardCount"/>).</summary>
    public int ShardIndex { get; init; }

    /// <summary>How many shards split the exploration (across CI jobs or machines).</summary>
    public int ShardCount { get; init; } = 1;

    /// <summary>Stop at the first bug (default) or explore on and count them all.</summary>
    public bool StopAtFirstBug { get; init; } = true;

    /// <summary>Shrink each bug's schedule before reporting it (default on).</summary>
    public bool Shrink { get; init; } = true;

    /// <summary>Scheduling steps per run before it is a liveness failure.</summary>
    public long StepBudget { get; init; } = 100_000;

    /// <summary>Told of progress now and then (schedules, distinct interleavings, bugs).</summary>
    public IProgress<SearchProgress>? Progress { get; init; }
}

/// <summary>A bug an exploration found, with the schedule that shows it.</summary>
public sealed class RaceBug
{
    internal RaceBug(RaceFinding finding, RaceSchedule schedule, RaceSchedule? original)
    {
        Finding = finding;
        Schedule = schedule;
        Original = original;
    }

    /// <summary>What the detector saw.</summary>
    public RaceFinding Finding { get; }

    /// <summary>The schedule to replay (shrunk when the exploration shrank it).</summary>
    public RaceSchedule Schedule { get; }

    /// <summary>The schedule as first found, when it was shrunk.</summary>
    public RaceSchedule? Original { get; }
}

/// <summary>
/// A replay file: the scenario, its fix switch, design settings and profile, the finding,
/// and the run's trace (seed, strategy, schedule). <c>vfio-sim race replay</c> reads it.
/// </summary>
public sealed class RaceSchedule
{
    internal RaceSchedule(string scenario, bool? fix, IReadOnlyList<string> designs, RunTrace trace, RaceFinding? finding)
    {
        Scenario = scenario;
        Fix = fix;
        Designs = designs;
        Trace = trace;
        Finding = finding;
    }

    /// <summary>The scenario's name.</summary>
    public string Scenario { get; }

    /// <summary>The fix switch the run had (null: the scenario as configured).</summary>
    public bool? Fix { get; }

    /// <summary>The design settings (<c>KEY=VALUE</c>).</summary>
    public IReadOnlyList<string> Designs { get; }

    /// <summary>The run's trace: seed, strategy, profile and the schedule a replay follows.</summary>
    public RunTrace Trace { get; }

    /// <summary>What the run found, or null for a passing run.</summary>
    public RaceFinding? Finding { get; }

    /// <summary>The replay file's JSON (deterministic: the same run gives the same bytes).</summary>
    public string ToJson() => throw new NotImplementedException("being written");

    /// <summary>Reads a replay file.</summary>
    /// <exception cref="FormatException">The text is not a replay file this build reads.</exception>
    public static RaceSchedule Parse(string json) => throw new NotImplementedException("being written");
}

/// <summary>The outcome of an exploration (mergeable across shards).</summary>
public sealed class RaceExploration
{
    internal RaceExploration(string scenario, long schedules, long distinct, bool? exhausted, IReadOnlyList<RaceBug> bugs, TimeSpan elapsed)
    {
        Scenario = scenario;
        Schedules = schedules;
        DistinctInterleavings = distinct;
        Exhausted = exhausted;
        Bugs = bugs;
        Elapsed = elapsed;
    }

    /// <summary>The scenario explored.</summary>
    public string Scenario { get; }

    /// <summary>Schedules run.</summary>
    public long Schedules { get; }

    /// <summary>Distinct interleavings (happens-before classes) among them.</summary>
    public long DistinctInterleavings { get; }

    /// <summary>Exhaustive mode: whether the bounded space was exhausted; null for seeded exploration.</summary>
    public bool? Exhausted { get; }

    /// <summary>The bugs found.</summary>
    public IReadOnlyList<RaceBug> Bugs { get; }

    /// <summary>Wall time the exploration took.</summary>
    public TimeSpan Elapsed { get; }

    /// <summary>True when no bug was found.</summary>
    public bool Passed => Bugs.Count == 0;
}

/// <summary>Explores, replays and shrinks race scenarios.</summary>
public static class RaceLab
{
    /// <summary>Explores <paramref name="scenario"/> as <paramref name="explore"/> says; <paramref name="options"/> gives the fix switch, designs, profile and machine.</summary>
    public static RaceExploration Explore(Scenario scenario, RaceExploreOptions explore, ScenarioOptions? options = null)
        => throw new NotImplementedException("being written");

    /// <summary>Replays a replay file (the scenario found by name in <paramref name="catalog"/>, default the built-in one).</summary>
    public static ScenarioResult Replay(RaceSchedule schedule, ScenarioCatalog? catalog = null)
        => throw new NotImplementedException("being written");

    /// <summary>Shrinks a failing replay file's schedule while it still fails the same way.</summary>
    public static RaceSchedule Shrink(RaceSchedule schedule, ScenarioCatalog? catalog = null)
        => throw new NotImplementedException("being written");
}
