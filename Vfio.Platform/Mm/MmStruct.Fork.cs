// Models the mm part of kernel/fork.c (v6.12): dup_mmap, the copy of an address space at
// fork, and naming the copy once copy_process() has the child's pid.
//
// Lock rules: Dup holds the parent's mmap_lock for reading while it copies VMAs and
// pages, with the zone lock taken inside it for the page copies; the child is not yet
// published, so its own mmap_lock is not taken while copying. A failed copy is torn down
// (under the child's mmap_lock) after the parent's lock is released.

using Vfio.Kernel;

namespace Vfio.Platform.Mm;

public sealed partial class MmStruct
{
    /// <summary>
    /// Names a copy made by <see cref="Dup(out int)"/> once fork has its pid (copy_process()
    /// allocates the pid after copy_mm()). Only before the mm is published: its mmap_lock is
    /// replaced by one named for the pid.
    /// </summary>
    internal void AssignId(int id)
    {
        Id = id;
        MmapLock = new RwSemaphore(Kernel, $"mm[{id}].mmap_lock");
    }

    /// <summary>
    /// dup_mmap(): the child's copy of this address space. Private pages are copied now;
    /// shared ones are shared. The copy has id 0 until <see cref="AssignId"/>.
    /// </summary>
    internal MmStruct Dup(out int error)
    {
        var child = new MmStruct(Mem, Kernel, 0);
        error = 0;
        bool failed = false;
        MmapLock.DownRead();
        try
        {
            foreach (Vma v in _vmas)
            {
                if ((v.Flags & VmFlags.VM_DONTCOPY) != 0)
                {
                    continue;
                }

                var copy = new Vma(child, v.Start, v.End, v.Flags & ~VmFlags.VM_LOCKED, v.PageShift)
                {
                    File = v.File,
                    PgOff = v.PgOff,
                    Ops = v.Ops,
                    PrivateData = v.PrivateData,
                    Pool = v.Pool,
                };
                copy.File?.Get();
                child._vmas.Add(copy);

                // dup_mmap(): the page tables are copied before the driver's ->open sees
                // the new VMA (vfio-pci's vma-list design zaps the copy there).
                bool copied = CopyPagesInto(v, copy);
                copy.Ops?.Open(copy);
                if (!copied)
                {
                    failed = true;
                    break;
                }
            }
        }
        finally
        {
            MmapLock.UpRead();
        }

        if (failed)
        {
            // Tear the half-built copy down outside the parent's mmap_lock.
            child.ExitMmap();
            error = Errno.ENOMEM.Negative();
        }

        return child;
    }

    private bool CopyPagesInto(Vma from, Vma to)
    {
        bool shared = (from.Flags & VmFlags.VM_SHARED) != 0;
        Mem.Lock.Lock();
        try
        {
            if (from.Pool is { } pool && !shared)
            {
                int needed = (int)(from.Length >> from.PageShift);
                if (!pool.Reserve(needed))
                {
                    return false;
                }

                to.HugeReserved = needed;
            }

            foreach ((long i, long pte) in from.Ptes.Present())
            {
                long pfn = pte >> 12;
                if (from.IsPfnMap || (pte & Vma.PteZero) != 0 || shared)
                {
                    if (!from.IsPfnMap && (pte & Vma.PteZero) == 0)
                    {
                        Mem.GetPageLocked(pfn);
                    }

                    to.Ptes.Set(i, pte);
                    continue;
                }

                long copy;
                if (from.Pool is { } hp)
                {
                    copy = hp.AllocReserved(Mem);
                    to.HugeReserved--;
                    for (long sub = 0; sub < hp.PagesPerFolio; sub++)
                    {
                        Mem.CopyPageLocked(pfn + sub, copy + sub);
                    }
                }
                else
                {
                    copy = Mem.AllocPageLocked();
                    if (copy < 0)
                    {
                        return false;
                    }

                    Mem.CopyPageLocked(pfn, copy);
                }

                to.Ptes.Set(i, (copy << 12) | Vma.PtePresent);
            }

            return true;
        }
        finally
        {
            Mem.Lock.Unlock();
        }
    }
}
