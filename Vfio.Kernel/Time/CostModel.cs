// The optional cost model: modelled operations advance virtual time by calibrated costs,
// so a scenario's modelled time is the same on every machine, and each charge is counted.
//
// Off by default (KernelConfig.CostProfile is null): Charge is then one read of a field.
// When on, a charge adds count x cost to the kernel's modelled total and to its virtual
// clock (SimClock.AddModelledNs: the time moves, timers that fell due fire at the next
// scheduling point or clock advance, never inside the charging code). The model is one
// CPU: charges of concurrent tasks add up. Charges made inside SimKernel.Unobserved()
// (strace, graphs) are not counted, so observing a run does not change its modelled time.
// Hot paths charge once per batch (count = pages or leaves of the batch), never per page.

using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;

namespace Vfio.Kernel;

/// <summary>An operation the cost model charges for.</summary>
public enum CostOp
{
    /// <summary>Entering and leaving the kernel for one system call.</summary>
    SyscallEntry,

    /// <summary>One copy_from_user / copy_to_user (an ioctl argument, a read or write buffer, an eventfd counter).</summary>
    IoctlCopy,

    /// <summary>One 4 KiB page pinned by long-term GUP (pin_user_pages).</summary>
    GupPage,

    /// <summary>
    /// One folio pinned by long-term GUP: each 4 KiB page of ordinary memory is its own folio
    /// (physically adjacent pages are still pinned one by one), a hugetlb page is one folio.
    /// </summary>
    GupFolio,

    /// <summary>One 4 KiB page unpinned (unpin_user_page_range_dirty_lock).</summary>
    UnpinPage,

    /// <summary>One folio unpinned (a 4 KiB page of ordinary memory, or a hugetlb page).</summary>
    UnpinFolio,

    /// <summary>One I/O page-table leaf written (any size).</summary>
    PteWrite,

    /// <summary>One I/O page-table leaf cleared (any size).</summary>
    PteClear,

    /// <summary>One I/O page-table page allocated.</summary>
    PageTableAlloc,

    /// <summary>One IOTLB invalidation command (a range, domain or global invalidation submitted and waited for).</summary>
    IotlbFlush,

    /// <summary>One IOTLB entry dropped by an invalidation command.</summary>
    IotlbInvalidate,

    /// <summary>One device translation served by the IOTLB.</summary>
    IotlbHit,

    /// <summary>One device translation that walked the I/O page table (an IOTLB miss).</summary>
    IotlbWalk,

    /// <summary>One lock or completion acquisition that had to sleep until another task released it (the hand-off and wake-up).</summary>
    LockHandoff,

    /// <summary>One eventfd signal (eventfd_signal).</summary>
    EventfdSignal,

    /// <summary>One interrupt delivered to its handler (MSI/MSI-X message or INTx assertion).</summary>
    InterruptDelivery,

    /// <summary>One CPU read of a device register through a BAR (MMIO or port I/O): a non-posted read that waits for the device.</summary>
    MmioAccess,

    /// <summary>One RLIMIT_MEMLOCK (locked_vm) accounting step (__account_locked_vm).</summary>
    LockedVmAccount,

    /// <summary>One CPU write of a device register through a BAR (MMIO or port I/O): a posted write.</summary>
    MmioWrite,
}

/// <summary>
/// A calibrated set of per-operation costs in nanoseconds, with where each figure comes from.
/// </summary>
public sealed class CostProfile
{
    private readonly long[] _costs;
    private readonly string[] _sources;

    /// <summary>Every <see cref="CostOp"/>, in declaration order.</summary>
    public static IReadOnlyList<CostOp> Operations { get; } = Enum.GetValues<CostOp>();

