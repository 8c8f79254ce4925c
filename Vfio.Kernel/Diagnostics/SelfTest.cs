// In the spirit of lib/locking-selftest.c: checks, runnable at start-up, that the runtime
// behaves — determinism, lockdep, deadlock reports, PCT on a planted race with replay,
// virtual time, real-mode atomicity, fail-nth. `vfio-sim demo` prints them; the tests
// run them too. The planted race lives here so the demo and the race suite share it.

using System.Diagnostics;
using System.Globalization;

namespace Vfio.Kernel;

/// <summary>The result of one self-test.</summary>
/// <param name="Name">What was checked.</param>
/// <param name="Passed">Whether the runtime behaved.</param>
/// <param name="Detail">What was observed.</param>
public sealed record SelfTestResult(string Name, bool Passed, string Detail);

/// <summary>Start-up checks of the kernel runtime.</summary>
public static class SelfTest
{
    /// <summary>The seed budget PCT gets to find the planted race.</summary>
    public static readonly ExploreOptions PlantedRaceBudget = new()
    {
        Strategy = StrategySpec.Pct(depth: 2, maxSteps: 40),
        FirstSeed = 1,
        SeedCount = 200,
        StepBudget = 10_000,
    };

    /// <summary>
    /// A check-then-act bug on a refcount, modelled on the vfio_device registration count:
    /// two users and unregister each put a reference, and the last put completes the
    /// completion unregister sleeps on. The buggy put reads the count, decides whether it
    /// is the last, and only then decrements: two puts that read the same value both decide
    /// "not last", nobody completes, and unregister sleeps forever (a lost wake-up). The
    /// fixed put is refcount_dec_and_test().
    /// </summary>
    public static void PlantedRefcountRace(SimKernel k, bool buggy)
    {
        ArgumentNullException.ThrowIfNull(k);
        if (buggy)
        {
            // The check-then-act put can take the count to 0 behind refcount_t's back; its WARNs
            // are symptoms. The bug being looked for is the lost wake-up (a deadlock).
            k.ExpectWarning("refcount_t", count: 10);
        }

        const int users = 2;
        var refs = new RefCount(k, "vfio_device[0].refcount", 1 + users);
        var comp = new Completion(k, "vfio_device[0].comp");
        var devLock = new KMutex(k, "vfio_device[0].dev_set.lock");

        void Put()
        {
            if (!buggy)
            {
                if (refs.DecAndTest())
                {
                    comp.Complete();
                }

                return;
            }

            if (refs.Read() == 1)
            {
                refs.Set(0);
                comp.Complete();
            }
            else
            {
                refs.Dec();
            }
        }

        var tasks = new List<KTask>();
        for (int i = 0; i < users; i++)
        {
            tasks.Add(k.Spawn($"user{i}", () =>
            {
                devLock.Lock();
                devLock.Unlock();
                Put();
            }));
        }

        tasks.Add(k.Spawn("unregister", () =>
        {
            Put();
            comp.Wait();
        }));
        foreach (KTask t in tasks)
        {
            t.Join();
        }
    }

    /// <summary>Runs every self-test on fresh kernels of <paramref name="profile"/>.</summary>
    public static IReadOnlyList<SelfTestResult> RunAll(KernelProfile profile)
    {
        ArgumentNullException.ThrowIfNull(profile);
        return
        [
            Check("controlled scheduling is deterministic", () => Determinism(profile)),
            Check("lockdep reports an AB-BA order that did not deadlock", () => LockdepAbBa(profile)),
            Check("a deadlock is reported with its wait-for graph", () => DeadlockGraph(profile)),
            Check("PCT finds a planted lost wake-up, and its trace replays", () => PctPlantedRace(profile)),
            Check("a 10 s kernel timeout costs no wall time", () => VirtualTime(profile)),
            Check("real threads keep refcount_t exact", () => RealRefcount(profile)),
            Check("fail-nth fails exactly the n-th site", FailNth),
        ];
    }

    /// <summary>Runs one check, turning an exception into a failed result that names it.</summary>
    public static SelfTestResult Check(string name, Func<(bool Passed, string Detail)> body)
    {
        ArgumentNullException.ThrowIfNull(body);
        try
        {
            (bool passed, string detail) = body();
            return new SelfTestResult(name, passed, detail);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            return new SelfTestResult(name, false, $"{e.GetType().Name}: {e.Message}");
        }
    }

    private static (bool, string) Determinism(KernelProfile profile)
    {
        string? first = null;
        long steps = 0;
        for (int i = 0; i < 3; i++)
        {
            var k = new SimKernel(new KernelConfig { Mode = SchedulerMode.Controlled, Seed = 42, Profile = profile, Trace = true });
            RunResult r = k.Run(() => PlantedRefcountRace(k, buggy: false));
            if (!r.Passed)
            {
                return (false, r.Describe());
            }

            string json = r.Trace.ToJson();
            steps = r.Steps;
            if (first is not null && json != first)
            {
                return (false, "two runs with seed 42 produced different traces");
            }

            first = json;
        }

        return (true, $"3 runs with seed 42: {steps} steps, identical traces");
    }

