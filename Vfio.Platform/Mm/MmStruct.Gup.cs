// Models mm/gup.c (v6.12): long-term pinning of user pages (pin_user_pages_remote with
// FOLL_PIN | FOLL_LONGTERM) and its checks — no VMA, VM_IO/VM_PFNMAP, or a write to a
// read-only VMA is -EFAULT — returning the pinned frames as runs of physically contiguous
// pfns. A hugetlb page is pinned once per folio (its head counts every subpage pinned),
// as try_grab_folio does, so pinning 1 GiB of 2 MiB pages touches 512 counters, not
// 262,144. Unpin is PhysMem.Unpin (unpin_user_page_range_dirty_lock).
//
// A read-only FOLL_LONGTERM pin of a private mapping unshares the zero page into a fresh
// page on v6.2 and later (gup_must_unshare); on v6.1 it pins the zero page.
//
// The zone lock is taken once for the whole call; faults of unpopulated anonymous and
// hugetlb pages are served inside it.

using Vfio.Kernel;

namespace Vfio.Platform.Mm;

/// <summary>gup_flags (FOLL_*) understood by the simulator.</summary>
[Flags]
public enum GupFlags
{
    None = 0,
    /// <summary>FOLL_WRITE: the pages will be written (faults unshare the zero page).</summary>
    FOLL_WRITE = 0x01,
    /// <summary>FOLL_FORCE: ignore VMA write permission (ptrace-style).</summary>
    FOLL_FORCE = 0x10,
    /// <summary>FOLL_LONGTERM: the pin outlives the call (vfio, RDMA).</summary>
    FOLL_LONGTERM = 0x400,
}

public sealed partial class MmStruct
{
    /// <summary>Fault-injection site evaluated once per VMA batch of a pin: failing it is -ENOMEM, or the count pinned so far.</summary>
    public const string GupPinFaultSite = "gup:pin";

    /// <summary>
    /// pin_user_pages_remote(): pins up to <paramref name="nrPages"/> pages from
    /// <paramref name="start"/> (page aligned) and writes them to <paramref name="runs"/> as
    /// contiguous runs. Returns the number of pages pinned (fewer than asked when a later
    /// page fails or <paramref name="runs"/> is full), or -errno when the first page
    /// fails: -EFAULT (hole, VM_IO/VM_PFNMAP, write to read-only), -ENOMEM (out of memory).
    /// Caller holds mmap_lock for reading.
    /// </summary>
    internal long PinUserPagesLocked(ulong start, long nrPages, GupFlags flags, Span<PfnRun> runs, out int runCount)
    {
        MmapLock.AssertHeld();
        runCount = 0;
        if ((start & (PhysMem.PageSize - 1)) != 0)
        {
            throw new ArgumentException($"GUP start 0x{start:x} is not page aligned", nameof(start));
        }

        if (nrPages <= 0 || runs.IsEmpty)
        {
            return 0;
        }

        bool write = (flags & GupFlags.FOLL_WRITE) != 0;
        bool force = (flags & GupFlags.FOLL_FORCE) != 0;

        // gup_must_unshare() (v6.2+): a read-only long-term pin must not pin a page the
        // process could later replace on write (COW), so it unshares the zero page into a
        // fresh anonymous page. Before v6.2 the zero page itself was pinned.
        bool unshareZero = !write && (flags & GupFlags.FOLL_LONGTERM) != 0 && Kernel.Profile.Has(PlatformFeatures.LongTermGupUnsharesZeroPage);
        long done = 0;
        ulong addr = start;
        Mem.Lock.Lock();
        try
        {
            while (done < nrPages)
            {
                Vma? vma = FindVmaLocked(addr);
                int err = vma is null ? Errno.EFAULT.Negative() : CheckVmaFlags(vma, write, force);
                if (err != 0)
                {
                    return done > 0 ? done : err;
                }

                // One evaluation per VMA batch, as __get_user_pages() can fail on any of
                // them; pages already pinned are kept and counted, as GUP returns them.
                if (Kernel.Faults.ShouldFail(GupPinFaultSite))
                {
                    return done > 0 ? done : Errno.ENOMEM.Negative();
                }

                long before = done;
                err = vma!.Pool is not null
                    ? PinHugeLocked(vma, ref addr, nrPages, ref done, write, runs, ref runCount)
                    : PinSmallLocked(vma, ref addr, nrPages, ref done, write, unshareZero && (vma.Flags & VmFlags.VM_SHARED) == 0, runs, ref runCount);
                if (err != 0)
                {
                    return done > 0 ? done : err;
                }

                if (done == before)
                {
                    break; // The run buffer is full.
                }
            }

            return done;
        }
        finally
        {
            Mem.Lock.Unlock();
        }
    }

    /// <summary>As <see cref="PinUserPagesLocked"/>, taking mmap_lock for reading around the call.</summary>
    internal long PinUserPages(ulong start, long nrPages, GupFlags flags, Span<PfnRun> runs, out int runCount)
    {
        MmapLock.DownRead();
        try
        {
            return PinUserPagesLocked(start, nrPages, flags, runs, out runCount);
        }
        finally
        {
            MmapLock.UpRead();
        }
    }

