// Models include/linux/refcount.h and lib/refcount.c (v6.12): refcount_t. The counter
// saturates at REFCOUNT_SATURATED (INT_MIN / 2) instead of wrapping, and every misuse
// WARNs once with the kernel's message: increment from 0 ("addition on 0;
// use-after-free"), overflow ("saturated; leaking memory"), decrement below 0
// ("underflow; use-after-free"), refcount_dec() to 0 ("decrement hit 0; leaking memory").
// Every operation is a scheduling point in controlled mode, so check-then-act bugs on a
// refcount are explorable.

namespace Vfio.Kernel;

/// <summary><c>refcount_t</c>: a saturating reference counter.</summary>
public sealed class RefCount : KernelObject
{
    /// <summary>REFCOUNT_SATURATED.</summary>
    public const int Saturated = int.MinValue / 2;

    /// <summary>REFCOUNT_MAX.</summary>
    public const int Max = int.MaxValue;

    private int _refs;

    /// <summary>refcount_set(r, <paramref name="initial"/>) at creation.</summary>
    public RefCount(SimKernel kernel, string name, int initial = 1)
        : base(kernel, name)
    {
        _refs = initial;
    }

    /// <inheritdoc/>
    public override string Kind => "refcount";

    internal override string WakeHint => "a reference to be dropped";

    /// <summary>
    /// Shows this count as a counter track (named after the refcount) on the timeline of a
    /// kernel with <see cref="KernelConfig.Timeline"/>: every change records the new value.
    /// </summary>
    public bool OnTimeline { get; set; }

    /// <summary>The raw value without a scheduling point (for reports and invariant checks).</summary>
    public int Value => Volatile.Read(ref _refs);

    /// <summary>True once the counter saturated after misuse.</summary>
    public bool IsSaturated => Volatile.Read(ref _refs) == Saturated;

    /// <summary>refcount_read().</summary>
    public int Read()
    {
        Point(SchedOp.RefcountRead);
        return Volatile.Read(ref _refs);
    }

    /// <summary>refcount_set().</summary>
    public void Set(int n)
    {
        Point(SchedOp.RefcountSet);
        Volatile.Write(ref _refs, n);
        if (OnTimeline && Kernel.TimelineActive)
        {
            Kernel.Trace.Counter(Name, n);
        }
    }

    /// <summary>refcount_inc(): WARNs on increment from 0 (use-after-free) and saturates.</summary>
    public void Inc() => AddCore(1, SchedOp.RefcountInc);

    /// <summary>refcount_add().</summary>
    public void Add(int i) => AddCore(i, SchedOp.RefcountAdd);

    /// <summary>refcount_inc_not_zero(): takes a reference unless the count is 0.</summary>
    public bool IncNotZero() => AddNotZero(1);

    /// <summary>refcount_add_not_zero().</summary>
    public bool AddNotZero(int i)
    {
        KTask t = Point(SchedOp.RefcountIncNotZero);
        int old = Volatile.Read(ref _refs);
        while (old != 0)
        {
            int seen = Interlocked.CompareExchange(ref _refs, unchecked(old + i), old);
            if (seen == old)
            {
                break;
            }

            old = seen;
        }

        if (old < 0 || unchecked(old + i) < 0)
        {
            Saturate(t, "refcount_t: saturated; leaking memory.");
        }

        TraceChange(t, "refcount_inc_not_zero", old, old == 0 ? 0 : old + i);
        return old != 0;
    }

    /// <summary>refcount_dec_and_test(): drops a reference; true when it was the last one.</summary>
    public bool DecAndTest() => SubAndTestCore(1, SchedOp.RefcountDecAndTest);

    /// <summary>refcount_sub_and_test().</summary>
    public bool SubAndTest(int i) => SubAndTestCore(i, SchedOp.RefcountSub);

    /// <summary>refcount_dec(): drops a reference that must not be the last (WARNs "decrement hit 0").</summary>
    public void Dec()
    {
        KTask t = Point(SchedOp.RefcountDec);
        int old = Interlocked.Add(ref _refs, -1) + 1;
        if (old <= 1)
        {
            Saturate(t, "refcount_t: decrement hit 0; leaking memory.");
        }

        TraceChange(t, "refcount_dec", old, old - 1);
    }

