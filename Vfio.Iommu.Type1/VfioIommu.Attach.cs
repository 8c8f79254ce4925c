// Models group attach and detach of drivers/vfio/vfio_iommu_type1.c (v6.12):
// vfio_iommu_type1_attach_group (emulated groups; a new domain per real group, the aperture
// and reserved-region checks, interrupt isolation, cache coherency, moving the group into a
// compatible existing domain, the fine-grained-superpage probe, vfio_iommu_replay with its
// unwind, the new IOVA list) and vfio_iommu_type1_detach_group (the last domain's mappings
// removed, or unmapped and re-accounted when emulated groups remain; the aperture and IOVA
// list rebuilt; the dirty scope promoted).

using Vfio.Core;
using Vfio.Kernel;
using Vfio.Platform.Iommu;
using Vfio.Platform.Mm;

namespace Vfio.Iommu.Type1;

internal sealed partial class VfioIommu
{
    /// <summary>
    /// Fault-injection site of the domain allocation of an attach: the driver's allocation
    /// failing is ENOMEM from iommu_paging_domain_alloc() on v6.11+, EIO (a NULL from
    /// iommu_domain_alloc()) before (<see cref="Type1Features.DomainAllocFailurePassesErrno"/>).
    /// </summary>
    internal const string DomainAllocFaultSite = "vfio_iommu_type1:domain_alloc";

    private const string AttachOp = "VFIO_SET_IOMMU/SET_CONTAINER: type1 attach";

    /// <summary>vfio_iommu_type1_attach_group(); 0 or -errno, and nothing changed on failure.</summary>
    internal int AttachGroup(IommuGroup iommuGroup, VfioGroupType type)
    {
        _lock.Lock();
        try
        {
            return AttachGroupLocked(iommuGroup, type);
        }
        finally
        {
            _lock.Unlock();
        }
    }

    private int AttachGroupLocked(IommuGroup iommuGroup, VfioGroupType type)
    {
        _lock.AssertHeld();
        if (_vaddrInvalidCount != 0)
        {
            return ErrorReason.Fail(Errno.EBUSY, $"{AttachOp}: {_vaddrInvalidCount} mappings have an invalidated vaddr (attach may need to pin)");
        }

        if (FindGroupLocked(iommuGroup) is not null)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{AttachOp}: {iommuGroup} is already attached");
        }

        var group = new VfioIommuGroup(iommuGroup);
        if (type == VfioGroupType.EmulatedIommu)
        {
            // Emulated groups reach memory only through pin/dma_rw, which report what they dirty.
            group.PinnedPageDirtyScope = true;
            _emulatedGroups.Add(group);
            return 0;
        }

        IommuCore core = iommuGroup.Core;
        if (Kernel.Faults.ShouldFail(DomainAllocFaultSite))
        {
            Errno errno = Kernel.Profile.Has(Type1Features.DomainAllocFailurePassesErrno) ? Errno.ENOMEM : Errno.EIO;
            return ErrorReason.Fail(errno, $"{AttachOp}: cannot allocate an IOMMU domain for {iommuGroup}");
        }

        var domain = new VfioDomain(core.DomainAlloc());
        int ret = core.AttachGroup(domain.Domain, iommuGroup);
        if (ret != 0)
        {
            domain.Domain.Free();
            return ErrorReason.Fail((Errno)(-ret), $"{AttachOp}: iommu_attach_group of {iommuGroup} failed");
        }

        IommuDomainGeometry geo = domain.Domain.Geometry;
        ret = AttachChecksLocked(core, iommuGroup, geo, out List<VfioIova> iovaCopy);
        if (ret == 0 && !Module.AllowUnsafeInterrupts && !core.GroupHasIsolatedMsi(iommuGroup))
        {
            Kernel.Log.Warn("vfio_iommu_type1_attach_group: No interrupt remapping support.  Use the module param \"allow_unsafe_interrupts\" to enable VFIO IOMMU support on this platform");
            ret = ErrorReason.Fail(Errno.EPERM, $"{AttachOp}: {iommuGroup}: the IOMMU cannot isolate MSI (no interrupt remapping) and allow_unsafe_interrupts is off");
        }

        if (ret != 0)
        {
            core.DetachGroup(domain.Domain, iommuGroup);
            domain.Domain.Free();
            return ret;
        }

