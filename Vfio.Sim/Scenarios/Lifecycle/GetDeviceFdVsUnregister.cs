// Race 4 in docs/races.md: VFIO_GROUP_GET_DEVICE_FD racing vfio_unregister_group_dev
// (drivers/vfio/vfio_main.c and group.c, v6.12; the v6.1 order on the linux-6.1 profile).
// Since v6.6 a device leaves its group's device list before unregister waits for its users,
// so a GET_DEVICE_FD that starts after that point gets ENODEV and cannot hold the unbind
// off; the unbind ends as soon as the fd opened before it is closed. On v6.1 the device
// stays findable while unregister waits, so a user that keeps re-opening (each new fd
// opened before the old one is closed) starves the unbind for as long as it likes.
//
// The user holds one device fd from before the unbind, re-opens once a second of virtual
// time (keeping at most one extra fd), and closes the old fd after a few rounds. Detectors:
// StalledUnbind — the unbind still waits, held off only by fds opened during its wait, a
// bound of virtual time after the last fd from before it was closed; WrongErrno — a
// GET_DEVICE_FD that started after unregister dropped its reference got a new fd.

using Vfio.Core;
using Vfio.Core.Client;
using Vfio.Kernel;
using Vfio.Platform.Proc;
using Vfio.Sim.Races;
using static Vfio.Sim.Scenarios.ScenarioContext;

namespace Vfio.Sim.Scenarios.Lifecycle;

/// <summary><c>getfd-vs-unregister</c>: device fd lookups racing an unbind that waits for the user.</summary>
internal sealed class GetDeviceFdVsUnregister : LifecycleScenario
{
    // One GET_DEVICE_FD a second of virtual time; the fd from before the unbind is closed at
    // round CloseOldFdAt, and the unbind must be over StallBound seconds later.
    private const int Rounds = 30;
    private const int CloseOldFdAt = 3;
    private const int StallBoundSeconds = 20;

    /// <inheritdoc/>
    public override string Name => "getfd-vs-unregister";

    /// <inheritdoc/>
    public override string Description =>
        "Race 4: VFIO_GROUP_GET_DEVICE_FD once a second, each new fd opened before the previous one is closed, while edu is unbound " +
        "from vfio-pci: once unregister has started every lookup is ENODEV (v6.6+), and the unbind ends when the fd opened before it " +
        "is closed. With the fix off (linux-6.1) new fds keep the unbind waiting.";

    /// <inheritdoc/>
    public override RaceInfo Race { get; } = new()
    {
        Item = "4",
        Kernels = "≤ v6.5",
        FixCommits = "291872a533a2 vfio: Move vfio_device_group_unregister() to be the first operation in unregister; " +
                     "38c24544e10a vfio: Move device_del() before waiting for the last vfio_device registration refcount (v6.6)",
        FixSwitch = "profile linux-6.1",
        Detectors = [RaceDetector.StalledUnbind, RaceDetector.WrongErrno],
    };

    /// <inheritdoc/>
    public override void ApplyFix(VfioSimBuilder builder, bool on)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.UseProfile(on ? KernelProfile.Linux6_12 : KernelProfile.Linux6_1);
    }

    /// <inheritdoc/>
    public override void Execute(ScenarioContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        VfioSim sim = context.Sim;
        SimProcess user = sim.Spawn("user");
        VfioSession session = sim.Open(user, Edu);
        VfioDevice vdev = (VfioDevice)sim.Device(Edu).DriverData!;
        VfioGroup group = vdev.Group!;
        KTask unbinder = sim.Spawn("admin").SpawnThread("unbind", () => sim.Unbind(Edu));

        VfioDeviceFd? old = session.Device;
        VfioDeviceFd? held = null;
        bool heldOpenedDuringWait = false;
        int handedOutAfterStart = 0;
        long oldClosedAt = 0;
        for (int round = 0; round < Rounds && !unbinder.HasExited; round++)
        {
            // Only this task opens edu: the registration count is the fds it holds, plus one
            // until unregister drops the device's own reference — the moment it has started.
            int mine = (old is null ? 0 : 1) + (held is null ? 0 : 1);
            bool started = vdev.RegistrationCount <= mine;
            try
            {
                VfioDeviceFd fd = session.Group.GetDeviceFd(Edu);
                held?.Dispose();
                held = fd;
                heldOpenedDuringWait = started;
                if (started)
                {
                    handedOutAfterStart++;
                }
            }
            catch (VfioException e)
            {
                Detect(RaceDetector.WrongErrno, e.Errno == Errno.ENODEV, "GET_DEVICE_FD racing the unbind succeeds or is ENODEV", e.Message);
                held?.Dispose();
                held = null;
                heldOpenedDuringWait = false;
            }

            if (round == CloseOldFdAt && old is not null)
            {
                old.Dispose();
                old = null;
                oldClosedAt = sim.Kernel.Clock.NowNs;
            }

            KTask.Msleep(1000);
        }

        long waited = (sim.Kernel.Clock.NowNs - oldClosedAt) / 1_000_000_000L;
        Detect(
            RaceDetector.StalledUnbind,
            unbinder.HasExited || old is not null || !heldOpenedDuringWait || waited < StallBoundSeconds,
            $"the unbind completes within {StallBoundSeconds} s of the last device fd opened before it being closed",
            $"it still waits {waited} s later, held off by a device fd opened during its wait");
        Detect(
            RaceDetector.WrongErrno,
            handedOutAfterStart == 0,
            "ENODEV from every GET_DEVICE_FD that starts after unregister has begun",
            $"{handedOutAfterStart} new device fd(s) handed out during the unregister wait");

        held?.Dispose();
        old?.Dispose();
        unbinder.Join();
        Check(!group.Devices.Contains(vdev), "edu has left its group's device list", "it is still listed");
        session.Group.Dispose();
        session.Container.Dispose();
        CheckEqual(sim.DriverOf(Edu), null, "edu's driver after the unbind");
    }
}
