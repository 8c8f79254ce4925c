// A scenario: a named, described, seedable body with its own checks, found by name in the
// catalogue (ScenarioCatalog). The demo, the lifecycle races, the labs and the benchmarks'
// workloads are scenarios, so a test, the command line and a lab grader run the same code.
//
// A run of a scenario: build a VfioSim from the options (profile, scheduler, seed,
// strategy, machine, trace) plus what the scenario configures (its modules and drivers)
// plus the caller's adjustments (design variants), check the machine has what the scenario
// needs (else the run is Unmet, a usage error, not a failure), then run the body as the
// kernel's main task. The same options give the same trace, byte for byte.

using Vfio.Kernel;

namespace Vfio.Sim.Scenarios;

/// <summary>What kind of scenario this is (how the command line and the docs group them).</summary>
public enum ScenarioKind
{
    /// <summary>A narrated walk through a flow (the vfio.rst demo).</summary>
    Demo,

    /// <summary>A lifecycle race, explored under the controlled scheduler.</summary>
    Race,

    /// <summary>A workload that benchmarks and sweeps measure.</summary>
    Workload,
}

/// <summary>
/// A named, seedable body with its own checks. Derive, give it a <see cref="Name"/> and a
/// <see cref="Description"/>, say what it loads in <see cref="Configure"/>, and write the
/// body in <see cref="Execute(ScenarioContext)"/>; add it to a <see cref="ScenarioCatalog"/>.
/// </summary>
public abstract class Scenario
{
    /// <summary>The name the catalogue finds it by (lower case, dashes: <c>vfio-rst-demo</c>).</summary>
    public abstract string Name { get; }

    /// <summary>One or two sentences: what it does and what it checks.</summary>
    public abstract string Description { get; }

    /// <summary>What kind of scenario this is.</summary>
    public abstract ScenarioKind Kind { get; }

    /// <summary>The race catalogue's entry (history, fix, fix switch, detectors), or null for a scenario that is not a race.</summary>
    public virtual Races.RaceInfo? Race => null;

    /// <summary>
    /// Switches the fix on (today's kernel) or off (the design or profile that had the bug),
    /// after <see cref="Configure"/>. Only scenarios whose <see cref="Race"/> names a
    /// <see cref="Races.RaceInfo.FixSwitch"/> have one; the others throw.
    /// </summary>
    public virtual void ApplyFix(VfioSimBuilder builder, bool on)
        => throw new InvalidOperationException($"{Name} has no fix switch: run it without --fix");

    /// <summary>Loads what the body needs (modules, drivers). Default: vfio, type1 and vfio-pci.</summary>
    public virtual void Configure(VfioSimBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.AddVfioPci();
    }

    /// <summary>
    /// Why the booted machine cannot run this scenario (it lacks a device or an IOMMU the
    /// body needs), or null when it can. An unmet requirement is the caller's mistake, not a
    /// failure of the simulated kernel.
    /// </summary>
    public virtual string? Unmet(VfioSim sim) => null;

    /// <summary>The body: runs as the kernel's main task; checks with <see cref="ScenarioContext.Check"/>.</summary>
    public abstract void Execute(ScenarioContext context);

    /// <summary>Runs the scenario once with the default options: seed 1, controlled scheduler, Linux 6.12, the default machine, trace on.</summary>
    public ScenarioResult Run() => Run(new ScenarioOptions());

    /// <summary>Runs the scenario once with <paramref name="options"/>.</summary>
    public ScenarioResult Run(ScenarioOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return Run(Boot(options), options);
    }