        domain.Groups.Add(group);
        domain.EnforceCacheCoherency = domain.Domain.EnforceCacheCoherency();

        // A domain of the same IOMMU with the same coherency can take the group: no replay needed.
        foreach (VfioDomain d in _domains)
        {
            if (d.Domain.Hardware == domain.Domain.Hardware && d.EnforceCacheCoherency == domain.EnforceCacheCoherency)
            {
                core.DetachGroup(domain.Domain, iommuGroup);
                if (core.AttachGroup(d.Domain, iommuGroup) == 0)
                {
                    d.Groups.Add(group);
                    domain.Domain.Free();
                    return AttachDoneLocked(iovaCopy);
                }

                ret = core.AttachGroup(domain.Domain, iommuGroup);
                if (ret != 0)
                {
                    domain.Domain.Free();
                    return ErrorReason.Fail((Errno)(-ret), $"{AttachOp}: re-attaching {iommuGroup} to its own domain failed");
                }
            }
        }

        TestDomainFgsp(domain, iovaCopy);
        ret = ReplayLocked(domain);
        if (ret != 0)
        {
            core.DetachGroup(domain.Domain, iommuGroup);
            domain.Domain.Free();
            return ret;
        }

        // A group with only a software MSI window (SW_MSI, as on ARM) would get an MSI cookie
        // here; the simulated machine has the x86 hardware window, so there is none to install.
        _domains.Add(domain);
        if (_asPins is not null && _domains.Count == 1)
        {
            UnchargeAsPinsLocked();
        }

