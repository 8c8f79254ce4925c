// Models the IOTLB of an Intel VT-d remapping unit (drivers/iommu/intel/cache.c, v6.12,
// is the software side that invalidates it): a set-associative cache of translations
// tagged by (domain id, page number, page size). A superpage leaf is cached as one entry
// covering the superpage; a lookup probes the 4 KiB, 2 MiB and 1 GiB tags in turn,
// skipping sizes of which nothing is cached. Stale entries survive an unmap until the
// invalidation (range, domain or global), as on hardware.
//
// Locking: the hit path takes no lock. Each entry has a sequence number (a seqlock):
// a writer makes it odd, writes the entry and makes it even again; a reader that sees an
// odd or changed number treats the probe as a miss. _lock (iommu.iotlb_lock) serialises
// writers: fills, invalidations, replacement state and every counter but Hits/Misses
// (which are atomic). A fill carries the invalidation generation read before its walk and
// is dropped if an invalidation ran since: a translation walked before an unmap's flush
// can never be cached after it.
//
// The entry array is allocated by the first fill (published with a volatile write under
// _lock): until then every lookup misses and every invalidation has nothing to drop, as
// with an empty array, and a machine that never translates does not pay for it.

using System.Numerics;
using System.Runtime.CompilerServices;
using Vfio.Kernel;

namespace Vfio.Platform.Iommu.Hw;

/// <summary>The IOTLB of the emulated IOMMU.</summary>
public sealed class Iotlb
{
    /// <summary>Ways per set (fewer when the IOTLB has fewer entries).</summary>
    public const int MaxWays = 4;

    private static readonly int[] s_shifts = [12, 21, 30];

    private readonly KSpinLock _lock;
    private readonly int _capacity;
    private Entry[] _entries = [];       // allocated (capacity entries) by the first fill, under _lock
    private readonly byte[] _victim;     // per set: next way to replace (round robin); under _lock
    private readonly int _ways;
    private readonly int _setMask;
    private readonly long[] _live = new long[3]; // valid entries per size class; written under _lock
    private int[] _domainLive = new int[16];       // valid entries per domain id; under _lock

    private long _hits;
    private long _misses;
    private long _fills;
    private long _invalidations;
    private long _invalidatedEntries;
    private readonly CostModel _cost;
    private long _domainFlushes;
    private long _globalFlushes;
    private long _evictions;
    private long _generation;

    private struct Entry
    {
        public int Seq;
        public int Domain;
        public ulong Tag;   // (page number << 3) | (size class << 1) | 1; 0 = invalid
        public long Phys;   // physical base of the (super)page
        public int Prot;
    }

    /// <summary>An IOTLB of <paramref name="entries"/> entries (a power of two; 0 disables caching).</summary>
    public Iotlb(SimKernel kernel, int entries = 4096)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        ArgumentOutOfRangeException.ThrowIfNegative(entries);
        if (entries != 0 && !BitOperations.IsPow2(entries))
        {
            throw new ArgumentException($"IOTLB size {entries} is not a power of two", nameof(entries));
        }

