// Models struct mdev_parent (include/linux/mdev.h, v6.12): a device that offers mediated
// devices, with the rw-semaphore that orders create/remove (read, trylock) against parent
// unregistration (write), and the per-parent instance count of drivers without
// get_available.

using Vfio.Kernel;
using Vfio.Platform.Base;
using Vfio.Platform.Fs;

namespace Vfio.Mdev;

/// <summary>struct mdev_parent: embed one in the vendor's state and pass it to <see cref="MdevCore.RegisterParent"/>.</summary>
public sealed class MdevParent
{
    private int _availableInstances;

    /// <summary>-&gt;dev (set by registration).</summary>
    public SimDevice Dev { get; internal set; } = null!;

    /// <summary>-&gt;mdev_driver (set by registration).</summary>
    public MdevDriver Driver { get; internal set; } = null!;

    /// <summary>-&gt;types (set by registration).</summary>
    public IReadOnlyList<MdevType> Types { get; internal set; } = [];

    /// <summary>-&gt;available_instances: instances left when the driver has no get_available.</summary>
    public int AvailableInstances => Volatile.Read(ref _availableInstances);

    internal ref int AvailableInstancesRef => ref _availableInstances;

    /// <summary>-&gt;unreg_sem: create/remove hold it for read (trylock), unregistration for write.</summary>
    internal RwSemaphore UnregSem { get; set; } = null!;

    /// <summary>-&gt;mdev_types_kset: &lt;parent&gt;/mdev_supported_types.</summary>
    internal VfsDir? TypesDir { get; set; }

    /// <summary>True between registration and unregistration.</summary>
    public bool IsRegistered { get; internal set; }
}
