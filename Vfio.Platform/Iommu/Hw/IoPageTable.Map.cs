// Models drivers/iommu/io-pgtable-arm.c (v6.12): arm_lpae_map_pages / __arm_lpae_map —
// descend to the leaf level allocating tables, then fill leaves up to the end of the
// table, one table at a time — plus the optional promotion of a full table into a leaf.
//
// Locking: see IoPageTable.cs (writers hold the domain's page-table lock).

using Vfio.Kernel;
using Vfio.Platform.Mm;

namespace Vfio.Platform.Iommu.Hw;

public sealed partial class IoPageTable
{
    // The level-1 table that maps the 2 MiB region _leafCursorKey (iova >> 21), found by
    // the last descent for a 4 KiB map; ulong.MaxValue when none. Writers only.
    private ulong _leafCursorKey = ulong.MaxValue;
    private int _leafCursorTable;

    /// <summary>Fault-injection site of page-table allocations.</summary>
    public const string AllocFaultSite = "iommu_alloc_pages:io_pgtable";

    /// <summary>
    /// ->map_pages: maps <paramref name="pgcount"/> leaves of <paramref name="pgsize"/>
    /// (4 KiB, 2 MiB or 1 GiB, in the pgsize bitmap) from <paramref name="iova"/> to
    /// <paramref name="paddr"/>. Returns 0 or -errno: -EINVAL (bad or unaligned page size),
    /// -EFAULT (IOVA beyond the address width), -ERANGE (physical address beyond 52 bits),
    /// -EEXIST (an entry in the range is present, or a leaf above covers it), -ENOMEM.
    /// <paramref name="mapped"/> is what this call mapped, also on failure (the caller
    /// unwinds it). Without IOMMU_READ or IOMMU_WRITE nothing is mapped and the result is 0,
    /// as in io-pgtable-arm. Caller holds the page-table lock.
    /// </summary>
    public int MapPages(ulong iova, long paddr, long pgsize, long pgcount, IommuProt prot, out long mapped)
    {
        mapped = 0;
        ArgumentOutOfRangeException.ThrowIfNegative(paddr);
        ArgumentOutOfRangeException.ThrowIfNegative(pgcount);
        int level = LevelOf(pgsize);
        if (level == 0 || ((ulong)pgsize & _pgsizeBitmap) == 0 || ((iova | (ulong)paddr) & (ulong)(pgsize - 1)) != 0)
        {
            return Errno.EINVAL.Negative();
        }

        if (pgcount == 0)
        {
            return 0;
        }

        ulong total = (ulong)pgsize * (ulong)pgcount;
        if (iova >= _limit || total > _limit - iova)
        {
            return Errno.EFAULT.Negative();
        }

        if ((ulong)paddr + total > (1UL << PhysAddressBits))
        {
            return Errno.ERANGE.Negative();
        }

        if ((prot & (IommuProt.Read | IommuProt.Write)) == 0)
        {
            return 0;
        }

        ulong bits = PteBits(prot) | (level > 1 ? PteLeaf : 0);
        ulong step = (ulong)pgsize;
        while (pgcount > 0)
        {
            int err = DescendForMapLocked(iova, level, out int t);
            if (err != 0)
            {
                return err;
            }

            ulong[] table = _tables[t];
            int first = IndexAt(iova, level);
            int n = (int)Math.Min(pgcount, Entries - first);
            ulong pte = (ulong)paddr | bits;
            int i = 0;
            for (; i < n; i++)
            {
                ref ulong slot = ref table[first + i];
                if (slot != 0)
                {
                    break;
                }

                slot = pte;
                pte += step;
            }

            _used[t] += (short)i;
            AddLeaves(level, i);
            _kernel?.Cost.Charge(CostOp.PteWrite, i);
            long done = i * pgsize;
            mapped += done;
            if (i < n)
            {
                return Errno.EEXIST.Negative();
            }

            if (_promote && _used[t] == Entries)
            {
                PromoteLocked(iova, level);
            }

            iova += (ulong)done;
            paddr += done;
            pgcount -= n;
        }

        return 0;
    }

