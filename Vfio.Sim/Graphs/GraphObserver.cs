// The object graph at a point of a scenario: an observer that captures the graph when a
// chosen step ends (or before the first step, or after every step, keeping the last), from
// inside the scenario's task. Capture takes no lock and so never yields: under the
// controlled scheduler no other task runs while it reads, and the run goes on exactly as it
// would have without the observer.

using Vfio.Kernel;
using Vfio.Sim.Scenarios;

namespace Vfio.Sim.Graphs;

/// <summary>
/// A scenario observer that takes the object graph after step <see cref="StepNumber"/>
/// (0: before the first step; null: after every step, keeping the last). Pass it (with the
/// simulation from <see cref="Scenario.Boot"/>) as <see cref="ScenarioOptions.Observer"/> to
/// <see cref="Scenario.Run(VfioSim, ScenarioOptions)"/>; it forwards every notification to
/// the observer it wraps. Needs the controlled scheduler.
/// </summary>
public sealed class GraphObserver : IScenarioObserver
{
    private readonly VfioSim _sim;
    private readonly IScenarioObserver? _next;

    /// <summary>Captures <paramref name="sim"/>'s graph after step <paramref name="step"/>, telling <paramref name="next"/> about every step.</summary>
    /// <exception cref="ArgumentException"><paramref name="sim"/> runs real threads: a capture needs the other tasks at rest.</exception>
    public GraphObserver(VfioSim sim, int? step = null, IScenarioObserver? next = null)
    {
        ArgumentNullException.ThrowIfNull(sim);
        ArgumentOutOfRangeException.ThrowIfNegative(step ?? 0, nameof(step));
        if (sim.Kernel.Mode != SchedulerMode.Controlled)
        {
            throw new ArgumentException("the object graph of a running scenario needs the controlled scheduler: with real threads other tasks may be changing the objects while it reads them", nameof(sim));
        }

        _sim = sim;
        StepNumber = step;
        _next = next;
    }

    /// <summary>The step after which the graph is taken (0: before the first; null: the last step that ran).</summary>
    public int? StepNumber { get; }

    /// <summary>The graph, once taken; null while the step has not happened.</summary>
    public ObjectGraph? Graph { get; private set; }

    /// <summary>The step the graph was taken after (null before the first step).</summary>
    public ScenarioStep? Step { get; private set; }

    /// <summary>How many steps ended so far.</summary>
    public int StepsSeen { get; private set; }

    /// <inheritdoc/>
    public void StepStarted(int number, string title)
    {
        if (StepNumber == 0 && number == 1)
        {
            Graph = ObjectGraph.Capture(_sim);
        }

        _next?.StepStarted(number, title);
    }

    /// <inheritdoc/>
    public void StepFinished(ScenarioStep step)
    {
        ArgumentNullException.ThrowIfNull(step);
        StepsSeen = step.Number;
        if (StepNumber is null || StepNumber == step.Number)
        {
            Graph = ObjectGraph.Capture(_sim);
            Step = step;
        }

        _next?.StepFinished(step);
    }
}
