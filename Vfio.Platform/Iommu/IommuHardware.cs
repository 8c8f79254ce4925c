// Models the hardware side of an Intel VT-d remapping unit (drivers/iommu/intel/iommu.c,
// v6.12, is the driver that programs it): DMA remapping of device accesses through the
// attached domain — the IOTLB first, then a walk of the domain's page table — with the
// width and permission checks, fault recording, and the IOTLB invalidation commands the
// driver issues. One unit per machine.
//
// Locking: translation is lock-free (see Iotlb.cs and IoPageTable.cs). _idLock
// (iommu.domain_ids) protects domain-id allocation. Device DMA reads and writes PhysMem,
// which takes the zone lock per page.

using Vfio.Kernel;
using Vfio.Platform.Iommu.Hw;
using Vfio.Platform.Mm;

namespace Vfio.Platform.Iommu;

/// <summary>What the emulated IOMMU supports.</summary>
public sealed record IommuHardwareConfig
{
    /// <summary>Leaf sizes of its page tables (domain pgsize_bitmap). Default 4 KiB | 2 MiB | 1 GiB.</summary>
    public ulong PgsizeBitmap { get; init; } = IoPageTable.DefaultPgsizeBitmap;

    /// <summary>IOVA bits it translates (32..48). Default 48.</summary>
    public int AddressWidth { get; init; } = 48;

    /// <summary>IOTLB entries (a power of two; 0 disables the IOTLB). Default 4096.</summary>
    public int IotlbEntries { get; init; } = 4096;

    /// <summary>Faults the fault log keeps. Default 256.</summary>
    public int FaultLogCapacity { get; init; } = 256;

    /// <summary>
    /// IOMMU_CAP_CACHE_COHERENCY: DMA through this IOMMU is cache coherent (VT-d always says
    /// so). vfio refuses to register a device whose IOMMU lacks it. Default true.
    /// </summary>
    public bool CacheCoherent { get; init; } = true;

    /// <summary>
    /// Snoop control (VT-d's SC extended capability, IOMMU_CAP_ENFORCE_CACHE_COHERENCY): a
    /// domain can be made to force snooping even for no-snoop TLPs (enforce_cache_coherency),
    /// which is what VFIO_DMA_CC_IOMMU reports. Only meaningful with <see cref="CacheCoherent"/>.
    /// Default true, as on server VT-d; QEMU's intel-iommu is coherent without it.
    /// </summary>
    public bool SnoopControl { get; init; } = true;

    /// <summary>Whether a domain of this IOMMU can enforce cache coherency: coherent and with snoop control.</summary>
    public bool CanEnforceCacheCoherency => CacheCoherent && SnoopControl;

    /// <summary>Interrupt remapping: MSI from a device cannot name another's vector (iommu_group_has_isolated_msi). Default true.</summary>
    public bool InterruptRemapping { get; init; } = true;

    /// <summary>Collapse full tables of contiguous leaves into superpages (a design variant; real drivers do not). Default false.</summary>
    public bool Promote { get; init; }

    /// <summary>What is wrong with this configuration (and the property at fault), or null when it is valid.</summary>
    public string? Problem(out string field)
    {
        (field, string? problem) = (PgsizeBitmap, AddressWidth, IotlbEntries, FaultLogCapacity) switch
        {
            (var b, _, _, _) when (b & 0x1000) == 0 || (b & ~IoPageTable.DefaultPgsizeBitmap) != 0
                => (nameof(PgsizeBitmap), $"0x{b:x} is not a set of 4K, 2M and 1G that includes 4K"),
            (_, var w, _, _) when w is < 32 or > 48 => (nameof(AddressWidth), $"{w} is outside 32..48 (a 4-level table)"),
            (_, _, var e, _) when e < 0 || e > (1 << 20) || (e & (e - 1)) != 0 => (nameof(IotlbEntries), $"{e} is not 0 (no IOTLB) or a power of two up to 1048576"),
            (_, _, _, var f) when f < 1 => (nameof(FaultLogCapacity), $"{f} is not a positive count"),
            _ => (string.Empty, null),
        };
        return problem;
    }
}

