// Models struct mm_struct (include/linux/mm_types.h) with mm/mmap.c (mmap, munmap),
// mm/mprotect.c, mm/mlock.c, mm/util.c (account_locked_vm) and kernel/fork.c (mmget,
// mmput, mmgrab, mmdrop, dup_mmap) (v6.12).
//
// Lock rules: mmap_lock (an rwsem) protects the VMA list, every page table and locked_vm;
// readers fault and pin, writers map, unmap and change protections. Page-table entries
// of present RAM pages hold one reference on their frame; the zone lock of PhysMem is
// taken inside mmap_lock, never the other way round.
//
// Life cycle: mm_users counts users of the address space (the process, mmget_not_zero
// borrowers); at zero the address space is torn down (every VMA unmapped; pinned frames
// stay allocated until unpinned). mm_count keeps the struct itself (and locked_vm) alive
// for holders such as type1's vfio_dma (mmgrab).

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

/// <summary>mm_struct: a process address space.</summary>
public sealed partial class MmStruct
{
    /// <summary>TASK_SIZE of x86-64 with 4-level paging, less the guard page.</summary>
    public const ulong TaskSize = 0x0000_7fff_ffff_f000;

    /// <summary>Where top-down mmap placement starts.</summary>
    public const ulong MmapBase = 0x0000_7f00_0000_0000;

    /// <summary>mmap_min_addr.</summary>
    public const ulong MmapMinAddr = 0x10000;

    private const int MapHugeShift = 26;
    private const int MapHugeMask = 0x3f;

    // LEGACY_MAP_MASK: the flags MAP_SHARED_VALIDATE accepts from any file — the type,
    // FIXED, ANONYMOUS, GROWSDOWN, DENYWRITE, EXECUTABLE, LOCKED, NORESERVE, POPULATE,
    // NONBLOCK, STACK, HUGETLB, UNINITIALIZED and the huge-page size bits. Not
    // MAP_FIXED_NOREPLACE or MAP_SYNC.
    private const MapFlags LegacyMapMask = (MapFlags)(0x3 | 0x10 | 0x20 | 0x100 | 0x800 | 0x1000 | 0x2000 | 0x4000 | 0x8000
        | 0x10000 | 0x20000 | 0x40000 | (MapHugeMask << MapHugeShift));

    // Sorted by Start; under MmapLock.
    private readonly List<Vma> _vmas = [];
    private long _pinnedVm;
    private int _users = 1;
    private int _count = 1;

    internal MmStruct(PhysMem mem, SimKernel kernel, int id)
    {
        Mem = mem;
        Kernel = kernel;
        Id = id;
        MmapLock = new RwSemaphore(kernel, $"mm[{id}].mmap_lock");
    }

    /// <summary>Physical memory behind this address space.</summary>
    public PhysMem Mem { get; }

    /// <summary>The kernel.</summary>
    public SimKernel Kernel { get; }

    /// <summary>An id for names and reports (the pid of the process that created it).</summary>
    public int Id { get; private set; }

    /// <summary>mmap_lock.</summary>
    public RwSemaphore MmapLock { get; private set; }

    /// <summary>locked_vm: pages charged against RLIMIT_MEMLOCK (mlock, vfio). Written under mmap_lock held for writing.</summary>
    public long LockedVm { get; private set; }

    /// <summary>pinned_vm: pages long-term pinned by drivers that account them here (atomic).</summary>
    public long PinnedVm => Volatile.Read(ref _pinnedVm);

    /// <summary>The process that owns the address space (mm-&gt;owner).</summary>
    public SimProcess? Owner { get; internal set; }

    /// <summary>mm_users.</summary>
    public int Users => Volatile.Read(ref _users);

    /// <summary>mm_count.</summary>
    public int Count => Volatile.Read(ref _count);

    /// <summary>True once the address space was torn down (mm_users reached 0).</summary>
    public bool IsDead => Users == 0;

    /// <summary>A snapshot of the VMAs, in address order (takes mmap_lock for reading).</summary>
    public IReadOnlyList<Vma> Vmas
    {
        get
        {
            MmapLock.DownRead();
            try
            {
                return [.. _vmas];
            }
            finally
            {
                MmapLock.UpRead();
            }
        }
    }

    /// <summary>Adds <paramref name="delta"/> pages to pinned_vm.</summary>
    public void AddPinnedVm(long delta) => Interlocked.Add(ref _pinnedVm, delta);

