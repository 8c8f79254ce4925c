// Models struct iommu_iotlb_gather and its helpers in include/linux/iommu.h (v6.12):
// the IOVA range an unmap has cleared and whose IOTLB entries must be invalidated, the
// page size it was cleared at, and the page-table pages to free once the invalidation is
// done (the kernel's freelist). The table chain is intrusive: it threads through the page
// table's own per-table link array, so gathering allocates nothing.
//
// Locking: a gather belongs to one caller; the tables it chains belong to the domain's
// page table and are only touched under that domain's page-table lock.

using Vfio.Platform.Iommu.Hw;

namespace Vfio.Platform.Iommu;

/// <summary>struct iommu_iotlb_gather: what an unmap must invalidate and free once it syncs.</summary>
public struct IotlbGather
{
    /// <summary>iommu_iotlb_gather_init(): an empty gather (start ULONG_MAX, end 0, no page size).</summary>
    public IotlbGather()
    {
        Start = ulong.MaxValue;
    }

    /// <summary>First IOVA gathered (ULONG_MAX when empty).</summary>
    public ulong Start { readonly get; private set; }

    /// <summary>Last IOVA gathered, inclusive (0 when empty).</summary>
    public ulong End { readonly get; private set; }

    /// <summary>The page size the range was unmapped at (0 when empty).</summary>
    public long Pgsize { readonly get; private set; }

    /// <summary>Page-table pages waiting for the sync before they go back to the pool.</summary>
    public readonly int TablesToFree => FreeCount;

    /// <summary>True when nothing was gathered.</summary>
    public readonly bool IsEmpty => End == 0 && Start == ulong.MaxValue;

    // Head of the chain of tables to free: table index + 1 (0 = empty), linked through
    // IoPageTable's link array; FreeCount tables on it, all from Table.
    internal int FreeHead;
    internal int FreeCount;
    internal IoPageTable? Table;

    /// <summary>
    /// iommu_iotlb_gather_is_disjoint(): true when [<paramref name="iova"/>, +<paramref name="size"/>)
    /// neither overlaps nor touches the gathered range (an empty gather is never disjoint).
    /// </summary>
    public readonly bool IsDisjoint(ulong iova, long size)
    {
        ulong end = iova + (ulong)size - 1;
        return End != 0 && (end + 1 < Start || iova > End + 1);
    }

    /// <summary>iommu_iotlb_gather_add_range(): widens the range to cover [<paramref name="iova"/>, +<paramref name="size"/>).</summary>
    public void AddRange(ulong iova, long size)
    {
        ulong end = iova + (ulong)size - 1;
        if (Start > iova)
        {
            Start = iova;
        }

        if (End < end)
        {
            End = end;
        }
    }

    /// <summary>
    /// iommu_iotlb_gather_add_page(): gathers one page unmapped at <paramref name="size"/>.
    /// When the page is disjoint from the gathered range or of another size, the gather is
    /// synced first (its range invalidated on <paramref name="domain"/>, its tables freed).
    /// </summary>
    public void AddPage(IommuDomain domain, ulong iova, long size)
    {
        ArgumentNullException.ThrowIfNull(domain);
        if (NeedsSyncBefore(iova, size))
        {
            domain.IotlbSync(ref this);
        }

        Take(iova, size);
    }

    /// <summary>As <see cref="AddPage(IommuDomain, ulong, long)"/>, from a page table that holds its domain's lock; the gather then belongs to <paramref name="table"/>.</summary>
    internal void AddPageLocked(IoPageTable table, ulong iova, long size)
    {
        table.DebugAssertWriterHeld();
        if (NeedsSyncBefore(iova, size))
        {
            table.SyncLocked(ref this);
        }

        Table = table;
        Take(iova, size);
    }

    private readonly bool NeedsSyncBefore(ulong iova, long size) => (Pgsize != 0 && Pgsize != size) || IsDisjoint(iova, size);

    private void Take(ulong iova, long size)
    {
        Pgsize = size;
        AddRange(iova, size);
    }

    /// <summary>Resets the range after a sync; the table chain must already be empty.</summary>
    internal void ResetRange()
    {
        Start = ulong.MaxValue;
        End = 0;
        Pgsize = 0;
    }
}
