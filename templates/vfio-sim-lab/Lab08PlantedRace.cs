// Lab 8: find a planted race, fix it, show the fix holds.
// Read the handout first: vfio-sim lab show 8 (or docs/labs/lab08-planted-race.md).
// The grader calls Solve once, replays the schedule you return and explores the planted
// scenario with your fix itself. Grading runs several explorations: it takes a few seconds.

using Vfio.Sim.Labs;

namespace VfioSimLab;

public sealed class PlantedRaceHunter : PlantedRaceSolution
{
    public override PlantedRaceAnswer Solve(PlantedRace race)
    {
        // TODO steps 1 and 2 (a): explore race.Scenario with RaceLab.Explore and
        //   RaceExploreOptions (Strategy, Schedules, Shrink = false) until it finds a bug;
        //   keep one of its Bugs[i].Schedule, and the exploration for Search.
        // TODO step 3: read the finding's Report; replay the schedule
        //   (RaceLab.Replay(schedule, race.Catalog)) to see the steps.
        // TODO step 4 (b): find the race in vfio-sim race list / docs/races.md and name the
        //   design setting that is today's kernel for it, as KEY=VALUE.
        // TODO step 5 (c): explore race.Scenario again with race.WithFix(fix), at least
        //   race.RequiredFixSchedules schedules, and return
        //   new PlantedRaceAnswer(bug, fix, fixExploration) { Search = search }.
        throw new NotImplementedException("lab 8: Solve is not written yet (handout steps 1 to 5)");
    }
}
