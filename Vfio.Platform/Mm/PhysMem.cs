// Models mm/page_alloc.c and mm/hugetlb.c (boot-time pools) with the counts of
// include/linux/mm_types.h (v6.12): the machine's physical memory as frames.
//
// Layout, as on x86: low RAM [0, min(RAM, 3 GiB)) but for the legacy VGA window
// [0xa0000, 0xc0000), the PCI hole [3 GiB, 4 GiB) for 32-bit
// MMIO, high RAM from 4 GiB, 64-bit MMIO above it. The first 1 MiB is reserved (the zero
// page lives there). Hugetlb pools are carved from the top of RAM at boot, 1 GiB pages
// above 2 MiB pages, each page physically contiguous and aligned.
//
// Per-frame metadata (refcount, pin count, data slot, flags: 16 bytes) lives in chunks of
// 4,096 frames (64 KiB, small enough to stay off the large-object heap, so booting and
// dropping machines does not force full collections) allocated on first use. Anonymous 4 KiB pages come from 256 MiB blocks,
// filled one block at a time, either in order ("contiguous") or "scattered": the block's
// 2 MiB windows are visited in a seeded permuted order and the pages of each window in
// another, so consecutive allocations are never physically adjacent and no 2 MiB range is
// ever mapped linearly (nothing downstream gets contiguity or superpages for free, as on a
// host without THP), while the metadata of the window being filled stays cache-resident.
// Filling block by block keeps the metadata dense, so a large machine starts in
// microseconds and pays for the pages it uses. Hugetlb pages keep their counts once per
// folio (head), as the kernel's large folios do.
//
// Locking: the zone lock protects every count, the allocator and the data-slot table.
// GUP takes it once per batch, so per-page work is plain arithmetic.

using System.Numerics;
using Vfio.Kernel;

namespace Vfio.Platform.Mm;

/// <summary>How anonymous 4 KiB pages are placed in physical memory.</summary>
public enum AllocationPolicy
{
    /// <summary>Seeded permutation inside each 256 MiB block: consecutive allocations are never physically adjacent.</summary>
    Scattered,
    /// <summary>In address order: consecutive allocations are physically contiguous.</summary>
    Contiguous,
}

/// <summary>The memory of a simulated machine.</summary>
public sealed record MemoryConfig
{
    /// <summary>Installed RAM, including the hugetlb pools. Default 8 GiB.</summary>
    public long RamBytes { get; init; } = 8L << 30;

    /// <summary>2 MiB hugetlb pages reserved at boot (the <c>hugepages=</c> parameter).</summary>
    public int HugePages2M { get; init; }

    /// <summary>1 GiB hugetlb pages reserved at boot.</summary>
    public int HugePages1G { get; init; }

    /// <summary>Placement of anonymous 4 KiB pages. Default scattered.</summary>
    public AllocationPolicy Policy { get; init; } = AllocationPolicy.Scattered;
}

/// <summary>A run of physically contiguous page frames.</summary>
/// <param name="Pfn">The first frame.</param>
/// <param name="Count">How many 4 KiB frames.</param>
public readonly record struct PfnRun(long Pfn, long Count)
{
    /// <summary>One past the last frame.</summary>
    public long End => Pfn + Count;
}

/// <summary>Physical memory: frames with reference and pin counts, lazily backed data, hugetlb pools and MMIO ranges.</summary>
public sealed partial class PhysMem
{
    /// <summary>PAGE_SHIFT.</summary>
    public const int PageShift = 12;

    /// <summary>PAGE_SIZE.</summary>
    public const long PageSize = 1L << PageShift;

    /// <summary>Frames per 2 MiB page (order 9).</summary>
    public const long PagesPer2M = 1L << 9;

    /// <summary>Frames per 1 GiB page (order 18).</summary>
    public const long PagesPer1G = 1L << 18;

    /// <summary>Start of the legacy VGA memory window (A000:0), which is not RAM.</summary>
    public const long LegacyVgaStart = 0xa0000;

    /// <summary>End of the legacy VGA memory window (C000:0).</summary>
    public const long LegacyVgaEnd = 0xc0000;

    /// <summary>Start of the PCI hole (3 GiB).</summary>
    public const long PciHoleStart = 3L << 30;

