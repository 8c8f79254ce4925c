// Tests Vfio.Core/Client/VfioGroupFd.cs and VfioDeviceFd.cs against the real vfio core on
// the host (ClientSim.cs): requests as the uapi lays them out, replies parsed, the kernel's
// reasons in the exceptions, and fds closed by Dispose. Devices are vfio-pci's (edu and the
// NIC); what vfio-pci never answers on this machine (device-info capabilities, sparse mmap,
// a short config read) comes from VariantDeviceOps behind the sample vfio bus driver, still
// through the real container, group and device fd.

using NUnit.Framework;
using Vfio.Core.Client;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Devices;
using Vfio.Platform.Fs;
using Vfio.Platform.Pci;
using Vfio.Sim;

namespace Vfio.Tests.Core.Client;

public sealed class VfioGroupAndDeviceFdTests
{
    [Test]
    public void TheGroup_ReportsItsStatus_AndTakesTheContainersFd()
    {
        var vfio = new ClientSim();
        using VfioGroupFd group = vfio.OpenGroup(ClientSim.Edu);
        using var container = new VfioContainerFd(vfio.Process);
        int id = vfio.Sim.GroupOf(ClientSim.Edu);
        Vfio.Core.VfioGroup kernelGroup = vfio.KernelDevice(ClientSim.Edu).Group!;

        Assert.That(group.GetStatus(), Is.EqualTo(VfioGroupFlags.Viable));
        group.SetContainer(container);
        Assert.That(kernelGroup.Container, Is.SameAs(vfio.KernelContainer(container)), "the s32 fd reached the kernel through the pointer");
        Assert.That(group.GetStatus(), Is.EqualTo(VfioGroupFlags.Viable | VfioGroupFlags.ContainerSet));

        VfioException again = Assert.Throws<VfioException>(() => group.SetContainer(container.Fd))!;
        Assert.That(again.Message, Is.EqualTo($"VFIO_GROUP_SET_CONTAINER: group {id} already has a container — EINVAL"));
        group.UnsetContainer();
        Assert.That(kernelGroup.Container, Is.Null);
        Assert.That(group.Path, Is.EqualTo($"/dev/vfio/{id}"));
    }

    [Test]
    public void GetDeviceFd_PassesTheName_AndAnUnknownNameCarriesTheKernelsReason()
    {
        var vfio = new ClientSim();
        (VfioContainerFd container, VfioGroupFd group) = vfio.OpenContainerWithGroup();
        using (container)
        using (group)
        {
            int id = vfio.Sim.GroupOf(ClientSim.Edu);
            VfioException e = Assert.Throws<VfioException>(() => group.GetDeviceFd("0000:01:00.1"))!;
            Assert.That((e.Errno, e.Ioctl), Is.EqualTo((Errno.ENODEV, "VFIO_GROUP_GET_DEVICE_FD")));
            Assert.That(e.Message, Is.EqualTo($"VFIO_GROUP_GET_DEVICE_FD: no registered device \"0000:01:00.1\" in group {id} — ENODEV"));

            using VfioDeviceFd device = group.GetDeviceFd(ClientSim.Edu);
            Assert.That(device.Fd, Is.GreaterThan(group.Fd));
            Assert.That(vfio.KernelDevice(ClientSim.Edu).OpenCountUnlocked, Is.EqualTo(1), "the name reached the kernel: edu is open");
            VfioException busy = Assert.Throws<VfioException>(group.UnsetContainer)!;
            Assert.That(busy.Errno, Is.EqualTo(Errno.EBUSY));
        }
    }

