// Options of one simulated kernel instance. One seed drives every source of
// nondeterminism in controlled mode: scheduling, kernel.Random, fault probabilities.

namespace Vfio.Kernel;

/// <summary>How simulated tasks are scheduled.</summary>
public enum SchedulerMode
{
    /// <summary>Tasks are real threads running in parallel; scheduling points are no-ops.</summary>
    Real,
    /// <summary>One task runs at a time; every primitive operation is a scheduling point decided by a seeded strategy.</summary>
    Controlled,
}

/// <summary>Configuration of a <see cref="SimKernel"/>.</summary>
public sealed record KernelConfig
{
    /// <summary>Real threads or the controlled scheduler. Default: real.</summary>
    public SchedulerMode Mode { get; init; } = SchedulerMode.Real;

    /// <summary>The seed of every random choice (scheduling, <see cref="SimKernel.Random"/>, fault probabilities).</summary>
    public ulong Seed { get; init; } = 1;

    /// <summary>The controlled scheduler's strategy. Default: random.</summary>
    public StrategySpec Strategy { get; init; } = StrategySpec.Random;

    /// <summary>Controlled mode: scheduling steps after which a run is a liveness failure.</summary>
    public long StepBudget { get; init; } = 1_000_000;

    /// <summary>Lock-order validation (CONFIG_PROVE_LOCKING). Default: on.</summary>
    public bool Lockdep { get; init; } = true;

    /// <summary>Record structured trace events from the start. Default: off (and free when off).</summary>
    public bool Trace { get; init; }

    /// <summary>
    /// Record the timeline too (lock holds, blocked waits, wake-ups, counters) for a Perfetto
    /// view of the run; implies <see cref="Trace"/>. Default: off (and free when off).
    /// </summary>
    public bool Timeline { get; init; }

    /// <summary>
    /// Controlled mode: compute <see cref="RunResult.InterleavingHash"/> for every run, so an
    /// exploration can count distinct interleavings. Guided runs always have it. Default: off.
    /// </summary>
    public bool InterleavingHash { get; init; }

    /// <summary>Real mode: virtual nanoseconds per wall nanosecond, so a 10 s kernel wait takes 10 ms by default.</summary>
    public long RealTimeScale { get; init; } = 1000;

    /// <summary>Real mode: wall time after which a run that has not finished is reported as a liveness failure.</summary>
    public TimeSpan RealWatchdog { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Controlled mode: wall time one task may run without reaching a scheduling point before the run is declared hung.</summary>
    public TimeSpan ControlledStallTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Which Linux release to behave as.</summary>
    public KernelProfile Profile { get; init; } = KernelProfile.Linux6_12;

    /// <summary>
    /// The cost model's calibrated per-operation costs (<see cref="CostProfile.LinuxX86"/>), or
    /// null for none. With a profile every modelled operation advances virtual time by its
    /// cost and is counted (<see cref="SimKernel.Cost"/>). Default: none.
    /// </summary>
    public CostProfile? CostProfile { get; init; }

    /// <summary>A WARN that no test declared as expected fails the run. Default: true.</summary>
    public bool WarningsFailRuns { get; init; } = true;
}
