// Race 13 of docs/races.md (drivers/vfio/vfio_iommu_type1.c, v6.12's vfio_iommu_replay and
// its error unwind from aae7a75a821a, v5.9): a container whose only group is an mdev's
// (the mdma sample: an emulated IOMMU, so MAP_DMA pins nothing) holds two mappings (4 and
// 12 pages); a user whose RLIMIT_MEMLOCK (8 pages) is smaller than both attaches a real group
// (edu under vfio-pci), so the replay into the new domain pins the first and fails on the
// second with ENOMEM, while another
// task has the mdev copy through the mapping. The kernel unwinds: locked_vm and the pinned
// pages are back where they were, the mapping is not IOMMU-mapped and the mdev keeps
// copying through it. VfioDesign.UnwindFailedReplay = false brings back the ≤ v5.8 replay:
// the mapping replayed before the failure stays pinned, charged and marked IOMMU-mapped,
// with the domain it was mapped into freed — the Leak detector sees it.

using Vfio.Core.Client;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Mdev.Samples.Mdma;
using Vfio.Pci;
using Vfio.Platform.Mm;
using Vfio.Platform.Proc;
using Vfio.Sim.Races;
using static Vfio.Sim.Scenarios.ScenarioContext;

namespace Vfio.Sim.Scenarios.Type1;

/// <summary><c>replay-unwind</c>: a failed replay of an mdev container's mapping into edu's new domain, while the mdev copies.</summary>
internal sealed class ReplayUnwind : Scenario
{
    private const string Edu = "0000:01:00.0";
    private const ulong Page = 4096;
    private const ulong Iova = 0x100000;
    private const int Pages = 4;
    private const int BigPages = 12;
    private const int MemlockPages = 8;
    private const int Copies = 4;

    /// <inheritdoc/>
    public override string Name => "replay-unwind";

    /// <inheritdoc/>
    public override string Description =>
        "Race 13: an mdev (mdma) container maps 4 and 12 pages; attaching edu's group under an 8-page RLIMIT_MEMLOCK fails the replay with ENOMEM " +
        "while the mdev copies through the mapping. The kernel (v5.9+) unwinds: locked_vm and pins are back and the mdev still copies; the " +
        "≤ v5.8 replay (VfioDesign.UnwindFailedReplay = false) leaves the mapping it replayed first pinned and charged.";

    /// <inheritdoc/>
    public override ScenarioKind Kind => ScenarioKind.Race;

    /// <inheritdoc/>
    public override RaceInfo Race { get; } = new()
    {
        Item = "13",
        Kernels = "≤ v5.8",
        FixCommits = "aae7a75a821a \"vfio/type1: Add proper error unwind for vfio_iommu_replay()\" (v5.9)",
        FixSwitch = "VfioDesign.UnwindFailedReplay = false",
        Detectors = [RaceDetector.Leak],
    };

    /// <inheritdoc/>
    public override void Configure(VfioSimBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.AddVfioPci().AddMdma();
    }

