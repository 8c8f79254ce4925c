// Accounting invariants of the simulated memory, checkable after any operation:
// every frame's reference count equals the page-table entries mapping it plus its pins;
// the global pin counters equal the pins held; the hugetlb pools add up; no mm has a
// negative locked_vm. A snapshot compares the counters a rejected call must not change.

using Vfio.Kernel;
using Vfio.Platform.Proc;

namespace Vfio.Platform.Mm;

/// <summary>Counters that a rejected operation must leave unchanged.</summary>
/// <param name="UsedPages">4 KiB frames in use.</param>
/// <param name="PinnedPages">Pages pinned right now.</param>
/// <param name="HugePagesFree2M">Free 2 MiB hugetlb pages.</param>
/// <param name="HugePagesFree1G">Free 1 GiB hugetlb pages.</param>
/// <param name="LockedVm">locked_vm per pid.</param>
/// <param name="PinnedVm">pinned_vm per pid.</param>
public sealed record MemorySnapshot(
    long UsedPages,
    long PinnedPages,
    int HugePagesFree2M,
    int HugePagesFree1G,
    IReadOnlyDictionary<int, long> LockedVm,
    IReadOnlyDictionary<int, long> PinnedVm)
{
    /// <summary>Takes a snapshot of <paramref name="machine"/>.</summary>
    public static MemorySnapshot Take(SimMachine machine)
    {
        ArgumentNullException.ThrowIfNull(machine);
        var locked = new SortedDictionary<int, long>();
        var pinned = new SortedDictionary<int, long>();
        foreach (SimProcess p in machine.Processes)
        {
            locked[p.Pid] = p.Mm.LockedVm;
            pinned[p.Pid] = p.Mm.PinnedVm;
        }

        PhysMem mem = machine.Memory;
        return new MemorySnapshot(mem.UsedPages, mem.PinnedPages, mem.HugePagesFree(2L << 20), mem.HugePagesFree(1L << 30), locked, pinned);
    }

    /// <summary>Equal counters (record equality would compare the dictionaries by reference).</summary>
    public bool SameAs(MemorySnapshot other)
        => other is not null
        && UsedPages == other.UsedPages && PinnedPages == other.PinnedPages
        && HugePagesFree2M == other.HugePagesFree2M && HugePagesFree1G == other.HugePagesFree1G
        && LockedVm.SequenceEqual(other.LockedVm) && PinnedVm.SequenceEqual(other.PinnedVm);

    /// <inheritdoc/>
    public override string ToString()
        => $"used={UsedPages} pinned={PinnedPages} huge2M_free={HugePagesFree2M} huge1G_free={HugePagesFree1G} " +
           $"locked_vm=[{string.Join(", ", LockedVm.Select(kv => $"{kv.Key}:{kv.Value}"))}] pinned_vm=[{string.Join(", ", PinnedVm.Select(kv => $"{kv.Key}:{kv.Value}"))}]";
}

/// <summary>Checks of the memory accounting invariants.</summary>
public static class MemoryInvariants
{
    /// <summary>Every violation found, described; empty when the accounting is consistent.</summary>
    public static IReadOnlyList<string> Check(SimMachine machine)
    {
        ArgumentNullException.ThrowIfNull(machine);
        PhysMem mem = machine.Memory;
        var problems = new List<string>();

        // Count the page-table references to every folio, across every live address space.
        var mappings = new Dictionary<long, long>();
        foreach (SimProcess p in machine.Processes)
        {
            if (p.Mm.LockedVm < 0)
            {
                problems.Add($"pid {p.Pid}: locked_vm is negative ({p.Mm.LockedVm})");
            }

            foreach (Vma v in p.Mm.Vmas)
            {
                if (v.IsPfnMap)
                {
                    continue;
                }

                foreach ((long _, long pte) in v.Ptes.Present())
                {
                    if ((pte & Vma.PteZero) != 0)
                    {
                        continue;
                    }

                    long pfn = pte >> 12;
                    mappings[pfn] = mappings.GetValueOrDefault(pfn) + 1;
                }
            }
        }

        mem.Lock.Lock();
        try
        {
            (long used, long pinSum) = mem.CountLocked();
            if (pinSum != mem.PinnedPages)
            {
                problems.Add($"pins held by frames ({pinSum}) differ from nr_foll_pin_acquired - released ({mem.PinnedPages})");
            }

            if (used != mem.UsedPages)
            {
                problems.Add($"frames with references ({used}) differ from the allocator's count ({mem.UsedPages})");
            }

            foreach ((long pfn, long maps) in mappings)
            {
                int refs = mem.HugePoolOf(pfn) is { } pool ? pool.Meta(pfn).Ref : mem.MetaRef(pfn).Ref;
                int pins = mem.HugePoolOf(pfn) is { } pool2 ? pool2.Meta(pfn).Pin : mem.MetaRef(pfn).Pin;
                if (refs != maps + pins)
                {
                    problems.Add($"pfn 0x{pfn:x}: refcount {refs} != {maps} mapping(s) + {pins} pin(s)");
                }
            }

            foreach (HugePool pool in mem.Pools)
            {
                if (pool.Free + pool.InUse() != pool.Count)
                {
                    problems.Add($"hugetlb {pool.PageBytes >> 20} MiB pool: free {pool.Free} + in use {pool.InUse()} != {pool.Count}");
                }

                if (pool.Reserved > pool.Free)
                {
                    problems.Add($"hugetlb {pool.PageBytes >> 20} MiB pool: {pool.Reserved} reserved but only {pool.Free} free");
                }
            }
        }
        finally
        {
            mem.Lock.Unlock();
        }

        return problems;
    }

    /// <summary>Throws <see cref="InvariantViolationException"/> listing every violation.</summary>
    public static void Assert(SimMachine machine)
    {
        IReadOnlyList<string> problems = Check(machine);
        if (problems.Count > 0)
        {
            throw new InvariantViolationException("memory accounting is inconsistent:\n  " + string.Join("\n  ", problems));
        }
    }
}
