using NUnit.Framework;
using Vfio.Kernel;

namespace Vfio.Tests.Kernel;

[TestFixture(SchedulerMode.Real)]
[TestFixture(SchedulerMode.Controlled)]
public sealed class RefCountTests(SchedulerMode mode)
{
    private static RunResult RunWith(SchedulerMode mode, Action<SimKernel, RefCount> body, int initial = 1)
        => Runs.Run(mode, k => body(k, new RefCount(k, "obj.refcount", initial)));

    [Test]
    public void IncAndDecAndTest_CountUpAndDown_AndReportTheLastPut()
    {
        var results = new List<bool>();
        int value = -1;
        RunResult r = RunWith(mode, (k, rc) =>
        {
            rc.Inc();
            rc.Add(2);
            results.Add(rc.DecAndTest());
            results.Add(rc.SubAndTest(2));
            value = rc.Read();
            results.Add(rc.DecAndTest());
        });

        Runs.AssertPassed(r);
        Assert.That(results, Is.EqualTo(new[] { false, false, true }));
        Assert.That(value, Is.EqualTo(1));
    }

    [Test]
    public void IncNotZero_RefusesAZeroCount_AndChangesNothing()
    {
        bool onOne = false, onZero = true;
        int after = -1;
        RunResult r = RunWith(mode, (k, rc) =>
        {
            onOne = rc.IncNotZero();
            rc.Set(0);
            onZero = rc.IncNotZero();
            after = rc.Read();
        });

        Runs.AssertPassed(r);
        Assert.That(onOne, Is.True);
        Assert.That(onZero, Is.False);
        Assert.That(after, Is.Zero);
    }

    // A test of refcount_t: the addition-on-0 WARN is what it checks.
    [LeavesKernelWarnings]
    [Test]
    public void IncFromZero_WarnsUseAfterFree_AndSaturates()
    {
        int after = 0;
        RunResult r = RunWith(mode, (k, rc) =>
        {
            rc.Set(0);
            rc.Inc();
            after = rc.Value;
        });

        Runs.AssertOutcome(r, RunOutcome.UnexpectedWarning);
        Assert.That(after, Is.EqualTo(RefCount.Saturated));
        Assert.That(r.Warnings.Single().Kind, Is.EqualTo(WarningKind.Refcount));
        Assert.That(r.Warnings.Single().Title, Is.EqualTo("WARNING: refcount_t: addition on 0; use-after-free. (obj.refcount)"));
    }

    [Test]
    public void DecAndTestBelowZero_WarnsUnderflow_ReturnsFalse_AndStaysSaturated()
    {
        bool last = true, again = true;
        int after = 0;
        RunResult r = RunWith(mode, (k, rc) =>
        {
            k.ExpectWarning("underflow");
            rc.Set(0);
            last = rc.DecAndTest();
            again = rc.DecAndTest();
            after = rc.Value;
        });

        Runs.AssertPassed(r);
        Assert.That(last, Is.False);
        Assert.That(again, Is.False);
        Assert.That(after, Is.EqualTo(RefCount.Saturated));
        Assert.That(r.Warnings, Has.Count.EqualTo(1), "WARN_ONCE: the second underflow is silent");
    }

    [Test]
    public void IncAtTheMaximum_SaturatesInsteadOfWrapping()
    {
        int after = 0;
        RunResult r = RunWith(mode, (k, rc) =>
        {
            k.ExpectWarning("saturated; leaking memory");
            rc.Set(RefCount.Max);
            rc.Inc();
            after = rc.Value;
        });

        Runs.AssertPassed(r);
        Assert.That(after, Is.EqualTo(RefCount.Saturated));
    }

    // A test of refcount_t: the decrement-hit-0 WARN is what it checks.
    [LeavesKernelWarnings]
    [Test]
    public void DecToZero_WarnsDecrementHitZero()
    {
        RunResult r = RunWith(mode, (k, rc) => rc.Dec());

        Runs.AssertOutcome(r, RunOutcome.UnexpectedWarning);
        Assert.That(r.Warnings.Single().Title, Does.Contain("refcount_t: decrement hit 0; leaking memory."));
    }

