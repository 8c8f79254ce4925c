// Models struct vfio_pfn and the per-dma pfn_list of drivers/vfio/vfio_iommu_type1.c (v6.12):
// the pages an emulated-IOMMU driver pinned in one mapping, by IOVA, each with its pin count.
// The kernel kmallocs one vfio_pfn per page into an rb-tree; here the entries live inline in
// an open-addressing table (linear probing, backward-shift deletion) owned by the dma and
// kept when the dma returns to its pool, so once the table has grown to a driver's working
// set, inserting and removing allocate nothing. Nothing observable depends on the tree's
// order (callers count, mark or check entries), so the table is unordered; it iterates in a
// deterministic order (slot order, a function of the operations done).
//
// Lock rule: guarded by the container's lock (iommu->lock), as the dma that owns it.

namespace Vfio.Iommu.Type1;

/// <summary>struct vfio_pfn: one page an emulated-IOMMU driver pinned, with its pin count.</summary>
internal struct VfioPfn
{
    /// <summary>The IOVA of the page.</summary>
    public ulong Iova;

    /// <summary>The pinned frame.</summary>
    public long Pfn;

    /// <summary>ref_count: vfio_pin_pages calls not yet matched by an unpin (0 marks a free slot).</summary>
    public int RefCount;
}

/// <summary>pfn_list: a dma's <see cref="VfioPfn"/> entries keyed by page-aligned IOVA; allocation-free once grown.</summary>
internal sealed class VfioPfnList
{
    private const int MinCapacity = 8;

    private VfioPfn[] _slots = [];
    private int _mask = -1;
    private int _shift = 64;

    /// <summary>Entries in the list.</summary>
    public int Count { get; private set; }

    /// <summary>Slots allocated (a power of two, or 0 before the first insert); the list never shrinks.</summary>
    public int Capacity => _slots.Length;

    /// <summary>The slot of the entry for <paramref name="iova"/>, or -1 (vfio_find_vpfn).</summary>
    public int IndexOf(ulong iova)
    {
        VfioPfn[] slots = _slots;
        if (Count == 0)
        {
            return -1;
        }

        int i = Home(iova);
        while (true)
        {
            ref VfioPfn s = ref slots[i];
            if (s.RefCount == 0)
            {
                return -1;
            }

            if (s.Iova == iova)
            {
                return i;
            }

            i = (i + 1) & _mask;
        }
    }

    /// <summary>True when <paramref name="iova"/> has an entry.</summary>
    public bool Contains(ulong iova) => IndexOf(iova) >= 0;

    /// <summary>The entry in slot <paramref name="index"/> (from <see cref="IndexOf"/>), to read or update its pin count.</summary>
    public ref VfioPfn At(int index) => ref _slots[index];

    /// <summary>vfio_add_to_pfn_list(): a new entry with one pin; <paramref name="iova"/> must not have one.</summary>
    public void Add(ulong iova, long pfn)
    {
        if ((Count + 1) * 4 > _slots.Length * 3)
        {
            Grow();
        }

        int i = Home(iova);
        while (_slots[i].RefCount != 0)
        {
            if (_slots[i].Iova == iova)
            {
                throw new InvalidOperationException($"pfn_list: iova 0x{iova:x} already has an entry");
            }

            i = (i + 1) & _mask;
        }

        _slots[i] = new VfioPfn { Iova = iova, Pfn = pfn, RefCount = 1 };
        Count++;
    }

    /// <summary>vfio_remove_from_pfn_list(): removes the entry in slot <paramref name="index"/>.</summary>
    public void RemoveAt(int index)
    {
        VfioPfn[] slots = _slots;
        int mask = _mask;
        int hole = index;
        int i = index;

        // Backward-shift deletion: move later entries of the probe sequence into the hole
        // when their home slot does not lie (cyclically) between the hole and them.
        while (true)
        {
            i = (i + 1) & mask;
            ref VfioPfn s = ref slots[i];
            if (s.RefCount == 0)
            {
                break;
            }

            int home = Home(s.Iova);
            if (((i - home) & mask) >= ((i - hole) & mask))
            {
                slots[hole] = s;
                hole = i;
            }
        }

        slots[hole] = default;
        Count--;
    }

    /// <summary>Drops every entry, keeping the slots for reuse.</summary>
    public void Clear()
    {
        if (Count != 0)
        {
            Array.Clear(_slots);
            Count = 0;
        }
    }

    /// <summary>Enumerates the entries in slot order (no allocation).</summary>
    public Enumerator GetEnumerator() => new(_slots);

    private int Home(ulong iova) => (int)(((iova >> 12) * 0x9E3779B97F4A7C15UL) >> _shift);

    private void Grow()
    {
        VfioPfn[] old = _slots;
        int capacity = Math.Max(MinCapacity, old.Length * 2);
        _slots = new VfioPfn[capacity];
        _mask = capacity - 1;
        _shift = 64 - System.Numerics.BitOperations.Log2((uint)capacity);
        Count = 0;
        foreach (VfioPfn s in old)
        {
            if (s.RefCount != 0)
            {
                int i = Home(s.Iova);
                while (_slots[i].RefCount != 0)
                {
                    i = (i + 1) & _mask;
                }

                _slots[i] = s;
                Count++;
            }
        }
    }

    /// <summary>Walks the occupied slots.</summary>
    public struct Enumerator(VfioPfn[] slots)
    {
        private int _i = -1;

        /// <summary>The current entry.</summary>
        public readonly VfioPfn Current => slots[_i];

        /// <summary>Advances to the next occupied slot.</summary>
        public bool MoveNext()
        {
            while (++_i < slots.Length)
            {
                if (slots[_i].RefCount != 0)
                {
                    return true;
                }
            }

            return false;
        }
    }
}
