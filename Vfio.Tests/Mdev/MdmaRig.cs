// Test rig for the mdma sample (Vfio.Mdev/Samples/Mdma): a machine with vfio-pci and the
// mdma sample, instances created and removed through sysfs, opened by a "qemu" process
// through the typed client, the device programmed through its BAR0 registers, and the
// observable accounting (mappings, locked_vm, pinned pages, the device's pin cache)
// snapshotted so every step can be compared with the one before.

using NUnit.Framework;
using Vfio.Core;
using Vfio.Core.Client;
using Vfio.Core.Uapi;
using Vfio.Iommu.Type1;
using Vfio.Kernel;
using Vfio.Mdev.Samples.Mdma;
using Vfio.Platform.Fs;
using Vfio.Platform.Mm;
using Vfio.Platform.Proc;
using Vfio.Sim;

namespace Vfio.Tests.Mdev;

/// <summary>What the tests compare after each step: type1's mappings, the owner's locked_vm, the machine's pinned pages, the device's pin cache.</summary>
internal readonly record struct MdmaState(string Mappings, long LockedVm, long PinnedPages, int DevicePins);

internal sealed class MdmaRig
{
    public const string Edu = "0000:01:00.0";
    public const ulong P = 4096;

    /// <summary>The IOVA the tests map their buffers at.</summary>
    public const ulong A = 0x100000;

    /// <summary>Both kernel profiles, for [ValueSource].</summary>
    public static readonly KernelProfile[] Profiles = [KernelProfile.Linux6_12, KernelProfile.Linux6_1];
    public const string Type1Name = "mdma-1";
    public const string Type2Name = "mdma-2";

    private int _uuids;

    public MdmaRig(KernelProfile? profile = null, MdmaOptions? options = null, ResourceLimits? limits = null, SchedulerMode mode = SchedulerMode.Controlled, ulong seed = 1)
    {
        Sim = VfioSim.CreateBuilder()
            .UseProfile(profile ?? KernelProfile.Linux6_12)
            .UseScheduler(mode)
            .UseSeed(seed)
            .AddVfioPci()
            .AddMdma(options)
            .Build();
        // Root for the device nodes, but without CAP_IPC_LOCK, so RLIMIT_MEMLOCK applies.
        Qemu = Sim.Spawn("qemu", Credentials.Root.Without(Capabilities.CAP_IPC_LOCK), limits);
    }

    public VfioSim Sim { get; }

    public SimProcess Qemu { get; }

    public SimKernel Kernel => Sim.Kernel;

    public MdmaSample Mdma => Sim.Mdma!;

    public string TypeDir(string type) => $"/sys/devices/virtual/mdma/mdma/mdev_supported_types/{type}";

    /// <summary>Creates an instance of <paramref name="type"/> through sysfs with a fresh, deterministic UUID.</summary>
    public Guid Create(string type = Type1Name)
    {
        var uuid = new Guid($"6d646d61-0000-4000-8000-{++_uuids:x12}");
        Sim.SysfsWrite($"{TypeDir(type)}/create", uuid.ToString());
        return uuid;
    }

    /// <summary>echo 1 &gt; /sys/bus/mdev/devices/&lt;uuid&gt;/remove.</summary>
    public void Remove(Guid uuid) => Sim.SysfsWrite($"/sys/bus/mdev/devices/{uuid}/remove", "1");

    public int GroupOf(Guid uuid)
    {
        string link = Sim.Machine.Sysfs.ReadLink($"/sys/bus/mdev/devices/{uuid}/iommu_group")
            ?? throw new AssertionException($"mdev {uuid} has no iommu_group link");
        return int.Parse(link.AsSpan(link.LastIndexOf('/') + 1), System.Globalization.CultureInfo.InvariantCulture);
    }

    public MdmaDevice Dev(Guid uuid) => Mdma.DeviceOf(uuid) ?? throw new AssertionException($"no mdma device {uuid}");

