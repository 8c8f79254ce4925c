// Scheduling steps per second of the controlled scheduler (target: at least 20,000 on
// two cores). A step that picks another task is a real thread hand-off; the strategies
// differ in how often they switch.
//
// YieldLoop: two tasks each reach 5,000 scheduling points without blocking, so a run is
// 10,000 steps (±0.1%) under every strategy, and the reported time per operation is the
// time per step: steps/s = 1e9 / (ns per op).
// ContendedMutex: two tasks take and release one mutex 2,500 times each. Blocking adds
// steps that depend on the strategy; Setup prints the count so RESULTS.md can convert
// the time per run into steps per second.

using BenchmarkDotNet.Attributes;
using Vfio.Kernel;

namespace Vfio.Benchmarks.Kernel;

[MemoryDiagnoser]
public class ControlledSchedulerBenchmarks
{
    private const int YieldsPerTask = 5_000;
    private const int StepsPerYieldRun = 2 * YieldsPerTask;
    private const int MutexRounds = 2_500;

    [Params("random", "pct(d=3,k=10000)", "round-robin(q=1)")]
    public string Strategy { get; set; } = "random";

    [GlobalSetup]
    public void Setup()
    {
        long steps = Run(1, YieldLoop);
        if (Math.Abs(steps - StepsPerYieldRun) > StepsPerYieldRun / 1000)
        {
            throw new InvalidOperationException($"the yield scenario took {steps} steps, expected {StepsPerYieldRun}");
        }

        Console.WriteLine($"// steps per run: yield loop {steps}, contended mutex {Run(7, ContendedMutexBody)} ({Strategy})");
    }

    [Benchmark(OperationsPerInvoke = StepsPerYieldRun, Description = "per step: two tasks yielding")]
    public long Yield() => Run(7, YieldLoop);

    [Benchmark(Description = "per run: two tasks contending one mutex 2x2500 times")]
    public long ContendedMutex() => Run(7, ContendedMutexBody);

    private static void YieldLoop(KMutex m)
    {
        for (int i = 0; i < YieldsPerTask; i++)
        {
            KTask.Schedule();
        }
    }

    private static void ContendedMutexBody(KMutex m)
    {
        for (int i = 0; i < MutexRounds; i++)
        {
            m.Lock();
            m.Unlock();
        }
    }

    private long Run(ulong seed, Action<KMutex> body)
    {
        var k = new SimKernel(new KernelConfig
        {
            Mode = SchedulerMode.Controlled,
            Seed = seed,
            Strategy = StrategySpec.Parse(Strategy),
            Lockdep = true,
        });
        RunResult r = k.Run(() =>
        {
            var m = new KMutex(k, "bench.lock");
            KTask a = k.Spawn("a", () => body(m));
            KTask b = k.Spawn("b", () => body(m));
            a.Join();
            b.Join();
        });
        if (!r.Passed)
        {
            throw new InvalidOperationException(r.Describe());
        }

        return r.Steps;
    }
}