    /// <inheritdoc/>
    public override void ApplyFix(VfioSimBuilder builder, bool on)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.UseDesign(d => d with { UnwindFailedReplay = on });
    }

    /// <inheritdoc/>
    public override string? Unmet(VfioSim sim)
    {
        ArgumentNullException.ThrowIfNull(sim);
        return sim.Machine.Pci.Find(Edu) is { IommuGroup: not null }
            ? null
            : $"the machine has no {Edu} in an IOMMU group: {Name} attaches the default machine's edu";
    }

    /// <inheritdoc/>
    public override void Execute(ScenarioContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        VfioSim sim = context.Sim;

        // Root for the device nodes, without CAP_IPC_LOCK, so RLIMIT_MEMLOCK applies.
        SimProcess qemu = sim.Spawn("qemu", Credentials.Root.Without(Capabilities.CAP_IPC_LOCK), new ResourceLimits { MemlockBytes = MemlockPages * (long)Page });
        long pinned0 = sim.PinnedPages;
        var uuid = new Guid("6d646d61-0000-4000-8000-000000000013");
        sim.SysfsWrite("/sys/devices/virtual/mdma/mdma/mdev_supported_types/mdma-1/create", uuid.ToString());
        string? link = sim.Machine.Sysfs.ReadLink($"/sys/bus/mdev/devices/{uuid}/iommu_group");
        Check(link is not null, "the mdev has an iommu_group link", "it has none");
        int mdevGroup = int.Parse(link.AsSpan(link!.LastIndexOf('/') + 1), System.Globalization.CultureInfo.InvariantCulture);

        using var container = new VfioContainerFd(qemu);
        using var mg = new VfioGroupFd(qemu, mdevGroup);
        mg.SetContainer(container);
        container.SetIommu(VfioExtension.Type1v2);
        using VfioDeviceFd md = mg.GetDeviceFd(uuid.ToString());
        using UserBuffer buf = VfioSim.Allocate(qemu, Pages * Page, MapFlags.MAP_POPULATE);
        using UserBuffer big = VfioSim.Allocate(qemu, BigPages * Page, MapFlags.MAP_POPULATE);
        container.MapDma(buf.Address, Iova, Pages * Page);
        container.MapDma(big.Address, Iova + (Pages * Page), BigPages * Page);
        CheckEqual(Copy(md, Iova, Iova + Page, 64), MdmaRegs.StatusDone, "the mdev's first copy");
        long locked0 = qemu.Mm.LockedVm;
        long pinnedBefore = sim.PinnedPages;

        // The attach racing the mdev's copies (over the two pages it already pinned).
        sim.Bind(Edu, VfioPciDriver.DriverName);
        long attach = 0;
        uint[] status = new uint[Copies];
        KTask dma = qemu.SpawnThread("mdev-dma", () =>
        {
            for (int i = 0; i < Copies; i++)
            {
                status[i] = Copy(md, Iova, Iova + Page, 64);
                KTask.Schedule();
            }
        });
        var eg = new VfioGroupFd(qemu, sim.GroupOf(Edu));
        KTask attacher = qemu.SpawnThread("attach", () => attach = qemu.Ioctl(eg.Fd, VfioIoctl.GroupSetContainer, BitConverter.GetBytes(container.Fd)));
        dma.Join();
        attacher.Join();

        Detect(RaceDetector.WrongErrno, attach == Errno.ENOMEM.Negative(), "VFIO_GROUP_SET_CONTAINER of edu's group fails with ENOMEM (the replay goes over RLIMIT_MEMLOCK)", ErrnoExtensions.FromReturn(attach).ToString());
        for (int i = 0; i < Copies; i++)
        {
            CheckEqual(status[i], MdmaRegs.StatusDone, $"the status of the mdev's racing copy {i}");
        }

        Detect(RaceDetector.Leak, qemu.Mm.LockedVm == locked0 && sim.PinnedPages == pinnedBefore,
            $"locked_vm and the pinned pages as before the attach ({locked0} and {pinnedBefore})",
            $"locked_vm {qemu.Mm.LockedVm}, pinned pages {sim.PinnedPages}: what the failed replay mapped is still pinned and charged");

        // The mapping is still the mdev's to use.
        byte[] data = [1, 2, 3, 4, 5, 6, 7, 8];
        buf.Write(2 * Page, data);
        CheckEqual(Copy(md, Iova + (2 * Page), Iova + (3 * Page), (uint)data.Length), MdmaRegs.StatusDone, "a copy through the mapping after the failed attach");
        Check(buf.Read(3 * Page, data.Length).AsSpan().SequenceEqual(data), "the copy landed", "it did not");

        // Closing the mdev unpins its cache; the unmap then leaves nothing behind.
        eg.Dispose();
        md.Dispose();
        CheckEqual(container.UnmapDma(Iova, (Pages + BigPages) * Page), (Pages + BigPages) * Page, "bytes unmapped");
        Detect(RaceDetector.Leak, qemu.Mm.LockedVm == 0 && sim.PinnedPages == pinned0,
            $"no locked_vm and the machine's pinned pages back at {pinned0} once the mapping is gone",
            $"locked_vm {qemu.Mm.LockedVm}, pinned pages {sim.PinnedPages}");
    }

    private static uint Copy(VfioDeviceFd d, ulong src, ulong dst, uint len)
    {
        d.WriteRegion64(VfioPciIndex.Bar0, MdmaRegs.Src, src);
        d.WriteRegion64(VfioPciIndex.Bar0, MdmaRegs.Dst, dst);
        d.WriteRegion32(VfioPciIndex.Bar0, MdmaRegs.Len, len);
        d.WriteRegion32(VfioPciIndex.Bar0, MdmaRegs.Cmd, MdmaRegs.CmdCopy);
        d.WriteRegion32(VfioPciIndex.Bar0, MdmaRegs.Doorbell, 1);
        return d.ReadRegion32(VfioPciIndex.Bar0, MdmaRegs.Status);
    }
}
