// Seed 000 in docs/races.md: the early vfio core's two group life-cycle bugs in one run
// (drivers/vfio/group.c and vfio_main.c, v6.12; the earlier designs as variants). A user
// holds edu open; an administrator unbinds it from vfio-pci — the unbind waits for the user —
// and then hot-removes it; a second thread of the user polls VFIO_GROUP_GET_STATUS, and the
// user keeps its group fd after the device is gone and uses it again.
//
// Today's kernel: VIABLE holds throughout the wait (DMA ownership: the group is in a
// container), and once the last device is gone the kept group fd answers ENODEV
// (GET_STATUS and SET_CONTAINER: the group let go of its iommu_group, v6.1). With the fix off
// (the legacy viability model without the unbound_list, and a vfio group that borrows its
// device's iommu_group reference) VIABLE drops while the unbind waits (Invariant), and the
// kept fd's next ioctl dereferences the iommu_group freed with the device (UseAfterFree).

using Vfio.Core;
using Vfio.Core.Client;
using Vfio.Kernel;
using Vfio.Platform.Pci;
using Vfio.Platform.Proc;
using Vfio.Sim.Races;
using static Vfio.Sim.Scenarios.ScenarioContext;

namespace Vfio.Sim.Scenarios.Lifecycle;

/// <summary><c>unbind-group-lifetime</c>: viability polled during a stalled unbind, and a group fd kept across its last device's removal.</summary>
internal sealed class UnbindGroupLifetime : LifecycleScenario
{
    /// <inheritdoc/>
    public override string Name => "unbind-group-lifetime";

    /// <inheritdoc/>
    public override string Description =>
        "Seed 000: a user holds edu open while it is unbound (the unbind waits) and hot-removed; another thread polls GET_STATUS and " +
        "the user keeps its group fd afterwards: VIABLE never drops and the kept fd answers ENODEV. With the fix off VIABLE drops " +
        "during the wait and the kept fd uses the freed iommu_group.";

    /// <inheritdoc/>
    public override RaceInfo Race { get; } = new()
    {
        Item = "seed 000",
        Kernels = "v3.6–v6.0 (the transient non-viable group until 60720a0fc646; the borrowed iommu_group until v6.1)",
        FixCommits = "60720a0fc646 vfio: Add device tracking during unbind; 70693f470848 vfio: Set DMA ownership for VFIO devices (v5.19); " +
                     "ca5f21b25749 vfio: Follow a strict lifetime for struct iommu_group (v6.1)",
        FixSwitch = "VfioDesign.Viability = LegacyNotifier, TrackDevicesDuringUnbind = false, GroupHoldsIommuGroupReference = false",
        Detectors = [RaceDetector.Invariant, RaceDetector.UseAfterFree],
    };

    /// <inheritdoc/>
    public override void ApplyFix(VfioSimBuilder builder, bool on)
    {
        ArgumentNullException.ThrowIfNull(builder);
        if (!on)
        {
            builder.UseDesign(d => d with
            {
                Viability = VfioViabilityModel.LegacyNotifier,
                TrackDevicesDuringUnbind = false,
                GroupHoldsIommuGroupReference = false,
            });
        }
    }

    /// <inheritdoc/>
    public override void Execute(ScenarioContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        VfioSim sim = context.Sim;
        SimProcess user = sim.Spawn("qemu");
        VfioSession session = sim.Open(user, Edu);
        PciDevice edu = sim.Device(Edu);
        string node = $"/dev/vfio/{sim.GroupOf(Edu)}";
        VfioGroup group = ((VfioDevice)edu.DriverData!).Group!;
        KTask remover = sim.Spawn("admin").SpawnThread("unbind+remove", () =>
        {
            sim.Unbind(Edu);
            sim.Machine.Pci.Remove(edu);
        });
        KTask poller = user.SpawnThread("get-status", () => UnbindVsViability.PollViability(sim, session.Group));

        KTask.Msleep(3000);
        session.Device.Dispose();
        remover.Join();
        poller.Join();

        // The group fd outlives its last device: every use is ENODEV.
        Errno status = Errno.ENOENT;
        try
        {
            session.Group.GetStatus();
            status = 0;
        }
        catch (VfioException e)
        {
            status = e.Errno;
        }

        Detect(RaceDetector.WrongErrno, status == Errno.ENODEV, "GET_STATUS on the kept group fd is ENODEV", status == 0 ? "it succeeded" : status.ToString());
        Errno set = Errno.ENOENT;
        try
        {
            session.Group.SetContainer(session.Container);
            set = 0;
        }
        catch (VfioException e)
        {
            set = e.Errno;
        }

        Detect(RaceDetector.WrongErrno, set == Errno.ENODEV, "SET_CONTAINER on the kept group fd is ENODEV", set == 0 ? "it succeeded" : set.ToString());
        session.Group.Dispose();
        session.Container.Dispose();
        Detect(RaceDetector.Leak, group.ReferenceCount == 0, "the group freed with its last fd", $"{group.ReferenceCount} reference(s) left");
        Check(!sim.Machine.Vfs.Exists(node), $"{node} is gone", "it is still there");
    }
}
