// Models the boot-time hugetlb pools of mm/hugetlb.c (v6.12): 2 MiB and 1 GiB pages set
// aside at boot, physically contiguous and naturally aligned, handed out lowest address
// first, with reservations taken at mmap() time so a later fault cannot fail.

namespace Vfio.Platform.Mm;

public sealed partial class PhysMem
{
    private HugePool? _pool2M;
    private HugePool? _pool1G;

    internal IEnumerable<HugePool> Pools
    {
        get
        {
            if (_pool2M is not null)
            {
                yield return _pool2M;
            }

            if (_pool1G is not null)
            {
                yield return _pool1G;
            }
        }
    }

    /// <summary>Huge pages of <paramref name="pageSize"/> bytes in the pool (HugePages_Total).</summary>
    public int HugePagesTotal(long pageSize) => PoolFor(pageSize)?.Count ?? 0;

    /// <summary>Huge pages of <paramref name="pageSize"/> bytes not in use (HugePages_Free).</summary>
    public int HugePagesFree(long pageSize)
    {
        HugePool? pool = PoolFor(pageSize);
        if (pool is null)
        {
            return 0;
        }

        Lock.Lock();
        try
        {
            return pool.Free;
        }
        finally
        {
            Lock.Unlock();
        }
    }

    internal HugePool? PoolFor(long pageSize) => pageSize switch
    {
        2L << 20 => _pool2M,
        1L << 30 => _pool1G,
        _ => null,
    };

    /// <summary>The pool whose range holds <paramref name="pfn"/>, or null for ordinary frames.</summary>
    internal HugePool? HugePoolOf(long pfn)
    {
        if (_pool2M is { } a && pfn >= a.Start && pfn < a.End)
        {
            return a;
        }

        if (_pool1G is { } b && pfn >= b.Start && pfn < b.End)
        {
            return b;
        }

        return null;
    }

    private void SetupPools(MemoryConfig config)
    {
        (long topStart, long topEnd) = _ram[^1];
        long end1G = topEnd & ~(PagesPer1G - 1);
        long start1G = end1G - (config.HugePages1G * PagesPer1G);
        long start2M = start1G - (config.HugePages2M * PagesPer2M);
        if (start2M < Math.Max(topStart, ReservedLowPages) + ((16L << 20) >> PageShift))
        {
            throw new ArgumentException(
                $"the hugetlb pools ({config.HugePages2M} x 2 MiB, {config.HugePages1G} x 1 GiB) do not fit in the top RAM range of this machine; add RAM or shrink the pools",
                nameof(config));
        }

        if (config.HugePages1G > 0)
        {
            _pool1G = new HugePool(start1G, config.HugePages1G, PagesPer1G);
        }

        if (config.HugePages2M > 0)
        {
            _pool2M = new HugePool(start2M, config.HugePages2M, PagesPer2M);
        }

        GeneralEnd = config.HugePages1G + config.HugePages2M > 0 ? start2M : topEnd;
    }
}

/// <summary>Counts of one huge folio, kept on its head.</summary>
internal struct HugeMeta
{
    public int Ref;
    public int Pin;
    public int Flags;
}

/// <summary>One hugetlb pool: huge pages of one size, contiguous from <see cref="Start"/>.</summary>
internal sealed class HugePool
{
    private readonly HugeMeta[] _meta;
    private readonly int _shift;
    private readonly Dictionary<long, int> _data = [];
    private int _hint;

    public HugePool(long start, int count, long pagesPerFolio)
    {
        Start = start;
        Count = count;
        PagesPerFolio = pagesPerFolio;
        _shift = PhysMem.Log2(pagesPerFolio);
        _meta = new HugeMeta[count];
        Free = count;
    }

    public long Start { get; }

    public int Count { get; }

    public long End => Start + (Count * PagesPerFolio);

    public long PagesPerFolio { get; }

    public long PageBytes => PagesPerFolio << PhysMem.PageShift;

    /// <summary>Pages not allocated (HugePages_Free).</summary>
    public int Free { get; private set; }

    /// <summary>Pages promised to mappings but not faulted yet (HugePages_Rsvd).</summary>
    public int Reserved { get; private set; }

    public ref HugeMeta Meta(long pfn) => ref _meta[(pfn - Start) >> _shift];

    public long FolioStart(long pfn) => Start + (((pfn - Start) >> _shift) << _shift);

    /// <summary>hugetlb_reserve_pages(): promises <paramref name="n"/> pages to a mapping; false if the pool cannot keep the promise.</summary>
    public bool Reserve(int n)
    {
        if (Free - Reserved < n)
        {
            return false;
        }

        Reserved += n;
        return true;
    }

    public void Unreserve(int n) => Reserved -= Math.Min(n, Reserved);

    /// <summary>Allocates the lowest free huge page against a reservation; returns its head pfn.</summary>
    public long AllocReserved(PhysMem mem)
    {
        for (int i = 0; i < Count; i++)
        {
            int idx = (_hint + i) % Count;
            if (_meta[idx].Ref == 0)
            {
                _meta[idx] = new HugeMeta { Ref = 1 };
                _hint = idx + 1;
                Free--;
                Reserved--;
                long head = Start + ((long)idx << _shift);
                FreeDataLocked(mem, head); // Written while free: the new owner gets zeros.
                return head;
            }
        }

        throw new InvalidOperationException("hugetlb pool accounting is corrupt: a reserved page is not free");
    }

    public void Put(PhysMem mem, long pfn, long refs)
    {
        ref HugeMeta h = ref Meta(pfn);
        h.Ref -= (int)refs;
        if (h.Ref > 0)
        {
            return;
        }

        if (h.Ref < 0 || h.Pin != 0)
        {
            throw new InvalidOperationException($"huge page at pfn 0x{FolioStart(pfn):x} freed with ref {h.Ref} and pin {h.Pin}: page accounting is corrupt");
        }

        long head = FolioStart(pfn);
        FreeDataLocked(mem, head);
        h.Flags = 0;
        Free++;
        _hint = Math.Min(_hint, (int)((head - Start) >> _shift));
    }

    private void FreeDataLocked(PhysMem mem, long head)
    {
        mem.Lock.AssertHeld();
        if (_data.Count > 0)
        {
            for (long p = head; p < head + PagesPerFolio; p++)
            {
                if (_data.Remove(p, out int slot))
                {
                    mem.Data.Free(slot);
                }
            }
        }
    }

    public int DataSlot(long pfn) => _data.TryGetValue(pfn, out int s) ? s : 0;

    public void SetDataSlot(long pfn, int slot) => _data[pfn] = slot;

    public long PinSum()
    {
        long sum = 0;
        foreach (HugeMeta m in _meta)
        {
            sum += m.Pin;
        }

        return sum;
    }

    public int InUse()
    {
        int n = 0;
        foreach (HugeMeta m in _meta)
        {
            if (m.Ref > 0)
            {
                n++;
            }
        }

        return n;
    }
}
