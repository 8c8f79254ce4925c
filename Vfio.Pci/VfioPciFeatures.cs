// Release-dependent behaviour of drivers/vfio/pci/ as named profile features (see
// Vfio.Kernel/KernelFeature.cs). Gate on these with Core.Kernel.Profile.Has(...), never on a
// version number; docs/kernel-versions.md lists each one with its value per preset.

using Vfio.Kernel;

namespace Vfio.Pci;

/// <summary>Profile features of vfio-pci.</summary>
public static class VfioPciFeatures
{
    /// <summary>
    /// VFIO_DEVICE_GET_PCI_HOT_RESET_INFO that fails while it fills the device list (an
    /// affected function without an IOMMU group: EPERM) writes nothing back (v6.6); before,
    /// it still copied the header back, with flags cleared and count as the caller passed it.
    /// </summary>
    public static KernelFeature HotResetInfoFailedFillWritesNothing { get; } = new()
    {
        Name = nameof(HotResetInfoFailedFillWritesNothing),
        Description = "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO that fails while filling the device list (EPERM for a function without an IOMMU group) writes nothing back; before, it copied the header back with flags cleared and the caller's count.",
        Since = new(6, 6),
        Commits = [new("b56b7aabcf3c", "vfio/pci: Copy hot-reset device info to userspace in the devices loop")],
    };
}