    [Test]
    public void DeviceInfo_AndRegionInfo_ComeBackWithTheirCapabilities()
    {
        var vfio = new ClientSim();
        vfio.Sim.Bind(ClientSim.Nic);
        using VfioSession s = vfio.Sim.Open(vfio.Process, ClientSim.Nic);
        VfioDeviceFd device = s.Device;

        // vfio-pci of this build puts no capability in GET_INFO.
        VfioInfo<VfioDeviceInfo> info = device.GetInfo();
        Assert.That(info.Info.Flags, Is.EqualTo(VfioDeviceFlags.Pci | VfioDeviceFlags.Reset));
        Assert.That((info.Info.NumRegions, info.Info.NumIrqs), Is.EqualTo((9u, 5u)));
        Assert.That(info.Caps, Is.Empty);

        // The NIC's MSI-X table lives in BAR4: vfio-pci marks that BAR MSIX_MAPPABLE.
        VfioInfo<VfioRegionInfo> msixBar = device.GetRegionInfo(VfioPciIndex.Bar0 + 4);
        Assert.That(msixBar.Info.Index, Is.EqualTo(4));
        Assert.That(msixBar.Info.Size, Is.EqualTo(NicDevice.MsixBarSize));
        Assert.That(msixBar.Info.Flags, Is.EqualTo(VfioRegionFlags.Read | VfioRegionFlags.Write | VfioRegionFlags.Mmap | VfioRegionFlags.Caps));
        Assert.That(msixBar.Info.CapOffset, Is.EqualTo(32));
        Assert.That(msixBar.Caps.Select(c => c.Id), Is.EqualTo(new[] { VfioCapId.RegionMsixMappable }));

        VfioInfo<VfioRegionInfo> config = device.GetRegionInfo(VfioPciIndex.Config);
        Assert.That(config.Info.Index, Is.EqualTo(7), "the index survives the second call");
        Assert.That(config.Info.Offset, Is.EqualTo(0x700_0000_0000UL));
        Assert.That(config.Info.Flags, Is.EqualTo(VfioRegionFlags.Read | VfioRegionFlags.Write));
        Assert.That(config.Caps, Is.Empty);

        VfioException bad = Assert.Throws<VfioException>(() => device.GetRegionInfo(9))!;
        Assert.That(bad.Message, Is.EqualTo($"VFIO_DEVICE_GET_REGION_INFO: index 9 is not below the 9 regions of {ClientSim.Nic} — EINVAL"));
    }

    [Test]
    public void ADriversDeviceCapability_AndSparseMmapAreas_AreParsed()
    {
        var vfio = new ClientSim();
        vfio.Variant.CustomOps = new VariantDeviceOps();
        vfio.Sim.Bind(ClientSim.Edu, ClientSim.VariantDriver);
        using VfioSession s = vfio.Sim.Open(vfio.Process, ClientSim.Edu);
        VfioDeviceFd device = s.Device;

        VfioInfo<VfioDeviceInfo> info = device.GetInfo();
        Assert.That(info.Info.Flags, Is.EqualTo(VfioDeviceFlags.Pci | VfioDeviceFlags.Reset | VfioDeviceFlags.Caps));
        Assert.That((info.Info.NumRegions, info.Info.NumIrqs), Is.EqualTo((9u, 5u)));
        Assert.That(info.Find(VfioCapId.DevicePciAtomicComp)?.Read<VfioDeviceInfoCapPciAtomicComp>().Flags, Is.EqualTo(VfioPciFlags.AtomicComp32 | VfioPciFlags.AtomicComp64));

        VfioInfo<VfioRegionInfo> bar0 = device.GetRegionInfo(VfioPciIndex.Bar0);
        Assert.That(bar0.Info.Index, Is.EqualTo(0));
        Assert.That(bar0.Info.Size, Is.EqualTo(0x4000));
        Assert.That(bar0.Info.CapOffset, Is.EqualTo(32));
        Assert.That(bar0.Caps.Select(c => c.Id), Is.EqualTo(new[] { VfioCapId.RegionSparseMmap, VfioCapId.RegionMsixMappable }));
        VfioRegionSparseMmapArea[] areas = bar0.Find(VfioCapId.RegionSparseMmap)!.ReadSparseMmapAreas();
        Assert.That(areas.Select(a => (a.Offset, a.Size)), Is.EqualTo(new[] { (0UL, 0x2000UL), (0x3000UL, 0x1000UL) }));

        VfioException bad = Assert.Throws<VfioException>(() => device.GetRegionInfo(9))!;
        Assert.That(bad.Message, Is.EqualTo("VFIO_DEVICE_GET_REGION_INFO: region index 9 is not below 9 — EINVAL"), "a reason without the ioctl's name gets it in front");
    }

