// VFIO_GROUP_GET_DEVICE_FD racing vfio_unregister_group_dev (race 4 in docs/races.md): since
// v6.6 a device leaves its group's device list before unregister waits for its users, so
// a GET_DEVICE_FD that starts after that point gets ENODEV and cannot starve the unbind;
// only the fd opened before the unbind keeps it waiting, and closing it ends the wait.
// (On linux-6.1 the device stays on the list while unregister waits.)

using Vfio.Core;
using Vfio.Core.Client;
using Vfio.Kernel;
using Vfio.Platform.Proc;
using static Vfio.Sim.Scenarios.ScenarioContext;

namespace Vfio.Sim.Scenarios.Lifecycle;

/// <summary><c>getfd-vs-unregister</c>: device fd lookups racing an unbind that waits for the user.</summary>
internal sealed class GetDeviceFdVsUnregister : LifecycleScenario
{
    /// <inheritdoc/>
    public override string Name => "getfd-vs-unregister";

    /// <inheritdoc/>
    public override string Description =>
        "VFIO_GROUP_GET_DEVICE_FD in a loop while edu is unbound from vfio-pci: once the device has left its group's list " +
        "(the v6.6 order) every lookup is ENODEV, and the unbind ends when the fd opened before it is closed.";

    /// <inheritdoc/>
    public override void Execute(ScenarioContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        VfioSim sim = context.Sim;
        SimProcess user = sim.Spawn("user");
        VfioSession session = sim.Open(user, Edu);
        VfioDevice vdev = (VfioDevice)sim.Device(Edu).DriverData!;
        VfioGroup group = vdev.Group!;
        bool modern = sim.Profile.Has(VfioCoreFeatures.UnregisterHidesDeviceBeforeWaiting);
        bool started = false;
        KTask unbinder = sim.Spawn("admin").SpawnThread("unbind", () =>
        {
            Volatile.Write(ref started, true);
            sim.Unbind(Edu);
        });

        int handedOutAfterLeaving = 0;
        for (int i = 0; i < 20 && !unbinder.HasExited; i++)
        {
            bool left = Volatile.Read(ref started) && !group.Devices.Contains(vdev);
            try
            {
                session.Group.GetDeviceFd(Edu).Dispose();
                if (left)
                {
                    handedOutAfterLeaving++;
                }
            }
            catch (VfioException e)
            {
                CheckEqual(e.Errno, Errno.ENODEV, "the errno of a GET_DEVICE_FD racing the unbind");
            }

            KTask.Schedule();
        }

        if (modern)
        {
            CheckEqual(handedOutAfterLeaving, 0, "device fds handed out after the device left its group's list");
            // Sleep rather than yield: under PCT a yielding main task that outranks the
            // unbinder would keep running and starve it.
            while (!Volatile.Read(ref started) || group.Devices.Count != 0)
            {
                KTask.Msleep(1);
            }

            VfioException? refused = null;
            try
            {
                session.Group.GetDeviceFd(Edu).Dispose();
            }
            catch (VfioException e)
            {
                refused = e;
            }

            CheckEqual(refused?.Errno, Errno.ENODEV, "the errno of GET_DEVICE_FD once unregister has started");
        }

        Check(!unbinder.HasExited, "the unbind waits while the first device fd is open", "it already finished");
        session.Device.Dispose();
        unbinder.Join();
        session.Group.Dispose();
        session.Container.Dispose();
        CheckEqual(sim.DriverOf(Edu), null, "edu's driver after the unbind");
    }
}
