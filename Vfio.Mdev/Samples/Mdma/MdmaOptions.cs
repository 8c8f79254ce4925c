// The mdma sample's module options (no kernel counterpart: mdma is this simulator's own
// sample, shaped like vfio-ccw and kvmgt, the in-tree drivers that pin guest pages).

namespace Vfio.Mdev.Samples.Mdma;

/// <summary>Options of the mdma sample module. Defaults give a well-behaved driver.</summary>
public sealed record MdmaOptions
{
    /// <summary>
    /// The driver's <c>max_instances</c>: how many mdma devices the parent offers, counted by
    /// the mdev core (the driver has no <c>get_available</c>). 4 by default.
    /// </summary>
    public int MaxInstances { get; init; } = 4;

    /// <summary>
    /// The misbehaving variant: <c>dma_unmap</c> is called but unpins nothing, so an unmap of a
    /// range the device has pinned makes type1 retry the notification until it hits the
    /// kernel's BUG after ten retries.
    /// </summary>
    public bool IgnoreDmaUnmap { get; init; }

    /// <summary>
    /// The driver leaves <c>dma_unmap</c> out of its vfio_device_ops: it is never registered
    /// with the container, and every pin it tries fails (EINVAL).
    /// </summary>
    public bool WithoutDmaUnmapOp { get; init; }
}
