// The emulated IOMMU: iommu_map / iommu_unmap of 1 GiB of physically contiguous memory
// as 4 KiB leaves (a 4 KiB-only pgsize bitmap, or a paddr misaligned by one page) and as
// 2 MiB leaves, and translation by the hardware with an IOTLB hit or a full walk.
// Targets: map ≤ 3 ns per 4 KiB page, ≤ 40 ns per 2 MiB leaf; unmap (one gathered flush)
// similar; translate ≤ 10 ns on an IOTLB hit, ≤ 40 ns with a 4-level walk; 0 B allocated.

using BenchmarkDotNet.Attributes;
using Vfio.Platform;
using Vfio.Platform.Iommu;
using Vfio.Platform.Mm;

namespace Vfio.Benchmarks.Platform;

[MemoryDiagnoser]
public class IommuBenchmarks
{
    private const long GiB = 1L << 30;
    private const int Pages4K = (int)(GiB >> 12);
    private const int Leaves2M = (int)(GiB >> 21);
    private const int Translations = 4096;
    private const ulong Iova = 1UL << 32;
    private const long Pa = 2 * GiB;
    private const IommuProt RW = IommuProt.Read | IommuProt.Write;

    private IommuDomain _only4K = null!;
    private IommuDomain _misaligned = null!;
    private IommuDomain _huge = null!;
    private IommuDomain _hit = null!;
    private IommuDomain _walk = null!;
    private IommuHardware _hw = null!;
    private IommuHardware _noTlb = null!;

    [GlobalSetup]
    public void Setup()
    {
        var m = new SimMachine(new MachineConfig { Memory = new MemoryConfig { RamBytes = 4 * GiB } });
        _hw = new IommuHardware(m.Kernel, m.Memory);
        _noTlb = new IommuHardware(m.Kernel, m.Memory, new IommuHardwareConfig { IotlbEntries = 0 });
        _only4K = new IommuHardware(m.Kernel, m.Memory, new IommuHardwareConfig { PgsizeBitmap = 1UL << 12 }).AllocDomain(IommuDomainType.Unmanaged);
        _misaligned = _hw.AllocDomain(IommuDomainType.Unmanaged);
        _huge = _hw.AllocDomain(IommuDomainType.Unmanaged);
        foreach ((IommuDomain d, long pa) in new[] { (_only4K, Pa), (_misaligned, Pa + 4096), (_huge, Pa) })
        {
            Check(d.Map(Iova, pa, GiB, RW));   // warm the table pool
            d.Unmap(Iova, GiB);
        }

        // Translation: 64 pages cached in the IOTLB; 1 GiB of 4 KiB pages behind no IOTLB.
        _hit = _hw.AllocDomain(IommuDomainType.Unmanaged);
        Check(_hit.Map(Iova, Pa + 4096, 64 * 4096, RW));
        _walk = _noTlb.AllocDomain(IommuDomainType.Unmanaged);
        Check(_walk.Map(Iova, Pa + 4096, GiB, RW));
        TranslateHit();
    }

    private static void Check(int ret)
    {
        if (ret != 0)
        {
            throw new InvalidOperationException($"iommu_map failed: {ret}");
        }
    }

    // ---- map

    [Benchmark(OperationsPerInvoke = Pages4K, Description = "map 1 GiB, 4 KiB leaves, 4K-only bitmap (per page)")]
    public int Map4K() => _only4K.Map(Iova, Pa, GiB, RW);

    [Benchmark(OperationsPerInvoke = Pages4K, Description = "map 1 GiB, 4 KiB leaves, misaligned paddr (per page)")]
    public int Map4KMisaligned() => _misaligned.Map(Iova, Pa + 4096, GiB, RW);

    [Benchmark(OperationsPerInvoke = Leaves2M, Description = "map 1 GiB, 2 MiB leaves (per leaf)")]
    public int Map2M() => _huge.Map(Iova, Pa, GiB, RW);

    [IterationCleanup(Targets = [nameof(Map4K), nameof(Map4KMisaligned), nameof(Map2M)])]
    public void UnmapAfterMap()
    {
        _only4K.Unmap(Iova, GiB);
        _misaligned.Unmap(Iova, GiB);
        _huge.Unmap(Iova, GiB);
    }

    // ---- unmap (iommu_unmap: one gather, one flush)

    [IterationSetup(Target = nameof(Unmap4K))]
    public void MapBeforeUnmap4K() => Check(_only4K.Map(Iova, Pa, GiB, RW));

    [Benchmark(OperationsPerInvoke = Pages4K, Description = "unmap 1 GiB, 4 KiB leaves, 4K-only bitmap (per page)")]
    public long Unmap4K() => _only4K.Unmap(Iova, GiB);

    [IterationSetup(Target = nameof(Unmap4KMisaligned))]
    public void MapBeforeUnmap4KMisaligned() => Check(_misaligned.Map(Iova, Pa + 4096, GiB, RW));

    [Benchmark(OperationsPerInvoke = Pages4K, Description = "unmap 1 GiB of 4 KiB leaves at 1 GiB granularity (per page)")]
    public long Unmap4KMisaligned() => _misaligned.Unmap(Iova, GiB);

    [IterationSetup(Target = nameof(Unmap2M))]
    public void MapBeforeUnmap2M() => Check(_huge.Map(Iova, Pa, GiB, RW));

    [Benchmark(OperationsPerInvoke = Leaves2M, Description = "unmap 1 GiB, 2 MiB leaves (per leaf)")]
    public long Unmap2M() => _huge.Unmap(Iova, GiB);

    // ---- translate

    [Benchmark(OperationsPerInvoke = Translations, Description = "translate, IOTLB hit")]
    public long TranslateHit()
    {
        IommuHardware hw = _hw;
        IommuDomain d = _hit;
        long sum = 0;
        for (int i = 0; i < Translations; i++)
        {
            hw.Translate(d, Iova + ((ulong)(i & 63) << 12) + 8, IommuAccess.Read, out long phys);
            sum += phys;
        }

        return sum;
    }

    [Benchmark(OperationsPerInvoke = Translations, Description = "translate, 4-level walk (no IOTLB)")]
    public long TranslateWalk()
    {
        IommuHardware hw = _noTlb;
        IommuDomain d = _walk;
        long sum = 0;
        for (int i = 0; i < Translations; i++)
        {
            // Stride 67 pages: a different level-1 table on most accesses.
            hw.Translate(d, Iova + ((ulong)((i * 67) & (Pages4K - 1)) << 12), IommuAccess.Write, out long phys);
            sum += phys;
        }

        return sum;
    }
}
