// The invariant checker of a type1 container, run by tests after any operation: the dma
// tree is sound; the entry count matches dma_avail; every domain's page table maps exactly
// the pages of the mapped dmas, to the same frames in every domain; each dma's locked_vm is
// what its pages should cost (reserved frames such as the zero page cost nothing); where
// the profile unpins zero pages (Type1Features.UnpinsZeroPages, v6.0–v6.8) a mapped zero
// page holds no pin; vaddr_invalid_count and the pfn lists agree.

using Vfio.Platform.Iommu;
using Vfio.Platform.Mm;

namespace Vfio.Iommu.Type1;

/// <summary>A snapshot of one mapping, for tests and tools.</summary>
/// <param name="Iova">First IOVA.</param>
/// <param name="Size">Bytes.</param>
/// <param name="Vaddr">Process address.</param>
/// <param name="Prot">Protection.</param>
/// <param name="IommuMapped">In every domain.</param>
/// <param name="VaddrInvalid">Vaddr taken away by UNMAP_DMA(VADDR).</param>
/// <param name="LockedVm">Pages charged to the owner.</param>
/// <param name="PinnedByDrivers">Pages in the pfn_list.</param>
/// <param name="OwnerPid">The owning process.</param>
internal readonly record struct VfioDmaInfo(ulong Iova, ulong Size, ulong Vaddr, IommuProt Prot, bool IommuMapped, bool VaddrInvalid, long LockedVm, int PinnedByDrivers, int OwnerPid);

internal sealed partial class VfioIommu
{
    /// <summary>The mappings, in IOVA order.</summary>
    internal IReadOnlyList<VfioDmaInfo> Mappings
    {
        get
        {
            _lock.Lock();
            try
            {
                var list = new List<VfioDmaInfo>(_dmas.Count);
                for (VfioDma? n = _dmas.First(); n is not null; n = VfioDmaTree.Next(n))
                {
                    list.Add(new VfioDmaInfo(n.Iova, n.Size, n.Vaddr, n.Prot, n.IommuMapped, n.VaddrInvalid, n.LockedVm, n.PfnCount, n.Task?.Pid ?? 0));
                }

                return list;
            }
            finally
            {
                _lock.Unlock();
            }
        }
    }

    /// <summary>
    /// vfio_find_dma() without taking the lock, for the lookup benchmark only: the caller
    /// must make sure nothing maps or unmaps concurrently.
    /// </summary>
    internal VfioDma? FindDmaUnlocked(ulong iova, ulong size) => _dmas.Find(iova, iova + size - 1);

    /// <summary>dma_avail.</summary>
    internal uint DmaAvail => _dmaAvail;

    /// <summary>The container's pgsize_bitmap.</summary>
    internal ulong PgsizeBitmap => _pgsizeBitmap;

    /// <summary>IOMMU domains in use.</summary>
    internal IReadOnlyList<IommuDomain> Domains
    {
        get
        {
            _lock.Lock();
            try
            {
                return [.. _domains.Select(d => d.Domain)];
            }
            finally
            {
                _lock.Unlock();
            }
        }
    }

    /// <summary>Dirty tracking is on.</summary>
    internal bool DirtyTracking => _dirtyTracking;

    /// <summary>IOMMU-backed groups not yet in pinned-page dirty scope.</summary>
    internal int NumNonPinnedGroups => _numNonPinnedGroups;

    /// <summary>Emulated-IOMMU groups attached.</summary>
    internal int EmulatedGroupCount => _emulatedGroups.Count;

    /// <summary>Devices registered for dma_unmap.</summary>
    internal int RegisteredDevices => _devices.Count;

    /// <summary>
    /// Checks every invariant under the lock; null when all hold, else what is wrong.
    /// <paramref name="entryLimit"/> is the container's dma_entry_limit.
    /// </summary>
    internal string? CheckInvariants(uint entryLimit)
    {
        _lock.Lock();
        try
        {
            return CheckInvariantsLocked(entryLimit);
        }
        finally
        {
            _lock.Unlock();
        }
    }