    /// <summary>A new container fd of the qemu process, with no group yet.</summary>
    public VfioContainerFd Container() => new(Qemu);

    /// <summary>Opens the instance's group, attaches it to <paramref name="c"/> (setting the IOMMU type when it is the first group) and gets the device fd.</summary>
    public (VfioGroupFd Group, VfioDeviceFd Device) OpenMdev(VfioContainerFd c, Guid uuid, uint type = VfioExtension.Type1v2, bool first = true)
    {
        var g = new VfioGroupFd(Qemu, GroupOf(uuid));
        g.SetContainer(c);
        if (first)
        {
            c.SetIommu(type);
        }

        return (g, g.GetDeviceFd(uuid.ToString()));
    }

    /// <summary>Binds edu to vfio-pci and opens its group and device in <paramref name="c"/>.</summary>
    public (VfioGroupFd Group, VfioDeviceFd Device) OpenEdu(VfioContainerFd c, bool first = false, uint type = VfioExtension.Type1v2)
    {
        Sim.Bind(Edu);
        var g = new VfioGroupFd(Qemu, Sim.GroupOf(Edu));
        g.SetContainer(c);
        if (first)
        {
            c.SetIommu(type);
        }

        return (g, g.GetDeviceFd(Edu));
    }

    public UserBuffer Buffer(ulong bytes) => VfioSim.Allocate(Qemu, bytes, MapFlags.MAP_POPULATE);

    public VfioIommu Iommu(VfioContainerFd c)
    {
        SimFile f = Qemu.Files.Get(c.Fd) ?? throw new AssertionException($"fd {c.Fd} is not open");
        try
        {
            VfioContainer container = VfioContainer.FromFile(f) ?? throw new AssertionException("not a container");
            return VfioIommuType1.Instance(container) ?? throw new AssertionException("the container's backend is not type1");
        }
        finally
        {
            f.Put();
        }
    }

    public MdmaState State(VfioContainerFd? c, MdmaDevice? dev = null)
        => new(c is null ? "" : string.Join("; ", Iommu(c).Mappings), Qemu.Mm.LockedVm, Sim.PinnedPages, dev?.PinnedPages ?? 0);

    public void AssertInvariants(VfioContainerFd c)
        => Assert.That(Iommu(c).CheckInvariants(Iommu(c).EntryLimit), Is.Null);

    // ---- Programming the device through BAR0 (as a guest driver would, through vfio's read/write).

    /// <summary>Runs <paramref name="cmd"/> over (src, dst, len) and returns the status register.</summary>
    public static uint Command(VfioDeviceFd d, uint cmd, ulong src, ulong dst, uint len)
    {
        d.WriteRegion64(VfioPciIndex.Bar0, MdmaRegs.Src, src);
        d.WriteRegion64(VfioPciIndex.Bar0, MdmaRegs.Dst, dst);
        d.WriteRegion32(VfioPciIndex.Bar0, MdmaRegs.Len, len);
        d.WriteRegion32(VfioPciIndex.Bar0, MdmaRegs.Cmd, cmd);
        d.WriteRegion32(VfioPciIndex.Bar0, MdmaRegs.Doorbell, 1);
        return d.ReadRegion32(VfioPciIndex.Bar0, MdmaRegs.Status);
    }

    public static uint Copy(VfioDeviceFd d, ulong src, ulong dst, uint len) => Command(d, MdmaRegs.CmdCopy, src, dst, len);

    /// <summary>The status a command that failed with <paramref name="errno"/> leaves.</summary>
    public static uint Failed(Errno errno) => MdmaRegs.StatusDone | MdmaRegs.StatusError | ((uint)errno << MdmaRegs.StatusErrnoShift);

    public const uint Done = MdmaRegs.StatusDone;

    /// <summary>The lockdep report every dma_unmap that makes the driver unpin produces (the kernel's own device_list_lock / iommu-&gt;lock inversion).</summary>
    public void ExpectDmaUnmapLockInversion() => Kernel.ExpectWarning("circular locking dependency");
}
