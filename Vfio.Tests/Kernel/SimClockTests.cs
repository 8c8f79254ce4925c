using NUnit.Framework;
using Vfio.Kernel;

namespace Vfio.Tests.Kernel;

public sealed class SimClockTests
{
    [TestCase(0, 0)]
    [TestCase(1, 1)]
    [TestCase(4, 1)]
    [TestCase(5, 2)]
    [TestCase(1000, 250)]
    [TestCase(10_000, 2500)]
    public void MsecsToJiffies_RoundsUpAtHz250(long ms, long jiffies)
        => Assert.That(SimClock.MsecsToJiffies(ms), Is.EqualTo(jiffies));

    [Test]
    public void JiffyHelpers_AgreeWithHz()
    {
        Assert.That(SimClock.HZ, Is.EqualTo(250));
        Assert.That(SimClock.SecondsToJiffies(10), Is.EqualTo(2500));
        Assert.That(SimClock.JiffiesToMsecs(2500), Is.EqualTo(10_000));
        Assert.That(SimClock.UsecsToJiffies(4001), Is.EqualTo(2));
        Assert.That(SimClock.FormatNs(10_004_000_001), Is.EqualTo("10.004000001"));
    }

    [Test]
    public void ControlledTime_StandsStillWhileTasksRun_AndJumpsToTheEarliestDeadline()
    {
        var wakes = new List<(string Who, long Ns)>();
        SimKernel k = Runs.Kernel(SchedulerMode.Controlled);
        RunResult r = k.Run(() =>
        {
            var l = new KMutex(k, "log");
            void Sleep(string who, int ms)
            {
                KTask.Msleep(ms);
                l.Lock();
                wakes.Add((who, k.Clock.NowNs));
                l.Unlock();
            }

            KTask a = k.Spawn("a", () => Sleep("a", 300));
            KTask b = k.Spawn("b", () => Sleep("b", 100));
            KTask c = k.Spawn("c", () => Sleep("c", 200));
            for (int i = 0; i < 100; i++)
            {
                KTask.Schedule();
            }

            Invariant.Equal(0L, k.Clock.NowNs, "time while something can run");
            a.Join();
            b.Join();
            c.Join();
        });

        Runs.AssertPassed(r);
        Assert.That(wakes, Is.EqualTo(new[] { ("b", 100_000_000L), ("c", 200_000_000L), ("a", 300_000_000L) }));
    }

    [Test]
    public void ControlledTimers_FireInTimerTasks_AtTheirVirtualTimes()
    {
        var fired = new List<(string Task, long Ns)>();
        SimKernel k = Runs.Kernel(SchedulerMode.Controlled);
        RunResult r = k.Run(() =>
        {
            var done = new Completion(k, "done");
            int ticks = 0;
            ITimer periodic = null!;
            periodic = k.Clock.CreateTimer(_ =>
            {
                lock (fired)
                {
                    fired.Add((KTask.Current.Comm, k.Clock.NowNs));
                }

                if (++ticks == 3)
                {
                    periodic.Dispose();
                    done.Complete();
                }
            }, null, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(2));
            done.Wait();
        });

        Runs.AssertPassed(r);
        Assert.That(fired.Select(f => f.Ns), Is.EqualTo(new[] { 1_000_000_000L, 3_000_000_000L, 5_000_000_000L }));
        Assert.That(fired.Select(f => f.Task), Is.All.StartsWith("timer"));
    }

    [Test]
    public void RealMode_ScalesKernelTimeouts()
    {
        SimKernel k = Runs.Kernel(SchedulerMode.Real);
        long before = k.Clock.NowNs;
        RunResult r = k.Run(() => KTask.Msleep(10_000));
        Runs.AssertPassed(r);
        Assert.That(k.Clock.NowNs - before, Is.GreaterThanOrEqualTo(10_000_000_000L));
    }

    [Test]
    public void RealMode_TimersFire()
    {
        SimKernel k = Runs.Kernel(SchedulerMode.Real);
        RunResult r = k.Run(() =>
        {
            var fired = new Completion(k, "fired");
            using ITimer t = k.Clock.CreateTimer(_ => fired.Complete(), null, TimeSpan.FromSeconds(5), Timeout.InfiniteTimeSpan);
            fired.Wait();
        });

        Runs.AssertPassed(r);
    }

    [Test]
    public void Advance_WakesTimedSleepersWhoseDeadlinePassed()
    {
        long left = -1;
        SimKernel k = Runs.Kernel(SchedulerMode.Controlled);
        RunResult r = k.Run(() =>
        {
            var c = new Completion(k, "c");
            KTask waiter = k.Spawn("waiter", () => left = c.WaitTimeout(SimClock.SecondsToJiffies(3)));
            Runs.SpinUntil(() => waiter.State == TaskState.Blocked);
            k.Clock.Advance(TimeSpan.FromSeconds(5));
            waiter.Join();
        });

        Runs.AssertPassed(r);
        Assert.That(left, Is.Zero);
        Assert.That(k.Clock.NowNs, Is.EqualTo(5_000_000_000L));
    }

    [Test]
    public void IsATimeProvider_StartingAtTheFixedBootTime()
    {
        SimKernel k = Runs.Kernel(SchedulerMode.Controlled);
        TimeProvider tp = k.Clock;
        Assert.That(tp.GetUtcNow(), Is.EqualTo(SimClock.BootTime));
        k.Clock.Advance(TimeSpan.FromMinutes(2));
        Assert.That(tp.GetUtcNow(), Is.EqualTo(SimClock.BootTime.AddMinutes(2)));
        Assert.That(tp.GetElapsedTime(0), Is.EqualTo(TimeSpan.FromMinutes(2)));
    }
}
