// Models the emulated-IOMMU side of drivers/vfio/vfio_iommu_type1.c (v6.12):
// vfio_iommu_type1_pin_pages (per-dma pfn_list with pin counts, pages taken from the
// mapping owner's mm, charged to RLIMIT_MEMLOCK only when no IOMMU domain exists,
// all-or-nothing), vfio_iommu_type1_unpin_pages and vfio_iommu_type1_dma_rw.

using System.Diagnostics.CodeAnalysis;
using Vfio.Core;
using Vfio.Kernel;
using Vfio.Platform.Iommu;
using Vfio.Platform.Mm;
using Vfio.Platform.Proc;

namespace Vfio.Iommu.Type1;

internal sealed partial class VfioIommu
{
    private const string PinOp = "vfio_pin_pages";

    // Scratch for PinPages and UnpinPages (guarded by _lock): the GUP runs of one batch of
    // pages, and the frames unpinned by one call waiting to be released in one go.
    private readonly PfnRun[] _pinRuns = new PfnRun[VfioDevice.PinPagesMaxEntries];
    private readonly PfnRun[] _unpinRuns = new PfnRun[VfioDevice.PinPagesMaxEntries];
    private int _unpinRunCount;
    private long _unpinCharged;
    private VfioDma? _unpinDma;

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
            VfioDma? dma = null;
            while (i < pfns.Length)
            {
                ulong iova = userIova + ((ulong)i << PhysMem.PageShift);
                if (!PageInside(dma, iova))
                {
                    // The dma of the previous page is the only one a page inside it can overlap.
                    dma = _dmas.Find(iova, iova + PhysMem.PageSize - 1);
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
                }

                VfioPfnList list = dma.PfnList ??= new VfioPfnList();
                int at = list.IndexOf(iova);
                if (at >= 0)
                {
                    ref VfioPfn vpfn = ref list.At(at);
                    vpfn.RefCount++;
                    pfns[i] = (ulong)vpfn.Pfn;
                    i++;
                    continue;
                }

                // The pages from here that the kernel would pin one by one, page after page
                // in this dma with no entry yet, are pinned as one batch (one GUP, one charge).
                int len = 1;
                long budget = MaxBatchLocked(dma, doAccounting);
                while (i + len < pfns.Length && len < budget)
                {
                    ulong next = iova + ((ulong)len << PhysMem.PageShift);
                    if (!PageInside(dma, next) || list.Contains(next))
                    {
                        break;
                    }

                    len++;
                }

                ret = PinExternalLocked(dma, iova, len, doAccounting, pfns.Slice(i, len), out int pinned);
                i += pinned;
                if (ret != 0)
                {
                    break;
                }
            }

