// Models struct vm_area_struct and struct vm_operations_struct (include/linux/mm_types.h,
// include/linux/mm.h, v6.12) and the page table under one VMA.
//
// Page tables are kept per VMA, one entry per page of the VMA's page size (4 KiB, or the
// huge page size for hugetlb), in 512-entry chunks allocated on first use, so a large
// sparse mapping costs nothing until touched. An entry is (pfn << 12) | flags. A huge
// PFNMAP leaf (vmf_insert_pfn_pmd/pud) is kept as the run of 4 KiB entries it covers, each
// marked with the leaf's level, so walks stay per page while the level stays visible.

using Vfio.Kernel;
using Vfio.Platform.Fs;

namespace Vfio.Platform.Mm;

/// <summary>vm_flags bits (values as in include/linux/mm.h).</summary>
[Flags]
public enum VmFlags : ulong
{
    None = 0,
    VM_READ = 0x1,
    VM_WRITE = 0x2,
    VM_EXEC = 0x4,
    VM_SHARED = 0x8,
    VM_PFNMAP = 0x400,
    VM_LOCKED = 0x2000,
    VM_IO = 0x4000,
    VM_DONTCOPY = 0x20000,
    VM_DONTEXPAND = 0x40000,
    VM_HUGETLB = 0x400000,
    VM_DONTDUMP = 0x4000000,
}

/// <summary>What a fault handler reports (VM_FAULT_*).</summary>
public enum VmFault
{
    /// <summary>VM_FAULT_NOPAGE: the handler installed the page table entry.</summary>
    NoPage,
    /// <summary>VM_FAULT_SIGBUS: no page can be provided (the access gets SIGBUS, GUP gets -EFAULT).</summary>
    SigBus,
    /// <summary>VM_FAULT_OOM.</summary>
    Oom,
    /// <summary>VM_FAULT_FALLBACK: a huge fault cannot map this order; the mm retries with a smaller one.</summary>
    Fallback,
}

/// <summary>vm_operations_struct: how a driver's mapping behaves.</summary>
public interface IVmOperations
{
    /// <summary>-&gt;open(): a copy of the VMA was made (fork, split).</summary>
    void Open(Vma vma)
    {
    }

    /// <summary>-&gt;close(): the VMA is going away.</summary>
    void Close(Vma vma)
    {
    }

    /// <summary>-&gt;fault(): provide the page at <paramref name="address"/>, typically with <see cref="Vma.InsertPfn"/>.</summary>
    VmFault Fault(Vma vma, ulong address, bool write);

    /// <summary>
    /// -&gt;huge_fault(): map a leaf of <paramref name="order"/> (9: 2 MiB PMD, 18: 1 GiB PUD)
    /// around <paramref name="address"/> of a PFNMAP VMA with <see cref="Vma.InsertPfnLeaf"/>,
    /// or answer <see cref="VmFault.Fallback"/> (the default: no huge_fault op).
    /// </summary>
    VmFault HugeFault(Vma vma, ulong address, int order, bool write) => VmFault.Fallback;
}

/// <summary>vm_area_struct: one mapping of an address space.</summary>
public sealed class Vma
{
    internal const long PtePresent = 1;
    internal const long PteZero = 4;
    internal const long PteLeafPmd = 8;
    internal const long PteLeafPud = 16;

    /// <summary>PMD_ORDER: a 2 MiB leaf.</summary>
    public const int PmdOrder = 9;

    /// <summary>PUD_ORDER: a 1 GiB leaf.</summary>
    public const int PudOrder = 18;

    internal Vma(MmStruct mm, ulong start, ulong end, VmFlags flags, int pageShift)
    {
        Mm = mm;
        Start = start;
        End = end;
        Flags = flags;
        PageShift = pageShift;
        Ptes = new PteTable((long)((end - start) >> pageShift));
    }

    /// <summary>The address space.</summary>
    public MmStruct Mm { get; }

    /// <summary>vm_start.</summary>
    public ulong Start { get; internal set; }