    [Test]
    public void IrqCalls_SendTheHeaderAndTheirData_AndVfioPciActsOnEachVector()
    {
        // The NIC's MSI-X (5 vectors): eventfds for vectors 2..4 with -1 for vector 3, as one
        // SET_IRQS with 3 s32s after the header; loopback triggers show which vectors got one.
        var vfio = new ClientSim();
        vfio.Sim.Bind(ClientSim.Nic);
        using VfioSession s = vfio.Sim.Open(vfio.Process, ClientSim.Nic);
        VfioDeviceFd device = s.Device;
        int efd = vfio.Process.Eventfd(0, EventFdContext.EFD_NONBLOCK);

        device.SetIrqEventfds(VfioPciIndex.IrqMsix, 2, [efd, -1, efd]);
        Assert.That(EventFdRefs(vfio, efd), Is.EqualTo(3), "vectors 2 and 4 hold the eventfd, vector 3 holds none");
        Assert.That(vfio.Sim.Device(ClientSim.Nic).MsixEnabled, Is.True);
        for (uint v = 2; v <= 4; v++)
        {
            device.TriggerIrq(VfioPciIndex.IrqMsix, v);
        }

        byte[] counter = new byte[8];
        Assert.That(vfio.Process.Read(efd, counter), Is.EqualTo(8));
        Assert.That(BitConverter.ToUInt64(counter), Is.EqualTo(2UL), "vectors 2 and 4 fired; vector 3 has no eventfd");

        device.DisableIrqs(VfioPciIndex.IrqMsix);
        Assert.That(EventFdRefs(vfio, efd), Is.EqualTo(1), "count 0 released both vectors' references");
        Assert.That(vfio.Sim.Device(ClientSim.Nic).MsixEnabled, Is.False);

        device.SetIrqEventfd(VfioPciIndex.IrqIntx, efd);
        device.MaskIrq(VfioPciIndex.IrqIntx);
        device.UnmaskIrq(VfioPciIndex.IrqIntx);
        device.DisableIrqs(VfioPciIndex.IrqIntx);
        Assert.That(EventFdRefs(vfio, efd), Is.EqualTo(1));
    }

    [Test]
    public void IrqCalls_OnVfioPci_RegisterTriggerAndReleaseTheReqEventfd()
    {
        // REQ loops a trigger back to its eventfd; INTx UNMASK needs INTx enabled first.
        var vfio = new ClientSim();
        vfio.Sim.Bind(ClientSim.Nic);
        using VfioSession s = vfio.Sim.Open(vfio.Process, ClientSim.Nic);
        VfioDeviceFd device = s.Device;
        int efd = vfio.Process.Eventfd(0);

        VfioIrqInfo msix = device.GetIrqInfo(VfioPciIndex.IrqMsix);
        // linux-6.12 allocates MSI-X vectors on demand, so MSI-X is not NORESIZE (VfioPciFeatures.DynamicMsix).
        Assert.That((msix.Index, msix.Count, msix.Flags), Is.EqualTo(((uint)VfioPciIndex.IrqMsix, (uint)NicDevice.Vectors, VfioIrqInfoFlags.Eventfd)));

        device.SetIrqEventfd(VfioPciIndex.IrqReq, efd);
        Assert.That(EventFdRefs(vfio, efd), Is.EqualTo(2), "the device holds the eventfd");
        device.TriggerIrq(VfioPciIndex.IrqReq);
        byte[] counter = new byte[8];
        Assert.That(vfio.Process.Read(efd, counter), Is.EqualTo(8));
        Assert.That(BitConverter.ToUInt64(counter), Is.EqualTo(1UL));
        device.DisableIrqs(VfioPciIndex.IrqReq);
        Assert.That(EventFdRefs(vfio, efd), Is.EqualTo(1), "count 0 released it");

        VfioException intx = Assert.Throws<VfioException>(() => device.UnmaskIrq(VfioPciIndex.IrqIntx))!;
        Assert.That((intx.Errno, intx.Ioctl), Is.EqualTo((Errno.EINVAL, "VFIO_DEVICE_SET_IRQS")));
    }

