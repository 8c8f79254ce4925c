// Models VFIO_IOMMU_MAP_DMA of drivers/vfio/vfio_iommu_type1.c (v6.12): vfio_dma_do_map
// with its checks in the kernel's order, vfio_pin_map_dma / vfio_pin_pages_remote (long-term
// GUP in batches, physically contiguous chunks, RLIMIT_MEMLOCK accounting per dma,
// VM_PFNMAP pages by page-table walk), vfio_iommu_map into every domain, the VADDR re-supply
// with its change of owner, and the rollback of a failed map. Reserved frames (the zero
// page, device memory) are never charged nor unpinned; where GUP still hands out the zero
// page (6.1), its pins are dropped at once (Type1Features.UnpinsZeroPages, v6.0–v6.8).
//
// Hot path: one GUP call fills up to 512 contiguous runs; the runs are charged to locked_vm
// in one step and mapped into each domain with one page-table-locked call (iommu_map_sg),
// so a map allocates nothing and takes each lock once per batch.

using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Iommu;
using Vfio.Platform.Mm;
using Vfio.Platform.Proc;

namespace Vfio.Iommu.Type1;

internal sealed partial class VfioIommu
{
    private const string MapIoctl = "VFIO_IOMMU_MAP_DMA";

    private long MapDmaIoctl(ulong arg)
    {
        const uint mask = VfioType1Flags.MapRead | VfioType1Flags.MapWrite | VfioType1Flags.MapVaddr;
        int err = VfioArg.CopyIn(arg, VfioIommuType1DmaMap.MinSz, out VfioIommuType1DmaMap map, MapIoctl);
        if (err != 0)
        {
            return err;
        }

        if ((map.Flags & ~mask) != 0)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{MapIoctl}: unknown flags 0x{map.Flags & ~mask:x}");
        }

