// Models drivers/iommu/io-pgtable-arm.c / intel/pagetable (v6.12): a 4-level x86-64-style
// I/O page table for a 48-bit IOVA space (512 entries per level; leaves at level 1 (4 KiB),
// level 2 (2 MiB) and level 3 (1 GiB)), with the io-pgtable ops ->map_pages,
// ->unmap_pages and ->iova_to_phys, and the hardware's own walk.
//
// Semantics follow io-pgtable-arm where drivers differ: an entry already present in a
// mapped range is -EEXIST (what this call mapped before it stays mapped and is reported,
// so the caller can unwind); a map without IOMMU_READ or IOMMU_WRITE maps nothing and
// succeeds; an unmap stops at the first hole; an unmap smaller than a leaf splits the
// leaf (arm_lpae_split_blk_unmap: the rest stays mapped through a new lower-level table);
// an unmap at a level whose entry is a table frees the whole table and counts its full
// size. One deliberate difference: a table left empty by an unmap is unlinked and freed
// with the gather (the kernel leaves it in place), so the table count after a failed
// map's unwind is what it was before. IOVAs beyond the address width are -EFAULT, as
// intel_iommu_map() answers; physical addresses beyond 52 bits are -ERANGE.
//
// Tables are ulong[512] from a per-table pool; a table is referenced by its index. A PTE
// is present | read | write | PS (leaf above level 1) | the physical address (or, for a
// table entry, the child's index in the address field) | IOMMU_CACHE..IOMMU_PRIV in
// bits 52-55. Tables unlinked by an unmap go on the gather's chain and return to the
// pool only when the gather syncs, after the IOTLB invalidation, like the kernel's
// freelist.
//
// Locking: writers (MapPages, UnmapPages, SyncLocked, Release) must be serialised by the
// caller — the domain's page-table lock. Walk and IovaToPhys take no lock and may run
// concurrently with a writer, like the hardware walker: entries are read and published
// with acquire/release, and a walk that overlapped the reuse of a pooled table (counted
// by _recycles) is retried, which models the invalidation wait that drains walks in
// flight before page-table pages are reused.

using System.Diagnostics;
using System.Runtime.CompilerServices;
using Vfio.Kernel;

namespace Vfio.Platform.Iommu.Hw;

/// <summary>Receives the IOTLB invalidation of a synced gather (the iommu_flush_ops of an io-pgtable).</summary>
internal interface IIotlbFlushOps
{
    /// <summary>Invalidates [<paramref name="start"/>, <paramref name="end"/>] (inclusive) in the IOTLB.</summary>
    void TlbFlushRange(ulong start, ulong end);
}

/// <summary>A 4-level I/O page table with 4 KiB, 2 MiB and 1 GiB leaves.</summary>
public sealed partial class IoPageTable
{
    /// <summary>Entries per table.</summary>
    public const int Entries = 512;

    /// <summary>4 KiB.</summary>
    public const long Size4K = 1L << 12;

    /// <summary>2 MiB.</summary>
    public const long Size2M = 1L << 21;

    /// <summary>1 GiB.</summary>
    public const long Size1G = 1L << 30;

    /// <summary>SZ_4K | SZ_2M | SZ_1G.</summary>
    public const ulong DefaultPgsizeBitmap = 0x40201000UL;

    /// <summary>Bits of physical address a PTE holds.</summary>
    public const int PhysAddressBits = 52;

    internal const ulong PtePresent = 1;
    internal const ulong PteRead = 2;
    internal const ulong PteWrite = 4;
    internal const ulong PteLeaf = 0x80;
    internal const ulong PteAddrMask = 0x000F_FFFF_FFFF_F000UL;
    private const int PteSwProtShift = 50;
    private const ulong TableEntryBits = PtePresent | PteRead | PteWrite;
    private const int NoTable = -1;

    private readonly SimKernel? _kernel;
    private readonly ulong _pgsizeBitmap;
    private readonly ulong _limit;
    private readonly bool _promote;
    private readonly int _root;