    /// <summary>vm_end (exclusive).</summary>
    public ulong End { get; internal set; }

    /// <summary>vm_flags.</summary>
    public VmFlags Flags { get; internal set; }

    /// <summary>log2 of the page size mapped here: 12, or 21/30 for hugetlb.</summary>
    public int PageShift { get; }

    /// <summary>vm_pgoff: offset into the file, in 4 KiB pages.</summary>
    public ulong PgOff { get; internal set; }

    /// <summary>vm_file: the mapped file, if any.</summary>
    public SimFile? File { get; internal set; }

    /// <summary>vm_ops.</summary>
    public IVmOperations? Ops { get; set; }

    /// <summary>vm_private_data.</summary>
    public object? PrivateData { get; set; }

    internal PteTable Ptes { get; set; }

    internal HugePool? Pool { get; set; }

    // Huge pages promised to this VMA at mmap() and not yet faulted in.
    internal int HugeReserved { get; set; }

    /// <summary>The VMA's length in bytes.</summary>
    public ulong Length => End - Start;

    /// <summary>True for anonymous memory (no file, not PFNMAP).</summary>
    public bool IsAnonymous => File is null && (Flags & (VmFlags.VM_PFNMAP | VmFlags.VM_HUGETLB)) == 0;

    /// <summary>True for hugetlb memory.</summary>
    public bool IsHugetlb => (Flags & VmFlags.VM_HUGETLB) != 0;

    /// <summary>True for a VM_PFNMAP mapping (device memory).</summary>
    public bool IsPfnMap => (Flags & VmFlags.VM_PFNMAP) != 0;

    internal long Index(ulong addr) => (long)((addr - Start) >> PageShift);

    /// <summary>
    /// vmf_insert_pfn(): maps <paramref name="pfn"/> at <paramref name="address"/> of a PFNMAP
    /// VMA. Returns 0, or -EBUSY when the entry is already present (the kernel then returns
    /// VM_FAULT_NOPAGE: a racing fault mapped it first). Safe against concurrent inserts.
    /// </summary>
    public int InsertPfn(ulong address, long pfn)
    {
        CheckPfnMapAddress(address);
        return Ptes.TrySet(Index(address), (pfn << 12) | PtePresent) ? 0 : Errno.EBUSY.Negative();
    }

    /// <summary>
    /// vmf_insert_pfn_pmd() / vmf_insert_pfn_pud(): maps one leaf of <paramref name="order"/>
    /// (<see cref="PmdOrder"/> or <see cref="PudOrder"/>) from <paramref name="pfn"/> at the
    /// leaf-aligned <paramref name="address"/>. 0, -EINVAL for a misaligned or overhanging
    /// leaf, -EBUSY when any page of it is already mapped (nothing changes then).
    /// </summary>
    public int InsertPfnLeaf(ulong address, long pfn, int order)
    {
        CheckPfnMapAddress(address);
        if (order is not (PmdOrder or PudOrder))
        {
            throw new ArgumentOutOfRangeException(nameof(order), order, "a huge PFNMAP leaf is a PMD (9) or a PUD (18)");
        }

        ulong bytes = (ulong)PhysMem.PageSize << order;
        long pages = 1L << order;
        if ((address & (bytes - 1)) != 0 || address + bytes > End || (pfn & (pages - 1)) != 0)
        {
            return Errno.EINVAL.Negative();
        }

        long first = Index(address);
        long level = order == PmdOrder ? PteLeafPmd : PteLeafPud;

        // The leaf is one page-table slot in the kernel, set under the page-table lock
        // (pud_lock/pmd_lock): claim its pages under that lock, so two faults installing
        // overlapping leaves see each other's whole leaf, and give them back if a racing
        // 4 KiB fault got any of them first.
        Mm.PageTableLock.DownWrite();
        try
        {
            for (long i = 0; i < pages; i++)
            {
                if (!Ptes.TrySet(first + i, ((pfn + i) << 12) | PtePresent | level))
                {
                    for (long j = 0; j < i; j++)
                    {
                        Ptes.Set(first + j, 0);
                    }

                    return Errno.EBUSY.Negative();
                }
            }

            return 0;
        }
        finally
        {
            Mm.PageTableLock.UpWrite();
        }
    }

