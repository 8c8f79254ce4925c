// Models VFIO_IOMMU_UNMAP_DMA of drivers/vfio/vfio_iommu_type1.c (v6.12):
// vfio_iommu_type1_unmap_dma (copy-in, flags, the dirty-bitmap argument), vfio_dma_do_unmap
// (v1 and v2 semantics, UNMAP_ALL, VADDR invalidation and its rollback, the dma_unmap
// notification of emulated-IOMMU drivers with its restart and BUG after 10 retries, the
// optional owner check of the 4.10–5.18 design), vfio_remove_dma and vfio_unmap_unpin
// (walk the first domain, gather IOTLB flushes, unpin, unaccount).

using Vfio.Core;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Fs;
using Vfio.Platform.Iommu;
using Vfio.Platform.Mm;
using Vfio.Platform.Proc;

namespace Vfio.Iommu.Type1;

internal sealed partial class VfioIommu
{
    private const string UnmapIoctl = "VFIO_IOMMU_UNMAP_DMA";

    /// <summary>How many times in a row the same mapping may come back from dma_unmap still pinned before the kernel BUGs.</summary>
    internal const int DmaUnmapRetryLimit = 10;

    private long UnmapDmaIoctl(ulong arg)
    {
        const uint mask = VfioType1Flags.UnmapGetDirtyBitmap | VfioType1Flags.UnmapAll | VfioType1Flags.UnmapVaddr;
        int err = VfioArg.CopyIn(arg, VfioIommuType1DmaUnmap.MinSz, out VfioIommuType1DmaUnmap unmap, UnmapIoctl);
        if (err != 0)
        {
            return err;
        }

        if ((unmap.Flags & ~mask) != 0)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{UnmapIoctl}: unknown flags 0x{unmap.Flags & ~mask:x}");
        }

