// Race exploration throughput on the unbind-with-REQ scenario (unbind-request: an unbind
// of edu from vfio-pci waits while a user holds it open with a mapped buffer, vfio-pci
// signals the user's REQ eventfd, the user's handler thread closes its fds, the unbind
// completes). One operation is one schedule as exploration runs it: boot (the default
// machine, vfio, type1, vfio-pci, edu bound to vfio-pci) and the body under the
// controlled scheduler, trace off. The baseline is the same boot alone, so the body's
// share can be read off the ratio.
//  - one seed (1) under the random strategy, every operation the same schedule;
//  - a sweep of seeds 1..32 through Scenario.Explore under its default strategy (PCT),
//    each seed on a fresh boot; one invocation runs the whole sweep, reported per schedule;
//  - the same 32 schedules through RaceLab.Explore, as `vfio-sim race explore` runs them
//    (one job, happens-before hashing on for the distinct-interleaving count).
// Every run must pass: a failing one throws, so a broken scenario cannot pass for a fast one.
// The Op/s column is schedules (or boots) per second on one benchmark thread: the
// controlled scheduler runs one task at a time, so that is one core's worth of exploration.
// Target (see the targets in RESULTS.md): >= 500 schedules per second per core, boot
// included, i.e. <= 2 ms per schedule on one benchmark thread.

using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using Vfio.Kernel;
using Vfio.Sim;
using Vfio.Sim.Races;
using Vfio.Sim.Scenarios;

namespace Vfio.Benchmarks.Sim;

[MemoryDiagnoser]
[Config(typeof(PerSecond))]
public class ScenarioBenchmarks
{
    private const int SweepSeeds = 32;

    private static readonly ScenarioOptions Options = new() { Seed = 1, Mode = SchedulerMode.Controlled, Trace = false };
    private static readonly ExploreOptions Sweep = new() { FirstSeed = 1, SeedCount = SweepSeeds, StopAtFirstFailure = true };

    private static readonly RaceExploreOptions Lab = new() { FirstSeed = 1, Schedules = SweepSeeds, Jobs = 1, Shrink = false };

    private Scenario _scenario = null!;

    [GlobalSetup]
    public void Setup()
    {
        _scenario = ScenarioCatalog.Default.Get("unbind-request");
        Boot();
        OneSchedule();
        SeedSweep();
        RaceLabSweep();
    }

    [Benchmark(Baseline = true, Description = "unbind-request: boot alone")]
    public VfioSim Boot() => _scenario.Boot(Options);

    [Benchmark(Description = "unbind-request: one schedule, seed 1 (boot + run)")]
    public ScenarioResult OneSchedule()
    {
        ScenarioResult r = _scenario.Run(Options);
        return r.Passed ? r : throw new InvalidOperationException(r.Describe());
    }

    [Benchmark(OperationsPerInvoke = SweepSeeds, Description = "unbind-request: explore seeds 1..32, PCT (per schedule)")]
    public ExplorationResult SeedSweep()
    {
        ExplorationResult r = _scenario.Explore(Sweep, Options);
        return r.Passed && r.Runs == SweepSeeds ? r : throw new InvalidOperationException(r.Describe());
    }

    [Benchmark(OperationsPerInvoke = SweepSeeds, Description = "unbind-request: race lab, 32 PCT schedules, 1 job (per schedule)")]
    public RaceExploration RaceLabSweep()
    {
        RaceExploration r = RaceLab.Explore(_scenario, Lab, Options);
        return r.Passed && r.Schedules == SweepSeeds ? r : throw new InvalidOperationException(r.Describe());
    }

    /// <summary>Adds operations per second (schedules per second per core) to the summary.</summary>
    private sealed class PerSecond : ManualConfig
    {
        public PerSecond() => AddColumn(StatisticColumn.OperationsPerSecond);
    }
}
