using NUnit.Framework;
using Vfio.Kernel;

namespace Vfio.Tests.Kernel;

public class Smoke
{
    [Test]
    public void TwoTasksContendAMutex()
    {
        var k = new SimKernel(new KernelConfig { Mode = SchedulerMode.Controlled, Seed = 3 });
        int counter = 0;
        var r = k.Run(() =>
        {
            var m = new KMutex(k, "m");
            var a = k.Spawn("A", () => { for (int i = 0; i < 100; i++) { m.Lock(); counter++; m.Unlock(); } });
            var b = k.Spawn("B", () => { for (int i = 0; i < 100; i++) { m.Lock(); counter++; m.Unlock(); } });
            a.Join(); b.Join();
        });
        TestContext.Out.WriteLine(r.Describe());
        Assert.That(r.Outcome, Is.EqualTo(RunOutcome.Completed), r.Describe());
        Assert.That(counter, Is.EqualTo(200));
    }

    [Test]
    public void AbbaDeadlocks()
    {
        for (ulong seed = 1; seed < 50; seed++)
        {
            var k = new SimKernel(new KernelConfig { Mode = SchedulerMode.Controlled, Seed = seed, Lockdep = false });
            var r = k.Run(() =>
            {
                var ma = new KMutex(k, "a");
                var mb = new KMutex(k, "b");
                var a = k.Spawn("A", () => { ma.Lock(); mb.Lock(); mb.Unlock(); ma.Unlock(); });
                var b = k.Spawn("B", () => { mb.Lock(); ma.Lock(); ma.Unlock(); mb.Unlock(); });
                a.Join(); b.Join();
            });
            if (r.Outcome == RunOutcome.Deadlock)
            {
                TestContext.Out.WriteLine(r.Describe());
                TestContext.Out.WriteLine(r.Trace.ToText());
                return;
            }
            Assert.That(r.Outcome, Is.EqualTo(RunOutcome.Completed), r.Describe());
        }
        Assert.Fail("no deadlock found");
    }
}
