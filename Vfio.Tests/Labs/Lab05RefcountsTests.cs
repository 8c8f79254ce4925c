// Tests Vfio.Sim/Labs/Lab05Refcounts.cs: the reference model (and the same model as
// examples/LabCourse has it) predicts every count of the three sequences; a model in which
// closing the group fd drops the device, one that forgets the registration's own reference,
// and one that counts a dup as an open fail the sequences they should with a message that
// names the rule; the reference's counts are the kernel objects' and the graph's; grading is
// deterministic.

using LabCourse;
using NUnit.Framework;
using Vfio.Sim.Labs;

namespace Vfio.Tests.Labs;

public sealed class Lab05RefcountsTests
{
    private static Lab Lab => LabCatalog.Get(5);

    private static LabCheck Check(LabGrade grade, string sequence)
        => grade.Checks.Single(c => c.Name.StartsWith($"sequence {sequence}:", StringComparison.Ordinal));

    [Test]
    public void TheCatalogueHasLab5_WithItsHandout()
    {
        Assert.That(Lab.Slug, Is.EqualTo("refcounts"));
        Assert.That(Lab.SolutionType, Is.EqualTo(typeof(RefcountSolution)));
        Assert.That(Lab.Handout, Does.Contain("container_users").And.Contain("open_count"));
    }

    [Test]
    public void TheReferenceModel_GetsFullMarks()
    {
        LabGrade g = Lab.Grade(Lab.CreateReferenceSolution());
        Assert.That(g.Passed, Is.True, g.ToString());
        Assert.That(g.Score, Is.EqualTo(100));
        Assert.That(g.Strace.Count(r => r.Request == "VFIO_GROUP_GET_DEVICE_FD" && r.Return >= 0), Is.EqualTo(4));
        Assert.That(g.Strace.Count(r => r.Syscall == "dup"), Is.EqualTo(1));
    }

    [Test]
    public void TheModelWrittenWithThePublicApi_GetsFullMarks()
    {
        LabGrade g = Lab.Grade(new RefcountModel());
        Assert.That(g.Passed, Is.True, g.ToString());
    }

    [Test]
    public void PredictingThatClosingTheGroupFdDropsTheDevice_FailsSequenceB_AndTheGradeSaysTheDeviceFdHoldsTheGroup()
    {
        LabGrade g = Lab.Grade(new FlawedModel(Flaw.GroupCloseDropsDevice));
        LabCheck b = Check(g, "B");
        Assert.That(b.Passed, Is.False);
        Assert.That(b.Message, Does.Contain("step 6 (close the group fd)").And.Contain("group file: you predicted 0, the kernel has 1").And.Contain("the device fd holds the group"));
        Assert.That(Check(g, "A").Passed, Is.True, "in vfio.rst's order the device is gone before the group closes");
    }

    [Test]
    public void ForgettingTheRegistrationsOwnReference_FailsEverySequence_AtTheFirstStep()
    {
        LabGrade g = Lab.Grade(new FlawedModel(Flaw.RegistrationOffByOne));
        Assert.That(g.Score, Is.Zero);
        LabCheck a = Check(g, "A");
        Assert.That(a.Message, Does.Contain("step 1 (open /dev/vfio/vfio)").And.Contain("device: you predicted 0, the kernel has 1").And.Contain("vfio_register_group_dev"));
    }

    [Test]
    public void CountingADupAsAnOpen_FailsSequenceC_AndTheGradeSaysADupSharesItsFile()
    {
        LabGrade g = Lab.Grade(new FlawedModel(Flaw.DupOpensTheDevice));
        Assert.That(Check(g, "A").Passed && Check(g, "B").Passed, Is.True);
        LabCheck c = Check(g, "C");
        Assert.That(c.Passed, Is.False);
        Assert.That(c.Message, Does.Contain("step 6 (dup the device fd)").And.Contain("dup'd fd shares its file"));
    }

    [Test]
    public void APredictionOfTheWrongLength_IsAFailedSequenceThatSaysSo()
    {
        LabGrade g = Lab.Grade(new FlawedModel(Flaw.TooShort));
        Assert.That(Check(g, "A").Message, Does.Contain("one RefcountState per step"));
    }

    [Test]
    public void GradingTwice_GivesTheSameGradeAndTheSameStrace()
    {
        LabGrade a = Lab.Grade(new FlawedModel(Flaw.GroupCloseDropsDevice));
        LabGrade b = Lab.Grade(new FlawedModel(Flaw.GroupCloseDropsDevice));
        Assert.That(b.ToString(), Is.EqualTo(a.ToString()));
        Assert.That(string.Join("\n", b.Strace), Is.EqualTo(string.Join("\n", a.Strace)));
    }

    internal enum Flaw
    {
        GroupCloseDropsDevice,
        RegistrationOffByOne,
        DupOpensTheDevice,
        TooShort,
    }

    /// <summary>The reference model with one realistic misconception.</summary>
    private sealed class FlawedModel(Flaw flaw) : RefcountSolution
    {
        public override IReadOnlyList<RefcountState> Predict(RefcountSequence sequence)
        {
            IReadOnlyList<RefcountState> right = new RefcountModel().Predict(sequence);
            var states = new List<RefcountState>();
            bool groupClosed = false;
            for (int i = 0; i < right.Count; i++)
            {
                RefcountState s = right[i];
                RefcountAction a = sequence.Steps[i];
                switch (flaw)
                {
                    case Flaw.RegistrationOffByOne:
                        s = s with { Device = s.Device - 1 };
                        break;
                    case Flaw.DupOpensTheDevice when a == RefcountAction.DupDeviceFd:
                        s = s with { Device = s.Device + 1, OpenCount = s.OpenCount + 1 };
                        break;
                    case Flaw.GroupCloseDropsDevice:
                        groupClosed |= a == RefcountAction.CloseGroup;
                        if (groupClosed)
                        {
                            // "The group is gone, so its device and its container membership go with it."
                            s = s with { GroupFile = 0, ContainerUsers = 0, Container = s.ContainerFile, Device = 1, OpenCount = 0 };
                        }

                        break;
                }

                states.Add(s);
            }

            return flaw == Flaw.TooShort ? states.Take(states.Count - 1).ToList() : states;
        }
    }
}
