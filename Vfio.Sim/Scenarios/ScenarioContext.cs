// What a scenario's body works with: the booted simulation, numbered steps that report
// their output (or what they expected and found), and checks that stop the body with both.

using Vfio.Core.Client;

namespace Vfio.Sim.Scenarios;

/// <summary>The running scenario's simulation, steps and checks.</summary>
public sealed class ScenarioContext
{
    private readonly IScenarioObserver? _observer;
    private readonly List<ScenarioStep> _steps = [];

    internal ScenarioContext(Scenario scenario, VfioSim sim, IScenarioObserver? observer)
    {
        Scenario = scenario;
        Sim = sim;
        _observer = observer;
    }

    /// <summary>The scenario being run.</summary>
    public Scenario Scenario { get; }

    /// <summary>The booted simulation.</summary>
    public VfioSim Sim { get; }

    /// <summary>The steps so far.</summary>
    public IReadOnlyList<ScenarioStep> Steps => _steps;

    /// <summary>
    /// Runs one step: <paramref name="body"/> returns what it showed. A failed
    /// <see cref="Check"/>, a refused vfio call (<see cref="VfioException"/>) or a misuse of
    /// the simulator (<see cref="InvalidOperationException"/>) ends the step as failed, with
    /// what was expected and what was found; the method then returns false and the body
    /// decides whether to go on.
    /// </summary>
    public bool Step(string title, Func<string> body)
    {
        ArgumentException.ThrowIfNullOrEmpty(title);
        ArgumentNullException.ThrowIfNull(body);
        int number = _steps.Count + 1;
        _observer?.StepStarted(number, title);
        ScenarioStep step;
        try
        {
            step = new ScenarioStep(number, title, body(), null, null);
        }
        catch (ScenarioCheckException e)
        {
            step = new ScenarioStep(number, title, "", e.Expected, e.Found);
        }
        catch (VfioException e)
        {
            step = new ScenarioStep(number, title, "", "the call to succeed", e.Message);
        }
        catch (InvalidOperationException e)
        {
            step = new ScenarioStep(number, title, "", "the step to run", e.Message);
        }

        _steps.Add(step);
        _observer?.StepFinished(step);
        return step.Passed;
    }

    /// <summary>
    /// Checks a behaviour: when <paramref name="condition"/> is false, throws
    /// <see cref="ScenarioCheckException"/> saying what the kernel does
    /// (<paramref name="expected"/>) and what happened (<paramref name="found"/>).
    /// </summary>
    public static void Check(bool condition, string expected, string found)
    {
        if (!condition)
        {
            throw new ScenarioCheckException(expected, found);
        }
    }

    /// <summary>
    /// A race detector's check: as <see cref="Check"/>, but the failure names
    /// <paramref name="detector"/> (a leak at the end, a wrong errno, a broken invariant), which
    /// is how <c>vfio-sim race</c> reports what it found.
    /// </summary>
    public static void Detect(Races.RaceDetector detector, bool condition, string expected, string found)
    {
        if (!condition)
        {
            throw new ScenarioCheckException(detector, expected, found);
        }
    }

    /// <summary>Checks that <paramref name="actual"/> equals <paramref name="expected"/>, naming <paramref name="what"/> in the failure.</summary>
    public static void CheckEqual<T>(T actual, T expected, string what)
    {
        if (!EqualityComparer<T>.Default.Equals(actual, expected))
        {
            throw new ScenarioCheckException($"{what} = {expected}", $"{what} = {actual}");
        }
    }
}
