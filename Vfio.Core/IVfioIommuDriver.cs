// Models struct vfio_iommu_driver_ops (drivers/vfio/vfio.h, v6.12): an IOMMU backend of
// the legacy container (type1, noiommu). The core keeps registered backends in a list
// searched most-recent first, and gives each container at most one instance (the
// opaque iommu_data, here an object the backend returns from Open).

using Vfio.Platform.Iommu;

namespace Vfio.Core;

/// <summary>enum vfio_group_type.</summary>
public enum VfioGroupType
{
    /// <summary>VFIO_IOMMU: a real IOMMU group.</summary>
    Iommu,

    /// <summary>VFIO_EMULATED_IOMMU: a software group for a device whose driver translates through vfio_pin_pages / vfio_dma_rw.</summary>
    EmulatedIommu,

    /// <summary>VFIO_NO_IOMMU: an unsafe group without isolation.</summary>
    NoIommu,
}

/// <summary>vfio_iommu_driver_ops.</summary>
public interface IVfioIommuDriver
{
    /// <summary>ops-&gt;name.</summary>
    string Name { get; }

    /// <summary>True when the backend has register_device/unregister_device (the kernel requires both or neither).</summary>
    bool HasDeviceRegistration { get; }

    /// <summary>-&gt;open(arg): a new instance for SET_IOMMU(arg); 0 or -errno.</summary>
    int Open(ulong arg, out object? iommuData);

    /// <summary>-&gt;release(): the container's last group detached.</summary>
    void Release(object? iommuData);

    /// <summary>-&gt;ioctl(): with a null instance only VFIO_CHECK_EXTENSION is asked.</summary>
    long Ioctl(object? iommuData, uint cmd, ulong arg);

    /// <summary>-&gt;attach_group(); 0 or -errno.</summary>
    int AttachGroup(object? iommuData, IommuGroup group, VfioGroupType type);

    /// <summary>-&gt;detach_group().</summary>
    void DetachGroup(object? iommuData, IommuGroup group);

    /// <summary>-&gt;pin_pages(): pins <paramref name="pfns"/>.Length pages from <paramref name="iova"/>; the count pinned or -errno (null op: -ENOTTY).</summary>
    int PinPages(object? iommuData, IommuGroup group, ulong iova, int prot, Span<ulong> pfns);

    /// <summary>-&gt;unpin_pages().</summary>
    void UnpinPages(object? iommuData, ulong iova, int npage);

    /// <summary>-&gt;register_device(): a device of the container was opened.</summary>
    void RegisterDevice(object? iommuData, VfioDevice device);

    /// <summary>-&gt;unregister_device(): its last close.</summary>
    void UnregisterDevice(object? iommuData, VfioDevice device);

    /// <summary>-&gt;dma_rw(): CPU access to IOVA space on behalf of an emulated device; 0 or -errno (null op: -ENOTTY).</summary>
    int DmaRw(object? iommuData, ulong iova, Span<byte> data, bool write);
}
