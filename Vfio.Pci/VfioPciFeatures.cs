// Release-dependent behaviour of drivers/vfio/pci/ as named profile features (see
// Vfio.Kernel/KernelFeature.cs). Gate on these with Core.Kernel.Profile.Has(...), never on a
// version number; docs/kernel-versions.md lists each one with its value per preset.

namespace Vfio.Pci;

/// <summary>Profile features of vfio-pci.</summary>
public static class VfioPciFeatures
{
}
