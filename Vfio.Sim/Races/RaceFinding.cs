// What a race run found: the detector that fired and its report, taken from the run's
// outcome (deadlock, liveness, panic, unexpected warning) or from the scenario's own
// detector checks (ScenarioContext.Detect).

using Vfio.Kernel;
using Vfio.Sim.Scenarios;

namespace Vfio.Sim.Races;

/// <summary>A bug a race run found: which detector saw it, in one line, and the full report.</summary>
public sealed record RaceFinding
{
    /// <summary>The detector that fired.</summary>
    public required RaceDetector Detector { get; init; }

    /// <summary>One line: what was seen (<c>deadlock: vfio_group[2].group_lock ← …</c>).</summary>
    public required string Summary { get; init; }

    /// <summary>The full report: the run's description, wait-for graph, splat or check.</summary>
    public required string Report { get; init; }

    /// <summary>The bug <paramref name="result"/> shows, or null when it passed (or could not run).</summary>
    public static RaceFinding? Of(ScenarioResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        if (result.Outcome != ScenarioOutcome.Failed)
        {
            return null;
        }

        string report = result.Describe();
        RunResult? run = result.Run;
        if (run is null)
        {
            return new RaceFinding { Detector = RaceDetector.Invariant, Summary = FirstLine(report), Report = report };
        }

        switch (run.Outcome)
        {
            case RunOutcome.Deadlock:
                return new RaceFinding { Detector = RaceDetector.Deadlock, Summary = FirstLine(run.Report ?? "deadlock"), Report = report };
            case RunOutcome.Liveness:
                return new RaceFinding { Detector = RaceDetector.StalledUnbind, Summary = FirstLine(run.Report ?? "liveness"), Report = report };
            case RunOutcome.Panic:
                string panic = run.Exception?.Message ?? run.Report ?? "kernel BUG";
                return new RaceFinding { Detector = IsUseAfterFree(panic) ? RaceDetector.UseAfterFree : RaceDetector.WarnOrBug, Summary = FirstLine(panic), Report = report };
            case RunOutcome.UnexpectedWarning:
                KernelWarning w = run.Warnings.First(x => !x.Expected);
                RaceDetector d = IsLockdep(w.Text) ? RaceDetector.Lockdep : IsUseAfterFree(w.Text) ? RaceDetector.UseAfterFree : RaceDetector.WarnOrBug;
                return new RaceFinding { Detector = d, Summary = FirstLine(w.Text), Report = report };
        }

        ScenarioCheckException? check = run.Exception as ScenarioCheckException;
        if (check is null && result.FailedStep is { } step)
        {
            return new RaceFinding { Detector = RaceDetector.Invariant, Summary = $"step {step.Number}. {step.Title}: expected {step.Expected}; found {step.Found}", Report = report };
        }

        if (check is not null)
        {
            RaceDetector cd = check.Detector ?? (IsUseAfterFree(check.Found) ? RaceDetector.UseAfterFree : RaceDetector.Invariant);
            return new RaceFinding { Detector = cd, Summary = FirstLine($"expected {check.Expected}; found {check.Found}"), Report = report };
        }

        string text = run.Exception?.Message ?? run.Report ?? report;
        return new RaceFinding { Detector = IsUseAfterFree(text) ? RaceDetector.UseAfterFree : RaceDetector.Invariant, Summary = FirstLine(text), Report = report };
    }

    private static bool IsLockdep(string text)
        => text.Contains("circular locking dependency", StringComparison.Ordinal)
        || text.Contains("possible recursive locking", StringComparison.Ordinal)
        || text.Contains("inconsistent lock state", StringComparison.Ordinal)
        || text.Contains("lockdep", StringComparison.OrdinalIgnoreCase);

    private static bool IsUseAfterFree(string text)
        => text.Contains("use-after-free", StringComparison.Ordinal) || text.Contains("KASAN", StringComparison.Ordinal);

    // The first line that says something (a lockdep splat opens with a rule of '=').
    private static string FirstLine(string text)
    {
        foreach (string line in text.Split('\n'))
        {
            string t = line.Trim();
            if (t.Any(char.IsLetter))
            {
                return t;
            }
        }

        return text.Trim();
    }

    /// <inheritdoc/>
    public override string ToString() => $"{Detector}: {Summary}";
}
