// Models mm/mmap.c (v6.12) with the VMA split and munmap of mm/vma.c: mmap and its
// flags, munmap, find_vma, get_unmapped_area's checks and placement, mlock_future_ok and
// exit_mmap.
//
// Lock rules: Mmap and Munmap take mmap_lock for writing; FindVmaLocked needs it held,
// FindVma takes it for reading. The file's mmap op and a VMA's open and close run under
// mmap_lock held for writing. Unmapping drops the page-table entries' frame references
// and returns hugetlb reservations under PhysMem's zone lock, taken inside mmap_lock.

using Vfio.Kernel;
using Vfio.Platform.Fs;
using Vfio.Platform.Proc;

namespace Vfio.Platform.Mm;

/// <summary>mmap() protection bits.</summary>
[Flags]
public enum Prot
{
    PROT_NONE = 0,
    PROT_READ = 1,
    PROT_WRITE = 2,
    PROT_EXEC = 4,
    /// <summary>PROT_SEM: accepted and ignored on x86.</summary>
    PROT_SEM = 8,
    /// <summary>PROT_GROWSDOWN (mprotect only): extend to the start of a VM_GROWSDOWN mapping.</summary>
    PROT_GROWSDOWN = 0x0100_0000,
    /// <summary>PROT_GROWSUP (mprotect only).</summary>
    PROT_GROWSUP = 0x0200_0000,
}

/// <summary>mmap() flags (x86-64 values).</summary>
[Flags]
public enum MapFlags
{
    None = 0,
    MAP_SHARED = 0x01,
    MAP_PRIVATE = 0x02,
    MAP_SHARED_VALIDATE = 0x03,
    MAP_TYPE = 0x0f,
    MAP_FIXED = 0x10,
    MAP_ANONYMOUS = 0x20,
    MAP_LOCKED = 0x2000,
    MAP_NORESERVE = 0x4000,
    MAP_POPULATE = 0x8000,
    MAP_HUGETLB = 0x40000,
    MAP_FIXED_NOREPLACE = 0x100000,
    MAP_HUGE_2MB = 21 << 26,
    MAP_HUGE_1GB = 30 << 26,
}

public sealed partial class MmStruct
{
    private const int MapHugeShift = 26;
    private const int MapHugeMask = 0x3f;

    // LEGACY_MAP_MASK: the flags MAP_SHARED_VALIDATE accepts from any file — the type,
    // FIXED, ANONYMOUS, GROWSDOWN, DENYWRITE, EXECUTABLE, LOCKED, NORESERVE, POPULATE,
    // NONBLOCK, STACK, HUGETLB, UNINITIALIZED and the huge-page size bits. Not
    // MAP_FIXED_NOREPLACE or MAP_SYNC.
    private const MapFlags LegacyMapMask = (MapFlags)(0x3 | 0x10 | 0x20 | 0x100 | 0x800 | 0x1000 | 0x2000 | 0x4000 | 0x8000
        | 0x10000 | 0x20000 | 0x40000 | (MapHugeMask << MapHugeShift));

    // ---- Lookup.

    /// <summary>find_vma() restricted to containment: the VMA holding <paramref name="addr"/>, or null. Caller holds mmap_lock.</summary>
    internal Vma? FindVmaLocked(ulong addr)
    {
        MmapLock.AssertHeld();
        int lo = 0, hi = _vmas.Count - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >> 1;
            Vma v = _vmas[mid];
            if (addr < v.Start)
            {
                hi = mid - 1;
            }
            else if (addr >= v.End)
            {
                lo = mid + 1;
            }
            else
            {
                return v;
            }
        }

