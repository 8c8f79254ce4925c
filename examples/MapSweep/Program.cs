// MapSweep: for performance researchers sizing DMA mappings.
//
// It maps and unmaps buffers of 2 MiB to 1 GiB for DMA (VFIO_IOMMU_MAP_DMA and UNMAP_DMA
// through type1) backed by 4 KiB pages, 2 MiB hugetlb pages and 1 GiB hugetlb pages, and
// prints the wall time of each map and unmap, the time per 4 KiB of buffer, and what the
// IOMMU did: the leaves type1 installed in the I/O page table and the IOTLB invalidations
// the unmap cost. The hugetlb pools come from a machine description (the default machine
// with more memory); the real-threads scheduler keeps it fast. Wall times are this
// machine's and vary from run to run; the IOMMU's counts do not.

using System.Diagnostics;
using System.Globalization;
using Vfio.Kernel;
using Vfio.Platform.Iommu;
using Vfio.Platform.Iommu.Hw;
using Vfio.Platform.Machine;
using Vfio.Platform.Mm;
using Vfio.Platform.Proc;
using Vfio.Sim;

const string Edu = "0000:01:00.0";
const ulong MiB = 1 << 20, GiB = 1 << 30;
const int Repeats = 5;
ulong[] sizes = [2 * MiB, 8 * MiB, 32 * MiB, 128 * MiB, 512 * MiB, GiB];
(string Name, MapFlags Flags)[] backings =
[
    ("4 KiB", MapFlags.MAP_POPULATE),
    ("2 MiB", MapFlags.MAP_POPULATE | MapFlags.MAP_HUGETLB | MapFlags.MAP_HUGE_2MB),
    ("1 GiB", MapFlags.MAP_POPULATE | MapFlags.MAP_HUGETLB | MapFlags.MAP_HUGE_1GB),
];

MachineDescription machine = MachineDescriptionReader.Default with
{
    Name = "map-sweep",
    Memory = new MemoryConfig { RamBytes = 8L << 30, HugePages2M = 512, HugePages1G = 1 },
};
VfioSim sim = VfioSim.CreateBuilder()
    .UseMachine(machine)
    .UseScheduler(SchedulerMode.Real)
    .AddVfioPci()
    .Build();
sim.Bind(Edu);

var table = new List<string>();
RunResult run = sim.Run(() =>
{
    SimProcess bench = sim.Spawn("map-sweep");
    using VfioSession session = sim.Open(bench, Edu);
    IoPageTable pageTable = sim.Device(Edu).IommuGroup!.Domain!.PageTable!;
    Iotlb iotlb = sim.Machine.Iommu!.Hardware.Iotlb;
    foreach ((string backing, MapFlags flags) in backings)
    {
        // One buffer per backing, faulted in up front, so the sweep times type1 and not page faults.
        using UserBuffer buffer = VfioSim.Allocate(bench, GiB, flags);
        foreach (ulong size in sizes)
        {
            double bestMap = double.MaxValue, bestUnmap = double.MaxValue;
            string leaves = "";
            long invalidations = 0;
            for (int i = 0; i < Repeats; i++)
            {
                long t0 = Stopwatch.GetTimestamp();
                session.Container.MapDma(buffer.Address, 0, size);
                long t1 = Stopwatch.GetTimestamp();
                leaves = Leaves(pageTable);
                long before = iotlb.Invalidations;
                session.Container.UnmapDma(0, size);
                long t2 = Stopwatch.GetTimestamp();
                invalidations = iotlb.Invalidations - before;
                bestMap = Math.Min(bestMap, Stopwatch.GetElapsedTime(t0, t1).TotalMicroseconds);
                bestUnmap = Math.Min(bestUnmap, Stopwatch.GetElapsedTime(t1, t2).TotalMicroseconds);
            }

            double pages = size / 4096.0;
            table.Add(string.Create(CultureInfo.InvariantCulture,
                $"{backing,-8} {Size(size),8} {bestMap,12:0.0} {bestMap * 1000 / pages,10:0.0} {bestUnmap,12:0.0} {bestUnmap * 1000 / pages,10:0.0}  {leaves,-14} {invalidations,6}"));
        }
    }
});

Console.WriteLine($"{"pages",-8} {"size",8} {"map (µs)",12} {"ns per 4K",10} {"unmap (µs)",12} {"ns per 4K",10}  {"IOMMU leaves",-14} {"IOTLB inval",6}");
table.ForEach(Console.WriteLine);
Console.WriteLine($"best of {Repeats} runs each; {sim}");
IReadOnlyList<string> broken = sim.CheckInvariants();
if (!run.Passed || broken.Count > 0 || sim.PinnedPages != 0)
{
    Console.WriteLine($"the sweep went wrong: {run.Describe()} {string.Join("; ", broken)} {sim.PinnedPages} pages still pinned");
    return 1;
}

return 0;

// The leaves of the I/O page table while the buffer is mapped: 512x4K, 4x2M, 1x1G.
static string Leaves(IoPageTable pt)
{
    var parts = new List<string>();
    if (pt.Leaves4K > 0)
    {
        parts.Add($"{pt.Leaves4K}x4K");
    }

    if (pt.Leaves2M > 0)
    {
        parts.Add($"{pt.Leaves2M}x2M");
    }

    if (pt.Leaves1G > 0)
    {
        parts.Add($"{pt.Leaves1G}x1G");
    }

    return string.Join('+', parts);
}

static string Size(ulong bytes) => bytes >= GiB ? $"{bytes / GiB} GiB" : $"{bytes / MiB} MiB";
