// Threads faulting one BAR mapping at once after a zap (race 12 in docs/races.md,
// drivers/vfio/pci/vfio_pci_core.c): every fault succeeds and every page is mapped once, to
// its own frame. On the vma-list design (linux-6.1) the handler sees that a racing fault
// already listed and remapped the VMA (6a45ece4c9af, v5.13); since v6.10 there is no list and
// a fault that finds its page mapped is done. The design variant HandleConcurrentBarFaults =
// false brings back the v5.8–v5.12 handler: the VMA is listed twice and the second remap
// fails on the present pages — a spurious SIGBUS.

using Vfio.Core.Client;
using Vfio.Kernel;
using Vfio.Pci;
using Vfio.Platform.Mm;
using Vfio.Platform.Pci;
using Vfio.Platform.Proc;
using Vfio.Sim.Races;
using Vfio.Sim.Scenarios.Lifecycle;
using static Vfio.Sim.Scenarios.ScenarioContext;

namespace Vfio.Sim.Scenarios.Pci;

/// <summary><c>bar-faults-after-zap</c>: four threads fault two pages of one BAR mapping right after a zap.</summary>
internal sealed class ConcurrentBarFaults : LifecycleScenario
{
    private const int Threads = 4;
    private const int Pages = 4;

    /// <inheritdoc/>
    public override string Name => "bar-faults-after-zap";

    /// <inheritdoc/>
    public override string Description =>
        "Four threads load from two pages of one mmap of edu's BAR0 right after a zap (COMMAND.MEM off and on): every load " +
        "succeeds (no spurious SIGBUS), each present page maps its own BAR frame, and the VMA is listed at most once.";

    /// <inheritdoc/>
    public override RaceInfo Race { get; } = new()
    {
        Item = "12",
        Kernels = "v5.8–v5.12",
        FixCommits = "6a45ece4c9af \"vfio/pci: Handle concurrent vma faults\" (v5.13); the vma list itself went in v6.10 (aac6db75a9fc, b7c5e64fecfa, d71a989cf5d9)",
        FixSwitch = "VfioDesign.HandleConcurrentBarFaults = false",
        Detectors = [RaceDetector.Invariant],
    };

    /// <inheritdoc/>
    public override void ApplyFix(VfioSimBuilder builder, bool on)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.UseDesign(d => d with { HandleConcurrentBarFaults = on });
    }

    /// <inheritdoc/>
    public override void Execute(ScenarioContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        VfioSim sim = context.Sim;
        SimProcess user = sim.Spawn("user");
        using VfioSession session = sim.Open(user, Edu);
        VfioDeviceFd device = session.Device;
        var vdev = (VfioPciCoreDevice)sim.Device(Edu).DriverData!;
        using VfioRegionMapping bar = device.MmapRegion(0, 0, Pages * 4096);
        Vma vma = user.Mm.FindVma(bar.Address)!;
        _ = bar.Read32(0);

        // The zap: memory decode off and on again.
        ushort cmd = device.ReadConfig16(PciRegs.Command);
        device.WriteConfig16(PciRegs.Command, (ushort)(cmd & ~PciRegs.CommandMemory));
        device.WriteConfig16(PciRegs.Command, cmd);
        CheckEqual(vma.MappedPages, 0, "pages mapped right after the zap");

        int[] signals = new int[Threads];
        var threads = new KTask[Threads];
        for (int t = 0; t < Threads; t++)
        {
            int me = t;
            threads[t] = user.SpawnThread($"fault{t}", () => signals[me] = bar.TryRead((me % 2) * 4096L, new byte[4]));
        }

        foreach (KTask t in threads)
        {
            t.Join();
        }

        for (int t = 0; t < Threads; t++)
        {
            CheckEqual(signals[t], 0, $"the signal raised by thread {t}'s load");
        }

        long barPfn = sim.Device(Edu).ResourceStart(0) >> 12;
        for (int p = 0; p < Pages; p++)
        {
            long pfn = user.Mm.Translate(bar.Address + (ulong)(p * 4096));
            Check(pfn == -1 || pfn == barPfn + p, $"page {p} maps BAR frame 0x{barPfn + p:x} or nothing", $"it maps 0x{pfn:x}");
        }

        Check(user.Mm.Translate(bar.Address) != -1 && user.Mm.Translate(bar.Address + 4096) != -1, "both loaded pages are mapped", "one is not");
        int listed = vdev.VmaListSnapshot().Count(v => v == vma);
        Check(listed <= 1, "the VMA is on vma_list at most once", $"it is listed {listed} times");
    }
}
