// Release-dependent behaviour of drivers/vfio/vfio_iommu_type1.c as named profile features
// (see Vfio.Kernel/KernelFeature.cs). Gate on these with Kernel.Profile.Has(...), never on a
// version number.
//
// VFIO_TYPE1_NESTING_IOMMU is not a feature here: 35890f85573c ("vfio: Remove
// VFIO_TYPE1_NESTING_IOMMU") removed it in v6.13, and no profile of the simulator is 6.13 or
// later, so nesting is offered unconditionally (see VfioIommuType1.cs).

using Vfio.Kernel;

namespace Vfio.Iommu.Type1;

/// <summary>Profile features of the type1 IOMMU backend.</summary>
public static class Type1Features
{
    /// <summary>
    /// MAP_DMA, UNMAP_DMA and DIRTY_PAGES GET_BITMAP test a range for wrapping past 2^64 on its
    /// inclusive end (check_add_overflow(iova, size - 1)) and fail it EOVERFLOW; before, the
    /// wrap was EINVAL and GET_BITMAP tested iova + size, rejecting a range that ends exactly at
    /// 2^64. Mainline got this in v6.18; the linux-6.12 profile carries it.
    /// </summary>
    public static KernelFeature WrapIsEoverflow { get; } = new()
    {
        Name = nameof(WrapIsEoverflow),
        Description = "MAP_DMA, UNMAP_DMA and GET_BITMAP fail a range whose inclusive end (iova + size - 1, vaddr + size - 1) wraps past 2^64 with EOVERFLOW; before, EINVAL, and GET_BITMAP tested iova + size. Mainline has it from v6.18; the linux-6.12 profile carries it ahead of that (no 6.12.y stable backport is established).",
        Since = new(6, 18),
        Commits = [new("6012379ede6a", "vfio/type1: sanitize for overflow using check_*_overflow()")],
        CarriedBy = [KernelProfile.Linux6_12],
    };
}