    [Test]
    public void DecNotOne_RefusesTheLastReference_AndLeavesSaturatedCountsAlone()
    {
        var results = new List<bool>();
        var values = new List<int>();
        RunResult r = RunWith(mode, (k, rc) =>
        {
            results.Add(rc.DecNotOne());
            values.Add(rc.Value);
            rc.Set(3);
            results.Add(rc.DecNotOne());
            values.Add(rc.Value);
            rc.Set(RefCount.Saturated);
            results.Add(rc.DecNotOne());
            values.Add(rc.Value);
        });

        Runs.AssertPassed(r);
        Assert.That(results, Is.EqualTo(new[] { false, true, true }));
        Assert.That(values, Is.EqualTo(new[] { 1, 2, RefCount.Saturated }));
    }

    [Test]
    public void DecAndMutexLock_ReturnsWithTheMutexHeld_OnlyForTheLastReference()
    {
        bool first = true, last = false, heldAfterFirst = true, heldAfterLast = false;
        RunResult r = RunWith(mode, (k, rc) =>
        {
            var m = new KMutex(k, "vfio.device_list_lock");
            first = rc.DecAndMutexLock(m);
            heldAfterFirst = m.IsLocked;
            last = rc.DecAndMutexLock(m);
            heldAfterLast = m.Owner == k.CurrentTask;
            if (last)
            {
                m.Unlock();
            }
        }, initial: 2);

        Runs.AssertPassed(r);
        Assert.That(first, Is.False);
        Assert.That(heldAfterFirst, Is.False);
        Assert.That(last, Is.True);
        Assert.That(heldAfterLast, Is.True);
    }

    [Test]
    public void ConcurrentGetsAndPuts_ReturnToTheBaseline()
    {
        int after = 0;
        RunResult r = RunWith(mode, (k, rc) =>
        {
            var tasks = Enumerable.Range(0, 4).Select(i => k.Spawn($"user{i}", () =>
            {
                for (int j = 0; j < 200; j++)
                {
                    rc.Inc();
                    Invariant.Check(!rc.DecAndTest(), "a put that is not the last must not report zero");
                }
            })).ToList();
            tasks.ForEach(t => t.Join());
            after = rc.Read();
        });

        Runs.AssertPassed(r);
        Assert.That(after, Is.EqualTo(1));
    }
}

[TestFixture(SchedulerMode.Real)]
[TestFixture(SchedulerMode.Controlled)]
public sealed class KRefTests(SchedulerMode mode)
{
    [Test]
    public void Put_ReleasesExactlyOnce_OnTheLastReference()
    {
        int releases = 0;
        var puts = new List<bool>();
        RunResult r = Runs.Run(mode, k =>
        {
            var kref = new KRef(k, "group.kref");
            kref.Get();
            puts.Add(kref.Put(() => releases++));
            puts.Add(kref.Put(() => releases++));
        });

        Runs.AssertPassed(r);
        Assert.That(puts, Is.EqualTo(new[] { false, true }));
        Assert.That(releases, Is.EqualTo(1));
    }

    [Test]
    public void GetUnlessZero_FailsOnceReleased()
    {
        bool got = true;
        RunResult r = Runs.Run(mode, k =>
        {
            var kref = new KRef(k, "obj");
            kref.Put(() => { });
            got = kref.GetUnlessZero();
        });

        Runs.AssertPassed(r);
        Assert.That(got, Is.False);
    }

    [Test]
    public void PutMutex_RunsReleaseWithTheMutexHeld()
    {
        bool heldInRelease = false, heldAfter = true;
        RunResult r = Runs.Run(mode, k =>
        {
            var m = new KMutex(k, "list_lock");
            var kref = new KRef(k, "obj");
            kref.PutMutex(() =>
            {
                heldInRelease = m.Owner == k.CurrentTask;
                m.Unlock();
            }, m);
            heldAfter = m.IsLocked;
        });

        Runs.AssertPassed(r);
        Assert.That(heldInRelease, Is.True);
        Assert.That(heldAfter, Is.False);
    }
}
