// Models the vfio_iommu_driver_ops members of drivers/vfio/vfio_iommu_type1.c that the 2016
// mdev series added (v4.10): pin_pages / unpin_pages by user PFN and register_notifier /
// unregister_notifier. Reached only through Vfio.Core.Vfio2016 (the 2016 design).

using Vfio.Core;

namespace Vfio.Iommu.Type1;

public sealed partial class VfioIommuType1 : IVfioIommuDriver2016
{
    /// <inheritdoc/>
    public int PinPagesByPfn(object? iommuData, ReadOnlySpan<ulong> userPfn, int prot, Span<ulong> physPfn)
        => ((VfioIommu)iommuData!).PinPagesByPfn(userPfn, prot, physPfn);

    /// <inheritdoc/>
    public int UnpinPagesByPfn(object? iommuData, ReadOnlySpan<ulong> userPfn) => ((VfioIommu)iommuData!).UnpinPagesByPfn(userPfn);

    /// <inheritdoc/>
    public int RegisterNotifier(object? iommuData, ref ulong events, IVfioIommuNotifier nb) => ((VfioIommu)iommuData!).RegisterNotifier(ref events, nb);

    /// <inheritdoc/>
    public int UnregisterNotifier(object? iommuData, IVfioIommuNotifier nb) => ((VfioIommu)iommuData!).UnregisterNotifier(nb);
}
