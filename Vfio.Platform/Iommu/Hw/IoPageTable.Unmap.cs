// Models drivers/iommu/io-pgtable-arm.c (v6.12): arm_lpae_unmap_pages / __arm_lpae_unmap
// and arm_lpae_split_blk_unmap — clear leaves (or whole tables) at the page size's level,
// splitting a larger leaf on the way down, gathering what was cleared for the IOTLB
// flush and the tables for freeing after it.
//
// Locking: see IoPageTable.cs (writers hold the domain's page-table lock).

using Vfio.Kernel;

namespace Vfio.Platform.Iommu.Hw;

public sealed partial class IoPageTable
{
    /// <summary>
    /// ->unmap_pages: clears <paramref name="pgcount"/> entries of <paramref name="pgsize"/>
    /// from <paramref name="iova"/> and returns the bytes unmapped, stopping at the first
    /// hole (0 when nothing is mapped at <paramref name="iova"/>, or on a bad page size or
    /// alignment). A leaf larger than <paramref name="pgsize"/> is split first and only the
    /// requested part unmapped (a split needs a table: when its allocation fails, the unmap
    /// stops there, as arm_lpae_split_blk_unmap returns 0); an entry at the page size's
    /// level that is a table is freed whole and counts <paramref name="pgsize"/>. Cleared
    /// pages are added to <paramref name="gather"/> and unlinked tables chained on it, to be
    /// freed when it syncs. Caller holds the page-table lock.
    /// </summary>
    public long UnmapPages(ulong iova, long pgsize, long pgcount, ref IotlbGather gather)
    {
        int level = LevelOf(pgsize);
        if (level == 0 || ((ulong)pgsize & _pgsizeBitmap) == 0 || (iova & (ulong)(pgsize - 1)) != 0 || iova >= _limit || pgcount <= 0)
        {
            return 0;
        }

        if (gather.Table is not null && !ReferenceEquals(gather.Table, this))
        {
            throw new InvalidOperationException("unmap_pages: the gather already holds page-table pages of another domain; sync it first");
        }

        Span<int> path = stackalloc int[5];
        long unmapped = 0;
        while (pgcount > 0 && iova < _limit)
        {
            // Down to the table holding `level` entries, splitting larger leaves on the way.
            int t = _root;
            path[4] = t;
            for (int lv = 4; lv > level; lv--)
            {
                ulong[] up = _tables[t];
                int idx = IndexAt(iova, lv);
                ulong pte = up[idx];
                if (pte == 0)
                {
                    return unmapped;
                }

                if ((pte & PteLeaf) == 0)
                {
                    t = ChildOf(pte);
                }
                else if (_kernel is not null && _kernel.Faults.ShouldFail(AllocFaultSite))
                {
                    return unmapped;
                }
                else
                {
                    t = SplitLocked(up, idx, pte, lv);
                }

                path[lv - 1] = t;
            }

            ulong[] table = _tables[t];
            int first = IndexAt(iova, level);
            int n = (int)Math.Min(pgcount, Entries - first);
            if (table[first] != 0)
            {
                // iommu_iotlb_gather_add_page() before the clearing: a sync it needs happens
                // before the tables cleared below join the chain, so they wait for their own flush.
                gather.AddPageLocked(this, iova, pgsize);
            }

            int i = 0;
            for (; i < n; i++)
            {
                ref ulong slot = ref table[first + i];
                ulong pte = slot;
                if (pte == 0)
                {
                    break;
                }

                Volatile.Write(ref slot, 0UL);
                if (IsLeaf(pte, level))
                {
                    AddLeaves(level, -1);
                    _kernel?.Cost.Charge(CostOp.PteClear);
                }
                else
                {
                    // __arm_lpae_unmap: a table where a leaf of this size would be goes whole.
                    DeferFreeSubtreeLocked(ChildOf(pte), level - 1, ref gather);
                }
            }

            _used[t] -= (short)i;
            long done = i * pgsize;
            if (i > 1)
            {
                gather.AddRange(iova + (ulong)pgsize, done - pgsize);
            }

            CollapseEmptyLocked(path, level, iova, ref gather);
            unmapped += done;
            if (i < n)
            {
                return unmapped;
            }

            iova += (ulong)done;
            pgcount -= n;
        }

        return unmapped;
    }

    /// <summary>
    /// arm_lpae_split_blk_unmap(): replaces the leaf <paramref name="leaf"/> at
    /// <paramref name="level"/> with a table of 512 leaves one level down that map the same
    /// range with the same protection, and returns the new table.
    /// </summary>
    private int SplitLocked(ulong[] parentTable, int idx, ulong leaf, int level)
    {
        DebugAssertWriterHeld();
        int child = AllocTableLocked();
        ulong[] table = _tables[child];
        int childLevel = level - 1;
        ulong step = (ulong)LevelSize(childLevel);
        ulong bits = leaf & ~(PteAddrMask | PteLeaf);
        if (childLevel > 1)
        {
            bits |= PteLeaf;
        }

        ulong pte = (leaf & PteAddrMask) | bits;
        for (int i = 0; i < Entries; i++)
        {
            table[i] = pte;
            pte += step;
        }

        _used[child] = Entries;
        // The table is complete before the parent points at it: a walk sees the old leaf or the new table.
        Volatile.Write(ref parentTable[idx], ((ulong)child << 12) | TableEntryBits);
        AddLeaves(level, -1);
        AddLeaves(childLevel, Entries);
        return child;
    }

    /// <summary>Unlinks the tables on <paramref name="path"/> that the unmap left empty, deepest first, onto the gather's chain.</summary>
    private void CollapseEmptyLocked(Span<int> path, int level, ulong iova, ref IotlbGather gather)
    {
        DebugAssertWriterHeld();
        for (int lv = level; lv < 4; lv++)
        {
            int t = path[lv];
            if (_used[t] != 0)
            {
                return;
            }

            int parent = path[lv + 1];
            Volatile.Write(ref _tables[parent][IndexAt(iova, lv + 1)], 0UL);
            _used[parent]--;
            DeferFreeLocked(t, ref gather);
        }
    }
}
