// Race 2 in docs/races.md: the group's viability checked while one of its vfio devices is
// being unbound, on the ≤v5.18 viability model (the legacy group notifier of vfio.c, a design
// variant here). A user holds edu open; an administrator unbinds it from vfio-pci, and the
// unbind waits for the user; a second thread of the user asks VFIO_GROUP_GET_STATUS once a
// second of virtual time until the group is gone. The device has left the group's device list
// but is still bound to vfio-pci, so without 60720a0fc646's unbound_list the legacy check sees
// a device on a driver it does not know and VIABLE drops for the length of the wait (the
// Invariant detector). With the list, VIABLE never flickers; once the last device is gone
// GET_STATUS is ENODEV.

using Vfio.Core;
using Vfio.Core.Client;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Proc;
using Vfio.Sim.Races;
using static Vfio.Sim.Scenarios.ScenarioContext;

namespace Vfio.Sim.Scenarios.Lifecycle;

/// <summary><c>unbind-vs-viability</c>: GET_STATUS polled while an unbind of the group's device waits for its user.</summary>
internal sealed class UnbindVsViability : LifecycleScenario
{
    private const int Polls = 30;

    /// <inheritdoc/>
    public override string Name => "unbind-vs-viability";

    /// <inheritdoc/>
    public override string Description =>
        "Race 2, on the ≤v5.18 viability model: a user holds edu open while it is unbound from vfio-pci, and another thread polls " +
        "VFIO_GROUP_GET_STATUS during the wait: with devices tracked during unbind (the fix) VIABLE never drops; without, it does.";

    /// <inheritdoc/>
    public override RaceInfo Race { get; } = new()
    {
        Item = "2",
        Kernels = "v3.x–v4.x (before the unbound_list; the legacy model until v5.18)",
        FixCommits = "60720a0fc646 vfio: Add device tracking during unbind",
        FixSwitch = "VfioDesign.TrackDevicesDuringUnbind = false (with Viability = LegacyNotifier either way)",
        Detectors = [RaceDetector.Invariant],
    };

    /// <inheritdoc/>
    public override void ApplyFix(VfioSimBuilder builder, bool on)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.UseDesign(d => d with { Viability = VfioViabilityModel.LegacyNotifier, TrackDevicesDuringUnbind = on });
    }

    /// <inheritdoc/>
    public override void Execute(ScenarioContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        VfioSim sim = context.Sim;
        SimProcess user = sim.Spawn("qemu");
        VfioSession session = sim.Open(user, Edu);
        VfioGroup group = ((VfioDevice)sim.Device(Edu).DriverData!).Group!;
        KTask unbinder = sim.Spawn("admin").SpawnThread("unbind", () => sim.Unbind(Edu));
        KTask poller = user.SpawnThread("get-status", () => PollViability(sim, session.Group));

        // The user lets the unbind wait a few seconds before it lets go of the device.
        KTask.Msleep(3000);
        session.Device.Dispose();
        unbinder.Join();
        poller.Join();

        CheckEqual(sim.DriverOf(Edu), null, "edu's driver after the unbind");
        session.Group.Dispose();
        session.Container.Dispose();
        Detect(RaceDetector.Leak, group.ReferenceCount == 0, "the group freed with its last fd", $"{group.ReferenceCount} reference(s) left");
    }

    internal static void PollViability(VfioSim sim, VfioGroupFd groupFd)
    {
        for (int i = 0; i < Polls; i++)
        {
            VfioGroupFlags flags;
            try
            {
                flags = groupFd.GetStatus();
            }
            catch (VfioException e)
            {
                // The last device is gone: the group let go of its iommu_group.
                Detect(RaceDetector.WrongErrno, e.Errno == Errno.ENODEV, "GET_STATUS succeeds, or is ENODEV once the group's last device is gone", e.Message);
                return;
            }

            Detect(RaceDetector.Invariant, (flags & VfioGroupFlags.Viable) != 0,
                "GET_STATUS reports VIABLE throughout the unbind", $"flags {flags} at poll {i} (t={SimClock.FormatNs(sim.Kernel.Clock.NowNs)})");
            KTask.Msleep(500);
        }
    }
}