        _lock = new KSpinLock(kernel, "iommu.iotlb_lock");
        _cost = kernel.Cost;
        _capacity = entries;
        _ways = Math.Min(MaxWays, entries);
        int sets = entries == 0 ? 0 : entries / _ways;
        _setMask = sets - 1;
        _victim = new byte[sets];
    }

    /// <summary>Capacity in entries (0: the IOTLB is disabled and every translation walks).</summary>
    public int Capacity => _capacity;

    /// <summary>Ways per set.</summary>
    public int Ways => _ways;

    /// <summary>Lookups that found a valid entry.</summary>
    public long Hits => Volatile.Read(ref _hits);

    /// <summary>Lookups that found none.</summary>
    public long Misses => Volatile.Read(ref _misses);

    /// <summary>Entries written after a walk.</summary>
    public long Fills => Volatile.Read(ref _fills);

    /// <summary>Range invalidations (page-selective, one per request however large).</summary>
    public long Invalidations => Volatile.Read(ref _invalidations);

    /// <summary>Entries dropped by invalidations and flushes of any kind.</summary>
    public long InvalidatedEntries => Volatile.Read(ref _invalidatedEntries);

    /// <summary>Domain-selective flushes.</summary>
    public long DomainFlushes => Volatile.Read(ref _domainFlushes);

    /// <summary>Global flushes.</summary>
    public long GlobalFlushes => Volatile.Read(ref _globalFlushes);

    /// <summary>Valid entries replaced by a fill because their set was full.</summary>
    public long Evictions => Volatile.Read(ref _evictions);

    /// <summary>Valid entries now.</summary>
    public long Count => Volatile.Read(ref _live[0]) + Volatile.Read(ref _live[1]) + Volatile.Read(ref _live[2]);

    /// <summary>Bumped by every invalidation: a fill walked before a bump is dropped.</summary>
    internal long Generation => Volatile.Read(ref _generation);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong TagOf(ulong iova, int sizeClass) => ((iova >> (12 + (9 * sizeClass))) << 3) | ((ulong)sizeClass << 1) | 1;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private int SetOf(int domainId, ulong tag) => (int)((tag >> 3) ^ (tag >> 1) ^ ((ulong)(uint)domainId * 0x9E3779B1UL)) & _setMask;

    /// <summary>
    /// Looks <paramref name="iova"/> up for <paramref name="domainId"/>: on a hit, the
    /// physical address (page base plus offset) and the cached protection. Lock-free.
    /// </summary>
    public bool Lookup(int domainId, ulong iova, out long phys, out IommuProt prot)
    {
        Entry[] entries = Volatile.Read(ref _entries);
        if (entries.Length != 0)
        {
            for (int c = 0; c < 3; c++)
            {
                if (c > 0 && Volatile.Read(ref _live[c]) == 0)
                {
                    continue;
                }

                if (Probe(entries, domainId, iova, c, out phys, out prot))
                {
                    Interlocked.Increment(ref _hits);
                    return true;
                }
            }
        }

        Interlocked.Increment(ref _misses);
        phys = 0;
        prot = IommuProt.None;
        return false;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool Probe(Entry[] entries, int domainId, ulong iova, int sizeClass, out long phys, out IommuProt prot)
    {
        ulong tag = TagOf(iova, sizeClass);
        int baseIndex = SetOf(domainId, tag) * _ways;
        for (int w = 0; w < _ways; w++)
        {
            ref Entry e = ref entries[baseIndex + w];
            int seq = Volatile.Read(ref e.Seq);
            if (Volatile.Read(ref e.Tag) != tag || Volatile.Read(ref e.Domain) != domainId || (seq & 1) != 0)
            {
                continue;
            }

            long basePa = Volatile.Read(ref e.Phys);
            int p = Volatile.Read(ref e.Prot);
            if (Volatile.Read(ref e.Seq) != seq)
            {
                continue;
            }

            phys = basePa + (long)(iova & ((1UL << (12 + (9 * sizeClass))) - 1));
            prot = (IommuProt)p;
            return true;
        }

        phys = 0;
        prot = IommuProt.None;
        return false;
    }

    /// <summary>
    /// Caches the translation of the leaf at <paramref name="leafLevel"/> (1-3) that maps
    /// <paramref name="iova"/> to <paramref name="phys"/>, unless an invalidation ran since
    /// <paramref name="generation"/> (read before the walk). Returns true when cached.
    /// </summary>
    internal bool Fill(int domainId, ulong iova, long phys, IommuProt prot, int leafLevel, long generation)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(domainId);
        ArgumentOutOfRangeException.ThrowIfLessThan(leafLevel, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(leafLevel, 3);
        if (_capacity == 0)
        {
            return false;
        }

        int c = leafLevel - 1;
        long pageMask = (1L << s_shifts[c]) - 1;
        ulong tag = TagOf(iova, c);
        int set = SetOf(domainId, tag);
        int baseIndex = set * _ways;
        _lock.Lock();
        try
        {
            if (Volatile.Read(ref _generation) != generation)
            {
                return false;
            }

            if (_entries.Length == 0)
            {
                Volatile.Write(ref _entries, new Entry[_capacity]);
            }

            int way = -1;
            for (int w = 0; w < _ways; w++)
            {
                ref Entry e = ref _entries[baseIndex + w];
                if (e.Tag == tag && e.Domain == domainId)
                {
                    way = w; // Another translator filled it first: refresh in place.
                    break;
                }

                if (way < 0 && e.Tag == 0)
                {
                    way = w;
                }
            }

            if (way < 0)
            {
                way = _victim[set];
                _victim[set] = (byte)((way + 1) % _ways);
                _evictions++;
            }

            ref Entry slot = ref _entries[baseIndex + way];
            if (slot.Tag != 0)
            {
                _live[(int)((slot.Tag >> 1) & 3)]--;
                _domainLive[slot.Domain]--;
            }

            WriteLocked(ref slot, domainId, tag, phys & ~pageMask, (int)prot);
            _live[c]++;
            if (domainId >= _domainLive.Length)
            {
                Array.Resize(ref _domainLive, Math.Max(domainId + 1, _domainLive.Length * 2));
            }

            _domainLive[domainId]++;
            _fills++;
            return true;
        }
        finally
        {
            _lock.Unlock();
        }
    }

    // WriteLocked and DropLocked run once per entry filled or dropped (a range invalidation
    // drops thousands), so they use the debug-only twin; the fill and invalidation entry
    // points around them take _lock themselves.
    private void WriteLocked(ref Entry e, int domainId, ulong tag, long phys, int prot)
    {
        _lock.DebugAssertHeld();
        int seq = e.Seq;
        Interlocked.Exchange(ref e.Seq, seq + 1);
        e.Domain = domainId;
        e.Tag = tag;
        e.Phys = phys;
        e.Prot = prot;
        Volatile.Write(ref e.Seq, seq + 2);
    }

    private void DropLocked(ref Entry e)
    {
        _lock.DebugAssertHeld();
        _live[(int)((e.Tag >> 1) & 3)]--;
        _domainLive[e.Domain]--;
        _invalidatedEntries++;
        WriteLocked(ref e, 0, 0, 0, 0);
    }

    /// <summary>
    /// Page-selective invalidation: drops every entry of <paramref name="domainId"/> that
    /// overlaps [<paramref name="start"/>, <paramref name="end"/>] (inclusive), whatever
    /// its page size.
    /// </summary>
    public void InvalidateRange(int domainId, ulong start, ulong end)
    {
        if (end < start)
        {
            throw new ArgumentException($"IOTLB invalidation of an empty range [0x{start:x}, 0x{end:x}]", nameof(end));
        }

        _lock.Lock();
        long before = _invalidatedEntries;
        try
        {
            Interlocked.Increment(ref _generation);
            _invalidations++;
            if (!HasEntriesLocked(domainId))
            {
                return;
            }

            ulong pages4K = (end >> 12) - (start >> 12) + 1;
            if (pages4K > (ulong)(_setMask + 1))
            {
                // Cheaper to look at every entry than to probe every page.
                for (int i = 0; i < _entries.Length; i++)
                {
                    ref Entry e = ref _entries[i];
                    if (e.Tag != 0 && e.Domain == domainId && Overlaps(e.Tag, start, end))
                    {
                        DropLocked(ref e);
                    }
                }

                return;
            }

            for (int c = 0; c < 3; c++)
            {
                if (_live[c] == 0)
                {
                    continue;
                }

                int shift = s_shifts[c];
                for (ulong page = start >> shift; page <= end >> shift; page++)
                {
                    ulong tag = TagOf(page << shift, c);
                    int baseIndex = SetOf(domainId, tag) * _ways;
                    for (int w = 0; w < _ways; w++)
                    {
                        ref Entry e = ref _entries[baseIndex + w];
                        if (e.Tag == tag && e.Domain == domainId)
                        {
                            DropLocked(ref e);
                        }
                    }
                }
            }
        }
        finally
        {
            long dropped = _invalidatedEntries - before;
            _lock.Unlock();
            ChargeInvalidation(dropped);
        }
    }

    private bool HasEntriesLocked(int domainId)
    {
        _lock.AssertHeld();
        return (uint)domainId < (uint)_domainLive.Length && _domainLive[domainId] != 0;
    }

    private static bool Overlaps(ulong tag, ulong start, ulong end)
    {
        int shift = s_shifts[(int)((tag >> 1) & 3)];
        ulong first = (tag >> 3) << shift;
        ulong last = first + ((1UL << shift) - 1);
        return first <= end && last >= start;
    }

    /// <summary>Domain-selective flush: drops every entry of <paramref name="domainId"/>.</summary>
    public void FlushDomain(int domainId)
    {
        _lock.Lock();
        long before = _invalidatedEntries;
        try
        {
            Interlocked.Increment(ref _generation);
            _domainFlushes++;
            if (!HasEntriesLocked(domainId))
            {
                return;
            }

            for (int i = 0; i < _entries.Length; i++)
            {
                ref Entry e = ref _entries[i];
                if (e.Tag != 0 && e.Domain == domainId)
                {
                    DropLocked(ref e);
                }
            }
        }
        finally
        {
            long dropped = _invalidatedEntries - before;
            _lock.Unlock();
            ChargeInvalidation(dropped);
        }
    }

    /// <summary>Global flush: drops every entry.</summary>
    public void FlushAll()
    {
        _lock.Lock();
        long before = _invalidatedEntries;
        try
        {
            Interlocked.Increment(ref _generation);
            _globalFlushes++;
            for (int i = 0; i < _entries.Length; i++)
            {
                ref Entry e = ref _entries[i];
                if (e.Tag != 0)
                {
                    DropLocked(ref e);
                }
            }
        }
        finally
        {
            long dropped = _invalidatedEntries - before;
            _lock.Unlock();
            ChargeInvalidation(dropped);
        }
    }

    /// <summary>One invalidation command for the cost model: the command, and the entries it dropped.</summary>
    private void ChargeInvalidation(long dropped)
    {
        _cost.Charge(CostOp.IotlbFlush);
        _cost.Charge(CostOp.IotlbInvalidate, dropped);
    }
}