    /// <summary>
    /// A profile named <paramref name="name"/> with <paramref name="costs"/> (nanoseconds; an
    /// operation left out costs 0) and, optionally, the source of each figure.
    /// </summary>
    public CostProfile(string name, string description, IReadOnlyDictionary<CostOp, double> costs, IReadOnlyDictionary<CostOp, string>? sources = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentNullException.ThrowIfNull(costs);
        Name = name;
        Description = description ?? string.Empty;
        _costs = new long[Operations.Count];
        _sources = new string[Operations.Count];
        foreach ((CostOp op, double ns) in costs)
        {
            if (ns < 0 || double.IsNaN(ns))
            {
                throw new ArgumentOutOfRangeException(nameof(costs), ns, $"the cost of {op} must be a non-negative number of nanoseconds");
            }

            // Kept in picoseconds so sub-nanosecond per-page costs add up exactly.
            _costs[(int)op] = (long)Math.Round(ns * 1000);
        }

        if (sources is not null)
        {
            foreach ((CostOp op, string s) in sources)
            {
                _sources[(int)op] = s;
            }
        }
    }

    /// <summary>The profile's name (<c>linux-x86</c>).</summary>
    public string Name { get; }

    /// <summary>What the profile models, in one sentence.</summary>
    public string Description { get; }

    /// <summary>The cost of one <paramref name="op"/>, in nanoseconds.</summary>
    public double CostNs(CostOp op) => _costs[(int)op] / 1000.0;

    /// <summary>Where the figure for <paramref name="op"/> comes from (empty when not documented).</summary>
    public string Source(CostOp op) => _sources[(int)op] ?? string.Empty;

    internal long CostPs(CostOp op) => _costs[(int)op];

    /// <summary>The profiles this build calibrates: <see cref="LinuxX86"/>.</summary>
    public static IReadOnlyList<CostProfile> Presets => [LinuxX86];

    /// <summary>The preset named <paramref name="name"/> (case-insensitive), or null.</summary>
    public static CostProfile? Find(string name)
    {
        foreach (CostProfile p in Presets)
        {
            if (string.Equals(p.Name, name, StringComparison.OrdinalIgnoreCase))
            {
                return p;
            }
        }

        return null;
    }

    /// <summary>
    /// Linux on a current x86-64 server with an Intel VT-d or AMD-Vi IOMMU: calibrated so that
    /// a type1 map of 4 KiB pages costs about 60 ns a page, its unmap about 70 ns a page, a
    /// 2 MiB hugetlb page about 3 µs, and a system call about 90 ns.
    /// </summary>
    public static CostProfile LinuxX86 { get; } = CostProfiles.CreateLinuxX86();
}

/// <summary>The counts of each charged operation and the modelled time they add up to.</summary>
public readonly struct CostCounters : IEquatable<CostCounters>
{
    private readonly long[]? _counts;

    internal CostCounters(long[] counts, long modelledPs)
    {
        _counts = counts;
        ModelledPs = modelledPs;
    }

    /// <summary>How many times <paramref name="op"/> was charged.</summary>
    public long this[CostOp op] => _counts is null ? 0 : _counts[(int)op];

    /// <summary>The modelled time, in picoseconds.</summary>
    public long ModelledPs { get; }

    /// <summary>The modelled time, in nanoseconds (rounded down).</summary>
    public long ModelledNs => ModelledPs / 1000;

    /// <summary>What happened between <paramref name="before"/> and this snapshot.</summary>
    public CostCounters Since(CostCounters before)
    {
        var d = new long[CostProfile.Operations.Count];
        for (int i = 0; i < d.Length; i++)
        {
            d[i] = this[(CostOp)i] - before[(CostOp)i];
        }

        return new CostCounters(d, ModelledPs - before.ModelledPs);
    }

    /// <summary>
    /// The modelled time and every operation counted, as plain text: a first line with the
    /// time, then one line per operation with a non-zero count; with <paramref name="profile"/>
    /// (the profile that charged them) each line also gives the cost of one operation and the
    /// time all of them took.
    /// </summary>
    public string Format(CostProfile? profile = null)
    {
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"modelled time {FormatPs(ModelledPs)}");
        if (profile is not null)
        {
            sb.Append(CultureInfo.InvariantCulture, $" ({profile.Name})");
        }

        sb.Append('\n');
        foreach (CostOp op in CostProfile.Operations)
        {
            long n = this[op];
            if (n == 0)
            {
                continue;
            }

            sb.Append(CultureInfo.InvariantCulture, $"  {op,-18} {n,14:N0}");
            if (profile is not null)
            {
                long ps = profile.CostPs(op);
                sb.Append(CultureInfo.InvariantCulture, $" x {FormatPs(ps),10} = {FormatPs(ps * n),10}");
            }

            sb.Append('\n');
        }

        return sb.ToString();
    }

    /// <summary>A duration in picoseconds as text in ns, µs, ms or s (three significant decimals).</summary>
    public static string FormatPs(long ps)
    {
        double ns = ps / 1000.0;
        return ns switch
        {
            < 1_000 => string.Create(CultureInfo.InvariantCulture, $"{ns:0.##} ns"),
            < 1_000_000 => string.Create(CultureInfo.InvariantCulture, $"{ns / 1e3:0.###} µs"),
            < 1_000_000_000 => string.Create(CultureInfo.InvariantCulture, $"{ns / 1e6:0.###} ms"),
            _ => string.Create(CultureInfo.InvariantCulture, $"{ns / 1e9:0.###} s"),
        };
    }

    /// <inheritdoc/>
    public bool Equals(CostCounters other)
    {
        if (ModelledPs != other.ModelledPs)
        {
            return false;
        }

        foreach (CostOp op in CostProfile.Operations)
        {
            if (this[op] != other[op])
            {
                return false;
            }
        }

        return true;
    }

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is CostCounters c && Equals(c);

    /// <inheritdoc/>
    public override int GetHashCode() => ModelledPs.GetHashCode();

    /// <summary>Equality.</summary>
    public static bool operator ==(CostCounters left, CostCounters right) => left.Equals(right);

    /// <summary>Inequality.</summary>
    public static bool operator !=(CostCounters left, CostCounters right) => !left.Equals(right);
}

