// Small programs with planted concurrency bugs for the bounded search, the shrinker and the
// guided strategy, each a body for the main task of a fresh controlled kernel.

using Vfio.Kernel;

namespace Vfio.Tests.Kernel;

internal static class SearchPrograms
{
    /// <summary>Runs one schedule of <paramref name="program"/> on a fresh kernel with the strategy given.</summary>
    public static Func<StrategySpec, RunResult> Runner(Action<SimKernel> program, ulong seed = 1, bool lockdep = true)
        => spec => Run(program, spec, seed, lockdep);

    public static RunResult Run(Action<SimKernel> program, StrategySpec spec, ulong seed = 1, bool lockdep = true)
    {
        var k = new SimKernel(new KernelConfig
        {
            Mode = SchedulerMode.Controlled,
            Seed = seed,
            Strategy = spec,
            Lockdep = lockdep,
            StepBudget = 10_000,
        });
        return k.Run("main", () => program(k));
    }

    /// <summary>main spawns a and b and exits; a increments x, b increments y. Tasks: main=1, a=2, b=3.</summary>
    public static void TwoIncrements(SimKernel k)
    {
        var x = new RefCount(k, "x");
        var y = new RefCount(k, "y");
        k.Spawn("a", () => x.Inc());
        k.Spawn("b", () => y.Inc());
    }

    /// <summary>As <see cref="TwoIncrements"/>, but a and b both increment x.</summary>
    public static void SameObject(SimKernel k)
    {
        var x = new RefCount(k, "x");
        k.Spawn("a", () => x.Inc());
        k.Spawn("b", () => x.Inc());
    }

    /// <summary>
    /// A lost update: a and b each read the count and set it one higher; the count must end
    /// at 3. Needs one preemption (between a read and its set).
    /// </summary>
    public static void LostUpdate(SimKernel k)
    {
        var r = new RefCount(k, "users");
        KTask a = k.Spawn("a", () => r.Set(r.Read() + 1));
        KTask b = k.Spawn("b", () => r.Set(r.Read() + 1));
        a.Join();
        b.Join();
        Invariant.Check(r.Value == 3, $"users is {r.Value} after two increments from 1: an update was lost");
    }

    /// <summary>The lost update, plus a task that works on objects of its own only.</summary>
    public static void LostUpdateWithBystander(SimKernel k)
    {
        var r = new RefCount(k, "users");
        var z = new RefCount(k, "z");
        var w = new RefCount(k, "w");
        KTask c = k.Spawn("c", () =>
        {
            z.Inc();
            w.Inc();
            z.Inc();
        });
        KTask a = k.Spawn("a", () => r.Set(r.Read() + 1));
        KTask b = k.Spawn("b", () => r.Set(r.Read() + 1));
        a.Join();
        b.Join();
        c.Join();
        Invariant.Check(r.Value == 3, $"users is {r.Value} after two increments from 1: an update was lost");
    }

    /// <summary>a takes m1 then m2, b takes m2 then m1: an ABBA deadlock after one preemption (run without lockdep).</summary>
    public static void Abba(SimKernel k)
    {
        var m1 = new KMutex(k, "m1");
        var m2 = new KMutex(k, "m2");
        KTask a = k.Spawn("a", () =>
        {
            m1.Lock();
            m2.Lock();
            m2.Unlock();
            m1.Unlock();
        });
        KTask b = k.Spawn("b", () =>
        {
            m2.Lock();
            m1.Lock();
            m1.Unlock();
            m2.Unlock();
        });
        a.Join();
        b.Join();
    }

    /// <summary>
    /// a sets s to 1 then 2; b reads s twice and must not see 1 then 2 — which takes two
    /// preemptions: a between its sets, b between its reads.
    /// </summary>
    public static void TwoPreemptions(SimKernel k)
    {
        var s = new RefCount(k, "state", 0);
        KTask a = k.Spawn("a", () =>
        {
            s.Set(1);
            s.Set(2);
        });
        KTask b = k.Spawn("b", () =>
        {
            int first = s.Read();
            int second = s.Read();
            Invariant.Check(!(first == 1 && second == 2), "b saw both of a's updates between its two reads");
        });
        a.Join();
        b.Join();
    }

    /// <summary>Two tasks, each incrementing an object of its own twice.</summary>
    public static void Independent(SimKernel k)
    {
        var tasks = new List<KTask>();
        for (int i = 0; i < 2; i++)
        {
            var r = new RefCount(k, $"r{i}");
            tasks.Add(k.Spawn($"t{i}", () =>
            {
                r.Inc();
                r.Inc();
            }));
        }

        foreach (KTask t in tasks)
        {
            t.Join();
        }
    }
}
