// VFIO_IOMMU_MAP_DMA / UNMAP_DMA of the type1 backend through the kernel-internal calls
// (vfio_dma_do_map / vfio_dma_do_unmap, no copy-in): pin (long-term GUP), locked_vm
// accounting, iommu_map into the container's domain, and back. Map and unmap are timed
// separately; the other half runs in IterationSetup/IterationCleanup.
//  - populated, physically scattered 4 KiB pages: 4096 regions of 4 KiB, 256 regions of
//    2 MiB, one region of 1 GiB; reported per 4 KiB page;
//  - 16 GiB backed by 2 MiB hugetlb pages; reported per 2 MiB page (x 8192 for the total);
//  - the largest region backed by 1 GiB hugetlb pages the host can build (see
//    HugeGiB); reported per 1 GiB page.
// Floor (the baseline): one 8-byte PTE store into a flat ulong[] and one refcount increment
// in a flat int[] per 4 KiB page over 1 GiB of pages, the least a map can do per page.
// Targets (as in the Targets table of Vfio.Benchmarks/RESULTS.md): 1 GiB of 4 KiB pages
// ≤ 7.6 ns/page and within 4x of Floor; unmap ≤ 1.2x map; 16 GiB of 2 MiB pages ≤ 1 ms;
// 256 GiB of 1 GiB pages ≤ 0.2 ms; 0 B allocated.

using BenchmarkDotNet.Attributes;
using Vfio.Platform.Mm;

namespace Vfio.Benchmarks.Type1;

[MemoryDiagnoser]
public class Type1MapBenchmarks
{
    private const long GiB = Type1Host.GiB;
    private const int Pages1G = (int)(GiB >> 12);
    private const int Regions4K = 4096;
    private const int Regions2M = 256;
    private const int Pages2MRegions = Regions2M * 512;
    private const int Huge2MPages = 8192;          // 16 GiB
    private const ulong Iova = 1UL << 36;

    /// <summary>
    /// GiB of 1 GiB hugetlb pages mapped (target 256). Override with VFIO_BENCH_HUGE_GIB; the
    /// simulator backs no data until it is touched, so the limit is frame metadata (16 B per 4 KiB frame if touched) and host RAM.
    /// </summary>
    private static readonly int HugeGiB = int.TryParse(Environment.GetEnvironmentVariable("VFIO_BENCH_HUGE_GIB"), out int g) ? g : 256;

    private readonly ulong[] _pte = new ulong[Pages1G];
    private readonly int[] _refcount = new int[Pages1G];
    private Type1Host _scattered = null!;
    private Type1Host _huge2M = null!;
    private Type1Host _huge1G = null!;
    private ulong _scatteredVa;
    private ulong _huge2MVa;
    private ulong _huge1GVa;

    [GlobalSetup(Targets = [nameof(Floor), nameof(Map4KRegions), nameof(Map2MRegions), nameof(Map1GRegion), nameof(Unmap4KRegions), nameof(Unmap2MRegions), nameof(Unmap1GRegion)])]
    public void SetupScattered()
    {
        _scattered = new Type1Host(new MemoryConfig { RamBytes = 4 * GiB, Policy = AllocationPolicy.Scattered });
        _scatteredVa = _scattered.Buffer(GiB);
        MapScattered(Regions4K, 4096);   // warm the dma pool and the page-table pool
        UnmapScattered(Regions4K, 4096);
        MapScattered(1, GiB);
        UnmapScattered(1, GiB);
        Floor();
    }

    [GlobalSetup(Targets = [nameof(Map16GHuge2M), nameof(Unmap16GHuge2M)])]
    public void SetupHuge2M()
    {
        _huge2M = new Type1Host(new MemoryConfig { RamBytes = 20 * GiB, HugePages2M = Huge2MPages });
        _huge2MVa = _huge2M.Buffer(16 * GiB, MapFlags.MAP_HUGETLB | MapFlags.MAP_HUGE_2MB);
        Type1Host.Check(_huge2M.Map(_huge2MVa, Iova, (ulong)(16 * GiB)), "map 16 GiB");
        Type1Host.Check(_huge2M.Unmap(Iova, (ulong)(16 * GiB)), "unmap 16 GiB");
    }

    [GlobalSetup(Targets = [nameof(MapHuge1G), nameof(UnmapHuge1G)])]
    public void SetupHuge1G()
    {
        _huge1G = new Type1Host(new MemoryConfig { RamBytes = (HugeGiB + 5) * GiB, HugePages1G = HugeGiB });
        _huge1GVa = _huge1G.Buffer(HugeGiB * GiB, MapFlags.MAP_HUGETLB | MapFlags.MAP_HUGE_1GB);
        Type1Host.Check(_huge1G.Map(_huge1GVa, Iova, (ulong)(HugeGiB * GiB)), "map the 1 GiB pages");
        Type1Host.Check(_huge1G.Unmap(Iova, (ulong)(HugeGiB * GiB)), "unmap the 1 GiB pages");
    }

    // ---- the floor

    [Benchmark(Baseline = true, OperationsPerInvoke = Pages1G, Description = "Floor: PTE store + refcount++ (per page)")]
    public ulong Floor()
    {
        ulong[] pte = _pte;
        int[] rc = _refcount;
        ulong pa = 0x1_0000_0000UL;
        for (int i = 0; i < pte.Length; i++)
        {
            pte[i] = pa | 3;
            rc[i]++;
            pa += 4096;
        }

        return pte[^1];
    }

    // ---- scattered 4 KiB pages

