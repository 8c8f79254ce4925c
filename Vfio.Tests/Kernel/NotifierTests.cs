using NUnit.Framework;
using Vfio.Kernel;

namespace Vfio.Tests.Kernel;

[TestFixture(SchedulerMode.Real)]
[TestFixture(SchedulerMode.Controlled)]
public sealed class NotifierTests(SchedulerMode mode)
{
    [Test]
    public void CallingAnEmptyChain_ReturnsNotifyDone_WithoutTakingTheRwsem()
    {
        int ret = -1;
        RunResult r = Runs.Run(mode, k =>
        {
            var chain = new BlockingNotifierChain(k, "empty");
            var s = new KSpinLock(k, "atomic");
            s.Lock();
            ret = chain.CallChain(1, null); // down_read() would be a might_sleep() report here.
            s.Unlock();
        });

        Runs.AssertPassed(r);
        Assert.That(ret, Is.EqualTo(BlockingNotifierChain.NOTIFY_DONE));
    }

    [Test]
    public void CallingAChain_RunsBlocksByPriority_UntilOneStops_AndUnregisteringEmptiesIt()
    {
        var calls = new List<string>();
        int first = 0, second = 0;
        RunResult r = Runs.Run(mode, k =>
        {
            var chain = new BlockingNotifierChain(k, "chain");
            var low = new NotifierBlock((_, _, _) => { calls.Add("low"); return BlockingNotifierChain.NOTIFY_OK; }, priority: 0);
            var high = new NotifierBlock((_, _, _) => { calls.Add("high"); return BlockingNotifierChain.NOTIFY_BAD; }, priority: 10);
            chain.Register(low);
            chain.Register(high);
            first = chain.CallChain(1, null);
            chain.Unregister(high);
            chain.Unregister(low);
            second = chain.CallChain(1, null);
        });

        Runs.AssertPassed(r);
        Assert.That(calls, Is.EqualTo(new[] { "high" }));
        Assert.That(first, Is.EqualTo(BlockingNotifierChain.NOTIFY_BAD));
        Assert.That(second, Is.EqualTo(BlockingNotifierChain.NOTIFY_DONE));
    }
}
