using NUnit.Framework;
using Vfio.Kernel;

namespace Vfio.Tests.Kernel;

public sealed class ControlledSchedulerTests
{
    /// <summary>A scenario that exercises every source of nondeterminism a seed controls.</summary>
    internal static void Busy(SimKernel k)
    {
        var m = new KMutex(k, "dev_set[0].lock");
        var sem = new RwSemaphore(k, "memory_lock");
        var refs = new RefCount(k, "device.refcount", 1);
        var ready = new Completion(k, "ready");
        var wq = new WaitQueue(k, "users_q");
        k.Faults.SetProbability("kzalloc:*", 0.25);
        int failures = 0;
        var tasks = new List<KTask>();
        for (int i = 0; i < 4; i++)
        {
            int id = i;
            tasks.Add(k.Spawn($"user{id}", () =>
            {
                refs.Inc();
                ready.Wait();
                for (int j = 0; j < 5; j++)
                {
                    if (k.Random.Next(2) == 0)
                    {
                        sem.DownRead();
                        KTask.Schedule();
                        sem.UpRead();
                    }
                    else
                    {
                        m.Lock();
                        if (k.Faults.ShouldFail("kzalloc:vfio_dma"))
                        {
                            failures++;
                        }

                        m.Unlock();
                    }

                    if (id == 3 && j == 2)
                    {
                        KTask.Msleep(5);
                    }
                }

                if (refs.DecAndTest())
                {
                    Invariant.Check(false, "the registration reference is still held");
                }

                wq.WakeUp();
            }));
        }

        ready.CompleteAll();
        wq.WaitEvent(() => refs.Value == 1);
        tasks.ForEach(t => t.Join());
        Invariant.Check(refs.DecAndTest(), "the last put drops the registration reference");
    }

    [TestCase("random")]
    [TestCase("pct(d=3,k=200)")]
    [TestCase("round-robin(q=1)")]
    [TestCase("round-robin(q=3)")]
    public void TheSameSeed_GivesTheSameTrace_ByteForByte_Across20Runs(string strategy)
    {
        string? first = null;
        for (int run = 0; run < 20; run++)
        {
            SimKernel k = Runs.Kernel(SchedulerMode.Controlled, seed: 42, strategy: StrategySpec.Parse(strategy), trace: true);
            RunResult r = k.Run("main", () => Busy(k));
            Runs.AssertPassed(r);
            string json = r.Trace.ToJson();
            if (first is null)
            {
                first = json;
                Assert.That(r.Trace.StepCount, Is.GreaterThan(50));
            }
            else
            {
                Assert.That(json, Is.EqualTo(first), $"run {run} differs from run 0");
            }
        }
    }

    [Test]
    public void DifferentSeeds_GiveDifferentSchedules()
    {
        var schedules = new HashSet<string>();
        for (ulong seed = 1; seed <= 10; seed++)
        {
            SimKernel k = Runs.Kernel(SchedulerMode.Controlled, seed: seed);
            RunResult r = k.Run("main", () => Busy(k));
            Runs.AssertPassed(r);
            schedules.Add(string.Join(",", r.Trace.Schedule.Select(s => s.NextTaskId)));
        }

        Assert.That(schedules, Has.Count.GreaterThan(5));
    }

    [Test]
    public void ADeadlock_IsReportedWithTheWaitForGraph()
    {
        // Each task takes its first lock and waits until the other has too, so every seed deadlocks.
        SimKernel k = Runs.Kernel(SchedulerMode.Controlled, seed: 5, lockdep: false);
        RunResult r = k.Run(() =>
        {
            var a = new KMutex(k, "vfio_group[0].group_lock");
            var b = new KMutex(k, "kvm[0].lock");
            var aHeld = new Completion(k, "a_held");
            var bHeld = new Completion(k, "b_held");
            KTask t1 = k.Spawn("open", () => { a.Lock(); aHeld.Complete(); bHeld.Wait(); b.Lock(); });
            KTask t2 = k.Spawn("kvm_release", () => { b.Lock(); bHeld.Complete(); aHeld.Wait(); a.Lock(); });
            t1.Join();
            t2.Join();
        });

        Runs.AssertOutcome(r, RunOutcome.Deadlock);
        WaitForGraph g = r.Graph!;
        Assert.That(g.For("open")!.ObjectName, Is.EqualTo("kvm[0].lock"));
        Assert.That(g.For("open")!.Holders, Is.EqualTo(new[] { "kvm_release/3" }));
        Assert.That(g.For("kvm_release")!.ObjectName, Is.EqualTo("vfio_group[0].group_lock"));
        Assert.That(g.For("kvm_release")!.Holders, Is.EqualTo(new[] { "open/2" }));
        Assert.That(g.For("main")!.Operation, Is.EqualTo("kthread_join"));
        Assert.That(g.Cycle, Is.EqualTo(new[] { "open/2", "mutex kvm[0].lock", "kvm_release/3", "mutex vfio_group[0].group_lock", "open/2" }));
        Assert.That(r.Report, Does.StartWith("DEADLOCK: no task can run and no timer is pending"));
        Assert.That(r.Report, Does.Contain("open/2 --mutex_lock--> mutex kvm[0].lock --held by--> kvm_release/3"));
    }