    private static (bool, string) LockdepAbBa(KernelProfile profile)
    {
        var k = new SimKernel(new KernelConfig { Mode = SchedulerMode.Controlled, Profile = profile });
        k.ExpectWarning("possible circular locking dependency");
        RunResult r = k.Run(() =>
        {
            var a = new KMutex(k, "vfio_group[0].group_lock");
            var b = new KMutex(k, "kvm[0].lock");
            k.Spawn("open", () => { a.Lock(); b.Lock(); b.Unlock(); a.Unlock(); }).Join();
            k.Spawn("release", () => { b.Lock(); a.Lock(); a.Unlock(); b.Unlock(); }).Join();
        });
        bool ok = r.Outcome == RunOutcome.Completed
            && r.Warnings.Count == 1
            && r.Warnings[0].Expected
            && r.Warnings[0].Title == "WARNING: possible circular locking dependency detected";
        return (ok, ok ? $"splat by {r.Warnings[0].Task}: vfio_group.group_lock <-> kvm.lock" : r.Describe());
    }

    private static (bool, string) DeadlockGraph(KernelProfile profile)
    {
        var k = new SimKernel(new KernelConfig { Mode = SchedulerMode.Controlled, Profile = profile, Lockdep = false });
        RunResult r = k.Run(() =>
        {
            var a = new KMutex(k, "a");
            var b = new KMutex(k, "b");
            var aHeld = new Completion(k, "a_held");
            var bHeld = new Completion(k, "b_held");
            KTask t1 = k.Spawn("t1", () => { a.Lock(); aHeld.Complete(); bHeld.Wait(); b.Lock(); });
            KTask t2 = k.Spawn("t2", () => { b.Lock(); bHeld.Complete(); aHeld.Wait(); a.Lock(); });
            t1.Join();
            t2.Join();
        });
        bool ok = r.Outcome == RunOutcome.Deadlock && r.Graph is { Cycle.Count: 5 };
        return (ok, ok ? "cycle: " + string.Join(" -> ", r.Graph!.Cycle) : r.Describe());
    }

    private static (bool, string) PctPlantedRace(KernelProfile profile)
    {
        ExploreOptions budget = PlantedRaceBudget with { Configure = c => c with { Profile = profile } };
        ExplorationResult buggy = Explorer.Explore(budget, k => PlantedRefcountRace(k, buggy: true));
        if (buggy.FirstFailure is not { Outcome: RunOutcome.Deadlock } failure)
        {
            return (false, $"PCT did not find the planted bug in {budget.SeedCount} seeds");
        }

        RunResult replay = Explorer.Replay(failure.Trace, k => PlantedRefcountRace(k, buggy: true), c => c with { Profile = profile });
        if (replay.Report != failure.Report)
        {
            return (false, "the replay did not reproduce the failure");
        }

        ExplorationResult fixedRuns = Explorer.Explore(budget with { StopAtFirstFailure = false }, k => PlantedRefcountRace(k, buggy: false));
        return fixedRuns.Passed
            ? (true, string.Create(CultureInfo.InvariantCulture, $"found at seed {failure.Seed} (step {failure.Steps}); replay identical; fixed put passes all {fixedRuns.Runs} seeds"))
            : (false, "the fixed put failed: " + fixedRuns.Describe());
    }

    private static (bool, string) VirtualTime(KernelProfile profile)
    {
        var k = new SimKernel(new KernelConfig { Mode = SchedulerMode.Controlled, Profile = profile });
        long wallStart = Stopwatch.GetTimestamp();
        long left = -1;
        RunResult r = k.Run(() => left = new Completion(k, "comp").WaitTimeout(SimClock.SecondsToJiffies(10)));
        TimeSpan wall = Stopwatch.GetElapsedTime(wallStart);
        bool ok = r.Passed && left == 0 && k.Clock.NowNs == 10_000_000_000L;
        return (ok, string.Create(CultureInfo.InvariantCulture, $"wait_for_completion_timeout(10*HZ) = 0 at t={SimClock.FormatNs(k.Clock.NowNs)} virtual, {wall.TotalMilliseconds:0.0} ms wall"));
    }

    private static (bool, string) RealRefcount(KernelProfile profile)
    {
        var k = new SimKernel(new KernelConfig { Mode = SchedulerMode.Real, Profile = profile });
        const int threads = 4, rounds = 20_000;
        int after = -1;
        RunResult r = k.Run(() =>
        {
            var rc = new RefCount(k, "obj.refcount", 1);
            var tasks = new List<KTask>();
            for (int i = 0; i < threads; i++)
            {
                tasks.Add(k.Spawn($"user{i}", () =>
                {
                    for (int j = 0; j < rounds; j++)
                    {
                        rc.Inc();
                        rc.Dec();
                    }
                }));
            }

            tasks.ForEach(t => t.Join());
            after = rc.Read();
        });
        bool ok = r.Passed && after == 1;
        return (ok, string.Create(CultureInfo.InvariantCulture, $"{threads} threads x {rounds} get/put pairs: count back to {after}"));
    }

    private static (bool, string) FailNth()
    {
        var failedAt = new List<long>();
        for (long n = 1; n < 10; n++)
        {
            var k = new SimKernel();
            k.Faults.FailNth(n);
            int reached = 0;
            foreach (string site in new[] { "kzalloc:vfio_group", "kzalloc:vfio_container", "iommu_map" })
            {
                if (k.Faults.ShouldFail(site))
                {
                    break;
                }

                reached++;
            }

            if (!k.Faults.Consumed)
            {
                bool ok = reached == 3 && failedAt.SequenceEqual([1L, 2L, 3L]);
                return (ok, $"sweep failed sites {string.Join(", ", failedAt)}; n={n} ran clean");
            }

            if (reached != n - 1)
            {
                return (false, $"fail-nth={n} failed after {reached} sites");
            }

            failedAt.Add(n);
        }

        return (false, "the sweep never ran clean");
    }
}
