// Release-dependent behaviour of drivers/vfio/vfio_iommu_type1.c as named profile features
// (see Vfio.Kernel/KernelFeature.cs). Gate on these with Kernel.Profile.Has(...), never on a
// version number; docs/kernel-versions.md lists each one with its value per preset.

using Vfio.Kernel;

namespace Vfio.Iommu.Type1;

/// <summary>Profile features of the type1 IOMMU backend.</summary>
public static class Type1Features
{
    /// <summary>
    /// vaddr_get_pfns() drops at once any pin GUP took on the shared zero page: the page is
    /// mapped but neither kept pinned nor charged (reserved pfns never are). v6.0 added it for
    /// kernels whose long-term GUP still pinned the zero page; v6.9 reverted it once GUP
    /// unshared the zero page instead (PlatformFeatures.LongTermGupUnsharesZeroPage, v6.2).
    /// Without it a zero-page pin stays behind, never released by unmap.
    /// </summary>
    public static KernelFeature UnpinsZeroPages { get; } = new()
    {
        Name = nameof(UnpinsZeroPages),
        Description = "Pinning for a mapping or for vfio_pin_pages drops at once any pin GUP took on the shared zero page (it stays mapped, uncharged); without it such a pin stays behind and unmap never releases it.",
        Since = new(6, 0),
        RemovedIn = new(6, 9),
        Commits =
        [
            new("873aefb376bb", "vfio/type1: Unpin zero pages"),
            new("5b992412776c", "Revert \"vfio/type1: Unpin zero pages\""),
        ],
    };

    /// <summary>
    /// An attach whose IOMMU domain cannot be allocated fails with the allocator's errno
    /// (iommu_paging_domain_alloc(): ENOMEM when the driver runs out of memory) (v6.11);
    /// before, iommu_domain_alloc() returned NULL and the attach answered EIO.
    /// </summary>
    public static KernelFeature DomainAllocFailurePassesErrno { get; } = new()
    {
        Name = nameof(DomainAllocFailurePassesErrno),
        Description = "VFIO_GROUP_SET_CONTAINER's attach fails with the domain allocator's own errno (ENOMEM when it runs out of memory) when no IOMMU domain can be allocated; before, it always answered EIO.",
        Since = new(6, 11),
        Commits = [new("60ffc4501722", "vfio/type1: Use iommu_paging_domain_alloc()")],
    };
}
