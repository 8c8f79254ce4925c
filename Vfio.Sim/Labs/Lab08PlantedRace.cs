// Lab 8: find a planted race with the explorer, fix it, and show the fix holds. Not a kernel
// file: the lab plants one of the race catalogue's bugs — a vfio-pci race whose fix is a
// design switch, turned off — behind a neutral scenario name, so the student has to find it
// (RaceLab.Explore), read what the detector reports, recognise the race and name the design
// setting that fixes it, and show with a second exploration that the fix holds. The grader
// verifies each part itself: it replays the returned schedule, re-explores with the fix.

using Vfio.Core.Client;
using Vfio.Kernel;
using Vfio.Sim.Races;
using Vfio.Sim.Scenarios;
using Vfio.Sim.Scenarios.Pci;

namespace Vfio.Sim.Labs;

/// <summary>What lab 8 gives a solution: the planted scenario, a catalogue that holds it, and the budget the fix must survive.</summary>
public sealed class PlantedRace
{
    internal PlantedRace(Scenario scenario, int requiredFixSchedules)
    {
        Scenario = scenario;
        Catalog = ScenarioCatalog.Default.With(scenario);
        RequiredFixSchedules = requiredFixSchedules;
    }

    /// <summary>The scenario with the planted race: explore it with <see cref="RaceLab.Explore"/>.</summary>
    public Scenario Scenario { get; }

    /// <summary>The built-in catalogue plus <see cref="Scenario"/>: what <see cref="RaceLab.Replay"/> and <see cref="RaceLab.Shrink"/> need to find it by name.</summary>
    public ScenarioCatalog Catalog { get; }

    /// <summary>How many schedules an exploration with the fix must run without a finding.</summary>
    public int RequiredFixSchedules { get; }

    /// <summary>Scenario options that run the planted scenario with <paramref name="fix"/> (a design setting <c>KEY=VALUE</c>) on top.</summary>
    public ScenarioOptions WithFix(string fix)
    {
        ArgumentException.ThrowIfNullOrEmpty(fix);
        return new ScenarioOptions { Designs = [fix] };
    }

    /// <inheritdoc/>
    public override string ToString() => $"the planted race in {Scenario.Name}";
}

/// <summary>A solution's answer to lab 8.</summary>
/// <param name="Bug">(a) A schedule of <see cref="PlantedRace.Scenario"/> that shows the bug, or null when none was found.</param>
/// <param name="Fix">(b) The design setting that fixes it, <c>KEY=VALUE</c> (see <c>vfio-sim race explore --help</c> and the race list).</param>
/// <param name="FixExploration">(c) An exploration of the planted scenario with <paramref name="Fix"/> that found nothing.</param>
public sealed record PlantedRaceAnswer(RaceSchedule? Bug, string? Fix, RaceExploration? FixExploration)
{
    /// <summary>The exploration that looked for the bug (optional: the grader's advice uses it when no bug was found).</summary>
    public RaceExploration? Search { get; init; }
}

/// <summary>A solution of lab 8: explore, diagnose, fix, and show the fix holds.</summary>
public abstract class PlantedRaceSolution
{
    /// <summary>Finds the planted race in <paramref name="race"/>, names its fix and shows the fix holds.</summary>
    public abstract PlantedRaceAnswer Solve(PlantedRace race);
}

/// <summary>Lab 8: a planted race, found with the explorer, fixed, and shown fixed.</summary>
public sealed class Lab08PlantedRace : Lab
{
    /// <summary>The planted scenario's name.</summary>
    public const string ScenarioName = "lab08-planted";

    /// <summary>Schedules the fix must survive in the student's exploration.</summary>
    public const int RequiredFixSchedules = 40;

    // The grader's own exploration with the student's fix: random schedules from seed 1.
    private const int GraderFixSchedules = 24;

    /// <inheritdoc/>
    public override int Number => 8;

    /// <inheritdoc/>
    public override string Slug => "planted-race";

    /// <inheritdoc/>
    public override string Title => "Find a planted race, fix it, show the fix holds";

