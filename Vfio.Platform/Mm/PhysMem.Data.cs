// The bytes behind physical addresses. RAM pages get a 4 KiB buffer the first time they
// are written (an untouched page reads as zeros); MMIO ranges dispatch to the device that
// registered them; anything else is a bus error (reads see all-ones, writes vanish), as on
// a PC. Used by user copies (copy_to_user and friends) and, later, device DMA.

namespace Vfio.Platform.Mm;

/// <summary>A device's handler for a range of MMIO physical addresses.</summary>
public interface IMmioHandler
{
    /// <summary>A CPU (or peer) read of <paramref name="data"/>.Length bytes at <paramref name="offset"/> into the range.</summary>
    void Read(long offset, Span<byte> data);

    /// <summary>A CPU (or peer) write at <paramref name="offset"/> into the range.</summary>
    void Write(long offset, ReadOnlySpan<byte> data);
}

public sealed partial class PhysMem
{
    // Sorted by start; under Lock.
    private readonly AddressRangeMap _mmio = new();
    private long _unsupportedRequests;

    /// <summary>
    /// Accesses that no RAM and no device claimed (a master abort / Unsupported Request: a
    /// read saw all-ones, a write vanished), e.g. a BAR touched while its memory decode is off.
    /// </summary>
    public long UnsupportedRequests => Interlocked.Read(ref _unsupportedRequests);

    /// <summary>Routes physical addresses [<paramref name="start"/>, +<paramref name="length"/>) to <paramref name="handler"/>.</summary>
    public void RegisterMmio(long start, long length, IMmioHandler handler)
    {
        if (!TryRegisterMmio(start, length, handler))
        {
            long end = start + length;
            string why = start < 0 || end < start ? "is not a valid physical range"
                : IsRam(start >> PageShift) || IsRam((end - 1) >> PageShift) ? "overlaps RAM"
                : "overlaps another device's range";
            throw new ArgumentException($"MMIO range [0x{start:x}, 0x{end:x}) {why}", nameof(start));
        }
    }

    /// <summary>
    /// Routes [<paramref name="start"/>, +<paramref name="length"/>) to <paramref name="handler"/>
    /// unless it overlaps RAM or a routed range (a decode conflict, as when software programs
    /// two BARs over each other): then nothing is routed and the result is false.
    /// </summary>
    public bool TryRegisterMmio(long start, long length, IMmioHandler handler)
    {
        ArgumentNullException.ThrowIfNull(handler);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(length);
        long end = start + length;
        if (start < 0 || end < start || IsRam(start >> PageShift) || IsRam((end - 1) >> PageShift))
        {
            return false;
        }

        Lock.Lock();
        try
        {
            return _mmio.TryAdd(start, end, handler);
        }
        finally
        {
            Lock.Unlock();
        }
    }

    /// <summary>Removes the MMIO range starting at <paramref name="start"/>.</summary>
    public void UnregisterMmio(long start)
    {
        Lock.Lock();
        try
        {
            _mmio.Remove(start);
        }
        finally
        {
            Lock.Unlock();
        }
    }

    /// <summary>Reads physical memory; a hole reads as all-ones.</summary>
    public void Read(long addr, Span<byte> dst)
    {
        while (!dst.IsEmpty)
        {
            int inPage = (int)Math.Min(dst.Length, PageSize - (addr & (PageSize - 1)));
            Span<byte> part = dst[..inPage];
            ReadPage(addr, part);
            addr += inPage;
            dst = dst[inPage..];
        }
    }

    /// <summary>Writes physical memory; writes to a hole are dropped.</summary>
    public void Write(long addr, ReadOnlySpan<byte> src)
    {
        while (!src.IsEmpty)
        {
            int inPage = (int)Math.Min(src.Length, PageSize - (addr & (PageSize - 1)));
            WritePage(addr, src[..inPage]);
            addr += inPage;
            src = src[inPage..];
        }
    }

    /// <summary>One CPU read inside a page: false when no RAM or device claimed the address (the read saw all-ones).</summary>
    internal bool ReadClaimed(long addr, Span<byte> dst) => ReadPage(addr, dst);

    /// <summary>One CPU write inside a page: false when no RAM or device claimed the address (the write vanished).</summary>
    internal bool WriteClaimed(long addr, ReadOnlySpan<byte> src) => WritePage(addr, src);

