// Models the emulated-IOMMU side of drivers/vfio/vfio_iommu_type1.c (v6.12):
// vfio_iommu_type1_pin_pages (per-dma pfn_list with pin counts, pages taken from the
// mapping owner's mm, charged to RLIMIT_MEMLOCK only when no IOMMU domain exists,
// all-or-nothing), vfio_iommu_type1_unpin_pages and vfio_iommu_type1_dma_rw.

using Vfio.Kernel;
using Vfio.Platform.Iommu;
using Vfio.Platform.Mm;
using Vfio.Platform.Proc;

namespace Vfio.Iommu.Type1;

internal sealed partial class VfioIommu
{
    private const string PinOp = "vfio_pin_pages";

    /// <summary>vfio_iommu_type1_pin_pages(): the count pinned or -errno; nothing stays pinned on failure.</summary>
    internal int PinPages(IommuGroup iommuGroup, ulong userIova, int prot, Span<ulong> pfns)
    {
        if (!V2)
        {
            return ErrorReason.Fail(Errno.EACCES, $"{PinOp}: needs a TYPE1v2 container");
        }

        _lock.Lock();
        try
        {
            if (Warn.OnOnce(_vaddrInvalidCount != 0, "vfio_pin_pages not allowed with VFIO_UPDATE_VADDR"))
            {
                return ErrorReason.Fail(Errno.EBUSY, $"{PinOp}: {_vaddrInvalidCount} mappings have an invalidated vaddr");
            }

            if (_devices.Count == 0)
            {
                return ErrorReason.Fail(Errno.EINVAL, $"{PinOp}: no device with a dma_unmap callback is open in the container");
            }

            // With an IOMMU domain every mapped page is already pinned and charged.
            bool doAccounting = _domains.Count == 0;
            int i = 0;
            int ret = 0;
            for (; i < pfns.Length; i++)
            {
                ulong iova = userIova + ((ulong)i << PhysMem.PageShift);
                VfioDma? dma = _dmas.Find(iova, iova + PhysMem.PageSize - 1);
                if (dma is null)
                {
                    ret = ErrorReason.Fail(Errno.EINVAL, $"{PinOp}: iova 0x{iova:x} is not mapped");
                    break;
                }

                if (((int)dma.Prot & prot) != prot)
                {
                    ret = ErrorReason.Fail(Errno.EPERM, $"{PinOp}: mapping {dma} lacks protection 0x{prot:x}");
                    break;
                }

                if (dma.PfnList is not null && dma.PfnList.TryGetValue(iova, out VfioPfn? vpfn))
                {
                    vpfn.RefCount++;
                    pfns[i] = (ulong)vpfn.Pfn;
                    continue;
                }

                ret = PinPageExternalLocked(dma, dma.Vaddr + (iova - dma.Iova), doAccounting, out long pfn);
                if (ret != 0)
                {
                    break;
                }

                if (!Machine.Memory.IsRam(pfn))
                {
                    ret = ErrorReason.Fail(Errno.EINVAL, $"{PinOp}: iova 0x{iova:x} is backed by device memory (pfn 0x{pfn:x})");
                    break;
                }

                (dma.PfnList ??= []).Add(iova, new VfioPfn(iova, pfn));
                pfns[i] = (ulong)pfn;
                MarkDirtyLocked(dma, iova - dma.Iova, PhysMem.PageSize);
            }

            if (ret != 0)
            {
                for (int j = 0; j < i; j++)
                {
                    ulong iova = userIova + ((ulong)j << PhysMem.PageShift);
                    UnpinPageExternalLocked(_dmas.Find(iova, iova + PhysMem.PageSize - 1)!, iova, doAccounting);
                    pfns[j] = 0;
                }

                pfns[i] = 0;
                return ret;
            }

            VfioIommuGroup? group = FindGroupLocked(iommuGroup);
            if (group is not null && !group.PinnedPageDirtyScope)
            {
                group.PinnedPageDirtyScope = true;
                _numNonPinnedGroups--;
            }

            return pfns.Length;
        }
        finally
        {
            _lock.Unlock();
        }
    }

    /// <summary>vfio_pin_page_external(): one page from the mapping owner's mm, charged when <paramref name="doAccounting"/>.</summary>
    private int PinPageExternalLocked(VfioDma dma, ulong vaddr, bool doAccounting, out long pfn)
    {
        _lock.AssertHeld();
        pfn = 0;
        MmStruct mm = dma.Mm!;
        if (!mm.GetNotZero())
        {
            return ErrorReason.Fail(Errno.ENODEV, $"{PinOp}: the mapping's owner has exited");
        }

        try
        {
            Span<PfnRun> run = stackalloc PfnRun[1];
            GupFlags flags = GupFlags.FOLL_LONGTERM | ((dma.Prot & IommuProt.Write) != 0 ? GupFlags.FOLL_WRITE : 0);
            long n = mm.PinUserPages(vaddr, 1, flags, run, out _);
            bool rsvd = false;
            if (n == Errno.EFAULT.Negative())
            {
                n = FollowPfnmapRun(mm, vaddr, 1, (dma.Prot & IommuProt.Write) != 0, ref run[0]);
                rsvd = true;
            }

            if (n != 1)
            {
                return ErrorReason.Fail(n < 0 ? (Errno)(-n) : Errno.EFAULT, $"{PinOp}: vaddr 0x{vaddr:x} cannot be pinned");
            }

            if (!rsvd)
            {
                DropZeroPagePins(run);
            }

            // Reserved frames (device memory, the zero page) are never charged.
            pfn = run[0].Pfn;
            if (doAccounting && !Machine.Memory.IsInvalidOrReserved(pfn))
            {
                int ret = LockAcct(dma, 1, async: false);
                if (ret != 0)
                {
                    Machine.Memory.Unpin(run[0], dirty: false);
                    SimProcess t = dma.Task!;
                    Kernel.Log.Warn($"vfio_pin_page_external: Task {t.Comm} ({t.Pid}) RLIMIT_MEMLOCK ({t.Limits.MemlockBytes}) exceeded");
                    return ErrorReason.Fail((Errno)(-ret), $"{PinOp}: charging one page to {t} exceeds its RLIMIT_MEMLOCK");
                }
            }

            return 0;
        }
        finally
        {
            mm.Put();
        }
    }

