// Models struct iommu_domain and the domain calls of drivers/iommu/iommu.c (v6.12):
// iommu_map (__iommu_map with iommu_pgsize chunking and the unwind on failure),
// iommu_unmap / iommu_unmap_fast (__iommu_unmap), iommu_iotlb_sync, iommu_iova_to_phys,
// iommu_domain_free, and the driver's enforce_cache_coherency.
//
// Locking: _pgtblLock (iommu_domain.pgtbl_lock, a spinlock) serialises every change of
// the page table — map, unmap, gather sync (which frees tables), free — and protects
// _freed and _enforceCoherency. The IOTLB lock nests inside it (a sync invalidates while
// holding it). Translation by the hardware takes neither.

using Vfio.Kernel;
using Vfio.Platform.Iommu.Hw;
using Vfio.Platform.Mm;

namespace Vfio.Platform.Iommu;

/// <summary>struct iommu_domain: a translation context devices attach to.</summary>
public sealed class IommuDomain : IIotlbFlushOps
{
    private readonly KSpinLock _pgtblLock;
    private bool _freed;
    private bool _enforceCoherency;
    private volatile int _type;
    private int _noSnoopGroups;

    internal IommuDomain(IommuHardware hardware, int id, IommuDomainType type)
    {
        Hardware = hardware;
        Id = id;
        _type = (int)type;
        PgsizeBitmap = hardware.Config.PgsizeBitmap;
        Geometry = new IommuDomainGeometry(0, (1UL << hardware.Config.AddressWidth) - 1, ForceAperture: true);
        _pgtblLock = new KSpinLock(hardware.Kernel, $"iommu_domain[{id}].pgtbl_lock");
        if (type.IsPaging())
        {
            PageTable = new IoPageTable(PgsizeBitmap, hardware.Config.AddressWidth, hardware.Config.Promote, hardware.Kernel)
            {
                FlushOps = this,
                WriterLock = _pgtblLock,
            };
        }
    }

    /// <summary>The IOMMU this domain belongs to.</summary>
    public IommuHardware Hardware { get; }

    /// <summary>The hardware domain id (tags its IOTLB entries).</summary>
    public int Id { get; }

    /// <summary>The domain type (a DMA domain may become DMA-FQ in place).</summary>
    public IommuDomainType Type => (IommuDomainType)_type;

    /// <summary>pgsize_bitmap: the page sizes iommu_map may use.</summary>
    public ulong PgsizeBitmap { get; }

    /// <summary>The IOVA range the domain translates.</summary>
    public IommuDomainGeometry Geometry { get; }

    /// <summary>The page table of a paging domain; null for blocking and identity domains.</summary>
    public IoPageTable? PageTable { get; }

    /// <summary>True once enforce_cache_coherency succeeded: mappings are made snooped (IOMMU_CACHE).</summary>
    public bool EnforcesCacheCoherency => Volatile.Read(ref _enforceCoherency);

    /// <summary>True after <see cref="Free"/>.</summary>
    public bool IsFreed => Volatile.Read(ref _freed);

    /// <summary>
    /// ops->enforce_cache_coherency (intel_iommu_enforce_cache_coherency): makes every DMA
    /// of this domain snooped. False when the IOMMU cannot (not coherent, or no snoop control),
    /// the domain does not translate, or it already has mappings (they were made without
    /// snooping, so the domain could not promise it).
    /// </summary>
    public bool EnforceCacheCoherency()
    {
        if (!Hardware.Config.CanEnforceCacheCoherency || PageTable is null || Volatile.Read(ref _noSnoopGroups) != 0)
        {
            return false;
        }

        _pgtblLock.Lock();
        try
        {
            if (!_enforceCoherency && PageTable.MappedBytes != 0)
            {
                return false;
            }

            Volatile.Write(ref _enforceCoherency, true);
            return true;
        }
        finally
        {
            _pgtblLock.Unlock();
        }
    }

