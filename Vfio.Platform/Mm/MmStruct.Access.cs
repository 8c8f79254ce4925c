// Models a user-mode CPU load or store (arch/x86/mm/fault.c do_user_addr_fault, with the
// page walk and TLB the hardware does, v6.12): walk the page table; on a miss take the fault
// through handle_mm_fault (the driver's ->huge_fault/->fault for PFNMAP); a fault that gives
// VM_FAULT_SIGBUS raises SIGBUS on the accessing thread, an address with no VMA or without
// the permission raises SIGSEGV. A present entry is accessed as the CPU does: one bus access
// of the access width, so an 8-byte load of an MMIO mapping is one 8-byte device read.
//
// Lock rules: mmap_lock (read) around the walk and the fault, then the page-table lock
// (read) around the final walk and the access. Zapping PFNMAP entries (Vma.ZapPfnRange)
// takes the page-table lock for write: an access either completes before a zap or sees the
// empty entry, as a TLB shootdown guarantees on a real machine.

using Vfio.Kernel;

namespace Vfio.Platform.Mm;

public sealed partial class MmStruct
{
    private static readonly LockClass s_ptlClass = LockClass.Get("mm.page_table_lock");

    /// <summary>The page-table lock (split ptlocks in the kernel): accesses read, zaps of PFNMAP entries write.</summary>
    internal RwSemaphore PageTableLock { get; }

    /// <summary>
    /// A user-mode load (or store, when <paramref name="write"/>) of <paramref name="data"/>.Length
    /// bytes (1, 2, 4 or 8, naturally aligned) at <paramref name="addr"/> by the current task.
    /// Returns 0, or the signal the access raised: <see cref="Signals.SIGSEGV"/> (no VMA, no
    /// permission, a fault that found nothing to map), <see cref="Signals.SIGBUS"/> (the
    /// driver's fault answered VM_FAULT_SIGBUS). A load that raised a signal leaves
    /// <paramref name="data"/> unchanged.
    /// </summary>
    public int UserAccess(ulong addr, Span<byte> data, bool write)
    {
        int width = data.Length;
        if (width is not (1 or 2 or 4 or 8) || (addr & (ulong)(width - 1)) != 0)
        {
            throw new ArgumentException($"a CPU access is 1, 2, 4 or 8 naturally aligned bytes (got {width} at 0x{addr:x})", nameof(data));
        }

        MmapLock.DownRead();
        try
        {
            Vma? vma = FindVmaLocked(addr);
            if (vma is null || (write ? (vma.Flags & VmFlags.VM_WRITE) == 0 : (vma.Flags & (VmFlags.VM_READ | VmFlags.VM_WRITE)) == 0))
            {
                return Raise(Signals.SIGSEGV, addr, write);
            }

            // A racing zap may empty the entry between the fault and the access: fault again.
            while (true)
            {
                long pte = vma.Ptes.Get(vma.Index(addr));
                if (pte == 0 || (write && (pte & Vma.PteZero) != 0))
                {
                    int sig = UserFaultLocked(vma, addr, write);
                    if (sig != 0)
                    {
                        return Raise(sig, addr, write);
                    }
                }

                PageTableLock.DownRead();
                try
                {
                    pte = vma.Ptes.Get(vma.Index(addr));
                    if (pte == 0 || (write && (pte & Vma.PteZero) != 0))
                    {
                        continue;
                    }

                    long pfn = (pte >> 12) + (vma.IsHugetlb ? (long)((addr & ((1UL << vma.PageShift) - 1)) >> PhysMem.PageShift) : 0);
                    long phys = (pfn << PhysMem.PageShift) | (long)(addr & (PhysMem.PageSize - 1));
                    bool claimed = write ? Mem.WriteClaimed(phys, data) : Mem.ReadClaimed(phys, data);
                    if (!claimed)
                    {
                        Kernel.Log.Err($"mce: [Hardware Error]: Unsupported Request: CPU {(write ? "write" : "read")} of {width} bytes at physical 0x{phys:x} (user 0x{addr:x}) reached no device");
                    }

                    return 0;
                }
                finally
                {
                    PageTableLock.UpRead();
                }
            }
        }
        finally
        {
            MmapLock.UpRead();
        }
    }

    /// <summary>do_user_addr_fault() after the VMA checks: 0 when the entry is now present, else the signal.</summary>
    private int UserFaultLocked(Vma vma, ulong addr, bool write)
    {
        MmapLock.AssertHeld();
        if (vma.IsPfnMap)
        {
            return PfnMapFaultResult(vma, addr, write) switch
            {
                VmFault.NoPage => 0,
                VmFault.SigBus => Signals.SIGBUS,
                VmFault.Oom => Signals.SIGKILL,
                _ => Signals.SIGBUS,
            };
        }

        return HandleFaultLocked(vma, addr, write) switch
        {
            0 => 0,
            int e when e == Errno.ENOMEM.Negative() => Signals.SIGKILL,
            _ => Signals.SIGBUS,
        };
    }

    private int Raise(int signo, ulong addr, bool write)
    {
        if (Kernel.Trace.Enabled)
        {
            Kernel.Trace.Event(Kernel.CurrentTask, "signal_generate", Kernel.CurrentTask, $"sig={signo} {(write ? "write" : "read")} addr=0x{addr:x}");
        }

        return signo;
    }
}
