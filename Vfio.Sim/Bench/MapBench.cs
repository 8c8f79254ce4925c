// Not a kernel model: the `vfio-sim bench map` sweep. For each page size and placement it
// boots one machine sized for the largest point (RAM, or the hugetlb pool for 2M/1G pages),
// faults in one buffer of that size with MAP_POPULATE, and for each size maps the buffer's
// first bytes at IOVA 0 through VFIO_IOMMU_MAP_DMA and unmaps them through UNMAP_DMA, timed
// with Stopwatch after a warm-up pair. One machine per series, not per point: booting and
// faulting in the buffer costs more than mapping it, and the points of a series differ only
// in how much of the same buffer they map.
//
// Hugetlb pages come from their pool lowest address first (the pool does not follow the
// 4 KiB placement policy), so a 2M or 1G series is labelled "hugetlb" and run once whatever
// placements were asked.

using System.Globalization;
using Vfio.Kernel;
using Vfio.Platform.Iommu.Hw;
using Vfio.Platform.Machine;
using Vfio.Platform.Mm;
using Vfio.Platform.Proc;
using Vfio.Sim.Races;

namespace Vfio.Sim.Bench;

/// <summary>
/// Sweeps of VFIO_IOMMU_MAP_DMA and UNMAP_DMA (type1) over buffer sizes, page sizes and
/// placements, with wall time, modelled time and the IOMMU's counts per point.
/// </summary>
public static partial class MapBench
{
    /// <summary>4 KiB.</summary>
    public const long Page4K = 1L << 12;

    /// <summary>2 MiB.</summary>
    public const long Page2M = 1L << 21;

    /// <summary>1 GiB.</summary>
    public const long Page1G = 1L << 30;

    /// <summary>The largest point a sweep runs (1 TiB).</summary>
    public const long MaxSize = 1L << 40;

    /// <summary>The placement label of hugetlb rows.</summary>
    public const string Hugetlb = "hugetlb";

    private const string Edu = "0000:01:00.0";

    // Host memory the simulator keeps per 4 KiB page mapped for DMA: 16 B of frame metadata,
    // 8 B of process page table, 8 B of I/O page table, and type1's and the VMA's bookkeeping
    // (measured: the heap grows by 8 MiB for a populated, mapped 1 GiB buffer of 262,144
    // scattered 4 KiB pages, 32 B a page; 40 leaves room).
    internal const long HostBytesPer4KPage = 40;

    // Per hugetlb page: its folio counts, process and I/O page-table entries (a few dozen bytes).
    internal const long HostBytesPerHugePage = 64;

    // A machine's fixed cost on the host (devices, config spaces, sysfs), generous.
    internal const long HostBytesPerMachine = 64L << 20;

    // RAM beyond the buffer: the kernel's own pages, page tables and the 32 MiB the pools leave.
    private const long RamHeadroom = 256L << 20;

    /// <summary>
    /// Reads sizes: a comma list of sizes (<c>2M,1G</c>) and ranges <c>A..B</c> (every power of
    /// two from A to B, both powers of two); units K, M, G, T (binary, <c>KiB</c> accepted),
    /// none for bytes. Each size a multiple of 4 KiB, at most 1 TiB. Sorted, without repeats.
    /// </summary>
    /// <exception cref="FormatException">Says which part is wrong and why.</exception>
    public static IReadOnlyList<long> ParseSizes(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var sizes = new SortedSet<long>();
        foreach (string raw in text.Split(',', StringSplitOptions.TrimEntries))
        {
            if (raw.Length == 0)
            {
                throw new FormatException($"'{text}' has an empty size; write sizes like 4K..16G or 2M,1G");
            }

            int dots = raw.IndexOf("..", StringComparison.Ordinal);
            if (dots < 0)
            {
                sizes.Add(CheckSize(ParseSize(raw), raw));
                continue;
            }

            string a = raw[..dots], b = raw[(dots + 2)..];
            long lo = CheckSize(ParseSize(a), a), hi = CheckSize(ParseSize(b), b);
            if (!IsPowerOfTwo(lo) || !IsPowerOfTwo(hi))
            {
                throw new FormatException($"the range {raw} goes by powers of two, so both ends must be powers of two ({(IsPowerOfTwo(lo) ? b : a)} is not)");
            }

            if (lo > hi)
            {
                throw new FormatException($"the range {raw} ends below where it starts");
            }

            for (long s = lo; s <= hi; s <<= 1)
            {
                sizes.Add(s);
            }
        }

        return [.. sizes];
    }

