// Helpers shared by the tests: kernels in either scheduler mode, runs, and assertions on
// run results that print the whole report and trace summary when they fail.

using NUnit.Framework;
using Vfio.Kernel;

namespace Vfio.Tests;

internal static class Runs
{
    public static SimKernel Kernel(
        SchedulerMode mode,
        ulong seed = 1,
        StrategySpec? strategy = null,
        bool lockdep = true,
        long budget = 200_000,
        bool trace = false)
        => new(new KernelConfig
        {
            Mode = mode,
            Seed = seed,
            Strategy = strategy ?? StrategySpec.Random,
            Lockdep = lockdep,
            StepBudget = budget,
            Trace = trace,
            RealWatchdog = TimeSpan.FromSeconds(30),
        });

    /// <summary>Runs <paramref name="body"/> as the main task of a fresh kernel.</summary>
    public static RunResult Run(SchedulerMode mode, Action<SimKernel> body, ulong seed = 1, bool lockdep = true, StrategySpec? strategy = null)
    {
        SimKernel k = Kernel(mode, seed, strategy, lockdep);
        return k.Run("main", () => body(k));
    }

    /// <summary>
    /// Sleeps a millisecond of virtual time at a time until <paramref name="done"/> holds (at
    /// most <paramref name="maxMs"/> times) — for work another task does (an inject work item,
    /// a replay task): under real threads one short sleep does not guarantee it has run.
    /// </summary>
    public static void SleepUntil(Func<bool> done, int maxMs = 1000)
    {
        for (int i = 0; i < maxMs && !done(); i++)
        {
            KTask.Msleep(1);
        }
    }

    public static void AssertPassed(RunResult r)
        => Assert.That(r.Outcome, Is.EqualTo(RunOutcome.Completed), r.Describe());

    public static void AssertOutcome(RunResult r, RunOutcome expected)
        => Assert.That(r.Outcome, Is.EqualTo(expected), r.Describe());

    /// <summary>Busy-waits (through scheduling points) until <paramref name="condition"/> holds.</summary>
    public static void SpinUntil(Func<bool> condition)
    {
        while (!condition())
        {
            KTask.Schedule();
        }
    }
}

internal static class Machines
{
    /// <summary>A machine of <paramref name="ramGiB"/> GiB on a fresh kernel of <paramref name="mode"/>.</summary>
    public static Vfio.Platform.SimMachine Create(
        SchedulerMode mode = SchedulerMode.Real,
        long ramGiB = 4,
        int huge2M = 0,
        int huge1G = 0,
        Vfio.Platform.Mm.AllocationPolicy policy = Vfio.Platform.Mm.AllocationPolicy.Scattered,
        ulong seed = 1)
        => new(Runs.Kernel(mode, seed), new Vfio.Platform.MachineConfig
        {
            Memory = new Vfio.Platform.Mm.MemoryConfig { RamBytes = ramGiB << 30, HugePages2M = huge2M, HugePages1G = huge1G, Policy = policy },
        });
}