    /// <summary>
    /// remap_pfn_range(): maps [<paramref name="address"/>, +<paramref name="bytes"/>) to frames
    /// from <paramref name="pfn"/> at once. 0, or -EBUSY at the first page already mapped
    /// (the pages before it stay mapped, as the kernel leaves them for the caller to zap).
    /// </summary>
    public int RemapPfnRange(ulong address, long pfn, ulong bytes)
    {
        for (ulong off = 0; off < bytes; off += PhysMem.PageSize)
        {
            if (!Ptes.TrySet(Index(address + off), ((pfn + (long)(off >> PhysMem.PageShift)) << 12) | PtePresent))
            {
                return Errno.EBUSY.Negative();
            }
        }

        return 0;
    }

    /// <summary>zap_vma_ptes() for a PFNMAP VMA: removes the entries of [<paramref name="address"/>, +<paramref name="bytes"/>) so the next access faults.</summary>
    public void ZapPfnRange(ulong address, ulong bytes)
    {
        if (!IsPfnMap)
        {
            throw new InvalidOperationException("zap of a VMA without VM_PFNMAP: unmap anonymous memory with munmap");
        }

        // The page-table lock for write: no CPU access is half-way through an entry it removes.
        Mm.PageTableLock.DownWrite();
        try
        {
            if (address <= Start && address + bytes >= End)
            {
                Ptes.Clear();
                return;
            }

            for (ulong a = address; a < address + bytes && a < End; a += PhysMem.PageSize)
            {
                Ptes.Set(Index(a), 0);
            }
        }
        finally
        {
            Mm.PageTableLock.UpWrite();
        }
    }

    /// <summary>The number of pages mapped now (present page-table entries).</summary>
    public int MappedPages => Ptes.CountPresent();

    /// <summary>The size in bytes of the leaf mapping <paramref name="address"/>: 4 KiB, 2 MiB or 1 GiB; 0 when nothing is mapped there.</summary>
    public long LeafSizeAt(ulong address)
    {
        long pte = Ptes.Get(Index(address));
        return pte == 0 ? 0 : (pte & PteLeafPud) != 0 ? 1L << 30 : (pte & PteLeafPmd) != 0 ? 1L << 21 : 1L << PageShift;
    }

    private void CheckPfnMapAddress(ulong address)
    {
        if (!IsPfnMap)
        {
            throw new InvalidOperationException("vmf_insert_pfn on a VMA without VM_PFNMAP");
        }

        if (address < Start || address >= End)
        {
            throw new ArgumentOutOfRangeException(nameof(address), $"0x{address:x} is outside the VMA [0x{Start:x}, 0x{End:x})");
        }
    }

    /// <inheritdoc/>
    public override string ToString()
        => $"{Start:x12}-{End:x12} {((Flags & VmFlags.VM_READ) != 0 ? 'r' : '-')}{((Flags & VmFlags.VM_WRITE) != 0 ? 'w' : '-')}{((Flags & VmFlags.VM_EXEC) != 0 ? 'x' : '-')}{((Flags & VmFlags.VM_SHARED) != 0 ? 's' : 'p')} " +
           (IsHugetlb ? $"hugetlb {1L << PageShift >> 20}M" : IsPfnMap ? $"pfnmap {File?.Path}" : File is not null ? File.Path : "anon");
}

/// <summary>The page table of one VMA: entries in 512-entry chunks allocated on first write.</summary>
internal sealed class PteTable
{
    public const int ChunkShift = 9;
    public const int ChunkSize = 1 << ChunkShift;
    private readonly long[]?[] _chunks;

    public PteTable(long entries)
    {
        Entries = entries;
        _chunks = new long[]?[(entries + ChunkSize - 1) >> ChunkShift];
    }

