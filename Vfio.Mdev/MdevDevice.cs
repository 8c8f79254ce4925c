// Models struct mdev_device (include/linux/mdev.h, drivers/vfio/mdev/mdev_core.c, v6.12):
// a mediated device on the mdev bus, named by its lowercase UUID, child of its parent's
// device, on the global mdev_list from creation until its release.

using Vfio.Platform;
using Vfio.Platform.Base;
using Vfio.Platform.Fs;

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

    /// <summary>The device's <c>remove</c> attribute (null once it removed itself or the device left the bus).</summary>
    internal VfsNode? RemoveFile { get; set; }

    // 1 once device_remove_file_self() ran: only the first writer goes on.
    private int _removeFileGone;

    /// <summary>device_remove_file_self(): true for the one caller that removes the file.</summary>
    internal bool TakeRemoveFile() => Interlocked.Exchange(ref _removeFileGone, 1) == 0;

    /// <summary>Lets <see cref="TakeRemoveFile"/> succeed again (the file was made anew).</summary>
    internal void RestoreRemoveFile() => Volatile.Write(ref _removeFileGone, 0);

    // 1 once device_del ran on it (the design variant without the active flag can try twice).
    private int _deleted;

    internal bool TakeDelete() => Interlocked.Exchange(ref _deleted, 1) == 0;
}