    // ---- References.

    /// <summary>
    /// Names a copy made by <see cref="Dup(out int)"/> once fork has its pid (copy_process()
    /// allocates the pid after copy_mm()). Only before the mm is published: its mmap_lock is
    /// replaced by one named for the pid.
    /// </summary>
    internal void AssignId(int id)
    {
        Id = id;
        MmapLock = new RwSemaphore(Kernel, $"mm[{id}].mmap_lock");
    }

    /// <summary>mmget().</summary>
    public void Get() => Interlocked.Increment(ref _users);

    /// <summary>mmget_not_zero(): a user reference unless the address space is already gone.</summary>
    public bool GetNotZero()
    {
        int u = Volatile.Read(ref _users);
        while (u != 0)
        {
            int seen = Interlocked.CompareExchange(ref _users, u + 1, u);
            if (seen == u)
            {
                return true;
            }

            u = seen;
        }

        return false;
    }

    /// <summary>mmput(): drops a user reference; the last one tears the address space down.</summary>
    public void Put()
    {
        int left = Interlocked.Decrement(ref _users);
        if (left < 0)
        {
            throw new InvalidOperationException($"mmput on mm {Id} with no users left");
        }

        if (left == 0)
        {
            ExitMmap();
            Drop();
        }
    }

    /// <summary>mmgrab(): keeps the mm_struct (not the address space) alive.</summary>
    public void Grab() => Interlocked.Increment(ref _count);

    /// <summary>mmdrop().</summary>
    public void Drop()
    {
        if (Interlocked.Decrement(ref _count) < 0)
        {
            throw new InvalidOperationException($"mmdrop on mm {Id} with no references left");
        }
    }

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

    // ---- Lookup.

    /// <summary>find_vma() restricted to containment: the VMA holding <paramref name="addr"/>, or null. Caller holds mmap_lock.</summary>
    public Vma? FindVmaLocked(ulong addr)
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
    public long Mmap(ulong addr, ulong length, Prot prot, MapFlags flags, SimFile? file, ulong offset, SimProcess caller)
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

    // ---- mprotect.

    /// <summary>
    /// mprotect() in do_mprotect_pkey()'s order: both PROT_GROWSDOWN and PROT_GROWSUP
    /// (EINVAL), a misaligned address (EINVAL), a zero length (0), a range that wraps once
    /// page aligned (ENOMEM), unknown protection bits (EINVAL); then under mmap_lock no
    /// mapping in the range or a hole at its start (ENOMEM), PROT_GROWS* on a mapping that
    /// does not grow (EINVAL), and per VMA in address order a write to a read-only shared
    /// file (EACCES), a hugetlb split (EINVAL), a hole (ENOMEM). A rejected call changes
    /// nothing (the kernel may already have changed the VMAs before the failing one).
    /// </summary>
    public int Mprotect(ulong addr, ulong length, Prot prot)
    {
        const Prot growsBoth = Prot.PROT_GROWSDOWN | Prot.PROT_GROWSUP;
        Prot grows = prot & growsBoth;
        prot &= ~growsBoth;
        if (grows == growsBoth || (addr & (PhysMem.PageSize - 1)) != 0)
        {
            return Errno.EINVAL.Negative();
        }

        if (length == 0)
        {
            return 0;
        }

        ulong end = addr + ((length + PhysMem.PageSize - 1) & ~(ulong)(PhysMem.PageSize - 1));
        if (end <= addr)
        {
            return Errno.ENOMEM.Negative();
        }

        // arch_validate_prot(): only PROT_READ, PROT_WRITE, PROT_EXEC and PROT_SEM.
        if ((prot & ~(Prot.PROT_READ | Prot.PROT_WRITE | Prot.PROT_EXEC | Prot.PROT_SEM)) != 0)
        {
            return Errno.EINVAL.Negative();
        }

        MmapLock.DownWrite();
        try
        {
            Vma? first = null;
            foreach (Vma v in _vmas)
            {
                if (v.End > addr && v.Start < end)
                {
                    first = v;
                    break;
                }
            }

            if (first is null || (grows != Prot.PROT_GROWSDOWN && first.Start > addr))
            {
                return Errno.ENOMEM.Negative();
            }

            if (grows != 0)
            {
                return Errno.EINVAL.Negative(); // No mapping here is VM_GROWSDOWN or VM_GROWSUP.
            }

            const VmFlags rwx = VmFlags.VM_READ | VmFlags.VM_WRITE | VmFlags.VM_EXEC;
            var change = new FlagChange(rwx, ToVmFlags(prot), SkipSpecial: false);
            ulong cursor = addr;
            foreach (Vma v in _vmas)
            {
                if (v.End <= addr || v.Start >= end)
                {
                    continue;
                }

                if (v.Start > cursor)
                {
                    return Errno.ENOMEM.Negative();
                }

                if ((v.Flags & VmFlags.VM_SHARED) != 0 && v.File is { CanWrite: false } && (prot & Prot.PROT_WRITE) != 0)
                {
                    return Errno.EACCES.Negative(); // VM_MAYWRITE is clear: the file is not open for writing.
                }

                if (change.Changes(v) && SplitsHugePage(v, addr, end))
                {
                    return Errno.EINVAL.Negative();
                }

                cursor = v.End;
            }

            if (cursor < end)
            {
                return Errno.ENOMEM.Negative();
            }

            ChangeFlagsLocked(addr, end, change);
            return 0;
        }
        finally
        {
            MmapLock.UpWrite();
        }
    }

