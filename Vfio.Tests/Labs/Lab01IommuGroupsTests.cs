// Tests Vfio.Sim/Labs/Lab01IommuGroups.cs: the reference script earns every point; scripts
// with the mistakes students make (binding only the function they want, writing to
// vfio-pci's bind without driver_override, forgetting drivers_probe, leaving the group
// open) fail the check that catches it, with a message that names what the kernel saw;
// grading is deterministic.

using NUnit.Framework;
using Vfio.Sim.Labs;

namespace Vfio.Tests.Labs;

public sealed class Lab01IommuGroupsTests
{
    private static readonly Lab s_lab = new Lab01IommuGroups();

    private static LabCheck Failed(LabGrade grade, string name)
    {
        LabCheck check = grade.Checks.Single(c => c.Name == name);
        Assert.That(check.Passed, Is.False, grade.ToString());
        return check;
    }

    [Test]
    public void TheReferenceScript_EarnsFullScore()
    {
        LabGrade grade = s_lab.Grade(s_lab.CreateReferenceSolution());
        Assert.That(grade.Passed, Is.True, grade.ToString());
        Assert.That(grade.Score, Is.EqualTo(grade.MaxScore));
        Assert.That(grade.Strace.Any(r => r.Request == "VFIO_GROUP_GET_STATUS" && r.Return == 0), Is.True);
    }

    [Test]
    public void BindingOnlyTheTargetFunction_FailsTheGroupCheck_NamingTheOtherFunctionAndItsDriver()
    {
        LabGrade grade = s_lab.Grade(new ShellScript("""
            echo 0000:02:00.1 > /sys/bus/pci/devices/0000:02:00.1/driver/unbind
            echo vfio-pci > /sys/bus/pci/devices/0000:02:00.1/driver_override
            echo 0000:02:00.1 > /sys/bus/pci/drivers_probe
            open /dev/vfio/4
            VFIO_GROUP_GET_STATUS 3
            close 3
            """));
        LabCheck bound = Failed(grade, "every function of the group bound to vfio-pci");
        Assert.That(bound.Message, Does.Contain("0000:02:00.0 is bound to igb"));
        Assert.That(Failed(grade, "group viable").Message, Does.Contain("flags=0"));
        Assert.That(grade.Checks.Single(c => c.Name == "group seen not viable").Passed, Is.True);
    }

    [Test]
    public void WritingToVfioPcisBindWithoutDriverOverride_FailsWithWhatTheKernelReturned()
    {
        LabGrade grade = s_lab.Grade(new ShellScript("""
            echo 0000:02:00.0 > /sys/bus/pci/devices/0000:02:00.0/driver/unbind
            echo 0000:02:00.1 > /sys/bus/pci/devices/0000:02:00.1/driver/unbind
            echo 0000:02:00.0 > /sys/bus/pci/drivers/vfio-pci/bind
            echo 0000:02:00.1 > /sys/bus/pci/drivers/vfio-pci/bind
            open /dev/vfio/4
            VFIO_GROUP_GET_STATUS 3
            close 3
            """));
        string message = Failed(grade, "every function of the group bound to vfio-pci").Message;
        Assert.That(message, Does.Contain("ENODEV"));
        Assert.That(message, Does.Contain("driver_override"));
        Assert.That(Failed(grade, "group viable").Message, Does.Contain("/dev/vfio/4"));
    }

    [Test]
    public void ForgettingDriversProbe_FailsTheGroupCheck_SayingDriverOverrideDoesNotBind()
    {
        LabGrade grade = s_lab.Grade(new ShellScript("""
            echo 0000:02:00.1 > /sys/bus/pci/devices/0000:02:00.1/driver/unbind
            echo vfio-pci > /sys/bus/pci/devices/0000:02:00.1/driver_override
            echo 0000:02:00.0 > /sys/bus/pci/devices/0000:02:00.0/driver/unbind
            echo vfio-pci > /sys/bus/pci/devices/0000:02:00.0/driver_override
            open /dev/vfio/4
            VFIO_GROUP_GET_STATUS 3
            """));
        string message = Failed(grade, "every function of the group bound to vfio-pci").Message;
        Assert.That(message, Does.Contain("driver_override=vfio-pci but no driver"));
        Assert.That(message, Does.Contain("drivers_probe"));
        Assert.That(Failed(grade, "group viable").Message, Does.Contain("ENOENT"));
    }

    [Test]
    public void LeavingTheGroupOpen_FailsTheFdCheck_NamingTheGroupNode()
    {
        string script = new ShellScript(Lab01IommuGroups.ReferenceScript).Text.Replace("close 3", "", StringComparison.Ordinal);
        LabGrade grade = s_lab.Grade(new ShellScript(script));
        Assert.That(Failed(grade, "fds closed").Message, Does.Contain("fd 3 (/dev/vfio/4)"));
        Assert.That(grade.Score, Is.EqualTo(grade.MaxScore - 5));
    }

    [Test]
    public void GradingTheSameScriptTwice_GivesTheSameGradeAndTheSameStrace()
    {
        LabGrade a = s_lab.Grade(s_lab.CreateReferenceSolution());
        LabGrade b = s_lab.Grade(s_lab.CreateReferenceSolution());
        Assert.That(b.ToString(), Is.EqualTo(a.ToString()));
        Assert.That(string.Join('\n', b.Strace), Is.EqualTo(string.Join('\n', a.Strace)));
        Assert.That(a.Strace, Is.Not.Empty);
    }

    [Test]
    public void TheLab_IsInTheCatalogue_WithItsHandout()
    {
        Assert.That(LabCatalog.Get(1), Is.InstanceOf<Lab01IommuGroups>());
        Assert.That(s_lab.Handout, Does.StartWith("# Lab 1: IOMMU groups and viability"));
        Assert.That(s_lab.Handout, Does.Not.Contain("VFIO_GROUP_GET_STATUS 3"), "the handout does not give the solution away");
    }
}
