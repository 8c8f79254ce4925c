// Tests Vfio.Sim/Labs/LabSession.cs and LabCatalog.cs: what a solution's failure turns
// into (a refused ioctl with its errno and reason, an exception, a deadlock), what the
// student's process leaves behind at exit, finding a student's solution in an assembly or a
// folder, and the score table in make grade's format.

using NUnit.Framework;
using Vfio.Core.Client;
using Vfio.Platform.Fs;
using Vfio.Sim;
using Vfio.Sim.Labs;

namespace Vfio.Tests.Labs;

public sealed class LabFrameworkTests
{
    [Test]
    public void ARefusedIoctl_IsDescribedWithItsErrnoAndTheKernelsReason_AndTheLastSyscalls()
    {
        var session = new LabSession(VfioSim.CreateBuilder().UseSeed(1).AddVfioPci());
        string? message = session.RunSolution(() =>
        {
            var container = new VfioContainerFd(session.Process);
            container.MapDma(0x1000, 0, 0x1000);
        });
        Assert.That(message, Does.StartWith("the kernel refused VFIO_IOMMU_MAP_DMA with"));
        Assert.That(message, Does.Contain("last syscalls").And.Contain("openat"));
    }

    [Test]
    public void AnException_IsNamedWithItsMessage()
    {
        var session = new LabSession(VfioSim.CreateBuilder().UseSeed(1).AddVfioPci());
        string? message = session.RunSolution(() => throw new NotImplementedException("TODO: step 1"));
        Assert.That(message, Does.StartWith("the solution threw NotImplementedException: TODO: step 1"));
    }

    [Test]
    public void ASolutionThatWaitsForever_IsADeadlockWithAPlainMessage()
    {
        var session = new LabSession(VfioSim.CreateBuilder().UseSeed(1).AddVfioPci());
        string? message = session.RunSolution(() =>
        {
            int fd = session.Process.Eventfd(0);
            Span<PollFd> fds = [new PollFd(fd, PollEvents.POLLIN)];
            session.Process.Poll(fds, -1);
        });
        Assert.That(message, Does.StartWith("the solution never finished: every task sleeps and nothing will wake it"));
    }

    [Test]
    public void ExitStudent_ListsTheFdsLeftOpen_ThenClosesThem()
    {
        var session = new LabSession(VfioSim.CreateBuilder().UseSeed(1).AddVfioPci());
        Assert.That(session.RunSolution(() => _ = new VfioContainerFd(session.Process)), Is.Null);
        IReadOnlyList<string> open = session.ExitStudent();
        Assert.That(open, Is.EqualTo(new[] { "fd 0 (/dev/vfio/vfio)" }));
        Assert.That(session.Process.HasExited, Is.True);
        Assert.That(session.Process.Files.Open, Is.Empty);
        Assert.That(session.ExitStudent(), Is.SameAs(open));
        Assert.Throws<InvalidOperationException>(() => session.RunSolution(() => { }));
    }

    [Test]
    public void TryFindSolution_FindsTheOneSubclass_AndExplainsNoneOrSeveral()
    {
        Lab lab = LabCatalog.Get(2);
        Assert.That(LabCatalog.TryFindSolution(lab, typeof(Assert).Assembly, out _, out string none), Is.False);
        Assert.That(none, Does.Contain("add a public class").And.Contain(nameof(DmaMappingSolution)));

        // This assembly holds several flawed lab 2 solutions: the student is told to keep one.
        Assert.That(LabCatalog.TryFindSolution(lab, typeof(LabFrameworkTests).Assembly, out _, out string several), Is.False);
        Assert.That(several, Does.Contain("keep one"));
    }

    [Test]
    public void GradeStudent_WithoutASolution_IsOneFailedCheckWorthTheLabsPoints()
    {
        Lab lab = LabCatalog.Get(2);
        LabGrade g = LabCatalog.GradeStudent(lab, typeof(Assert).Assembly, null);
        Assert.That(g.Checks, Has.Count.EqualTo(1));
        Assert.That(g.MaxScore, Is.EqualTo(100));
        Assert.That(g.Score, Is.Zero);
    }

    [Test]
    public void TryFindScript_ReadsLabNNDotSh_OrSaysWhereItLooked()
    {
        var lab = new ShellLabStub();
        string dir = Directory.CreateTempSubdirectory("labfw").FullName;
        try
        {
            Assert.That(LabCatalog.TryFindScript(lab, dir, out _, out string problem), Is.False);
            Assert.That(problem, Does.Contain(Path.Combine(dir, "lab09.sh")));
            File.WriteAllText(Path.Combine(dir, "lab09.sh"), "ls /dev/vfio\n");
            Assert.That(LabCatalog.TryFindScript(lab, dir, out ShellScript? script, out _), Is.True);
            Assert.That(script!.Text, Is.EqualTo("ls /dev/vfio\n"));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Test]
    public void TheScoreTable_HasOneLinePerCheck_TheFailuresMessagesIndented_AndTheScoreLast()
    {
        var lab = new ShellLabStub();
        var g = new LabGrade(lab, [new LabCheck("the group is viable", 10, true, "seen"), new LabCheck("nothing pinned", 5, false, "16 pages\nstill pinned")]);
        Assert.That(LabCatalog.ScoreTable(g), Is.EqualTo(
            "lab 9 the group is viable: OK (10/10)\n" +
            "lab 9 nothing pinned: FAIL (0/5)\n" +
            "    16 pages\n" +
            "    still pinned\n" +
            "Score: 10/15\n"));
    }

    [Test]
    public void AGraderThatThrows_IsAFailedGrade_NotAnException()
    {
        LabGrade g = LabCatalog.SafeGrade(new ShellLabStub(), new ShellScript("ls"));
        Assert.That(g.Passed, Is.False);
        Assert.That(g.Checks.Single().Message, Does.Contain("a bug in the lab"));
    }

    // A shell lab that is not in the catalogue (the catalogue only holds Vfio.Sim's labs).
    private sealed class ShellLabStub : Lab
    {
        public override int Number => 9;

        public override string Slug => "stub";

        public override string Title => "Stub";

        public override string Summary => "A lab for the framework's tests.";

        public override Type SolutionType => typeof(ShellScript);

        public override object CreateReferenceSolution() => new ShellScript("");

        public override LabGrade Grade(object solution) => solution is ShellScript { Text: "" }
            ? new LabGrade(this, [new LabCheck("runs", 1, true, "")])
            : throw new InvalidOperationException("the stub grades only the empty script");
    }
}