    private bool ReadPage(long addr, Span<byte> dst)
    {
        IMmioHandler? handler;
        long offset;
        Lock.Lock();
        try
        {
            if (IsRam(addr >> PageShift))
            {
                int slot = DataSlotLocked(addr >> PageShift);
                if (slot == 0)
                {
                    dst.Clear();
                }
                else
                {
                    Data.Page(slot).Slice((int)(addr & (PageSize - 1)), dst.Length).CopyTo(dst);
                }

                return true;
            }

            handler = MmioForLocked(addr, out offset);
        }
        finally
        {
            Lock.Unlock();
        }

        // Device handlers run outside the zone lock: they may take their own locks.
        if (handler is null)
        {
            dst.Fill(0xff);
            Interlocked.Increment(ref _unsupportedRequests);
            return false;
        }

        handler.Read(offset, dst);
        return true;
    }

    private bool WritePage(long addr, ReadOnlySpan<byte> src)
    {
        IMmioHandler? handler;
        long offset;
        Lock.Lock();
        try
        {
            long pfn = addr >> PageShift;
            if (IsRam(pfn))
            {
                int slot = DataSlotLocked(pfn);
                if (slot == 0)
                {
                    slot = Data.Alloc();
                    SetDataSlotLocked(pfn, slot);
                }

                src.CopyTo(Data.Page(slot)[(int)(addr & (PageSize - 1))..]);
                MarkDirtyLocked(pfn);
                return true;
            }

            handler = MmioForLocked(addr, out offset);
        }
        finally
        {
            Lock.Unlock();
        }

        if (handler is null)
        {
            Interlocked.Increment(ref _unsupportedRequests);
            return false;
        }

        handler.Write(offset, src);
        return true;
    }

    /// <summary>The device handling <paramref name="addr"/> and the offset into its range, or null for a hole.</summary>
    private IMmioHandler? MmioForLocked(long addr, out long offset)
    {
        Lock.AssertHeld();
        return _mmio.Find(addr, 1, out offset);
    }

    private int DataSlotLocked(long pfn)
    {
        Lock.DebugAssertHeld();
        if (HugePoolOf(pfn) is { } pool)
        {
            return pool.DataSlot(pfn);
        }

        FrameMeta[]? chunk = _chunks[pfn >> ChunkShift];
        return chunk is null ? 0 : chunk[pfn & (ChunkSize - 1)].Data;
    }

    private void SetDataSlotLocked(long pfn, int slot)
    {
        Lock.DebugAssertHeld();
        if (HugePoolOf(pfn) is { } pool)
        {
            pool.SetDataSlot(pfn, slot);
        }
        else
        {
            MetaRef(pfn).Data = slot;
        }
    }

    /// <summary>Copies the bytes of <paramref name="from"/> to <paramref name="to"/> (copy-on-write, fork).</summary>
    internal void CopyPageLocked(long from, long to)
    {
        Lock.DebugAssertHeld();
        int slot = DataSlotLocked(from);
        if (slot == 0)
        {
            return;
        }

        int dst = Data.Alloc();
        Data.Page(slot).CopyTo(Data.Page(dst));
        SetDataSlotLocked(to, dst);
    }

    /// <summary>Real memory spent on page contents: bytes of data buffers in use.</summary>
    public long DataBytes
    {
        get
        {
            Lock.Lock();
            try
            {
                return Data.SlotsInUse * PageSize;
            }
            finally
            {
                Lock.Unlock();
            }
        }
    }
}

/// <summary>
/// 4 KiB buffers for page contents, allocated 16 at a time (64 KiB, off the large-object
/// heap) and reused.
/// </summary>
internal sealed class PageData
{
    private const int PagesPerChunk = 16;
    private byte[][] _chunks = new byte[64][];
    private int _next = 1;
    private int[] _free = new int[64];
    private int _freeCount;

    public int SlotsInUse { get; private set; }

    public int Alloc()
    {
        int slot;
        if (_freeCount > 0)
        {
            slot = _free[--_freeCount];
            Page(slot).Clear();
        }
        else
        {
            slot = _next++;
            int chunk = slot / PagesPerChunk;
            if (chunk >= _chunks.Length)
            {
                Array.Resize(ref _chunks, _chunks.Length * 2);
            }

            _chunks[chunk] ??= new byte[PagesPerChunk * PhysMem.PageSize];
        }

        SlotsInUse++;
        return slot;
    }

    public void Free(int slot)
    {
        if (_freeCount == _free.Length)
        {
            Array.Resize(ref _free, _free.Length * 2);
        }

        _free[_freeCount++] = slot;
        SlotsInUse--;
    }

    public Span<byte> Page(int slot)
        => _chunks[slot / PagesPerChunk].AsSpan((slot % PagesPerChunk) * (int)PhysMem.PageSize, (int)PhysMem.PageSize);
}
