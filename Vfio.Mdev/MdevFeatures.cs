// Release-dependent behaviour of the mdev core (drivers/vfio/mdev/mdev_core.c and
// mdev_sysfs.c) as named profile features (see Vfio.Kernel/KernelFeature.cs). Gate on
// these with kernel.Profile.Has(...), never on a version number.

using Vfio.Kernel;

namespace Vfio.Mdev;

/// <summary>Profile features of the mdev core.</summary>
public static class MdevFeatures
{
    /// <summary>
    /// The <c>mdev_bus</c> compat class (/sys/class/mdev_bus) is registered when the mdev
    /// module loads (v6.5); before, the first mdev_register_parent() registered it, unserialised,
    /// so two parents registering at once could both try (a sysfs duplicate WARN and -ENOMEM).
    /// </summary>
    public static KernelFeature CompatClassAtInit { get; } = new()
    {
        Name = nameof(CompatClassAtInit),
        Description = "The mdev_bus compat class (/sys/class/mdev_bus) is registered when the mdev module loads; before, the first parent registration created it (unserialised: two at once could both try, a sysfs duplicate WARN and ENOMEM).",
        Since = new(6, 5),
        Commits = [new("ff598081e5b9", "vfio/mdev: Move the compat_class initialization to module init")],
    };

    /// <summary>
    /// A type directory that cannot be created fails mdev_register_parent() with that errno,
    /// after removing the types made so far and mdev_supported_types (v6.6); before, the
    /// types made so far were removed but registration returned 0, and the later
    /// unregistration dereferenced the type that was never added (a NULL-pointer Oops).
    /// </summary>
    public static KernelFeature TypeSysfsFailureFailsRegistration { get; } = new()
    {
        Name = nameof(TypeSysfsFailureFailsRegistration),
        Description = "A type directory that cannot be created fails parent registration with its errno and removes mdev_supported_types; before, registration returned 0 without the types and the later unregistration oopsed on the type that was never added.",
        Since = new(6, 6),
        Commits = [new("c777b11d34e0", "vfio/mdev: Fix a null-ptr-deref bug for mdev_unregister_parent()")],
    };
}
