// The mdev vendor API a run uses (MdevDesign.Api): today's mdev_driver + vfio_device ops, or
// the 2016 series' mdev_parent_ops with the vfio_mdev bridge (docs/mdev.md, "The 2016 design").

namespace Vfio.Mdev;

/// <summary>Which vendor API and removal rule the mdev core follows.</summary>
public enum MdevApi
{
    /// <summary>Today's kernel: vendors are mdev_drivers registering vfio_devices (dma_unmap op); removal always proceeds and blocks until the device is closed.</summary>
    Current,

    /// <summary>
    /// The 2016 "Add Mediated device support" series (v4.10): vendors register
    /// <see cref="Design2016.IMdevParentOps"/> with <see cref="Design2016.Mdev2016Core.RegisterDevice"/>;
    /// the vfio_mdev bus driver bridges to vfio; vendor remove may refuse with EBUSY.
    /// </summary>
    Series2016,
}