    /// <summary>
    /// Runs the body on <paramref name="sim"/>, booted with <see cref="Boot"/> from the same
    /// <paramref name="options"/> (to look at the machine first, as <c>vfio-sim demo</c> does).
    /// </summary>
    public ScenarioResult Run(VfioSim sim, ScenarioOptions options)
    {
        ArgumentNullException.ThrowIfNull(sim);
        ArgumentNullException.ThrowIfNull(options);
        if (Unmet(sim) is { } why)
        {
            return new ScenarioResult(this, options, sim, run: null, [], unmet: why);
        }

        var context = new ScenarioContext(this, sim, options.Observer);
        CostCounters before = sim.Kernel.Cost.Snapshot();
        RunResult run = sim.Run(() =>
        {
            Execute(context);

            // A failed step fails the run too, so an exploration (which looks at runs) sees it.
            if (context.Steps.FirstOrDefault(s => !s.Passed) is { } failed)
            {
                throw new ScenarioCheckException(failed.Expected!, $"{failed.Found} (step {failed.Number}. {failed.Title})");
            }
        });
        return new ScenarioResult(this, options, sim, run, context.Steps, unmet: null)
        {
            Cost = sim.Kernel.Cost.Snapshot().Since(before),
        };
    }

    /// <summary>Replays a recorded run of this scenario (its seed, profile and schedule); the other options must be as they were.</summary>
    public ScenarioResult Replay(RunTrace trace, ScenarioOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(trace);
        return Run((options ?? new ScenarioOptions()) with { Replay = trace });
    }

    /// <summary>
    /// Runs the scenario once per seed of <paramref name="explore"/>'s shard under its
    /// strategy (controlled scheduler), each on a fresh boot, and returns the failing runs
    /// (replay one with <see cref="Replay"/>). <paramref name="options"/> gives the rest:
    /// profile, machine, design variants.
    /// </summary>
    public ExplorationResult Explore(ExploreOptions explore, ScenarioOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(explore);
        ScenarioOptions o = options ?? new ScenarioOptions();
        return Explorer.Explore(explore, seed =>
        {
            ScenarioResult r = Run(o with
            {
                Seed = seed,
                Mode = SchedulerMode.Controlled,
                Strategy = explore.Strategy,
                Configure = b =>
                {
                    o.Configure?.Invoke(b);
                    b.ConfigureKernel(c => explore.Configure?.Invoke(c with { StepBudget = explore.StepBudget }) ?? (c with { StepBudget = explore.StepBudget }));
                },
            });
            return r.Run ?? throw new InvalidOperationException($"{Name} cannot run on this machine: {r.UnmetReason}");
        });
    }

    /// <summary>Boots the simulation a run of this scenario with <paramref name="options"/> uses, without running the body.</summary>
    public VfioSim Boot(ScenarioOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        VfioSimBuilder b = VfioSim.CreateBuilder()
            .UseProfile(options.Profile)
            .UseScheduler(options.Mode)
            .UseSeed(options.Seed)
            .UseStrategy(options.Strategy)
            .EnableTrace(options.Trace)
            .EnableTimeline(options.Timeline)
            .EnableStrace(options.Strace)
            .UseCostModel(options.CostModel);
        if (options.Machine is { } m)
        {
            b.UseMachine(m);
        }

        Configure(b);
        if (options.Fix is { } fix)
        {
            ApplyFix(b, fix);
        }

        Races.DesignSettings.Apply(b, options.Designs);
        options.Configure?.Invoke(b);
        if (options.Replay is { } trace)
        {
            b.UseReplay(trace);
        }

        return b.Build();
    }

    /// <summary>
    /// A race scenario of your own: <paramref name="configure"/> loads what the body needs
    /// (null: vfio, type1 and vfio-pci) and <paramref name="body"/> runs as the kernel's main
    /// task, spawning the tasks that race and checking with <see cref="ScenarioContext.Check"/>
    /// or <see cref="ScenarioContext.Detect"/>. Explore it with
    /// <see cref="Races.RaceLab.Explore(Scenario, Races.RaceExploreOptions, ScenarioOptions?)"/>;
    /// replay its schedules through <c>ScenarioCatalog.Default.With(scenario)</c>.
    /// </summary>
    public static Scenario Create(string name, string description, Action<VfioSimBuilder>? configure, Action<ScenarioContext> body)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentException.ThrowIfNullOrWhiteSpace(description);
        ArgumentNullException.ThrowIfNull(body);
        return new Races.BodyScenario(name, description, configure, body);
    }

    /// <inheritdoc/>
    public override string ToString() => $"{Name}: {Description}";
}
