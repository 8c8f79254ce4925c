// Models struct mdev_device (include/linux/mdev.h, drivers/vfio/mdev/mdev_core.c, v6.12):
// a mediated device on the mdev bus, named by its lowercase UUID, child of its parent's
// device, on the global mdev_list from creation until its release.

using Vfio.Platform;
using Vfio.Platform.Base;

namespace Vfio.Mdev;

/// <summary>struct mdev_device: what a vendor driver's probe and remove receive.</summary>
public sealed class MdevDevice : SimDevice
{
    internal MdevDevice(SimMachine machine, Guid uuid, MdevType type, Action<SimDevice> release)
        : base(machine, uuid.ToString("D"), type.Parent!.Dev, release)
    {
        Uuid = uuid;
        Type = type;
    }

    /// <summary>-&gt;uuid.</summary>
    public Guid Uuid { get; }

    /// <summary>-&gt;type.</summary>
    public MdevType Type { get; }

    /// <summary>The type's parent.</summary>
    public MdevParent MdevParent => Type.Parent!;

    /// <summary>-&gt;active: creation finished and no removal started (protected by the core's mdev_list_lock).</summary>
    internal bool Active { get; set; }
}