    /// <summary>check_vma_flags() of GUP.</summary>
    private static int CheckVmaFlags(Vma vma, bool write, bool force)
    {
        if ((vma.Flags & (VmFlags.VM_IO | VmFlags.VM_PFNMAP)) != 0)
        {
            return Errno.EFAULT.Negative();
        }

        if (write && (vma.Flags & VmFlags.VM_WRITE) == 0 && !force)
        {
            return Errno.EFAULT.Negative();
        }

        if (!write && (vma.Flags & VmFlags.VM_READ) == 0 && !force)
        {
            return Errno.EFAULT.Negative();
        }

        return 0;
    }

    private int PinSmallLocked(Vma vma, ref ulong addr, long nrPages, ref long done, bool write, bool unshareZero, Span<PfnRun> runs, ref int runCount)
    {
        Mem.Lock.AssertHeld();
        long idx = vma.Index(addr);
        long endIdx = Math.Min(vma.Ptes.Entries, idx + (nrPages - done));
        long pinned = 0;
        int err = 0;
        long metaIndex = -1;
        FrameMeta[]? meta = null;

        // A page faults when it is not present, or (a write, or a read that must unshare)
        // when it is the zero page: one masked compare per page.
        long faultMask = Vma.PtePresent | (write || unshareZero ? Vma.PteZero : 0);

        // The open run lives in locals and is written out when it ends: scattered memory
        // makes a new run for almost every page.
        int rc = runCount;
        long runStart = -1, runLen = 0;
        if (rc > 0)
        {
            rc--;
            runStart = runs[rc].Pfn;
            runLen = runs[rc].Count;
        }

        while (idx < endIdx)
        {
            long[] chunk = vma.Ptes.ChunkFor(idx);
            int j = (int)(idx & (PteTable.ChunkSize - 1));
            int jEnd = (int)Math.Min(PteTable.ChunkSize, j + (endIdx - idx));
            for (; j < jEnd; j++, idx++)
            {
                long pte = chunk[j];
                if ((pte & faultMask) != Vma.PtePresent)
                {
                    err = FaultInLocked(vma, idx, write, unshareZero);
                    if (err != 0)
                    {
                        goto out_done;
                    }

                    pte = chunk[j];
                }

                long pfn = pte >> 12;
                if (pfn == runStart + runLen)
                {
                    runLen++;
                }
                else
                {
                    if (runLen > 0)
                    {
                        if (rc + 1 == runs.Length)
                        {
                            goto out_done; // No room for another run.
                        }

                        runs[rc++] = new PfnRun(runStart, runLen);
                    }

                    runStart = pfn;
                    runLen = 1;
                }

                if ((pfn >> PhysMem.MetaChunkShift) != metaIndex)
                {
                    metaIndex = pfn >> PhysMem.MetaChunkShift;
                    meta = Mem.MetaChunk(pfn);
                }

                ref FrameMeta m = ref meta![pfn & PhysMem.MetaChunkMask];
                m.Ref++;
                m.Pin++;
                pinned++;
            }
        }

    out_done:
        if (runLen > 0)
        {
            runs[rc++] = new PfnRun(runStart, runLen);
        }

        Kernel.Cost.Charge(CostOp.GupFolio, pinned); // every 4 KiB page is its own folio
        Kernel.Cost.Charge(CostOp.GupPage, pinned);
        runCount = rc;
        Mem.AddPinsAcquiredLocked(pinned);
        done += pinned;
        addr += (ulong)pinned << PhysMem.PageShift;
        return err;
    }

    private int PinHugeLocked(Vma vma, ref ulong addr, long nrPages, ref long done, bool write, Span<PfnRun> runs, ref int runCount)
    {
        Mem.Lock.AssertHeld();
        ulong hugeMask = (1UL << vma.PageShift) - 1;
        long perFolio = 1L << (vma.PageShift - PhysMem.PageShift);

        // Charged once per call, not per folio (a 16 GiB map pins 8,192 folios in 16 calls).
        long folios = 0, pages = 0;
        try
        {
            while (addr < vma.End && done < nrPages)
            {
                long idx = vma.Index(addr);
                int err = FaultInLocked(vma, idx, write);
                if (err != 0)
                {
                    return err;
                }

                long head = vma.Ptes.Get(idx) >> 12;
                long sub = (long)((addr & hugeMask) >> PhysMem.PageShift);
                long n = Math.Min(perFolio - sub, nrPages - done);
                long pfn = head + sub;
                if (runCount > 0 && runs[runCount - 1].End == pfn)
                {
                    runs[runCount - 1] = new PfnRun(runs[runCount - 1].Pfn, runs[runCount - 1].Count + n);
                }
                else if (runCount < runs.Length)
                {
                    runs[runCount++] = new PfnRun(pfn, n);
                }
                else
                {
                    return 0;
                }

                Mem.PinLocked(pfn, n);
                folios++;
                pages += n;
                done += n;
                addr += (ulong)n << PhysMem.PageShift;
            }

            return 0;
        }
        finally
        {
            Kernel.Cost.Charge(CostOp.GupFolio, folios);
            Kernel.Cost.Charge(CostOp.GupPage, pages);
        }
    }