    private bool CoveredLocked(ulong start, ulong end)
    {
        MmapLock.AssertHeld();
        ulong cursor = start;
        foreach (Vma v in _vmas)
        {
            if (v.End <= cursor)
            {
                continue;
            }

            if (v.Start > cursor)
            {
                return false;
            }

            cursor = v.End;
            if (cursor >= end)
            {
                return true;
            }
        }

        return cursor >= end;
    }

    // ---- mlock.

    /// <summary>can_do_mlock(): a non-zero RLIMIT_MEMLOCK or CAP_IPC_LOCK.</summary>
    public static bool CanDoMlock(SimProcess p)
        => p.Limits.MemlockBytes != 0 || p.Credentials.Capable(Capabilities.CAP_IPC_LOCK);

    private bool MlockFutureOk(SimProcess p, long pages)
        => p.Credentials.Capable(Capabilities.CAP_IPC_LOCK) || LockedVm + pages <= p.Limits.MemlockPages;

    /// <summary>mlock(): locks and populates the range; 0, -EPERM (no mlock allowed), -ENOMEM (holes, or over RLIMIT_MEMLOCK), -EINVAL (the range wraps).</summary>
    public int Mlock(ulong addr, ulong length, SimProcess caller)
    {
        ArgumentNullException.ThrowIfNull(caller);
        return MlockRange(addr, length, caller);
    }

    /// <summary>munlock(): 0, -ENOMEM when the range is not fully mapped, -EINVAL when it wraps.</summary>
    public int Munlock(ulong addr, ulong length) => MlockRange(addr, length, null);

    /// <summary>
    /// do_mlock() (<paramref name="caller"/> set) and munlock(): the range is page aligned
    /// as the kernel does it (the length grows by the offset in the page, wrapping as size_t
    /// arithmetic does). mlock checks can_do_mlock (EPERM), then RLIMIT_MEMLOCK against
    /// the whole length plus locked_vm less what is already locked in the range (ENOMEM),
    /// then apply_vma_lock_flags: a wrapping range (EINVAL), an empty one (0), holes (ENOMEM).
    /// mlock_fixup() leaves VM_SPECIAL and hugetlb VMAs alone (no VM_LOCKED, no charge, no
    /// split) and splits only VMAs whose flags change. mlock then populates the range.
    /// </summary>
    private int MlockRange(ulong addr, ulong length, SimProcess? caller)
    {
        bool lockIt = caller is not null;
        if (lockIt && !CanDoMlock(caller!))
        {
            return Errno.EPERM.Negative();
        }

        ulong pageMask = PhysMem.PageSize - 1;
        ulong len = (length + (addr & pageMask) + pageMask) & ~pageMask;
        ulong start = addr & ~pageMask;
        MmapLock.DownWrite();
        try
        {
            if (lockIt && !caller!.Credentials.Capable(Capabilities.CAP_IPC_LOCK))
            {
                ulong locked = (len >> PhysMem.PageShift) + (ulong)LockedVm;
                if (locked > (ulong)caller.Limits.MemlockPages)
                {
                    locked -= (ulong)CountMlockedPagesLocked(start, len);
                    if (locked > (ulong)caller.Limits.MemlockPages)
                    {
                        return Errno.ENOMEM.Negative();
                    }
                }
            }

            ulong end = start + len;
            if (end < start)
            {
                return Errno.EINVAL.Negative();
            }

            if (end == start)
            {
                return 0;
            }

            if (!CoveredLocked(start, end))
            {
                return Errno.ENOMEM.Negative();
            }

            var change = new FlagChange(VmFlags.VM_LOCKED, lockIt ? VmFlags.VM_LOCKED : 0, SkipSpecial: true);
            if (CheckHugetlbSplitLocked(start, end, change) is int bad)
            {
                return bad;
            }

            long pages = ChangeFlagsLocked(start, end, change);
            LockedVm += lockIt ? pages : -pages;
            if (lockIt)
            {
                // __mm_populate() over the whole range, skipping VM_IO/VM_PFNMAP VMAs. A
                // failure is reported through __mlock_posix_error_return() (EFAULT → ENOMEM,
                // ENOMEM → EAGAIN); as in the kernel the VMAs stay locked.
                foreach (Vma v in _vmas)
                {
                    if (v.Start < end && start < v.End)
                    {
                        int err = PopulateLocked(v, Math.Max(start, v.Start), Math.Min(end, v.End));
                        if (err != 0)
                        {
                            return err == Errno.EFAULT.Negative() ? Errno.ENOMEM.Negative()
                                : err == Errno.ENOMEM.Negative() ? Errno.EAGAIN.Negative() : err;
                        }
                    }
                }
            }

            return 0;
        }
        finally
        {
            MmapLock.UpWrite();
        }
    }

