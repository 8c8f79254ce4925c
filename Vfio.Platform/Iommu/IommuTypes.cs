// Models include/linux/iommu.h (v6.12): IOMMU_* protection flags, domain types and their
// sysfs names, struct iommu_domain_geometry, and the fault record the emulated unit keeps.

namespace Vfio.Platform.Iommu;

/// <summary>The <c>IOMMU_*</c> protection flags of <c>iommu_map()</c>, with the kernel's values.</summary>
[Flags]
public enum IommuProt
{
    None = 0,
    /// <summary>IOMMU_READ: the device may read the memory (DMA to the device).</summary>
    Read = 1,
    /// <summary>IOMMU_WRITE: the device may write the memory.</summary>
    Write = 2,
    /// <summary>IOMMU_CACHE: DMA is cache coherent (snooped).</summary>
    Cache = 4,
    /// <summary>IOMMU_NOEXEC.</summary>
    NoExec = 8,
    /// <summary>IOMMU_MMIO: the target is device memory.</summary>
    Mmio = 0x10,
    /// <summary>IOMMU_PRIV: privileged accesses only.</summary>
    Priv = 0x20,
}

/// <summary>The direction of one device DMA, as the IOMMU sees it.</summary>
public enum IommuAccess
{
    /// <summary>The device reads memory (needs <see cref="IommuProt.Read"/>).</summary>
    Read,
    /// <summary>The device writes memory (needs <see cref="IommuProt.Write"/>).</summary>
    Write,
}

/// <summary>Why the emulated IOMMU refused a DMA (the fault reason of its fault record).</summary>
public enum IommuFaultReason
{
    /// <summary>No fault: the access was translated.</summary>
    None,
    /// <summary>No translation: the page-table walk found no present entry.</summary>
    NotPresent,
    /// <summary>The translation forbids the access: a write to a read-only page, a read of a write-only page.</summary>
    Permission,
    /// <summary>The IOVA lies beyond the address width or the domain's aperture.</summary>
    AddressBeyondWidth,
    /// <summary>The device is attached to a blocking domain, or to no domain at all.</summary>
    Blocked,
}

/// <summary>One fault the emulated IOMMU recorded.</summary>
/// <param name="TimeNs">Virtual time of the fault (<c>SimClock.NowNs</c>).</param>
/// <param name="Device">The device that issued the DMA (its name, e.g. <c>0000:01:00.0</c>).</param>
/// <param name="Iova">The faulting IOVA (the first byte of the faulting page that the DMA touched).</param>
/// <param name="Access">The direction of the DMA.</param>
/// <param name="Reason">Why it faulted.</param>
/// <param name="DomainId">The domain the device was attached to; 0 when it had none.</param>
public sealed record IommuFault(long TimeNs, string Device, ulong Iova, IommuAccess Access, IommuFaultReason Reason, int DomainId);

/// <summary>The <c>IOMMU_DOMAIN_*</c> types.</summary>
public enum IommuDomainType
{
    /// <summary>IOMMU_DOMAIN_BLOCKED: every DMA faults.</summary>
    Blocked,
    /// <summary>IOMMU_DOMAIN_IDENTITY: DMA addresses are physical addresses.</summary>
    Identity,
    /// <summary>IOMMU_DOMAIN_UNMANAGED: a paging domain owned by a user such as vfio.</summary>
    Unmanaged,
    /// <summary>IOMMU_DOMAIN_DMA: a paging domain owned by the DMA API.</summary>
    Dma,
    /// <summary>IOMMU_DOMAIN_DMA_FQ: a DMA-API domain with a flush queue (lazy invalidation).</summary>
    DmaFq,
}

/// <summary>Names of domain types as <c>/sys/kernel/iommu_groups/N/type</c> prints them.</summary>
public static class IommuDomainTypeExtensions
{
    /// <summary>The sysfs string of iommu_group_show_type(): blocked, identity, unmanaged, DMA, DMA-FQ.</summary>
    public static string SysfsName(this IommuDomainType type) => type switch
    {
        IommuDomainType.Blocked => "blocked",
        IommuDomainType.Identity => "identity",
        IommuDomainType.Unmanaged => "unmanaged",
        IommuDomainType.Dma => "DMA",
        IommuDomainType.DmaFq => "DMA-FQ",
        _ => "unknown",
    };

    /// <summary>__IOMMU_DOMAIN_PAGING: the type translates through page tables.</summary>
    public static bool IsPaging(this IommuDomainType type)
        => type is IommuDomainType.Unmanaged or IommuDomainType.Dma or IommuDomainType.DmaFq;
}

/// <summary>struct iommu_domain_geometry: the IOVA range a domain can translate.</summary>
/// <param name="ApertureStart">First mappable IOVA.</param>
/// <param name="ApertureEnd">Last mappable IOVA (inclusive).</param>
/// <param name="ForceAperture">DMA outside the aperture is refused (not passed through).</param>
public readonly record struct IommuDomainGeometry(ulong ApertureStart, ulong ApertureEnd, bool ForceAperture);