/// <summary>
/// A kernel's cost model (<see cref="SimKernel.Cost"/>): charges operations at the
/// calibrated costs of its <see cref="Profile"/>, or does nothing when there is none.
/// </summary>
public sealed class CostModel
{
    private readonly SimKernel _kernel;
    private readonly CostProfile? _profile;
    private readonly long[] _counts = new long[CostProfile.Operations.Count];
    private long _modelledPs;
    private long _clockRemainderPs;

    internal CostModel(SimKernel kernel, CostProfile? profile)
    {
        _kernel = kernel;
        _profile = profile;
    }

    /// <summary>The calibrated costs, or null when the model is off.</summary>
    public CostProfile? Profile => _profile;

    /// <summary>Whether operations are charged.</summary>
    public bool Enabled => _profile is not null;

    /// <summary>Modelled time charged since boot, in nanoseconds.</summary>
    public long ModelledNs => Volatile.Read(ref _modelledPs) / 1000;

    /// <summary>How many times <paramref name="op"/> was charged since boot.</summary>
    public long Count(CostOp op) => Volatile.Read(ref _counts[(int)op]);

    /// <summary>A snapshot of every count and the modelled time (subtract two with <see cref="CostCounters.Since"/>).</summary>
    public CostCounters Snapshot()
    {
        var c = new long[_counts.Length];
        for (int i = 0; i < c.Length; i++)
        {
            c[i] = Volatile.Read(ref _counts[i]);
        }

        return new CostCounters(c, Volatile.Read(ref _modelledPs));
    }

    /// <summary>
    /// Charges <paramref name="count"/> operations <paramref name="op"/>: counts them and
    /// advances modelled and virtual time by their cost. Nothing when the model is off or
    /// the calling task is inside <see cref="SimKernel.Unobserved"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Charge(CostOp op, long count = 1)
    {
        if (_profile is not null && count != 0)
        {
            ChargeSlow(op, count);
        }
    }

    private void ChargeSlow(CostOp op, long count)
    {
        if (KTask.CurrentOrNull is { ObserverDepth: > 0 })
        {
            return;
        }

        Interlocked.Add(ref _counts[(int)op], count);
        long ps = _profile!.CostPs(op) * count;
        if (ps == 0)
        {
            return;
        }

        Interlocked.Add(ref _modelledPs, ps);

        // The clock counts whole nanoseconds; carry the picoseconds over.
        long total = Interlocked.Add(ref _clockRemainderPs, ps);
        long ns = total / 1000;
        if (ns > 0)
        {
            Interlocked.Add(ref _clockRemainderPs, -ns * 1000);
            _kernel.Clock.AddModelledNs(ns);
        }
    }
}