        bool getBitmap = (unmap.Flags & VfioType1Flags.UnmapGetDirtyBitmap) != 0;
        if (getBitmap && (unmap.Flags & (VfioType1Flags.UnmapAll | VfioType1Flags.UnmapVaddr)) != 0)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{UnmapIoctl}: GET_DIRTY_BITMAP cannot be combined with ALL or VADDR");
        }

        VfioBitmap bitmap = default;
        if (getBitmap)
        {
            int bsz = VfioArg.SizeOf<VfioBitmap>();
            if (unmap.Argsz < (ulong)(VfioIommuType1DmaUnmap.MinSz + bsz))
            {
                return ErrorReason.Fail(Errno.EINVAL, $"{UnmapIoctl}: argsz {unmap.Argsz} leaves no room for struct vfio_bitmap ({VfioIommuType1DmaUnmap.MinSz + bsz} needed)");
            }

            if (UserMemory.Get(arg + VfioIommuType1DmaUnmap.MinSz, out bitmap) != 0)
            {
                return ErrorReason.Fail(Errno.EFAULT, $"{UnmapIoctl}: cannot read struct vfio_bitmap");
            }

            err = CheckUserBitmap(bitmap, unmap.Size, UnmapIoctl);
            if (err != 0)
            {
                return err;
            }
        }

        err = Unmap(ref unmap, in bitmap);
        if (err != 0)
        {
            return err;
        }

        return VfioArg.CopyOut(arg, unmap, VfioIommuType1DmaUnmap.MinSz) != 0 ? Errno.EFAULT.Negative() : 0;
    }

    /// <summary>access_ok() of the bitmap, then verify_bitmap_size() for <paramref name="size"/> bytes of IOVA.</summary>
    private static int CheckUserBitmap(in VfioBitmap bitmap, ulong size, string ioctl)
    {
        if (bitmap.Data + bitmap.Size < bitmap.Data || bitmap.Data + bitmap.Size > MmStruct.TaskSize)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{ioctl}: bitmap [0x{bitmap.Data:x}, +0x{bitmap.Size:x}) is not user memory");
        }

        int pgshift = System.Numerics.BitOperations.TrailingZeroCount(bitmap.Pgsize) & 63;
        return VerifyBitmapSize(size >> pgshift, bitmap.Size, ioctl);
    }

    /// <summary>verify_bitmap_size().</summary>
    private static int VerifyBitmapSize(ulong npages, ulong bitmapSize, string ioctl)
    {
        if (npages == 0 || bitmapSize == 0 || bitmapSize > DirtyBitmapSizeMax || npages > DirtyBitmapPagesMax)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{ioctl}: a bitmap of {bitmapSize} bytes for {npages} pages is empty or too large");
        }

        return bitmapSize < BitmapBytes(npages)
            ? ErrorReason.Fail(Errno.EINVAL, $"{ioctl}: a bitmap of {bitmapSize} bytes is too small for {npages} pages ({BitmapBytes(npages)} needed)")
            : 0;
    }

    /// <summary>DIRTY_BITMAP_BYTES(n): whole u64 words.</summary>
    private static ulong BitmapBytes(ulong npages) => ((npages + 63) / 64) * 8;

    /// <summary>
    /// vfio_dma_do_unmap(): the kernel-internal unmap. On success <paramref name="unmap"/>.Size
    /// holds the bytes unmapped (or invalidated); 0 or -errno.
    /// </summary>
    internal int Unmap(ref VfioIommuType1DmaUnmap unmap, in VfioBitmap bitmap)
    {
        ulong iova = unmap.Iova, size = unmap.Size, unmapped = 0;
        bool unmapAll = (unmap.Flags & VfioType1Flags.UnmapAll) != 0;
        bool invalidateVaddr = (unmap.Flags & VfioType1Flags.UnmapVaddr) != 0;
        bool getBitmap = (unmap.Flags & VfioType1Flags.UnmapGetDirtyBitmap) != 0;
        int ret;
        _lock.Lock();
        try
        {
            ret = UnmapLocked(iova, size, unmapAll, invalidateVaddr, getBitmap, bitmap, ref unmapped);
        }
        finally
        {
            _lock.Unlock();
        }

        unmap.Size = unmapped;
        return ret;
    }

    private int UnmapLocked(ulong iova, ulong size, bool unmapAll, bool invalidateVaddr, bool getBitmap, in VfioBitmap bitmap, ref ulong unmapped)
    {
        _lock.AssertHeld();
        if (invalidateVaddr && _emulatedGroups.Count != 0)
        {
            return ErrorReason.Fail(Errno.EBUSY, $"{UnmapIoctl}: VADDR is not allowed while an emulated-IOMMU (mdev) group is attached");
        }

        ulong pgsize = MinPgsize;
        if ((iova & (pgsize - 1)) != 0)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{UnmapIoctl}: iova 0x{iova:x} is not a multiple of the minimum IOMMU page size 0x{pgsize:x}");
        }

        if (unmapAll)
        {
            if (iova != 0 || size != 0)
            {
                return ErrorReason.Fail(Errno.EINVAL, $"{UnmapIoctl}: ALL needs iova and size 0 (got 0x{iova:x}, 0x{size:x})");
            }

            size = ulong.MaxValue;
        }
        else if (size == 0 || (size & (pgsize - 1)) != 0)
        {
            return ErrorReason.Fail(Errno.EINVAL, size == 0 ? $"{UnmapIoctl}: size is 0" : $"{UnmapIoctl}: size 0x{size:x} is not a multiple of the minimum IOMMU page size 0x{pgsize:x}");
        }
        else if (iova + size - 1 < iova)
        {
            return ErrorReason.Fail(OverflowErrno, $"{UnmapIoctl}: iova 0x{iova:x} + size 0x{size:x} wraps past 2^64");
        }

        if (getBitmap && (!_dirtyTracking || bitmap.Pgsize != pgsize))
        {
            return ErrorReason.Fail(Errno.EINVAL, !_dirtyTracking
                ? $"{UnmapIoctl}: GET_DIRTY_BITMAP while dirty tracking is off"
                : $"{UnmapIoctl}: bitmap pgsize 0x{bitmap.Pgsize:x} is not the minimum IOMMU page size 0x{pgsize:x}");
        }

        ulong last = iova + size - 1;
        VfioDma? lastNotified = null;
        int retries = 0;
        SimProcess? current = SimProcess.Current;
    again:
        if (V2 && !unmapAll)
        {
            VfioDma? d = _dmas.Find(iova, iova);
            if (d is not null && d.Iova != iova)
            {
                return ErrorReason.Fail(Errno.EINVAL, $"{UnmapIoctl}: [0x{iova:x}, 0x{last:x}] starts inside mapping {d} (TYPE1v2 does not split mappings)");
            }

            d = _dmas.Find(last, last);
            if (d is not null && d.Last != last)
            {
                return ErrorReason.Fail(Errno.EINVAL, $"{UnmapIoctl}: [0x{iova:x}, 0x{last:x}] ends inside mapping {d} (TYPE1v2 does not split mappings)");
            }
        }

        VfioDma? first = _dmas.FindFirst(iova, last);
        VfioDma? n = first;
        while (n is not null)
        {
            VfioDma dma = n;
            if (dma.Iova > last)
            {
                break;
            }

            if (!V2 && iova > dma.Iova)
            {
                break; // v1: a request starting inside a mapping unmaps nothing from there on.
            }

            if (Module.Core.Design.UnmapOnlyByMappingMm && dma.Mm != current?.Mm)
            {
                break; // 4.10–5.18: only the mapping task (or one sharing its mm) may unmap; the rest is silently left.
            }

            if (invalidateVaddr)
            {
                if (dma.VaddrInvalid)
                {
                    for (VfioDma? r = first; r is not null && r != dma; r = VfioDmaTree.Next(r))
                    {
                        r.VaddrInvalid = false;
                        _vaddrInvalidCount--;
                    }

                    unmapped = 0;
                    return ErrorReason.Fail(Errno.EINVAL, $"{UnmapIoctl}: VADDR: mapping {dma} is already invalidated");
                }

                dma.VaddrInvalid = true;
                _vaddrInvalidCount++;
                unmapped += dma.Size;
                n = VfioDmaTree.Next(dma);
                continue;
            }

            if (dma.PfnCount != 0)
            {
                if (lastNotified == dma)
                {
                    Bug.On(++retries > DmaUnmapRetryLimit, $"vfio_dma_do_unmap: mapping {dma} still has {dma.PfnCount} pinned pages after {DmaUnmapRetryLimit} dma_unmap notifications (a driver does not unpin)");
                }
                else
                {
                    lastNotified = dma;
                    retries = 0;
                }

                NotifyDmaUnmapLocked(dma.Iova, dma.Size);
                goto again;
            }

            if (getBitmap)
            {
                int err = UpdateUserBitmapLocked(bitmap.Data, dma, iova, pgsize);
                if (err != 0)
                {
                    return ErrorReason.Fail(Errno.EFAULT, $"{UnmapIoctl}: cannot write the dirty bitmap at 0x{bitmap.Data:x}");
                }
            }

            unmapped += dma.Size;
            n = VfioDmaTree.Next(dma);
            RemoveDmaLocked(dma);
        }

        return 0;
    }

    /// <summary>
    /// vfio_notify_dma_unmap(): calls every registered device's dma_unmap with the container
    /// lock dropped (device_list_lock held), then takes the lock again.
    /// </summary>
    private void NotifyDmaUnmapLocked(ulong iova, ulong length)
    {
        _lock.AssertHeld();
        _deviceListLock.Lock();
        _lock.Unlock();
        try
        {
            if (_notifiers is not null)
            {
                CallNotifierChainLocked(iova, length);
                return;
            }

            foreach (VfioDevice device in _devices)
            {
                device.Ops.DmaUnmap(device, iova, length);
            }
        }
        finally
        {
            _deviceListLock.Unlock();
            _lock.Lock();
        }
    }

    /// <summary>vfio_remove_dma(): unmaps, unpins and unaccounts the dma, unlinks and frees it.</summary>
    private void RemoveDmaLocked(VfioDma dma)
    {
        _lock.AssertHeld();
        Warn.On(Kernel, dma.PfnCount != 0, $"vfio_remove_dma: {dma} still has {dma.PfnCount} pages pinned by a driver (pfn_list not empty)");

        UnmapUnpinLocked(dma, doAccounting: true);
        _dmas.Remove(dma);
        dma.Mm?.Drop();
        if (dma.VaddrInvalid)
        {
            _vaddrInvalidCount--;
        }

        if (Kernel.Trace.Enabled)
        {
            Kernel.Trace.Event(KTask.CurrentOrNull, "vfio_dma_unmap", ToString(), dma.ToString());
        }

        FreeDma(dma);
        _dmaAvail++;
    }

    /// <summary>vfio_iommu_unmap_unpin_all().</summary>
    private void UnmapUnpinAllLocked()
    {
        _lock.AssertHeld();
        while (_dmas.First() is { } dma)
        {
            RemoveDmaLocked(dma);
        }
    }

    /// <summary>
    /// vfio_unmap_unpin(): every domain but the first is unmapped wholesale; the first is
    /// walked to find the frames, unmapped with gathered IOTLB flushes (a sync every 512
    /// regions) and the frames unpinned (dirtied for a writable mapping). Returns the pages
    /// unpinned; with <paramref name="doAccounting"/> they are also uncharged.
    /// </summary>
    private long UnmapUnpinLocked(VfioDma dma, bool doAccounting)
    {
        _lock.AssertHeld();
        if (dma.Size == 0 || _domains.Count == 0 || !dma.IommuMapped)
        {
            dma.IommuMapped = false;
            return 0;
        }

        for (int i = 1; i < _domains.Count; i++)
        {
            _domains[i].Domain.Unmap(dma.Iova, (long)dma.Size);
        }

        IommuDomain domain = _domains[0].Domain;
        PhysMem mem = Machine.Memory;
        bool dirty = (dma.Prot & IommuProt.Write) != 0;
        Span<PfnRun> runs = _runs;
        var gather = new IotlbGather();
        ulong iova = dma.Iova;
        ulong end = dma.Iova + dma.Size;
        long unlocked = 0;
        while (iova != end)
        {
            long done = domain.UnmapCollect(iova, (long)(end - iova), runs, out int count, ref gather);
            domain.IotlbSync(ref gather);
            unlocked += UnpinRuns(mem, runs[..count], dirty);
            if (done == 0)
            {
                // A hole in the first domain: the kernel WARNs and steps over one page.
                Warn.On(Kernel, true, $"vfio_unmap_unpin: iova 0x{iova:x} of {dma} is not mapped in the first domain");
                iova += PhysMem.PageSize;
                continue;
            }

            iova += (ulong)done;
        }

        dma.IommuMapped = false;
        if (doAccounting)
        {
            LockAcct(dma, -unlocked, async: true);
            return 0;
        }

        return unlocked;
    }

    /// <summary>put_pfn() over runs: unpins the RAM frames (VM_PFNMAP frames hold no pin); returns how many were unpinned.</summary>
    private static long UnpinRuns(PhysMem mem, ReadOnlySpan<PfnRun> runs, bool dirty)
    {
        long unpinned = 0;
        bool allRam = true;
        long lo = 0, hi = 0; // the last RAM range found with no reserved frame
        foreach (PfnRun r in runs)
        {
            // Both ends ordinary RAM (one range: a run never spans a hole); scattered memory
            // makes one run per page, so the range test is the common answer.
            bool plain = (r.Pfn >= lo && r.Pfn < hi) || mem.OrdinaryRamRange(r.Pfn, out lo, out hi);
            if (!plain || r.End > hi)
            {
                allRam = false;
                break;
            }

            unpinned += r.Count;
        }

        if (allRam)
        {
            mem.Unpin(runs, dirty);
            return unpinned;
        }

        unpinned = 0;
        foreach (PfnRun r in runs)
        {
            for (long p = r.Pfn; p < r.End; p++)
            {
                if (!mem.IsInvalidOrReserved(p))
                {
                    mem.Unpin(new PfnRun(p, 1), dirty);
                    unpinned++;
                }
            }
        }

        return unpinned;
    }
}
