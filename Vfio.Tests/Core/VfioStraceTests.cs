// Tests Vfio.Core/Uapi/VfioStrace.cs: every VFIO ioctl of the vfio.rst flow decoded by name
// and struct fields (the fields passed in, then " => " the fields written back), the other
// VFIO and KVM ioctls, errors by errno name with the kernel's reason kept, an unreadable
// argument printed as its address, and the VFIO_IOMMU_GET_INFO / GET_PCI_HOT_RESET_INFO
// number named by the file it is called on.

using System.Runtime.InteropServices;
using NUnit.Framework;
using Vfio.Core.Kvm;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Mm;
using Vfio.Platform.Proc;
using Vfio.Sim;

namespace Vfio.Tests.Core;

public sealed class VfioStraceTests
{
    private const string Edu = "0000:01:00.0";
    private const string PairF0 = "0000:02:00.0";

    private VfioSim _sim = null!;
    private SimProcess _p = null!;
    private ulong _args;
    private ulong _next;

    [SetUp]
    public void Boot()
    {
        _sim = VfioSim.CreateBuilder().UseScheduler(SchedulerMode.Real).AddVfioPci().AddKvm().Build();
        _p = _sim.Spawn("user");
        long a = _p.Mmap(0, 64 << 10, Prot.PROT_READ | Prot.PROT_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS);
        Assert.That(a, Is.GreaterThan(0));
        _args = (ulong)a;
        _next = _args;
    }

    /// <summary>Writes <paramref name="value"/> into the process's memory (8-aligned) and returns its address.</summary>
    private ulong Put<T>(T value, int extra = 0)
        where T : unmanaged
    {
        ulong at = _next;
        ReadOnlySpan<byte> bytes = MemoryMarshal.AsBytes(MemoryMarshal.CreateReadOnlySpan(ref value, 1));
        Assert.That(_p.Mm.WriteUser(at, bytes), Is.Zero);
        _next += (ulong)((bytes.Length + extra + 7) & ~7);
        return at;
    }

    private void PutAt<T>(ulong at, T value)
        where T : unmanaged
        => Assert.That(_p.Mm.WriteUser(at, MemoryMarshal.AsBytes(MemoryMarshal.CreateReadOnlySpan(ref value, 1))), Is.Zero);

    private ulong PutString(string s)
    {
        ulong at = _next;
        Assert.That(_p.Mm.WriteUser(at, [.. System.Text.Encoding.ASCII.GetBytes(s), 0]), Is.Zero);
        _next += (ulong)((s.Length + 1 + 7) & ~7);
        return at;
    }

    private string[] Lines() => [.. _sim.Strace.Records.Select(r => r.ToString())];

    private string Last() => _sim.Strace.Records[^1].ToString();

