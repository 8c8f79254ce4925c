// open("/dev/vfio/N") racing the removal of the group's last device (the group's life
// cycle in drivers/vfio/group.c): the open either wins — and the fd then answers
// GET_STATUS or ENODEV once the group is gone — or it loses with ENODEV, ENOENT or ENXIO.
// Either way the group is freed with its last reference and its node disappears.

using Vfio.Core;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Proc;
using static Vfio.Sim.Scenarios.ScenarioContext;

namespace Vfio.Sim.Scenarios.Lifecycle;

/// <summary><c>group-open-vs-removal</c>: a group open racing the unbind of the group's only device.</summary>
internal sealed class GroupOpenVsLastRemoval : LifecycleScenario
{
    /// <inheritdoc/>
    public override string Name => "group-open-vs-removal";

    /// <inheritdoc/>
    public override string Description =>
        "open(/dev/vfio/N) while the group's only device is unbound from vfio-pci: the open succeeds or fails with " +
        "ENODEV/ENOENT/ENXIO, and the group is freed with its last reference, its node gone.";

    /// <inheritdoc/>
    public override void Execute(ScenarioContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        VfioSim sim = context.Sim;
        SimProcess user = sim.Spawn("user");
        int id = sim.GroupOf(Edu);
        string path = $"/dev/vfio/{id}";
        VfioGroup group = ((VfioDevice)sim.Device(Edu).DriverData!).Group!;
        KTask unbinder = sim.Spawn("admin").SpawnThread("unbind", () => sim.Unbind(Edu));
        int fd = user.Open(path);
        Check(fd >= 0 || fd == Errno.ENODEV.Negative() || fd == Errno.ENOENT.Negative() || fd == Errno.ENXIO.Negative(),
            "open() succeeds or fails with ENODEV, ENOENT or ENXIO", ErrnoExtensions.FromReturn(fd).Describe());
        unbinder.Join();
        if (fd >= 0)
        {
            var status = new VfioGroupStatus { Argsz = 8 };
            long r = user.Ioctl(fd, VfioIoctl.GroupGetStatus, System.Runtime.InteropServices.MemoryMarshal.AsBytes(System.Runtime.InteropServices.MemoryMarshal.CreateSpan(ref status, 1)));
            Check(r == 0 || r == Errno.ENODEV.Negative(), "GET_STATUS on the won fd succeeds or is ENODEV", ErrnoExtensions.FromReturn(r).Describe());
            user.Close(fd);
        }

        CheckEqual(group.ReferenceCount, 0, "the group's references once the fd is closed");
        Check(!sim.Machine.Vfs.Exists(path), $"{path} is gone", "it is still there");
    }
}
