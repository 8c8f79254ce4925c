// The sorted, non-overlapping ranges of an address space that devices decode (the MMIO
// ranges of physical memory, the I/O port space): add refuses an overlap, as a decode
// conflict puts nothing on the bus; find gives the handler and the offset into its range.
//
// Lock rule: none of its own; the address space that owns it calls it under its lock.

namespace Vfio.Platform.Mm;

/// <summary>Address ranges routed to device handlers, kept sorted by start.</summary>
internal sealed class AddressRangeMap
{
    private readonly List<(long Start, long End, IMmioHandler Handler)> _ranges = [];

    /// <summary>Adds [<paramref name="start"/>, <paramref name="end"/>); false (nothing added) when it overlaps a range.</summary>
    public bool TryAdd(long start, long end, IMmioHandler handler)
    {
        int at = 0;
        while (at < _ranges.Count && _ranges[at].Start < start)
        {
            at++;
        }

        if ((at > 0 && _ranges[at - 1].End > start) || (at < _ranges.Count && _ranges[at].Start < end))
        {
            return false;
        }

        _ranges.Insert(at, (start, end, handler));
        return true;
    }

    /// <summary>Removes the range starting at <paramref name="start"/>, if any.</summary>
    public void Remove(long start)
    {
        for (int i = 0; i < _ranges.Count; i++)
        {
            if (_ranges[i].Start == start)
            {
                _ranges.RemoveAt(i);
                return;
            }
        }
    }

    /// <summary>The handler of the range holding [<paramref name="addr"/>, +<paramref name="length"/>) and the offset into it, or null.</summary>
    public IMmioHandler? Find(long addr, long length, out long offset)
    {
        foreach ((long s, long e, IMmioHandler h) in _ranges)
        {
            if (addr >= s && addr + length <= e)
            {
                offset = addr - s;
                return h;
            }
        }

        offset = 0;
        return null;
    }
}