    [Test]
    public void TheVfioRstFlow_IsDecodedByNameAndField()
    {
        _sim.Bind(Edu, "vfio-pci");
        int groupId = _sim.GroupOf(Edu);
        _sim.Strace.Start(_p);

        int c = _p.Open("/dev/vfio/vfio");
        Assert.That(_p.Ioctl(c, VfioIoctl.GetApiVersion), Is.EqualTo(VfioExtension.ApiVersion));
        Assert.That(_p.Ioctl(c, VfioIoctl.CheckExtension, VfioExtension.Type1v2), Is.EqualTo(1));
        int g = _p.Open($"/dev/vfio/{groupId}");
        Assert.That(_p.Ioctl(g, VfioIoctl.GroupGetStatus, Put(new VfioGroupStatus { Argsz = 8 })), Is.Zero);
        Assert.That(_p.Ioctl(g, VfioIoctl.GroupSetContainer, Put(c)), Is.Zero);
        Assert.That(_p.Ioctl(c, VfioIoctl.SetIommu, VfioExtension.Type1v2), Is.Zero);
        Assert.That(_p.Ioctl(c, VfioIoctl.IommuGetInfo, Put(new VfioIommuType1Info { Argsz = 16 })), Is.Zero);
        ulong buffer = (ulong)_p.Mmap(0, 1 << 20, Prot.PROT_READ | Prot.PROT_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS);
        var map = new VfioIommuType1DmaMap { Argsz = 32, Flags = VfioType1Flags.MapRead | VfioType1Flags.MapWrite, Vaddr = buffer, Iova = 0, Size = 1 << 20 };
        Assert.That(_p.Ioctl(c, VfioIoctl.IommuMapDma, Put(map)), Is.Zero);
        int d = (int)_p.Ioctl(g, VfioIoctl.GroupGetDeviceFd, PutString(Edu));
        Assert.That(d, Is.GreaterThan(0));
        Assert.That(_p.Ioctl(d, VfioIoctl.DeviceGetInfo, Put(new VfioDeviceInfo { Argsz = 16 })), Is.Zero);
        Assert.That(_p.Ioctl(d, VfioIoctl.DeviceGetRegionInfo, Put(new VfioRegionInfo { Argsz = 32, Index = (uint)VfioPciIndex.Bar0 })), Is.Zero);
        Assert.That(_p.Ioctl(d, VfioIoctl.DeviceGetIrqInfo, Put(new VfioIrqInfo { Argsz = 16, Index = (uint)VfioPciIndex.IrqIntx })), Is.Zero);
        int efd = _p.Eventfd(0);
        ulong set = Put(new VfioIrqSet { Argsz = 24, Flags = VfioIrqSetFlags.DataEventfd | VfioIrqSetFlags.ActionTrigger, Index = (uint)VfioPciIndex.IrqIntx, Count = 1 }, extra: 4);
        PutAt(set + VfioIrqSet.MinSz, efd);
        Assert.That(_p.Ioctl(d, VfioIoctl.DeviceSetIrqs, set), Is.Zero);
        ulong unmask = Put(new VfioIrqSet { Argsz = 21, Flags = VfioIrqSetFlags.DataBool | VfioIrqSetFlags.ActionUnmask, Index = (uint)VfioPciIndex.IrqIntx, Count = 1 }, extra: 1);
        PutAt(unmask + VfioIrqSet.MinSz, (byte)1);
        Assert.That(_p.Ioctl(d, VfioIoctl.DeviceSetIrqs, unmask), Is.Zero);
        Assert.That(_p.Ioctl(d, VfioIoctl.DeviceSetIrqs, Put(new VfioIrqSet { Argsz = 20, Flags = VfioIrqSetFlags.DataNone | VfioIrqSetFlags.ActionTrigger, Index = (uint)VfioPciIndex.IrqIntx })), Is.Zero);
        Assert.That(_p.Ioctl(d, VfioIoctl.DeviceReset), Is.Zero);
        Assert.That(_p.Ioctl(c, VfioIoctl.IommuUnmapDma, Put(new VfioIommuType1DmaUnmap { Argsz = 24, Iova = 0, Size = 1 << 20 })), Is.Zero);

        Assert.That(Lines(), Is.EqualTo(new[]
        {
            $"openat(AT_FDCWD, \"/dev/vfio/vfio\", O_RDWR) = {c}",
            $"ioctl({c}, VFIO_GET_API_VERSION) = 0",
            $"ioctl({c}, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) = 1",
            $"openat(AT_FDCWD, \"/dev/vfio/{groupId}\", O_RDWR) = {g}",
            $"ioctl({g}, VFIO_GROUP_GET_STATUS, {{argsz=8}} => {{flags=VFIO_GROUP_FLAGS_VIABLE}}) = 0",
            $"ioctl({g}, VFIO_GROUP_SET_CONTAINER, [{c}]) = 0",
            $"ioctl({c}, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) = 0",
            $"ioctl({c}, VFIO_IOMMU_GET_INFO, {{argsz=16}} => {{argsz=120, flags=VFIO_IOMMU_INFO_PGSIZES|VFIO_IOMMU_INFO_CAPS, iova_pgsizes=0x40201000}}) = 0",
            $"mmap(NULL, 1048576, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x{buffer:x}",
            $"ioctl({c}, VFIO_IOMMU_MAP_DMA, {{argsz=32, flags=VFIO_DMA_MAP_FLAG_READ|VFIO_DMA_MAP_FLAG_WRITE, vaddr=0x{buffer:x}, iova=0, size=1048576}}) = 0",
            $"ioctl({g}, VFIO_GROUP_GET_DEVICE_FD, \"{Edu}\") = {d}",
            $"ioctl({d}, VFIO_DEVICE_GET_INFO, {{argsz=16}} => {{argsz=16, flags=VFIO_DEVICE_FLAGS_RESET|VFIO_DEVICE_FLAGS_PCI, num_regions=9, num_irqs=5}}) = 0",
            $"ioctl({d}, VFIO_DEVICE_GET_REGION_INFO, {{argsz=32, index=0}} => {{argsz=32, flags=VFIO_REGION_INFO_FLAG_READ|VFIO_REGION_INFO_FLAG_WRITE|VFIO_REGION_INFO_FLAG_MMAP, size=1048576, offset=0}}) = 0",
            $"ioctl({d}, VFIO_DEVICE_GET_IRQ_INFO, {{argsz=16, index=0}} => {{flags=VFIO_IRQ_INFO_EVENTFD|VFIO_IRQ_INFO_MASKABLE|VFIO_IRQ_INFO_AUTOMASKED, count=1}}) = 0",
            $"eventfd2(0, 0) = {efd}",
            $"ioctl({d}, VFIO_DEVICE_SET_IRQS, {{argsz=24, flags=VFIO_IRQ_SET_DATA_EVENTFD|VFIO_IRQ_SET_ACTION_TRIGGER, index=0, start=0, count=1, data=[{efd}]}}) = 0",
            $"ioctl({d}, VFIO_DEVICE_SET_IRQS, {{argsz=21, flags=VFIO_IRQ_SET_DATA_BOOL|VFIO_IRQ_SET_ACTION_UNMASK, index=0, start=0, count=1, data=[1]}}) = 0",
            $"ioctl({d}, VFIO_DEVICE_SET_IRQS, {{argsz=20, flags=VFIO_IRQ_SET_DATA_NONE|VFIO_IRQ_SET_ACTION_TRIGGER, index=0, start=0, count=0}}) = 0",
            $"ioctl({d}, VFIO_DEVICE_RESET) = 0",
            $"ioctl({c}, VFIO_IOMMU_UNMAP_DMA, {{argsz=24, flags=0, iova=0, size=1048576}} => {{size=1048576}}) = 0",
        }));
        Assert.That(_sim.Strace.Records.Where(r => r.Syscall == "ioctl").Select(r => r.Request), Does.Contain("VFIO_IOMMU_MAP_DMA"));
        Assert.That(_sim.Strace.Records.Single(r => r.Request == "VFIO_IOMMU_MAP_DMA").Fd, Is.EqualTo(c));
    }

