// Models mm/util.c (v6.12): account_locked_vm and __account_locked_vm, which charge
// locked_vm against RLIMIT_MEMLOCK for drivers such as vfio; and pinned_vm, which drivers
// add to directly.
//
// Lock rules: locked_vm is written under mmap_lock held for writing: AccountLockedVmLocked
// asserts it, AccountLockedVm takes it. pinned_vm is atomic and needs no lock.

using Vfio.Kernel;
using Vfio.Platform.Proc;

namespace Vfio.Platform.Mm;

public sealed partial class MmStruct
{
    /// <summary>Adds <paramref name="delta"/> pages to pinned_vm.</summary>
    internal void AddPinnedVm(long delta) => Interlocked.Add(ref _pinnedVm, delta);

    /// <summary>
    /// __account_locked_vm(): charges (or uncharges) <paramref name="pages"/> to locked_vm,
    /// refusing with -ENOMEM past <paramref name="task"/>'s RLIMIT_MEMLOCK unless
    /// <paramref name="bypassRlimit"/>. Caller holds mmap_lock for writing.
    /// </summary>
    internal int AccountLockedVmLocked(long pages, bool inc, SimProcess task, bool bypassRlimit)
    {
        MmapLock.AssertHeldWrite();
        ArgumentNullException.ThrowIfNull(task);
        Kernel.Cost.Charge(CostOp.LockedVmAccount);
        if (inc)
        {
            if (!bypassRlimit && LockedVm + pages > task.Limits.MemlockPages)
            {
                return Errno.ENOMEM.Negative();
            }

            LockedVm += pages;
            return 0;
        }

        if (Warn.On(Kernel, pages > LockedVm, $"locked_vm underflow on mm {Id}: uncharging {pages} of {LockedVm} pages"))
        {
            LockedVm = 0;
            return 0;
        }

        LockedVm -= pages;
        return 0;
    }

    /// <summary>account_locked_vm(): as <see cref="AccountLockedVmLocked"/>, taking mmap_lock and using CAP_IPC_LOCK as the bypass.</summary>
    internal int AccountLockedVm(long pages, bool inc, SimProcess task)
    {
        ArgumentNullException.ThrowIfNull(task);
        if (pages == 0)
        {
            return 0;
        }

        MmapLock.DownWrite();
        try
        {
            return AccountLockedVmLocked(pages, inc, task, task.Credentials.Capable(Capabilities.CAP_IPC_LOCK));
        }
        finally
        {
            MmapLock.UpWrite();
        }
    }
}