    /// <summary>Reads page sizes: a comma list of <c>4K</c>, <c>2M</c>, <c>1G</c>.</summary>
    /// <exception cref="FormatException">A page size the machine does not have.</exception>
    public static IReadOnlyList<long> ParsePageSizes(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var pages = new SortedSet<long>();
        foreach (string raw in text.Split(',', StringSplitOptions.TrimEntries))
        {
            long p = raw.Length == 0 ? 0 : ParseSize(raw);
            if (p is not (Page4K or Page2M or Page1G))
            {
                throw new FormatException($"'{raw}' is not a page size of the machine: 4K (anonymous memory), 2M or 1G (hugetlb)");
            }

            pages.Add(p);
        }

        return [.. pages];
    }

    /// <summary>Reads placements: a comma list of <c>scattered</c> and <c>contiguous</c>.</summary>
    /// <exception cref="FormatException">Another word.</exception>
    public static IReadOnlyList<AllocationPolicy> ParsePlacements(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var placements = new List<AllocationPolicy>();
        foreach (string raw in text.Split(',', StringSplitOptions.TrimEntries))
        {
            AllocationPolicy p = raw.ToLowerInvariant() switch
            {
                "scattered" => AllocationPolicy.Scattered,
                "contiguous" => AllocationPolicy.Contiguous,
                _ => throw new FormatException($"'{raw}' is not a placement: scattered (no two consecutive 4 KiB pages adjacent) or contiguous (in address order)"),
            };
            if (!placements.Contains(p))
            {
                placements.Add(p);
            }
        }

        return placements;
    }

    /// <summary><c>4K</c>, <c>2M</c>, <c>16G</c>; bytes when not a whole number of KiB.</summary>
    public static string FormatSize(long bytes)
    {
        ReadOnlySpan<char> units = "KMGT";
        string text = bytes.ToString(CultureInfo.InvariantCulture);
        for (int i = 0; i < units.Length; i++)
        {
            int shift = 10 * (i + 1);
            if (bytes >= (1L << shift) && (bytes & ((1L << shift) - 1)) == 0)
            {
                text = string.Create(CultureInfo.InvariantCulture, $"{bytes >> shift}{units[i]}");
            }
        }

        return text;
    }

    /// <summary>Null when <see cref="Run"/> can run <paramref name="options"/>, else why not (and what to do).</summary>
    public static string? Check(MapBenchOptions options) => Check(options, GC.GetGCMemoryInfo().TotalAvailableMemoryBytes);

    // As Check, on a host with this much memory available to the process.
    internal static string? Check(MapBenchOptions options, long hostAvailable)
    {
        try
        {
            Plan(options, hostAvailable, out _);
            return null;
        }
        catch (ArgumentException e)
        {
            return e.Message.Split(" (Parameter", 2)[0];
        }
    }