            if (ret != 0)
            {
                pfns[i] = 0;
                for (int j = 0; j < i; j++)
                {
                    ulong iova = userIova + ((ulong)j << PhysMem.PageShift);
                    UnpinPageExternalLocked(_dmas.Find(iova, iova + PhysMem.PageSize - 1)!, iova, doAccounting);
                    pfns[j] = 0;
                }

                FlushUnpinsLocked();
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

    /// <summary>True when the page at <paramref name="iova"/> lies wholly inside <paramref name="dma"/> (so vfio_find_dma would return it).</summary>
    private static bool PageInside([NotNullWhen(true)] VfioDma? dma, ulong iova)
        => dma is not null && dma.Size >= PhysMem.PageSize && iova >= dma.Iova && iova - dma.Iova <= dma.Size - PhysMem.PageSize;

    /// <summary>
    /// The longest batch that cannot fail the RLIMIT_MEMLOCK check part way: the pages the
    /// charged mm may still lock (read without mmap_lock: a hint; the charge itself is checked
    /// under it). A page past the limit is pinned alone, so it fails as the kernel's would.
    /// </summary>
    private long MaxBatchLocked(VfioDma dma, bool doAccounting)
    {
        _lock.AssertHeld();
        if (!doAccounting || dma.LockCap)
        {
            return long.MaxValue;
        }

        (SimProcess task, MmStruct mm) = !Module.Core.Design.LockedVmPerDma && SimProcess.Current is { } caller ? (caller, caller.Mm) : (dma.Task!, dma.Mm!);
        return task.Limits.MemlockPages - mm.LockedVm;
    }

    /// <summary>
    /// vfio_pin_page_external() for <paramref name="npage"/> consecutive pages of
    /// <paramref name="dma"/> from <paramref name="iova"/>, none in its pfn_list, then each
    /// page's pfn_valid check, pfn_list entry and dirty bit as vfio_iommu_type1_pin_pages()
    /// does them. <paramref name="pinned"/> pages are done (in order); the rest were not
    /// touched, or (on -errno) the page at <paramref name="pinned"/> failed. A batch that GUP
    /// stops part way ends early with 0: the next batch starts at the page that stopped it.
    /// </summary>
    private int PinExternalLocked(VfioDma dma, ulong iova, int npage, bool doAccounting, Span<ulong> pfns, out int pinned)
    {
        _lock.AssertHeld();
        pinned = 0;
        MmStruct mm = dma.Mm!;
        if (!mm.GetNotZero())
        {
            return ErrorReason.Fail(Errno.ENODEV, $"{PinOp}: the mapping's owner has exited");
        }

        PhysMem mem = Machine.Memory;
        ulong vaddr = dma.Vaddr + (iova - dma.Iova);
        try
        {
            Span<PfnRun> runs = _pinRuns;
            bool write = (dma.Prot & IommuProt.Write) != 0;
            GupFlags flags = GupFlags.FOLL_LONGTERM | (write ? GupFlags.FOLL_WRITE : 0);
            long n = mm.PinUserPages(vaddr, npage, flags, runs, out int runCount);
            bool rsvd = false;
            if (n == Errno.EFAULT.Negative())
            {
                n = FollowPfnmapRun(mm, vaddr, 1, write, ref runs[0]);
                runCount = 1;
                rsvd = true;
            }

            if (n <= 0)
            {
                return ErrorReason.Fail(n < 0 ? (Errno)(-n) : Errno.EFAULT, $"{PinOp}: vaddr 0x{vaddr:x} cannot be pinned");
            }

            runs = runs[..runCount];
            if (!rsvd)
            {
                DropZeroPagePins(runs);
            }

            // Reserved frames (device memory, the zero page) are never charged.
            if (doAccounting)
            {
                long charge = CountCharged(mem, runs);
                int ret = LockAcct(dma, charge, async: false);
                if (ret != 0)
                {
                    UnpinChargedOnly(mem, runs);
                    SimProcess t = dma.Task!;
                    Kernel.Log.Warn($"vfio_pin_page_external: Task {t.Comm} ({t.Pid}) RLIMIT_MEMLOCK ({t.Limits.MemlockBytes}) exceeded");
                    return ErrorReason.Fail((Errno)(-ret), $"{PinOp}: charging {charge} page(s) to {t} exceeds its RLIMIT_MEMLOCK");
                }
            }

            VfioPfnList list = dma.PfnList!;
            int k = 0;
            for (int r = 0; r < runs.Length; r++)
            {
                PfnRun run = runs[r];
                for (long pfn = run.Pfn; pfn < run.End; pfn++, k++)
                {
                    if (!mem.IsRam(pfn))
                    {
                        // The kernel leaves this page as it is (a reserved frame: neither
                        // pinned nor charged) and unwinds the earlier ones.
                        ReleaseTailLocked(dma, runs, r, pfn + 1, doAccounting);
                        MarkDirtyLocked(dma, iova - dma.Iova, (ulong)k << PhysMem.PageShift);
                        pinned = k;
                        return ErrorReason.Fail(Errno.EINVAL, $"{PinOp}: iova 0x{iova + ((ulong)k << PhysMem.PageShift):x} is backed by device memory (pfn 0x{pfn:x})");
                    }

                    list.Add(iova + ((ulong)k << PhysMem.PageShift), pfn);
                    pfns[k] = (ulong)pfn;
                }
            }

            MarkDirtyLocked(dma, iova - dma.Iova, (ulong)k << PhysMem.PageShift);
            pinned = k;
            return 0;
        }
        finally
        {
            mm.Put();
        }
    }

    /// <summary>vfio_pin_page_external(): one page from the mapping owner's mm, charged when <paramref name="doAccounting"/> (the 2016 designs' paths; <see cref="PinExternalLocked"/> is the batched form).</summary>
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

    /// <summary>The pages of <paramref name="runs"/> vfio_lock_acct charges: every frame that is valid and not reserved.</summary>
    private static long CountCharged(PhysMem mem, ReadOnlySpan<PfnRun> runs)
    {
        long pages = 0;
        foreach (PfnRun r in runs)
        {
            // GUP returns RAM frames: past a run's first frame none can be reserved (the
            // reserved frames are the lowest), so only a run that starts reserved is walked.
            if (!mem.IsInvalidOrReserved(r.Pfn))
            {
                pages += r.Count;
                continue;
            }

            for (long p = r.Pfn; p < r.End; p++)
            {
                if (!mem.IsInvalidOrReserved(p))
                {
                    pages++;
                }
            }
        }

        return pages;
    }

    /// <summary>put_pfn() of each page of <paramref name="runs"/>: reserved frames hold no pin.</summary>
    private static void UnpinChargedOnly(PhysMem mem, ReadOnlySpan<PfnRun> runs)
    {
        foreach (PfnRun r in runs)
        {
            if (!mem.IsInvalidOrReserved(r.Pfn))
            {
                mem.Unpin(r, dirty: false);
                continue;
            }

            for (long p = r.Pfn; p < r.End; p++)
            {
                if (!mem.IsInvalidOrReserved(p))
                {
                    mem.Unpin(new PfnRun(p, 1), dirty: false);
                }
            }
        }
    }

    /// <summary>Unpins and uncharges the pages of a batch from <paramref name="from"/> in run <paramref name="run"/> on, which the kernel would never have pinned.</summary>
    private void ReleaseTailLocked(VfioDma dma, ReadOnlySpan<PfnRun> runs, int run, long from, bool doAccounting)
    {
        _lock.AssertHeld();
        Span<PfnRun> tail = runs.Length - run <= _unpinRuns.Length ? _unpinRuns.AsSpan(0, runs.Length - run) : new PfnRun[runs.Length - run];
        runs[run..].CopyTo(tail);
        tail[0] = new PfnRun(from, runs[run].End - from);
        if (tail[0].Count == 0)
        {
            tail = tail[1..];
        }

        PhysMem mem = Machine.Memory;
        long charged = CountCharged(mem, tail);
        UnpinChargedOnly(mem, tail);
        if (doAccounting)
        {
            LockAcct(dma, -charged, async: false);
        }
    }

    /// <summary>vfio_unpin_page_external(): drops one pin count; at zero the page is unpinned (and uncharged) at the next <see cref="FlushUnpinsLocked"/>.</summary>
    private void UnpinPageExternalLocked(VfioDma dma, ulong iova, bool doAccounting)
    {
        _lock.DebugAssertHeld(); // per page; every caller asserts or takes the lock
        int at = dma.PfnList?.IndexOf(iova) ?? -1;
        if (at < 0)
        {
            Warn.On(Kernel, true, $"vfio_unpin_page_external: iova 0x{iova:x} is not pinned in {dma}");
            return;
        }

        VfioPfnList list = dma.PfnList!;
        ref VfioPfn vpfn = ref list.At(at);
        if (--vpfn.RefCount != 0)
        {
            return;
        }

        long pfn = vpfn.Pfn;
        list.RemoveAt(at);
        if (Machine.Memory.IsInvalidOrReserved(pfn))
        {
            return;
        }

        // put_pfn() and vfio_lock_acct(dma, -1) of each page, gathered per dma and done
        // before iommu->lock is dropped: nothing can see the pages in between.
        if (_unpinDma != dma || _unpinRunCount == _unpinRuns.Length)
        {
            FlushUnpinsLocked();
            _unpinDma = dma;
        }

        ref PfnRun last = ref _unpinRuns[Math.Max(0, _unpinRunCount - 1)];
        if (_unpinRunCount > 0 && last.End == pfn)
        {
            last = new PfnRun(last.Pfn, last.Count + 1);
        }
        else
        {
            _unpinRuns[_unpinRunCount++] = new PfnRun(pfn, 1);
        }

        if (doAccounting)
        {
            _unpinCharged++;
        }
    }

    /// <summary>Unpins the frames gathered by <see cref="UnpinPageExternalLocked"/> and uncharges them from their dma.</summary>
    private void FlushUnpinsLocked()
    {
        _lock.AssertHeld();
        if (_unpinDma is not { } dma)
        {
            return;
        }

        if (_unpinRunCount > 0)
        {
            Machine.Memory.Unpin(_unpinRuns.AsSpan(0, _unpinRunCount), dirty: (dma.Prot & IommuProt.Write) != 0);
        }

        long charged = _unpinCharged;
        _unpinDma = null;
        _unpinRunCount = 0;
        _unpinCharged = 0;
        LockAcct(dma, -charged, async: true);
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
            VfioDma? dma = null;
            for (; i < npage; i++)
            {
                ulong iova = userIova + ((ulong)i << PhysMem.PageShift);
                if (!PageInside(dma, iova))
                {
                    dma = _dmas.Find(iova, iova + PhysMem.PageSize - 1);
                    if (dma is null)
                    {
                        break;
                    }
                }

                UnpinPageExternalLocked(dma, iova, doAccounting);
            }

            FlushUnpinsLocked();
        }
        finally
        {
            _lock.Unlock();
        }

        if (i != npage)
        {
            Warn.On(Kernel, true, $"vfio_unpin_pages: iova 0x{userIova + ((ulong)i << PhysMem.PageShift):x} is not mapped ({i} of {npage} pages unpinned)");
        }
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