    /// <summary>vfio_unpin_page_external(): drops one pin count; at zero the page is unpinned (and uncharged).</summary>
    private void UnpinPageExternalLocked(VfioDma dma, ulong iova, bool doAccounting)
    {
        _lock.AssertHeld();
        if (dma.PfnList is null || !dma.PfnList.TryGetValue(iova, out VfioPfn? vpfn))
        {
            Warn.On(Kernel, true, $"vfio_unpin_page_external: iova 0x{iova:x} is not pinned in {dma}");
            return;
        }

        if (--vpfn.RefCount != 0)
        {
            return;
        }

        dma.PfnList.Remove(iova);
        if (dma.PfnList.Count == 0)
        {
            dma.PfnList = null;
        }

        if (!Machine.Memory.IsInvalidOrReserved(vpfn.Pfn))
        {
            Machine.Memory.Unpin(new PfnRun(vpfn.Pfn, 1), dirty: (dma.Prot & IommuProt.Write) != 0);
            if (doAccounting)
            {
                LockAcct(dma, -1, async: true);
            }
        }
    }

    /// <summary>vfio_iommu_type1_unpin_pages(): a WARN on a v1 container or a page outside every mapping.</summary>
    internal void UnpinPages(ulong userIova, int npage)
    {
        if (Warn.On(Kernel, !V2, "vfio_unpin_pages on a TYPE1 (v1) container"))
        {
            return;
        }

        int i = 0;
        _lock.Lock();
        try
        {
            bool doAccounting = _domains.Count == 0;
            for (; i < npage; i++)
            {
                ulong iova = userIova + ((ulong)i << PhysMem.PageShift);
                VfioDma? dma = _dmas.Find(iova, iova + PhysMem.PageSize - 1);
                if (dma is null)
                {
                    break;
                }

                UnpinPageExternalLocked(dma, iova, doAccounting);
            }
        }
        finally
        {
            _lock.Unlock();
        }

        Warn.On(Kernel, i != npage, $"vfio_unpin_pages: iova 0x{userIova + ((ulong)i << PhysMem.PageShift):x} is not mapped ({i} of {npage} pages unpinned)");
    }

    /// <summary>vfio_iommu_type1_dma_rw(): copies to or from the memory behind the IOVAs, mapping by mapping.</summary>
    internal int DmaRw(ulong userIova, Span<byte> data, bool write)
    {
        _lock.Lock();
        try
        {
            if (Warn.OnOnce(_vaddrInvalidCount != 0, "vfio_dma_rw not allowed with VFIO_UPDATE_VADDR"))
            {
                return ErrorReason.Fail(Errno.EBUSY, $"vfio_dma_rw: {_vaddrInvalidCount} mappings have an invalidated vaddr");
            }

            while (!data.IsEmpty)
            {
                int ret = DmaRwChunkLocked(userIova, data, write, out int done);
                if (ret != 0)
                {
                    return ret;
                }

                data = data[done..];
                userIova += (ulong)done;
            }

            return 0;
        }
        finally
        {
            _lock.Unlock();
        }
    }

    private int DmaRwChunkLocked(ulong iova, Span<byte> data, bool write, out int copied)
    {
        _lock.AssertHeld();
        copied = 0;
        VfioDma? dma = _dmas.Find(iova, iova);
        if (dma is null)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"vfio_dma_rw: iova 0x{iova:x} is not mapped");
        }

        if ((write && (dma.Prot & IommuProt.Write) == 0) || (dma.Prot & IommuProt.Read) == 0)
        {
            return ErrorReason.Fail(Errno.EPERM, $"vfio_dma_rw: mapping {dma} does not allow {(write ? "writes" : "reads")}");
        }

        MmStruct mm = dma.Mm!;
        if (!mm.GetNotZero())
        {
            return ErrorReason.Fail(Errno.EPERM, $"vfio_dma_rw: the owner of {dma} has exited");
        }

        try
        {
            SimProcess? current = SimProcess.Current;
            if (current is not null && current.Mm != mm)
            {
                return ErrorReason.Fail(Errno.EFAULT, $"vfio_dma_rw: {current} is not the owner of {dma}");
            }

            ulong offset = iova - dma.Iova;
            int count = (int)Math.Min((ulong)data.Length, dma.Size - offset);
            ulong vaddr = dma.Vaddr + offset;
            int r = write ? mm.WriteUser(vaddr, data[..count]) : mm.ReadUser(vaddr, data[..count]);
            if (r != 0)
            {
                return ErrorReason.Fail(Errno.EFAULT, $"vfio_dma_rw: copying {count} bytes at vaddr 0x{vaddr:x} faulted");
            }

            copied = count;
            if (write)
            {
                MarkDirtyLocked(dma, offset, (ulong)count);
            }

            return 0;
        }
        finally
        {
            mm.Put();
        }
    }
}
