// One step of a scenario and what it showed, and the exception a failed check throws.

namespace Vfio.Sim.Scenarios;

/// <summary>A step of a scenario: its title, what it printed, and, when it misbehaved, what was expected and what was found.</summary>
/// <param name="Number">The step's number, from 1.</param>
/// <param name="Title">What the step does.</param>
/// <param name="Output">What the step showed (lines separated by <c>\n</c>); empty for a failed step.</param>
/// <param name="Expected">When the step failed: what the kernel does there.</param>
/// <param name="Found">When the step failed: what happened instead.</param>
public sealed record ScenarioStep(int Number, string Title, string Output, string? Expected, string? Found)
{
    /// <summary>True when the step did what the kernel does.</summary>
    public bool Passed => Expected is null;

    /// <inheritdoc/>
    public override string ToString()
        => Passed ? $"{Number}. {Title}: ok" : $"{Number}. {Title}: expected {Expected}; found {Found}";
}

/// <summary>A scenario's check failed: <see cref="Expected"/> is what the kernel does, <see cref="Found"/> what happened.</summary>
public sealed class ScenarioCheckException : Exception
{
    /// <summary>A failed check.</summary>
    public ScenarioCheckException(string expected, string found)
        : base($"expected {expected}; found {found}")
    {
        Expected = expected;
        Found = found;
    }

    /// <summary>What the kernel does.</summary>
    public string Expected { get; }

    /// <summary>A failed check that a race detector makes (a leak, a wrong errno, a broken invariant).</summary>
    public ScenarioCheckException(Races.RaceDetector detector, string expected, string found)
        : this(expected, found)
    {
        Detector = detector;
    }

    /// <summary>What happened instead.</summary>
    public string Found { get; }

    /// <summary>Which race detector the check is (null: a plain check, counted as a broken invariant).</summary>
    public Races.RaceDetector? Detector { get; }
}
