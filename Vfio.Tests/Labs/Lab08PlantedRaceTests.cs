// Tests Vfio.Sim/Labs/Lab08PlantedRace.cs: the reference solution (and its public-API copy
// in examples/LabCourse) gets full marks; a search too small to find the race, a schedule of
// the wrong scenario or of a buggier variant, and a fix that does not fix each fail the check
// they should, with a message that teaches; grading is deterministic.

using LabCourse;
using NUnit.Framework;
using Vfio.Kernel;
using Vfio.Sim.Labs;
using Vfio.Sim.Races;
using Vfio.Sim.Scenarios;

namespace Vfio.Tests.Labs;

public sealed class Lab08PlantedRaceTests
{
    private static readonly Lab08PlantedRace s_lab = new();

    private static LabCheck Check(LabGrade g, string name) => g.Checks.Single(c => c.Name == name);

    private static RaceExploration Search(PlantedRace race)
        => RaceLab.Explore(race.Scenario, new RaceExploreOptions { Strategy = StrategySpec.Random, Schedules = 300, Shrink = false });

    private static RaceExploration Holds(PlantedRace race, string fix)
        => RaceLab.Explore(race.Scenario, new RaceExploreOptions { Strategy = StrategySpec.Random, Schedules = race.RequiredFixSchedules, Shrink = false }, race.WithFix(fix));

    [Test]
    [LeavesKernelWarnings] // exploring the planted kernel reproduces its use-after-free on purpose
    public void TheReferenceSolution_GetsFullMarks()
    {
        LabGrade g = s_lab.Grade(s_lab.CreateReferenceSolution());
        Assert.That(g.Passed, Is.True, g.ToString());
        Assert.That(g.MaxScore, Is.EqualTo(10));
    }

    [Test]
    [LeavesKernelWarnings] // exploring the planted kernel reproduces its use-after-free on purpose
    public void TheExampleSolution_GetsFullMarks()
    {
        LabGrade g = s_lab.Grade(new Lab08PlantedRaceSolution());
        Assert.That(g.Passed, Is.True, g.ToString());
    }

    [Test]
    public void ADefaultPctSearchOfFortySchedules_FindsNothing_AndTheMessageSuggestsMoreSchedulesOrAnotherStrategy()
    {
        LabGrade g = s_lab.Grade(new TooSmallBudget());
        LabCheck found = Check(g, "a failing schedule was found");
        Assert.That(found.Passed, Is.False);
        Assert.That(found.Message, Does.Contain("your search ran 40 schedule(s)").And.Contain("bigger budget").And.Contain("StrategySpec.Random"));
        Assert.That(g.Score, Is.EqualTo(0));
    }

    [Test]
    [LeavesKernelWarnings] // exploring the catalogue race with its fix off reproduces it on purpose
    public void AScheduleOfTheCatalogueRace_IsNotEvidenceForThePlantedScenario()
    {
        LabGrade g = s_lab.Grade(new WrongScenario());
        Assert.That(Check(g, "a failing schedule was found").Passed, Is.True);
        LabCheck replay = Check(g, "the schedule reproduces the bug");
        Assert.That(replay.Passed, Is.False);
        Assert.That(replay.Message, Does.Contain("'err-req-vs-release'").And.Contain("not of the planted scenario"));
    }

    [Test]
    [LeavesKernelWarnings] // exploring the planted kernel reproduces its use-after-free on purpose
    public void AScheduleFoundWithAnEvenBuggierDesignOnTop_IsNotEvidenceForThePlantedKernel()
    {
        LabGrade g = s_lab.Grade(new BuggierVariant());
        Assert.That(Check(g, "a failing schedule was found").Passed, Is.True);
        LabCheck replay = Check(g, "the schedule reproduces the bug");
        Assert.That(replay.Passed, Is.False);
        Assert.That(replay.Message, Does.Contain("[ErrReqRelease=PutWithoutClear]").And.Contain("no settings of your own"));
    }

    [Test]
    [LeavesKernelWarnings] // exploring the planted kernel reproduces its use-after-free on purpose
    public void TheEarlierBuggyVariantNamedAsTheFix_StillFails_AndTheMessageSaysItDoesNotCloseTheRace()
    {
        LabGrade g = s_lab.Grade(new WrongFix());
        Assert.That(Check(g, "the schedule reproduces the bug").Passed, Is.True);
        LabCheck fix = Check(g, "the fix removes the bug");
        Assert.That(fix.Passed, Is.False);
        Assert.That(fix.Message, Does.Contain("ErrReqRelease=PutWithoutClear").And.Contain("does not close the race"));
        Assert.That(Check(g, "the fix was shown to hold").Passed, Is.False);
    }

    [Test]
    [LeavesKernelWarnings] // exploring the planted kernel reproduces its use-after-free on purpose
    public void GradingTwice_GivesTheSameGrade()
    {
        LabGrade a = s_lab.Grade(new Lab08PlantedRaceSolution()), b = s_lab.Grade(new Lab08PlantedRaceSolution());
        Assert.That(b.Checks, Is.EqualTo(a.Checks));
    }

    // The explorer's defaults (PCT, depth 3) over 40 schedules.
    private sealed class TooSmallBudget : PlantedRaceSolution
    {
        public override PlantedRaceAnswer Solve(PlantedRace race)
        {
            RaceExploration search = RaceLab.Explore(race.Scenario, new RaceExploreOptions { Schedules = 40, Shrink = false });
            return new PlantedRaceAnswer(search.Passed ? null : search.Bugs[0].Schedule, null, null) { Search = search };
        }
    }

    // Recognised race 8 and explored the catalogue's scenario instead of the planted one.
    private sealed class WrongScenario : PlantedRaceSolution
    {
        public override PlantedRaceAnswer Solve(PlantedRace race)
        {
            RaceExploration search = RaceLab.Explore(ScenarioCatalog.Default.Get("err-req-vs-release"),
                new RaceExploreOptions { Strategy = StrategySpec.Random, Schedules = 300, Shrink = false }, new ScenarioOptions { Fix = false });
            const string Fix = "ErrReqRelease=PutAndClearUnderIgate";
            return new PlantedRaceAnswer(search.Bugs[0].Schedule, Fix, Holds(race, Fix)) { Search = search };
        }
    }

    // Made the race easy to hit by exploring the older, always-failing variant on top of the planted kernel.
    private sealed class BuggierVariant : PlantedRaceSolution
    {
        public override PlantedRaceAnswer Solve(PlantedRace race)
        {
            RaceExploration search = RaceLab.Explore(race.Scenario,
                new RaceExploreOptions { Schedules = 10, Shrink = false }, race.WithFix("ErrReqRelease=PutWithoutClear"));
            const string Fix = "ErrReqRelease=PutAndClearUnderIgate";
            return new PlantedRaceAnswer(search.Bugs[0].Schedule, Fix, Holds(race, Fix)) { Search = search };
        }
    }

    // Named the v5.7 release (put without clear) as the fix.
    private sealed class WrongFix : PlantedRaceSolution
    {
        public override PlantedRaceAnswer Solve(PlantedRace race)
        {
            RaceExploration search = Search(race);
            const string Fix = "ErrReqRelease=PutWithoutClear";
            return new PlantedRaceAnswer(search.Bugs[0].Schedule, Fix, Holds(race, Fix)) { Search = search };
        }
    }
}