    /// <summary>
    /// The batched leaf writer behind iommu_map_sg for scattered memory: maps the leading
    /// runs of <paramref name="runs"/> that are shorter than 2 MiB (so iommu_pgsize could
    /// only choose 4 KiB leaves for them) at consecutive IOVAs from <paramref name="iova"/>,
    /// descending once per leaf table and filling its entries in one loop. Stops before the
    /// first run of 2 MiB or more (the caller maps it with iommu_pgsize) and reports how
    /// many runs it consumed in <paramref name="consumed"/>. The result is exactly what one
    /// <see cref="MapPages"/> call of 4 KiB pages per run would give, checks and errnos in
    /// the same order (-EINVAL unaligned IOVA, -EFAULT beyond the address width, -ERANGE
    /// beyond 52 bits — each for the whole run before any of its pages — then -ENOMEM from
    /// a table allocation or -EEXIST); <paramref name="mapped"/> is the bytes written, also
    /// on failure, for the caller to unwind. Protections without READ and WRITE, and the
    /// promotion variant, take the per-run path. Caller holds the page-table lock.
    /// </summary>
    public int MapSmallRunsLocked(ulong iova, ReadOnlySpan<PfnRun> runs, IommuProt prot, out long mapped, out int consumed)
    {
        AssertWriterHeld();
        mapped = 0;
        consumed = 0;
        if (_promote || (prot & (IommuProt.Read | IommuProt.Write)) == 0)
        {
            return MapSmallRunsEachLocked(iova, runs, prot, ref mapped, ref consumed);
        }

        ulong bits = PteBits(prot);
        const ulong maxPa = 1UL << PhysAddressBits;
        ulong[]? table = null;
        int t = NoTable;
        int slot = Entries;
        int written = 0;
        int err = 0;
        int r = 0;
        for (; r < runs.Length; r++)
        {
            long count = runs[r].Count;
            if (count >= LargeRunPages)
            {
                break;
            }

            if (count == 0)
            {
                continue;
            }

            long pfn = runs[r].Pfn;
            ArgumentOutOfRangeException.ThrowIfNegative(pfn);
            ulong paddr = (ulong)pfn << 12;
            ulong total = (ulong)count << 12;
            if ((iova & (ulong)(Size4K - 1)) != 0)
            {
                err = Errno.EINVAL.Negative();
                break;
            }

            if (iova >= _limit || total > _limit - iova)
            {
                err = Errno.EFAULT.Negative();
                break;
            }

            if (paddr + total > maxPa)
            {
                err = Errno.ERANGE.Negative();
                break;
            }

            ulong pte = paddr | bits;
            long k = 0;
            while (k < count)
            {
                if (slot == Entries)
                {
                    if (written != 0)
                    {
                        FlushLeafBatch(t, written);
                        written = 0;
                    }

                    err = DescendForMapLocked(iova, 1, out t);
                    if (err != 0)
                    {
                        goto done;
                    }

                    table = _tables[t];
                    slot = IndexAt(iova, 1);
                }

                int n = (int)Math.Min(count - k, Entries - slot);
                int i = 0;
                for (; i < n; i++)
                {
                    ref ulong e = ref table![slot + i];
                    if (e != 0)
                    {
                        break;
                    }

                    e = pte;
                    pte += (ulong)Size4K;
                }

                slot += i;
                written += i;
                k += i;
                long bytes = (long)i << 12;
                mapped += bytes;
                iova += (ulong)bytes;
                if (i < n)
                {
                    err = Errno.EEXIST.Negative();
                    goto done;
                }
            }
        }

    done:
        if (written != 0)
        {
            FlushLeafBatch(t, written);
        }

        consumed = r;
        return err;
    }

    // A run this long (2 MiB) may take a larger leaf: iommu_pgsize decides.
    private const long LargeRunPages = Size2M / Size4K;

    private void FlushLeafBatch(int t, int written)
    {
        _used[t] += (short)written;
        AddLeaves(1, written);
        _kernel?.Cost.Charge(CostOp.PteWrite, written);
    }

    /// <summary>The per-run form of <see cref="MapSmallRunsLocked"/>: one <see cref="MapPages"/> call per run.</summary>
    private int MapSmallRunsEachLocked(ulong iova, ReadOnlySpan<PfnRun> runs, IommuProt prot, ref long mapped, ref int consumed)
    {
        DebugAssertWriterHeld();
        int r = 0;
        int err = 0;
        for (; r < runs.Length && runs[r].Count < LargeRunPages; r++)
        {
            long size = runs[r].Count << 12;
            if (size == 0)
            {
                continue;
            }

            // As iommu_map_sg's loop: the IOVA moves by what was mapped (nothing without READ/WRITE).
            err = MapPages(iova, runs[r].Pfn << 12, Size4K, runs[r].Count, prot, out long done);
            mapped += done;
            iova += (ulong)done;
            if (err != 0)
            {
                break;
            }
        }

        consumed = r;
        return err;
    }