    public long Entries { get; }

    public long Get(long i)
    {
        long[]? c = _chunks[i >> ChunkShift];
        return c is null ? 0 : c[i & (ChunkSize - 1)];
    }

    public void Set(long i, long pte) => Volatile.Write(ref ChunkFor(i)[i & (ChunkSize - 1)], pte);

    /// <summary>Sets entry <paramref name="i"/> only if it is empty (the page-table lock's pte_none check); false when it was present.</summary>
    public bool TrySet(long i, long pte) => Interlocked.CompareExchange(ref ChunkFor(i)[i & (ChunkSize - 1)], pte, 0) == 0;

    /// <summary>The chunk holding entry <paramref name="i"/>, allocated if needed (racing allocators agree on one chunk).</summary>
    public long[] ChunkFor(long i)
    {
        long c = i >> ChunkShift;
        return _chunks[c] ?? Interlocked.CompareExchange(ref _chunks[c], new long[ChunkSize], null) ?? _chunks[c]!;
    }

    /// <summary>True when entries [<paramref name="from"/>, +<paramref name="count"/>) are all empty; never-touched chunks are skipped whole.</summary>
    public bool RangeEmpty(long from, long count)
    {
        long end = from + count;
        for (long i = from; i < end;)
        {
            long[]? c = _chunks[i >> ChunkShift];
            long chunkEnd = Math.Min(end, ((i >> ChunkShift) + 1) << ChunkShift);
            if (c is not null)
            {
                for (; i < chunkEnd; i++)
                {
                    if (Volatile.Read(ref c[i & (ChunkSize - 1)]) != 0)
                    {
                        return false;
                    }
                }
            }

            i = chunkEnd;
        }

        return true;
    }

    /// <summary>How many chunks of <see cref="ChunkSize"/> entries the table spans.</summary>
    public int ChunkCount => _chunks.Length;

    /// <summary>Chunk <paramref name="c"/>, or null when none of its entries was ever set; for chunk-wise loops.</summary>
    public long[]? ChunkAt(int c) => _chunks[c];

    /// <summary>A table for entries [<paramref name="from"/>, <paramref name="to"/>) of this one (VMA split). Walks only the allocated chunks.</summary>
    public PteTable Slice(long from, long to)
    {
        var t = new PteTable(to - from);
        int lastChunk = (int)((to - 1) >> ChunkShift);
        for (int c = (int)(from >> ChunkShift); c <= lastChunk && to > from; c++)
        {
            long[]? chunk = _chunks[c];
            if (chunk is null)
            {
                continue;
            }

            long chunkStart = (long)c << ChunkShift;
            int j = (int)(Math.Max(from, chunkStart) - chunkStart);
            int jEnd = (int)(Math.Min(to, chunkStart + ChunkSize) - chunkStart);
            for (; j < jEnd; j++)
            {
                if (chunk[j] != 0)
                {
                    t.Set(chunkStart + j - from, chunk[j]);
                }
            }
        }

        return t;
    }

    /// <summary>The number of non-empty entries, counted chunk by chunk.</summary>
    public int CountPresent()
    {
        int n = 0;
        foreach (long[]? chunk in _chunks)
        {
            if (chunk is null)
            {
                continue;
            }

            foreach (long pte in chunk)
            {
                if (pte != 0)
                {
                    n++;
                }
            }
        }

        return n;
    }

    /// <summary>Drops every entry (the chunks go; nothing is allocated).</summary>
    public void Clear() => Array.Clear(_chunks);

    public IEnumerable<(long Index, long Pte)> Present()
    {
        for (int c = 0; c < _chunks.Length; c++)
        {
            long[]? chunk = _chunks[c];
            if (chunk is null)
            {
                continue;
            }

            for (int j = 0; j < chunk.Length; j++)
            {
                if (chunk[j] != 0)
                {
                    yield return (((long)c << ChunkShift) + j, chunk[j]);
                }
            }
        }
    }
}