        return null;
    }

    /// <summary>The VMA holding <paramref name="addr"/>, taking mmap_lock for reading.</summary>
    public Vma? FindVma(ulong addr)
    {
        MmapLock.DownRead();
        try
        {
            return FindVmaLocked(addr);
        }
        finally
        {
            MmapLock.UpRead();
        }
    }

    // ---- mmap.

    /// <summary>
    /// ksys_mmap_pgoff() and do_mmap(): maps <paramref name="length"/> bytes and returns the
    /// address, or -errno, checking in the kernel's order: offset alignment (EINVAL), the fd
    /// (EBADF), the hugetlb size (EINVAL), the length (EINVAL, ENOMEM), the pgoff range
    /// (EOVERFLOW), the address (ENOMEM, EINVAL, EPERM below mmap_min_addr, EEXIST for
    /// MAP_FIXED_NOREPLACE), MAP_LOCKED (EPERM, EAGAIN), then the file (EOVERFLOW,
    /// EOPNOTSUPP, EACCES, ENODEV) or the mapping type (EINVAL). A MAP_FIXED mapping
    /// replaces what was there only after all of these pass; a later failure (no huge pages,
    /// the driver's mmap) leaves the range unmapped, as Linux does.
    /// </summary>
    internal long Mmap(ulong addr, ulong length, Prot prot, MapFlags flags, SimFile? file, ulong offset, SimProcess caller)
    {
        ArgumentNullException.ThrowIfNull(caller);
        if ((offset & (PhysMem.PageSize - 1)) != 0)
        {
            return Errno.EINVAL.Negative();
        }

        bool anonymous = (flags & MapFlags.MAP_ANONYMOUS) != 0;
        if (anonymous)
        {
            file = null;
        }
        else if (file is null)
        {
            return Errno.EBADF.Negative();
        }

        int pageShift = PhysMem.PageShift;
        HugePool? pool = null;
        if ((flags & MapFlags.MAP_HUGETLB) != 0)
        {
            // Only an anonymous mapping can ask for huge pages: no file here is on hugetlbfs.
            if (!anonymous)
            {
                return Errno.EINVAL.Negative();
            }

            int shift = ((int)flags >> MapHugeShift) & MapHugeMask;
            pageShift = shift == 0 ? 21 : shift;
            pool = Mem.PoolFor(1L << pageShift);
            if (pool is null)
            {
                return Errno.EINVAL.Negative();
            }
        }

        if (length == 0)
        {
            return Errno.EINVAL.Negative();
        }

        ulong pageSize = 1UL << pageShift;
        ulong len = (length + pageSize - 1) & ~(pageSize - 1);
        ulong pgoff = offset >> PhysMem.PageShift;
        if (len == 0)
        {
            return Errno.ENOMEM.Negative();
        }

        if (pgoff + (len >> PhysMem.PageShift) < pgoff)
        {
            return Errno.EOVERFLOW.Negative();
        }

        bool fixedMap = (flags & (MapFlags.MAP_FIXED | MapFlags.MAP_FIXED_NOREPLACE)) != 0;
        if (CheckAreaArguments(addr, len, pageSize, fixedMap, caller) is int badArea)
        {
            return badArea;
        }

        bool locked = (flags & MapFlags.MAP_LOCKED) != 0;
        MmapLock.DownWrite();
        try
        {
            if (IsDead)
            {
                // A sibling thread of an exiting process: the address space is (being) torn
                // down. Its mmap_write_lock_killable() would fail on the pending SIGKILL.
                return Errno.EINTR.Negative();
            }

            ulong start = fixedMap ? addr : PlaceLocked(addr, len, pageSize);
            if (start == 0)
            {
                return Errno.ENOMEM.Negative();
            }

            if ((flags & MapFlags.MAP_FIXED_NOREPLACE) != 0 && Overlaps(start, start + len))
            {
                return Errno.EEXIST.Negative();
            }

            if (locked && !CanDoMlock(caller))
            {
                return Errno.EPERM.Negative();
            }

            if (locked && !MlockFutureOk(caller, (long)(len >> PhysMem.PageShift)))
            {
                return Errno.EAGAIN.Negative();
            }

            if (CheckMapping(file, flags, prot, pgoff, len) is int badMapping)
            {
                return badMapping;
            }

            if (fixedMap)
            {
                if (CheckHugetlbSplitLocked(start, start + len) is int badSplit)
                {
                    return badSplit;
                }

                UnmapRangeLocked(start, start + len);
            }

            VmFlags vmFlags = ToVmFlags(prot)
                | ((flags & MapFlags.MAP_TYPE) == MapFlags.MAP_PRIVATE ? 0 : VmFlags.VM_SHARED)
                | (pool is not null ? VmFlags.VM_HUGETLB : 0);
            var vma = new Vma(this, start, start + len, vmFlags, pageShift) { Pool = pool };
            if (pool is not null)
            {
                int n = (int)(len >> pageShift);
                Mem.Lock.Lock();
                bool ok = pool.Reserve(n);
                Mem.Lock.Unlock();
                if (!ok)
                {
                    return Errno.ENOMEM.Negative();
                }

                vma.HugeReserved = n;
            }

            if (file is not null)
            {
                vma.File = file;
                vma.PgOff = pgoff;
                file.Get();
                int ret = file.Ops.Mmap(file, vma);
                if (ret != 0)
                {
                    // mmap_region's unmap_and_free_vma: whatever the driver mapped before it
                    // failed (vm_insert_page, remap_vmalloc_range) is zapped, then the file put.
                    ZapAllLocked(vma);
                    file.Put();
                    return ret;
                }
            }

            InsertVmaLocked(vma);

            // mmap_region(): VM_SPECIAL and hugetlb mappings never get VM_LOCKED and are not
            // charged to locked_vm (MAP_LOCKED still populates them, below).
            if (locked && !IsUnlockable(vma))
            {
                vma.Flags |= VmFlags.VM_LOCKED;
                LockedVm += (long)(len >> PhysMem.PageShift);
            }

            if (locked || (flags & MapFlags.MAP_POPULATE) != 0)
            {
                _ = PopulateLocked(vma, vma.Start, vma.End); // mm_populate() ignores errors.
            }

            return (long)start;
        }
        finally
        {
            MmapLock.UpWrite();
        }
    }

    // get_unmapped_area()'s checks that need no lock: the length, then for MAP_FIXED the
    // huge-page alignment, the end, the page alignment and mmap_min_addr.
    private static int? CheckAreaArguments(ulong addr, ulong len, ulong pageSize, bool fixedMap, SimProcess caller)
    {
        if (len > TaskSize)
        {
            return Errno.ENOMEM.Negative();
        }

        if (!fixedMap)
        {
            return null;
        }

        if ((addr & (pageSize - 1)) != 0 && pageSize != PhysMem.PageSize)
        {
            return Errno.EINVAL.Negative();
        }

        if (addr > TaskSize - len)
        {
            return Errno.ENOMEM.Negative();
        }

        if ((addr & (PhysMem.PageSize - 1)) != 0)
        {
            return Errno.EINVAL.Negative();
        }

        return addr < MmapMinAddr && !caller.Credentials.Capable(Capabilities.CAP_SYS_RAWIO)
            ? Errno.EPERM.Negative()
            : null;
    }

    // The address for a mapping without MAP_FIXED: the hint if the range there is free
    // (a hint below mmap_min_addr is raised to it; a huge-page hint is rounded up), else
    // the highest gap; 0 when there is none.
    private ulong PlaceLocked(ulong addr, ulong len, ulong pageSize)
    {
        MmapLock.AssertHeld();
        ulong hint = addr & ~(ulong)(PhysMem.PageSize - 1);
        if (hint != 0 && hint < MmapMinAddr)
        {
            hint = MmapMinAddr;
        }

        if (hint != 0 && hint <= TaskSize - len)
        {
            hint = (hint + pageSize - 1) & ~(pageSize - 1);
            if (hint <= TaskSize - len && !Overlaps(hint, hint + len))
            {
                return hint;
            }
        }

        return FindGapTopDown(len, pageSize);
    }

    // do_mmap()'s checks of the file (file_mmap_ok, then by mapping type) or, for an
    // anonymous mapping, of the type alone.
    private static int? CheckMapping(SimFile? file, MapFlags flags, Prot prot, ulong pgoff, ulong len)
    {
        MapFlags type = flags & MapFlags.MAP_TYPE;
        if (file is null)
        {
            return type is MapFlags.MAP_SHARED or MapFlags.MAP_PRIVATE ? null : Errno.EINVAL.Negative();
        }

        // file_mmap_size_max(): a regular (sysfs) file ends at MAX_LFS_FILESIZE; a device or
        // anonymous-inode file may use every offset.
        ulong max = file.Node is null or VfsCharDevice ? ulong.MaxValue : long.MaxValue;
        if (len > max || pgoff > (max - len) >> PhysMem.PageShift)
        {
            return Errno.EOVERFLOW.Negative();
        }

        switch (type)
        {
            case MapFlags.MAP_SHARED_VALIDATE when (flags & ~LegacyMapMask) != 0:
                return Errno.EOPNOTSUPP.Negative();
            case MapFlags.MAP_SHARED or MapFlags.MAP_SHARED_VALIDATE:
                if ((prot & Prot.PROT_WRITE) != 0 && !file.CanWrite)
                {
                    return Errno.EACCES.Negative();
                }

                break;
            case MapFlags.MAP_PRIVATE:
                break;
            default:
                return Errno.EINVAL.Negative();
        }

        if (!file.CanRead)
        {
            return Errno.EACCES.Negative();
        }

        return file.Ops.CanMmap ? null : Errno.ENODEV.Negative();
    }

    private static VmFlags ToVmFlags(Prot prot)
        => ((prot & Prot.PROT_READ) != 0 ? VmFlags.VM_READ : 0)
         | ((prot & Prot.PROT_WRITE) != 0 ? VmFlags.VM_WRITE : 0)
         | ((prot & Prot.PROT_EXEC) != 0 ? VmFlags.VM_EXEC : 0);

    private bool Overlaps(ulong start, ulong end)
    {
        foreach (Vma v in _vmas)
        {
            if (v.Start < end && start < v.End)
            {
                return true;
            }
        }

        return false;
    }

    private ulong FindGapTopDown(ulong len, ulong align)
    {
        ulong top = MmapBase;
        for (int i = _vmas.Count - 1; i >= -1; i--)
        {
            ulong gapLow = i >= 0 ? _vmas[i].End : MmapMinAddr;
            ulong gapHigh = top;
            if (i + 1 < _vmas.Count)
            {
                gapHigh = Math.Min(gapHigh, _vmas[i + 1].Start);
            }

            if (gapHigh > gapLow && gapHigh - gapLow >= len)
            {
                ulong start = (gapHigh - len) & ~(align - 1);
                if (start >= gapLow && start >= MmapMinAddr)
                {
                    return start;
                }
            }

            if (i >= 0)
            {
                top = Math.Min(top, _vmas[i].Start);
            }
        }

        return 0;
    }

    private void InsertVmaLocked(Vma vma)
    {
        MmapLock.AssertHeldWrite();
        int at = 0;
        while (at < _vmas.Count && _vmas[at].Start < vma.Start)
        {
            at++;
        }

        _vmas.Insert(at, vma);
    }

    private bool MlockFutureOk(SimProcess p, long pages)
        => p.Credentials.Capable(Capabilities.CAP_IPC_LOCK) || LockedVm + pages <= p.Limits.MemlockPages;

    // ---- munmap.

    /// <summary>
    /// munmap() (do_vmi_munmap): 0, or -EINVAL for a misaligned address, an address past
    /// TASK_SIZE, a length (checked before it is rounded) past TASK_SIZE - addr, a zero
    /// length, or a split of a hugetlb page.
    /// </summary>
    public int Munmap(ulong addr, ulong length)
    {
        if ((addr & (PhysMem.PageSize - 1)) != 0 || addr > TaskSize || length > TaskSize - addr)
        {
            return Errno.EINVAL.Negative();
        }

        ulong end = addr + ((length + PhysMem.PageSize - 1) & ~(ulong)(PhysMem.PageSize - 1));
        if (end == addr)
        {
            return Errno.EINVAL.Negative();
        }

        MmapLock.DownWrite();
        try
        {
            if (CheckHugetlbSplitLocked(addr, end) is int bad)
            {
                return bad;
            }

            UnmapRangeLocked(addr, end);
            return 0;
        }
        finally
        {
            MmapLock.UpWrite();
        }
    }

    private int? CheckHugetlbSplitLocked(ulong start, ulong end, FlagChange? change = null)
    {
        MmapLock.AssertHeld();
        foreach (Vma v in _vmas)
        {
            if (v.Start < end && start < v.End && (change is not { } c || c.Changes(v)) && SplitsHugePage(v, start, end))
            {
                return Errno.EINVAL.Negative();
            }
        }

        return null;
    }

    /// <summary>hugetlb_vm_op_split(): true when cutting <paramref name="v"/> at the range's ends would split a huge page.</summary>
    private static bool SplitsHugePage(Vma v, ulong start, ulong end)
    {
        if (!v.IsHugetlb)
        {
            return false;
        }

        ulong mask = (1UL << v.PageShift) - 1;
        return (start > v.Start && (start & mask) != 0) || (end < v.End && (end & mask) != 0);
    }

    /// <summary>Splits VMAs at <paramref name="start"/> and <paramref name="end"/> and returns those inside.</summary>
    private List<Vma> SplitRangeLocked(ulong start, ulong end)
    {
        MmapLock.AssertHeldWrite();
        var inside = new List<Vma>();
        for (int i = 0; i < _vmas.Count; i++)
        {
            Vma v = _vmas[i];
            if (v.End <= start || v.Start >= end)
            {
                continue;
            }

            if (v.Start < start)
            {
                Vma right = SplitAt(v, start);
                _vmas.Insert(i + 1, right);
                continue; // Visit the right part next.
            }

            if (v.End > end)
            {
                Vma right = SplitAt(v, end);
                _vmas.Insert(i + 1, right);
            }

            inside.Add(v);
        }

        return inside;
    }

    /// <summary>Cuts <paramref name="v"/> at <paramref name="at"/>; <paramref name="v"/> keeps the lower part, the upper part is returned.</summary>
    private Vma SplitAt(Vma v, ulong at)
    {
        long cut = v.Index(at);
        var right = new Vma(this, at, v.End, v.Flags, v.PageShift)
        {
            File = v.File,
            PgOff = v.PgOff + ((at - v.Start) >> PhysMem.PageShift),
            Ops = v.Ops,
            PrivateData = v.PrivateData,
            Pool = v.Pool,
        };
        right.Ptes = v.Ptes.Slice(cut, v.Ptes.Entries);
        v.Ptes = v.Ptes.Slice(0, cut);
        if (v.IsHugetlb)
        {
            int rightPages = (int)(right.Length >> right.PageShift);
            int rightReserved = Math.Max(0, rightPages - CountPresent(right.Ptes));
            int moved = Math.Min(v.HugeReserved, rightReserved);
            right.HugeReserved = moved;
            v.HugeReserved -= moved;
        }

        v.End = at;
        right.File?.Get();
        right.Ops?.Open(right);
        return right;
    }

    private static int CountPresent(PteTable t) => t.CountPresent();

    private void UnmapRangeLocked(ulong start, ulong end)
    {
        MmapLock.AssertHeldWrite();
        foreach (Vma v in SplitRangeLocked(start, end))
        {
            _vmas.Remove(v);
            if ((v.Flags & VmFlags.VM_LOCKED) != 0)
            {
                LockedVm -= (long)(v.Length >> PhysMem.PageShift);
            }

            ZapAllLocked(v);
            v.Ops?.Close(v);
            v.File?.Put();
        }
    }

    /// <summary>Removes every page-table entry of <paramref name="v"/>, dropping the frames' mapping references.</summary>
    private void ZapAllLocked(Vma v)
    {
        MmapLock.AssertHeldWrite();
        PteTable ptes = v.Ptes;
        Mem.Lock.Lock();
        try
        {
            // Device frames (PFNMAP) and the zero page hold no reference to drop.
            for (int c = 0; !v.IsPfnMap && c < ptes.ChunkCount; c++)
            {
                if (ptes.ChunkAt(c) is not { } chunk)
                {
                    continue;
                }

                foreach (long pte in chunk)
                {
                    if (pte != 0 && (pte & Vma.PteZero) == 0)
                    {
                        Mem.PutPageLocked(pte >> 12);
                    }
                }
            }

            if (v.Pool is { } pool && v.HugeReserved > 0)
            {
                pool.Unreserve(v.HugeReserved);
                v.HugeReserved = 0;
            }
        }
        finally
        {
            Mem.Lock.Unlock();
        }

        ptes.Clear();
    }

    // ---- exit_mmap.

    private void ExitMmap()
    {
        MmapLock.DownWrite();
        try
        {
            // Unmapping drops the mlocked VMAs' share of locked_vm. What drivers charged
            // (account_locked_vm) stays until they uncharge it, as in the kernel.
            UnmapRangeLocked(0, TaskSize);
        }
        finally
        {
            MmapLock.UpWrite();
        }
    }
}