    [Test]
    public void AStarvedWait_IsALivenessFailure_NamingTheWaiterAndTheSpinner()
    {
        SimKernel k = new(new KernelConfig { Mode = SchedulerMode.Controlled, Seed = 1, StepBudget = 5_000 });
        RunResult r = k.Run(() =>
        {
            var comp = new Completion(k, "vfio_device[0].comp");
            bool stop = false;
            k.Spawn("unbind", comp.Wait);
            k.Spawn("poller", () =>
            {
                while (!Volatile.Read(ref stop))
                {
                    KTask.Schedule(); // Spins forever, never completes comp.
                }
            });
        });

        Runs.AssertOutcome(r, RunOutcome.Liveness);
        Assert.That(r.Report, Does.StartWith("LIVENESS: step budget of 5000 scheduling steps exhausted"));
        WaitEdge unbind = r.Graph!.For("unbind")!;
        Assert.That(unbind.State, Is.EqualTo(TaskState.Blocked));
        Assert.That(unbind.ObjectName, Is.EqualTo("vfio_device[0].comp"));
        Assert.That(unbind.Hint, Is.EqualTo("complete()"));
        WaitEdge poller = r.Graph.For("poller")!;
        Assert.That(poller.State, Is.EqualTo(TaskState.Runnable));
        Assert.That(poller.Operation, Is.EqualTo("cond_resched"));
    }

    [Test]
    public void TimedWaitsAreNotDeadlocks_TimeJumpsInstead()
    {
        long left = -1;
        SimKernel k = Runs.Kernel(SchedulerMode.Controlled);
        RunResult r = k.Run(() =>
        {
            var comp = new Completion(k, "comp");
            // The unbind loop: wait in 10 s slices, asking again each time.
            for (int i = 0; i < 3; i++)
            {
                left = comp.WaitTimeout(SimClock.SecondsToJiffies(10));
            }
        });

        Runs.AssertPassed(r);
        Assert.That(left, Is.Zero);
        Assert.That(k.Clock.NowNs, Is.EqualTo(30_000_000_000L));
        Assert.That(r.Trace.Schedule.Count(s => s.Kind == TraceRecordKind.Clock), Is.EqualTo(3));
    }

    [Test]
    public void Replay_ReproducesTheRun_ByteForByte()
    {
        SimKernel k = Runs.Kernel(SchedulerMode.Controlled, seed: 1234, strategy: StrategySpec.Pct(3, 300), trace: true);
        RunResult original = k.Run("main", () => Busy(k));
        Runs.AssertPassed(original);

        RunTrace parsed = RunTrace.Parse(original.Trace.ToJson());
        RunResult replayed = Explorer.Replay(parsed, Busy, c => c with { Trace = true });

        Runs.AssertPassed(replayed);
        Assert.That(replayed.Trace.ToJson(), Is.EqualTo(original.Trace.ToJson()));
    }

    [Test]
    public void Replay_FailsLoudlyWhenTheCodeNoLongerFollowsTheTrace()
    {
        SimKernel k = Runs.Kernel(SchedulerMode.Controlled, seed: 9);
        RunResult original = k.Run("main", () => Busy(k));
        Runs.AssertPassed(original);

        RunResult diverged = Explorer.Replay(original.Trace, kk =>
        {
            new KMutex(kk, "an_extra_lock").Lock(); // One more scheduling point than the trace has.
            Busy(kk);
        });

        Runs.AssertOutcome(diverged, RunOutcome.ReplayDivergence);
        Assert.That(diverged.Report, Does.StartWith("REPLAY DIVERGED at step 1:"));
        Assert.That(diverged.Report, Does.Contain("the code has main/1 at mutex_lock(an_extra_lock)"));
    }

    [Test]
    public void Replay_NoticesAFaultDecisionThatChanged()
    {
        SimKernel k = Runs.Kernel(SchedulerMode.Controlled, seed: 3);
        RunResult original = k.Run("main", () =>
        {
            k.Faults.FailNth(1);
            k.Faults.ShouldFail("kzalloc:a");
        });
        Runs.AssertPassed(original);

        RunResult diverged = Explorer.Replay(original.Trace, kk =>
        {
            kk.Faults.FailNth(1);
            kk.Faults.ShouldFail("kzalloc:b");
        });

        Runs.AssertOutcome(diverged, RunOutcome.ReplayDivergence);
        Assert.That(diverged.Report, Does.Contain("fault site 'kzalloc:a'").And.Contain("'kzalloc:b'"));
    }

    [Test]
    public void RoundRobin_AlternatesTasksAtEveryPoint()
    {
        var order = new List<string>();
        SimKernel k = Runs.Kernel(SchedulerMode.Controlled, strategy: StrategySpec.RoundRobin());
        RunResult r = k.Run(() =>
        {
            var go = new Completion(k, "go");
            KTask a = k.Spawn("a", () => { go.Wait(); for (int i = 0; i < 3; i++) { order.Add("a"); KTask.Schedule(); } });
            KTask b = k.Spawn("b", () => { go.Wait(); for (int i = 0; i < 3; i++) { order.Add("b"); KTask.Schedule(); } });
            go.CompleteAll();
            a.Join();
            b.Join();
        });

        Runs.AssertPassed(r);
        Assert.That(string.Concat(order), Is.EqualTo("ababab"));
    }

    [Test]
    public void StrategySpecs_ParseAndPrint()
    {
        Assert.That(StrategySpec.Parse("pct").ToString(), Is.EqualTo("pct(d=3,k=1000)"));
        Assert.That(StrategySpec.Parse("pct:2:50").ToString(), Is.EqualTo("pct(d=2,k=50)"));
        Assert.That(StrategySpec.Parse("PCT(d=4,k=10)").ToString(), Is.EqualTo("pct(d=4,k=10)"));
        Assert.That(StrategySpec.Parse("rr:2").ToString(), Is.EqualTo("round-robin(q=2)"));
        Assert.That(StrategySpec.Parse("random"), Is.SameAs(StrategySpec.Random));
        Assert.That(() => StrategySpec.Parse("fifo"), Throws.TypeOf<FormatException>().With.Message.Contains("unknown strategy 'fifo'"));
    }
}
