// Lab 8: find the planted race, fix it, show the fix holds — a solution on the public API
// (vfio-sim lab show 8).

using Vfio.Kernel;
using Vfio.Sim.Labs;
using Vfio.Sim.Races;

namespace LabCourse;

/// <summary>A solution of lab 8.</summary>
internal sealed class Lab08PlantedRaceSolution : PlantedRaceSolution
{
    /// <inheritdoc/>
    public override PlantedRaceAnswer Solve(PlantedRace race)
    {
        // PCT at depth 3 misses this one; random schedules find it within a few hundred.
        RaceExploration search = RaceLab.Explore(race.Scenario,
            new RaceExploreOptions { Strategy = StrategySpec.Random, Schedules = 300, Shrink = false });
        if (search.Passed)
        {
            return new PlantedRaceAnswer(null, null, null) { Search = search };
        }

        // The report: a signal on an eventfd the device's release freed, from the unbind's
        // request() — race 8, the ERR/REQ eventfds cleared without igate (v5.8).
        const string Fix = "ErrReqRelease=PutAndClearUnderIgate";
        RaceExploration holds = RaceLab.Explore(race.Scenario,
            new RaceExploreOptions { Strategy = StrategySpec.Random, Schedules = race.RequiredFixSchedules, Shrink = false },
            race.WithFix(Fix));
        return new PlantedRaceAnswer(search.Bugs[0].Schedule, Fix, holds) { Search = search };
    }
}
