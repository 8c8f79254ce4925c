// Test-only IOMMU backend (the vfio_iommu_driver_ops shape of drivers/vfio/vfio.h, v6.12)
// that accepts everything: it answers CHECK_EXTENSION for VFIO_TYPE1_IOMMU and
// VFIO_TYPE1v2_IOMMU, opens and attaches groups without touching the IOMMU.

using Vfio.Core;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Iommu;

namespace Vfio.Tests.Core.Kvm;

/// <summary>A container backend that says yes to type1 and type1v2 and does nothing.</summary>
internal sealed class KvmTestIommu : IVfioIommuDriver
{
    public string Name => "kvm-test-iommu";

    public bool HasDeviceRegistration => false;

    public int Open(ulong arg, out object? iommuData)
    {
        iommuData = new object();
        return 0;
    }

    public void Release(object? iommuData)
    {
    }

    public long Ioctl(object? iommuData, uint cmd, ulong arg)
        => cmd == VfioIoctl.CheckExtension
            ? arg is VfioExtension.Type1 or VfioExtension.Type1v2 ? 1 : 0
            : Errno.ENOTTY.Negative();

    public int AttachGroup(object? iommuData, IommuGroup group, VfioGroupType type) => 0;

    public void DetachGroup(object? iommuData, IommuGroup group)
    {
    }

    public int PinPages(object? iommuData, IommuGroup group, ulong iova, int prot, Span<ulong> pfns) => Errno.ENOTTY.Negative();

    public void UnpinPages(object? iommuData, ulong iova, int npage)
    {
    }

    public void RegisterDevice(object? iommuData, VfioDevice device)
    {
    }

    public void UnregisterDevice(object? iommuData, VfioDevice device)
    {
    }

    public int DmaRw(object? iommuData, ulong iova, Span<byte> data, bool write) => Errno.ENOTTY.Negative();
}
