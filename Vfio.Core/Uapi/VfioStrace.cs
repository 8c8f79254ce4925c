// Models strace's decoder for include/uapi/linux/vfio.h (strace's src/vfio.c and kvm.c
// conventions): the names of the VFIO and KVM ioctls per file type, registered with the
// machine's strace when vfio loads, and the decoders of their argument structs.

using Vfio.Core.Kvm;
using Vfio.Platform.Proc;

namespace Vfio.Core.Uapi;

/// <summary>The VFIO and KVM ioctls as strace names them.</summary>
internal static class VfioStrace
{
    /// <summary>Registers every VFIO and KVM ioctl with <paramref name="table"/>, on the file type it belongs to.</summary>
    internal static void Register(IoctlDecoderTable table)
    {
        Type container = typeof(VfioContainerFops);
        Type group = typeof(VfioGroupFops);
        Type device = typeof(VfioDeviceFops);

        table.Register(VfioIoctl.GetApiVersion, "VFIO_GET_API_VERSION", null, container);
        table.Register(VfioIoctl.CheckExtension, "VFIO_CHECK_EXTENSION", null, container);
        table.Register(VfioIoctl.SetIommu, "VFIO_SET_IOMMU", null, container);
        table.Register(VfioIoctl.IommuGetInfo, "VFIO_IOMMU_GET_INFO", null, container);
        table.Register(VfioIoctl.IommuMapDma, "VFIO_IOMMU_MAP_DMA", null, container);
        table.Register(VfioIoctl.IommuUnmapDma, "VFIO_IOMMU_UNMAP_DMA", null, container);
        table.Register(VfioIoctl.IommuEnable, "VFIO_IOMMU_ENABLE", null, container);
        table.Register(VfioIoctl.IommuDisable, "VFIO_IOMMU_DISABLE", null, container);
        table.Register(VfioIoctl.IommuDirtyPages, "VFIO_IOMMU_DIRTY_PAGES", null, container);

        table.Register(VfioIoctl.GroupGetStatus, "VFIO_GROUP_GET_STATUS", null, group);
        table.Register(VfioIoctl.GroupSetContainer, "VFIO_GROUP_SET_CONTAINER", null, group);
        table.Register(VfioIoctl.GroupUnsetContainer, "VFIO_GROUP_UNSET_CONTAINER", null, group);
        table.Register(VfioIoctl.GroupGetDeviceFd, "VFIO_GROUP_GET_DEVICE_FD", null, group);

        table.Register(VfioIoctl.DeviceGetInfo, "VFIO_DEVICE_GET_INFO", null, device);
        table.Register(VfioIoctl.DeviceGetRegionInfo, "VFIO_DEVICE_GET_REGION_INFO", null, device);
        table.Register(VfioIoctl.DeviceGetIrqInfo, "VFIO_DEVICE_GET_IRQ_INFO", null, device);
        table.Register(VfioIoctl.DeviceSetIrqs, "VFIO_DEVICE_SET_IRQS", null, device);
        table.Register(VfioIoctl.DeviceReset, "VFIO_DEVICE_RESET", null, device);
        table.Register(VfioIoctl.DeviceGetPciHotResetInfo, "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO", null, device);
        table.Register(VfioIoctl.DevicePciHotReset, "VFIO_DEVICE_PCI_HOT_RESET", null, device);
        table.Register(VfioIoctl.DeviceQueryGfxPlane, "VFIO_DEVICE_QUERY_GFX_PLANE", null, device);
        table.Register(VfioIoctl.DeviceGetGfxDmabuf, "VFIO_DEVICE_GET_GFX_DMABUF", null, device);
        table.Register(VfioIoctl.DeviceIoeventfd, "VFIO_DEVICE_IOEVENTFD", null, device);
        table.Register(VfioIoctl.DeviceFeature, "VFIO_DEVICE_FEATURE", null, device);
        table.Register(VfioIoctl.DeviceBindIommufd, "VFIO_DEVICE_BIND_IOMMUFD", null, device);
        table.Register(VfioIoctl.DeviceAttachIommufdPt, "VFIO_DEVICE_ATTACH_IOMMUFD_PT", null, device);
        table.Register(VfioIoctl.DeviceDetachIommufdPt, "VFIO_DEVICE_DETACH_IOMMUFD_PT", null, device);
        table.Register(VfioIoctl.MigGetPrecopyInfo, "VFIO_MIG_GET_PRECOPY_INFO", null, device);

        table.Register(KvmIoctl.GetApiVersion, "KVM_GET_API_VERSION", null, typeof(KvmDevFops));
        table.Register(KvmIoctl.CreateVm, "KVM_CREATE_VM", null, typeof(KvmDevFops));
        table.Register(KvmIoctl.CheckExtension, "KVM_CHECK_EXTENSION");
        table.Register(KvmIoctl.CreateDevice, "KVM_CREATE_DEVICE");
        table.Register(KvmIoctl.SetDeviceAttr, "KVM_SET_DEVICE_ATTR");
        table.Register(KvmIoctl.GetDeviceAttr, "KVM_GET_DEVICE_ATTR");
        table.Register(KvmIoctl.HasDeviceAttr, "KVM_HAS_DEVICE_ATTR");
    }
}
