// Race 14 of docs/races.md (drivers/vfio/vfio_iommu_type1.c, v6.12's per-dma locked_vm
// accounting: 18e292705ba2, 046eca5018f8, 90fdd158a695, v6.2): QEMU's live update. The old
// process P maps guest memory into a type1 container (edu's) and hands the container fd to
// the new process Q. Q invalidates the vaddr (UNMAP_DMA with VFIO_DMA_UNMAP_FLAG_VADDR),
// supplies its own (MAP_DMA with VFIO_DMA_MAP_FLAG_VADDR) and later unmaps, while P maps and
// unmaps a scratch buffer of its own and exits. The kernel moves the charge with the vaddr:
// Q is charged for the pages it now maps, P keeps nothing once the hand-over is done, and no
// locked_vm goes negative. VfioDesign.LockedVmPerDma = false is the ≤ v6.1 accounting as the
// simulator models it (the calling process is charged; a new vaddr moves nothing): Q is not
// charged for what it maps, its unmap underflows its locked_vm, and P keeps a charge for
// pages it no longer maps. The kernel's own trigger was exec() (the same task with a new mm);
// a hand-over to a new process has the same effect on the counters.

using System.Runtime.InteropServices;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Mm;
using Vfio.Platform.Proc;
using Vfio.Sim.Races;
using Vfio.Sim.Scenarios.Lifecycle;
using static Vfio.Sim.Scenarios.ScenarioContext;

namespace Vfio.Sim.Scenarios.Type1;

/// <summary><c>locked-vm-across-exec</c>: a mapping handed from P to Q with VFIO_DMA_MAP_FLAG_VADDR while P exits.</summary>
internal sealed class LockedVmAcrossExec : LifecycleScenario
{
    private const ulong Page = 4096;
    private const ulong Iova = 0x100000;
    private const ulong Scratch = 0x800000;
    private const int Pages = 16;
    private const int ScratchPages = 4;

    /// <inheritdoc/>
    public override string Name => "locked-vm-across-exec";

    /// <inheritdoc/>
    public override string Description =>
        "Race 14: P maps 16 pages into edu's container and hands the fd to Q; Q re-supplies the vaddr (UNMAP/MAP with VADDR) and unmaps while P " +
        "maps and unmaps a scratch buffer and exits. The kernel (v6.2+) moves the charge to Q and no locked_vm goes negative; the ≤ v6.1 " +
        "accounting (VfioDesign.LockedVmPerDma = false) leaves Q uncharged and P charged.";

    /// <inheritdoc/>
    public override RaceInfo Race { get; } = new()
    {
        Item = "14",
        Kernels = "≤ v6.1",
        FixCommits = "18e292705ba2 \"vfio/type1: track locked_vm per dma\", 046eca5018f8 \"vfio/type1: prevent underflow of locked_vm via exec()\", 90fdd158a695 \"vfio/type1: restore locked_vm\" (v6.2)",
        FixSwitch = "VfioDesign.LockedVmPerDma = false",
        Detectors = [RaceDetector.Invariant, RaceDetector.Leak, RaceDetector.WarnOrBug],
    };

