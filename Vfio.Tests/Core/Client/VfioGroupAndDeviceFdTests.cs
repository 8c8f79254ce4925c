// Tests Vfio.Core/Client/VfioGroupFd.cs and VfioDeviceFd.cs against the fake /dev/vfio/26
// and its device (FakeVfio.cs): requests as the uapi lays them out, replies parsed, the
// kernel's reasons in the exceptions, and fds closed by Dispose.

using NUnit.Framework;
using Vfio.Core.Client;
using Vfio.Core.Uapi;
using Vfio.Kernel;

namespace Vfio.Tests.Core.Client;

public sealed class VfioGroupAndDeviceFdTests
{
    [Test]
    public void TheGroup_ReportsItsStatus_AndTakesTheContainersFd()
    {
        var vfio = new FakeVfio();
        using var container = new VfioContainerFd(vfio.Process);
        using var group = new VfioGroupFd(vfio.Process, FakeVfio.GroupId);

        Assert.That(group.GetStatus(), Is.EqualTo(VfioGroupFlags.Viable));
        group.SetContainer(container);
        Assert.That(vfio.Group.ContainerFd, Is.EqualTo(container.Fd), "the s32 fd reached the kernel through the pointer");
        Assert.That(group.GetStatus(), Is.EqualTo(VfioGroupFlags.Viable | VfioGroupFlags.ContainerSet));

        VfioException again = Assert.Throws<VfioException>(() => group.SetContainer(container.Fd))!;
        Assert.That(again.Message, Is.EqualTo("VFIO_GROUP_SET_CONTAINER: group 26 already has a container — EINVAL"));
        group.UnsetContainer();
        Assert.That(vfio.Group.ContainerFd, Is.Null);
        Assert.That(group.Path, Is.EqualTo("/dev/vfio/26"));
    }

    [Test]
    public void GetDeviceFd_PassesTheName_AndAnUnknownNameCarriesTheKernelsReason()
    {
        var vfio = new FakeVfio();
        using var group = new VfioGroupFd(vfio.Process, FakeVfio.GroupId);

        VfioException e = Assert.Throws<VfioException>(() => group.GetDeviceFd("0000:00:03.1"))!;
        Assert.That((e.Errno, e.Ioctl), Is.EqualTo((Errno.ENODEV, "VFIO_GROUP_GET_DEVICE_FD")));
        Assert.That(e.Message, Is.EqualTo("VFIO_GROUP_GET_DEVICE_FD: no device named \"0000:00:03.1\" in group 26 — ENODEV"));

        using VfioDeviceFd device = group.GetDeviceFd(FakeVfio.DeviceName);
        Assert.That(device.Fd, Is.GreaterThan(group.Fd));
        Assert.That(vfio.Group.DeviceOpen, Is.True);
        VfioException busy = Assert.Throws<VfioException>(group.UnsetContainer)!;
        Assert.That(busy.Errno, Is.EqualTo(Errno.EBUSY));
    }

    [Test]
    public void DeviceInfo_AndRegionInfo_ComeBackWithTheirCapabilities()
    {
        var vfio = new FakeVfio();
        using var group = new VfioGroupFd(vfio.Process, FakeVfio.GroupId);
        using VfioDeviceFd device = group.GetDeviceFd(FakeVfio.DeviceName);

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

        VfioInfo<VfioRegionInfo> config = device.GetRegionInfo(VfioPciIndex.Config);
        Assert.That(config.Info.Index, Is.EqualTo(7), "the index survives the second call");
        Assert.That(config.Info.Offset, Is.EqualTo(0x700_0000_0000UL));
        Assert.That(config.Info.Flags, Is.EqualTo(VfioRegionFlags.Read | VfioRegionFlags.Write));
        Assert.That(config.Caps, Is.Empty);

        VfioException bad = Assert.Throws<VfioException>(() => device.GetRegionInfo(9))!;
        Assert.That(bad.Message, Is.EqualTo("VFIO_DEVICE_GET_REGION_INFO: region index 9 is not below 9 — EINVAL"));
    }