    /// <summary>count_mm_mlocked_page_nr(): pages of VM_LOCKED VMAs within [start, start + len).</summary>
    private long CountMlockedPagesLocked(ulong start, ulong len)
    {
        MmapLock.AssertHeld();
        ulong end = start + len < start ? ulong.MaxValue : start + len;
        long count = 0;
        foreach (Vma v in _vmas)
        {
            if ((v.Flags & VmFlags.VM_LOCKED) != 0 && v.Start < end && start < v.End)
            {
                count += (long)((Math.Min(end, v.End) - Math.Max(start, v.Start)) >> PhysMem.PageShift);
            }
        }

        return count;
    }

    /// <summary>VMAs that mlock leaves alone: VM_SPECIAL (VM_IO, VM_DONTEXPAND, VM_PFNMAP) and hugetlb.</summary>
    private static bool IsUnlockable(Vma v)
        => (v.Flags & (VmFlags.VM_IO | VmFlags.VM_DONTEXPAND | VmFlags.VM_PFNMAP | VmFlags.VM_HUGETLB)) != 0;

    /// <summary>A change of VMA flags: newflags = (flags &amp; ~Clear) | Set; SkipSpecial leaves <see cref="IsUnlockable"/> VMAs alone.</summary>
    private readonly record struct FlagChange(VmFlags Clear, VmFlags Set, bool SkipSpecial)
    {
        public bool Changes(Vma v) => !(SkipSpecial && IsUnlockable(v)) && ((v.Flags & ~Clear) | Set) != v.Flags;
    }

    /// <summary>
    /// mprotect_fixup()/mlock_fixup() over [start, end): a VMA whose flags would not change
    /// is left as it is (not split); the others are split at the range's ends and changed.
    /// Returns the pages whose flags changed. Caller holds mmap_lock for writing.
    /// </summary>
    private long ChangeFlagsLocked(ulong start, ulong end, FlagChange change)
    {
        MmapLock.AssertHeldWrite();
        long pages = 0;
        for (int i = 0; i < _vmas.Count; i++)
        {
            Vma v = _vmas[i];
            if (v.End <= start || v.Start >= end || !change.Changes(v))
            {
                continue;
            }

            if (v.Start < start)
            {
                _vmas.Insert(i + 1, SplitAt(v, start));
                continue; // Change the right part next.
            }

            if (v.End > end)
            {
                _vmas.Insert(i + 1, SplitAt(v, end));
            }

            v.Flags = (v.Flags & ~change.Clear) | change.Set;
            pages += (long)(v.Length >> PhysMem.PageShift);
        }

        return pages;
    }

    // ---- locked_vm accounting (mm/util.c).

