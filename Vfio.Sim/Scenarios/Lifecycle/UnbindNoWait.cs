// The unbind wait of vfio_unregister_group_dev (drivers/vfio/vfio_main.c, v6.12) against
// the design that would not wait: user space holds edu open (a DMA mapping, a BAR mmap, an
// eventfd on VFIO_PCI_REQ_IRQ_INDEX) and a vCPU thread keeps issuing device ioctls, config
// reads and BAR loads, while an administrator unbinds edu from vfio-pci. The kernel waits:
// the REQ eventfd fires, the user's handler stops the vCPU, unmaps and closes, and the unbind
// completes with nothing left. Without the wait (VfioDesign.Unbind = NoWait), vfio-pci's
// remove drops the last struct device reference and frees the vfio_pci_core_device under
// the open fd; the user's next ioctl, read or close dereferences it: a KASAN report.

using Vfio.Core;
using Vfio.Core.Client;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Proc;
using Vfio.Sim.Races;
using static Vfio.Sim.Scenarios.ScenarioContext;

namespace Vfio.Sim.Scenarios.Lifecycle;

/// <summary><c>unbind-nowait</c>: the unbind wait against a design that frees the device under the user's open fd.</summary>
internal sealed class UnbindNoWait : LifecycleScenario
{
    /// <inheritdoc/>
    public override string Name => "unbind-nowait";

    /// <inheritdoc/>
    public override string Description =>
        "A user keeps issuing ioctls, config reads and BAR loads on edu while an administrator unbinds it: the kernel's unbind waits " +
        "and asks through the REQ eventfd, the user releases and nothing leaks; an unbind that does not wait frees the device under " +
        "the open fd and the user's next access is a use-after-free (KASAN).";

    /// <inheritdoc/>
    public override RaceInfo Race { get; } = new()
    {
        Item = "design: unbind without waiting",
        Kernels = "proposed, never merged",
        FixCommits = "the unbind wait as it is: vfio_unregister_group_dev() drops the registration reference and waits on the device's " +
                     "completion (vfio_device_put_registration / wait_for_completion_timeout, asking ops->request every 10 s) until " +
                     "the last fd's release, before the driver's vfio_put_device can free the device",
        FixSwitch = "VfioDesign.Unbind = NoWait",
        Detectors = [RaceDetector.UseAfterFree],
    };

    /// <inheritdoc/>
    public override void ApplyFix(VfioSimBuilder builder, bool on)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.UseDesign(d => d with { Unbind = on ? VfioUnbindPolicy.RequestAndWait : VfioUnbindPolicy.NoWait });
    }

    /// <inheritdoc/>
    public override void Execute(ScenarioContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        VfioSim sim = context.Sim;
        (SimProcess user, VfioSession session, UserBuffer buffer, int req) = OpenWithRequestChannel(sim);
        VfioRegionMapping bar = session.Device.MmapRegion(VfioPciIndex.Bar0, 0, 4096);
        long pinnedWhileOpen = sim.PinnedPages;
        uint id = bar.Read32(0);

        bool stop = false;    // set by the REQ handler: the device must be released
        bool unbound = false; // set by the administrator once the unbind returned

        // The vCPU: device ioctls, config reads and BAR loads until asked to stop or the device is gone.
        KTask vcpu = user.SpawnThread("vcpu", () =>
        {
            while (!Volatile.Read(ref stop) && !Volatile.Read(ref unbound))
            {
                _ = session.Device.GetInfo();
                CheckEqual(session.Device.ReadConfig16(0), (ushort)0x1234, "edu's vendor id through the config region");
                CheckEqual(bar.Read32(0), id, "edu's identification register through the BAR mapping");
                KTask.Msleep(1); // the guest runs a while before its next exit
            }

            if (!Volatile.Read(ref stop))
            {
                // The unbind returned while the device was open (it did not wait): the user
                // notices nothing and ends as it would, unmapping and closing.
                bar.Unmap();
                session.Dispose();
            }
        });

        // The REQ handler: asked to release, it stops the vCPU, unmaps and closes.
        KTask handler = user.SpawnThread("req-handler", () =>
        {
            byte[] count = new byte[8];
            long n = user.Read(req, count);
            Check(n == 8, "read() of the REQ eventfd returns its 8-byte count once vfio-pci signals it", ErrnoExtensions.FromReturn(n).Describe());
            Volatile.Write(ref stop, true);
            vcpu.Join();
            bar.Unmap();
            session.Dispose();
            user.Close(req);
        });

        SimProcess admin = sim.Spawn("admin");
        string? from = null;
        KTask unbinder = admin.SpawnThread("unbind", () =>
        {
            from = sim.Unbind(Edu, admin);
            Volatile.Write(ref unbound, true);
        });
        unbinder.Join();
        vcpu.Join();
        handler.Join();

        Check(Volatile.Read(ref stop), "the unbind completes only after the user released the device", "it completed while the device was open");
        CheckEqual(from, Vfio.Pci.VfioPciDriver.DriverName, "the driver the unbind took edu from");
        CheckEqual(sim.DriverOf(Edu), null, "edu's driver after the unbind");
        Detect(RaceDetector.Leak, !sim.Machine.Vfs.Exists($"/dev/vfio/{sim.Device(Edu).IommuGroup?.Id}"), "the group's /dev/vfio node is gone", "it is still there");
        Detect(RaceDetector.Leak, sim.PinnedPages == pinnedWhileOpen - 16, $"the mapping's 16 pins are gone ({pinnedWhileOpen - 16} pinned pages)", $"{sim.PinnedPages} pinned pages");
        Detect(RaceDetector.Leak, user.Mm.LockedVm == 0, "the user's locked_vm is 0", $"locked_vm {user.Mm.LockedVm}");
        buffer.Dispose();
    }
}