    // Tables by index. The array only grows; a grown copy is published before any index
    // beyond the old length is linked, so a walker that reads a child index and then this
    // field finds the table.
    private ulong[][] _tables;
    private int[] _link;      // per table: next table (index + 1) on a pool-free or gather chain
    private short[] _used;    // per table: present entries
    private int _tableCount;  // tables ever created (high-water mark)
    private int[] _freeStack;
    private int _freeCount;
    private int _inUse;
    private int _pending;
    private long _leaves4K;
    private long _leaves2M;
    private long _leaves1G;
    private long _recycles;

    /// <summary>
    /// An empty page table. <paramref name="pgsizeBitmap"/> is the leaf sizes map_pages
    /// accepts (a subset of 4K|2M|1G, 4K required); <paramref name="addressWidth"/> the
    /// IOVA bits (at most 48); <paramref name="promote"/> collapses a full table of
    /// contiguous, aligned, equally protected leaves into one larger leaf (a design
    /// variant: real drivers do not); <paramref name="kernel"/>, when given, is asked
    /// whether table allocations fail (fault site <c>iommu_alloc_pages:io_pgtable</c>).
    /// </summary>
    public IoPageTable(ulong pgsizeBitmap = DefaultPgsizeBitmap, int addressWidth = 48, bool promote = false, SimKernel? kernel = null)
    {
        if ((pgsizeBitmap & ~DefaultPgsizeBitmap) != 0 || (pgsizeBitmap & (ulong)Size4K) == 0)
        {
            throw new ArgumentException($"pgsize bitmap 0x{pgsizeBitmap:x} must include 4 KiB and contain only 4 KiB, 2 MiB and 1 GiB", nameof(pgsizeBitmap));
        }

        ArgumentOutOfRangeException.ThrowIfLessThan(addressWidth, 12);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(addressWidth, 48);
        _kernel = kernel;
        _pgsizeBitmap = pgsizeBitmap;
        _limit = 1UL << addressWidth;
        _promote = promote;
        _tables = new ulong[16][];
        _link = new int[16];
        _used = new short[16];
        _freeStack = new int[16];
        _root = AllocTableLocked();
    }

    /// <summary>The leaf sizes this table maps.</summary>
    public ulong PgsizeBitmap => _pgsizeBitmap;

    /// <summary>One past the highest IOVA (2^address width).</summary>
    public ulong Limit => _limit;

    /// <summary>4 KiB leaves present.</summary>
    public long Leaves4K => Volatile.Read(ref _leaves4K);

    /// <summary>2 MiB leaves present.</summary>
    public long Leaves2M => Volatile.Read(ref _leaves2M);

    /// <summary>1 GiB leaves present.</summary>
    public long Leaves1G => Volatile.Read(ref _leaves1G);

    /// <summary>Bytes mapped (sum of the leaves).</summary>
    public long MappedBytes => (Leaves4K * Size4K) + (Leaves2M * Size2M) + (Leaves1G * Size1G);

    /// <summary>Tables linked into the tree, the root included.</summary>
    public int TablesInUse => Volatile.Read(ref _inUse);

    /// <summary>Tables unlinked by an unmap, waiting for their gather to sync.</summary>
    public int TablesPendingFree => Volatile.Read(ref _pending);

    /// <summary>Tables in the pool, ready for reuse.</summary>
    public int TablesPooled => Volatile.Read(ref _freeCount);

    /// <summary>The flush ops a synced gather invalidates through (the owning domain), or none.</summary>
    internal IIotlbFlushOps? FlushOps { get; set; }

    /// <summary>
    /// The lock that serialises writers (the owning domain's page-table lock); null for a
    /// table used on its own, whose caller serialises its writers some other way.
    /// </summary>
    internal KSpinLock? WriterLock { get; init; }

