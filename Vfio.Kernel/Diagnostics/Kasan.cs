// Models mm/kasan (v6.12) as far as a use-after-free report goes: a freed kernel object is
// poisoned, and a later access through a stale pointer is reported in the shape of
// mm/kasan/report.c ("BUG: KASAN: slab-use-after-free in <function>", the object, "Freed by
// task …:" and the access), naming what was freed, by which task, at which virtual time, and
// who touched it. The simulator keeps the object (the CLR would anyway); poisoning is a mark
// the code checks at the points where the kernel would dereference it. A report ends the
// run as a kernel BUG (the simulator does not go on with a freed object: kasan.fault=panic).
//
// Cost: Check is called on hot paths (every device-fd ioctl); until something is freed it
// is one volatile read, afterwards one dictionary lookup under a short lock.

namespace Vfio.Kernel;

/// <summary>
/// KASAN for simulated kernel objects: <see cref="Free(object, string)"/> poisons an object, and
/// <see cref="Check"/> at a dereference reports a use-after-free as a kernel BUG
/// (<c>BUG: KASAN: slab-use-after-free in …</c>) naming the object, the freeing task and time,
/// and the accessing task and time.
/// </summary>
public sealed class Kasan
{
    private readonly SimKernel _kernel;

    // Protects _freed (objects are freed and checked from any task in real-threads mode).
    private readonly System.Threading.Lock _lock = new();
    private readonly Dictionary<object, FreeRecord> _freed = new(ReferenceEqualityComparer.Instance);

    // _freed.Count, readable without the lock: the fast path of Check.
    private volatile int _count;

    internal Kasan(SimKernel kernel)
    {
        _kernel = kernel;
    }

    /// <summary>How many objects have been poisoned.</summary>
    public int FreedCount => _count;

    /// <summary>The last report made (the text of the BUG), or null.</summary>
    public string? LastReport { get; private set; }

    /// <summary>kfree(): poisons <paramref name="obj"/>, described as <paramref name="what"/> (<c>vfio_device vfio0</c>).</summary>
    public void Free(object obj, string what) => Free(obj, what, function: null);

    /// <summary>
    /// kfree() from <paramref name="function"/> (<c>vfio_device_release</c>): poisons
    /// <paramref name="obj"/>, described as <paramref name="what"/>; a report names the function
    /// under "Freed by task …".
    /// </summary>
    public void Free(object obj, string what, string? function)
    {
        ArgumentNullException.ThrowIfNull(obj);
        ArgumentException.ThrowIfNullOrEmpty(what);
        KTask? t = KTask.CurrentOrNull;
        var record = new FreeRecord(what, t?.DisplayName ?? "kernel", _kernel.Clock.NowNs, function);
        lock (_lock)
        {
            _freed[obj] = record;
            _count = _freed.Count;
        }

        _kernel.Trace.Event(t, "kfree", what, function);
    }

    /// <summary>True when <paramref name="obj"/> was freed.</summary>
    public bool IsFreed(object obj)
    {
        ArgumentNullException.ThrowIfNull(obj);
        if (_count == 0)
        {
            return false;
        }

        lock (_lock)
        {
            return _freed.ContainsKey(obj);
        }
    }

    /// <summary>
    /// A dereference of <paramref name="obj"/> in <paramref name="function"/>: when the object
    /// was freed, a kernel BUG (<see cref="KernelPanicException"/>) whose first line names
    /// the function, the object, who freed it and when, and who touched it now; the full
    /// report is also printed to the kernel log.
    /// </summary>
    public void Check(object obj, string function)
    {
        if (_count == 0 || obj is null)
        {
            return;
        }

        FreeRecord? r;
        lock (_lock)
        {
            if (!_freed.TryGetValue(obj, out r))
            {
                return;
            }
        }

        Report(r, function);
    }

    private void Report(FreeRecord r, string function)
    {
        KTask? t = KTask.CurrentOrNull;
        string accessor = t?.DisplayName ?? "kernel";
        string now = SimClock.FormatNs(_kernel.Clock.NowNs);
        string freedAt = SimClock.FormatNs(r.TimeNs);
        string summary = $"BUG: KASAN: slab-use-after-free in {function}: {r.What} was freed by task {r.Task} at t={freedAt}; accessed by task {accessor} at t={now}";
        string body =
            "==================================================================\n" +
            $"BUG: KASAN: slab-use-after-free in {function}\n" +
            $"Access to {r.What} by task {accessor}\n" +
            "\n" +
            $"Freed by task {r.Task} at t={freedAt}:\n" +
            (r.Function is null ? string.Empty : $" {r.Function}\n") +
            "\n" +
            $"Accessed by task {accessor} at t={now}:\n" +
            $" {function}\n" +
            "\n" +
            $"The buggy address belongs to the object {r.What}\n" +
            "==================================================================";
        string report = summary + "\n" + body;
        LastReport = report;
        foreach (string line in body.Split('\n'))
        {
            _kernel.Log.Err(line);
        }

        _kernel.Trace.Event(t, "kasan", r.What, function);
        throw new KernelPanicException(report);
    }

    private sealed record FreeRecord(string What, string Task, long TimeNs, string? Function);
}