    /// <summary>End of the PCI hole (4 GiB): high RAM starts here.</summary>
    public const long PciHoleEnd = 4L << 30;

    internal const int FlagReserved = 1;
    internal const int FlagDirty = 2;

    private const int ChunkShift = 12;
    private const int ChunkSize = 1 << ChunkShift;
    private const long BlockPages = 1L << 16;
    private const long ReservedLowPages = (2L << 20) >> PageShift;
    private const int WindowShift = 9;
    private const long WindowPages = 1L << WindowShift;

    private readonly SimKernel _kernel;
    private readonly AllocationPolicy _policy;
    private readonly FrameMeta[]?[] _chunks;
    private readonly List<(long Start, long End)> _ram = [];
    private readonly List<(long Start, long End)> _general = [];

    // Allocator state, under Lock.
    private int _generalRange;
    private long _blockStart;
    private long _blockSize;
    private long _blockMul;
    private long _windowMul;
    private long _blockNext;
    private long[] _freeStack = new long[1024];
    private int _freeCount;
    private long _usedPages;

    private long _pinAcquired;
    private long _pinReleased;

    internal PhysMem(SimKernel kernel, MemoryConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        _kernel = kernel;
        _policy = config.Policy;
        long ramPages = config.RamBytes >> PageShift;
        long hugeBytes = (config.HugePages2M * (2L << 20)) + (config.HugePages1G * (1L << 30));
        if (config.RamBytes < (64L << 20) || (config.RamBytes & ((2L << 20) - 1)) != 0)
        {
            throw new ArgumentException($"RamBytes must be a multiple of 2 MiB and at least 64 MiB (got {config.RamBytes})", nameof(config));
        }

        if (hugeBytes > config.RamBytes - (32L << 20))
        {
            throw new ArgumentException($"the hugetlb pools ({hugeBytes >> 20} MiB) do not fit in {config.RamBytes >> 20} MiB of RAM with 32 MiB to spare", nameof(config));
        }

        // Low RAM skips the legacy VGA window [0xa0000, 0xc0000), where a VGA function
        // decodes the framebuffer (the PC's 640 KiB line); the pages stay counted as installed.
        long lowPages = Math.Min(ramPages, PciHoleStart >> PageShift);
        _ram.Add((0, LegacyVgaStart >> PageShift));
        _ram.Add((LegacyVgaEnd >> PageShift, lowPages));
        if (ramPages > lowPages)
        {
            _ram.Add((PciHoleEnd >> PageShift, (PciHoleEnd >> PageShift) + (ramPages - lowPages)));
        }

        MaxRamPfn = _ram[^1].End;
        TotalRamPages = ramPages;
        _chunks = new FrameMeta[]?[(MaxRamPfn + ChunkSize - 1) >> ChunkShift];
        Lock = new KSpinLock(kernel, "mm.zone_lock");
        ZeroPfn = 1;
        SetupPools(config);
        Data = new PageData();

        long end = MaxRamPfn;
        foreach ((long s, long e) in _ram)
        {
            long gs = Math.Max(s, ReservedLowPages);
            long ge = Math.Min(e, GeneralEnd);
            if (ge > gs)
            {
                _general.Add((gs, ge));
            }

            end = Math.Max(end, e);
        }

        Mmio64Base = Math.Max(1L << 38, AlignUp(end << PageShift, 1L << 36));
        ref FrameMeta zero = ref MetaRef(ZeroPfn);
        zero.Ref = 1;
        zero.Flags = FlagReserved;
        NextBlock();
    }

    /// <summary>The zone lock: protects frame counts, the allocators and page data slots.</summary>
    internal KSpinLock Lock { get; }

    /// <summary>The shared zero page (reserved, never freed).</summary>
    public long ZeroPfn { get; }

    /// <summary>Installed RAM in 4 KiB frames.</summary>
    public long TotalRamPages { get; }

    /// <summary>One past the highest RAM frame.</summary>
    public long MaxRamPfn { get; }

    /// <summary>Where 64-bit MMIO windows start (above RAM).</summary>
    public long Mmio64Base { get; }

    internal PageData Data { get; }

    /// <summary>4 KiB frames currently allocated to mappings or pins (the zero page excluded).</summary>
    public long UsedPages => Volatile.Read(ref _usedPages);