    /// <summary>refcount_dec_not_one(): decrements unless the count is 1; true when it decremented.</summary>
    public bool DecNotOne()
    {
        KTask t = Point(SchedOp.RefcountDecNotOne);
        return DecNotOneCore(t);
    }

    private bool DecNotOneCore(KTask t)
    {
        uint val = (uint)Volatile.Read(ref _refs);
        while (true)
        {
            if (val == unchecked((uint)Saturated))
            {
                return true;
            }

            if (val == 1)
            {
                return false;
            }

            uint next = unchecked(val - 1);
            if (next > val)
            {
                Saturate(t, "refcount_t: underflow; use-after-free.");
                return true;
            }

            uint seen = (uint)Interlocked.CompareExchange(ref _refs, (int)next, (int)val);
            if (seen == val)
            {
                TraceChange(t, "refcount_dec_not_one", (int)val, (int)next);
                return true;
            }

            val = seen;
        }
    }

    /// <summary>
    /// refcount_dec_and_mutex_lock(): drops a reference; if it was the last one, returns
    /// true with <paramref name="mutex"/> held (so the object can be unpublished under it).
    /// </summary>
    public bool DecAndMutexLock(KMutex mutex)
    {
        ArgumentNullException.ThrowIfNull(mutex);
        KTask t = Point(SchedOp.RefcountDecNotOne);
        if (DecNotOneCore(t))
        {
            return false;
        }

        mutex.Lock(nameof(DecAndMutexLock));
        if (!DecAndTest())
        {
            mutex.Unlock();
            return false;
        }

        return true;
    }

    /// <summary>refcount_dec_and_lock(): as <see cref="DecAndMutexLock"/> with a spinlock.</summary>
    public bool DecAndLock(KSpinLock spinLock)
    {
        ArgumentNullException.ThrowIfNull(spinLock);
        KTask t = Point(SchedOp.RefcountDecNotOne);
        if (DecNotOneCore(t))
        {
            return false;
        }

        spinLock.Lock(nameof(DecAndLock));
        if (!DecAndTest())
        {
            spinLock.Unlock();
            return false;
        }

        return true;
    }

    private void AddCore(int i, SchedOp op)
    {
        KTask t = Point(op);
        int old = Interlocked.Add(ref _refs, i) - i;
        if (old == 0)
        {
            Saturate(t, "refcount_t: addition on 0; use-after-free.");
        }
        else if (old < 0 || unchecked(old + i) < 0)
        {
            Saturate(t, "refcount_t: saturated; leaking memory.");
        }

        TraceChange(t, op.KernelName(), old, old + i);
    }

    private bool SubAndTestCore(int i, SchedOp op)
    {
        KTask t = Point(op);
        int old = Interlocked.Add(ref _refs, -i) + i;
        TraceChange(t, op.KernelName(), old, old - i);
        if (old > 0 && old == i)
        {
            return true;
        }

        if (old <= 0 || old - i < 0)
        {
            Saturate(t, "refcount_t: underflow; use-after-free.");
        }

        return false;
    }

    private KTask Point(SchedOp op)
    {
        KTask t = KTask.CurrentFor(Kernel);
        Kernel.BeforeOp(t, op, this);
        return t;
    }

    private void Saturate(KTask t, string message)
    {
        // refcount_warn_saturate(): pin the counter where neither side can reach 0 again,
        // and WARN_ONCE per kind of misuse, as lib/refcount.c does.
        Volatile.Write(ref _refs, Saturated);
        if (Kernel.FirstWarning("refcount.c:" + message))
        {
            Warn.Report(Kernel, t, WarningKind.Refcount, $"{message} ({Name})", "refcount_warn_saturate", "refcount.c", 0);
        }
    }

    private void TraceChange(KTask t, string op, int from, int to)
    {
        if (Kernel.Trace.Enabled)
        {
            Kernel.Trace.Event(t, op, this, $"{from} -> {to}");
            if (OnTimeline)
            {
                Kernel.Trace.Counter(Name, Volatile.Read(ref _refs));
            }
        }
    }

    /// <inheritdoc/>
    public override string ToString() => $"refcount {Name} = {Value}";
}