    /// <inheritdoc/>
    public override string Story => "race 8 with its fix off, under another name (race-lab)";

    /// <inheritdoc/>

    public override string Summary =>
        "Explore a scenario with a planted race until a schedule fails, recognise the race from the detector's report, name the design setting that fixes it, and show by exploration that it holds.";

    /// <inheritdoc/>
    public override Type SolutionType => typeof(PlantedRaceSolution);

    /// <inheritdoc/>
    public override object CreateReferenceSolution() => new LabCourse.Lab08PlantedRaceSolution();

    /// <summary>The race this lab plants: race 8 of the catalogue (ERR/REQ eventfds against release) with its fix off.</summary>
    internal static PlantedRace Plant()
    {
        var inner = new ErrReqVsRelease();
        Scenario planted = Scenario.Create(ScenarioName,
            "A user of edu works with its eventfds, closes and reopens the device, while an administrator unbinds it. Sometimes something goes wrong.",
            b =>
            {
                inner.Configure(b);
                inner.ApplyFix(b, on: false);
            },
            inner.Execute);
        return new PlantedRace(planted, RequiredFixSchedules);
    }

    /// <inheritdoc/>
    public override LabGrade Grade(object solution)
    {
        var s = solution as PlantedRaceSolution
            ?? throw new ArgumentException($"lab 8 takes a {nameof(PlantedRaceSolution)}, not {solution?.GetType().Name ?? "null"}", nameof(solution));
        PlantedRace race = Plant();
        var checks = new List<LabCheck>();
        PlantedRaceAnswer? answer;
        try
        {
            answer = s.Solve(race);
        }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException or FormatException or VfioException or NullReferenceException or IndexOutOfRangeException or ArgumentOutOfRangeException or NotImplementedException or NotSupportedException or InvalidCastException)
        {
            string why = $"Solve threw {e.GetType().Name}: {e.Message}" +
                (e is ArgumentOutOfRangeException or IndexOutOfRangeException ? " (did it take Bugs[0] of an exploration that found nothing?)" : "");
            checks.Add(new LabCheck("a failing schedule was found", 3, false, why));
            checks.Add(new LabCheck("the schedule reproduces the bug", 3, false, "not reached."));
            checks.Add(new LabCheck("the fix removes the bug", 3, false, "not reached."));
            checks.Add(new LabCheck("the fix was shown to hold", 1, false, "not reached."));
            return new LabGrade(this, checks);
        }

