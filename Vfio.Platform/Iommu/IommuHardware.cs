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

    /// <summary>IOVA bits it translates (at most 48). Default 48.</summary>
    public int AddressWidth { get; init; } = 48;

    /// <summary>IOTLB entries (a power of two; 0 disables the IOTLB). Default 4096.</summary>
    public int IotlbEntries { get; init; } = 4096;

    /// <summary>Faults the fault log keeps. Default 256.</summary>
    public int FaultLogCapacity { get; init; } = 256;

    /// <summary>IOMMU_CAP_CACHE_COHERENCY: domains can enforce snooped DMA (enforce_cache_coherency). Default true.</summary>
    public bool CacheCoherent { get; init; } = true;

    /// <summary>Collapse full tables of contiguous leaves into superpages (a design variant; real drivers do not). Default false.</summary>
    public bool Promote { get; init; }
}

/// <summary>The emulated IOMMU: domains, translation, IOTLB, fault log.</summary>
public sealed class IommuHardware
{
    private readonly PhysMem _mem;

    // Protects _freeIds and _nextId.
    private readonly KSpinLock _idLock;
    private readonly SortedSet<int> _freeIds = [];
    private int _nextId = 1;

    private long _walks;
    private long _otherTranslations;

    /// <summary>An IOMMU in front of <paramref name="memory"/>, on <paramref name="kernel"/>'s clock.</summary>
    public IommuHardware(SimKernel kernel, PhysMem memory, IommuHardwareConfig? config = null)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        ArgumentNullException.ThrowIfNull(memory);
        Kernel = kernel;
        _mem = memory;
        Config = config ?? new IommuHardwareConfig();
        if (Config.AddressWidth is < 32 or > 48)
        {
            throw new ArgumentException($"AddressWidth {Config.AddressWidth} is outside 32..48", nameof(config));
        }

        Iotlb = new Iotlb(kernel, Config.IotlbEntries);
        Faults = new IommuFaultLog(kernel, Config.FaultLogCapacity);
        _idLock = new KSpinLock(kernel, "iommu.domain_ids");
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
    public IommuDomain AllocDomain(IommuDomainType type)
    {
        int id;
        _idLock.Lock();
        try
        {
            if (_freeIds.Count > 0)
            {
                id = _freeIds.Min;
                _freeIds.Remove(id);
            }
            else
            {
                id = _nextId++;
            }
        }
        finally
        {
            _idLock.Unlock();
        }

        return new IommuDomain(this, id, type);
    }

    internal void ReleaseDomainId(int id)
    {
        _idLock.Lock();
        try
        {
            _freeIds.Add(id);
        }
        finally
        {
            _idLock.Unlock();
        }
    }

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
        if (domain is null || domain.Type == IommuDomainType.Blocked)
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
        if (iova > domain.TranslateEnd)
        {
            Interlocked.Increment(ref _otherTranslations);
            return IommuFaultReason.AddressBeyondWidth;
        }

        if (!Iotlb.Lookup(domain.Id, iova, out long pa, out IommuProt prot))
        {
            long generation = Iotlb.Generation;
            Interlocked.Increment(ref _walks);
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
    /// A device DMA of <paramref name="buffer"/>.Length bytes at <paramref name="iova"/>:
    /// a read copies memory into <paramref name="buffer"/>, a write copies
    /// <paramref name="buffer"/> to memory. Each 4 KiB IOVA page is translated on its own.
    /// Returns 0, or -EFAULT at the first page that faults, after recording the fault
    /// (device, IOVA of that page's first byte touched, access, reason, domain id; 0 for
    /// none). As on hardware, the pages before the faulting one have been transferred.
    /// </summary>
    public int Dma(IommuDomain? domain, string device, ulong iova, Span<byte> buffer, IommuAccess access)
        => access == IommuAccess.Read ? DmaCore(domain, device, iova, buffer, default, IommuAccess.Read)
                                      : DmaCore(domain, device, iova, default, buffer, IommuAccess.Write);

    /// <summary>A device DMA write of <paramref name="data"/> to <paramref name="iova"/>; as <see cref="Dma(IommuDomain?, string, ulong, Span{byte}, IommuAccess)"/>.</summary>
    public int Dma(IommuDomain? domain, string device, ulong iova, ReadOnlySpan<byte> data)
        => DmaCore(domain, device, iova, default, data, IommuAccess.Write);

    private int DmaCore(IommuDomain? domain, string device, ulong iova, Span<byte> dst, ReadOnlySpan<byte> src, IommuAccess access)
    {
        ArgumentNullException.ThrowIfNull(device);
        int length = access == IommuAccess.Read ? dst.Length : src.Length;
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