    private void MapScattered(int regions, long bytes)
    {
        for (int i = 0; i < regions; i++)
        {
            ulong off = (ulong)(i * bytes);
            Type1Host.Check(_scattered.Map(_scatteredVa + off, Iova + off, (ulong)bytes), "map");
        }
    }

    private void UnmapScattered(int regions, long bytes)
    {
        for (int i = 0; i < regions; i++)
        {
            ulong off = (ulong)(i * bytes);
            Type1Host.Check(_scattered.Unmap(Iova + off, (ulong)bytes), "unmap");
        }
    }

    [Benchmark(OperationsPerInvoke = Regions4K, Description = "map 4096 x 4 KiB, scattered (per page)")]
    public int Map4KRegions()
    {
        Type1Host h = _scattered;
        int r = 0;
        for (int i = 0; i < Regions4K; i++)
        {
            ulong off = (ulong)i << 12;
            r |= h.Map(_scatteredVa + off, Iova + off, 4096);
        }

        return r;
    }

    [Benchmark(OperationsPerInvoke = Pages2MRegions, Description = "map 256 x 2 MiB, scattered (per page)")]
    public int Map2MRegions()
    {
        Type1Host h = _scattered;
        int r = 0;
        for (int i = 0; i < Regions2M; i++)
        {
            ulong off = (ulong)i << 21;
            r |= h.Map(_scatteredVa + off, Iova + off, 2 << 20);
        }

        return r;
    }

    [Benchmark(OperationsPerInvoke = Pages1G, Description = "map 1 GiB, scattered (per page)")]
    public int Map1GRegion() => _scattered.Map(_scatteredVa, Iova, GiB);

    [IterationCleanup(Target = nameof(Map4KRegions))]
    public void UnmapAfterMap4K() => UnmapScattered(Regions4K, 4096);

    [IterationCleanup(Target = nameof(Map2MRegions))]
    public void UnmapAfterMap2M() => UnmapScattered(Regions2M, 2 << 20);

    [IterationCleanup(Target = nameof(Map1GRegion))]
    public void UnmapAfterMap1G() => UnmapScattered(1, GiB);

    [IterationSetup(Target = nameof(Unmap4KRegions))]
    public void MapBeforeUnmap4K() => MapScattered(Regions4K, 4096);

    [IterationSetup(Target = nameof(Unmap2MRegions))]
    public void MapBeforeUnmap2M() => MapScattered(Regions2M, 2 << 20);

    [IterationSetup(Target = nameof(Unmap1GRegion))]
    public void MapBeforeUnmap1G() => MapScattered(1, GiB);

    [Benchmark(OperationsPerInvoke = Regions4K, Description = "unmap 4096 x 4 KiB, scattered (per page)")]
    public int Unmap4KRegions()
    {
        Type1Host h = _scattered;
        int r = 0;
        for (int i = 0; i < Regions4K; i++)
        {
            r |= h.Unmap(Iova + ((ulong)i << 12), 4096);
        }

        return r;
    }

    [Benchmark(OperationsPerInvoke = Pages2MRegions, Description = "unmap 256 x 2 MiB, scattered (per page)")]
    public int Unmap2MRegions()
    {
        Type1Host h = _scattered;
        int r = 0;
        for (int i = 0; i < Regions2M; i++)
        {
            r |= h.Unmap(Iova + ((ulong)i << 21), 2 << 20);
        }

        return r;
    }

    [Benchmark(OperationsPerInvoke = Pages1G, Description = "unmap 1 GiB, scattered (per page)")]
    public int Unmap1GRegion() => _scattered.Unmap(Iova, GiB);

    // ---- 16 GiB of 2 MiB hugetlb pages

    [Benchmark(OperationsPerInvoke = Huge2MPages, Description = "map 16 GiB, 2 MiB hugetlb (per 2 MiB page)")]
    public int Map16GHuge2M() => _huge2M.Map(_huge2MVa, Iova, (ulong)(16 * GiB));

    [IterationCleanup(Target = nameof(Map16GHuge2M))]
    public void UnmapAfterMap16G() => Type1Host.Check(_huge2M.Unmap(Iova, (ulong)(16 * GiB)), "unmap");

    [IterationSetup(Target = nameof(Unmap16GHuge2M))]
    public void MapBeforeUnmap16G() => Type1Host.Check(_huge2M.Map(_huge2MVa, Iova, (ulong)(16 * GiB)), "map");

    [Benchmark(OperationsPerInvoke = Huge2MPages, Description = "unmap 16 GiB, 2 MiB hugetlb (per 2 MiB page)")]
    public int Unmap16GHuge2M() => _huge2M.Unmap(Iova, (ulong)(16 * GiB));

    // ---- 1 GiB hugetlb pages

    [Benchmark(Description = "map N GiB, 1 GiB hugetlb (whole region)")]
    public int MapHuge1G() => _huge1G.Map(_huge1GVa, Iova, (ulong)(HugeGiB * GiB));

    [IterationCleanup(Target = nameof(MapHuge1G))]
    public void UnmapAfterMapHuge1G() => Type1Host.Check(_huge1G.Unmap(Iova, (ulong)(HugeGiB * GiB)), "unmap");

    [IterationSetup(Target = nameof(UnmapHuge1G))]
    public void MapBeforeUnmapHuge1G() => Type1Host.Check(_huge1G.Map(_huge1GVa, Iova, (ulong)(HugeGiB * GiB)), "map");

    [Benchmark(Description = "unmap N GiB, 1 GiB hugetlb (whole region)")]
    public int UnmapHuge1G() => _huge1G.Unmap(Iova, (ulong)(HugeGiB * GiB));
}
