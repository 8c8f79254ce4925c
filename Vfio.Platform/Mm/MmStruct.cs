// Models struct mm_struct (include/linux/mm_types.h) and its references (v6.12): mmget,
// mmget_not_zero, mmgrab and mmdrop (include/linux/sched/mm.h), mmput (kernel/fork.c).
// The operations live in partial files named after the kernel's: MmStruct.Mmap.cs
// (mm/mmap.c), MmStruct.Mprotect.cs (mm/mprotect.c), MmStruct.Mlock.cs (mm/mlock.c),
// MmStruct.Accounting.cs (mm/util.c), MmStruct.Fork.cs (kernel/fork.c),
// MmStruct.Fault.cs (mm/memory.c) and MmStruct.Gup.cs (mm/gup.c).
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
using Vfio.Platform.Proc;

namespace Vfio.Platform.Mm;

/// <summary>mm_struct: a process address space.</summary>
public sealed partial class MmStruct
{
    /// <summary>TASK_SIZE of x86-64 with 4-level paging, less the guard page.</summary>
    public const ulong TaskSize = 0x0000_7fff_ffff_f000;

    /// <summary>Where top-down mmap placement starts.</summary>
    public const ulong MmapBase = 0x0000_7f00_0000_0000;

    /// <summary>mmap_min_addr.</summary>
    public const ulong MmapMinAddr = 0x10000;

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
        PageTableLock = new RwSemaphore(kernel, $"mm[{id}].page_table_lock", s_ptlClass);
    }

    /// <summary>Physical memory behind this address space.</summary>
    public PhysMem Mem { get; }

    /// <summary>The kernel.</summary>
    public SimKernel Kernel { get; }

    /// <summary>An id for names and reports (the pid of the process that created it).</summary>
    public int Id { get; private set; }

    /// <summary>mmap_lock.</summary>
    internal RwSemaphore MmapLock { get; private set; }

    /// <summary>locked_vm: pages charged against RLIMIT_MEMLOCK (mlock, vfio). Written under mmap_lock held for writing.</summary>
    public long LockedVm
    {
        get => _lockedVm;
        private set
        {
            _lockedVm = value;
            if (Kernel.Trace.TimelineEnabled)
            {
                Kernel.Trace.Counter($"mm[{Id}].locked_vm", value);
            }
        }
    }

    private long _lockedVm;

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

    // ---- References.

    /// <summary>mmget().</summary>
    internal void Get() => Interlocked.Increment(ref _users);

    /// <summary>mmget_not_zero(): a user reference unless the address space is already gone.</summary>
    internal bool GetNotZero()
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
    internal void Put()
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
    internal void Grab() => Interlocked.Increment(ref _count);

    /// <summary>mmdrop().</summary>
    internal void Drop()
    {
        if (Interlocked.Decrement(ref _count) < 0)
        {
            throw new InvalidOperationException($"mmdrop on mm {Id} with no references left");
        }
    }

    /// <inheritdoc/>
    public override string ToString() => $"mm[{Id}] users={Users} locked_vm={LockedVm}";
}