    [Test]
    public void IommuGetInfoWithRoomForCaps_ShowsTheCapOffsetAndTheArgszTheKernelAsksFor()
    {
        _sim.Bind(Edu, "vfio-pci");
        int c = _p.Open("/dev/vfio/vfio");
        int g = _p.Open($"/dev/vfio/{_sim.GroupOf(Edu)}");
        Assert.That(_p.Ioctl(g, VfioIoctl.GroupSetContainer, Put(c)), Is.Zero);
        Assert.That(_p.Ioctl(c, VfioIoctl.SetIommu, VfioExtension.Type1v2), Is.Zero);
        _sim.Strace.Start(_p);

        Assert.That(_p.Ioctl(c, VfioIoctl.IommuGetInfo, Put(new VfioIommuType1Info { Argsz = 24 })), Is.Zero);

        Assert.That(Last(), Does.Match($@"^ioctl\({c}, VFIO_IOMMU_GET_INFO, \{{argsz=24\}} => \{{argsz=\d+, flags=VFIO_IOMMU_INFO_PGSIZES\|VFIO_IOMMU_INFO_CAPS, iova_pgsizes=0x40201000, cap_offset=0\}}\) = 0$"));
    }

    [Test]
    public void ANonViableGroup_IsRefusedWithEperm_ThePrintedLineIsStraces_AndTheReasonIsKept()
    {
        _sim.Bind(PairF0, "vfio-pci");
        int c = _p.Open("/dev/vfio/vfio");
        int g = _p.Open($"/dev/vfio/{_sim.GroupOf(PairF0)}");
        _sim.Strace.Start(_p);

        Assert.That(_p.Ioctl(g, VfioIoctl.GroupGetStatus, Put(new VfioGroupStatus { Argsz = 8 })), Is.Zero);
        Assert.That(_p.Ioctl(g, VfioIoctl.GroupSetContainer, Put(c)), Is.EqualTo(Errno.EPERM.Negative()));

        Assert.That(Lines(), Is.EqualTo(new[]
        {
            $"ioctl({g}, VFIO_GROUP_GET_STATUS, {{argsz=8}} => {{flags=0}}) = 0",
            $"ioctl({g}, VFIO_GROUP_SET_CONTAINER, [{c}]) = -1 EPERM (Operation not permitted)",
        }));
        SyscallRecord refused = _sim.Strace.Records[^1];
        Assert.That(refused.Error, Is.EqualTo(Errno.EPERM));
        Assert.That(refused.Request, Is.EqualTo("VFIO_GROUP_SET_CONTAINER"));
        Assert.That(refused.Reason, Is.EqualTo("VFIO_GROUP_SET_CONTAINER: group 4 is not viable (0000:02:00.1 is bound to igb)"));
        string withReasons = _sim.Strace.Format(new StraceFormat { Reasons = true, Timestamps = false });
        Assert.That(withReasons, Does.EndWith($"-1 EPERM (Operation not permitted) /* {refused.Reason} */\n"));

        // docs/strace.md shows this very line.
        Assert.That(Repository.ReadAllText("docs/strace.md"), Does.Contain(withReasons.Split('\n')[1]));
    }

