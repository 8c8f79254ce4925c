// The controlled scheduler runs tasks on pooled worker threads (TaskWorker): a worker runs
// one task after another, across runs and kernels. These tests pin what reuse must not
// change: KTask.Current on a reused thread, an aborted run followed by a good one, traces
// of many kernels in sequence, and two kernels running at once on different threads.

using System.Collections.Concurrent;
using NUnit.Framework;
using Vfio.Kernel;

namespace Vfio.Tests.Kernel;

public sealed class TaskWorkerTests
{
    private const int RunCount = 20;

    [Test]
    public void TasksOfConsecutiveRuns_RunOnReusedThreads_EachSeeingItselfAsCurrent()
    {
        var threadsSeen = new HashSet<int>();
        var wrongCurrent = new ConcurrentQueue<string>();
        int taskRuns = 0;
        for (int run = 0; run < RunCount; run++)
        {
            SimKernel k = Runs.Kernel(SchedulerMode.Controlled, seed: (ulong)run + 1);
            var threads = new ConcurrentBag<int>();
            RunResult r = k.Run(() =>
            {
                KTask main = KTask.Current;
                var children = new List<KTask>();
                for (int i = 0; i < 3; i++)
                {
                    string comm = $"child{i}";
                    children.Add(k.Spawn(comm, () =>
                    {
                        threads.Add(Environment.CurrentManagedThreadId);
                        KTask.Schedule();
                        if (KTask.Current.Comm != comm || !ReferenceEquals(KTask.Current.Kernel, k))
                        {
                            wrongCurrent.Enqueue($"{comm} saw {KTask.Current.DisplayName}");
                        }
                    }));
                }

                foreach (KTask c in children)
                {
                    c.Join();
                }

                if (!ReferenceEquals(KTask.Current, main))
                {
                    wrongCurrent.Enqueue($"main saw {KTask.Current.DisplayName}");
                }
            });
            Runs.AssertPassed(r);
            taskRuns += threads.Count;
            threadsSeen.UnionWith(threads);
        }

        Assert.That(wrongCurrent, Is.Empty, "KTask.Current on a task's thread is that task");
        Assert.That(taskRuns, Is.EqualTo(3 * RunCount));
        Assert.That(threadsSeen, Has.Count.LessThan(taskRuns / 2), "tasks of later runs reuse the threads of earlier ones");
    }

    [Test]
    public void AThreadThatCarriedATask_IsNoKernelTaskAfterwards()
    {
        SimKernel k = Runs.Kernel(SchedulerMode.Controlled);
        KTask? child = null;
        Runs.AssertPassed(k.Run(() => (child = k.Spawn("child", KTask.Schedule)).Join()));

        // The next kernel's task may land on the same worker: it must see only itself, and
        // the previous kernel's task must be gone from the thread.
        SimKernel next = Runs.Kernel(SchedulerMode.Controlled);
        KTask? seen = null;
        Runs.AssertPassed(next.Run(() => next.Spawn("probe", () => seen = KTask.Current).Join()));
        Assert.That(child!.HasExited, Is.True);
        Assert.That(seen!.Kernel, Is.SameAs(next));
        Assert.That(seen.Comm, Is.EqualTo("probe"));
    }

    [Test]
    public void AnAbortedRun_LeavesItsThreadsFitForTheNextRun_WhichMatchesAFreshOne()
    {
        string reference = TraceOf(42);

        for (int i = 0; i < 5; i++)
        {
            // A run that fails in one task while others are blocked on a mutex and a
            // completion that nobody will ever complete: the teardown unwinds them all.
            SimKernel bad = Runs.Kernel(SchedulerMode.Controlled, seed: (ulong)i + 1);
            var waiters = new List<KTask>();
            RunResult failed = bad.Run(() =>
            {
                var m = new KMutex(bad, "stuck.lock");
                var never = new Completion(bad, "never");
                m.Lock();
                waiters.Add(bad.Spawn("on-mutex", () =>
                {
                    m.Lock();
                    m.Unlock();
                }));
                waiters.Add(bad.Spawn("on-completion", never.Wait));
                KTask thrower = bad.Spawn("thrower", () => throw new InvalidOperationException("boom"));
                thrower.Join();
                m.Unlock();
            });
            Runs.AssertOutcome(failed, RunOutcome.Failed);
            Assert.That(failed.Report, Does.Contain("boom"));
            Assert.That(waiters, Has.All.Matches<KTask>(t => t is { HasExited: true }), "every task of the aborted run unwound");

            Assert.That(TraceOf(42), Is.EqualTo(reference), $"the run after abort {i} differs from a fresh one");
        }
    }

    [Test]
    public void ManyKernelsInSequence_GiveTheSameTraceForTheSameSeed_UnderEachStrategy(
        [Values("random", "pct(d=3,k=200)", "round-robin(q=1)")] string strategy)
    {
        string first = TraceOf(7, strategy);
        for (int i = 0; i < 30; i++)
        {
            Assert.That(TraceOf(7, strategy), Is.EqualTo(first), $"kernel {i} differs");
        }
    }

    [Test]
    public void TwoKernelsRunningAtOnce_OnDifferentThreads_EachGiveTheirSequentialTrace()
    {
        string a = TraceOf(11);
        string b = TraceOf(12);
        var failures = new ConcurrentQueue<string>();
        var threads = new Thread[2];
        for (int j = 0; j < threads.Length; j++)
        {
            ulong seed = (ulong)j + 11;
            string expected = j == 0 ? a : b;
            threads[j] = new Thread(() =>
            {
                for (int i = 0; i < 15; i++)
                {
                    if (TraceOf(seed) != expected)
                    {
                        failures.Enqueue($"seed {seed}, round {i}");
                    }
                }
            });
            threads[j].Start();
        }

        foreach (Thread t in threads)
        {
            Assert.That(t.Join(TimeSpan.FromMinutes(2)), Is.True, "the parallel explorations finish");
        }

        Assert.That(failures, Is.Empty, "a kernel's trace does not depend on another kernel running at the same time");
    }

    private static string TraceOf(ulong seed, string strategy = "random")
    {
        SimKernel k = Runs.Kernel(SchedulerMode.Controlled, seed: seed, strategy: StrategySpec.Parse(strategy), trace: true);
        RunResult r = k.Run(() => ControlledSchedulerTests.Busy(k));
        Runs.AssertPassed(r);
        return r.Trace.ToJson();
    }
}
