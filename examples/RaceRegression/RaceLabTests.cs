// RaceRegression, the race lab: the CI pattern in a few lines. Explore a race of the
// catalogue over 200 PCT schedules (one seed each, on every core) and assert that nothing
// is found; on a failure, the shrunk schedule is written as a replay file, attached to the
// test and named in the message, so `vfio-sim race replay FILE` shows it again, step for
// step. The second test explores a body of your own the same way: two processes race to
// open one VFIO group, and exactly one may win.

using NUnit.Framework;
using Vfio.Kernel;
using Vfio.Platform.Proc;
using Vfio.Sim;
using Vfio.Sim.Races;
using Vfio.Sim.Scenarios;

namespace RaceRegression;

public sealed class RaceLabTests
{
    private static readonly RaceExploreOptions Ci = new() { Schedules = 200, Jobs = Environment.ProcessorCount };

    [TestCase("set-container-vs-unset")]
    [TestCase("group-open-vs-removal")]
    public void TheRace_StaysFixed_Over200Schedules(string name)
    {
        RaceExploration r = RaceLab.Explore(ScenarioCatalog.Default.Get(name), Ci);
        Assert.That(r.Passed, Is.True, () => Attach(r));
    }

    [Test]
    public void OnlyOneProcess_OpensAGroup()
    {
        const string Edu = "0000:01:00.0";
        Scenario mine = Scenario.Create(
            "two-opens-of-one-group",
            "two processes open /dev/vfio/N at once: one gets the group, the other EBUSY",
            b => b.AddVfioPci().AddModule(sim => sim.Bind(Edu, "vfio-pci")),
            c =>
            {
                string path = $"/dev/vfio/{c.Sim.GroupOf(Edu)}";
                SimProcess a = c.Sim.Spawn("qemu-a"), b = c.Sim.Spawn("qemu-b");
                int fdA = 0, fdB = 0;
                KTask ta = a.SpawnThread("open", () => fdA = a.Open(path));
                KTask tb = b.SpawnThread("open", () => fdB = b.Open(path));
                ta.Join();
                tb.Join();
                ScenarioContext.Check((fdA >= 0) != (fdB >= 0) && Math.Min(fdA, fdB) == Errno.EBUSY.Negative(),
                    "one open wins, the other is EBUSY", $"fds {fdA} and {fdB}");
            });
        RaceExploration r = RaceLab.Explore(mine, Ci);
        Assert.That(r.Passed, Is.True, () => Attach(r, ScenarioCatalog.Default.With(mine)));
    }

    // Writes the first bug's (shrunk) schedule as a replay file, attaches it, and says how to replay it.
    private static string Attach(RaceExploration r, ScenarioCatalog? catalog = null)
    {
        RaceBug bug = r.Bugs[0];
        string file = Path.Combine(TestContext.CurrentContext.WorkDirectory, $"{r.Scenario}-seed{bug.Seed}.race.json");
        File.WriteAllText(file, bug.Schedule.ToJson());
        TestContext.AddTestAttachment(file);
        bool replays = bug.Schedule.IsReproducedBy(RaceLab.Replay(bug.Schedule, catalog));
        return $"{r.Describe()}replay file: {file} (replays here: {replays}; `vfio-sim race replay {file}` for a catalogue race)";
    }
}