    // ---- User memory access (access_remote_vm, copy_{from,to}_user).

    /// <summary>
    /// Reads user memory at <paramref name="addr"/> as the CPU would: faults pages in,
    /// honours VMA permissions, reads device memory through PFNMAP mappings.
    /// 0, or -EFAULT on a hole or a page without read permission.
    /// </summary>
    public int ReadUser(ulong addr, Span<byte> dst) => Access(addr, dst, default, write: false);

    /// <summary>
    /// Reads user memory at <paramref name="addr"/> without changing anything, for an
    /// observer such as strace (copy_from_user_nofault): only pages already present in
    /// ordinary memory are read — no fault, no device access through a PFNMAP/IO mapping.
    /// 0, or -EFAULT when some byte is not readable that way.
    /// </summary>
    public int PeekUser(ulong addr, Span<byte> dst)
    {
        if (dst.Length == 0)
        {
            return 0;
        }

        if (addr + (ulong)dst.Length < addr || addr + (ulong)dst.Length > TaskSize)
        {
            return Errno.EFAULT.Negative();
        }

        MmapLock.DownRead();
        try
        {
            int done = 0;
            Vma? vma = null;
            while (done < dst.Length)
            {
                ulong a = addr + (ulong)done;
                if (vma is null || a >= vma.End)
                {
                    vma = FindVmaLocked(a);
                    if (vma is null || (vma.Flags & (VmFlags.VM_READ | VmFlags.VM_WRITE)) == 0 || (vma.Flags & (VmFlags.VM_PFNMAP | VmFlags.VM_IO)) != 0)
                    {
                        return Errno.EFAULT.Negative();
                    }
                }

                int inPage = (int)Math.Min(dst.Length - done, PhysMem.PageSize - (long)(a & (PhysMem.PageSize - 1)));
                long pte = vma.Ptes.Get(vma.Index(a));
                if ((pte & Vma.PtePresent) == 0)
                {
                    return Errno.EFAULT.Negative();
                }

                long pfn = (pte >> 12) + (vma.IsHugetlb ? (long)((a & ((1UL << vma.PageShift) - 1)) >> PhysMem.PageShift) : 0);
                Mem.Read((pfn << PhysMem.PageShift) + (long)(a & (PhysMem.PageSize - 1)), dst.Slice(done, inPage));
                done += inPage;
            }

            return 0;
        }
        finally
        {
            MmapLock.UpRead();
        }
    }

    /// <summary>Writes user memory at <paramref name="addr"/>; 0, or -EFAULT on a hole or a read-only page.</summary>
    public int WriteUser(ulong addr, ReadOnlySpan<byte> src) => Access(addr, default, src, write: true);

    private int Access(ulong addr, Span<byte> dst, ReadOnlySpan<byte> src, bool write)
    {
        int length = write ? src.Length : dst.Length;
        if (length == 0)
        {
            return 0;
        }

        if (addr + (ulong)length < addr || addr + (ulong)length > TaskSize)
        {
            return Errno.EFAULT.Negative();
        }

        MmapLock.DownRead();
        try
        {
            // The VMA is looked up again only when the copy leaves it, and a page is faulted
            // only when its entry is missing (or is the zero page and this is a write): a
            // copy over present pages takes the zone lock once per page, in Mem.Read/Write.
            int done = 0;
            Vma? vma = null;
            while (done < length)
            {
                ulong a = addr + (ulong)done;
                if (vma is null || a >= vma.End)
                {
                    vma = FindVmaLocked(a);
                    if (vma is null || (write ? (vma.Flags & VmFlags.VM_WRITE) == 0 : (vma.Flags & (VmFlags.VM_READ | VmFlags.VM_WRITE)) == 0))
                    {
                        return Errno.EFAULT.Negative();
                    }
                }

                int inPage = (int)Math.Min(length - done, PhysMem.PageSize - (long)(a & (PhysMem.PageSize - 1)));
                long index = vma.Index(a);
                long pte = vma.Ptes.Get(index);
                if ((pte & Vma.PtePresent) == 0 || (write && (pte & Vma.PteZero) != 0))
                {
                    if (HandleFaultLocked(vma, a, write) != 0)
                    {
                        return Errno.EFAULT.Negative();
                    }

                    pte = vma.Ptes.Get(index);
                }

                long pfn = (pte >> 12) + (vma.IsHugetlb ? (long)((a & ((1UL << vma.PageShift) - 1)) >> PhysMem.PageShift) : 0);
                long phys = (pfn << PhysMem.PageShift) + (long)(a & (PhysMem.PageSize - 1));
                if (write)
                {
                    Mem.Write(phys, src.Slice(done, inPage));
                }
                else
                {
                    Mem.Read(phys, dst.Slice(done, inPage));
                }

                done += inPage;
            }

            return 0;
        }
        finally
        {
            MmapLock.UpRead();
        }
    }
}
