// Models the fault paths of mm/memory.c and mm/hugetlb.c (handle_mm_fault, the zero page,
// hugetlb_fault, fixup_user_fault, follow_pte) for the three kinds of mapping the
// simulator has: anonymous (read faults map the shared zero page, write faults allocate),
// hugetlb (faults take a page reserved at mmap time) and PFNMAP (the driver's fault
// handler inserts device frames).

using Vfio.Kernel;

namespace Vfio.Platform.Mm;

public sealed partial class MmStruct
{
    /// <summary>
    /// handle_mm_fault(): makes the page at <paramref name="addr"/> present (writable when
    /// <paramref name="write"/>). 0, -EFAULT (no permission, SIGBUS from a driver), -ENOMEM.
    /// Caller holds mmap_lock.
    /// </summary>
    internal int HandleFaultLocked(Vma vma, ulong addr, bool write)
    {
        MmapLock.AssertHeld();
        if (write ? (vma.Flags & VmFlags.VM_WRITE) == 0 : (vma.Flags & (VmFlags.VM_READ | VmFlags.VM_WRITE)) == 0)
        {
            return Errno.EFAULT.Negative();
        }

        if (vma.IsPfnMap)
        {
            return PfnMapFault(vma, addr, write);
        }

        Mem.Lock.Lock();
        try
        {
            return FaultInLocked(vma, vma.Index(addr), write);
        }
        finally
        {
            Mem.Lock.Unlock();
        }
    }

    /// <summary>
    /// The anonymous and hugetlb fault path with the zone lock held (GUP calls it inside its
    /// batch): ensures entry <paramref name="index"/> is present and, for a write or an
    /// <paramref name="unshare"/> fault (FAULT_FLAG_UNSHARE), not the zero page.
    /// </summary>
    internal int FaultInLocked(Vma vma, long index, bool write, bool unshare = false)
    {
        // Runs per page inside GUP's batch: debug builds only; its callers take or assert both locks.
        Mem.Lock.DebugAssertHeld();
        MmapLock.DebugAssertHeld();
        long pte = vma.Ptes.Get(index);
        if ((pte & Vma.PtePresent) != 0 && !((write || unshare) && (pte & Vma.PteZero) != 0))
        {
            return 0;
        }

        if (vma.Pool is { } pool)
        {
            if (vma.HugeReserved <= 0)
            {
                return Errno.ENOMEM.Negative();
            }

            long head = pool.AllocReserved(Mem);
            vma.HugeReserved--;
            vma.Ptes.Set(index, (head << 12) | Vma.PtePresent);
            return 0;
        }

        if (!write && !unshare && (vma.Flags & VmFlags.VM_SHARED) == 0)
        {
            // A read of never-written private anonymous memory maps the shared zero page.
            vma.Ptes.Set(index, (Mem.ZeroPfn << 12) | Vma.PtePresent | Vma.PteZero);
            return 0;
        }

        long pfn = Mem.AllocPageLocked();
        if (pfn < 0)
        {
            return Errno.ENOMEM.Negative();
        }

        vma.Ptes.Set(index, (pfn << 12) | Vma.PtePresent);
        return 0;
    }

    private int PfnMapFault(Vma vma, ulong addr, bool write)
    {
        // NOPAGE with the entry still empty: a racing fault is installing the leaf that holds
        // it (or a zap emptied it again). GUP retries the lookup and faults again; so does
        // this, a bounded number of times.
        for (int attempt = 0; ; attempt++)
        {
            VmFault r = PfnMapFaultResult(vma, addr, write);
            if (r != VmFault.NoPage)
            {
                return r == VmFault.Oom ? Errno.ENOMEM.Negative() : Errno.EFAULT.Negative();
            }

            if (vma.Ptes.Get(vma.Index(addr)) != 0)
            {
                return 0;
            }

            if (attempt == 1000)
            {
                return Errno.EFAULT.Negative();
            }

            KTask.Schedule();
        }
    }