    [Test]
    public void AnArgumentThatCannotBeRead_PrintsAsItsAddress()
    {
        _sim.Bind(Edu, "vfio-pci");
        int c = _p.Open("/dev/vfio/vfio");
        int g = _p.Open($"/dev/vfio/{_sim.GroupOf(Edu)}");
        Assert.That(_p.Ioctl(g, VfioIoctl.GroupSetContainer, Put(c)), Is.Zero);
        Assert.That(_p.Ioctl(c, VfioIoctl.SetIommu, VfioExtension.Type1v2), Is.Zero);
        _sim.Strace.Start(_p);

        Assert.That(_p.Ioctl(c, VfioIoctl.IommuMapDma, 0x1000), Is.EqualTo(Errno.EFAULT.Negative()));
        Assert.That(_p.Ioctl(c, VfioIoctl.IommuUnmapDma, 0x2000), Is.EqualTo(Errno.EFAULT.Negative()));
        Assert.That(_p.Ioctl(g, VfioIoctl.GroupGetDeviceFd, 0), Is.EqualTo(Errno.EFAULT.Negative()));

        Assert.That(Lines(), Is.EqualTo(new[]
        {
            $"ioctl({c}, VFIO_IOMMU_MAP_DMA, 0x1000) = -1 EFAULT (Bad address)",
            $"ioctl({c}, VFIO_IOMMU_UNMAP_DMA, 0x2000) = -1 EFAULT (Bad address)",
            $"ioctl({g}, VFIO_GROUP_GET_DEVICE_FD, NULL) = -1 EFAULT (Bad address)",
        }));
    }

    [Test]
    public void TheSameIoctlNumber_IsNamedByTheFileItIsCalledOn()
    {
        Assert.That(VfioIoctl.IommuGetInfo, Is.EqualTo(VfioIoctl.DeviceGetPciHotResetInfo), "the collision this test is about");
        _sim.Bind(Edu, "vfio-pci");
        int c = _p.Open("/dev/vfio/vfio");
        int g = _p.Open($"/dev/vfio/{_sim.GroupOf(Edu)}");
        Assert.That(_p.Ioctl(g, VfioIoctl.GroupSetContainer, Put(c)), Is.Zero);
        Assert.That(_p.Ioctl(c, VfioIoctl.SetIommu, VfioExtension.Type1v2), Is.Zero);
        int d = (int)_p.Ioctl(g, VfioIoctl.GroupGetDeviceFd, PutString(Edu));
        _sim.Strace.Start(_p);

        _p.Ioctl(c, VfioIoctl.IommuGetInfo, Put(new VfioIommuType1Info { Argsz = 16 }));
        long hot = _p.Ioctl(d, VfioIoctl.DeviceGetPciHotResetInfo, Put(new VfioPciHotResetInfo { Argsz = 12 + 8 }, extra: 8));
        _p.Ioctl(g, VfioIoctl.DeviceGetPciHotResetInfo, 0);

        IReadOnlyList<SyscallRecord> records = _sim.Strace.Records;
        Assert.That(records.Select(r => r.Request), Is.EqualTo(new[] { "VFIO_IOMMU_GET_INFO", "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO", "0x3b70" }));
        Assert.That(records[1].ToString(), hot == 0
            ? Does.Match($@"^ioctl\({d}, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, \{{argsz=20\}} => \{{argsz=20, flags=0, count=1, devices=\[\{{group_id=\d+, segment=0, bus=1, devfn=0\}}\]\}}\) = 0$")
            : Does.StartWith($"ioctl({d}, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, {{argsz=20}}) = -1 "));
        Assert.That(records[2].ToString(), Is.EqualTo($"ioctl({g}, 0x3b70, 0) = -1 ENOTTY (Inappropriate ioctl for device)"));
    }

