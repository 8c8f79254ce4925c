// Models the external-pinning side of drivers/vfio/vfio_iommu_type1.c in the 2016 mdev
// design: v4.10 (the merged series) for the notifier chain (iommu->notifier, register with
// VFIO_IOMMU_NOTIFY_DMA_UNMAP only, else EINVAL), vfio_iommu_type1_pin_pages /
// unpin_pages over user_pfn[] arrays (v2 only → EACCES; no mdev group or no registered
// notifier → EINVAL; per page: unmapped → EINVAL, protection → EPERM; all-or-nothing;
// unpin returns the count and ignores pages that are not pinned), and the pre-merge
// revisions of the series for the per-address-space pfn_list (one pin and one locked_vm
// charge per (mm, user page), whatever mapping it was pinned through).
//
// Lock order: _lock → _deviceListLock (the notifier chain is guarded by _deviceListLock and
// called with _lock dropped, as the device list is) → the mapper's mmap_lock.

using Vfio.Core;
using Vfio.Kernel;
using Vfio.Platform.Iommu;
using Vfio.Platform.Mm;
using Vfio.Platform.Proc;

namespace Vfio.Iommu.Type1;

/// <summary>One entry of a per-address-space pfn_list: a user page pinned for emulated-IOMMU drivers.</summary>
internal sealed class VfioAsPin(long pfn, SimProcess task, bool lockCap, bool writable)
{
    /// <summary>The pinned frame.</summary>
    public long Pfn { get; } = pfn;

    /// <summary>The task whose RLIMIT_MEMLOCK the charge counts against.</summary>
    public SimProcess Task { get; } = task;

    /// <summary>The task had CAP_IPC_LOCK.</summary>
    public bool LockCap { get; } = lockCap;

    /// <summary>The page was pinned for writing (dirtied when unpinned).</summary>
    public bool Writable { get; } = writable;

    /// <summary>Pins not yet matched by an unpin, through any mapping of the page.</summary>
    public int RefCount { get; set; } = 1;

    /// <summary>The page is charged to the address space's locked_vm (no IOMMU domain when it was pinned).</summary>
    public bool Charged { get; set; }
}

internal sealed partial class VfioIommu
{
    // The VFIO_IOMMU_NOTIFY chain (iommu->notifier); non-null only in the 2016 design. Guarded by _deviceListLock.
    private List<IVfioIommuNotifier>? _notifiers;

    // Per-address-space pfn_list, by (mm, page-aligned vaddr); non-null only with ExternalPinsPerAddressSpace. Guarded by _lock.
    private Dictionary<(MmStruct Mm, ulong Vaddr), VfioAsPin>? _asPins;

    /// <summary>Registered VFIO_IOMMU_NOTIFY notifiers.</summary>
    internal int RegisteredNotifiers
    {
        get
        {
            _deviceListLock.Lock();
            try
            {
                return _notifiers?.Count ?? 0;
            }
            finally
            {
                _deviceListLock.Unlock();
            }
        }
    }

    /// <summary>Pages pinned through the per-address-space pfn_list (each counted once).</summary>
    internal int AddressSpacePins
    {
        get
        {
            _lock.Lock();
            try
            {
                return _asPins?.Count ?? 0;
            }
            finally
            {
                _lock.Unlock();
            }
        }
    }

    private bool NotifierChainDesign => Module.Core.Design.DmaUnmapNotifierChain;

