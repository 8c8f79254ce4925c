// Not a kernel model: what a `vfio-sim bench map` sweep measures (sizes, page sizes,
// placements, design variants, kernel profile, cost model, repetitions).

using Vfio.Kernel;
using Vfio.Platform.Mm;

namespace Vfio.Sim.Bench;

/// <summary>
/// A sweep of VFIO_IOMMU_MAP_DMA / UNMAP_DMA over buffer sizes, page sizes and placements
/// (see <see cref="MapBench.Run"/>).
/// </summary>
public sealed record MapBenchOptions
{
    /// <summary>Buffer sizes in bytes, each a multiple of 4 KiB (<see cref="MapBench.ParseSizes"/> reads <c>4K..16G</c>).</summary>
    public IReadOnlyList<long> Sizes { get; init; } = [4L << 10];

    /// <summary>Page sizes backing the buffer: 4 KiB (anonymous), 2 MiB and 1 GiB (hugetlb).</summary>
    public IReadOnlyList<long> PageSizes { get; init; } = [MapBench.Page4K];

    /// <summary>Placements of anonymous 4 KiB pages; hugetlb pages always come from their pool in address order.</summary>
    public IReadOnlyList<AllocationPolicy> Placements { get; init; } = [AllocationPolicy.Scattered];

    /// <summary>Design variants, <c>KEY=VALUE</c> as <see cref="Races.DesignSettings"/> reads them.</summary>
    public IReadOnlyList<string> Designs { get; init; } = [];

    /// <summary>The kernel profile the machines boot as.</summary>
    public KernelProfile Profile { get; init; } = KernelProfile.Linux6_12;

    /// <summary>The cost model (modelled time per page is reported only with one), or null.</summary>
    public CostProfile? Model { get; init; }

    /// <summary>
    /// How long to map and unmap before the first measurement, so the runtime has compiled the
    /// hot path with full optimisation (it starts with quick code and recompiles what runs
    /// often after a delay). Default 500 ms; zero for counts only (wall times then include
    /// unoptimised code).
    /// </summary>
    public TimeSpan WarmUp { get; init; } = TimeSpan.FromMilliseconds(500);

    /// <summary>Timed map + unmap pairs per point, after one warm-up pair; the best is reported. Default 5.</summary>
    public int Repetitions { get; init; } = 5;
}
