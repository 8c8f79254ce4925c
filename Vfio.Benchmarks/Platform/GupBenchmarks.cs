// Long-term pinning, the way a type1 map does it: pin_user_pages_remote in batches of
// 512 pages into contiguous runs, then unpin. Targets: pin + unpin of 1 GiB of populated
// 4 KiB pages at most 5 ns per page; of 2 MiB hugetlb pages at most 50 ns per 2 MiB
// page; no allocation per page.

using BenchmarkDotNet.Attributes;
using Vfio.Platform;
using Vfio.Platform.Mm;
using Vfio.Platform.Proc;

namespace Vfio.Benchmarks.Platform;

[MemoryDiagnoser]
public class GupBenchmarks
{
    private const long GiB = 1L << 30;
    private const int SmallPages = (int)(GiB >> 12);
    private const int HugePages = (int)(GiB >> 21);
    private const int Batch = 512; // VFIO_BATCH_MAX_CAPACITY

    private readonly PfnRun[] _runs = new PfnRun[Batch];
    private SimProcess _scattered = null!;
    private SimProcess _contiguous = null!;
    private SimProcess _huge = null!;
    private ulong _scatteredBase;
    private ulong _contiguousBase;
    private ulong _hugeBase;

    [GlobalSetup]
    public void Setup()
    {
        (_scattered, _scatteredBase) = Populated(new MemoryConfig { RamBytes = 4 * GiB, Policy = AllocationPolicy.Scattered }, MapFlags.None);
        (_contiguous, _contiguousBase) = Populated(new MemoryConfig { RamBytes = 4 * GiB, Policy = AllocationPolicy.Contiguous }, MapFlags.None);
        (_huge, _hugeBase) = Populated(new MemoryConfig { RamBytes = 8 * GiB, HugePages2M = HugePages }, MapFlags.MAP_HUGETLB | MapFlags.MAP_HUGE_2MB);
    }

    private static (SimProcess, ulong) Populated(MemoryConfig mem, MapFlags extra)
    {
        var m = new SimMachine(new MachineConfig { Memory = mem });
        SimProcess p = m.CreateProcess("qemu");
        long addr = p.Mmap(0, (ulong)GiB, Prot.PROT_READ | Prot.PROT_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_POPULATE | extra);
        if (addr < 0)
        {
            throw new InvalidOperationException($"mmap failed: {addr}");
        }

        return (p, (ulong)addr);
    }

    [Benchmark(OperationsPerInvoke = SmallPages, Description = "pin+unpin 1 GiB, 4 KiB pages, scattered (per page)")]
    public long Scattered4K() => PinUnpin(_scattered, _scatteredBase, SmallPages);

    [Benchmark(OperationsPerInvoke = SmallPages, Description = "pin+unpin 1 GiB, 4 KiB pages, contiguous (per page)")]
    public long Contiguous4K() => PinUnpin(_contiguous, _contiguousBase, SmallPages);

    [Benchmark(OperationsPerInvoke = HugePages, Description = "pin+unpin 1 GiB, 2 MiB hugetlb pages (per 2 MiB page)")]
    public long Huge2M() => PinUnpin(_huge, _hugeBase, SmallPages);

    private long PinUnpin(SimProcess p, ulong start, long pages)
    {
        MmStruct mm = p.Mm;
        PhysMem mem = p.Machine.Memory;
        long done = 0;
        Span<PfnRun> runs = _runs;
        while (done < pages)
        {
            long n = mm.PinUserPages(start + (ulong)(done << 12), pages - done, GupFlags.FOLL_LONGTERM | GupFlags.FOLL_WRITE, runs, out int count);
            if (n <= 0)
            {
                throw new InvalidOperationException($"pin failed: {n}");
            }

            mem.Unpin(runs[..count], dirty: true);
            done += n;
        }

        return done;
    }
}