    /// <summary>
    /// Walks from the root to the table holding <paramref name="level"/> entries for
    /// <paramref name="iova"/>, allocating missing tables. -EEXIST when a leaf above the
    /// level covers the IOVA; -ENOMEM when an allocation fails (tables this call linked
    /// and left empty are freed again).
    /// </summary>
    private int DescendForMapLocked(ulong iova, int level, out int t)
    {
        DebugAssertWriterHeld();
        // Scattered memory maps one 4 KiB leaf per call: reuse the last leaf table found
        // instead of walking from the root each time (the cursor is dropped whenever a
        // table leaves the tree).
        if (level == 1 && (iova >> 21) == _leafCursorKey)
        {
            t = _leafCursorTable;
            return 0;
        }

        t = _root;
        for (int lv = 4; lv > level; lv--)
        {
            ulong[] table = _tables[t];
            int idx = IndexAt(iova, lv);
            ulong pte = table[idx];
            if (pte == 0)
            {
                if (_kernel is not null && _kernel.Faults.ShouldFail(AllocFaultSite))
                {
                    PruneEmptyLocked(iova);
                    t = NoTable;
                    return Errno.ENOMEM.Negative();
                }

                int child = AllocTableLocked();
                Volatile.Write(ref table[idx], ((ulong)child << 12) | TableEntryBits);
                _used[t]++;
                t = child;
            }
            else if ((pte & PteLeaf) != 0)
            {
                t = NoTable;
                return Errno.EEXIST.Negative();
            }
            else
            {
                t = ChildOf(pte);
            }
        }

        if (level == 1)
        {
            _leafCursorKey = iova >> 21;
            _leafCursorTable = t;
        }

        return 0;
    }

    /// <summary>Unlinks and frees the empty tables on the path to <paramref name="iova"/>, deepest first (they never held a leaf).</summary>
    private void PruneEmptyLocked(ulong iova)
    {
        DebugAssertWriterHeld();
        Span<int> path = stackalloc int[5];
        path[4] = _root;
        int lv = 4;
        while (lv > 1)
        {
            ulong pte = _tables[path[lv]][IndexAt(iova, lv)];
            if (pte == 0 || (pte & PteLeaf) != 0)
            {
                break;
            }

            path[lv - 1] = ChildOf(pte);
            lv--;
        }

        for (; lv < 4 && _used[path[lv]] == 0; lv++)
        {
            int parent = path[lv + 1];
            Volatile.Write(ref _tables[parent][IndexAt(iova, lv + 1)], 0UL);
            _used[parent]--;
            _inUse--;
            PoolTableLocked(path[lv]);
        }
    }

    /// <summary>
    /// Promotion (design variant, off unless configured): a full table at
    /// <paramref name="level"/> whose leaves are physically contiguous, aligned to the next
    /// level's size and equally protected becomes one leaf of that size, repeatedly up to
    /// 1 GiB. The translation does not change, so no IOTLB flush is needed; the table goes
    /// straight back to the pool (a walk that still holds it retries).
    /// </summary>
    private void PromoteLocked(ulong iova, int level)
    {
        DebugAssertWriterHeld();
        while (level < 3 && ((ulong)LevelSize(level + 1) & _pgsizeBitmap) != 0)
        {
            // Find the table at `level` and its parent.
            int parent = _root;
            for (int lv = 4; lv > level + 1; lv--)
            {
                ulong up = _tables[parent][IndexAt(iova, lv)];
                if (up == 0 || (up & PteLeaf) != 0)
                {
                    return;
                }

                parent = ChildOf(up);
            }

            int parentIdx = IndexAt(iova, level + 1);
            ulong link = _tables[parent][parentIdx];
            if (link == 0 || (link & PteLeaf) != 0)
            {
                return;
            }

            int t = ChildOf(link);
            if (_used[t] != Entries)
            {
                return;
            }

            ulong[] table = _tables[t];
            ulong first = table[0];
            ulong step = (ulong)LevelSize(level);
            ulong flags = first & ~PteAddrMask;
            ulong basePa = first & PteAddrMask;
            if (!IsLeaf(first, level) || (basePa & ((ulong)LevelSize(level + 1) - 1)) != 0)
            {
                return;
            }

            for (int i = 1; i < Entries; i++)
            {
                ulong pte = table[i];
                if ((pte & ~PteAddrMask) != flags || (pte & PteAddrMask) != basePa + ((ulong)i * step))
                {
                    return;
                }
            }

            Volatile.Write(ref _tables[parent][parentIdx], basePa | (flags & ~PteLeaf) | PteLeaf);
            AddLeaves(level, -Entries);
            AddLeaves(level + 1, 1);
            _inUse--;
            PoolTableLocked(t);
            Promotions++;
            level++;
        }
    }

    /// <summary>Tables collapsed into a larger leaf by promotion.</summary>
    public long Promotions { get; private set; }
}
