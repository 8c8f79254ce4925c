// Not a kernel model: one measured point of a map sweep and the sweep's result.

using Vfio.Kernel;

namespace Vfio.Sim.Bench;

/// <summary>
/// One point of a sweep: mapping <see cref="Size"/> bytes of a buffer backed by pages of
/// <see cref="PageSize"/> at IOVA 0, then unmapping it. Wall times are the best of the
/// repetitions; counts and modelled times are those of the last repetition (every repetition
/// after the warm-up does the same work, so they are the same in each).
/// </summary>
public sealed record MapBenchRow
{
    /// <summary>The mapped size in bytes.</summary>
    public required long Size { get; init; }

    /// <summary>The page size backing the buffer in bytes (4 KiB, 2 MiB or 1 GiB).</summary>
    public required long PageSize { get; init; }

    /// <summary><c>scattered</c> or <c>contiguous</c> (4 KiB pages); <c>hugetlb</c> for pool pages, which come in address order.</summary>
    public required string Placement { get; init; }

    /// <summary>Pages of <see cref="PageSize"/> in the mapping.</summary>
    public long Pages => Size / PageSize;

    /// <summary>The series this point belongs to: <c>4K scattered</c>, <c>2M hugetlb</c>.</summary>
    public string Series => $"{MapBench.FormatSize(PageSize)} {Placement}";

    /// <summary>Wall time of VFIO_IOMMU_MAP_DMA in nanoseconds, best of the repetitions.</summary>
    public required double MapNs { get; init; }

    /// <summary>Wall time of VFIO_IOMMU_UNMAP_DMA in nanoseconds, best of the repetitions.</summary>
    public required double UnmapNs { get; init; }

    /// <summary>Wall time of the map per page (best of the repetitions).</summary>
    public double MapNsPerPage => MapNs / Pages;

    /// <summary>Wall time of the unmap per page (best of the repetitions).</summary>
    public double UnmapNsPerPage => UnmapNs / Pages;

    /// <summary>What the cost model charged for the map (null without a model).</summary>
    public CostCounters? MapCost { get; init; }

    /// <summary>What the cost model charged for the unmap (null without a model).</summary>
    public CostCounters? UnmapCost { get; init; }

    /// <summary>Modelled time of the map per page (null without a model).</summary>
    public double? ModelledMapNsPerPage => MapCost is { } c ? c.ModelledPs / 1000.0 / Pages : null;

    /// <summary>Modelled time of the unmap per page (null without a model).</summary>
    public double? ModelledUnmapNsPerPage => UnmapCost is { } c ? c.ModelledPs / 1000.0 / Pages : null;

    /// <summary>4 KiB pages pinned by the map (nr_foll_pin_acquired).</summary>
    public required long Pins { get; init; }

    /// <summary>4 KiB pages unpinned by the unmap (nr_foll_pin_released).</summary>
    public required long Unpins { get; init; }

    /// <summary>I/O page-table leaves the map wrote (any size).</summary>
    public required long PteWrites { get; init; }

    /// <summary>I/O page-table pages the mapping holds (taken from the pool or allocated).</summary>
    public required long Tables { get; init; }

    /// <summary>IOTLB invalidation requests the unmap issued.</summary>
    public required long IotlbInvalidations { get; init; }

    /// <summary>IOTLB entries the unmap's invalidations dropped.</summary>
    public required long IotlbEntriesInvalidated { get; init; }

    /// <summary>Domain-wide and global IOTLB flushes the unmap issued.</summary>
    public required long IotlbFlushes { get; init; }
}

/// <summary>The rows of a sweep and the points it did not run, with why.</summary>
public sealed record MapBenchResult
{
    /// <summary>The measured points, series by series, sizes ascending.</summary>
    public required IReadOnlyList<MapBenchRow> Rows { get; init; }

    /// <summary>What was left out or relabelled, one sentence each (a size below the page size, placement on hugetlb pages).</summary>
    public required IReadOnlyList<string> Notes { get; init; }

    /// <summary>The options the sweep ran with.</summary>
    public required MapBenchOptions Options { get; init; }
}
