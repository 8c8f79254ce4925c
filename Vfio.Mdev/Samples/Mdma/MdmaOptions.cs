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
    /// with the container. Since v6.6 (linux-6.12) every pin it tries fails (EINVAL); on
    /// linux-6.1 type1 refuses it (EINVAL) only while no other device in the container has
    /// <c>dma_unmap</c> — with one, its pins succeed and are never unpinned on an unmap, so
    /// type1 ends in its BUG after 10 retries.
    /// </summary>
    public bool WithoutDmaUnmapOp { get; init; }
}
