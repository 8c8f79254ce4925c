// Models mm/kasan (v6.12) as far as a use-after-free report goes: a freed kernel object is
// poisoned, and a later access through a stale pointer is reported with what was freed, by
// which task, at which virtual time, and who touched it. The simulator keeps the object
// (the CLR would anyway); poisoning is a mark the code checks at the points where the kernel
// would dereference it.

namespace Vfio.Kernel;

/// <summary>
/// KASAN for simulated kernel objects: <see cref="Free"/> poisons an object, and
/// <see cref="Check"/> at a dereference reports a use-after-free as a kernel BUG
/// (<c>BUG: KASAN: use-after-free in …</c>) naming the object, the freeing task and time, and
/// the accessing task and time.
/// </summary>
public sealed class Kasan
{
    private readonly SimKernel _kernel;

    // Protects _freed (objects are freed and checked from any task in real-threads mode).
    private readonly System.Threading.Lock _lock = new();
    private readonly Dictionary<object, FreeRecord> _freed = new(ReferenceEqualityComparer.Instance);

    internal Kasan(SimKernel kernel)
    {
        _kernel = kernel;
    }

    /// <summary>How many objects have been poisoned.</summary>
    public int FreedCount
    {
        get
        {
            lock (_lock)
            {
                return _freed.Count;
            }
        }
    }

    /// <summary>kfree(): poisons <paramref name="obj"/>, described as <paramref name="what"/> (<c>vfio_device vfio0</c>).</summary>
    public void Free(object obj, string what)
    {
        ArgumentNullException.ThrowIfNull(obj);
        ArgumentException.ThrowIfNullOrEmpty(what);
        KTask? t = KTask.CurrentOrNull;
        var record = new FreeRecord(what, t?.DisplayName ?? "kernel", _kernel.Clock.NowNs);
        lock (_lock)
        {
            _freed[obj] = record;
        }

        _kernel.Trace.Event(t, "kfree", what, null);
    }

    /// <summary>True when <paramref name="obj"/> was freed.</summary>
    public bool IsFreed(object obj)
    {
        ArgumentNullException.ThrowIfNull(obj);
        lock (_lock)
        {
            return _freed.ContainsKey(obj);
        }
    }

    /// <summary>
    /// A dereference of <paramref name="obj"/> in <paramref name="function"/>: when the object
    /// was freed, a kernel BUG naming it, who freed it and when, and who touched it now.
    /// </summary>
    public void Check(object obj, string function)
    {
        ArgumentNullException.ThrowIfNull(obj);
        FreeRecord r;
        lock (_lock)
        {
            if (_freed.Count == 0 || !_freed.TryGetValue(obj, out r!))
            {
                return;
            }
        }

        KTask? t = KTask.CurrentOrNull;
        Bug.On(
            true,
            $"BUG: KASAN: use-after-free in {function}: {r.What} was freed by task {r.Task} at t={SimClock.FormatNs(r.TimeNs)}; " +
            $"accessed by task {t?.DisplayName ?? "kernel"} at t={SimClock.FormatNs(_kernel.Clock.NowNs)}");
    }

    private sealed record FreeRecord(string What, string Task, long TimeNs);
}