/// <summary>The emulated IOMMU: domains, translation, IOTLB, fault log.</summary>
public sealed class IommuHardware
{
    private readonly CostModel _cost;
    private readonly PhysMem _mem;

    // Domain ids (tags of IOTLB entries), from 1.
    private readonly Ida _domainIds;

    private long _walks;
    private long _otherTranslations;

    /// <summary>An IOMMU in front of <paramref name="memory"/>, on <paramref name="kernel"/>'s clock.</summary>
    public IommuHardware(SimKernel kernel, PhysMem memory, IommuHardwareConfig? config = null)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        ArgumentNullException.ThrowIfNull(memory);
        Kernel = kernel;
        _cost = kernel.Cost;
        _mem = memory;
        Config = config ?? new IommuHardwareConfig();
        if (Config.Problem(out string field) is { } problem)
        {
            throw new ArgumentException($"{field}: {problem}", nameof(config));
        }

        Iotlb = new Iotlb(kernel, Config.IotlbEntries);
        Faults = new IommuFaultLog(kernel, Config.FaultLogCapacity);
        _domainIds = new Ida(kernel, "iommu.domain_ids");
    }

    /// <summary>The kernel whose clock stamps faults.</summary>
    public SimKernel Kernel { get; }

    /// <summary>The configuration.</summary>
    public IommuHardwareConfig Config { get; }

    /// <summary>The IOTLB.</summary>
    public Iotlb Iotlb { get; }

    /// <summary>The fault log.</summary>
    public IommuFaultLog Faults { get; }

    /// <summary>Page-table walks (IOTLB misses of paging domains).</summary>
    public long Walks => Volatile.Read(ref _walks);

    /// <summary>Translations requested (every <see cref="Translate"/>, through any domain or none).</summary>
    public long Translations => Iotlb.Hits + Iotlb.Misses + Volatile.Read(ref _otherTranslations);

    /// <summary>
    /// iommu_domain_alloc() / ops->domain_alloc_paging: a new domain of
    /// <paramref name="type"/> with the lowest free domain id (from 1).
    /// </summary>
    public IommuDomain AllocDomain(IommuDomainType type) => new(this, _domainIds.Alloc(1), type);

    internal void ReleaseDomainId(int id) => _domainIds.Free(id);

    /// <summary>
    /// Translates one access of a device attached to <paramref name="domain"/>: no domain
    /// or a blocking domain is <see cref="IommuFaultReason.Blocked"/>; identity passes the
    /// address through; a paging domain checks the aperture and address width, looks in
    /// the IOTLB, walks the page table on a miss (caching the leaf), then checks the
    /// permission. <paramref name="phys"/> is valid when the result is None.
    /// </summary>
    public IommuFaultReason Translate(IommuDomain? domain, ulong iova, IommuAccess access, out long phys)
    {
        phys = 0;

        // A freed domain translates nothing: a DMA that raced with detach and free must not
        // reach a new domain that reuses the id.
        if (domain is null || domain.Type == IommuDomainType.Blocked || domain.IsFreed)
        {
            Interlocked.Increment(ref _otherTranslations);
            return IommuFaultReason.Blocked;
        }

        if (domain.Type == IommuDomainType.Identity)
        {
            Interlocked.Increment(ref _otherTranslations);
            phys = (long)iova;
            return IommuFaultReason.None;
        }

        // The aperture starts at 0, so one comparison checks both it and the address width.
        if (iova > domain.Geometry.ApertureEnd)
        {
            Interlocked.Increment(ref _otherTranslations);
            return IommuFaultReason.AddressBeyondWidth;
        }

        if (Iotlb.Lookup(domain.Id, iova, out long pa, out IommuProt prot))
        {
            _cost.Charge(CostOp.IotlbHit);
        }
        else
        {
            long generation = Iotlb.Generation;
            Interlocked.Increment(ref _walks);
            _cost.Charge(CostOp.IotlbWalk);
            if (!domain.PageTable!.Walk(iova, out pa, out prot, out int level))
            {
                return IommuFaultReason.NotPresent;
            }

            Iotlb.Fill(domain.Id, iova, pa, prot, level, generation);
        }

        if ((prot & (access == IommuAccess.Read ? IommuProt.Read : IommuProt.Write)) == 0)
        {
            return IommuFaultReason.Permission;
        }

        phys = pa;
        return IommuFaultReason.None;
    }

    /// <summary>
    /// A device DMA read of <paramref name="buffer"/>.Length bytes at <paramref name="iova"/>
    /// into <paramref name="buffer"/>. Each 4 KiB IOVA page is translated on its own (an
    /// identity domain passes the whole transfer through at once). Returns 0, or -EFAULT at
    /// the first page that faults, after recording the fault (device, IOVA of that page's
    /// first byte touched, access, reason, domain id; 0 for none). As on hardware, the pages
    /// before the faulting one have been transferred.
    /// </summary>
    public int DmaRead(IommuDomain? domain, string device, ulong iova, Span<byte> buffer)
        => DmaCore(domain, device, iova, buffer, default, IommuAccess.Read);

    /// <summary>A device DMA write of <paramref name="data"/> to <paramref name="iova"/>; as <see cref="DmaRead"/>.</summary>
    public int DmaWrite(IommuDomain? domain, string device, ulong iova, ReadOnlySpan<byte> data)
        => DmaCore(domain, device, iova, default, data, IommuAccess.Write);

    private int DmaCore(IommuDomain? domain, string device, ulong iova, Span<byte> dst, ReadOnlySpan<byte> src, IommuAccess access)
    {
        ArgumentNullException.ThrowIfNull(device);
        int length = access == IommuAccess.Read ? dst.Length : src.Length;
        if (domain is { Type: IommuDomainType.Identity, IsFreed: false } && iova + (ulong)length >= iova)
        {
            Interlocked.Increment(ref _otherTranslations);
            if (access == IommuAccess.Read)
            {
                _mem.Read((long)iova, dst);
            }
            else
            {
                _mem.Write((long)iova, src);
            }

            return 0;
        }

        int done = 0;
        while (done < length)
        {
            ulong at = iova + (ulong)done;
            int chunk = (int)Math.Min(length - done, PhysMem.PageSize - (long)(at & (PhysMem.PageSize - 1)));
            long phys = 0;
            IommuFaultReason reason = at < iova ? IommuFaultReason.AddressBeyondWidth : Translate(domain, at, access, out phys);
            if (reason != IommuFaultReason.None)
            {
                Faults.Record(new IommuFault(Kernel.Clock.NowNs, device, at, access, reason, domain?.Id ?? 0));
                return Errno.EFAULT.Negative();
            }

            if (access == IommuAccess.Read)
            {
                _mem.Read(phys, dst.Slice(done, chunk));
            }
            else
            {
                _mem.Write(phys, src.Slice(done, chunk));
            }

            done += chunk;
        }

        return 0;
    }

    /// <summary>Page-selective invalidation of [<paramref name="iova"/>, +<paramref name="size"/>) for <paramref name="domainId"/>.</summary>
    public void InvalidateRange(int domainId, ulong iova, long size)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(size);
        Iotlb.InvalidateRange(domainId, iova, iova + (ulong)size - 1);
    }

    /// <summary>Domain-selective IOTLB flush.</summary>
    public void FlushDomain(int domainId) => Iotlb.FlushDomain(domainId);

    /// <summary>Global IOTLB flush.</summary>
    public void FlushAll() => Iotlb.FlushAll();
}
