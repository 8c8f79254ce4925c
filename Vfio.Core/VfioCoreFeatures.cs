// Release-dependent behaviour of drivers/vfio/{vfio_main,group}.c as named profile features
// (see Vfio.Kernel/KernelFeature.cs). Gate on these with Core.Kernel.Profile.Has(...), never
// on a version number. What a profile changes here is an errno and an order, not the lock
// order: both presets use v6.12's (group_lock before the device set's lock).

using Vfio.Kernel;

namespace Vfio.Core;

/// <summary>Profile features of the vfio core.</summary>
public static class VfioCoreFeatures
{
    /// <summary>
    /// VFIO_GROUP_SET_CONTAINER with a file that is neither a vfio container nor an iommufd
    /// is EBADFD (v6.2, when iommufd became a container stand-in); before, EINVAL.
    /// </summary>
    public static KernelFeature SetContainerUnknownFileIsEbadfd { get; } = new()
    {
        Name = nameof(SetContainerUnknownFileIsEbadfd),
        Description = "VFIO_GROUP_SET_CONTAINER with an fd that is neither a vfio container nor an iommufd fails EBADFD; before, EINVAL.",
        Since = new(6, 2),
        Commits = [new("2a3dab19a0a6", "vfio-iommufd: Allow iommufd to be used in place of a container fd")],
    };

    /// <summary>
    /// vfio_pin_pages() refuses (EINVAL) and vfio_unpin_pages() ignores (WARN) a device whose
    /// driver has no dma_unmap op (v6.6); before, the call went on to the IOMMU backend, where
    /// type1 refused it only if no device with dma_unmap was open in the container.
    /// </summary>
    public static KernelFeature PinPagesNeedDmaUnmapOp { get; } = new()
    {
        Name = nameof(PinPagesNeedDmaUnmapOp),
        Description = "vfio_pin_pages() fails EINVAL and vfio_unpin_pages() WARNs and does nothing for a device whose driver has no dma_unmap op; before, both went on to the IOMMU backend (type1 pins for it when another device of the container has dma_unmap).",
        Since = new(6, 6),
        Commits = [new("89e07fd46809", "vfio: Do not allow !ops->dma_unmap in vfio_pin/unpin_pages()")],
    };

    /// <summary>
    /// vfio_unregister_group_dev() first takes the device off its group's list and deletes
    /// its struct device (the vfio-dev/vfioN node), then drops the registration and waits for
    /// the last user (v6.6); before, it waited first, with the device still findable through
    /// GET_DEVICE_FD while the wait ran.
    /// </summary>
    public static KernelFeature UnregisterHidesDeviceBeforeWaiting { get; } = new()
    {
        Name = nameof(UnregisterHidesDeviceBeforeWaiting),
        Description = "vfio_unregister_group_dev() removes the device from its group and runs device_del() before waiting for the last user, so new opens fail during the wait; before, it waited first with the device still findable.",
        Since = new(6, 6),
        Commits =
        [
            new("291872a533a2", "vfio: Move vfio_device_group_unregister() to be the first operation in unregister"),
            new("38c24544e10a", "vfio: Move device_del() before waiting for the last vfio_device registration refcount"),
        ],
    };

    /// <summary>
    /// vfio_info_cap_add() rounds every capability up to 8 bytes (zero padding after it), so
    /// each capability of an INFO chain starts 8-byte aligned (v6.6); before, capabilities
    /// were chained back to back at their own sizes (a 12-byte DMA_AVAIL left the next one
    /// at a 4-byte boundary).
    /// </summary>
    public static KernelFeature InfoCapsAlignedTo8 { get; } = new()
    {
        Name = nameof(InfoCapsAlignedTo8),
        Description = "Every capability of an INFO capability chain is rounded up to 8 bytes with zero padding, so the next one starts 8-byte aligned; before, capabilities were chained back to back at their own sizes.",
        Since = new(6, 6),
        Commits = [new("a881b496941f", "vfio: align capability structures")],
    };

    /// <summary>
    /// VFIO_DEVICE_GET_INFO and VFIO_IOMMU_GET_INFO zero their struct and copy back
    /// min(argsz, sizeof(struct)) bytes, padding included (v6.6); before, they copied back
    /// offsetofend(cap_offset) bytes when argsz reached cap_offset, else only up to the
    /// minimal size.
    /// </summary>
    public static KernelFeature InfoCopiesBackUpToArgsz { get; } = new()
    {
        Name = nameof(InfoCopiesBackUpToArgsz),
        Description = "VFIO_DEVICE_GET_INFO and VFIO_IOMMU_GET_INFO copy back min(argsz, sizeof(struct)) bytes of a zeroed struct (its trailing pad included); before, they copied back up to cap_offset when argsz reached it, else only the minimal size.",
        Since = new(6, 6),
        Commits = [new("a881b496941f", "vfio: align capability structures")],
    };
}