    /// <summary>
    /// Runs the sweep: one machine per page size and placement, sized for its largest point;
    /// each point a warm-up map + unmap and <see cref="MapBenchOptions.Repetitions"/> timed ones.
    /// </summary>
    /// <param name="options">What to sweep.</param>
    /// <param name="progress">Told, one line at a time, what is being run (null: nothing).</param>
    /// <exception cref="ArgumentException">The request cannot run (<see cref="Check(MapBenchOptions)"/> says why).</exception>
    /// <exception cref="InvalidOperationException">The simulated kernel refused a step it should not have.</exception>
    public static MapBenchResult Run(MapBenchOptions options, Action<string>? progress = null)
    {
        List<BenchSeries> plan = Plan(options, GC.GetGCMemoryInfo().TotalAvailableMemoryBytes, out List<string> notes);
        var rows = new List<MapBenchRow>();
        TimeSpan warmUp = options.WarmUp;
        foreach (BenchSeries series in plan)
        {
            progress?.Invoke($"{series.Name}: booting a machine with {series.Memory.RamBytes >> 20} MiB of RAM"
                + (series.PageSize == Page4K ? "" : $" and {series.HugePages} x {FormatSize(series.PageSize)} hugetlb pages"));
            VfioSimBuilder builder = VfioSim.CreateBuilder()
                .UseMachine(MachineDescriptionReader.Default with { Name = "bench-map", Memory = series.Memory })
                .UseScheduler(SchedulerMode.Real)
                .UseProfile(options.Profile)
                .UseCostModel(options.Model)
                .AddVfioPci();
            DesignSettings.Apply(builder, options.Designs);
            VfioSim sim = builder.Build();
            sim.Bind(Edu);
            RunResult run = sim.Run("bench-map", () => MeasureSeries(sim, series, options, warmUp, rows, progress));
            warmUp = TimeSpan.Zero; // The code is compiled once for the process.
            if (!run.Passed)
            {
                throw new InvalidOperationException($"the {series.Name} series did not run to the end: {run.Describe()}");
            }

            if (sim.PinnedPages != 0)
            {
                throw new InvalidOperationException($"the {series.Name} series left {sim.PinnedPages} pages pinned after its last unmap");
            }
        }

        return new MapBenchResult { Rows = rows, Notes = notes, Options = options };
    }

    private static void MeasureSeries(VfioSim sim, BenchSeries series, MapBenchOptions options, TimeSpan warmUp, List<MapBenchRow> rows, Action<string>? progress)
    {
        SimProcess process = sim.Spawn("bench-map");
        using VfioSession session = sim.Open(process, Edu);
        IoPageTable pageTable = sim.Device(Edu).IommuGroup!.Domain!.PageTable!;
        Iotlb iotlb = sim.Machine.Iommu!.Hardware.Iotlb;
        PhysMem memory = sim.Machine.Memory;
        CostModel cost = sim.Kernel.Cost;
        MapFlags flags = series.PageSize switch
        {
            Page2M => MapFlags.MAP_POPULATE | MapFlags.MAP_HUGETLB | MapFlags.MAP_HUGE_2MB,
            Page1G => MapFlags.MAP_POPULATE | MapFlags.MAP_HUGETLB | MapFlags.MAP_HUGE_1GB,
            _ => MapFlags.MAP_POPULATE,
        };
        using UserBuffer buffer = VfioSim.Allocate(process, (ulong)series.Sizes[^1], flags);
        if (warmUp > TimeSpan.Zero)
        {
            progress?.Invoke($"warming up for {warmUp.TotalMilliseconds:0} ms");
            ulong chunk = (ulong)Math.Min(series.Sizes[^1], Math.Max(series.PageSize, 4L << 20));
            long start = HostWorkers.Timestamp();
            while (HostWorkers.Since(start) < warmUp)
            {
                session.Container.MapDma(buffer.Address, 0, chunk);
                session.Container.UnmapDma(0, chunk);
            }
        }

        foreach (long size in series.Sizes)
        {
            progress?.Invoke($"{series.Name}: {FormatSize(size)}");
            session.Container.MapDma(buffer.Address, 0, (ulong)size);
            session.Container.UnmapDma(0, (ulong)size);
            double bestMap = double.MaxValue, bestUnmap = double.MaxValue;
            MapBenchRow? last = null;
            for (int r = 0; r < options.Repetitions; r++)
            {
                long pins = memory.PinsAcquired, unpins = memory.PinsReleased, leaves = Leaves(pageTable), tables = pageTable.TablesInUse;
                long inval = iotlb.Invalidations, entries = iotlb.InvalidatedEntries, flushes = iotlb.DomainFlushes + iotlb.GlobalFlushes;
                CostCounters c0 = cost.Snapshot();
                long t0 = HostWorkers.Timestamp();
                session.Container.MapDma(buffer.Address, 0, (ulong)size);
                long t1 = HostWorkers.Timestamp();
                CostCounters c1 = cost.Snapshot();
                long pinned = memory.PinsAcquired - pins, written = Leaves(pageTable) - leaves, held = pageTable.TablesInUse - tables;
                long t2 = HostWorkers.Timestamp();
                session.Container.UnmapDma(0, (ulong)size);
                long t3 = HostWorkers.Timestamp();
                CostCounters c2 = cost.Snapshot();
                bestMap = Math.Min(bestMap, HostWorkers.ElapsedNs(t0, t1));
                bestUnmap = Math.Min(bestUnmap, HostWorkers.ElapsedNs(t2, t3));
                last = new MapBenchRow
                {
                    Size = size,
                    PageSize = series.PageSize,
                    Placement = series.Placement,
                    MapNs = 0,
                    UnmapNs = 0,
                    MapCost = cost.Enabled ? c1.Since(c0) : null,
                    UnmapCost = cost.Enabled ? c2.Since(c1) : null,
                    Pins = pinned,
                    Unpins = memory.PinsReleased - unpins,
                    PteWrites = written,
                    Tables = held,
                    IotlbInvalidations = iotlb.Invalidations - inval,
                    IotlbEntriesInvalidated = iotlb.InvalidatedEntries - entries,
                    IotlbFlushes = iotlb.DomainFlushes + iotlb.GlobalFlushes - flushes,
                };
            }

            rows.Add(last! with { MapNs = bestMap, UnmapNs = bestUnmap });
        }
    }