    private string? CheckInvariantsLocked(uint entryLimit)
    {
        _lock.AssertHeld();
        string? err = _dmas.Check();
        if (err is not null)
        {
            return err;
        }

        if (_dmaAvail + (uint)_dmas.Count != entryLimit)
        {
            return $"dma_avail {_dmaAvail} + {_dmas.Count} mappings != dma_entry_limit {entryLimit}";
        }

        int invalid = 0;
        long mappedBytes = 0;
        PhysMem mem = Machine.Memory;
        bool zeroUnpinned = Kernel.Profile.Has(Type1Features.UnpinsZeroPages);
        for (VfioDma? n = _dmas.First(); n is not null; n = VfioDmaTree.Next(n))
        {
            if (n.VaddrInvalid)
            {
                invalid++;
            }

            if (n.IommuMapped != (_domains.Count != 0))
            {
                return $"{n}: iommu_mapped is {n.IommuMapped} with {_domains.Count} domains";
            }

            long expectCharge = 0;
            if (n.IommuMapped)
            {
                mappedBytes += (long)n.Size;
                for (ulong off = 0; off < n.Size; off += PhysMem.PageSize)
                {
                    long phys = _domains[0].Domain.IovaToPhys(n.Iova + off);
                    if (phys == 0)
                    {
                        return $"{n}: iova 0x{n.Iova + off:x} is not mapped in domain {_domains[0].Domain.Id}";
                    }

                    for (int d = 1; d < _domains.Count; d++)
                    {
                        if (_domains[d].Domain.IovaToPhys(n.Iova + off) != phys)
                        {
                            return $"{n}: iova 0x{n.Iova + off:x} maps differently in domain {_domains[d].Domain.Id}";
                        }
                    }

                    long pfn = phys >> PhysMem.PageShift;
                    if (zeroUnpinned && pfn == mem.ZeroPfn && mem.PinCount(pfn) != 0)
                    {
                        return $"{n}: the zero page at iova 0x{n.Iova + off:x} holds {mem.PinCount(pfn)} pins, but this kernel drops zero-page pins at once";
                    }

                    if (!mem.IsInvalidOrReserved(pfn))
                    {
                        if (mem.PinCount(pfn) <= 0)
                        {
                            return $"{n}: frame 0x{pfn:x} at iova 0x{n.Iova + off:x} is mapped but not pinned";
                        }

                        expectCharge++;
                    }
                }
            }
            else if (n.PfnList is not null)
            {
                foreach (VfioPfn p in n.PfnList)
                {
                    if (!mem.IsInvalidOrReserved(p.Pfn))
                    {
                        expectCharge++;
                    }
                }
            }

            if (n.PfnList is not null)
            {
                foreach (VfioPfn p in n.PfnList)
                {
                    if (zeroUnpinned && p.Pfn == mem.ZeroPfn && mem.PinCount(p.Pfn) != 0)
                    {
                        return $"{n}: a driver's pin of the zero page at iova 0x{p.Iova:x} left {mem.PinCount(p.Pfn)} pins, but this kernel drops zero-page pins at once";
                    }

                    if (p.RefCount <= 0 || p.Iova < n.Iova || p.Iova - n.Iova >= n.Size)
                    {
                        return $"{n}: bad pfn_list entry iova 0x{p.Iova:x} refs {p.RefCount}";
                    }
                }
            }

            if (n.Mm is { IsDead: false } && n.LockedVm != expectCharge)
            {
                return $"{n}: locked_vm {n.LockedVm} but {expectCharge} pages should be charged";
            }

            if ((n.Bitmap is not null) != _dirtyTracking)
            {
                return $"{n}: bitmap {(n.Bitmap is null ? "missing" : "present")} with dirty tracking {(_dirtyTracking ? "on" : "off")}";
            }
        }

        if (invalid != _vaddrInvalidCount)
        {
            return $"vaddr_invalid_count {_vaddrInvalidCount} but {invalid} mappings are invalidated";
        }

        foreach (VfioDomain d in _domains)
        {
            long bytes = d.Domain.PageTable?.MappedBytes ?? 0;
            if (bytes != mappedBytes)
            {
                return $"domain {d.Domain.Id} maps {bytes} bytes but the mapped dmas cover {mappedBytes}";
            }

            string? pt = d.Domain.CheckInvariants();
            if (pt is not null)
            {
                return $"domain {d.Domain.Id}: {pt}";
            }
        }

        return null;
    }
}
