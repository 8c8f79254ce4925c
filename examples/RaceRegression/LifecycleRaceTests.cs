// RaceRegression: for maintainers who want lifecycle races to stay fixed in CI.
//
// A race regression test in a few lines: explore each race scenario of the catalogue (the
// lifecycle races and vfio-pci's interrupt and mmap races) over 200 schedules chosen by PCT
// (the controlled scheduler, one seed per schedule), and fail with the first failing run's
// description (seed, outcome, report), enough to replay it with Scenario.Replay. Without
// the [TestCase] lines, the test is 6 lines.

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
    [TestCase("err-req-vs-release")]
    [TestCase("intx-trigger-swap")]
    [TestCase("intx-unmask-vs-disable")]
    [TestCase("intx-exclusive-autoenable")]
    [TestCase("bar-access-vs-memory-disable")]
    [TestCase("bar-faults-after-zap")]
    [TestCase("ioeventfd-vs-reset")]
    public void TheRace_NeverFails_Over200PctSchedules(string name)
    {
        Scenario race = ScenarioCatalog.Default.Get(name);
        ExplorationResult result = race.Explore(new ExploreOptions { Strategy = StrategySpec.Pct(depth: 3, maxSteps: 2000), SeedCount = 200 });
        Assert.That(result.Passed, Is.True, result.Describe());
    }
}