    /// <summary>nr_foll_pin_acquired: pages pinned with FOLL_PIN since boot.</summary>
    public long PinsAcquired => Volatile.Read(ref _pinAcquired);

    /// <summary>nr_foll_pin_released: pages unpinned since boot.</summary>
    public long PinsReleased => Volatile.Read(ref _pinReleased);

    /// <summary>Bytes of frame metadata allocated so far (16 per frame, in chunks of 4,096 frames).</summary>
    public long MetadataBytes
    {
        get
        {
            long chunks = 0;
            foreach (FrameMeta[]? c in _chunks)
            {
                if (c is not null)
                {
                    chunks++;
                }
            }

            return chunks * ChunkSize * 16;
        }
    }

    /// <summary>Pages pinned right now (acquired − released).</summary>
    public long PinnedPages => PinsAcquired - PinsReleased;

    private long GeneralEnd { get; set; }

    private static long AlignUp(long v, long a) => (v + a - 1) & ~(a - 1);

    // ---- Frame classification.

    /// <summary>pfn_valid(): true for frames that are RAM.</summary>
    public bool IsRam(long pfn)
    {
        foreach ((long s, long e) in _ram)
        {
            if (pfn >= s && pfn < e)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>PageReserved(): boot-reserved RAM such as the zero page.</summary>
    public bool IsReserved(long pfn) => pfn < ReservedLowPages && IsRam(pfn);

    /// <summary>is_invalid_reserved_pfn() of type1: not RAM, or reserved RAM.</summary>
    public bool IsInvalidOrReserved(long pfn) => !IsRam(pfn) || IsReserved(pfn);

    /// <summary>
    /// The frames around <paramref name="pfn"/> for which <see cref="IsInvalidOrReserved"/>
    /// is false, as [<paramref name="start"/>, <paramref name="end"/>): a caller classifying
    /// many frames (type1's per-run accounting) asks once per range instead of once per
    /// frame. False, with an empty range, when <paramref name="pfn"/> is not RAM or is reserved.
    /// </summary>
    internal bool OrdinaryRamRange(long pfn, out long start, out long end)
    {
        foreach ((long s, long e) in _ram)
        {
            long first = Math.Max(s, ReservedLowPages);
            if (pfn >= first && pfn < e)
            {
                start = first;
                end = e;
                return true;
            }
        }

        start = end = 0;
        return false;
    }

    // ---- Counts (readers take the lock: these are for tests, reports and invariants).

    /// <summary>The reference count of the folio containing <paramref name="pfn"/> (0 when free).</summary>
    public int RefCount(long pfn) => ReadCount(pfn, pin: false);

    /// <summary>The pin count of the folio containing <paramref name="pfn"/> (for a huge page, pinned subpages summed).</summary>
    public int PinCount(long pfn) => ReadCount(pfn, pin: true);

    /// <summary>True when the folio containing <paramref name="pfn"/> was dirtied (by a write or a dirty unpin).</summary>
    public bool IsDirty(long pfn)
    {
        Lock.Lock();
        try
        {
            return (FolioFlags(pfn) & FlagDirty) != 0;
        }
        finally
        {
            Lock.Unlock();
        }
    }

    private int ReadCount(long pfn, bool pin)
    {
        Lock.Lock();
        try
        {
            if (HugePoolOf(pfn) is { } pool)
            {
                ref HugeMeta h = ref pool.Meta(pfn);
                return pin ? h.Pin : h.Ref;
            }

            if (!IsRam(pfn))
            {
                return 0;
            }

            FrameMeta[]? chunk = _chunks[pfn >> ChunkShift];
            if (chunk is null)
            {
                return 0;
            }

            ref FrameMeta m = ref chunk[pfn & (ChunkSize - 1)];
            return pin ? m.Pin : m.Ref;
        }
        finally
        {
            Lock.Unlock();
        }
    }

    private int FolioFlags(long pfn)
    {
        if (HugePoolOf(pfn) is { } pool)
        {
            return pool.Meta(pfn).Flags;
        }

        FrameMeta[]? chunk = IsRam(pfn) ? _chunks[pfn >> ChunkShift] : null;
        return chunk is null ? 0 : chunk[pfn & (ChunkSize - 1)].Flags;
    }

    internal ref FrameMeta MetaRef(long pfn)
    {
        FrameMeta[] chunk = _chunks[pfn >> ChunkShift] ??= new FrameMeta[ChunkSize];
        return ref chunk[pfn & (ChunkSize - 1)];
    }

    /// <summary>The metadata chunk holding <paramref name="pfn"/>, allocated if needed; for loops over many frames.</summary>
    internal FrameMeta[] MetaChunk(long pfn) => _chunks[pfn >> ChunkShift] ??= new FrameMeta[ChunkSize];

    internal const int MetaChunkShift = ChunkShift;
    internal const int MetaChunkMask = ChunkSize - 1;

    // ---- 4 KiB allocation (caller holds Lock).
    //
    // The helpers that run once per frame (allocate, get, put, free, pin, unpin a folio,
    // mark dirty, and the data-slot lookups) assert Lock in debug builds only: faults, GUP
    // and unpin run them for every 4 KiB page, and long-term pinning is held to a few
    // nanoseconds per page. The batch-level callers (GUP's per-VMA steps, UnpinRunsLocked)
    // assert it on every call.

    /// <summary>Fault-injection site of every 4 KiB allocation: failing it is out of memory (-1; the fault path's VM_FAULT_OOM).</summary>
    public const string AllocPageFaultSite = "alloc_page";

    /// <summary>Allocates a zeroed 4 KiB frame with one reference, or returns -1 when memory is exhausted.</summary>
    internal long AllocPageLocked()
    {
        Lock.DebugAssertHeld();
        if (_kernel.Faults.ShouldFail(AllocPageFaultSite))
        {
            return -1;
        }

        long pfn;
        if (_freeCount > 0)
        {
            pfn = _freeStack[--_freeCount];
        }
        else
        {
            while (_blockNext == _blockSize)
            {
                if (!NextBlock())
                {
                    return -1;
                }
            }

            long i = _blockNext++;
            if (_policy == AllocationPolicy.Scattered)
            {
                long window = (long)((ulong)((i >> WindowShift) * _blockMul) % (ulong)(_blockSize >> WindowShift));
                long page = (i * _windowMul) & (WindowPages - 1);
                pfn = _blockStart + (window << WindowShift) + page;
            }
            else
            {
                pfn = _blockStart + i;
            }
        }

        ref FrameMeta m = ref MetaRef(pfn);
        m.Ref = 1;
        m.Pin = 0;
        m.Flags = 0;
        if (m.Data != 0)
        {
            // Written while free (a stray DMA into a freed frame): the new owner gets zeros.
            Data.Free(m.Data);
            m.Data = 0;
        }

        _usedPages++;
        return pfn;
    }

    private bool NextBlock()
    {
        long next = _blockStart + _blockSize;
        while (_generalRange < _general.Count)
        {
            (long s, long e) = _general[_generalRange];
            if (next < s)
            {
                next = s;
            }

            if (next < e)
            {
                // Blocks end on metadata-chunk boundaries so a block never straddles two chunks.
                _blockStart = next;
                _blockSize = Math.Min(BlockPages - (next & (BlockPages - 1)), e - next);
                _blockNext = 0;
                _blockMul = PickMultiplier(_blockSize >> WindowShift);
                _windowMul = 129 + (2 * _kernel.Random.Next(128)); // Odd, and never ±1 modulo 512.
                return true;
            }

            _generalRange++;
        }

        _blockSize = 0;
        _blockNext = 0;
        return false;
    }

    private long PickMultiplier(long size)
    {
        if (size <= 2)
        {
            return 1;
        }

        // An odd multiplier near size/φ, coprime with the block size, from the seed.
        long m = (long)(size * 0.6180339887) | 1;
        m += 2 * _kernel.Random.Next((int)Math.Min(size / 8, int.MaxValue) + 1);
        while (GreatestCommonDivisor(m % size, size) != 1)
        {
            m += 2;
        }

        return m % size;
    }

    private static long GreatestCommonDivisor(long a, long b)
    {
        while (b != 0)
        {
            (a, b) = (b, a % b);
        }

        return a;
    }

    /// <summary>Takes one more reference on the folio containing <paramref name="pfn"/>.</summary>
    internal void GetPageLocked(long pfn)
    {
        Lock.DebugAssertHeld();
        if (HugePoolOf(pfn) is { } pool)
        {
            pool.Meta(pfn).Ref++;
            return;
        }

        MetaRef(pfn).Ref++;
    }

    /// <summary>Drops a reference on the folio containing <paramref name="pfn"/>; frees it at zero.</summary>
    internal void PutPageLocked(long pfn)
    {
        Lock.DebugAssertHeld();
        if (HugePoolOf(pfn) is { } pool)
        {
            pool.Put(this, pfn, 1);
            return;
        }

        ref FrameMeta m = ref MetaRef(pfn);
        if (--m.Ref == 0)
        {
            FreeFrameLocked(pfn, ref m);
        }
    }

    private void FreeFrameLocked(long pfn, ref FrameMeta m)
    {
        Lock.DebugAssertHeld();
        if (m.Pin != 0 || (m.Flags & FlagReserved) != 0)
        {
            throw new InvalidOperationException($"freeing frame {pfn:x} with pin count {m.Pin} and flags {m.Flags}: page accounting is corrupt");
        }

        if (m.Data != 0)
        {
            Data.Free(m.Data);
            m.Data = 0;
        }

        m.Flags = 0;
        if (_freeCount == _freeStack.Length)
        {
            Array.Resize(ref _freeStack, _freeStack.Length * 2);
        }

        _freeStack[_freeCount++] = pfn;
        _usedPages--;
    }

    // ---- Pins (caller holds Lock). Counts are per folio, like FOLL_PIN on large folios.

    /// <summary>try_grab_folio(FOLL_PIN): <paramref name="pages"/> pins and references on the folio of <paramref name="pfn"/>.</summary>
    internal void PinLocked(long pfn, long pages)
    {
        Lock.DebugAssertHeld();
        if (HugePoolOf(pfn) is { } pool)
        {
            ref HugeMeta h = ref pool.Meta(pfn);
            h.Ref += (int)pages;
            h.Pin += (int)pages;
        }
        else
        {
            ref FrameMeta m = ref MetaRef(pfn);
            m.Ref += (int)pages;
            m.Pin += (int)pages;
        }

        _pinAcquired += pages;
        PinnedPagesTimeline();
    }

    internal void AddPinsAcquiredLocked(long pages)
    {
        Lock.AssertHeld();
        _pinAcquired += pages;
        PinnedPagesTimeline();
    }

    // The timeline's "pinned pages" counter, once per pin or unpin batch (never per page).
    private void PinnedPagesTimeline()
    {
        if (_kernel.Trace.TimelineEnabled)
        {
            _kernel.Trace.Counter("pinned_pages", _pinAcquired - _pinReleased);
        }
    }

    /// <summary>
    /// Releases <paramref name="pages"/> pins on the folio of <paramref name="pfn"/>,
    /// marking it dirty on request; frees it when that was the last reference. The
    /// released-pins counter is the caller's to update.
    /// </summary>
    private void UnpinFolioLocked(long pfn, long pages, bool dirty)
    {
        Lock.DebugAssertHeld();
        if (HugePoolOf(pfn) is { } pool)
        {
            ref HugeMeta h = ref pool.Meta(pfn);
            if (h.Pin < pages)
            {
                throw PinUnderflow(pfn, h.Pin, pages);
            }

            h.Pin -= (int)pages;
            if (dirty)
            {
                h.Flags |= FlagDirty;
            }

            pool.Put(this, pfn, pages);
            return;
        }

        ref FrameMeta m = ref MetaRef(pfn);
        if (m.Pin < pages)
        {
            throw PinUnderflow(pfn, m.Pin, pages);
        }

        m.Pin -= (int)pages;
        if (dirty)
        {
            m.Flags |= FlagDirty;
        }

        m.Ref -= (int)pages;
        if (m.Ref == 0)
        {
            FreeFrameLocked(pfn, ref m);
        }
    }

    private static InvalidOperationException PinUnderflow(long pfn, int have, long drop)
        => new($"unpin of {drop} page(s) at pfn 0x{pfn:x}, which holds only {have} pin(s): a caller unpinned what it did not pin");

    /// <summary>
    /// unpin_user_page_range_dirty_lock(): releases the pins on <paramref name="run"/> (which
    /// must have been pinned as such), marking the pages dirty when <paramref name="dirty"/>.
    /// </summary>
    public void Unpin(PfnRun run, bool dirty) => Unpin([run], dirty);

    /// <summary>Releases the pins on every run of <paramref name="runs"/>, under one acquisition of the zone lock.</summary>
    public void Unpin(ReadOnlySpan<PfnRun> runs, bool dirty)
    {
        Lock.Lock();
        try
        {
            UnpinRunsLocked(runs, dirty);
        }
        finally
        {
            Lock.Unlock();
        }
    }

    /// <summary>
    /// The unpin loop: ordinary frames are handled inline with one metadata-chunk lookup per
    /// chunk (not per run: scattered memory pins as one-page runs), huge folios once per
    /// folio; the released counter is updated once.
    /// </summary>
    internal void UnpinRunsLocked(ReadOnlySpan<PfnRun> runs, bool dirty)
    {
        Lock.AssertHeld();
        int dirtyFlag = dirty ? FlagDirty : 0;
        bool pools = _pool2M is not null || _pool1G is not null;
        long chunkIndex = -1;
        FrameMeta[]? chunk = null;
        long released = 0;
        long folios = 0;
        try
        {
            foreach (PfnRun run in runs)
            {
                long pfn = run.Pfn;
                long end = run.End;
                if (pools && (HugePoolOf(pfn) is not null || HugePoolOf(end - 1) is not null))
                {
                    while (pfn < end)
                    {
                        long n = HugePoolOf(pfn) is { } pool ? Math.Min(end, pool.FolioStart(pfn) + pool.PagesPerFolio) - pfn : 1;
                        UnpinFolioLocked(pfn, n, dirty);
                        released += n;
                        folios++;
                        pfn += n;
                    }

                    continue;
                }

                for (; pfn < end; pfn++)
                {
                    if ((pfn >> ChunkShift) != chunkIndex)
                    {
                        chunkIndex = pfn >> ChunkShift;
                        chunk = (ulong)chunkIndex < (ulong)_chunks.Length ? _chunks[chunkIndex] : null;
                        if (chunk is null)
                        {
                            // Never allocated (or not RAM at all): nothing here was ever pinned.
                            throw PinUnderflow(pfn, 0, 1);
                        }
                    }

                    ref FrameMeta m = ref chunk![pfn & (ChunkSize - 1)];
                    if (m.Pin == 0)
                    {
                        throw PinUnderflow(pfn, 0, 1);
                    }

                    m.Pin--;
                    m.Flags |= dirtyFlag;
                    if (--m.Ref == 0)
                    {
                        FreeFrameLocked(pfn, ref m);
                    }

                    released++;
                    folios++;
                }
            }
        }
        finally
        {
            _pinReleased += released;
            PinnedPagesTimeline();
            _kernel.Cost.Charge(CostOp.UnpinFolio, folios);
            _kernel.Cost.Charge(CostOp.UnpinPage, released);
        }
    }

    /// <summary>Marks the folio containing <paramref name="pfn"/> dirty (a CPU or device write).</summary>
    internal void MarkDirtyLocked(long pfn)
    {
        Lock.DebugAssertHeld();
        if (HugePoolOf(pfn) is { } pool)
        {
            pool.Meta(pfn).Flags |= FlagDirty;
        }
        else if (IsRam(pfn))
        {
            MetaRef(pfn).Flags |= FlagDirty;
        }
    }

    /// <summary>Frames of RAM that hold a reference, and the sum of all pin counts (for invariant checks).</summary>
    internal (long UsedFrames, long PinSum) CountLocked()
    {
        Lock.AssertHeld();
        long used = 0, pins = 0;
        for (int c = 0; c < _chunks.Length; c++)
        {
            FrameMeta[]? chunk = _chunks[c];
            if (chunk is null)
            {
                continue;
            }

            for (int i = 0; i < chunk.Length; i++)
            {
                if (chunk[i].Ref > 0 && (chunk[i].Flags & FlagReserved) == 0)
                {
                    used++;
                }

                pins += chunk[i].Pin;
            }
        }

        foreach (HugePool pool in Pools)
        {
            pins += pool.PinSum();
        }

        return (used, pins);
    }

    internal static int Log2(long pages) => BitOperations.Log2((ulong)pages);
}

/// <summary>Per-frame metadata of a 4 KiB frame: 16 bytes.</summary>
internal struct FrameMeta
{
    public int Ref;
    public int Pin;
    public int Data;
    public int Flags;
}
