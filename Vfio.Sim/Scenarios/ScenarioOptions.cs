// How one run of a scenario is set up: the kernel (profile, scheduler, seed, strategy,
// trace), the machine, a schedule to replay, adjustments to the boot (design variants,
// kernel settings) and who watches the steps.

using Vfio.Kernel;
using Vfio.Platform.Machine;

namespace Vfio.Sim.Scenarios;

/// <summary>The settings of one run of a <see cref="Scenario"/>.</summary>
public sealed record ScenarioOptions
{
    /// <summary>The seed of every random choice. Default 1.</summary>
    public ulong Seed { get; init; } = 1;

    /// <summary>The controlled scheduler's strategy. Default: random.</summary>
    public StrategySpec Strategy { get; init; } = StrategySpec.Random;

    /// <summary>Controlled (default: deterministic, replayable) or real threads.</summary>
    public SchedulerMode Mode { get; init; } = SchedulerMode.Controlled;

    /// <summary>The Linux release to behave as. Default 6.12.</summary>
    public KernelProfile Profile { get; init; } = KernelProfile.Linux6_12;

    /// <summary>The machine; null for the embedded default machine.</summary>
    public MachineDescription? Machine { get; init; }

    /// <summary>Record the kernel's trace events. Default: on (scenarios are for looking at).</summary>
    public bool Trace { get; init; } = true;

    /// <summary>Trace every process's syscalls from boot (<see cref="VfioSimBuilder.EnableStrace"/>); print them with <c>result.Sim.Strace.Format()</c>. Default: off.</summary>
    public bool Strace { get; init; }

    /// <summary>Record the timeline too (lock holds, waits, wake-ups, counters), for <see cref="RunTrace.ToPerfetto"/>. Default: off.</summary>
    public bool Timeline { get; init; }

    /// <summary>
    /// The cost model's calibrated costs (<see cref="CostProfile.LinuxX86"/>), or null (the
    /// default) for none. With one, the run's modelled time and operation counts are in
    /// <see cref="ScenarioResult.Cost"/>.
    /// </summary>
    public CostProfile? CostModel { get; init; }

    /// <summary>A recorded controlled run to follow step for step (its seed and profile win).</summary>
    public RunTrace? Replay { get; init; }

    /// <summary>
    /// For a race scenario with a fix switch: true runs today's fixed kernel, false the design
    /// or profile that had the bug; null leaves the scenario's configuration as it is.
    /// </summary>
    public bool? Fix { get; init; }

    /// <summary>
    /// Design variants as <c>KEY=VALUE</c> (<c>Unbind=SilentBlock</c>,
    /// <c>TrackDevicesDuringUnbind=false</c>, <c>Mdev.SynchronizeWithParentRemoval=false</c>),
    /// applied after the fix switch; see <see cref="Races.DesignSettings"/>.
    /// </summary>
    public IReadOnlyList<string> Designs { get; init; } = [];

    /// <summary>Adjusts the boot after the scenario's own configuration: design variants, kernel settings, extra drivers.</summary>
    public Action<VfioSimBuilder>? Configure { get; init; }

    /// <summary>Told about each step as it starts and ends (the command line prints them).</summary>
    public IScenarioObserver? Observer { get; init; }
}

/// <summary>Watches a scenario's steps as they happen.</summary>
public interface IScenarioObserver
{
    /// <summary>Step <paramref name="number"/> (from 1) starts.</summary>
    void StepStarted(int number, string title);

    /// <summary>A step ended, well or not.</summary>
    void StepFinished(ScenarioStep step);
}
