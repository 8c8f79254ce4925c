// Models the page allocator and mapping calls drivers use for memory of their own
// (mm/page_alloc.c alloc_page, include/linux/mm.h get_page/put_page, mm/memory.c
// vm_insert_page, mm/vmalloc.c remap_vmalloc_range; v6.12): frames of the machine's RAM
// with a reference count, whose data lives in physical memory, mapped into a VMA that is
// not PFNMAP so each mapping holds a reference and munmap drops it. A frame is freed when
// its last reference goes, whoever drops it (driver, mapping, dma-buf).
//
// Lock order: mmap_lock → the zone lock (PhysMem.Lock). Callers that map hold mmap_lock
// for writing (they run inside ->mmap).

using Vfio.Kernel;

namespace Vfio.Platform.Mm;

/// <summary>Pages a driver allocates, references and maps (struct page helpers).</summary>
internal static class KernelPages
{
    /// <summary>alloc_page(GFP_KERNEL | __GFP_ZERO): a zeroed frame with one reference, or -1 when memory is exhausted.</summary>
    public static long AllocPage(PhysMem mem)
    {
        mem.Lock.Lock();
        try
        {
            return mem.AllocPageLocked();
        }
        finally
        {
            mem.Lock.Unlock();
        }
    }

    /// <summary>get_page().</summary>
    public static void GetPage(PhysMem mem, long pfn)
    {
        mem.Lock.Lock();
        mem.GetPageLocked(pfn);
        mem.Lock.Unlock();
    }

    /// <summary>put_page(): the frame is freed when this was the last reference.</summary>
    public static void PutPage(PhysMem mem, long pfn)
    {
        mem.Lock.Lock();
        mem.PutPageLocked(pfn);
        mem.Lock.Unlock();
    }

    /// <summary>kmap() + memcpy out of the frame at byte <paramref name="offset"/>.</summary>
    public static void Read(PhysMem mem, long pfn, int offset, Span<byte> dst) => mem.Read((pfn << PhysMem.PageShift) + offset, dst);

    /// <summary>kmap() + memcpy into the frame at byte <paramref name="offset"/>.</summary>
    public static void Write(PhysMem mem, long pfn, int offset, ReadOnlySpan<byte> src) => mem.Write((pfn << PhysMem.PageShift) + offset, src);

    /// <summary>
    /// vm_insert_page(): maps <paramref name="pfn"/> at <paramref name="address"/> of a
    /// driver's (non-PFNMAP) VMA, the mapping taking a reference that munmap drops. 0,
    /// -EFAULT outside the VMA, -EINVAL on a PFNMAP VMA, -EBUSY when the entry is present.
    /// Caller holds mmap_lock (it runs inside -&gt;mmap or a fault).
    /// </summary>
    public static int InsertPage(Vma vma, ulong address, long pfn)
    {
        vma.Mm.MmapLock.AssertHeld();
        if (address < vma.Start || address >= vma.End)
        {
            return Errno.EFAULT.Negative();
        }

        if (vma.IsPfnMap)
        {
            return Errno.EINVAL.Negative();
        }

        PhysMem mem = vma.Mm.Mem;
        mem.Lock.Lock();
        try
        {
            long i = vma.Index(address);
            if (vma.Ptes.Get(i) != 0)
            {
                return Errno.EBUSY.Negative();
            }

            mem.GetPageLocked(pfn);
            vma.Ptes.Set(i, (pfn << 12) | Vma.PtePresent);
            return 0;
        }
        finally
        {
            mem.Lock.Unlock();
        }
    }

    /// <summary>
    /// remap_vmalloc_range(vma, addr, 0) for a buffer made of <paramref name="pfns"/>: -EINVAL
    /// when the VMA is longer than the buffer; else every page of the VMA is inserted and the
    /// VMA becomes VM_DONTEXPAND | VM_DONTDUMP. Caller holds mmap_lock.
    /// </summary>
    public static int RemapPages(Vma vma, ReadOnlySpan<long> pfns)
    {
        long pages = (long)(vma.Length >> PhysMem.PageShift);
        if (pages > pfns.Length)
        {
            return Errno.EINVAL.Negative();
        }

        for (long i = 0; i < pages; i++)
        {
            int err = InsertPage(vma, vma.Start + (ulong)(i << PhysMem.PageShift), pfns[(int)i]);
            if (err != 0)
            {
                return err;
            }
        }

        vma.Flags |= VmFlags.VM_DONTEXPAND | VmFlags.VM_DONTDUMP;
        return 0;
    }
}
