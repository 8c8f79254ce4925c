using NUnit.Framework;
using Vfio.Kernel;

namespace Vfio.Tests.Kernel;

public sealed class FaultInjectorTests
{
    /// <summary>
    /// A small kernel-style constructor: three allocations with an unwind ladder that
    /// frees exactly what was allocated. Returns 0 or -ENOMEM; <paramref name="live"/>
    /// counts allocations that are still live.
    /// </summary>
    private static int SetUpThree(SimKernel k, ref int live)
    {
        if (k.Faults.ShouldFail("kzalloc:vfio_group"))
        {
            return Errno.ENOMEM.Negative();
        }

        live++;
        if (k.Faults.ShouldFail("kzalloc:vfio_container"))
        {
            goto err_group;
        }

        live++;
        if (k.Faults.ShouldFail("iommu_map"))
        {
            goto err_container;
        }

        live++;
        return 0;

    err_container:
        live--;
    err_group:
        live--;
        return Errno.ENOMEM.Negative();
    }

    [Test]
    public void FailNth_FailsExactlyTheNthHit()
    {
        var k = new SimKernel();
        k.Faults.FailNth(3);
        var outcomes = Enumerable.Range(0, 6).Select(_ => k.Faults.ShouldFail("kzalloc:vfio_dma")).ToList();

        Assert.That(outcomes, Is.EqualTo(new[] { false, false, true, false, false, false }));
        Assert.That(k.Faults.Consumed, Is.True);
        Assert.That(k.Faults.IsArmed, Is.False, "fail-nth disarms itself once consumed");
    }

    [Test]
    public void FailNth_CountsOnlyMatchingSites()
    {
        var k = new SimKernel();
        k.Faults.FailNth(2, "gup:*");
        var results = new[] { "kzalloc:a", "gup:pin", "kzalloc:b", "gup:pin_fast", "gup:pin" }
            .Select(site => k.Faults.ShouldFail(site)).ToList();

        Assert.That(results, Is.EqualTo(new[] { false, false, false, true, false }));
        Assert.That(k.Faults.Decisions.Select(d => d.Site), Is.EqualTo(new[] { "gup:pin", "gup:pin_fast" }));
    }

    [Test]
    public void FailNth_CanBeLimitedToOneTask()
    {
        SimKernel k = Runs.Kernel(SchedulerMode.Controlled);
        var failed = new List<string>();
        RunResult r = k.Run(() =>
        {
            var armed = new Completion(k, "armed");
            KTask victim = k.Spawn("victim", () =>
            {
                armed.Wait();
                for (int i = 0; i < 3; i++)
                {
                    if (k.Faults.ShouldFail("kzalloc:x"))
                    {
                        failed.Add($"victim#{i + 1}");
                    }
                }
            });
            k.Faults.FailNth(2, task: victim);
            armed.Complete();
            for (int i = 0; i < 3; i++)
            {
                if (k.Faults.ShouldFail("kzalloc:x"))
                {
                    failed.Add($"main#{i + 1}");
                }
            }

            victim.Join();
        });

        Runs.AssertPassed(r);
        Assert.That(failed, Is.EqualTo(new[] { "victim#2" }));
    }

    [Test]
    public void TheFailNthSweep_ReachesEverySite_AndEveryUnwindLeavesNothingBehind()
    {
        // The iommufd_fail_nth.c method: n = 1, 2, … until the injection is not consumed.
        var failedAt = new List<int>();
        int n = 1;
        for (; n < 50; n++)
        {
            var k = new SimKernel();
            int live = 0;
            k.Faults.FailNth(n);
            int ret = SetUpThree(k, ref live);
            if (!k.Faults.Consumed)
            {
                Assert.That(ret, Is.Zero, "the uninjected sequence succeeds");
                Assert.That(live, Is.EqualTo(3));
                break;
            }

            Assert.That(ret, Is.EqualTo(Errno.ENOMEM.Negative()));
            Assert.That(live, Is.Zero, $"fail-nth={n} leaked an allocation");
            failedAt.Add(n);
        }

        Assert.That(failedAt, Is.EqualTo(new[] { 1, 2, 3 }));
        Assert.That(n, Is.EqualTo(4));
    }

    [Test]
    public void Probabilities_AreDrawnFromTheSeed()
    {
        static string Draw(ulong seed)
        {
            var k = new SimKernel(new KernelConfig { Seed = seed });
            k.Faults.SetProbability("iommu_*", 0.3);
            return string.Concat(Enumerable.Range(0, 64).Select(_ => k.Faults.ShouldFail("iommu_map") ? '1' : '0'));
        }

        string seven = Draw(7);
        Assert.That(Draw(7), Is.EqualTo(seven));
        Assert.That(Draw(8), Is.Not.EqualTo(seven));
        Assert.That(seven.Count(c => c == '1'), Is.InRange(5, 35));

        var never = new SimKernel();
        never.Faults.SetProbability("x", 0);
        Assert.That(never.Faults.IsArmed, Is.False);
        var always = new SimKernel();
        always.Faults.SetProbability("x", 1);
        Assert.That(Enumerable.Range(0, 10).All(_ => always.Faults.ShouldFail("x")), Is.True);
        Assert.That(always.Faults.ShouldFail("y"), Is.False);
    }

    [Test]
    public void DecisionsAreRecordedInTheTrace_AndANotArmedSiteIsNot()
    {
        SimKernel k = Runs.Kernel(SchedulerMode.Controlled);
        RunResult r = k.Run(() =>
        {
            k.Faults.ShouldFail("kzalloc:before");
            k.Faults.FailNth(2);
            k.Faults.ShouldFail("kzalloc:a");
            k.Faults.ShouldFail("kzalloc:b");
            k.Faults.ShouldFail("kzalloc:after");
        });

        Runs.AssertPassed(r);
        var faults = r.Trace.FaultDecisions.ToList();
        Assert.That(faults.Select(f => (f.Object, f.Detail)), Is.EqualTo(new[]
        {
            ("kzalloc:a", "hit 1: pass"),
            ("kzalloc:b", "hit 2: FAIL"),
        }));
    }
}