    [Test]
    public void ConfigAccess_GoesThroughTheConfigRegionsOffset_AndResetReachesTheDevice()
    {
        var vfio = new ClientSim();
        vfio.Sim.Bind(ClientSim.Edu);
        using VfioSession s = vfio.Sim.Open(vfio.Process, ClientSim.Edu);
        VfioDeviceFd device = s.Device;
        PciDevice edu = vfio.Sim.Device(ClientSim.Edu);

        Assert.That(device.ReadConfig16(0), Is.EqualTo(0x1234), "vendor");
        Assert.That(device.ReadConfig32(0), Is.EqualTo(0x11e8_1234u), "vendor and device");
        Assert.That(device.ReadConfig8(2), Is.EqualTo(0xe8));
        device.WriteConfig16(4, 0x0006);
        device.WriteConfig32(0x10, 0xfebf_0000);
        device.WriteConfig8(0x3c, 11);
        Assert.That(edu.ReadConfig(4, 2) & 0x0006, Is.EqualTo(0x0006u), "memory decode and bus master reached the function's COMMAND");
        Assert.That(device.ReadConfig8(0x13), Is.EqualTo(0xfe), "BAR0's top byte, little-endian");
        Assert.That(device.ReadConfig32(0x10) & ~(uint)(edu.ResourceLength(0) - 1), Is.EqualTo(0xfebf_0000u & ~(uint)(edu.ResourceLength(0) - 1)), "the virtual BAR keeps the size-aligned address");
        Assert.That(device.ReadConfig8(0x3c), Is.EqualTo(11));

        // vfio_config_do_rw refuses an access that crosses the end of config space.
        VfioException crossing = Assert.Throws<VfioException>(() => device.ReadConfig32(edu.ConfigSize - 2))!;
        Assert.That(crossing.Errno, Is.EqualTo(Errno.EFAULT));

        VfioException e = Assert.Throws<VfioException>(() => device.Read(VfioPciIndex.Vga, 0, new byte[4]))!;
        Assert.That(e.Message, Is.EqualTo($"pread: read: {ClientSim.Edu} has no VGA region — EINVAL"));

        long before = edu.ResetCount(PciResetKind.Bus);
        device.Reset();
        Assert.That(edu.ResetCount(PciResetKind.Bus), Is.EqualTo(before + 1));
    }

    [Test]
    public void AShortConfigRead_IsNotAValue()
    {
        var vfio = new ClientSim();
        var ops = new VariantDeviceOps();
        vfio.Variant.CustomOps = ops;
        vfio.Sim.Bind(ClientSim.Edu, ClientSim.VariantDriver);
        using VfioSession s = vfio.Sim.Open(vfio.Process, ClientSim.Edu);
        ops.Config[0xfe] = 0x34;
        ops.Config[0xff] = 0x12;

        Assert.That(s.Device.ReadConfig16(0xfe), Is.EqualTo(0x1234));
        Assert.Throws<InvalidOperationException>(() => s.Device.ReadConfig32(254), "a short read is not a value");
        VfioException e = Assert.Throws<VfioException>(() => s.Device.Read(VfioPciIndex.Bar0, 0, new byte[4]))!;
        Assert.That(e.Message, Is.EqualTo("pread: region 0 cannot be read — EINVAL"));
    }

    [Test]
    public void DisposingTheDevice_ReleasesIt_AndTheGroupCanBeDetached()
    {
        var vfio = new ClientSim();
        (VfioContainerFd container, VfioGroupFd group) = vfio.OpenContainerWithGroup(driver: ClientSim.VariantDriver);
        using (container)
        {
            VfioDeviceFd device = group.GetDeviceFd(ClientSim.Edu);
            int fd = device.Fd;
            Vfio.Core.VfioGroup kernelGroup = vfio.KernelDevice(ClientSim.Edu).Group!;

            device.Dispose();
            device.Dispose();

            Assert.That(vfio.Variant.Ops.Closes, Is.EqualTo(1), "close_device ran once");
            Assert.That(vfio.KernelDevice(ClientSim.Edu).OpenCountUnlocked, Is.Zero);
            Assert.That(vfio.Process.Ioctl(fd, VfioIoctl.DeviceReset), Is.EqualTo(Errno.EBADF.Negative()));
            Assert.Throws<ObjectDisposedException>(device.Reset);
            Assert.DoesNotThrow(group.UnsetContainer);
            group.Dispose();
            Assert.That(kernelGroup.OpenedFile, Is.Null, "the group file was released");
            Assert.Throws<ObjectDisposedException>(() => group.GetStatus());
        }
    }

    /// <summary>The eventfd's reference count without the one this peek takes.</summary>
    private static int EventFdRefs(ClientSim vfio, int efd)
    {
        Vfio.Platform.Fs.SimFile f = vfio.Process.Files.Get(efd)!;
        try
        {
            Vfio.Platform.Fs.EventFdContext ctx = Vfio.Platform.Fs.EventFdContext.FromFile(f)!;
            int refs = ctx.ReferenceCount;
            ctx.Put();
            return refs - 1;
        }
        finally
        {
            f.Put();
        }
    }
}