    [Test]
    public void TheOtherDeviceIoctls_AreDecodedByField()
    {
        _sim.Bind(Edu, "vfio-pci");
        int c = _p.Open("/dev/vfio/vfio");
        int g = _p.Open($"/dev/vfio/{_sim.GroupOf(Edu)}");
        Assert.That(_p.Ioctl(g, VfioIoctl.GroupSetContainer, Put(c)), Is.Zero);
        Assert.That(_p.Ioctl(c, VfioIoctl.SetIommu, VfioExtension.Type1v2), Is.Zero);
        int d = (int)_p.Ioctl(g, VfioIoctl.GroupGetDeviceFd, PutString(Edu));
        int efd = _p.Eventfd(0);
        _sim.Strace.Start(_p);

        _p.Ioctl(d, VfioIoctl.DeviceFeature, Put(new VfioDeviceFeature { Argsz = 8, Flags = VfioFeature.Probe | VfioFeature.Get | VfioFeature.Migration }));
        _p.Ioctl(d, VfioIoctl.DeviceIoeventfd, Put(new VfioDeviceIoeventfd { Argsz = 32, Flags = VfioPciFlags.Ioeventfd32, Offset = 0x4, Data = 0x1234, Fd = efd }));
        ulong reset = Put(new VfioPciHotReset { Argsz = 16, Count = 1 }, extra: 4);
        PutAt(reset + VfioPciHotReset.MinSz, g);
        _p.Ioctl(d, VfioIoctl.DevicePciHotReset, reset);
        _p.Ioctl(c, VfioIoctl.IommuDirtyPages, Put(new VfioIommuType1DirtyBitmap { Argsz = 8, Flags = VfioType1Flags.DirtyStart }));
        _p.Ioctl(g, VfioIoctl.GroupUnsetContainer);

        string[] lines = Lines();
        Assert.That(lines[0], Does.StartWith($"ioctl({d}, VFIO_DEVICE_FEATURE, {{argsz=8, flags=VFIO_DEVICE_FEATURE_GET|VFIO_DEVICE_FEATURE_PROBE|VFIO_DEVICE_FEATURE_MIGRATION}}) = "));
        Assert.That(lines[1], Does.StartWith($"ioctl({d}, VFIO_DEVICE_IOEVENTFD, {{argsz=32, flags=VFIO_DEVICE_IOEVENTFD_32, offset=0x4, data=0x1234, fd={efd}}}) = "));
        Assert.That(lines[2], Does.StartWith($"ioctl({d}, VFIO_DEVICE_PCI_HOT_RESET, {{argsz=16, flags=0, count=1, group_fds=[{g}]}}) = "));
        Assert.That(lines[3], Does.StartWith($"ioctl({c}, VFIO_IOMMU_DIRTY_PAGES, {{argsz=8, flags=VFIO_IOMMU_DIRTY_PAGES_FLAG_START}}) = "));
        Assert.That(lines[4], Does.StartWith($"ioctl({g}, VFIO_GROUP_UNSET_CONTAINER) = "));
    }