        UpdatePgsizeBitmapLocked();
        return AttachDoneLocked(iovaCopy);
    }

    private int AttachDoneLocked(List<VfioIova> iovaCopy)
    {
        _lock.AssertHeld();
        _iovaList = iovaCopy;
        // An IOMMU-backed group can dirty any page, until it proves otherwise by pinning.
        _numNonPinnedGroups++;
        return 0;
    }

    /// <summary>The aperture and reserved-region checks of an attach, and the new IOVA list they give.</summary>
    private int AttachChecksLocked(IommuCore core, IommuGroup iommuGroup, IommuDomainGeometry geo, out List<VfioIova> iovaCopy)
    {
        _lock.AssertHeld();
        iovaCopy = [];
        if (AperConflictLocked(geo.ApertureStart, geo.ApertureEnd))
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{AttachOp}: the aperture [0x{geo.ApertureStart:x}, 0x{geo.ApertureEnd:x}] of {iommuGroup}'s domain does not cover the container's IOVA space or its mappings");
        }

        IReadOnlyList<IommuReservedRegion> resv = core.GroupReservedRegions(iommuGroup);
        foreach (IommuReservedRegion r in resv)
        {
            if (r.Type != IommuResvType.DirectRelaxable && _dmas.Find(r.Start, r.End) is { } hit)
            {
                return ErrorReason.Fail(Errno.EINVAL, $"{AttachOp}: reserved region {r} of {iommuGroup} overlaps mapping {hit}");
            }
        }

        iovaCopy.AddRange(_iovaList);
        AperResize(iovaCopy, geo.ApertureStart, geo.ApertureEnd);
        return ResvExclude(iovaCopy, resv)
            ? 0
            : ErrorReason.Fail(Errno.EINVAL, $"{AttachOp}: no usable IOVA space is left once {iommuGroup}'s reserved regions are excluded");
    }

    private VfioIommuGroup? FindGroupLocked(IommuGroup g)
    {
        _lock.AssertHeld();
        foreach (VfioDomain d in _domains)
        {
            foreach (VfioIommuGroup x in d.Groups)
            {
                if (x.Group == g)
                {
                    return x;
                }
            }
        }

        foreach (VfioIommuGroup x in _emulatedGroups)
        {
            if (x.Group == g)
            {
                return x;
            }
        }

        return null;
    }

    /// <summary>vfio_iommu_aper_conflict(): the new aperture is disjoint from the IOVA list or would leave a mapping outside.</summary>
    private bool AperConflictLocked(ulong start, ulong end)
    {
        _lock.AssertHeld();
        if (_iovaList.Count == 0)
        {
            return false;
        }

        VfioIova first = _iovaList[0], last = _iovaList[^1];
        if (start > last.End || end < first.Start)
        {
            return true;
        }

        if (start > first.Start && _dmas.Find(first.Start, start - 1) is not null)
        {
            return true;
        }

        return end < last.End && _dmas.Find(end + 1, last.End) is not null;
    }

    /// <summary>vfio_iommu_aper_resize(): the list clipped to [start, end] (or just that range when empty).</summary>
    private static void AperResize(List<VfioIova> list, ulong start, ulong end)
    {
        if (list.Count == 0)
        {
            list.Add(new VfioIova(start, end));
            return;
        }

        for (int i = list.Count - 1; i >= 0; i--)
        {
            VfioIova r = list[i];
            if (r.End < start || r.Start > end)
            {
                list.RemoveAt(i);
                continue;
            }

            list[i] = new VfioIova(Math.Max(r.Start, start), Math.Min(r.End, end));
        }
    }

    /// <summary>vfio_iommu_resv_exclude(): cuts the reserved regions (but direct-relaxable ones) out of the list; false when nothing is left.</summary>
    private static bool ResvExclude(List<VfioIova> list, IReadOnlyList<IommuReservedRegion> resv)
    {
        foreach (IommuReservedRegion r in resv)
        {
            if (r.Type == IommuResvType.DirectRelaxable)
            {
                continue;
            }

            for (int i = 0; i < list.Count; i++)
            {
                VfioIova n = list[i];
                if (r.Start > n.End || r.End < n.Start)
                {
                    continue;
                }

                list.RemoveAt(i);
                int at = i;
                if (r.Start > n.Start)
                {
                    list.Insert(at++, new VfioIova(n.Start, r.Start - 1));
                }

                if (r.End < n.End)
                {
                    list.Insert(at++, new VfioIova(r.End + 1, n.End));
                }

                i = at - 1;
            }
        }

        return list.Count != 0;
    }

    /// <summary>vfio_test_domain_fgsp(): map two pages, unmap one; if both went, the domain has fine-grained superpages.</summary>
    private void TestDomainFgsp(VfioDomain domain, List<VfioIova> regions)
    {
        const ulong two = 2 * PhysMem.PageSize;
        long paddr = Machine.Memory.ZeroPfn << PhysMem.PageShift;
        foreach (VfioIova r in regions)
        {
            ulong start = (r.Start + two - 1) & ~(two - 1);
            if (start >= r.End || r.End - start < two)
            {
                continue;
            }

            if (domain.Domain.Map(start, paddr & ~(long)(two - 1), (long)two, IommuProt.Read | IommuProt.Write | IommuProt.Cache) == 0)
            {
                long unmapped = domain.Domain.Unmap(start, PhysMem.PageSize);
                if (unmapped == PhysMem.PageSize)
                {
                    domain.Domain.Unmap(start + PhysMem.PageSize, PhysMem.PageSize);
                }
                else
                {
                    domain.Fgsp = true;
                }
            }

            break;
        }
    }

    /// <summary>
    /// vfio_iommu_replay(): maps every mapping into the new domain — copied from the first
    /// domain when already mapped, pinned now (RLIMIT_MEMLOCK applies) when it was created
    /// while only emulated groups existed. On failure everything this replay did is undone
    /// (since v5.9; <see cref="VfioDesign.UnwindFailedReplay"/> off keeps the ≤ v5.8 replay).
    /// </summary>
    private int ReplayLocked(VfioDomain domain)
    {
        _lock.AssertHeld();
        IommuDomain? d = _domains.Count != 0 ? _domains[0].Domain : null;
        List<VfioDomain> target = [domain];
        bool unwind = Module.Core.Design.UnwindFailedReplay;
        VfioDma? n = _dmas.First();
        int ret = 0;
        for (; n is not null; n = VfioDmaTree.Next(n))
        {
            VfioDma dma = n;
            if (dma.IommuMapped)
            {
                if (Warn.On(Kernel, d is null, $"vfio_iommu_replay: {dma} is mapped but the container has no domain"))
                {
                    ret = ErrorReason.Fail(Errno.EINVAL, $"{AttachOp}: replay found a mapping without a domain");
                    break;
                }

                ulong iova = dma.Iova;
                while (iova - dma.Iova < dma.Size)
                {
                    long phys = d!.IovaToPhys(iova);
                    if (phys == 0)
                    {
                        Warn.On(Kernel, true, $"vfio_iommu_replay: iova 0x{iova:x} of {dma} is not mapped in the first domain");
                        iova += PhysMem.PageSize;
                        continue;
                    }

                    long size = PhysMem.PageSize;
                    while (iova - dma.Iova + (ulong)size < dma.Size && d.IovaToPhys(iova + (ulong)size) == phys + size)
                    {
                        size += PhysMem.PageSize;
                    }

                    ret = domain.Domain.Map(iova, phys, size, dma.Prot | IommuProt.Cache);
                    if (ret != 0)
                    {
                        ErrorReason.Fail((Errno)(-ret), $"{AttachOp}: replaying iova 0x{iova:x} into the new domain failed");
                        break;
                    }

                    iova += (ulong)size;
                }
            }
            else
            {
                ret = PinMapRangeLocked(dma, dma.Iova, dma.Vaddr, dma.Size, target, growSize: false);
            }

            if (ret != 0)
            {
                break;
            }

            if (!unwind)
            {
                // ≤ v5.8: each mapping was marked as soon as it was replayed.
                dma.IommuMapped = true;
            }
        }

        if (!unwind && ret != 0)
        {
            // ≤ v5.8 (VfioDesign.UnwindFailedReplay off): the error is returned as it stands;
            // the failing mapping's chunks stay pinned and charged, in a domain the caller frees.
            return ret;
        }

        if (ret == 0)
        {
            for (VfioDma? m = _dmas.First(); m is not null; m = VfioDmaTree.Next(m))
            {
                m.IommuMapped = true;
            }

            return 0;
        }

        // Unwind from the failing mapping back to the first.
        for (; n is not null; n = VfioDmaTree.Prev(n))
        {
            if (n.IommuMapped)
            {
                domain.Domain.Unmap(n.Iova, (long)n.Size);
                continue;
            }

            ulong iova = n.Iova;
            ulong mappedEnd = n.Iova;
            var gather = new IotlbGather();
            long unlocked = 0;
            Span<PfnRun> runs = _runs;
            while (iova - n.Iova < n.Size)
            {
                long done = domain.Domain.UnmapCollect(iova, (long)(n.Size - (iova - n.Iova)), runs, out int count, ref gather);
                domain.Domain.IotlbSync(ref gather);
                unlocked += UnpinRuns(Machine.Memory, runs[..count], dirty: false);
                iova += done == 0 ? PhysMem.PageSize : (ulong)done;
                if (done != 0)
                {
                    mappedEnd = iova;
                }
            }

            UnaccountUnpinnedLocked(n, unlocked, mappedEnd);
        }

        return ret;
    }

    /// <summary>Uncharges <paramref name="unlocked"/> pages of <paramref name="dma"/> unpinned below <paramref name="end"/>, less those of them still pinned through its pfn_list (they stay charged).</summary>
    private void UnaccountUnpinnedLocked(VfioDma dma, long unlocked, ulong end)
    {
        _lock.AssertHeld();
        long locked = 0;
        if (dma.PfnList is { } list)
        {
            foreach (VfioPfn p in list)
            {
                if (p.Iova - dma.Iova < end - dma.Iova && !Machine.Memory.IsInvalidOrReserved(p.Pfn))
                {
                    locked++;
                }
            }
        }

        LockAcct(dma, locked - unlocked, async: true);
    }

    /// <summary>vfio_update_pgsize_bitmap(): the AND of every domain's sizes, with sub-page sizes replaced by PAGE_SIZE.</summary>
    private void UpdatePgsizeBitmapLocked()
    {
        _lock.AssertHeld();
        ulong bitmap = ulong.MaxValue;
        foreach (VfioDomain d in _domains)
        {
            bitmap &= d.Domain.PgsizeBitmap;
        }

        const ulong pageMask = ~(ulong)(PhysMem.PageSize - 1);
        if ((bitmap & ~pageMask) != 0)
        {
            bitmap = (bitmap & pageMask) | PhysMem.PageSize;
        }

        _pgsizeBitmap = bitmap;
    }

    /// <summary>vfio_iommu_type1_detach_group().</summary>
    internal void DetachGroup(IommuGroup iommuGroup)
    {
        _lock.Lock();
        try
        {
            DetachGroupLocked(iommuGroup);
        }
        finally
        {
            _lock.Unlock();
        }
    }

    private void DetachGroupLocked(IommuGroup iommuGroup)
    {
        _lock.AssertHeld();
        bool updateDirtyScope = false;
        for (int i = 0; i < _emulatedGroups.Count; i++)
        {
            VfioIommuGroup g = _emulatedGroups[i];
            if (g.Group != iommuGroup)
            {
                continue;
            }

            updateDirtyScope = !g.PinnedPageDirtyScope;
            _emulatedGroups.RemoveAt(i);
            if (_emulatedGroups.Count == 0 && _domains.Count == 0)
            {
                Warn.On(Kernel, _devices.Count != 0, "vfio_iommu_type1_detach_group: devices still registered");
                UnmapUnpinAllLocked();
            }

            DetachDoneLocked(updateDirtyScope);
            return;
        }

        List<VfioIova> iovaCopy = [.. _iovaList];
        for (int di = 0; di < _domains.Count; di++)
        {
            VfioDomain domain = _domains[di];
            VfioIommuGroup? group = domain.Groups.Find(x => x.Group == iommuGroup);
            if (group is null)
            {
                continue;
            }

            iommuGroup.Core.DetachGroup(domain.Domain, iommuGroup);
            updateDirtyScope = !group.PinnedPageDirtyScope;
            domain.Groups.Remove(group);
            if (domain.Groups.Count == 0)
            {
                if (_domains.Count == 1)
                {
                    if (_emulatedGroups.Count == 0)
                    {
                        Warn.On(Kernel, _devices.Count != 0, "vfio_iommu_type1_detach_group: devices still registered");
                        UnmapUnpinAllLocked();
                    }
                    else
                    {
                        UnmapUnpinReaccountLocked();
                    }
                }

                domain.Domain.Free();
                _domains.RemoveAt(di);
                AperExpandLocked(iovaCopy);
                UpdatePgsizeBitmapLocked();
            }

            break;
        }

        if (ResvRefreshLocked(iovaCopy))
        {
            _iovaList = iovaCopy;
        }

        DetachDoneLocked(updateDirtyScope);
    }

    private void DetachDoneLocked(bool updateDirtyScope)
    {
        _lock.AssertHeld();
        if (!updateDirtyScope)
        {
            return;
        }

        _numNonPinnedGroups--;
        if (_dirtyTracking)
        {
            PopulateBitmapFullLocked();
        }
    }

    /// <summary>
    /// vfio_iommu_unmap_unpin_reaccount(): the last IOMMU domain goes while emulated groups
    /// stay: mappings are unmapped and unpinned but kept, and charged only for the pages
    /// drivers still pin.
    /// </summary>
    private void UnmapUnpinReaccountLocked()
    {
        _lock.AssertHeld();
        for (VfioDma? n = _dmas.First(); n is not null; n = VfioDmaTree.Next(n))
        {
            long unlocked = UnmapUnpinLocked(n, doAccounting: false);
            UnaccountUnpinnedLocked(n, unlocked, n.Iova + n.Size);
        }

        if (_asPins is not null)
        {
            ChargeAsPinsLocked();
        }
    }

    /// <summary>vfio_iommu_aper_expand(): the list's ends widen to the intersection of the remaining domains' apertures.</summary>
    private void AperExpandLocked(List<VfioIova> list)
    {
        _lock.AssertHeld();
        if (list.Count == 0)
        {
            return;
        }

        ulong start = 0, end = ulong.MaxValue;
        foreach (VfioDomain d in _domains)
        {
            start = Math.Max(start, d.Domain.Geometry.ApertureStart);
            end = Math.Min(end, d.Domain.Geometry.ApertureEnd);
        }

        list[0] = list[0] with { Start = start };
        list[^1] = list[^1] with { End = end };
    }

    /// <summary>vfio_iommu_resv_refresh(): rebuilds the list from its ends minus the remaining groups' reserved regions; false leaves the old list.</summary>
    private bool ResvRefreshLocked(List<VfioIova> list)
    {
        _lock.AssertHeld();
        if (list.Count == 0)
        {
            return false;
        }

        var resv = new List<IommuReservedRegion>();
        foreach (VfioDomain d in _domains)
        {
            foreach (VfioIommuGroup g in d.Groups)
            {
                resv.AddRange(g.Group.Core.GroupReservedRegions(g.Group));
            }
        }

        ulong start = list[0].Start, end = list[^1].End;
        list.Clear();
        AperResize(list, start, end);
        return ResvExclude(list, resv);
    }
}
