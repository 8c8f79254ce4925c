// Release-dependent behaviour of the simulated machine's kernel side — mm/gup.c and
// drivers/pci/pci.c — as named profile features (see Vfio.Kernel/KernelFeature.cs). Gate
// on these with machine.Kernel.Profile.Has(...), never on a version number.

using Vfio.Kernel;

namespace Vfio.Platform;

/// <summary>Profile features of the mm and PCI-core layers.</summary>
public static class PlatformFeatures
{
    /// <summary>
    /// gup_must_unshare() for the shared zero page: a read-only FOLL_LONGTERM pin of a private
    /// mapping unshares the zero page into a fresh anonymous page (v6.2); before, GUP pinned
    /// the zero page itself.
    /// </summary>
    public static KernelFeature LongTermGupUnsharesZeroPage { get; } = new()
    {
        Name = nameof(LongTermGupUnsharesZeroPage),
        Description = "A read-only FOLL_LONGTERM pin of a private mapping unshares the shared zero page into a fresh anonymous page and pins that; before, GUP pinned the zero page itself.",
        Since = new(6, 2),
        Commits = [new("84209e87c696", "mm/gup: reliable R/O long-term pinning in COW mappings")],
    };

    /// <summary>
    /// pci_reset_function() takes the upstream bridge's device_lock before the device's, so the
    /// bridge's configuration (and a secondary bus reset through it) cannot change under the
    /// reset (v6.10); before, only the device's own lock was taken.
    /// </summary>
    public static KernelFeature ResetFunctionLocksUpstreamBridge { get; } = new()
    {
        Name = nameof(ResetFunctionLocksUpstreamBridge),
        Description = "pci_reset_function() takes the upstream bridge's device_lock before the device's own; before, it took only the device's.",
        Since = new(6, 10),
        Commits = [new("7e89efc6e9e4", "PCI: Lock upstream bridge for pci_reset_function()")],
    };

    /// <summary>
    /// A secondary bus reset (pci_reset_bus → pci_bus_trylock) try-locks the bridge above the
    /// bus before the functions below it, and a function that is itself a bridge is locked as
    /// the top of its own bus (v6.11); before, only the functions on the bus and below were
    /// locked, so the bridge whose Bridge Control register pulses the reset could change under
    /// it. The fix also went to the stable series (4.19.322 has it); the linux-6.1 profile
    /// models the v6.1 release, without it.
    /// </summary>
    public static KernelFeature BusResetLocksBridge { get; } = new()
    {
        Name = nameof(BusResetLocksBridge),
        Description = "A bus reset try-locks the bridge above the bus first, then each function below it (a bridge below as the top of its own bus), and fails EAGAIN when any of them is held; before, the bridge above was not locked.",
        Since = new(6, 11),
        Commits = [new("a4e772898f8b", "PCI: Add missing bridge lock to pci_bus_lock()")],
    };
}