    [Test]
    public void KvmIoctls_AreDecoded_WithTheVfioFileAttributeByName()
    {
        _sim.Bind(Edu, "vfio-pci");
        int g = _p.Open($"/dev/vfio/{_sim.GroupOf(Edu)}");
        _sim.Strace.Start(_p);

        int kvm = _p.Open("/dev/kvm");
        Assert.That(_p.Ioctl(kvm, KvmIoctl.GetApiVersion), Is.EqualTo(KvmIoctl.ApiVersion));
        Assert.That(_p.Ioctl(kvm, KvmIoctl.CheckExtension, KvmIoctl.CapDeviceCtrl), Is.EqualTo(1));
        int vm = (int)_p.Ioctl(kvm, KvmIoctl.CreateVm);
        ulong cd = Put(new KvmCreateDevice { Type = (uint)KvmDeviceType.Vfio });
        Assert.That(_p.Ioctl(vm, KvmIoctl.CreateDevice, cd), Is.Zero);
        Assert.That(SyscallTracer.TryRead(_p, cd, out KvmCreateDevice created), Is.True);
        int dev = (int)created.Fd;
        ulong fdp = Put(g);
        Assert.That(_p.Ioctl(dev, KvmIoctl.SetDeviceAttr, Put(new KvmDeviceAttr { Group = KvmDevVfio.File, Attr = KvmDevVfio.FileAdd, Addr = fdp })), Is.Zero);
        Assert.That(_p.Ioctl(dev, KvmIoctl.SetDeviceAttr, Put(new KvmDeviceAttr { Group = KvmDevVfio.File, Attr = KvmDevVfio.FileDel, Addr = fdp })), Is.Zero);

        Assert.That(Lines(), Is.EqualTo(new[]
        {
            $"openat(AT_FDCWD, \"/dev/kvm\", O_RDWR) = {kvm}",
            $"ioctl({kvm}, KVM_GET_API_VERSION, 0) = 12",
            $"ioctl({kvm}, KVM_CHECK_EXTENSION, KVM_CAP_DEVICE_CTRL) = 1",
            $"ioctl({kvm}, KVM_CREATE_VM, 0) = {vm}",
            $"ioctl({vm}, KVM_CREATE_DEVICE, {{type=KVM_DEV_TYPE_VFIO, fd=0, flags=0}} => {{fd={dev}}}) = 0",
            $"ioctl({dev}, KVM_SET_DEVICE_ATTR, {{flags=0, group=KVM_DEV_VFIO_FILE, attr=KVM_DEV_VFIO_FILE_ADD, addr=[{g}]}}) = 0",
            $"ioctl({dev}, KVM_SET_DEVICE_ATTR, {{flags=0, group=KVM_DEV_VFIO_FILE, attr=KVM_DEV_VFIO_FILE_DEL, addr=[{g}]}}) = 0",
        }));
    }

    [Test]
    public void TheHostApiExampleOfTheDocs_RunsAsWritten()
    {
        VfioSim sim = VfioSim.CreateBuilder()
            .AddVfioPci()
            .EnableStrace()                 // every process, from boot (strace -f)
            .Build();
        SimProcess qemu = sim.Spawn("qemu");
        int container = qemu.Open("/dev/vfio/vfio");
        qemu.Ioctl(container, VfioIoctl.CheckExtension, VfioExtension.Type1v2);

        string text = sim.Strace.Format();
        string withReasons = sim.Strace.Format(new StraceFormat { Reasons = true });

        const string Expected = "00:00:00.000000 openat(AT_FDCWD, \"/dev/vfio/vfio\", O_RDWR) = 0\n00:00:00.000000 ioctl(0, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) = 1\n";
        Assert.That(text, Is.EqualTo(Expected));
        Assert.That(withReasons, Is.EqualTo(Expected));
        string doc = Repository.ReadAllText("docs/strace.md");
        foreach (string line in Expected.TrimEnd('\n').Split('\n'))
        {
            Assert.That(doc, Does.Contain("// " + line));
        }
    }

    [Test]
    public void ExtensionsAndFeatures_AreNamedAsTheUapiHeaderNamesThem()
    {
        Assert.That(VfioStrace.ExtensionName(VfioExtension.Type1), Is.EqualTo("VFIO_TYPE1_IOMMU"));
        Assert.That(VfioStrace.ExtensionName(VfioExtension.NoIommu), Is.EqualTo("VFIO_NOIOMMU_IOMMU"));
        Assert.That(VfioStrace.ExtensionName(VfioExtension.UpdateVaddr), Is.EqualTo("VFIO_UPDATE_VADDR"));
        Assert.That(VfioStrace.ExtensionName(77), Is.EqualTo("77"));
        Assert.That(VfioStrace.FeatureFlags(VfioFeature.Set | VfioFeature.MigDeviceState), Is.EqualTo("VFIO_DEVICE_FEATURE_SET|VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE"));
        Assert.That(VfioStrace.FeatureFlags(VfioFeature.Get | VfioFeature.BusMaster), Is.EqualTo("VFIO_DEVICE_FEATURE_GET|VFIO_DEVICE_FEATURE_BUS_MASTER"));
        Assert.That(VfioStrace.FeatureFlags(VfioFeature.Get | 0x99), Is.EqualTo("VFIO_DEVICE_FEATURE_GET|153"));
    }
}