    private static long Leaves(IoPageTable pt) => pt.Leaves4K + pt.Leaves2M + pt.Leaves1G;

    // ---- Planning: which machines, which points, and whether the host can hold them.

    private sealed record BenchSeries(long PageSize, string Placement, MemoryConfig Memory, int HugePages, IReadOnlyList<long> Sizes)
    {
        public string Name => $"{FormatSize(PageSize)} {Placement}";
    }

    private static List<BenchSeries> Plan(MapBenchOptions options, long hostAvailable, out List<string> notes)
    {
        ArgumentNullException.ThrowIfNull(options);
        notes = [];
        if (options.Sizes.Count == 0 || options.PageSizes.Count == 0 || options.Placements.Count == 0)
        {
            throw new ArgumentException("a sweep needs at least one size, one page size and one placement", nameof(options));
        }

        if (options.Repetitions < 1)
        {
            throw new ArgumentException($"repetitions must be at least 1 (got {options.Repetitions})", nameof(options));
        }

        foreach (string setting in options.Designs)
        {
            if (DesignSettings.Validate(setting) is { } why)
            {
                throw new ArgumentException(why, nameof(options));
            }
        }

        foreach (long size in options.Sizes)
        {
            CheckSizeArgument(size);
        }

        foreach (long page in options.PageSizes)
        {
            if (page is not (Page4K or Page2M or Page1G))
            {
                throw new ArgumentException($"{page} bytes is not a page size of the machine: 4K, 2M or 1G", nameof(options));
            }
        }

        long[] sorted = [.. options.Sizes.Distinct().Order()];
        var plan = new List<BenchSeries>();
        foreach (long page in options.PageSizes.Distinct().Order())
        {
            List<long> sizes = [.. sorted.Where(s => s % page == 0)];
            long[] skipped = [.. sorted.Where(s => s % page != 0)];
            if (skipped.Length > 0)
            {
                notes.Add($"{FormatSize(page)} pages: {string.Join(", ", skipped.Select(FormatSize))} skipped (a buffer of {FormatSize(page)} pages is a whole number of them)");
            }

            if (sizes.Count == 0)
            {
                continue;
            }

            long largest = sizes[^1];
            if (page == Page4K)
            {
                long ram = Math.Max(1L << 30, AlignUp(largest, Page2M) + RamHeadroom);
                foreach (AllocationPolicy placement in options.Placements)
                {
                    plan.Add(new BenchSeries(page, placement.ToString().ToLowerInvariant(), new MemoryConfig { RamBytes = ram, Policy = placement }, 0, sizes));
                }

                continue;
            }

            long count = largest / page;
            if (options.Placements.Count > 1 || options.Placements[0] != AllocationPolicy.Contiguous)
            {
                notes.Add($"{FormatSize(page)} pages come from the hugetlb pool lowest address first whatever the placement; their rows are labelled {Hugetlb} and run once");
            }

            var memory = new MemoryConfig
            {
                RamBytes = HugeMachineRam(largest),
                HugePages2M = page == Page2M ? (int)count : 0,
                HugePages1G = page == Page1G ? (int)count : 0,
            };
            plan.Add(new BenchSeries(page, Hugetlb, memory, (int)count, sizes));
        }

        if (plan.Count == 0)
        {
            throw new ArgumentException($"no point of the sweep can run: every size is smaller than or not a multiple of its page size ({string.Join("; ", notes)})", nameof(options));
        }

        CheckHostMemory(plan, hostAvailable);
        return plan;
    }