    /// <summary>
    /// __account_locked_vm(): charges (or uncharges) <paramref name="pages"/> to locked_vm,
    /// refusing with -ENOMEM past <paramref name="task"/>'s RLIMIT_MEMLOCK unless
    /// <paramref name="bypassRlimit"/>. Caller holds mmap_lock for writing.
    /// </summary>
    public int AccountLockedVmLocked(long pages, bool inc, SimProcess task, bool bypassRlimit)
    {
        MmapLock.AssertHeldWrite();
        ArgumentNullException.ThrowIfNull(task);
        if (inc)
        {
            if (!bypassRlimit && LockedVm + pages > task.Limits.MemlockPages)
            {
                return Errno.ENOMEM.Negative();
            }

            LockedVm += pages;
            return 0;
        }

        if (Warn.On(Kernel, pages > LockedVm, $"locked_vm underflow on mm {Id}: uncharging {pages} of {LockedVm} pages"))
        {
            LockedVm = 0;
            return 0;
        }

        LockedVm -= pages;
        return 0;
    }

    /// <summary>account_locked_vm(): as <see cref="AccountLockedVmLocked"/>, taking mmap_lock and using CAP_IPC_LOCK as the bypass.</summary>
    public int AccountLockedVm(long pages, bool inc, SimProcess task)
    {
        ArgumentNullException.ThrowIfNull(task);
        if (pages == 0)
        {
            return 0;
        }

        MmapLock.DownWrite();
        try
        {
            return AccountLockedVmLocked(pages, inc, task, task.Credentials.Capable(Capabilities.CAP_IPC_LOCK));
        }
        finally
        {
            MmapLock.UpWrite();
        }
    }

    // ---- fork.

    /// <summary>
    /// dup_mmap(): the child's copy of this address space. Private pages are copied now;
    /// shared ones are shared. The copy has id 0 until <see cref="AssignId"/>.
    /// </summary>
    internal MmStruct Dup(out int error)
    {
        var child = new MmStruct(Mem, Kernel, 0);
        error = 0;
        bool failed = false;
        MmapLock.DownRead();
        try
        {
            foreach (Vma v in _vmas)
            {
                if ((v.Flags & VmFlags.VM_DONTCOPY) != 0)
                {
                    continue;
                }

                var copy = new Vma(child, v.Start, v.End, v.Flags & ~VmFlags.VM_LOCKED, v.PageShift)
                {
                    File = v.File,
                    PgOff = v.PgOff,
                    Ops = v.Ops,
                    PrivateData = v.PrivateData,
                    Pool = v.Pool,
                };
                copy.File?.Get();
                copy.Ops?.Open(copy);
                child._vmas.Add(copy);
                if (!CopyPagesInto(v, copy))
                {
                    failed = true;
                    break;
                }
            }
        }
        finally
        {
            MmapLock.UpRead();
        }

        if (failed)
        {
            // Tear the half-built copy down outside the parent's mmap_lock.
            child.ExitMmap();
            error = Errno.ENOMEM.Negative();
        }

        return child;
    }

    private bool CopyPagesInto(Vma from, Vma to)
    {
        bool shared = (from.Flags & VmFlags.VM_SHARED) != 0;
        Mem.Lock.Lock();
        try
        {
            if (from.Pool is { } pool && !shared)
            {
                int needed = (int)(from.Length >> from.PageShift);
                if (!pool.Reserve(needed))
                {
                    return false;
                }

                to.HugeReserved = needed;
            }

            foreach ((long i, long pte) in from.Ptes.Present())
            {
                long pfn = pte >> 12;
                if (from.IsPfnMap || (pte & Vma.PteZero) != 0 || shared)
                {
                    if (!from.IsPfnMap && (pte & Vma.PteZero) == 0)
                    {
                        Mem.GetPageLocked(pfn);
                    }

                    to.Ptes.Set(i, pte);
                    continue;
                }

                long copy;
                if (from.Pool is { } hp)
                {
                    copy = hp.AllocReserved(Mem);
                    to.HugeReserved--;
                    for (long sub = 0; sub < hp.PagesPerFolio; sub++)
                    {
                        Mem.CopyPageLocked(pfn + sub, copy + sub);
                    }
                }
                else
                {
                    copy = Mem.AllocPageLocked();
                    if (copy < 0)
                    {
                        return false;
                    }

                    Mem.CopyPageLocked(pfn, copy);
                }

                to.Ptes.Set(i, (copy << 12) | Vma.PtePresent);
            }

            return true;
        }
        finally
        {
            Mem.Lock.Unlock();
        }
    }

    /// <inheritdoc/>
    public override string ToString() => $"mm[{Id}] users={Users} locked_vm={LockedVm}";
}
