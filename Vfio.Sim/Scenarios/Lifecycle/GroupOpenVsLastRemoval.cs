// Race 3 in docs/races.md: open("/dev/vfio/N") racing the removal of the group's last device
// (the group's life cycle in drivers/vfio/group.c, v6.12). An administrator unbinds edu from
// vfio-pci and hot-removes it; the user's open either wins — and the fd then answers ENODEV,
// the group disassociated from its iommu_group (v6.1) — or loses with ENODEV, ENOENT or
// ENXIO. Either way the group is freed with its last reference and its node disappears.
// With the fix off (the vfio group borrows its device's iommu_group reference instead of
// holding its own, as before v6.1) the removal frees the iommu_group under the open fd, and
// the fd's next ioctl dereferences it: a use-after-free.

using Vfio.Core;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Pci;
using Vfio.Platform.Proc;
using Vfio.Sim.Races;
using static Vfio.Sim.Scenarios.ScenarioContext;

namespace Vfio.Sim.Scenarios.Lifecycle;

/// <summary><c>group-open-vs-removal</c>: a group open racing the unbind and hot removal of the group's only device.</summary>
internal sealed class GroupOpenVsLastRemoval : LifecycleScenario
{
    /// <inheritdoc/>
    public override string Name => "group-open-vs-removal";

    /// <inheritdoc/>
    public override string Description =>
        "Race 3: open(/dev/vfio/N) while the group's only device is unbound from vfio-pci and hot-removed: the open succeeds (its fd " +
        "then answers ENODEV) or fails with ENODEV/ENOENT/ENXIO, and the group is freed with its last reference, its node gone. " +
        "With the fix off the fd uses the freed iommu_group.";

    /// <inheritdoc/>
    public override RaceInfo Race { get; } = new()
    {
        Item = "3",
        Kernels = "≤ v6.0",
        FixCommits = "ca5f21b25749 vfio: Follow a strict lifetime for struct iommu_group; " +
                     "3dd59a7dcb97 vfio: Make the group FD disassociate from the iommu_group (v6.1)",
        FixSwitch = "VfioDesign.GroupHoldsIommuGroupReference = false",
        Detectors = [RaceDetector.UseAfterFree],
    };

    /// <inheritdoc/>
    public override void ApplyFix(VfioSimBuilder builder, bool on)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.UseDesign(d => d with { GroupHoldsIommuGroupReference = on });
    }

    /// <inheritdoc/>
    public override void Execute(ScenarioContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        VfioSim sim = context.Sim;
        SimProcess user = sim.Spawn("user");
        int id = sim.GroupOf(Edu);
        string path = $"/dev/vfio/{id}";
        PciDevice edu = sim.Device(Edu);
        VfioGroup group = ((VfioDevice)edu.DriverData!).Group!;

        // echo bdf > …/vfio-pci/unbind, then echo 1 > …/remove (pci_stop_and_remove_bus_device).
        KTask remover = sim.Spawn("admin").SpawnThread("unbind+remove", () =>
        {
            sim.Unbind(Edu);
            sim.Machine.Pci.Remove(edu);
        });
        int fd = user.Open(path);
        Detect(RaceDetector.WrongErrno, fd >= 0 || fd == Errno.ENODEV.Negative() || fd == Errno.ENOENT.Negative() || fd == Errno.ENXIO.Negative(),
            "open() succeeds or fails with ENODEV, ENOENT or ENXIO", ErrnoExtensions.FromReturn(fd).Describe());
        remover.Join();
        if (fd >= 0)
        {
            var status = new VfioGroupStatus { Argsz = 8 };
            long r = user.Ioctl(fd, VfioIoctl.GroupGetStatus, System.Runtime.InteropServices.MemoryMarshal.AsBytes(System.Runtime.InteropServices.MemoryMarshal.CreateSpan(ref status, 1)));
            Detect(RaceDetector.WrongErrno, r == Errno.ENODEV.Negative(), "GET_STATUS on a group fd whose last device is gone is ENODEV", ErrnoExtensions.FromReturn(r).Describe());
            user.Close(fd);
        }

        Detect(RaceDetector.Leak, group.ReferenceCount == 0, "the group freed once the fd is closed", $"{group.ReferenceCount} reference(s) left");
        Check(!sim.Machine.Vfs.Exists(path), $"{path} is gone", "it is still there");
    }
}
