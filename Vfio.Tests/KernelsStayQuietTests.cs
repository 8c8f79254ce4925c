// Tests KernelsStayQuiet.cs, the assembly-wide check that every kernel a test creates stays
// quiet. Each case runs the action's BeforeTest/AfterTest in an execution context of its
// own (a thread-pool work item, as NUnit gives each test a context), so the kernels it
// makes on purpose never count against the test running it.

using NUnit.Framework;
using NUnit.Framework.Interfaces;
using NUnit.Framework.Internal;
using Vfio.Kernel;
using Vfio.Sim;

namespace Vfio.Tests;

public sealed class KernelsStayQuietTests
{
    [Test]
    public void AnUndeclaredWarn_InAKernelMadeOnAThreadTheTestStarted_FailsTheTest()
    {
        (AssertionException? failure, SimKernel kernel, IReadOnlyCollection<SimKernel> seen) = InOwnScope(Plain, () =>
        {
            SimKernel? made = null;
            var helper = new Thread(() =>
            {
                made = new SimKernel();
                Vfio.Kernel.Warn.On(made, true, "refcount of group 7 is 0 on open");
            });
            helper.Start();
            helper.Join();
            return made!;
        });

        Assert.That(seen, Is.EqualTo(new[] { kernel }), "the kernel made on the test's thread was attributed to the test");
        Assert.That(failure, Is.Not.Null, "the action fails the test");
        Assert.That(failure!.Message, Does.Contain("refcount of group 7 is 0 on open"));
        Assert.That(failure.Message, Does.Contain("kernel #1 of this test (Real, seed 1, linux-6.12) reported 1 warning(s)"));
        Assert.That(KernelsStayQuietAttribute.KernelsOfThisTest, Does.Not.Contain(kernel), "the scope of its own kept it away from this test");
    }

    [Test]
    public void ALockdepReport_InAHostsKernel_IsReportedWithTheOtherKernelsOfTheTest()
    {
        (AssertionException? failure, SimKernel kernel, IReadOnlyCollection<SimKernel> seen) = InOwnScope(Plain, () =>
        {
            _ = new SimKernel();
            VfioSim sim = VfioSim.CreateBuilder().UseScheduler(SchedulerMode.Real).Build();
            var a = new KMutex(sim.Kernel, "a");
            var b = new KMutex(sim.Kernel, "b");
            sim.Run(() =>
            {
                a.Lock();
                b.Lock();
                b.Unlock();
                a.Unlock();
                b.Lock();
                a.Lock();
                a.Unlock();
                b.Unlock();
            });
            return sim.Kernel;
        });

        Assert.That(seen, Has.Count.EqualTo(2).And.Contains(kernel));
        Assert.That(failure, Is.Not.Null);
        Assert.That(failure!.Message, Does.Contain("kernel #2 of this test").And.Contain("[Lockdep").And.Contain("circular locking dependency"));
        Assert.That(failure.Message, Does.Not.Contain("kernel #1"), "the quiet kernel is not named");
    }

    [Test]
    public void DeclaredWarnings_AndQuietKernels_PassTheCheck()
    {
        (AssertionException? failure, _, IReadOnlyCollection<SimKernel> seen) = InOwnScope(Plain, () =>
        {
            _ = new SimKernel();
            var k = new SimKernel();
            k.ExpectWarning("WARN the test provokes");
            Vfio.Kernel.Warn.On(k, true, "a WARN the test provokes");
            return k;
        });

        Assert.That(seen, Has.Count.EqualTo(2));
        Assert.That(failure, Is.Null);
    }

    [Test]
    public void ATestMarkedLeavesKernelWarnings_IsNotChecked()
    {
        (AssertionException? failure, SimKernel kernel, _) = InOwnScope(OptedOut, () =>
        {
            var k = new SimKernel();
            Vfio.Kernel.Warn.On(k, true, "a WARN a test of WARN leaves behind");
            return k;
        });

        Assert.That(kernel.UnexpectedWarnings, Has.Count.EqualTo(1));
        Assert.That(failure, Is.Null);
    }

    private static ITest Plain => new TestMethod(new MethodWrapper(typeof(KernelsStayQuietTests), nameof(StandInForAPlainTest)));

    private static ITest OptedOut => new TestMethod(new MethodWrapper(typeof(KernelsStayQuietTests), nameof(StandInForAnOptedOutTest)));

    private static void StandInForAPlainTest()
    {
    }

    // Stands in for a test of WARN itself.
    [LeavesKernelWarnings]
    private static void StandInForAnOptedOutTest()
    {
    }

    /// <summary>
    /// Runs the action around <paramref name="body"/> for <paramref name="test"/> in an
    /// execution context of its own; returns what AfterTest threw, the kernel the body
    /// returned and the kernels the action attributed to the scope.
    /// </summary>
    private static (AssertionException? Failure, SimKernel Kernel, IReadOnlyCollection<SimKernel> Seen) InOwnScope(ITest test, Func<SimKernel> body)
    {
        var action = new KernelsStayQuietAttribute();
        return Task.Run(() =>
        {
            action.BeforeTest(test);
            SimKernel kernel = body();
            IReadOnlyCollection<SimKernel> seen = KernelsStayQuietAttribute.KernelsOfThisTest;
            try
            {
                action.AfterTest(test);
                return (null, kernel, seen);
            }
            catch (AssertionException e)
            {
                return ((AssertionException?)e, kernel, seen);
            }
        }).GetAwaiter().GetResult();
    }
}
