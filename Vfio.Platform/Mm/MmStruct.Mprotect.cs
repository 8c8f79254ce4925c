// Models mm/mprotect.c (v6.12): mprotect and the VMA flag change (mprotect_fixup) that
// mlock shares.
//
// Lock rules: Mprotect takes mmap_lock for writing; ChangeFlagsLocked needs it held for
// writing.

using Vfio.Kernel;

namespace Vfio.Platform.Mm;

public sealed partial class MmStruct
{
    /// <summary>
    /// mprotect() in do_mprotect_pkey()'s order: both PROT_GROWSDOWN and PROT_GROWSUP
    /// (EINVAL), a misaligned address (EINVAL), a zero length (0), a range that wraps once
    /// page aligned (ENOMEM), unknown protection bits (EINVAL); then under mmap_lock no
    /// mapping in the range or a hole at its start (ENOMEM), PROT_GROWS* on a mapping that
    /// does not grow (EINVAL), and per VMA in address order a write to a read-only shared
    /// file (EACCES), a hugetlb split (EINVAL), a hole (ENOMEM). A rejected call changes
    /// nothing (the kernel may already have changed the VMAs before the failing one).
    /// </summary>
    public int Mprotect(ulong addr, ulong length, Prot prot)
    {
        const Prot growsBoth = Prot.PROT_GROWSDOWN | Prot.PROT_GROWSUP;
        Prot grows = prot & growsBoth;
        prot &= ~growsBoth;
        if (grows == growsBoth || (addr & (PhysMem.PageSize - 1)) != 0)
        {
            return Errno.EINVAL.Negative();
        }

        if (length == 0)
        {
            return 0;
        }

        ulong end = addr + ((length + PhysMem.PageSize - 1) & ~(ulong)(PhysMem.PageSize - 1));
        if (end <= addr)
        {
            return Errno.ENOMEM.Negative();
        }

        // arch_validate_prot(): only PROT_READ, PROT_WRITE, PROT_EXEC and PROT_SEM.
        if ((prot & ~(Prot.PROT_READ | Prot.PROT_WRITE | Prot.PROT_EXEC | Prot.PROT_SEM)) != 0)
        {
            return Errno.EINVAL.Negative();
        }

        MmapLock.DownWrite();
        try
        {
            Vma? first = null;
            foreach (Vma v in _vmas)
            {
                if (v.End > addr && v.Start < end)
                {
                    first = v;
                    break;
                }
            }

            if (first is null || (grows != Prot.PROT_GROWSDOWN && first.Start > addr))
            {
                return Errno.ENOMEM.Negative();
            }

            if (grows != 0)
            {
                return Errno.EINVAL.Negative(); // No mapping here is VM_GROWSDOWN or VM_GROWSUP.
            }

            const VmFlags rwx = VmFlags.VM_READ | VmFlags.VM_WRITE | VmFlags.VM_EXEC;
            var change = new FlagChange(rwx, ToVmFlags(prot), SkipSpecial: false);
            ulong cursor = addr;
            foreach (Vma v in _vmas)
            {
                if (v.End <= addr || v.Start >= end)
                {
                    continue;
                }

                if (v.Start > cursor)
                {
                    return Errno.ENOMEM.Negative();
                }

                if ((v.Flags & VmFlags.VM_SHARED) != 0 && v.File is { CanWrite: false } && (prot & Prot.PROT_WRITE) != 0)
                {
                    return Errno.EACCES.Negative(); // VM_MAYWRITE is clear: the file is not open for writing.
                }

                if (change.Changes(v) && SplitsHugePage(v, addr, end))
                {
                    return Errno.EINVAL.Negative();
                }

                cursor = v.End;
            }

            if (cursor < end)
            {
                return Errno.ENOMEM.Negative();
            }

            ChangeFlagsLocked(addr, end, change);
            return 0;
        }
        finally
        {
            MmapLock.UpWrite();
        }
    }

    /// <summary>A change of VMA flags: newflags = (flags &amp; ~Clear) | Set; SkipSpecial leaves <see cref="IsUnlockable"/> VMAs alone.</summary>
    private readonly record struct FlagChange(VmFlags Clear, VmFlags Set, bool SkipSpecial)
    {
        public bool Changes(Vma v) => !(SkipSpecial && IsUnlockable(v)) && ((v.Flags & ~Clear) | Set) != v.Flags;
    }

    /// <summary>
    /// mprotect_fixup()/mlock_fixup() over [start, end): a VMA whose flags would not change
    /// is left as it is (not split); the others are split at the range's ends and changed.
    /// Returns the pages whose flags changed. Caller holds mmap_lock for writing.
    /// </summary>
    private long ChangeFlagsLocked(ulong start, ulong end, FlagChange change)
    {
        MmapLock.AssertHeldWrite();
        long pages = 0;
        for (int i = 0; i < _vmas.Count; i++)
        {
            Vma v = _vmas[i];
            if (v.End <= start || v.Start >= end || !change.Changes(v))
            {
                continue;
            }

            if (v.Start < start)
            {
                _vmas.Insert(i + 1, SplitAt(v, start));
                continue; // Change the right part next.
            }

            if (v.End > end)
            {
                _vmas.Insert(i + 1, SplitAt(v, end));
            }

            v.Flags = (v.Flags & ~change.Clear) | change.Set;
            pages += (long)(v.Length >> PhysMem.PageShift);
        }

        return pages;
    }
}