    /// <inheritdoc/>
    public override void ApplyFix(VfioSimBuilder builder, bool on)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.UseDesign(d => d with { LockedVmPerDma = on });
    }

    /// <inheritdoc/>
    public override void Execute(ScenarioContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        VfioSim sim = context.Sim;
        long pinned0 = sim.PinnedPages;
        SimProcess p = sim.Spawn("qemu-old", Credentials.Root.Without(Capabilities.CAP_IPC_LOCK));
        SimProcess q = sim.Spawn("qemu-new", Credentials.Root.Without(Capabilities.CAP_IPC_LOCK));
        VfioSession session = sim.Open(p, Edu);
        int cp = session.Container.Fd;
        UserBuffer guest = VfioSim.Allocate(p, Pages * Page, MapFlags.MAP_POPULATE);
        CheckEqual(Map(p, cp, guest.Address, Iova, Pages * Page, VfioType1Flags.MapRead | VfioType1Flags.MapWrite), 0L, "P's MAP_DMA");
        CheckEqual(p.Mm.LockedVm, (long)Pages, "P's locked_vm after its map");
        // Q gets the container, group and device fds (QEMU's CPR passes them all).
        int cq = p.SendFd(cp, q);
        int gq = p.SendFd(session.Group.Fd, q);
        int dq = p.SendFd(session.Device.Fd, q);
        Check(cq >= 0 && gq >= 0 && dq >= 0, "the container, group and device fds reach Q", $"{cq}, {gq}, {dq}");
        UserBuffer qGuest = VfioSim.Allocate(q, Pages * Page, MapFlags.MAP_POPULATE);
        UserBuffer scratch = VfioSim.Allocate(p, ScratchPages * Page, MapFlags.MAP_POPULATE);

        bool handedOver = false;
        long pChargeAtExit = -1;
        long qChargeAfterHandOver = -1;
        KTask old = p.SpawnThread("old", () =>
        {
            // P winds down: one more map and unmap of its own, then exit.
            CheckEqual(Map(p, cp, scratch.Address, Scratch, ScratchPages * Page, VfioType1Flags.MapRead | VfioType1Flags.MapWrite), 0L, "P's scratch MAP_DMA");
            KTask.Schedule();
            CheckEqual(Unmap(p, cp, Scratch, ScratchPages * Page, 0), 0L, "P's scratch UNMAP_DMA");
            bool moved = Volatile.Read(ref handedOver);
            pChargeAtExit = moved ? p.Mm.LockedVm : -1;
            session.Dispose();
            scratch.Dispose();
            guest.Dispose();
            p.Exit();
        });
        KTask @new = q.SpawnThread("new", () =>
        {
            CheckEqual(Unmap(q, cq, Iova, Pages * Page, VfioType1Flags.UnmapVaddr), 0L, "Q's UNMAP_DMA(VADDR)");
            KTask.Schedule();
            CheckEqual(Map(q, cq, qGuest.Address, Iova, Pages * Page, VfioType1Flags.MapVaddr), 0L, "Q's MAP_DMA(VADDR)");
            qChargeAfterHandOver = q.Mm.LockedVm;
            Volatile.Write(ref handedOver, true);
            KTask.Schedule();
            CheckEqual(Unmap(q, cq, Iova, Pages * Page, 0), 0L, "Q's UNMAP_DMA");
        });
        old.Join();
        @new.Join();

        Detect(RaceDetector.Invariant, qChargeAfterHandOver == Pages,
            $"Q is charged for the {Pages} pinned pages it maps once it supplied their vaddr",
            $"Q's locked_vm is {qChargeAfterHandOver}");
        Detect(RaceDetector.Leak, pChargeAtExit is -1 or 0,
            "P exits charged nothing once Q took its mapping over",
            $"P exits with {pChargeAtExit} pages of locked_vm for pages it no longer maps");
        Detect(RaceDetector.Leak, q.Mm.LockedVm == 0 && sim.PinnedPages == pinned0,
            $"no locked_vm on Q and the machine's pinned pages back at {pinned0} once everything is unmapped",
            $"Q's locked_vm {q.Mm.LockedVm}, pinned pages {sim.PinnedPages}");
        CheckEqual(q.Close(dq) | q.Close(gq) | q.Close(cq), 0, "Q's closes of the device, group and container");
        qGuest.Dispose();
    }

    private static long Map(SimProcess p, int fd, ulong vaddr, ulong iova, ulong size, uint flags)
    {
        var map = new VfioIommuType1DmaMap { Argsz = (uint)Marshal.SizeOf<VfioIommuType1DmaMap>(), Flags = flags, Vaddr = vaddr, Iova = iova, Size = size };
        return p.Ioctl(fd, VfioIoctl.IommuMapDma, MemoryMarshal.AsBytes(MemoryMarshal.CreateSpan(ref map, 1)));
    }

    private static long Unmap(SimProcess p, int fd, ulong iova, ulong size, uint flags)
    {
        var unmap = new VfioIommuType1DmaUnmap { Argsz = (uint)Marshal.SizeOf<VfioIommuType1DmaUnmap>(), Flags = flags, Iova = iova, Size = size };
        return p.Ioctl(fd, VfioIoctl.IommuUnmapDma, MemoryMarshal.AsBytes(MemoryMarshal.CreateSpan(ref unmap, 1)));
    }
}
