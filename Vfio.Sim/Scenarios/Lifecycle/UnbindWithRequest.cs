// The unbind wait with a cooperative user (vfio_unregister_group_dev and vfio-pci's REQ
// channel, since v4.1): user space holds edu open and has an eventfd on VFIO_PCI_REQ_IRQ_INDEX;
// an administrator unbinds edu from vfio-pci; the unbind blocks, the driver's request()
// signals the eventfd, the user's handler thread closes its fds, and the unbind completes.
// Nothing may be left: no pinned page, no locked_vm, no group node, no driver.

using Vfio.Kernel;
using Vfio.Platform.Proc;
using static Vfio.Sim.Scenarios.ScenarioContext;

namespace Vfio.Sim.Scenarios.Lifecycle;

/// <summary><c>unbind-request</c>: an unbind waits for a user, who releases the device when asked through the REQ eventfd.</summary>
internal sealed class UnbindWithRequest : LifecycleScenario
{
    /// <inheritdoc/>
    public override string Name => "unbind-request";

    /// <inheritdoc/>
    public override string Description =>
        "Unbinding edu from vfio-pci while a user holds it open with a mapped buffer: the unbind waits, vfio-pci signals the " +
        "user's REQ eventfd, the user's handler closes its fds, the unbind completes and nothing stays pinned.";

    /// <inheritdoc/>
    public override void Execute(ScenarioContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        VfioSim sim = context.Sim;
        (SimProcess user, VfioSession session, UserBuffer buffer, int req) = OpenWithRequestChannel(sim);
        long pinnedWhileOpen = sim.PinnedPages;
        Check(pinnedWhileOpen >= 16, "MAP_DMA pins the 16 pages of the buffer", $"{pinnedWhileOpen} pinned pages");

        bool released = false;
        KTask handler = user.SpawnThread("req-handler", () =>
        {
            byte[] count = new byte[8];
            long n = user.Read(req, count);
            Check(n == 8, "read() of the REQ eventfd returns its 8-byte count once vfio-pci signals it", ErrnoExtensions.FromReturn(n).Describe());
            Volatile.Write(ref released, true);
            session.Dispose();
            user.Close(req);
        });

        SimProcess admin = sim.Spawn("admin");
        string? from = null;
        KTask unbinder = admin.SpawnThread("unbind", () => from = sim.Unbind(Edu, admin));
        unbinder.Join();
        handler.Join();

        Check(Volatile.Read(ref released), "the unbind completes only after the user released the device", "it completed first");
        CheckEqual(from, Vfio.Pci.VfioPciDriver.DriverName, "the driver the unbind took edu from");
        CheckEqual(sim.DriverOf(Edu), null, "edu's driver after the unbind");
        Check(!sim.Machine.Vfs.Exists($"/dev/vfio/{sim.Device(Edu).IommuGroup?.Id}"), "the group's /dev/vfio node is gone", "it is still there");
        Check(sim.Dmesg().Contains("Relaying device request to user (#0)", StringComparison.Ordinal), "vfio-pci relays request #0 to user space", sim.Dmesg());
        CheckEqual(sim.PinnedPages, pinnedWhileOpen - 16, "pinned pages after the unbind (the mapping's pins are gone)");
        CheckEqual(user.Mm.LockedVm, 0L, "the user's locked_vm");
        buffer.Dispose();
    }
}
