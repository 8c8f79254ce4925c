// MapSweep: for performance researchers sizing DMA mappings.
//
// It runs the map sweep of `vfio-sim bench map` through the public API (Vfio.Sim.Bench):
// VFIO_IOMMU_MAP_DMA and UNMAP_DMA (type1) of 2 MiB to 1 GiB backed by scattered 4 KiB
// pages, 2 MiB hugetlb pages and 1 GiB hugetlb pages, each page size on a machine sized for
// it (the hugetlb pools too), with the cost model on. It prints wall time and modelled time
// per page and what the IOMMU did, writes the CSV and SVG plot next to the program, and
// checks the counts that must hold: one pin per 4 KiB page, one I/O page-table leaf per
// page, and the same modelled time on a second run. Wall times are this machine's and vary
// from run to run; the counts and modelled times do not.

using System.Globalization;
using Vfio.Kernel;
using Vfio.Sim.Bench;

var options = new MapBenchOptions
{
    Sizes = MapBench.ParseSizes("2M..1G"),
    PageSizes = MapBench.ParsePageSizes("4K,2M,1G"),
    Placements = MapBench.ParsePlacements("scattered"),
    Model = CostProfile.LinuxX86,
    Repetitions = 3,
    WarmUp = TimeSpan.FromMilliseconds(200),
};
MapBenchResult result = MapBench.Run(options);

Console.WriteLine($"{"series",-14} {"size",6} {"pages",8} {"map ns/pg",10} {"unmap ns/pg",11} {"model map",10} {"model unmap",11} {"pins",8} {"leaves",7} {"IOTLB inv",9}");
foreach (MapBenchRow r in result.Rows)
{
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"{r.Series,-14} {MapBench.FormatSize(r.Size),6} {r.Pages,8} {r.MapNsPerPage,10:0.0} {r.UnmapNsPerPage,11:0.0} {r.ModelledMapNsPerPage,10:0.0} {r.ModelledUnmapNsPerPage,11:0.0} {r.Pins,8} {r.PteWrites,7} {r.IotlbInvalidations,9}"));
}

result.Notes.ToList().ForEach(n => Console.WriteLine($"note: {n}"));
string dir = AppContext.BaseDirectory;
File.WriteAllText(Path.Combine(dir, "map-sweep.csv"), MapBench.ToCsv(result));
File.WriteAllText(Path.Combine(dir, "map-sweep.svg"), MapBench.ToSvg(result));
Console.WriteLine($"wall time best of {options.Repetitions}; CSV and SVG in {dir}");

// The checks: every page pinned once and unpinned, one leaf per 4 KiB page, one per huge page
// at most (type1 may join 2 MiB pages into a 1 GiB leaf), and modelled time repeatable.
var broken = new List<string>();
foreach (MapBenchRow r in result.Rows)
{
    long pages4K = r.Size / MapBench.Page4K;
    if (r.Pins != pages4K || r.Unpins != pages4K)
    {
        broken.Add($"{r.Series} {MapBench.FormatSize(r.Size)}: {r.Pins} pins and {r.Unpins} unpins for {pages4K} pages");
    }

    if (r.PageSize == MapBench.Page4K ? r.PteWrites != r.Pages : r.PteWrites < 1 || r.PteWrites > r.Pages)
    {
        broken.Add($"{r.Series} {MapBench.FormatSize(r.Size)}: {r.PteWrites} leaves for {r.Pages} pages");
    }
}

MapBenchResult again = MapBench.Run(options with { Sizes = [2L << 20], Repetitions = 1, WarmUp = TimeSpan.Zero });
foreach (MapBenchRow r in again.Rows)
{
    MapBenchRow first = result.Rows.First(x => x.Series == r.Series && x.Size == r.Size);
    if (first.MapCost != r.MapCost || first.UnmapCost != r.UnmapCost)
    {
        broken.Add($"{r.Series} 2M: modelled time differs between two runs ({first.ModelledMapNsPerPage} vs {r.ModelledMapNsPerPage} ns per page)");
    }
}

if (broken.Count > 0)
{
    Console.WriteLine($"the sweep went wrong: {string.Join("; ", broken)}");
    return 1;
}

return 0;
