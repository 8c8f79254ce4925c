// RaceRegression: for maintainers who want lifecycle races to stay fixed in CI.
//
// A race regression test in a few lines: explore a race scenario of the catalogue over 200
// schedules chosen by PCT (the controlled scheduler, one seed per schedule), and fail with
// the first failing run's description (seed, outcome, report), enough to replay it with
// Scenario.Replay. Counted from the first [TestCase] line to the method's closing brace
// (usings, namespace and class not counted), the test is 10 lines.

using NUnit.Framework;
using Vfio.Kernel;
using Vfio.Sim.Scenarios;

namespace RaceRegression;

public sealed class LifecycleRaceTests
{
    [TestCase("getfd-vs-unregister")]
    [TestCase("group-open-vs-removal")]
    [TestCase("set-container-vs-unset")]
    [TestCase("unbind-request")]
    public void TheRace_NeverFails_Over200PctSchedules(string name)
    {
        Scenario race = ScenarioCatalog.Default.Get(name);
        ExplorationResult result = race.Explore(new ExploreOptions { Strategy = StrategySpec.Pct(depth: 3, maxSteps: 2000), SeedCount = 200 });
        Assert.That(result.Passed, Is.True, result.Describe());
    }
}