    // The *Locked entry points a domain calls with its page-table lock held (SyncLocked,
    // UnmapCollectLocked, ReleaseAllLocked, the invariant checks) assert it on every call.
    // The helpers below them run per table or per leaf — a scattered 4 KiB map descends
    // once per page — so an owner check there would be paid for every page mapped or
    // unmapped; they assert it in debug builds only.
    private void AssertWriterHeld([CallerMemberName] string caller = "", [CallerFilePath] string file = "", [CallerLineNumber] int line = 0)
        => WriterLock?.AssertHeld(caller, file, line);

    [Conditional("DEBUG")]
    internal void DebugAssertWriterHeld([CallerMemberName] string caller = "", [CallerFilePath] string file = "", [CallerLineNumber] int line = 0)
        => WriterLock?.AssertHeld(caller, file, line);

    // ---- Geometry helpers.

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static int IndexAt(ulong iova, int level) => (int)((iova >> (3 + (9 * level))) & (Entries - 1));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static long LevelSize(int level) => 1L << (3 + (9 * level));

    /// <summary>The level whose leaves are <paramref name="pgsize"/> bytes, or 0.</summary>
    internal static int LevelOf(long pgsize) => pgsize switch
    {
        Size4K => 1,
        Size2M => 2,
        Size1G => 3,
        _ => 0,
    };

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int ChildOf(ulong pte) => (int)((pte & PteAddrMask) >> 12);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool IsLeaf(ulong pte, int level) => level == 1 || (pte & PteLeaf) != 0;

