// The result of one run of a scenario: the run's outcome and trace, the steps, and the
// simulation as it was left (to look at dmesg, faults, pins, invariants).

using System.Text;
using Vfio.Kernel;

namespace Vfio.Sim.Scenarios;

/// <summary>How a scenario run ended.</summary>
public enum ScenarioOutcome
{
    /// <summary>The run completed and every step and check did what the kernel does.</summary>
    Passed,

    /// <summary>A step or check misbehaved, or the run did not complete (deadlock, BUG, unexpected WARN, exception).</summary>
    Failed,

    /// <summary>The machine lacks what the scenario needs (<see cref="Scenario.Unmet"/>); nothing ran.</summary>
    Unmet,
}

/// <summary>One run of a <see cref="Scenario"/>.</summary>
public sealed class ScenarioResult
{
    internal ScenarioResult(Scenario scenario, ScenarioOptions options, VfioSim sim, RunResult? run, IReadOnlyList<ScenarioStep> steps, string? unmet)
    {
        Scenario = scenario;
        Options = options;
        Sim = sim;
        Run = run;
        Steps = steps;
        UnmetReason = unmet;
        FailedStep = steps.FirstOrDefault(s => !s.Passed);
        Outcome = unmet is not null ? ScenarioOutcome.Unmet
            : run is { Passed: true } && FailedStep is null ? ScenarioOutcome.Passed
            : ScenarioOutcome.Failed;
    }

    /// <summary>The scenario.</summary>
    public Scenario Scenario { get; }

    /// <summary>
    /// What the run's body cost under the cost model (<see cref="ScenarioOptions.CostModel"/>):
    /// its modelled time and operation counts, boot excluded. All zero without a cost model.
    /// </summary>
    public CostCounters Cost { get; internal init; }

    /// <summary>The options it ran with.</summary>
    public ScenarioOptions Options { get; }

    /// <summary>The simulation, as the run left it.</summary>
    public VfioSim Sim { get; }

    /// <summary>The kernel run (outcome, report, warnings, trace); null when the scenario was <see cref="ScenarioOutcome.Unmet"/>.</summary>
    public RunResult? Run { get; }

    /// <summary>The steps, in order.</summary>
    public IReadOnlyList<ScenarioStep> Steps { get; }

    /// <summary>The first step that misbehaved, or null.</summary>
    public ScenarioStep? FailedStep { get; }

    /// <summary>Why the machine could not run the scenario, when <see cref="Outcome"/> is <see cref="ScenarioOutcome.Unmet"/>.</summary>
    public string? UnmetReason { get; }

    /// <summary>How the run ended.</summary>
    public ScenarioOutcome Outcome { get; }

    /// <summary>True when <see cref="Outcome"/> is <see cref="ScenarioOutcome.Passed"/>.</summary>
    public bool Passed => Outcome == ScenarioOutcome.Passed;

    /// <summary>The run's trace (replayable when the run was controlled); null when nothing ran.</summary>
    public RunTrace? Trace => Run?.Trace;

    /// <summary>A summary line, then what failed: the step (expected, found), the check, or the kernel's report.</summary>
    public string Describe()
    {
        var sb = new StringBuilder();
        sb.Append(Scenario.Name).Append(": ").Append(Outcome)
          .Append(" (seed ").Append(Options.Seed).Append(", ").Append(Options.Profile.Name).Append(", ").Append(Options.Mode).Append(')').AppendLine();
        if (UnmetReason is not null)
        {
            sb.AppendLine(UnmetReason);
        }

        if (FailedStep is { } s)
        {
            sb.Append("step ").Append(s.Number).Append(". ").Append(s.Title).AppendLine()
              .Append("  expected: ").AppendLine(s.Expected)
              .Append("  found:    ").AppendLine(s.Found);
        }

        // A failed step also fails the run (with a check naming the step): say it once.
        if (Run is { Passed: false } r && !(FailedStep is not null && r.Exception is ScenarioCheckException))
        {
            if (r.Exception is ScenarioCheckException c)
            {
                sb.Append("check failed in ").Append(r.FailedTask).AppendLine()
                  .Append("  expected: ").AppendLine(c.Expected)
                  .Append("  found:    ").AppendLine(c.Found);
            }
            else
            {
                sb.Append(r.Describe());
            }
        }

        return sb.ToString();
    }

    /// <inheritdoc/>
    public override string ToString() => Describe();
}
