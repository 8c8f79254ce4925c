// Tests Vfio.Sim/Labs/Lab06Mtty.cs: the reference solution (and its public-API copy in
// examples/LabCourse) gets full marks; realistic mistakes fail the check they should, with a
// message that names what the kernel did; grading is deterministic.

using System.Text;
using LabCourse;
using NUnit.Framework;
using Vfio.Core.Uapi;
using Vfio.Sim;
using Vfio.Sim.Labs;

namespace Vfio.Tests.Labs;

public sealed class Lab06MttyTests
{
    private static readonly Lab06Mtty s_lab = new();

    private static LabCheck Check(LabGrade g, string name) => g.Checks.Single(c => c.Name == name);

    [Test]
    public void TheReferenceSolution_GetsFullMarks()
    {
        LabGrade g = s_lab.Grade(s_lab.CreateReferenceSolution());
        Assert.That(g.Passed, Is.True, g.ToString());
        Assert.That(g.Score, Is.EqualTo(g.MaxScore));
        Assert.That(g.MaxScore, Is.EqualTo(10));
    }

    [Test]
    public void TheExampleSolution_GetsFullMarks()
    {
        LabGrade g = s_lab.Grade(new Lab06MttySolution());
        Assert.That(g.Passed, Is.True, g.ToString());
    }

    [Test]
    public void TheLabIsInTheCatalogue_WithItsHandout()
    {
        Assert.That(LabCatalog.Get(6), Is.InstanceOf<Lab06Mtty>());
        Assert.That(s_lab.Handout, Does.Contain("available_instances").And.Contain("vfio-sim lab check 6"));
    }

    [Test]
    public void WritingTheUuidWithBraces_IsEinvalAtCreate_AndTheMessageStatesTheUuidRule()
    {
        LabGrade g = s_lab.Grade(new BracedUuid());
        LabCheck create = Check(g, "the instance was created");
        Assert.That(create.Passed, Is.False);
        Assert.That(create.Message, Does.Contain("EINVAL").And.Contain("36 characters").And.Contain("8-4-4-4-12"));
        Assert.That(g.Strace.Any(r => r.Syscall == "write" && r.Error == Vfio.Kernel.Errno.EINVAL), Is.True);
        Assert.That(g.Score, Is.EqualTo(0));
    }

    [Test]
    public void RemovingWhileTheDeviceIsStillOpen_NeverReturns_AndTheMessageSaysTheRemoveWaitsForTheFds()
    {
        LabGrade g = s_lab.Grade(new KeepsTheDeviceOpen());
        Assert.That(Check(g, "the far end got the line").Passed, Is.True);
        LabCheck removed = Check(g, "the instance was removed");
        Assert.That(removed.Passed, Is.False);
        Assert.That(removed.Message, Does.Contain("vfio_unregister_group_dev").And.Contain("never returned").And.Contain("/dev/vfio/"));
        Assert.That(Check(g, "nothing is left open").Passed, Is.False);
    }

    [Test]
    public void PollingLsrWithoutTheInterrupt_GetsTheReply_ButFailsTheInterruptCheck()
    {
        LabGrade g = s_lab.Grade(new PollsLsr());
        Assert.That(Check(g, "the reply came back").Passed, Is.True, g.ToString());
        LabCheck irq = Check(g, "the reply was interrupt-driven");
        Assert.That(irq.Passed, Is.False);
        Assert.That(irq.Message, Does.Contain("VFIO_DEVICE_SET_IRQS").And.Contain("IER"));
        Assert.That(g.Strace.Any(r => r.Request == "VFIO_DEVICE_SET_IRQS"), Is.False);
    }

    [Test]
    public void GradingTwice_GivesTheSameGradeAndTheSameStrace()
    {
        LabGrade a = s_lab.Grade(new Lab06MttySolution()), b = s_lab.Grade(new Lab06MttySolution());
        Assert.That(b.Checks, Is.EqualTo(a.Checks));
        Assert.That(string.Join("\n", b.Strace), Is.EqualTo(string.Join("\n", a.Strace)));
        Assert.That(a.Strace.Count, Is.GreaterThan(20));
    }

    // Writes the UUID as Guid.ToString("B"): {xxxxxxxx-…}.
    private sealed class BracedUuid : MttySolution
    {
        private readonly Lab06MttySolution _good = new();

        public override void CreateInstance(LabEnvironment env)
            => env.Sim.SysfsWrite(Lab06Mtty.TypeDir + "/create", Guid.Parse(env.Device!).ToString("B"), env.Process);

        public override string Talk(LabEnvironment env, string line) => _good.Talk(env, line);

        public override void RemoveInstance(LabEnvironment env) => _good.RemoveInstance(env);
    }

    // Talks correctly, then opens the device once more "to check its state" and forgets it.
    private sealed class KeepsTheDeviceOpen : MttySolution
    {
        private readonly Lab06MttySolution _good = new();

        public override void CreateInstance(LabEnvironment env) => _good.CreateInstance(env);

        public override string Talk(LabEnvironment env, string line)
        {
            string reply = _good.Talk(env, line);
            VfioSession forgotten = env.Sim.OpenMdev(env.Process, Guid.Parse(env.Device!));
            GC.KeepAlive(forgotten);
            return reply;
        }

        public override void RemoveInstance(LabEnvironment env) => _good.RemoveInstance(env);
    }

    // Polls LSR for data ready with a nap between looks; never sets IER or an eventfd.
    private sealed class PollsLsr : MttySolution
    {
        private readonly Lab06MttySolution _good = new();

        public override void CreateInstance(LabEnvironment env) => _good.CreateInstance(env);

        public override string Talk(LabEnvironment env, string line)
        {
            var reply = new StringBuilder();
            using VfioSession s = env.Sim.OpenMdev(env.Process, Guid.Parse(env.Device!));
            byte[] b = new byte[1];
            s.Device.Write(VfioPciIndex.Bar0, 3, [0x03]);
            s.Device.Write(VfioPciIndex.Bar0, 2, [0x07]);
            foreach (char c in line + "\n")
            {
                s.Device.Write(VfioPciIndex.Bar0, 0, [(byte)c]);
            }

            for (int spins = 0; spins < 2000; spins++)
            {
                s.Device.Read(VfioPciIndex.Bar0, 5, b);
                if ((b[0] & 1) == 0)
                {
                    env.Process.Poll([], 1); // nothing yet: a millisecond's nap, then look again
                    continue;
                }

                s.Device.Read(VfioPciIndex.Bar0, 0, b);
                if (b[0] == '\n')
                {
                    break;
                }

                reply.Append((char)b[0]);
            }

            return reply.ToString();
        }

        public override void RemoveInstance(LabEnvironment env) => _good.RemoveInstance(env);
    }
}
