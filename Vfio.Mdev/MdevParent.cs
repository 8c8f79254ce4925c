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
    public bool IsRegistered
    {
        get => Volatile.Read(ref _isRegistered);
        internal set => Volatile.Write(ref _isRegistered, value);
    }

    private bool _isRegistered;

    /// <summary>The number of types whose directory was made (the 6.1 core can register with fewer than it was given).</summary>
    internal int TypesAdded { get; set; }

    /// <summary>/sys/class/mdev_bus/&lt;parent&gt; was made.</summary>
    internal bool HasCompatLink { get; set; }

    /// <summary>
    /// Design variant without <see cref="MdevDesign.SynchronizeWithParentRemoval"/> (the v5.1
    /// core): the reference on the parent that registration holds and create/remove take
    /// for their duration; unregistration drops the registration's, after which the parent
    /// is freed and any further get is a use-after-free.
    /// </summary>
    internal KRef? Ref { get; set; }
}
