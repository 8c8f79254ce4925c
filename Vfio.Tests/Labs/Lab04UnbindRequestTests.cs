// Tests Vfio.Sim/Labs/Lab04UnbindRequest.cs: the reference REQ handler (and the same one
// written with the public API only, as examples/LabCourse has it) lets the unbind complete on
// the first request and gets full marks; ignoring the request, registering none, closing only
// the group or only the container keep the unbind waiting until the grader kills the process,
// and the grade explains the wait; grading is deterministic.

using LabCourse;
using NUnit.Framework;
using Vfio.Core.Uapi;
using Vfio.Platform.Mm;
using Vfio.Platform.Proc;
using Vfio.Sim;
using Vfio.Sim.Labs;

namespace Vfio.Tests.Labs;

public sealed class Lab04UnbindRequestTests
{
    private static Lab Lab => LabCatalog.Get(4);

    private static LabCheck Failed(LabGrade grade, string name)
    {
        LabCheck? c = grade.Checks.FirstOrDefault(c => c.Name == name);
        Assert.That(c, Is.Not.Null, $"no check named \"{name}\": {string.Join(", ", grade.Checks.Select(c => c.Name))}");
        Assert.That(c!.Passed, Is.False, grade.ToString());
        return c;
    }

    [Test]
    public void TheCatalogueHasLab4_WithItsHandout()
    {
        Assert.That(Lab.Slug, Is.EqualTo("unbind-request"));
        Assert.That(Lab.SolutionType, Is.EqualTo(typeof(UnbindRequestSolution)));
        Assert.That(Lab.Handout, Does.Contain("VFIO_PCI_REQ_IRQ_INDEX"));
    }

    [Test]
    public void TheReferenceSolution_GetsFullMarks_TheUnbindCompletingOnTheFirstRequest()
    {
        LabGrade g = Lab.Grade(Lab.CreateReferenceSolution());
        Assert.That(g.Passed, Is.True, g.ToString());
        Assert.That(g.Score, Is.EqualTo(100));
        Assert.That(g.Checks.First(c => c.Name == "the unbind completes once asked").Message, Does.Contain("on the first request"));
        Assert.That(g.Strace.Count(r => r.Syscall == "close"), Is.GreaterThanOrEqualTo(4), "device, group, container and eventfd closed");
    }

    [Test]
    public void TheHandlerWrittenWithThePublicApi_GetsFullMarks()
    {
        LabGrade g = Lab.Grade(new UnbindRequestUser());
        Assert.That(g.Passed, Is.True, g.ToString());
    }

    [Test]
    public void IgnoringTheRequest_KeepsTheUnbindWaiting_AndTheGradeExplainsTheTenSecondRequests()
    {
        LabGrade g = Lab.Grade(new FlawedUser(Flaw.IgnoreRequest));
        LabCheck unbind = Failed(g, "the unbind completes once asked");
        Assert.That(unbind.Message, Does.Contain("still waiting").And.Contain("every 10 s").And.Contain("requests #0 to #2").And.Contain("did not react"));
        Assert.That(Failed(g, "the process released everything itself").Message, Does.Contain("kill"));
        Assert.That(g.Checks.First(c => c.Name == "a REQ eventfd is registered").Passed, Is.True);
        Assert.That(g.Checks.First(c => c.Name == "edu unbound, its group gone").Passed, Is.True, "the kill let the unbind finish");
    }

    [Test]
    public void RegisteringNoRequestChannel_IsWhatDmesgSays()
    {
        LabGrade g = Lab.Grade(new FlawedUser(Flaw.NoReqEventfd));
        Assert.That(Failed(g, "a REQ eventfd is registered").Message, Does.Contain("No device request channel registered").And.Contain("VFIO_PCI_REQ_IRQ_INDEX"));
        Assert.That(Failed(g, "the unbind completes once asked").Message, Does.Contain("vfio-pci had no way to ask you").And.Not.Contain("signalled your REQ eventfd"));
    }

    [Test]
    public void ClosingTheGroupButNotTheDeviceFd_KeepsTheUnbindWaiting_AndTheGradeSaysTheDeviceFdHoldsTheGroup()
    {
        LabGrade g = Lab.Grade(new FlawedUser(Flaw.CloseGroupOnly));
        LabCheck unbind = Failed(g, "the unbind completes once asked");
        Assert.That(unbind.Message, Does.Contain("closed the group fd but not the device fd").And.Contain("a device fd from VFIO_GROUP_GET_DEVICE_FD"));
    }

    [Test]
    public void HandlingTheRequestByClosingOnlyTheContainer_KeepsTheUnbindWaiting()
    {
        LabGrade g = Lab.Grade(new FlawedUser(Flaw.CloseContainerOnly));
        LabCheck unbind = Failed(g, "the unbind completes once asked");
        Assert.That(unbind.Message, Does.Contain("closed the container but not the device fd"));
    }

    [Test]
    public void ClosingOnlyTheDeviceFd_LetsTheUnbindComplete_ButLeavesTheGroupAndContainerOpen()
    {
        LabGrade g = Lab.Grade(new FlawedUser(Flaw.CloseDeviceOnly));
        Assert.That(g.Checks.First(c => c.Name == "the unbind completes once asked").Passed, Is.True, g.ToString());
        LabCheck clean = Failed(g, "the process released everything itself");
        Assert.That(clean.Message, Does.Contain("the group, /dev/vfio/").And.Contain("ENODEV"));
    }

    [Test]
    public void GradingTwice_GivesTheSameGradeAndTheSameStrace()
    {
        LabGrade a = Lab.Grade(new FlawedUser(Flaw.CloseGroupOnly));
        LabGrade b = Lab.Grade(new FlawedUser(Flaw.CloseGroupOnly));
        Assert.That(b.ToString(), Is.EqualTo(a.ToString()));
        Assert.That(string.Join("\n", b.Strace), Is.EqualTo(string.Join("\n", a.Strace)));
    }

    internal enum Flaw
    {
        IgnoreRequest,
        NoReqEventfd,
        CloseGroupOnly,
        CloseContainerOnly,
        CloseDeviceOnly,
    }

    /// <summary>The reference handler with one realistic mistake.</summary>
    private sealed class FlawedUser(Flaw flaw) : UnbindRequestSolution
    {
        public override void Start(LabEnvironment env)
        {
            SimProcess p = env.Process;
            VfioSession session = env.Sim.Open(p, env.Device!);
            UserBuffer buffer = VfioSim.Allocate(p, 64 * 1024, MapFlags.MAP_POPULATE);
            session.Container.MapDma(buffer.Address, 0x10_0000, buffer.Size);
            if (flaw == Flaw.NoReqEventfd)
            {
                return;
            }

            int req = p.Eventfd(0);
            session.Device.SetIrqEventfd(VfioPciIndex.IrqReq, req);
            p.SpawnThread("req-handler", () =>
            {
                byte[] count = new byte[8];
                if (flaw == Flaw.IgnoreRequest)
                {
                    // Reads the requests and does nothing about them, until it is killed.
                    while (p.Read(req, count) == 8)
                    {
                    }

                    return;
                }

                p.Read(req, count);
                switch (flaw)
                {
                    case Flaw.CloseGroupOnly:
                        session.Group.Dispose();
                        break;
                    case Flaw.CloseContainerOnly:
                        session.Container.Dispose();
                        break;
                    case Flaw.CloseDeviceOnly:
                        session.Device.Dispose();
                        break;
                }
            });
        }
    }
}