    internal static ulong PteBits(IommuProt prot)
    {
        ulong bits = PtePresent;
        if ((prot & IommuProt.Read) != 0)
        {
            bits |= PteRead;
        }

        if ((prot & IommuProt.Write) != 0)
        {
            bits |= PteWrite;
        }

        return bits | ((ulong)(prot & (IommuProt.Cache | IommuProt.NoExec | IommuProt.Mmio | IommuProt.Priv)) << PteSwProtShift);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static IommuProt ProtOf(ulong pte)
        => (IommuProt)((int)((pte >> 1) & 3) | (int)((pte >> PteSwProtShift) & 0x3C));

    private void AddLeaves(int level, long delta)
    {
        switch (level)
        {
            case 1:
                Volatile.Write(ref _leaves4K, _leaves4K + delta);
                break;
            case 2:
                Volatile.Write(ref _leaves2M, _leaves2M + delta);
                break;
            default:
                Volatile.Write(ref _leaves1G, _leaves1G + delta);
                break;
        }
    }

    // ---- The hardware's walk (lock-free).

    /// <summary>
    /// The hardware's 4-level walk of <paramref name="iova"/>: the physical address it
    /// translates to, the leaf's protection and level (1 = 4 KiB, 2 = 2 MiB, 3 = 1 GiB).
    /// False when no present leaf maps it. Safe to call while a writer changes the table.
    /// </summary>
    public bool Walk(ulong iova, out long phys, out IommuProt prot, out int leafLevel)
    {
        while (true)
        {
            long generation = Volatile.Read(ref _recycles);
            bool found = WalkOnce(iova, out phys, out prot, out leafLevel);
            if (Volatile.Read(ref _recycles) == generation)
            {
                return found;
            }
        }
    }

    private bool WalkOnce(ulong iova, out long phys, out IommuProt prot, out int leafLevel)
    {
        phys = 0;
        prot = IommuProt.None;
        leafLevel = 0;
        if (iova >= _limit)
        {
            return false;
        }

        ulong[] table = Volatile.Read(ref _tables)[_root];
        for (int level = 4; level >= 1; level--)
        {
            ulong pte = Volatile.Read(ref table[IndexAt(iova, level)]);
            if ((pte & PtePresent) == 0)
            {
                return false;
            }

            if (IsLeaf(pte, level))
            {
                long size = LevelSize(level);
                phys = (long)(pte & PteAddrMask) + (long)(iova & (ulong)(size - 1));
                prot = ProtOf(pte);
                leafLevel = level;
                return true;
            }

            table = Volatile.Read(ref _tables)[ChildOf(pte)];
        }

        return false;
    }

    /// <summary>->iova_to_phys: the physical address <paramref name="iova"/> maps to, or 0 when unmapped.</summary>
    public long IovaToPhys(ulong iova) => Walk(iova, out long phys, out _, out _) ? phys : 0;

    // ---- Table pool (writers only).

    /// <summary>A zeroed table from the pool (or a new one), counted in use.</summary>
    private int AllocTableLocked()
    {
        DebugAssertWriterHeld();
        _kernel?.Cost.Charge(CostOp.PageTableAlloc);
        int t;
        if (_freeCount > 0)
        {
            t = _freeStack[--_freeCount];
            // Walks in flight may still hold this table from its previous life: make them retry.
            Interlocked.Increment(ref _recycles);
            Array.Clear(_tables[t]);
        }
        else
        {
            if (_tableCount == _tables.Length)
            {
                GrowLocked();
            }

            t = _tableCount;
            _tables[t] = new ulong[Entries];
            _tableCount++;
        }

        _used[t] = 0;
        _link[t] = 0;
        _inUse++;
        return t;
    }

    private void GrowLocked()
    {
        DebugAssertWriterHeld();
        int n = _tables.Length * 2;
        var tables = new ulong[n][];
        Array.Copy(_tables, tables, _tableCount);
        Array.Resize(ref _link, n);
        Array.Resize(ref _used, n);
        Volatile.Write(ref _tables, tables);
    }

    private void PoolTableLocked(int t)
    {
        DebugAssertWriterHeld();
        _leafCursorKey = ulong.MaxValue;
        if (_freeCount == _freeStack.Length)
        {
            Array.Resize(ref _freeStack, _freeStack.Length * 2);
        }

        _freeStack[_freeCount++] = t;
    }

    /// <summary>Puts unlinked table <paramref name="t"/> on the gather's chain (freed when it syncs).</summary>
    private void DeferFreeLocked(int t, ref IotlbGather gather)
    {
        DebugAssertWriterHeld();
        _leafCursorKey = ulong.MaxValue;
        gather.Table = this;
        _link[t] = gather.FreeHead;
        gather.FreeHead = t + 1;
        gather.FreeCount++;
        _inUse--;
        _pending++;
    }

    /// <summary>Queues <paramref name="t"/> (a table at <paramref name="level"/>) and every table below it, dropping their leaves from the counters.</summary>
    private void DeferFreeSubtreeLocked(int t, int level, ref IotlbGather gather)
    {
        DebugAssertWriterHeld();
        if (level == 1)
        {
            AddLeaves(1, -_used[t]);
        }
        else
        {
            ulong[] table = _tables[t];
            for (int i = 0; i < Entries; i++)
            {
                ulong pte = table[i];
                if (pte == 0)
                {
                    continue;
                }

                if ((pte & PteLeaf) != 0)
                {
                    AddLeaves(level, -1);
                }
                else
                {
                    DeferFreeSubtreeLocked(ChildOf(pte), level - 1, ref gather);
                }
            }
        }

        DeferFreeLocked(t, ref gather);
    }

    /// <summary>
    /// iommu_iotlb_sync() on this table's side: invalidates the gathered range through the
    /// flush ops, then returns the gathered tables to the pool and resets the gather.
    /// </summary>
    internal void SyncLocked(ref IotlbGather gather)
    {
        AssertWriterHeld();
        if (gather.Table is not null && !ReferenceEquals(gather.Table, this))
        {
            throw new InvalidOperationException("iommu_iotlb_sync: the gather holds page-table pages of another domain");
        }

        if (!gather.IsEmpty)
        {
            FlushOps?.TlbFlushRange(gather.Start, gather.End);
        }

        int head = gather.FreeHead;
        while (head != 0)
        {
            int t = head - 1;
            head = _link[t];
            _link[t] = 0;
            PoolTableLocked(t);
            _pending--;
        }

        gather.FreeHead = 0;
        gather.FreeCount = 0;
        gather.Table = null;
        gather.ResetRange();
    }

    /// <summary>
    /// iommu_domain_free() on this table's side: every table but the root goes back to the
    /// pool and the root is cleared. Gathers not yet synced must not be synced afterwards.
    /// </summary>
    internal void ReleaseAllLocked()
    {
        AssertWriterHeld();
        _leafCursorKey = ulong.MaxValue;
        Interlocked.Increment(ref _recycles);
        Array.Clear(_tables[_root]);
        _freeCount = 0;
        for (int t = 0; t < _tableCount; t++)
        {
            if (t != _root)
            {
                PoolTableLocked(t);
            }
        }

        _inUse = 1;
        _pending = 0;
        Volatile.Write(ref _leaves4K, 0);
        Volatile.Write(ref _leaves2M, 0);
        Volatile.Write(ref _leaves1G, 0);
    }

    // ---- Invariants.

    /// <summary>
    /// Recounts the tree: leaves per size, present entries per table, tables in use, and
    /// that no table but the root is empty. Returns the first mismatch, or null. Writers
    /// must be excluded while it runs.
    /// </summary>
    internal string? CheckInvariantsLocked()
    {
        AssertWriterHeld();
        Span<long> leaves = stackalloc long[4];
        int tables = 0;
        string? error = CountLocked(_root, 4, leaves, ref tables);
        if (error is not null)
        {
            return error;
        }

        if (leaves[1] != _leaves4K || leaves[2] != _leaves2M || leaves[3] != _leaves1G)
        {
            return $"leaf counters 4K/2M/1G {_leaves4K}/{_leaves2M}/{_leaves1G} but the tree holds {leaves[1]}/{leaves[2]}/{leaves[3]}";
        }

        if (tables != _inUse)
        {
            return $"{_inUse} tables counted in use but {tables} are linked";
        }

        if (_inUse + _pending + _freeCount != _tableCount)
        {
            return $"tables in use {_inUse} + pending {_pending} + pooled {_freeCount} != created {_tableCount}";
        }

        return null;
    }

    private string? CountLocked(int t, int level, Span<long> leaves, ref int tables)
    {
        DebugAssertWriterHeld();
        tables++;
        ulong[] table = _tables[t];
        int present = 0;
        for (int i = 0; i < Entries; i++)
        {
            ulong pte = table[i];
            if (pte == 0)
            {
                continue;
            }

            present++;
            if (IsLeaf(pte, level))
            {
                if (level == 4)
                {
                    return $"leaf at level 4 (entry {i} of the root)";
                }

                leaves[level]++;
            }
            else
            {
                string? error = CountLocked(ChildOf(pte), level - 1, leaves, ref tables);
                if (error is not null)
                {
                    return error;
                }
            }
        }

        if (present != _used[t])
        {
            return $"table {t} at level {level} has {present} present entries but counts {_used[t]}";
        }

        if (present == 0 && t != _root)
        {
            return $"table {t} at level {level} is empty but still linked";
        }

        return null;
    }

    /// <summary>The O(1) part of the invariants, after every change in debug builds; tests run the full recount.</summary>
    [Conditional("DEBUG")]
    internal void AssertInvariantsLocked()
    {
        AssertWriterHeld();
        if (_inUse + _pending + _freeCount != _tableCount || _inUse < 1 || _leaves4K < 0 || _leaves2M < 0 || _leaves1G < 0)
        {
            throw new InvalidOperationException(
                $"io-pgtable counters are corrupt: {_inUse} in use + {_pending} pending + {_freeCount} pooled != {_tableCount} created, or leaves 4K/2M/1G {_leaves4K}/{_leaves2M}/{_leaves1G} negative");
        }
    }
}