    // The series run one after another, so the host holds one machine at a time (and the
    // previous one until it is collected): the largest series, twice, must fit in half the
    // memory this process may use.
    private static void CheckHostMemory(List<BenchSeries> plan, long available)
    {
        long budget = available / 2;
        foreach (BenchSeries s in plan)
        {
            long largest = s.Sizes[^1];
            long need;
            string arithmetic;
            if (s.PageSize == Page4K)
            {
                long pages = largest / Page4K;
                need = (pages * HostBytesPer4KPage) + HostBytesPerMachine;
                arithmetic = $"{pages:N0} pages x {HostBytesPer4KPage} B (frame metadata, process and I/O page tables, type1's bookkeeping) + {HostBytesPerMachine >> 20} MiB for the machine";
            }
            else
            {
                long pages = largest / s.PageSize;
                need = (pages * HostBytesPerHugePage) + HostBytesPerMachine;
                arithmetic = $"{pages:N0} hugetlb pages x {HostBytesPerHugePage} B + {HostBytesPerMachine >> 20} MiB for the machine";
            }

            if (2 * need > budget)
            {
                throw new ArgumentException(string.Create(CultureInfo.InvariantCulture,
                    $"mapping {FormatSize(largest)} of {FormatSize(s.PageSize)} pages needs about {need >> 20} MiB of this host's memory ({arithmetic}), twice that while the previous machine is collected, "
                    + $"and a sweep may use half of the {available >> 20} MiB available: use smaller sizes or larger pages"));
            }
        }
    }

    private static long ParseSize(string raw)
    {
        string t = raw.Trim();
        int unit = t.Length;
        while (unit > 0 && !char.IsAsciiDigit(t[unit - 1]))
        {
            unit--;
        }

        string digits = t[..unit], suffix = t[unit..].ToUpperInvariant();
        if (!long.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out long n))
        {
            throw new FormatException($"'{raw}' is not a size: write a whole number with K, M, G or T (4K, 2M, 16G)");
        }

        int shift = suffix switch
        {
            "" or "B" => 0,
            "K" or "KB" or "KIB" => 10,
            "M" or "MB" or "MIB" => 20,
            "G" or "GB" or "GIB" => 30,
            "T" or "TB" or "TIB" => 40,
            _ => throw new FormatException($"'{raw}' has an unknown unit '{t[unit..]}': use K, M, G or T (powers of 1024)"),
        };
        if (n > (long.MaxValue >> shift))
        {
            throw new FormatException($"'{raw}' is too large");
        }

        return n << shift;
    }

    private static long CheckSize(long size, string raw)
    {
        try
        {
            CheckSizeArgument(size);
        }
        catch (ArgumentException e)
        {
            throw new FormatException($"'{raw}': {e.Message}", e);
        }

        return size;
    }

    private static void CheckSizeArgument(long size)
    {
        if (size <= 0 || size % Page4K != 0)
        {
            throw new ArgumentException($"{size} bytes is not a whole number of 4 KiB pages (DMA maps whole pages)");
        }

        if (size > MaxSize)
        {
            throw new ArgumentException($"{FormatSize(size)} is more than the {FormatSize(MaxSize)} a sweep maps at most");
        }
    }

    // The pools are carved from the top RAM range below its last 1 GiB boundary: RAM up to
    // 3 GiB is one range from 0; above, the range past the PCI hole holds RAM - 3 GiB.
    private static long HugeMachineRam(long pool)
    {
        const long LowRam = 3L << 30;
        long ram = AlignUp(pool + RamHeadroom, Page1G);
        return ram <= LowRam ? ram : AlignUp(LowRam + pool + RamHeadroom, Page1G);
    }

    private static bool IsPowerOfTwo(long v) => v > 0 && (v & (v - 1)) == 0;

    private static long AlignUp(long v, long a) => (v + a - 1) & ~(a - 1);
}