    /// <summary>
    /// The PFNMAP part of __handle_mm_fault(): with the entry empty, offer the driver a 1 GiB
    /// (PUD) and then a 2 MiB (PMD) leaf where the VMA covers the whole aligned leaf and no
    /// page of it is mapped yet (pud_none / pmd_none), then the 4 KiB -&gt;fault.
    /// </summary>
    private static VmFault PfnMapFaultResult(Vma vma, ulong addr, bool write)
    {
        if (vma.Ptes.Get(vma.Index(addr)) != 0)
        {
            return VmFault.NoPage;
        }

        if (vma.Ops is not { } ops)
        {
            return VmFault.SigBus;
        }

        // A leaf another fault is installing holds its first entry (the one pud/pmd slot of
        // the kernel): this access waits for it rather than mapping under it.
        for (int order = Vma.PudOrder; order >= Vma.PmdOrder; order -= Vma.PudOrder - Vma.PmdOrder)
        {
            ulong leaf = addr & ~(((ulong)PhysMem.PageSize << order) - 1);
            if (leaf >= vma.Start && (vma.Ptes.Get(vma.Index(leaf)) & (order == Vma.PudOrder ? Vma.PteLeafPud : Vma.PteLeafPmd)) != 0)
            {
                return VmFault.NoPage;
            }
        }

        for (int order = Vma.PudOrder; order >= Vma.PmdOrder; order -= Vma.PudOrder - Vma.PmdOrder)
        {
            ulong size = (ulong)PhysMem.PageSize << order;
            ulong leaf = addr & ~(size - 1);
            if (leaf < vma.Start || leaf + size > vma.End || !vma.Ptes.RangeEmpty(vma.Index(leaf), 1L << order))
            {
                continue;
            }

            VmFault r = ops.HugeFault(vma, addr, order, write);
            if (r != VmFault.Fallback)
            {
                return r;
            }
        }

        return ops.Fault(vma, addr & ~(ulong)(PhysMem.PageSize - 1), write);
    }

    /// <summary>
    /// Faults in every page of [<paramref name="start"/>, <paramref name="end"/>) of
    /// <paramref name="vma"/> (MAP_POPULATE, MAP_LOCKED, mlock); 0 or the first fault's
    /// -errno. Like __mm_populate() it skips VM_IO and VM_PFNMAP VMAs: device memory is
    /// faulted by its users, not prefaulted.
    /// </summary>
    private int PopulateLocked(Vma vma, ulong start, ulong end)
    {
        MmapLock.AssertHeld();
        if ((vma.Flags & (VmFlags.VM_IO | VmFlags.VM_PFNMAP)) != 0)
        {
            return 0;
        }

        bool write = (vma.Flags & VmFlags.VM_WRITE) != 0;
        for (ulong a = start; a < end; a += 1UL << vma.PageShift)
        {
            int err = HandleFaultLocked(vma, a, write);
            if (err != 0)
            {
                return err;
            }
        }

        return 0;
    }

    /// <summary>
    /// follow_fault_pfn() of type1: the frame mapped at <paramref name="vaddr"/> of a PFNMAP
    /// VMA, faulting it in through the driver if needed. -EFAULT when nothing can be mapped
    /// or a write needs a read-only entry. Caller holds mmap_lock for reading.
    /// </summary>
    internal int FollowFaultPfnLocked(Vma vma, ulong vaddr, bool write, out long pfn)
    {
        MmapLock.AssertHeld();
        ArgumentNullException.ThrowIfNull(vma);
        pfn = -1;
        if (write && (vma.Flags & VmFlags.VM_WRITE) == 0)
        {
            return Errno.EFAULT.Negative();
        }

        long pte = vma.Ptes.Get(vma.Index(vaddr));
        if (pte == 0)
        {
            int ret = HandleFaultLocked(vma, vaddr, write);
            if (ret != 0)
            {
                return ret;
            }

            pte = vma.Ptes.Get(vma.Index(vaddr));
            if (pte == 0)
            {
                return Errno.EFAULT.Negative();
            }
        }

        pfn = (pte >> 12) + (vma.IsHugetlb ? (long)((vaddr & ((1UL << vma.PageShift) - 1)) >> PhysMem.PageShift) : 0);
        return 0;
    }

    /// <summary>
    /// Walks the page table: the frame mapped at <paramref name="vaddr"/>, or -1 when
    /// nothing is mapped (no fault is taken). Takes mmap_lock for reading.
    /// </summary>
    public long Translate(ulong vaddr)
    {
        MmapLock.DownRead();
        try
        {
            Vma? v = FindVmaLocked(vaddr);
            if (v is null)
            {
                return -1;
            }

            long pte = v.Ptes.Get(v.Index(vaddr));
            if (pte == 0)
            {
                return -1;
            }

            return (pte >> 12) + (v.IsHugetlb ? (long)((vaddr & ((1UL << v.PageShift) - 1)) >> PhysMem.PageShift) : 0);
        }
        finally
        {
            MmapLock.UpRead();
        }
    }
}
