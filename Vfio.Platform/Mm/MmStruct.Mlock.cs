// Models mm/mlock.c (v6.12): mlock, munlock, can_do_mlock and the VM_LOCKED accounting
// (locked_vm, RLIMIT_MEMLOCK).
//
// Lock rules: Mlock and Munlock take mmap_lock for writing, which also guards locked_vm;
// populating a locked range faults its pages in under it (the zone lock inside).

using Vfio.Kernel;
using Vfio.Platform.Proc;

namespace Vfio.Platform.Mm;

public sealed partial class MmStruct
{
    /// <summary>can_do_mlock(): a non-zero RLIMIT_MEMLOCK or CAP_IPC_LOCK.</summary>
    public static bool CanDoMlock(SimProcess p)
        => p.Limits.MemlockBytes != 0 || p.Credentials.Capable(Capabilities.CAP_IPC_LOCK);

    /// <summary>mlock(): locks and populates the range; 0, -EPERM (no mlock allowed), -ENOMEM (holes, or over RLIMIT_MEMLOCK), -EINVAL (the range wraps).</summary>
    public int Mlock(ulong addr, ulong length, SimProcess caller)
    {
        ArgumentNullException.ThrowIfNull(caller);
        return MlockRange(addr, length, caller);
    }

    /// <summary>munlock(): 0, -ENOMEM when the range is not fully mapped, -EINVAL when it wraps.</summary>
    public int Munlock(ulong addr, ulong length) => MlockRange(addr, length, null);

    /// <summary>
    /// do_mlock() (<paramref name="caller"/> set) and munlock(): the range is page aligned
    /// as the kernel does it (the length grows by the offset in the page, wrapping as size_t
    /// arithmetic does). mlock checks can_do_mlock (EPERM), then RLIMIT_MEMLOCK against
    /// the whole length plus locked_vm less what is already locked in the range (ENOMEM),
    /// then apply_vma_lock_flags: a wrapping range (EINVAL), an empty one (0), holes (ENOMEM).
    /// mlock_fixup() leaves VM_SPECIAL and hugetlb VMAs alone (no VM_LOCKED, no charge, no
    /// split) and splits only VMAs whose flags change. mlock then populates the range.
    /// </summary>
    private int MlockRange(ulong addr, ulong length, SimProcess? caller)
    {
        bool lockIt = caller is not null;
        if (lockIt && !CanDoMlock(caller!))
        {
            return Errno.EPERM.Negative();
        }

        ulong pageMask = PhysMem.PageSize - 1;
        ulong len = (length + (addr & pageMask) + pageMask) & ~pageMask;
        ulong start = addr & ~pageMask;
        MmapLock.DownWrite();
        try
        {
            if (lockIt && !caller!.Credentials.Capable(Capabilities.CAP_IPC_LOCK))
            {
                ulong locked = (len >> PhysMem.PageShift) + (ulong)LockedVm;
                if (locked > (ulong)caller.Limits.MemlockPages)
                {
                    locked -= (ulong)CountMlockedPagesLocked(start, len);
                    if (locked > (ulong)caller.Limits.MemlockPages)
                    {
                        return Errno.ENOMEM.Negative();
                    }
                }
            }

            ulong end = start + len;
            if (end < start)
            {
                return Errno.EINVAL.Negative();
            }

            if (end == start)
            {
                return 0;
            }

            if (!CoveredLocked(start, end))
            {
                return Errno.ENOMEM.Negative();
            }

            var change = new FlagChange(VmFlags.VM_LOCKED, lockIt ? VmFlags.VM_LOCKED : 0, SkipSpecial: true);
            if (CheckHugetlbSplitLocked(start, end, change) is int bad)
            {
                return bad;
            }

            long pages = ChangeFlagsLocked(start, end, change);
            LockedVm += lockIt ? pages : -pages;
            if (lockIt)
            {
                // __mm_populate() over the whole range, skipping VM_IO/VM_PFNMAP VMAs. A
                // failure is reported through __mlock_posix_error_return() (EFAULT → ENOMEM,
                // ENOMEM → EAGAIN); as in the kernel the VMAs stay locked.
                foreach (Vma v in _vmas)
                {
                    if (v.Start < end && start < v.End)
                    {
                        int err = PopulateLocked(v, Math.Max(start, v.Start), Math.Min(end, v.End));
                        if (err != 0)
                        {
                            return err == Errno.EFAULT.Negative() ? Errno.ENOMEM.Negative()
                                : err == Errno.ENOMEM.Negative() ? Errno.EAGAIN.Negative() : err;
                        }
                    }
                }
            }

            return 0;
        }
        finally
        {
            MmapLock.UpWrite();
        }
    }

    private bool CoveredLocked(ulong start, ulong end)
    {
        MmapLock.AssertHeld();
        ulong cursor = start;
        foreach (Vma v in _vmas)
        {
            if (v.End <= cursor)
            {
                continue;
            }

            if (v.Start > cursor)
            {
                return false;
            }

            cursor = v.End;
            if (cursor >= end)
            {
                return true;
            }
        }

        return cursor >= end;
    }

    /// <summary>count_mm_mlocked_page_nr(): pages of VM_LOCKED VMAs within [start, start + len).</summary>
    private long CountMlockedPagesLocked(ulong start, ulong len)
    {
        MmapLock.AssertHeld();
        ulong end = start + len < start ? ulong.MaxValue : start + len;
        long count = 0;
        foreach (Vma v in _vmas)
        {
            if ((v.Flags & VmFlags.VM_LOCKED) != 0 && v.Start < end && start < v.End)
            {
                count += (long)((Math.Min(end, v.End) - Math.Max(start, v.Start)) >> PhysMem.PageShift);
            }
        }

        return count;
    }

    /// <summary>VMAs that mlock leaves alone: VM_SPECIAL (VM_IO, VM_DONTEXPAND, VM_PFNMAP) and hugetlb.</summary>
    private static bool IsUnlockable(Vma v)
        => (v.Flags & (VmFlags.VM_IO | VmFlags.VM_DONTEXPAND | VmFlags.VM_PFNMAP | VmFlags.VM_HUGETLB)) != 0;
}