        return MapDma(in map);
    }

    /// <summary>
    /// vfio_dma_do_map(): the kernel-internal map (the ioctl after its copy-in and flag check).
    /// 0 or -errno, with the reason recorded.
    /// </summary>
    internal int MapDma(in VfioIommuType1DmaMap map)
    {
        ulong iova = map.Iova, vaddr = map.Vaddr, size = map.Size;
        bool setVaddr = (map.Flags & VfioType1Flags.MapVaddr) != 0;
        IommuProt prot = IommuProt.None;
        if ((map.Flags & VfioType1Flags.MapWrite) != 0)
        {
            prot |= IommuProt.Write;
        }

        if ((map.Flags & VfioType1Flags.MapRead) != 0)
        {
            prot |= IommuProt.Read;
        }

        if ((prot != IommuProt.None) == setVaddr)
        {
            return ErrorReason.Fail(Errno.EINVAL, setVaddr
                ? $"{MapIoctl}: VADDR cannot be combined with READ or WRITE"
                : $"{MapIoctl}: one of READ, WRITE or VADDR is required");
        }

        _lock.Lock();
        try
        {
            ulong pgsize = MinPgsize;
            if (size == 0 || ((size | iova | vaddr) & (pgsize - 1)) != 0)
            {
                return ErrorReason.Fail(Errno.EINVAL, size == 0
                    ? $"{MapIoctl}: size is 0"
                    : $"{MapIoctl}: iova 0x{iova:x}, vaddr 0x{vaddr:x} and size 0x{size:x} must be multiples of the minimum IOMMU page size 0x{pgsize:x}");
            }

            if (iova + size - 1 < iova || vaddr + size - 1 < vaddr)
            {
                return ErrorReason.Fail(OverflowErrno, $"{MapIoctl}: {(iova + size - 1 < iova ? "iova" : "vaddr")} + size wraps past 2^64");
            }

            VfioDma? dma = _dmas.Find(iova, iova + size - 1);
            if (setVaddr)
            {
                return UpdateVaddrLocked(dma, iova, vaddr, size);
            }

            if (dma is not null)
            {
                return ErrorReason.Fail(Errno.EEXIST, $"{MapIoctl}: iova 0x{iova:x} +0x{size:x} overlaps existing mapping [0x{dma.Iova:x}, 0x{dma.Iova + dma.Size:x})");
            }

            if (_dmaAvail == 0)
            {
                return ErrorReason.Fail(Errno.ENOSPC, $"{MapIoctl}: the container already holds dma_entry_limit ({Module.DmaEntryLimit}) mappings");
            }

            if (!IovaDmaValidLocked(iova, iova + size - 1))
            {
                return ErrorReason.Fail(Errno.EINVAL, $"{MapIoctl}: [0x{iova:x}, 0x{iova + size - 1:x}] is not inside one usable IOVA range ({DescribeIovaList()})");
            }

            SimProcess? current = SimProcess.Current;
            dma = AllocDma();
            _dmaAvail--;
            dma.Iova = iova;
            dma.Vaddr = vaddr;
            dma.Prot = prot;
            dma.Task = current;
            dma.LockCap = current is not null && current.Credentials.Capable(Capabilities.CAP_IPC_LOCK);
            dma.Mm = current?.Mm;
            dma.Mm?.Grab();
            _dmas.Insert(dma);

            int ret = 0;
            if (_domains.Count == 0)
            {
                // Only emulated groups: nothing is pinned now; vfio_pin_pages pins on demand.
                dma.Size = size;
            }
            else
            {
                ret = PinMapDmaLocked(dma, size);
            }

            if (ret == 0 && _dirtyTracking)
            {
                ret = BitmapAllocLocked(dma, pgsize);
                if (ret != 0)
                {
                    RemoveDmaLocked(dma);
                }
            }

            if (ret == 0 && Kernel.Trace.Enabled)
            {
                Kernel.Trace.Event(KTask.CurrentOrNull, "vfio_dma_map", ToString(), dma.ToString());
            }

            return ret;
        }
        finally
        {
            _lock.Unlock();
        }
    }

    /// <summary>
    /// The errno of an iova/vaddr wrap on every profile: EINVAL, as Linux 6.1 and 6.12 (6.12.118
    /// checked) return. Mainline v6.18's 6012379ede6a ("vfio/type1: sanitize for overflow using
    /// check_*_overflow()") made it EOVERFLOW; no profile of the simulator is that new.
    /// </summary>
    private const Errno OverflowErrno = Errno.EINVAL;

    /// <summary>The MAP_DMA VADDR branch: give an invalidated mapping its new vaddr (and owner).</summary>
    private int UpdateVaddrLocked(VfioDma? dma, ulong iova, ulong vaddr, ulong size)
    {
        _lock.AssertHeld();
        if (dma is null)
        {
            return ErrorReason.Fail(Errno.ENOENT, $"{MapIoctl}: VADDR: no mapping at iova 0x{iova:x} +0x{size:x}");
        }

        if (!dma.VaddrInvalid || dma.Iova != iova || dma.Size != size)
        {
            return ErrorReason.Fail(Errno.EINVAL, !dma.VaddrInvalid
                ? $"{MapIoctl}: VADDR: mapping {dma} still has its vaddr (unmap it with VADDR first)"
                : $"{MapIoctl}: VADDR: iova 0x{iova:x} +0x{size:x} does not match the mapping {dma} exactly");
        }

        int ret = ChangeDmaOwnerLocked(dma);
        if (ret != 0)
        {
            return ret;
        }

        dma.Vaddr = vaddr;
        dma.VaddrInvalid = false;
        _vaddrInvalidCount--;
        return 0;
    }

    /// <summary>vfio_change_dma_owner(): the caller's mm takes over the dma's locked_vm charge.</summary>
    private int ChangeDmaOwnerLocked(VfioDma dma)
    {
        _lock.AssertHeld();
        SimProcess? task = SimProcess.Current;
        MmStruct? mm = task?.Mm;

        // ≤ v6.1 (VfioDesign.LockedVmPerDma off): a new vaddr moved no charge.
        if (mm is null || mm == dma.Mm || !Module.Core.Design.LockedVmPerDma)
        {
            return 0;
        }

        bool lockCap = task!.Credentials.Capable(Capabilities.CAP_IPC_LOCK);
        long npage = dma.LockedVm;
        int ret = MmLockAcct(task, mm, lockCap, npage);
        if (ret != 0)
        {
            return ErrorReason.Fail(Errno.ENOMEM, $"{MapIoctl}: VADDR: moving {npage} locked pages to {task} exceeds its RLIMIT_MEMLOCK ({task.Limits.MemlockBytes} bytes)");
        }

        if (dma.Mm!.GetNotZero())
        {
            MmLockAcct(dma.Task!, dma.Mm, dma.LockCap, -npage);
            dma.Mm.Put();
        }

        dma.Task = task;
        dma.Mm.Drop();
        dma.Mm = mm;
        mm.Grab();
        dma.LockCap = lockCap;
        return 0;
    }

    /// <summary>mm_lock_acct(): charges (or, negative, uncharges) <paramref name="npage"/> to <paramref name="mm"/>.</summary>
    private static int MmLockAcct(SimProcess task, MmStruct mm, bool lockCap, long npage)
    {
        if (npage == 0)
        {
            return 0;
        }

        mm.MmapLock.DownWrite();
        try
        {
            return mm.AccountLockedVmLocked(Math.Abs(npage), npage > 0, task, lockCap);
        }
        finally
        {
            mm.MmapLock.UpWrite();
        }
    }

    /// <summary>
    /// vfio_lock_acct(): charges <paramref name="npage"/> (negative: uncharges) to the dma's mm
    /// and records it in the dma. <paramref name="async"/> (any caller but the mapper itself)
    /// skips a dead mm with -ESRCH. With <c>VfioDesign.LockedVmPerDma</c> off (≤ v6.1)
    /// the calling process's mm is charged instead.
    /// </summary>
    private int LockAcct(VfioDma dma, long npage, bool async)
    {
        if (npage == 0)
        {
            return 0;
        }

        if (!Module.Core.Design.LockedVmPerDma && SimProcess.Current is { } caller)
        {
            int r = MmLockAcct(caller, caller.Mm, dma.LockCap, npage);
            if (r == 0)
            {
                dma.LockedVm += npage;
            }

            return r;
        }

        MmStruct mm = dma.Mm!;
        if (async && !mm.GetNotZero())
        {
            return Errno.ESRCH.Negative();
        }

        int ret = MmLockAcct(dma.Task!, mm, dma.LockCap, npage);
        if (ret == 0)
        {
            dma.LockedVm += npage;
        }

        if (async)
        {
            mm.Put();
        }

        return ret;
    }

    /// <summary>vfio_iommu_iova_dma_valid(): the range lies inside one usable IOVA range (any range when the list is empty).</summary>
    private bool IovaDmaValidLocked(ulong start, ulong end)
    {
        _lock.AssertHeld();
        if (_iovaList.Count == 0)
        {
            return true;
        }

        foreach (VfioIova r in _iovaList)
        {
            if (start >= r.Start && end <= r.End)
            {
                return true;
            }
        }

        return false;
    }

    private string DescribeIovaList()
    {
        var sb = new System.Text.StringBuilder();
        foreach (VfioIova r in _iovaList)
        {
            if (sb.Length != 0)
            {
                sb.Append(", ");
            }

            sb.Append(System.Globalization.CultureInfo.InvariantCulture, $"[0x{r.Start:x}, 0x{r.End:x}]");
        }

        return sb.Length == 0 ? "any" : sb.ToString();
    }

    /// <summary>
    /// vfio_pin_map_dma(): pins [vaddr, +size) from the caller's mm and maps it into every
    /// domain, growing dma.Size as it goes; on failure the whole dma is removed.
    /// </summary>
    private int PinMapDmaLocked(VfioDma dma, ulong size)
    {
        _lock.AssertHeld();
        int ret = PinMapRangeLocked(dma, dma.Iova, dma.Vaddr, size, _domains, growSize: true);
        dma.IommuMapped = true;
        if (ret != 0)
        {
            RemoveDmaLocked(dma);
        }

        return ret;
    }

    /// <summary>
    /// The pin-and-map loop shared by MAP_DMA and replay (vfio_pin_pages_remote +
    /// vfio_iommu_map): pins from the current task's mm, charges new pages to the dma's
    /// locked_vm (pages already in its pfn_list are not charged twice), and maps the chunks
    /// into <paramref name="domains"/>. The RLIMIT_MEMLOCK check is the caller's (current's)
    /// limit against current's mm, as vfio_pin_pages_remote does; the charge itself goes to
    /// the dma's owner, which checks its own limit. On error, what this call pinned in its
    /// last batch is unpinned and unaccounted; earlier batches stay (the caller unwinds them).
    /// </summary>
    private int PinMapRangeLocked(VfioDma dma, ulong iova, ulong vaddr, ulong size, List<VfioDomain> domains, bool growSize)
    {
        _lock.AssertHeld();
        ulong done = 0;
        SimProcess? current = SimProcess.Current;
        if (current is null)
        {
            return ErrorReason.Fail(Errno.ENODEV, $"{MapIoctl}: the caller has no address space");
        }

        MmStruct mm = current.Mm;
        long limit = current.Limits.MemlockPages;
        bool disableHugepages = Module.DisableHugepages;
        GupFlags flags = GupFlags.FOLL_LONGTERM | ((dma.Prot & IommuProt.Write) != 0 ? GupFlags.FOLL_WRITE : 0);
        IommuProt prot = dma.Prot | IommuProt.Cache;
        Span<PfnRun> runs = _runs;
        PhysMem mem = Machine.Memory;
        while (done < size)
        {
            long want = (long)((size - done) >> PhysMem.PageShift);
            if (disableHugepages)
            {
                want = 1;
            }

            int count;
            bool rsvd = false;
            long n = mm.PinUserPages(vaddr + done, want, flags, disableHugepages ? runs[..1] : runs, out count);
            if (n == Errno.EFAULT.Negative())
            {
                // vaddr_get_pfns(): a VM_PFNMAP VMA (another device's BAR) is walked instead.
                n = FollowPfnmapRun(mm, vaddr + done, disableHugepages ? 1 : want, (dma.Prot & IommuProt.Write) != 0, ref runs[0]);
                count = 1;
                rsvd = true;
            }

            if (n <= 0)
            {
                Warn.On(Kernel, n == 0, "vfio_pin_pages_remote pinned nothing");
                return n == 0 ? Errno.EFAULT.Negative() : FailPin((int)n, vaddr + done);
            }

            ReadOnlySpan<PfnRun> batch = runs[..count];
            if (!rsvd)
            {
                DropZeroPagePins(batch);
            }

            long acct = rsvd ? 0 : CountUnaccounted(dma, iova + done, batch);
            if (acct != 0)
            {
                if (!dma.LockCap && mm.LockedVm + acct > limit)
                {
                    UnpinRuns(mem, batch, dirty: false);
                    Kernel.Log.Warn($"vfio_pin_pages_remote: RLIMIT_MEMLOCK ({limit << PhysMem.PageShift}) exceeded");
                    return ErrorReason.Fail(Errno.ENOMEM, $"{MapIoctl}: pinning 0x{size:x} bytes exceeds RLIMIT_MEMLOCK ({limit << PhysMem.PageShift} bytes; {mm.LockedVm} pages already locked)");
                }

                int aret = LockAcct(dma, acct, async: false);
                if (aret != 0)
                {
                    UnpinRuns(mem, batch, dirty: false);
                    return ErrorReason.Fail((Errno)(-aret), $"{MapIoctl}: charging {acct} pages to {dma.Task} exceeds its RLIMIT_MEMLOCK");
                }
            }

            int mret = MapRunsLocked(domains, iova + done, batch, prot);
            if (mret != 0)
            {
                if (!rsvd)
                {
                    UnpinRuns(mem, batch, dirty: false);
                    LockAcct(dma, -acct, async: true);
                }

                return ErrorReason.Fail((Errno)(-mret), $"{MapIoctl}: iommu_map of iova 0x{iova + done:x} failed");
            }

            ulong bytes = (ulong)n << PhysMem.PageShift;
            done += bytes;
            if (growSize)
            {
                dma.Size += bytes;
            }
        }

        return 0;
    }

    private static int FailPin(int err, ulong vaddr) => err == Errno.EFAULT.Negative()
        ? ErrorReason.Fail(Errno.EFAULT, $"{MapIoctl}: vaddr 0x{vaddr:x} cannot be pinned (not mapped, or not writable for a WRITE mapping)")
        : ErrorReason.Fail((Errno)(-err), $"{MapIoctl}: pinning vaddr 0x{vaddr:x} failed");

    /// <summary>
    /// Pages of <paramref name="batch"/> (mapped from <paramref name="iova"/>) to charge:
    /// reserved frames (the zero page) never are, and pages already in the dma's pfn_list
    /// were charged when a driver pinned them.
    /// </summary>
    private long CountUnaccounted(VfioDma dma, ulong iova, ReadOnlySpan<PfnRun> batch)
    {
        PhysMem mem = Machine.Memory;
        VfioPfnList? list = dma.PfnList is { Count: > 0 } l ? l : null;
        long pages = 0;
        ulong at = iova;
        long lo = 0, hi = 0; // the last RAM range found with no reserved frame
        foreach (PfnRun r in batch)
        {
            // A run is physically contiguous, so it is all RAM or all reserved; scattered
            // memory makes one run per page, so the range test is the common answer.
            if ((r.Pfn >= lo && r.Pfn < hi) || mem.OrdinaryRamRange(r.Pfn, out lo, out hi))
            {
                if (list is null)
                {
                    pages += r.Count;
                }
                else
                {
                    for (long i = 0; i < r.Count; i++)
                    {
                        if (!list.Contains(at + (ulong)(i << PhysMem.PageShift)))
                        {
                            pages++;
                        }
                    }
                }
            }

            at += (ulong)(r.Count << PhysMem.PageShift);
        }

        return pages;
    }

    /// <summary>
    /// The zero-page step of vaddr_get_pfns() on v6.0–v6.8 (<see cref="Type1Features.UnpinsZeroPages"/>):
    /// a pin GUP took on the shared zero page is dropped at once; the page stays in the
    /// batch to be mapped, as a reserved frame that is neither charged nor unpinned later.
    /// Without the feature the pin is kept (and, reserved, never released by unmap).
    /// </summary>
    private void DropZeroPagePins(ReadOnlySpan<PfnRun> batch)
    {
        if (!Kernel.Profile.Has(Type1Features.UnpinsZeroPages))
        {
            return;
        }

        PhysMem mem = Machine.Memory;
        long zero = mem.ZeroPfn;
        foreach (PfnRun r in batch)
        {
            if (r.Pfn <= zero && zero < r.End)
            {
                mem.Unpin(new PfnRun(zero, 1), dirty: false);
            }
        }
    }

    /// <summary>
    /// The VM_PFNMAP branch of vaddr_get_pfns(): walks (faulting in) the frames behind
    /// <paramref name="vaddr"/> page by page while they are physically contiguous and not RAM.
    /// Returns the pages in <paramref name="run"/>, or -EFAULT (no PFNMAP VMA, a RAM frame,
    /// a write through a read-only mapping).
    /// </summary>
    private long FollowPfnmapRun(MmStruct mm, ulong vaddr, long max, bool write, ref PfnRun run)
    {
        PhysMem mem = Machine.Memory;
        mm.MmapLock.DownRead();
        try
        {
            long n = 0;
            long first = -1;
            while (n < max)
            {
                ulong a = vaddr + (ulong)(n << PhysMem.PageShift);
                Vma? vma = mm.FindVmaLocked(a);
                if (vma is null || !vma.IsPfnMap || mm.FollowFaultPfnLocked(vma, a, write, out long pfn) != 0 || !mem.IsInvalidOrReserved(pfn))
                {
                    break;
                }

                if (n == 0)
                {
                    first = pfn;
                }
                else if (pfn != first + n)
                {
                    break;
                }

                n++;
            }

            if (n == 0)
            {
                return Errno.EFAULT.Negative();
            }

            run = new PfnRun(first, n);
            return n;
        }
        finally
        {
            mm.MmapLock.UpRead();
        }
    }

    /// <summary>
    /// vfio_iommu_map(): maps the chunks of <paramref name="batch"/> at consecutive IOVAs from
    /// <paramref name="iova"/> into every domain; on failure the domains already mapped are unmapped again.
    /// </summary>
    private int MapRunsLocked(List<VfioDomain> domains, ulong iova, ReadOnlySpan<PfnRun> batch, IommuProt prot)
    {
        _lock.AssertHeld();
        for (int i = 0; i < domains.Count; i++)
        {
            int ret = domains[i].Domain.MapRuns(iova, batch, prot, out _);
            if (ret != 0)
            {
                long bytes = 0;
                foreach (PfnRun r in batch)
                {
                    bytes += r.Count << PhysMem.PageShift;
                }

                for (int j = 0; j < i; j++)
                {
                    domains[j].Domain.Unmap(iova, bytes);
                }

                return ret;
            }
        }

        return 0;
    }
}
