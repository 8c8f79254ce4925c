// Uncontended lock + unlock in real mode, against the .NET primitives it must stay close
// to (target: KMutex within 2x of a plain `lock`). KMutex runs with lockdep off (the
// mutex itself) and on (what a default kernel pays: the held-lock stack and, when another
// lock is held, the dependency check).

using BenchmarkDotNet.Attributes;
using Vfio.Kernel;

namespace Vfio.Benchmarks.Kernel;

[MemoryDiagnoser]
public class KMutexBenchmarks
{
    private readonly object _monitor = new();
    private readonly Lock _lock = new();
    private KMutex _plain = null!;
    private KMutex _lockdep = null!;
    private KMutex _outer = null!;
    private KMutex _inner = null!;
    private int _counter;

    [GlobalSetup]
    public void Setup()
    {
        var noLockdep = new SimKernel(new KernelConfig { Lockdep = false });
        var withLockdep = new SimKernel(new KernelConfig { Lockdep = true });
        _plain = new KMutex(noLockdep, "bench.plain");
        _lockdep = new KMutex(withLockdep, "bench.lockdep");
        _outer = new KMutex(withLockdep, "bench.outer");
        _inner = new KMutex(withLockdep, "bench.inner");

        // Adopt the benchmark thread and record the outer -> inner dependency once.
        _plain.Lock();
        _plain.Unlock();
        _outer.Lock();
        _inner.Lock();
        _inner.Unlock();
        _outer.Unlock();
    }

    [Benchmark(Baseline = true, Description = "lock (object)")]
    public void MonitorLock()
    {
        lock (_monitor)
        {
            _counter++;
        }
    }

    [Benchmark(Description = "System.Threading.Lock")]
    public void ThreadingLock()
    {
        lock (_lock)
        {
            _counter++;
        }
    }

    [Benchmark(Description = "KMutex, lockdep off")]
    public void KMutexNoLockdep()
    {
        _plain.Lock();
        _counter++;
        _plain.Unlock();
    }

    [Benchmark(Description = "KMutex, lockdep on")]
    public void KMutexLockdep()
    {
        _lockdep.Lock();
        _counter++;
        _lockdep.Unlock();
    }

    [Benchmark(Description = "KMutex nested under another, lockdep on")]
    public void KMutexNestedLockdep()
    {
        _outer.Lock();
        _inner.Lock();
        _counter++;
        _inner.Unlock();
        _outer.Unlock();
    }
}