    [Test]
    public void IrqCalls_SendTheHeaderAndTheirData()
    {
        var vfio = new FakeVfio();
        using var group = new VfioGroupFd(vfio.Process, FakeVfio.GroupId);
        using VfioDeviceFd device = group.GetDeviceFd(FakeVfio.DeviceName);
        int efd = vfio.Process.Eventfd(0);

        VfioIrqInfo msix = device.GetIrqInfo(VfioPciIndex.IrqMsix);
        device.SetIrqEventfds(VfioPciIndex.IrqMsix, 2, [efd, -1, efd]);
        device.DisableIrqs(VfioPciIndex.IrqMsix);
        device.UnmaskIrq(VfioPciIndex.IrqIntx);

        Assert.That((msix.Index, msix.Count, msix.Flags), Is.EqualTo((2u, 8u, VfioIrqInfoFlags.Eventfd | VfioIrqInfoFlags.NoResize)));
        List<byte[]> sets = vfio.Group.Device.IrqSets;
        Assert.That(sets, Has.Count.EqualTo(3));
        VfioIrqSet first = System.Runtime.InteropServices.MemoryMarshal.Read<VfioIrqSet>(sets[0]);
        Assert.That(
            (first.Argsz, first.Flags, first.Index, first.Start, first.Count),
            Is.EqualTo((32u, VfioIrqSetFlags.DataEventfd | VfioIrqSetFlags.ActionTrigger, 2u, 2u, 3u)));
        Assert.That(FakeDevice.Eventfds(sets[0]), Is.EqualTo(new[] { efd, -1, efd }));
        VfioIrqSet disable = System.Runtime.InteropServices.MemoryMarshal.Read<VfioIrqSet>(sets[1]);
        Assert.That((disable.Argsz, disable.Flags, disable.Count), Is.EqualTo((20u, VfioIrqSetFlags.DataNone | VfioIrqSetFlags.ActionTrigger, 0u)));
        VfioIrqSet unmask = System.Runtime.InteropServices.MemoryMarshal.Read<VfioIrqSet>(sets[2]);
        Assert.That((unmask.Flags, unmask.Index, unmask.Start, unmask.Count), Is.EqualTo((VfioIrqSetFlags.DataNone | VfioIrqSetFlags.ActionUnmask, 0u, 0u, 1u)));
    }

    [Test]
    public void ConfigAccess_GoesThroughTheConfigRegionsOffset_AndResetReachesTheDevice()
    {
        var vfio = new FakeVfio();
        using var group = new VfioGroupFd(vfio.Process, FakeVfio.GroupId);
        using VfioDeviceFd device = group.GetDeviceFd(FakeVfio.DeviceName);
        byte[] cfg = vfio.Group.Device.Config;
        cfg[0] = 0x86;
        cfg[1] = 0x80;
        cfg[2] = 0xd3;
        cfg[3] = 0x10;

        Assert.That(device.ReadConfig16(0), Is.EqualTo(0x8086));
        Assert.That(device.ReadConfig32(0), Is.EqualTo(0x10d3_8086u));
        Assert.That(device.ReadConfig8(2), Is.EqualTo(0xd3));
        device.WriteConfig16(4, 0x0406);
        device.WriteConfig32(0x10, 0xfebf_0000);
        device.WriteConfig8(0x3c, 11);
        Assert.That(cfg.AsSpan(4, 2).ToArray(), Is.EqualTo(new byte[] { 0x06, 0x04 }));
        Assert.That(cfg.AsSpan(0x10, 4).ToArray(), Is.EqualTo(new byte[] { 0, 0, 0xbf, 0xfe }));
        Assert.That(cfg[0x3c], Is.EqualTo(11));
        Assert.Throws<InvalidOperationException>(() => device.ReadConfig32(254), "a short read is not a value");

        VfioException e = Assert.Throws<VfioException>(() => device.Read(VfioPciIndex.Bar0, 0, new byte[4]))!;
        Assert.That(e.Message, Is.EqualTo("pread: region 0 cannot be read — EINVAL"));

        device.Reset();
        Assert.That(vfio.Group.Device.Resets, Is.EqualTo(1));
    }

    [Test]
    public void DisposingTheDevice_ReleasesIt_AndTheGroupCanBeDetached()
    {
        var vfio = new FakeVfio();
        using var group = new VfioGroupFd(vfio.Process, FakeVfio.GroupId);
        VfioDeviceFd device = group.GetDeviceFd(FakeVfio.DeviceName);
        int fd = device.Fd;

        device.Dispose();
        device.Dispose();

        Assert.That(vfio.Group.Device.Releases, Is.EqualTo(1));
        Assert.That(vfio.Process.Ioctl(fd, VfioIoctl.DeviceReset), Is.EqualTo(Errno.EBADF.Negative()));
        Assert.Throws<ObjectDisposedException>(device.Reset);
        Assert.DoesNotThrow(group.UnsetContainer);
        group.Dispose();
        Assert.That(vfio.Group.Releases, Is.EqualTo(1));
        Assert.Throws<ObjectDisposedException>(() => group.GetStatus());
    }
}
