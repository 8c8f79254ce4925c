// The unmap half of vfio_unmap_unpin's walk: type1 discovers the frames it must unpin by
// translating each IOVA of the first domain (iommu_iova_to_phys) and then unmaps the
// physically contiguous run (iommu_unmap_fast). This does both in one pass over the leaves:
// it clears whole leaves from an IOVA and reports the frames they mapped as contiguous runs.
//
// Locking: see IoPageTable.cs (writers hold the domain's page-table lock).

using Vfio.Kernel;
using Vfio.Platform.Mm;

namespace Vfio.Platform.Iommu.Hw;

public sealed partial class IoPageTable
{
    /// <summary>
    /// Clears the leaves mapping [<paramref name="iova"/>, +<paramref name="size"/>) in order
    /// and appends the frames they mapped to <paramref name="runs"/> (from
    /// <paramref name="runCount"/>), merging physically contiguous leaves. Stops at a hole,
    /// at a leaf that extends past the range or starts before it (it is left whole), or when
    /// <paramref name="runs"/> is full. Returns the bytes cleared. Cleared pages and emptied
    /// tables go on <paramref name="gather"/> as for <see cref="UnmapPages"/>. Caller holds
    /// the page-table lock.
    /// </summary>
    public long UnmapCollectLocked(ulong iova, long size, Span<PfnRun> runs, ref int runCount, ref IotlbGather gather)
    {
        AssertWriterHeld();
        if (gather.Table is not null && !ReferenceEquals(gather.Table, this))
        {
            throw new InvalidOperationException("unmap: the gather already holds page-table pages of another domain; sync it first");
        }

        Span<int> path = stackalloc int[5];
        long unmapped = 0;
        while (unmapped < size && iova < _limit)
        {
            int t = _root;
            path[4] = t;
            int lv = 4;
            while (true)
            {
                ulong e = _tables[t][IndexAt(iova, lv)];
                if (e == 0)
                {
                    return unmapped;
                }

                if (IsLeaf(e, lv))
                {
                    break;
                }

                t = ChildOf(e);
                lv--;
                path[lv] = t;
            }

            long leaf = LevelSize(lv);
            if ((iova & (ulong)(leaf - 1)) != 0 || leaf > size - unmapped)
            {
                return unmapped;
            }

            ulong[] table = _tables[t];
            int first = IndexAt(iova, lv);
            gather.AddPageLocked(this, iova, leaf);
            long leafPages = leaf >> PhysMem.PageShift;
            bool stop = false;
            int i = first;
            for (; i < Entries; i++)
            {
                ulong e = table[i];
                if (e == 0 || !IsLeaf(e, lv))
                {
                    stop = e == 0;
                    break;
                }

                if (unmapped + leaf > size)
                {
                    break;
                }

                long pfn = (long)((e & PteAddrMask) >> PhysMem.PageShift);
                if (runCount > 0 && runs[runCount - 1].End == pfn)
                {
                    runs[runCount - 1] = new PfnRun(runs[runCount - 1].Pfn, runs[runCount - 1].Count + leafPages);
                }
                else if (runCount < runs.Length)
                {
                    runs[runCount++] = new PfnRun(pfn, leafPages);
                }
                else
                {
                    stop = true;
                    break;
                }

                Volatile.Write(ref table[i], 0UL);
                unmapped += leaf;
            }

            int cleared = i - first;
            AddLeaves(lv, -cleared);
            _kernel?.Cost.Charge(CostOp.PteClear, cleared);
            _used[t] -= (short)cleared;
            if (cleared > 1)
            {
                gather.AddRange(iova + (ulong)leaf, (cleared - 1) * leaf);
            }

            CollapseEmptyLocked(path, lv, iova, ref gather);
            iova += (ulong)(cleared * leaf);
            if (stop || cleared == 0)
            {
                return unmapped;
            }
        }

        return unmapped;
    }
}