        answer ??= new PlantedRaceAnswer(null, null, null);
        CheckFound(answer, checks);
        CheckReproduces(race, answer.Bug, checks);
        CheckFix(race, answer.Fix, checks);
        CheckShown(answer, checks);
        return new LabGrade(this, checks);
    }

    private static void CheckFound(PlantedRaceAnswer a, List<LabCheck> checks)
    {
        string search = a.Search is { } x
            ? $"your search ran {x.Schedules} schedule(s) ({x.DistinctInterleavings} distinct interleaving(s)) and found nothing"
            : "no failing schedule was returned";
        checks.Add(new LabCheck("a failing schedule was found", 3, a.Bug?.Finding is not null, a.Bug is null
            ? $"{search}. The planted race fails only on a few schedules: give the explorer a bigger budget (hundreds of schedules) and try more than one " +
              "strategy — PCT at its default depth and random scheduling preempt at different points (RaceExploreOptions.Strategy = StrategySpec.Random, " +
              "or StrategySpec.Pct(depth) with another depth). Turn Shrink off while searching: it is slow (handout step 2)."
            : "the schedule records no finding: it is a passing run. Return a schedule from RaceExploration.Bugs (handout step 2)."));
    }

    private static void CheckReproduces(PlantedRace race, RaceSchedule? bug, List<LabCheck> checks)
    {
        const string Name = "the schedule reproduces the bug";
        if (bug?.Finding is null)
        {
            checks.Add(new LabCheck(Name, 3, false, "there is no failing schedule to replay."));
            return;
        }

        if (bug.Scenario != ScenarioName)
        {
            checks.Add(new LabCheck(Name, 3, false,
                $"the schedule is a run of '{bug.Scenario}', not of the planted scenario '{ScenarioName}': the lab asks for the bug in the scenario it gives you " +
                "(PlantedRace.Scenario). Knowing which catalogue race it is helps with the fix, but the evidence has to come from the planted kernel (handout step 2)."));
            return;
        }

        if (bug.Designs.Count > 0 || bug.Fix is not null)
        {
            checks.Add(new LabCheck(Name, 3, false,
                $"the schedule ran with design settings [{string.Join(", ", bug.Designs)}] on top of the planted kernel: a schedule that shows the bug must come " +
                "from the planted scenario as given, with no settings of your own (handout step 2)."));
            return;
        }

        ScenarioResult again;
        try
        {
            again = RaceLab.Replay(bug, race.Catalog);
        }
        catch (ArgumentException e)
        {
            checks.Add(new LabCheck(Name, 3, false, $"the schedule cannot be replayed: {e.Message}"));
            return;
        }

        bool same = bug.IsReproducedBy(again);
        RaceFinding? found = RaceFinding.Of(again);
        checks.Add(new LabCheck(Name, 3, same, same
            ? $"replayed: {bug.Finding}"
            : $"replaying the schedule (seed {bug.Trace.Seed}) gave {(found is null ? "a passing run" : found.ToString())}, not the recorded {bug.Finding}. " +
              "A replay file must be returned as the explorer wrote it: its recorded schedule is the run, and an edited schedule is another run " +
              "(handout step 3)."));
    }

    private static void CheckFix(PlantedRace race, string? fix, List<LabCheck> checks)
    {
        const string Name = "the fix removes the bug";
        if (string.IsNullOrWhiteSpace(fix))
        {
            checks.Add(new LabCheck(Name, 3, false, "no fix was named: give the design setting KEY=VALUE that turns the fixed kernel's behaviour back on (handout step 4)."));
            return;
        }

        if (DesignSettings.Validate(fix) is { } why)
        {
            checks.Add(new LabCheck(Name, 3, false, $"'{fix}' is not a design setting: {why}"));
            return;
        }

        RaceExploration r;
        try
        {
            r = RaceLab.Explore(race.Scenario,
                new RaceExploreOptions { Strategy = StrategySpec.Random, Schedules = GraderFixSchedules, Shrink = false },
                race.WithFix(fix));
        }
        catch (InvalidOperationException e)
        {
            checks.Add(new LabCheck(Name, 3, false, $"with {fix} the planted scenario cannot run: {e.Message}"));
            return;
        }

        checks.Add(new LabCheck(Name, 3, r.Passed, r.Passed
            ? $"{GraderFixSchedules} random schedules with {fix}: nothing found"
            : $"with {fix} the grader's exploration still fails — {r.Bugs[0]}. That setting changes the kernel but does not close the race. Read the " +
              "detector's report of your failing schedule: what was freed, by which task, and who used it afterwards; find the race it describes in " +
              "docs/races.md and the design setting that is today's kernel for it (handout step 4)."));
    }

    private static void CheckShown(PlantedRaceAnswer a, List<LabCheck> checks)
    {
        const string Name = "the fix was shown to hold";
        RaceExploration? x = a.FixExploration;
        string? problem = x is null ? "no exploration with the fix was returned"
            : x.Scenario != ScenarioName ? $"the exploration is of '{x.Scenario}', not of the planted scenario"
            : !x.Passed ? $"your own exploration with the fix found {x.Bugs[0]}"
            : x.Schedules < RequiredFixSchedules ? $"your exploration with the fix ran {x.Schedules} schedule(s); the lab asks for at least {RequiredFixSchedules}, because a race that fails on one schedule in ten hides easily in a handful"
            : null;
        checks.Add(new LabCheck(Name, 1, problem is null, problem is null
            ? $"{x!.Schedules} schedules with the fix, nothing found"
            : problem + " (handout step 5)."));
    }

}
