// A BAR mapping used while the user turns memory decode off and on again (race 11 in
// docs/races.md, CVE-2020-12888; drivers/vfio/pci/vfio_pci_core.c and vfio_pci_config.c):
// clearing COMMAND.MEM zaps the mapping under memory_lock, so a load racing the write either
// completes before it or faults and gets SIGBUS; with decode off a load is SIGBUS and a
// pread of the BAR EIO; once MEM is set again the mapping faults back in. No access ever
// reaches edu while it does not decode (on a real host that is an Unsupported Request, often
// a machine check). The design variant BlockMmioWhileMemoryDisabled = false reproduces it.

using Vfio.Core.Client;
using Vfio.Kernel;
using Vfio.Platform.Pci;
using Vfio.Platform.Proc;
using Vfio.Sim.Races;
using Vfio.Sim.Scenarios.Lifecycle;
using static Vfio.Sim.Scenarios.ScenarioContext;

namespace Vfio.Sim.Scenarios.Pci;

/// <summary><c>bar-access-vs-memory-disable</c>: loads through an mmap of edu's BAR0 while COMMAND.MEM goes off and on.</summary>
internal sealed class BarAccessVsMemoryDisable : LifecycleScenario
{
    private const uint EduIdentification = 0x010000ed;

    /// <inheritdoc/>
    public override string Name => "bar-access-vs-memory-disable";

    /// <inheritdoc/>
    public override string Description =>
        "A thread loads edu's identification register through a BAR0 mmap while another clears COMMAND.MEM and sets it again: " +
        "every load returns the register or raises SIGBUS, a load with decode off is SIGBUS and a pread EIO, the mapping works " +
        "again after, and no access reaches edu while it does not decode.";

    /// <inheritdoc/>
    public override RaceInfo Race { get; } = new()
    {
        Item = "11",
        Kernels = "≤ v5.7 (CVE-2020-12888)",
        FixCommits = "abafbc551fdd \"vfio-pci: Invalidate mmaps and block MMIO access on disabled memory\", 11c4cd07ba11 \"vfio-pci: Fault mmaps to enable vma tracking\", 41311242221e \"vfio/type1: Support faulting PFNMAP vmas\" (v5.8)",
        FixSwitch = "VfioDesign.BlockMmioWhileMemoryDisabled = false",
        Detectors = [RaceDetector.Invariant],
    };

    /// <inheritdoc/>
    public override void ApplyFix(VfioSimBuilder builder, bool on)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.UseDesign(d => d with { BlockMmioWhileMemoryDisabled = on });
    }

    /// <inheritdoc/>
    public override void Execute(ScenarioContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        VfioSim sim = context.Sim;
        SimProcess user = sim.Spawn("user");
        using VfioSession session = sim.Open(user, Edu);
        VfioDeviceFd device = session.Device;
        using VfioRegionMapping bar = device.MmapRegion(0, 0, 4096);
        CheckEqual(bar.Read32(0), EduIdentification, "the identification register through the mapping");
        long urBefore = sim.Machine.Memory.UnsupportedRequests;
        ushort cmd = device.ReadConfig16(PciRegs.Command);

        const int loads = 6;
        int[] signals = new int[loads];
        uint[] values = new uint[loads];
        KTask loader = user.SpawnThread("loader", () =>
        {
            byte[] b = new byte[4];
            for (int i = 0; i < loads; i++)
            {
                signals[i] = bar.TryRead(0, b);
                values[i] = BitConverter.ToUInt32(b);
                KTask.Schedule();
            }
        });

        device.WriteConfig16(PciRegs.Command, (ushort)(cmd & ~PciRegs.CommandMemory));
        byte[] probe = new byte[4];
        CheckEqual(bar.TryRead(0, probe), Signals.SIGBUS, "the signal of a load with memory decode off");
        long pread = user.Pread(device.Fd, probe, 0);
        CheckEqual(pread, (long)Errno.EIO.Negative(), "a pread of BAR0 with memory decode off");
        device.WriteConfig16(PciRegs.Command, cmd);
        loader.Join();

        for (int i = 0; i < loads; i++)
        {
            Check(signals[i] == Signals.SIGBUS || (signals[i] == 0 && values[i] == EduIdentification),
                "each racing load returns the register, or raises SIGBUS while decode is off",
                $"load {i}: signal {signals[i]}, value 0x{values[i]:x8}");
        }

        CheckEqual(bar.Read32(0), EduIdentification, "the identification register after MEM is set again");
        CheckEqual(sim.Machine.Memory.UnsupportedRequests - urBefore, 0L, "accesses that reached edu while it did not decode");
    }
}