    /// <summary>vfio_iommu_type1_register_notifier(): only DMA_UNMAP is known; anything else left over is EINVAL.</summary>
    internal int RegisterNotifier(ref ulong events, IVfioIommuNotifier nb)
    {
        events &= ~VfioIommuNotify.DmaUnmap;
        if (events != 0)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"vfio_register_notifier: unknown events 0x{events:x}");
        }

        if (!NotifierChainDesign)
        {
            return ErrorReason.Fail(Errno.ENOTTY, "vfio_register_notifier: this kernel notifies through ops->dma_unmap (VfioDesign.DmaUnmapNotifierChain is off)");
        }

        _deviceListLock.Lock();
        try
        {
            (_notifiers ??= []).Add(nb);
        }
        finally
        {
            _deviceListLock.Unlock();
        }

        return 0;
    }

    /// <summary>vfio_iommu_type1_unregister_notifier(): blocking_notifier_chain_unregister, -ENOENT when not registered.</summary>
    internal int UnregisterNotifier(IVfioIommuNotifier nb)
    {
        _deviceListLock.Lock();
        try
        {
            return _notifiers is not null && _notifiers.Remove(nb) ? 0 : ErrorReason.Fail(Errno.ENOENT, "vfio_unregister_notifier: the notifier is not registered");
        }
        finally
        {
            _deviceListLock.Unlock();
        }
    }

    /// <summary>blocking_notifier_call_chain(VFIO_IOMMU_NOTIFY_DMA_UNMAP) with _lock dropped.</summary>
    private void CallNotifierChainLocked(ulong iova, ulong length)
    {
        _deviceListLock.AssertHeld();
        foreach (IVfioIommuNotifier nb in _notifiers!.ToArray())
        {
            nb.DmaUnmap(iova, length);
        }
    }

    /// <summary>vfio_iommu_type1_pin_pages() of v4.10: user_pfn[i] is the IOVA page; npage or -errno, all-or-nothing.</summary>
    internal int PinPagesByPfn(ReadOnlySpan<ulong> userPfn, int prot, Span<ulong> physPfn)
    {
        if (!V2)
        {
            return ErrorReason.Fail(Errno.EACCES, $"{PinOp}: needs a TYPE1v2 container");
        }

        _lock.Lock();
        try
        {
            if (_emulatedGroups.Count == 0 || RegisteredNotifiersLocked() == 0)
            {
                return ErrorReason.Fail(Errno.EINVAL, _emulatedGroups.Count == 0
                    ? $"{PinOp}: the container has no mdev (external) domain"
                    : $"{PinOp}: no VFIO_IOMMU_NOTIFY notifier is registered in the container");
            }

            bool perAs = Module.Core.Design.ExternalPinsPerAddressSpace;
            if (perAs)
            {
                _asPins ??= [];
            }

            bool doAccounting = _domains.Count == 0;
            int i = 0;
            int ret = 0;
            for (; i < userPfn.Length; i++)
            {
                ulong iova = userPfn[i] << PhysMem.PageShift;
                VfioDma? dma = _dmas.Find(iova, iova + PhysMem.PageSize - 1);
                if (dma is null)
                {
                    ret = ErrorReason.Fail(Errno.EINVAL, $"{PinOp}: iova 0x{iova:x} (user pfn 0x{userPfn[i]:x}) is not mapped");
                    break;
                }

                if (((int)dma.Prot & prot) != prot)
                {
                    ret = ErrorReason.Fail(Errno.EPERM, $"{PinOp}: mapping {dma} lacks protection 0x{prot:x}");
                    break;
                }

                ret = perAs ? PinAsPageLocked(dma, iova, doAccounting, out long pfn) : PinDmaPageLocked(dma, iova, doAccounting, out pfn);
                if (ret != 0)
                {
                    break;
                }

                physPfn[i] = (ulong)pfn;
                MarkDirtyLocked(dma, iova - dma.Iova, PhysMem.PageSize);
            }

            if (ret == 0)
            {
                return userPfn.Length;
            }

            physPfn[i] = 0;
            for (int j = 0; j < i; j++)
            {
                UnpinPfnLocked(userPfn[j] << PhysMem.PageShift, perAs, doAccounting);
                physPfn[j] = 0;
            }

            return ret;
        }
        finally
        {
            _lock.Unlock();
        }
    }

    /// <summary>vfio_iommu_type1_unpin_pages() of v4.10: stops at the first page outside every mapping; the count unpinned, or -EINVAL for none.</summary>
    internal int UnpinPagesByPfn(ReadOnlySpan<ulong> userPfn)
    {
        if (!V2)
        {
            return ErrorReason.Fail(Errno.EACCES, "vfio_unpin_pages: needs a TYPE1v2 container");
        }

        _lock.Lock();
        try
        {
            bool perAs = _asPins is not null;
            bool doAccounting = _domains.Count == 0;
            int i = 0;
            for (; i < userPfn.Length; i++)
            {
                ulong iova = userPfn[i] << PhysMem.PageShift;
                if (!UnpinPfnLocked(iova, perAs, doAccounting))
                {
                    break;
                }
            }

            return i > 0 ? i : ErrorReason.Fail(Errno.EINVAL, $"vfio_unpin_pages: iova 0x{userPfn[0] << PhysMem.PageShift:x} is not mapped");
        }
        finally
        {
            _lock.Unlock();
        }
    }

    private int RegisteredNotifiersLocked()
    {
        _lock.AssertHeld();
        _deviceListLock.Lock();
        int n = _notifiers?.Count ?? 0;
        _deviceListLock.Unlock();
        return n;
    }

    /// <summary>The merged v4.10 path: the dma's own pfn_list, keyed by IOVA.</summary>
    private int PinDmaPageLocked(VfioDma dma, ulong iova, bool doAccounting, out long pfn)
    {
        _lock.AssertHeld();
        int at = dma.PfnList?.IndexOf(iova) ?? -1;
        if (at >= 0)
        {
            ref VfioPfn vpfn = ref dma.PfnList!.At(at);
            vpfn.RefCount++;
            pfn = vpfn.Pfn;
            return 0;
        }

        int ret = PinPageExternalLocked(dma, dma.Vaddr + (iova - dma.Iova), doAccounting, out pfn);
        if (ret != 0)
        {
            return ret;
        }

        (dma.PfnList ??= new VfioPfnList()).Add(iova, pfn);
        return 0;
    }

    /// <summary>The pre-merge path: one entry per (mm, user page), shared by every mapping of the page.</summary>
    private int PinAsPageLocked(VfioDma dma, ulong iova, bool doAccounting, out long pfn)
    {
        _lock.AssertHeld();
        ulong vaddr = dma.Vaddr + (iova - dma.Iova);
        var key = (dma.Mm!, vaddr & ~(ulong)(PhysMem.PageSize - 1));
        if (_asPins!.TryGetValue(key, out VfioAsPin? p))
        {
            p.RefCount++;
            dma.ExternalRefs++;
            pfn = p.Pfn;
            return 0;
        }

        int ret = PinPageExternalLocked(dma, vaddr, doAccounting: false, out pfn);
        if (ret != 0)
        {
            return ret;
        }

        bool writable = (dma.Prot & IommuProt.Write) != 0;
        var entry = new VfioAsPin(pfn, dma.Task!, dma.LockCap, writable);
        if (doAccounting && !Machine.Memory.IsInvalidOrReserved(pfn))
        {
            ret = ChargeAsPin(key.Item1, entry);
            if (ret != 0)
            {
                Machine.Memory.Unpin(new PfnRun(pfn, 1), dirty: false);
                Kernel.Log.Warn($"vfio_pin_page_external: Task {entry.Task.Comm} ({entry.Task.Pid}) RLIMIT_MEMLOCK ({entry.Task.Limits.MemlockBytes}) exceeded");
                return ErrorReason.Fail(Errno.ENOMEM, $"{PinOp}: charging one page to {entry.Task} exceeds its RLIMIT_MEMLOCK");
            }
        }

        _asPins.Add(key, entry);
        dma.ExternalRefs++;
        return 0;
    }

    /// <summary>Drops one pin of the page at <paramref name="iova"/>; false when no mapping covers it (a page mapped but not pinned is ignored).</summary>
    private bool UnpinPfnLocked(ulong iova, bool perAs, bool doAccounting)
    {
        _lock.AssertHeld();
        VfioDma? dma = _dmas.Find(iova, iova + PhysMem.PageSize - 1);
        if (dma is null)
        {
            return false;
        }

        if (!perAs)
        {
            if (dma.PfnList is not null && dma.PfnList.Contains(iova))
            {
                UnpinPageExternalLocked(dma, iova, doAccounting);
                FlushUnpinsLocked();
            }

            return true;
        }

        ulong vaddr = dma.Vaddr + (iova - dma.Iova);
        var key = (dma.Mm!, vaddr & ~(ulong)(PhysMem.PageSize - 1));
        if (!_asPins!.TryGetValue(key, out VfioAsPin? p))
        {
            return true;
        }

        if (dma.ExternalRefs > 0)
        {
            dma.ExternalRefs--;
        }

        if (--p.RefCount != 0)
        {
            return true;
        }

        _asPins.Remove(key);
        if (!Machine.Memory.IsInvalidOrReserved(p.Pfn))
        {
            Machine.Memory.Unpin(new PfnRun(p.Pfn, 1), dirty: p.Writable);
            if (p.Charged)
            {
                UnchargeAsPin(key.Item1, p);
            }
        }

        return true;
    }

    /// <summary>Charges one page to <paramref name="mm"/> for <paramref name="p"/>; 0 or -ENOMEM (RLIMIT_MEMLOCK) / -ESRCH (mm gone).</summary>
    private static int ChargeAsPin(MmStruct mm, VfioAsPin p)
    {
        if (!mm.GetNotZero())
        {
            return Errno.ESRCH.Negative();
        }

        try
        {
            int ret = MmLockAcct(p.Task, mm, p.LockCap, 1);
            if (ret == 0)
            {
                p.Charged = true;
            }

            return ret;
        }
        finally
        {
            mm.Put();
        }
    }

    private static void UnchargeAsPin(MmStruct mm, VfioAsPin p)
    {
        p.Charged = false;
        if (mm.GetNotZero())
        {
            MmLockAcct(p.Task, mm, p.LockCap, -1);
            mm.Put();
        }
    }

    /// <summary>The first IOMMU domain arrived: its mappings pin and charge every page, so the per-address-space charges go.</summary>
    private void UnchargeAsPinsLocked()
    {
        _lock.AssertHeld();
        foreach (KeyValuePair<(MmStruct Mm, ulong Vaddr), VfioAsPin> e in _asPins!)
        {
            if (e.Value.Charged)
            {
                UnchargeAsPin(e.Key.Mm, e.Value);
            }
        }
    }

    /// <summary>vfio_iommu_unmap_unpin_reaccount() for the per-address-space list: the last IOMMU domain went, so each externally pinned page is charged again (a charge over RLIMIT_MEMLOCK is skipped, as the kernel ignores the error).</summary>
    private void ChargeAsPinsLocked()
    {
        _lock.AssertHeld();
        foreach (KeyValuePair<(MmStruct Mm, ulong Vaddr), VfioAsPin> e in _asPins!)
        {
            if (!e.Value.Charged && !Machine.Memory.IsInvalidOrReserved(e.Value.Pfn))
            {
                ChargeAsPin(e.Key.Mm, e.Value);
            }
        }
    }
}
