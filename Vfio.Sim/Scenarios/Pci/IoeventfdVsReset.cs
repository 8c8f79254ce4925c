// Race 11 in docs/races.md, its ioeventfd part (38565c93c8a1, drivers/vfio/pci/vfio_pci_rdwr.c):
// ioeventfds on four of edu's registers are signalled while another thread rewrites the
// COMMAND register in a loop — each write holds memory_lock for write, as a reset or a D3hot
// entry does, while memory decode stays on. A signal that finds the lock held is handed to
// the virqfd's thread, which waits for it: every write lands, none is dropped, and the
// wake-up never sleeps. The design variant DeferContendedIoeventfdWrites = false brings back
// the v5.8–v5.10-rc2 handler, which took memory_lock with a blocking down_read inside the
// wake-up: "BUG: sleeping function called from invalid context".

using Vfio.Core.Client;
using Vfio.Kernel;
using Vfio.Platform.Devices;
using Vfio.Platform.Proc;
using Vfio.Sim.Races;
using static Vfio.Sim.Scenarios.ScenarioContext;

namespace Vfio.Sim.Scenarios.Pci;

/// <summary><c>ioeventfd-vs-reset</c>: ioeventfd writes racing writers of memory_lock.</summary>
internal sealed class IoeventfdVsReset : PciIrqScenario
{
    private const int Rounds = 4;

    private static readonly (int Reg, int Size, ulong Data)[] s_targets =
    [
        (EduDevice.RegLiveness, 4, 0x12345678),
        (EduDevice.RegDmaSource, 8, 0x40000),
        (EduDevice.RegDmaDestination, 8, 0x41000),
        (EduDevice.RegDmaCount, 4, 0x800),
    ];

    /// <inheritdoc/>
    public override string Name => "ioeventfd-vs-reset";

    /// <inheritdoc/>
    public override string Description =>
        "Race 11 (ioeventfd part): ioeventfds on four edu registers are signalled while a thread rewrites COMMAND, which holds memory_lock for write as a reset does. " +
        "A write that finds the lock held is deferred to the virqfd thread, never dropped; the pre-v5.10 handler (VfioDesign.DeferContendedIoeventfdWrites = false) sleeps in atomic context instead.";

    /// <inheritdoc/>
    public override RaceInfo Race { get; } = new()
    {
        Item = "11",
        Kernels = "v5.8–v5.10-rc2",
        FixCommits = "38565c93c8a1 \"vfio/pci: Implement ioeventfd thread handler for contended memory lock\" (v5.10)",
        FixSwitch = "VfioDesign.DeferContendedIoeventfdWrites = false",
        Detectors = [RaceDetector.WarnOrBug],
    };

    /// <inheritdoc/>
    public override void ApplyFix(VfioSimBuilder builder, bool on)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.UseDesign(d => d with { DeferContendedIoeventfdWrites = on });
    }

    /// <inheritdoc/>
    public override void Execute(ScenarioContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        VfioSim sim = context.Sim;
        SimProcess user = sim.Spawn("qemu");
        using VfioSession session = sim.Open(user, Edu);
        VfioDeviceFd device = session.Device;
        int d = device.Fd;
        ushort cmd = ReadCommand(user, d);

        int[] efds = new int[s_targets.Length];
        for (int i = 0; i < s_targets.Length; i++)
        {
            efds[i] = NewEventfd(user);
            device.SetIoeventfd(0, s_targets[i].Reg, s_targets[i].Size, s_targets[i].Data, efds[i]);
        }

        for (int round = 0; round < Rounds; round++)
        {
            // Clear the registers, then race the signals against COMMAND writes that keep decode on.
            device.WriteRegion32(0, EduDevice.RegLiveness, 0);
            device.WriteRegion32(0, EduDevice.RegDmaSource, 0);
            device.WriteRegion32(0, EduDevice.RegDmaDestination, 0);
            device.WriteRegion32(0, EduDevice.RegDmaCount, 0);

            KTask writer = user.SpawnThread("command", () =>
            {
                for (int i = 0; i < 3; i++)
                {
                    WriteCommand(user, d, cmd);
                    KTask.Schedule();
                }
            });

            foreach (int efd in efds)
            {
                Poke(user, efd);
                KTask.Schedule();
            }

            writer.Join();

            // Removing an ioeventfd flushes its thread: a deferred write has landed by then.
            for (int i = 0; i < s_targets.Length; i++)
            {
                device.SetIoeventfd(0, s_targets[i].Reg, s_targets[i].Size, s_targets[i].Data, -1);
            }

            CheckEqual(device.ReadRegion32(0, EduDevice.RegLiveness), ~0x12345678u, $"round {round}: edu's liveness register after its ioeventfd");
            // 4-byte reads: linux-6.1 splits an 8-byte pread, and edu answers only the low half of its DMA registers then.
            CheckEqual(device.ReadRegion32(0, EduDevice.RegDmaSource), 0x40000u, $"round {round}: the DMA source after its ioeventfd");
            CheckEqual(device.ReadRegion32(0, EduDevice.RegDmaDestination), 0x41000u, $"round {round}: the DMA destination after its ioeventfd");
            CheckEqual(device.ReadRegion32(0, EduDevice.RegDmaCount), 0x800u, $"round {round}: the DMA count after its ioeventfd");

            for (int i = 0; i < s_targets.Length; i++)
            {
                device.SetIoeventfd(0, s_targets[i].Reg, s_targets[i].Size, s_targets[i].Data, efds[i]);
            }
        }

        foreach (int efd in efds)
        {
            user.Close(efd);
        }
    }
}