    /// <summary>Counts attached groups behind units without snoop control (see <see cref="IommuGroup.NoSnoopControl"/>).</summary>
    internal void AddNoSnoopGroup(int delta) => Interlocked.Add(ref _noSnoopGroups, delta);

    /// <summary>
    /// iommu_group_store_type()'s shortcut from DMA to DMA-FQ: the live domain starts using a
    /// flush queue without being torn down (this machine has no queue behind it: unmaps
    /// still flush at once).
    /// </summary>
    internal void UseFlushQueue()
    {
        if (Type == IommuDomainType.Dma)
        {
            _type = (int)IommuDomainType.DmaFq;
        }
    }

    /// <summary>
    /// iommu_pgsize(): the largest page size in <paramref name="pgsizeBitmap"/> that the
    /// alignment of <paramref name="iova"/> and <paramref name="paddr"/> and the
    /// remaining <paramref name="size"/> allow, and how many such pages to map before a
    /// larger size becomes possible.
    /// </summary>
    internal static long Pgsize(ulong pgsizeBitmap, ulong iova, ulong paddr, ulong size, out long count)
    {
        ulong addrMerge = iova | paddr;
        ulong pgsizes = pgsizeBitmap & GenMask(63 - ulong.LeadingZeroCount(size));
        if (addrMerge != 0)
        {
            pgsizes &= GenMask(ulong.TrailingZeroCount(addrMerge));
        }

        if (pgsizes == 0)
        {
            throw new InvalidOperationException($"iommu_pgsize: no page size of 0x{pgsizeBitmap:x} fits iova 0x{iova:x} pa 0x{paddr:x} size 0x{size:x} (BUG_ON)");
        }

        int idx = 63 - (int)ulong.LeadingZeroCount(pgsizes);
        ulong larger = pgsizeBitmap & ~GenMask((ulong)idx);
        if (larger != 0)
        {
            ulong next = 1UL << (int)ulong.TrailingZeroCount(larger);
            if (((iova ^ paddr) & (next - 1)) == 0)
            {
                ulong offset = next - (addrMerge & (next - 1));
                if (offset + next <= size)
                {
                    size = offset;
                }
            }
        }

        count = (long)(size >> idx);
        return 1L << idx;
    }

    private static ulong GenMask(ulong high) => high >= 63 ? ulong.MaxValue : (1UL << (int)(high + 1)) - 1;

    private void ThrowIfFreed()
    {
        if (_freed)
        {
            throw new InvalidOperationException($"iommu_domain {Id} ({Type.SysfsName()}) is used after iommu_domain_free()");
        }
    }

    private int MinPagesize => 1 << (int)ulong.TrailingZeroCount(PgsizeBitmap);

    /// <summary>
    /// iommu_map(): maps [<paramref name="iova"/>, +<paramref name="size"/>) to
    /// <paramref name="paddr"/> with <paramref name="prot"/>, choosing the largest page
    /// sizes alignment allows. 0 or -errno: -EINVAL (not a paging domain; iova, paddr or
    /// size not aligned to the smallest page size) or the page table's error (-EEXIST,
    /// -EFAULT, -ERANGE, -ENOMEM), in which case what this call mapped is unmapped again.
    /// A protection without IOMMU_READ and IOMMU_WRITE maps nothing and returns 0 (the
    /// kernel's loop would not advance; callers such as type1 never pass it).
    /// </summary>
    public int Map(ulong iova, long paddr, long size, IommuProt prot)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(paddr);
        ArgumentOutOfRangeException.ThrowIfNegative(size);
        if (!Type.IsPaging())
        {
            return Errno.EINVAL.Negative();
        }

        long min = MinPagesize;
        if (((iova | (ulong)paddr | (ulong)size) & (ulong)(min - 1)) != 0)
        {
            return Errno.EINVAL.Negative();
        }

