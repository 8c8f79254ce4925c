// Tests the graders against the template's starters: a solution that does nothing (every
// method throws NotImplementedException, as templates/vfio-sim-lab has them) fails every lab,
// and earns no point for cleaning up what it never made — only the kernel staying quiet.

using NUnit.Framework;
using Vfio.Sim.Labs;

namespace Vfio.Tests.Labs;

public sealed class StarterSolutionTests
{
    private static IEnumerable<TestCaseData> Starters()
    {
        yield return new TestCaseData(2, new Lab02Starter()).SetName("Lab02_Starter");
        yield return new TestCaseData(3, new Lab03Starter()).SetName("Lab03_Starter");
        yield return new TestCaseData(4, new Lab04Starter()).SetName("Lab04_Starter");
        yield return new TestCaseData(5, new Lab05Starter()).SetName("Lab05_Starter");
        yield return new TestCaseData(6, new Lab06Starter()).SetName("Lab06_Starter");
        yield return new TestCaseData(7, new Lab07Starter()).SetName("Lab07_Starter");
        yield return new TestCaseData(8, new Lab08Starter()).SetName("Lab08_Starter");
    }

    [TestCaseSource(nameof(Starters))]
    public void AStarterThatDoesNothing_FailsTheLab_AndEarnsOnlyTheQuietKernelsPoints(int lab, object starter)
    {
        LabGrade g = LabCatalog.Get(lab).Grade(starter);
        Assert.That(g.Passed, Is.False, g.ToString());
        string[] earned = [.. g.Checks.Where(c => c.Passed).Select(c => c.Name)];
        Assert.That(earned.All(n => n.Contains("quiet", StringComparison.Ordinal) || n.Contains("warn", StringComparison.OrdinalIgnoreCase)), Is.True, $"points for doing nothing: {string.Join("; ", earned)}\n{g}");
        Assert.That(g.Checks.Where(c => !c.Passed).Any(c => c.Message.Contains("not written yet", StringComparison.Ordinal)), Is.True, g.ToString());
    }

    [Test]
    public void TheShellLabsStarterScript_OnlyComments_EarnsOnlyTheQuietKernelsPoints()
    {
        LabGrade g = LabCatalog.Get(1).Grade(new ShellScript("# TODO: lab 1 is not written yet\n"));
        Assert.That(g.Passed, Is.False);
        Assert.That(g.Checks.Where(c => c.Passed).Select(c => c.Name), Is.EqualTo(new[] { "no kernel warning" }), g.ToString());
    }

    private static NotImplementedException Todo(int lab) => new($"lab {lab}: not written yet");

    private sealed class Lab02Starter : DmaMappingSolution
    {
        public override ulong Map(LabEnvironment env) => throw Todo(2);

        public override void Unmap(LabEnvironment env) => throw Todo(2);

        public override void Close(LabEnvironment env) => throw Todo(2);
    }

    private sealed class Lab03Starter : EduDriverSolution
    {
        public override EduDriverResult Run(LabEnvironment env, EduAssignment assignment) => throw Todo(3);
    }

    private sealed class Lab04Starter : UnbindRequestSolution
    {
        public override void Start(LabEnvironment env) => throw Todo(4);
    }

    private sealed class Lab05Starter : RefcountSolution
    {
        public override IReadOnlyList<RefcountState> Predict(RefcountSequence sequence) => throw Todo(5);
    }

    private sealed class Lab06Starter : MttySolution
    {
        public override void CreateInstance(LabEnvironment env) => throw Todo(6);

        public override string Talk(LabEnvironment env, string line) => throw Todo(6);

        public override void RemoveInstance(LabEnvironment env) => throw Todo(6);
    }

    private sealed class Lab07Starter : KvmExternalUserSolution
    {
        public override void Attach(LabEnvironment env) => throw Todo(7);

        public override void Detach(LabEnvironment env) => throw Todo(7);
    }

    private sealed class Lab08Starter : PlantedRaceSolution
    {
        public override PlantedRaceAnswer Solve(PlantedRace race) => throw Todo(8);
    }
}
