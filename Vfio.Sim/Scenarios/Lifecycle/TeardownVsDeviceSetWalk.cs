// The teardown order of a vfio device against a walk of its device set (drivers/vfio/vfio_main.c
// vfio_device_release and vfio_release_device_set, drivers/vfio/pci/vfio_pci_core.c at v6.1;
// vfio_pci_core_uninit_device at v6.0). The default machine's dual-port NIC is two IOMMU
// groups on one bus, so its ports share one vfio-pci device set. A user has both ports in a
// VM; it has closed port 1's device fd (keeping its group fd) and keeps issuing
// VFIO_DEVICE_PCI_HOT_RESET on port 0 while an administrator unbinds port 1, whose unbind
// does not wait (nobody has it open). Since v6.1 the last put takes port 1 off the set
// before its driver destroys anything, so a reset either covers the whole set (0, or EAGAIN
// while the unbind holds port 1's device lock) or finds port 1 gone (EINVAL). In the ≤v6.0
// order (VfioDesign.TeardownBeforeLeavingDeviceSet) vfio-pci destroys port 1's igate,
// ioeventfds_lock and vma_lock while port 1 is still on the set's list; a reset that walks the
// set in that window try-locks the destroyed vma_lock: a KASAN report.

using Vfio.Core;
using Vfio.Core.Client;
using Vfio.Kernel;
using Vfio.Pci;
using Vfio.Platform.Proc;
using Vfio.Sim.Races;
using static Vfio.Sim.Scenarios.ScenarioContext;

namespace Vfio.Sim.Scenarios.Lifecycle;

/// <summary><c>teardown-vs-device-set-walk</c>: a device's teardown against a hot reset that walks its device set (seed 002).</summary>
internal sealed class TeardownVsDeviceSetWalk : LifecycleScenario
{
    /// <summary>Port 0 of the default machine's dual-port NIC: the user's hot resets go through it.</summary>
    public const string Port0 = "0000:08:00.0";

    /// <summary>Port 1: closed by the user, unbound by the administrator.</summary>
    public const string Port1 = "0000:08:00.1";

    // How many hot resets the user makes at most while the unbind runs.
    private const int MaxResets = 64;

    /// <inheritdoc/>
    public override string Name => "teardown-vs-device-set-walk";

    /// <inheritdoc/>
    public override string Description =>
        "A user keeps hot-resetting port 0 of a dual-port NIC while an administrator unbinds port 1 (closed, so the unbind does not " +
        "wait): since v6.1 port 1 leaves the device set before vfio-pci tears it down and the resets see a whole set or none of port 1; " +
        "in the v6.0 order vfio-pci destroys port 1's locks while it is still on the set and a reset walking the set uses them (KASAN).";

    /// <inheritdoc/>
    public override RaceInfo Race { get; } = new()
    {
        Item = "seed 002",
        Kernels = "≤ v6.0",
        FixCommits = "the v6.1 vfio_device life-cycle series (Kevin Tian, Yi Liu), commits not established: \"vfio: Add helpers for unifying " +
                     "vfio_device life cycle\" (vfio_device_release leaves the set with vfio_release_device_set, then calls ops->release) and " +
                     "\"vfio/pci: Use the new device life cycle helpers\" (vfio_pci_core_release_dev replaces vfio_pci_core_uninit_device, " +
                     "whose mutex_destroy calls came before vfio_uninit_group_dev)",
        FixSwitch = "VfioDesign.TeardownBeforeLeavingDeviceSet",
        Detectors = [RaceDetector.UseAfterFree],
    };

    /// <inheritdoc/>
    protected override IReadOnlyList<string> Functions => [Port0, Port1];

    /// <inheritdoc/>
    /// <remarks>
    /// Off: the ≤v6.0 order on the linux-6.1 profile, whose hot reset try-locks each member's
    /// vma_lock as v5.8–v6.9 did (from v6.10 the reset takes no vma_lock, and memory_lock, a
    /// rwsem, is never destroyed).
    /// </remarks>
    public override void ApplyFix(VfioSimBuilder builder, bool on)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.UseDesign(d => d with { TeardownBeforeLeavingDeviceSet = !on });
        if (!on)
        {
            builder.UseProfile(KernelProfile.Linux6_1);
        }
    }

    /// <inheritdoc/>
    public override void Execute(ScenarioContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        VfioSim sim = context.Sim;
        var port1 = (VfioPciCoreDevice)sim.Device(Port1).DriverData!;
        VfioDeviceSet set = port1.DevSet!;
        CheckEqual(set.DeviceCount, 2, "the ports' shared device set (one bus)");

        SimProcess user = sim.Spawn("qemu");
        VfioSession s0 = sim.Open(user, Port0);
        VfioSession s1 = sim.Open(user, Port1);
        int group1 = s1.GroupId;

        // The guest gave port 1 up: its device fd is closed, its group fd still held.
        s1.Device.Dispose();

        bool unbound = false;
        // The user's resets: back to back (a scheduling point between two), until the unbind
        // returned or a bounded number were made (a busy loop must not starve the unbind
        // under a priority scheduler).
        KTask resetter = user.SpawnThread("hot-reset", () =>
        {
            for (int i = 0; i < MaxResets && !Volatile.Read(ref unbound); i++)
            {
                try
                {
                    s0.Device.PciHotReset(s0.Group, s1.Group);
                }
                catch (VfioException e)
                {
                    Check(e.Errno is Errno.EAGAIN or Errno.EINVAL or Errno.EBUSY,
                        "a hot reset during the unbind succeeds, or fails EAGAIN (port 1's device lock is held), EINVAL (port 1 left the set) or EBUSY",
                        $"{e.Errno}: {e.Reason}");
                }

                KTask.Schedule();
            }
        });

        SimProcess admin = sim.Spawn("admin");
        string? from = null;
        KTask unbinder = admin.SpawnThread("unbind", () =>
        {
            from = sim.Unbind(Port1, admin);
            Volatile.Write(ref unbound, true);
        });
        unbinder.Join();
        resetter.Join();

        CheckEqual(from, VfioPciDriver.DriverName, "the driver the unbind took port 1 from");
        CheckEqual(sim.DriverOf(Port1), null, "port 1's driver after the unbind");
        CheckEqual(sim.DriverOf(Port0), VfioPciDriver.DriverName, "port 0 stays with vfio-pci");
        CheckEqual(s0.Device.ReadConfig16(0), (ushort)0x8086, "port 0's vendor id through its config region after the resets");
        s0.Dispose();
        s1.Dispose();

        Detect(RaceDetector.Leak, port1.IsReleased, "port 1's vfio device was released by its last put", "it is still referenced");
        Detect(RaceDetector.Leak, set.DeviceCount == 1, "the device set holds port 0 alone", $"{set.DeviceCount} devices");
        Detect(RaceDetector.Leak, !sim.Machine.Vfs.Exists($"/dev/vfio/{group1}"), $"port 1's group node /dev/vfio/{group1} is gone", "it is still there");
        Detect(RaceDetector.Leak, user.Mm.LockedVm == 0, "the user's locked_vm is 0", $"locked_vm {user.Mm.LockedVm}");
    }
}