        // One physically contiguous run: the page sizes and the unwind are those of iommu_map_sg.
        return MapRuns(iova, [new PfnRun(paddr >> PhysMem.PageShift, size >> PhysMem.PageShift)], prot, out _);
    }

    /// <summary>
    /// iommu_map_sg(): maps the physically contiguous <paramref name="runs"/> at consecutive
    /// IOVAs from <paramref name="iova"/>, each with the largest page sizes its alignment
    /// allows, under one acquisition of the page-table lock. 0 or -errno as <see cref="Map"/>;
    /// on failure what this call mapped is unmapped again. <paramref name="mapped"/> is the
    /// bytes mapped (0 after a failure).
    /// </summary>
    public int MapRuns(ulong iova, ReadOnlySpan<PfnRun> runs, IommuProt prot, out long mapped)
    {
        mapped = 0;
        if (!Type.IsPaging())
        {
            return Errno.EINVAL.Negative();
        }

        if (EnforcesCacheCoherency)
        {
            prot |= IommuProt.Cache;
        }

        IoPageTable table = PageTable!;
        ulong start = iova;
        int ret = 0;
        _pgtblLock.Lock();
        try
        {
            ThrowIfFreed();
            int r = 0;
            while (r < runs.Length && ret == 0)
            {
                // Runs shorter than 2 MiB can only be 4 KiB leaves (scattered memory: mostly
                // one page each): the page table writes them a leaf table at a time.
                ret = table.MapSmallRunsLocked(iova, runs[r..], prot, out long small, out int consumed);
                mapped += small;
                iova += (ulong)small;
                r += consumed;
                if (ret != 0 || r == runs.Length)
                {
                    break;
                }

                long paddr = runs[r].Pfn << PhysMem.PageShift;
                long remaining = runs[r].Count << PhysMem.PageShift;
                r++;
                while (remaining > 0)
                {
                    long pgsize = Pgsize(PgsizeBitmap, iova, (ulong)paddr, (ulong)remaining, out long count);
                    ret = table.MapPages(iova, paddr, pgsize, count, prot, out long done);
                    mapped += done;
                    remaining -= done;
                    iova += (ulong)done;
                    paddr += done;
                    if (ret != 0 || done == 0)
                    {
                        break;
                    }
                }
            }

            table.AssertInvariantsLocked();
        }
        finally
        {
            _pgtblLock.Unlock();
        }

        if (ret != 0)
        {
            Unmap(start, mapped);
            mapped = 0;
        }

        return ret;
    }

    /// <summary>
    /// iommu_unmap(): unmaps [<paramref name="iova"/>, +<paramref name="size"/>) and syncs
    /// the IOTLB. Returns the bytes unmapped: less than <paramref name="size"/> when a hole
    /// stops it, 0 for a non-paging domain or a misaligned request.
    /// </summary>
    public long Unmap(ulong iova, long size)
    {
        var gather = new IotlbGather();
        _pgtblLock.Lock();
        try
        {
            long unmapped = UnmapLocked(iova, size, ref gather);
            if (PageTable is not null)
            {
                PageTable.SyncLocked(ref gather);
                PageTable.AssertInvariantsLocked();
            }

            return unmapped;
        }
        finally
        {
            _pgtblLock.Unlock();
        }
    }

    /// <summary>
    /// iommu_unmap_fast(): as <see cref="Unmap"/> but gathers into <paramref name="gather"/>
    /// instead of syncing; the caller calls <see cref="IotlbSync"/>. Until then the IOTLB
    /// may still translate the range, and unlinked page-table pages are not reused.
    /// </summary>
    public long UnmapFast(ulong iova, long size, ref IotlbGather gather)
    {
        _pgtblLock.Lock();
        try
        {
            return UnmapLocked(iova, size, ref gather);
        }
        finally
        {
            _pgtblLock.Unlock();
        }
    }

    /// <summary>
    /// The walk of type1's vfio_unmap_unpin over its first domain (iommu_iova_to_phys to find
    /// each physically contiguous run, then iommu_unmap_fast of it), in one pass: clears the
    /// leaves of [<paramref name="iova"/>, +<paramref name="size"/>) and reports the frames
    /// they mapped in <paramref name="runs"/>. Stops early at a hole or when
    /// <paramref name="runs"/> is full; returns the bytes unmapped. The IOTLB is flushed
    /// when the caller syncs <paramref name="gather"/>.
    /// </summary>
    public long UnmapCollect(ulong iova, long size, Span<PfnRun> runs, out int runCount, ref IotlbGather gather)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(size);
        runCount = 0;
        if (!Type.IsPaging())
        {
            return 0;
        }

        _pgtblLock.Lock();
        try
        {
            ThrowIfFreed();
            long done = PageTable!.UnmapCollectLocked(iova, size, runs, ref runCount, ref gather);
            PageTable.AssertInvariantsLocked();
            return done;
        }
        finally
        {
            _pgtblLock.Unlock();
        }
    }

    /// <summary>__iommu_unmap().</summary>
    private long UnmapLocked(ulong iova, long size, ref IotlbGather gather)
    {
        _pgtblLock.AssertHeld();
        ArgumentOutOfRangeException.ThrowIfNegative(size);
        if (!Type.IsPaging())
        {
            return 0;
        }

        ThrowIfFreed();
        long min = MinPagesize;
        if (((iova | (ulong)size) & (ulong)(min - 1)) != 0)
        {
            return 0; // The kernel prints "unaligned" and unmaps nothing.
        }

        long unmapped = 0;
        while (unmapped < size)
        {
            long pgsize = Pgsize(PgsizeBitmap, iova, iova, (ulong)(size - unmapped), out long count);
            long done = PageTable!.UnmapPages(iova, pgsize, count, ref gather);
            if (done == 0)
            {
                break;
            }

            iova += (ulong)done;
            unmapped += done;
        }

        return unmapped;
    }

    /// <summary>
    /// iommu_iotlb_sync(): invalidates the gathered range in the IOTLB, then frees the
    /// gathered page-table pages and resets <paramref name="gather"/>.
    /// </summary>
    public void IotlbSync(ref IotlbGather gather)
    {
        if (PageTable is null)
        {
            gather = new IotlbGather();
            return;
        }

        _pgtblLock.Lock();
        try
        {
            ThrowIfFreed();
            PageTable.SyncLocked(ref gather);
        }
        finally
        {
            _pgtblLock.Unlock();
        }
    }

    void IIotlbFlushOps.TlbFlushRange(ulong start, ulong end) => Hardware.Iotlb.InvalidateRange(Id, start, end);

    /// <summary>iommu_iova_to_phys(): identity returns <paramref name="iova"/>; blocked or unmapped 0.</summary>
    public long IovaToPhys(ulong iova) => Type switch
    {
        IommuDomainType.Identity => (long)iova,
        IommuDomainType.Blocked => 0,
        _ => PageTable!.IovaToPhys(iova),
    };

    /// <summary>
    /// iommu_domain_free(): frees every page-table page, flushes the domain's IOTLB
    /// entries and releases the domain id. The domain must no longer be attached.
    /// </summary>
    public void Free()
    {
        _pgtblLock.Lock();
        try
        {
            ThrowIfFreed();
            PageTable?.ReleaseAllLocked();
            Volatile.Write(ref _freed, true);
        }
        finally
        {
            _pgtblLock.Unlock();
        }

        Hardware.Iotlb.FlushDomain(Id);
        Hardware.ReleaseDomainId(Id);
    }

    /// <summary>Checks the page table's counters against a recount of the tree (for tests); null when consistent.</summary>
    public string? CheckInvariants()
    {
        if (PageTable is null)
        {
            return null;
        }

        _pgtblLock.Lock();
        try
        {
            return PageTable.CheckInvariantsLocked();
        }
        finally
        {
            _pgtblLock.Unlock();
        }
    }
}
