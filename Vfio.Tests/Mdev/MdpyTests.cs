// The mdpy sample: types and the count cap, region info, config space with BAR sizing and
// the vendor capability, framebuffer through pread/pwrite and mmap, the gradient after
// RESET, QUERY_GFX_PLANE, and every rejection with the state unchanged after it.

using NUnit.Framework;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Mdev;
using Vfio.Mdev.Samples.Mdpy;
using Vfio.Platform.Mm;

namespace Vfio.Tests.Mdev;

[TestFixture]
public sealed class MdpyTests
{
    private static IEnumerable<KernelProfile> Profiles() => [KernelProfile.Linux6_12, KernelProfile.Linux6_1];

    [Test]
    public void The_types_are_the_kernels_with_their_names_and_descriptions()
    {
        var rig = new DisplayRig();
        Assert.That(rig.Mdpy.Types.Select(t => t.DirName), Is.EqualTo(new[] { "mdpy-vga", "mdpy-xga", "mdpy-hd" }));
        Assert.That(rig.Mdpy.Types.Select(t => t.PrettyName), Is.EqualTo(new[] { "mdpy-vga", "mdpy-xga", "mdpy-hd" }));
        Assert.That(rig.Mdpy.ShowDescription(rig.Mdpy.Types[2]), Is.EqualTo("virtual display, 1920x1080 framebuffer\n"));
        Assert.That(rig.Mdpy.Provides, Is.EqualTo(MdevDriverOps.GetAvailable | MdevDriverOps.ShowDescription));
        Assert.That(rig.Mdpy.DeviceApi, Is.EqualTo("vfio-pci"));
        Assert.That(rig.Sim.Machine.Vfs.Exists("/sys/devices/virtual/mdpy/mdpy"), Is.True);
    }

    [TestCaseSource(nameof(Profiles))]
    public void Count_caps_live_devices_with_ENOMEM_and_release_gives_the_slot_back(KernelProfile profile)
    {
        var rig = new DisplayRig(profile, mdpyCount: 2);
        rig.Run(() =>
        {
            MdpyType vga = rig.Mdpy.Types[0];
            MdevDevice a = rig.CreateOk(vga);
            Assert.That(rig.Mdpy.GetAvailable(vga), Is.EqualTo(1));
            MdevDevice b = rig.CreateOk(rig.Mdpy.Types[1]);
            Assert.That(rig.Mdpy.GetAvailable(vga), Is.Zero);
            Assert.That((rig.AvailableInstances(vga), rig.AvailableInstances(rig.Mdpy.Types[2])), Is.EqualTo((0, 0)), "the count is shared by every type");
            long used = rig.Memory.UsedPages;
            Assert.That(rig.Create(vga, out _), Is.EqualTo(Errno.ENOMEM.Negative()));
            Assert.That(rig.Mdpy.LiveDevices, Is.EqualTo(2));
            Assert.That(rig.Memory.UsedPages, Is.EqualTo(used), "a refused init allocates nothing");
            rig.Remove(a);
            Assert.That(rig.AvailableInstances(vga), Is.EqualTo(1));
            rig.CreateOk(vga);
            rig.Remove(b);
        });
    }

    [Test]
    public void The_framebuffer_is_a_power_of_two_of_real_pages_freed_at_release()
    {
        var rig = new DisplayRig();
        rig.Run(() =>
        {
            MdevDevice mdev = rig.CreateOk(rig.Mdpy.Types[0]);
            MdpyDevice dev = Mdpy.DeviceOf(mdev)!;
            Assert.That(dev.MemSize, Is.EqualTo(2u << 20), "640x480x4 rounds up to 2 MiB");
            long[] pages = [.. dev.FramebufferPages];
            Assert.That(pages, Has.Length.EqualTo(512));
            Assert.That(pages.Select(rig.Memory.RefCount), Is.All.EqualTo(1));
            Assert.That(rig.Sim.Machine.Vfs.Exists($"/sys/bus/mdev/devices/{mdev.Name}/vendor/resolution"), Is.True);
            rig.Remove(mdev);
            Assert.That(pages.Select(rig.Memory.RefCount), Is.All.Zero, "vfree at release");
        });
    }

    [Test]
    public void Region_info_reports_config_bar0_and_the_display_region_and_refuses_other_high_indexes()
    {
        var rig = new DisplayRig();
        rig.Run(() =>
        {
            MdpyDevice dev = Mdpy.DeviceOf(rig.CreateOk(rig.Mdpy.Types[1]))!;
            var fds = rig.Open(dev);
            VfioRegionInfo cfg = rig.RegionInfo(fds.Device, VfioPciIndex.Config, out long r);
            Assert.That((r, cfg.Size, cfg.Offset, cfg.Flags), Is.EqualTo((0L, 0xffUL, 0UL, VfioRegionFlags.Read | VfioRegionFlags.Write)));
            foreach (uint index in new uint[] { 0, MdpyDevice.DisplayRegion })
            {
                VfioRegionInfo fb = rig.RegionInfo(fds.Device, index, out r);
                Assert.That((r, fb.Size, fb.Offset, fb.Flags), Is.EqualTo((0L, 4UL << 20, 4096UL, VfioRegionFlags.Read | VfioRegionFlags.Write | VfioRegionFlags.Mmap)));
            }

            VfioRegionInfo bar2 = rig.RegionInfo(fds.Device, 2, out r);
            Assert.That((r, bar2.Size, bar2.Flags), Is.EqualTo((0L, 0UL, (VfioRegionFlags)0)));
            foreach (uint index in new uint[] { 9, 15, 17 })
            {
                rig.RegionInfo(fds.Device, index, out r);
                Assert.That(r, Is.EqualTo(Errno.EINVAL.Negative()), $"index {index}");
            }

            var small = new VfioRegionInfo { Argsz = 16, Index = 0 };
            Assert.That(rig.Ioctl(fds.Device, VfioIoctl.DeviceGetRegionInfo, ref small), Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That(small.Size, Is.Zero, "nothing written back");
            rig.CloseAll(fds);
        });
    }

    [Test]
    public void Config_space_has_the_ids_class_vendor_cap_and_bar0_sizing()
    {
        var rig = new DisplayRig();
        rig.Run(() =>
        {
            MdpyDevice dev = Mdpy.DeviceOf(rig.CreateOk(rig.Mdpy.Types[2]))!;
            var fds = rig.Open(dev);
            Assert.That(rig.PreadU32(fds.Device, 0), Is.EqualTo(0x000f1b36u));
            Assert.That(rig.PreadU32(fds.Device, 0x08) >> 8, Is.EqualTo(0x038000u), "class DISPLAY_OTHER");
            Assert.That(rig.PreadU32(fds.Device, 0x04) >> 16, Is.EqualTo(0x0010u), "status has the capability list");
            Assert.That(rig.PreadU32(fds.Device, 0x34) & 0xff, Is.EqualTo(0x40u));
            Assert.That(rig.PreadU32(fds.Device, 0x40) & 0xffffff, Is.EqualTo(0x100009u));
            Assert.That(rig.PreadU32(fds.Device, 0x44), Is.EqualTo(DrmFourcc.Xrgb8888));
            Assert.That((rig.PreadU32(fds.Device, 0x48), rig.PreadU32(fds.Device, 0x4c)), Is.EqualTo((1920u, 1080u)));
            Assert.That(rig.PreadU32(fds.Device, 0x10), Is.EqualTo(0x08u));
            rig.PwriteU32(fds.Device, 0x10, 0xffffffff);
            Assert.That(rig.PreadU32(fds.Device, 0x10), Is.EqualTo(~(8u << 20) + 1 | 0x08), "8 MiB BAR, prefetchable");
            rig.PwriteU32(fds.Device, 0x10, 0xe000_0003);
            Assert.That(rig.PreadU32(fds.Device, 0x10), Is.EqualTo(0xe000_0008u));
            rig.PwriteU32(fds.Device, 0x00, 0);
            Assert.That(rig.PreadU32(fds.Device, 0), Is.EqualTo(0x000f1b36u), "other config writes are dropped");
            Assert.That(rig.User.Pread(fds.Device, new byte[4], 0x100), Is.EqualTo(Errno.EFAULT.Negative()), "between config and framebuffer");
            Assert.That(rig.User.Pread(fds.Device, new byte[4], 4096 + (8 << 20)), Is.EqualTo(Errno.EFAULT.Negative()), "past the framebuffer");
            rig.CloseAll(fds);
        });
    }

    [Test]
    public void A_pwrite_is_visible_through_mmap_and_a_store_through_pread()
    {
        var rig = new DisplayRig();
        rig.Run(() =>
        {
            MdpyDevice dev = Mdpy.DeviceOf(rig.CreateOk(rig.Mdpy.Types[0]))!;
            var fds = rig.Open(dev);
            ulong fb = rig.Map(fds.Device, dev.MemSize, MdpyDevice.MemoryBarOffset);
            Assert.That(fb, Is.LessThan(0x8000_0000_0000UL), ErrorReason.Current);
            rig.PwriteU32(fds.Device, MdpyDevice.MemoryBarOffset, 0x11223344);
            Assert.That(rig.ReadU32(fb), Is.EqualTo(0x11223344u));
            rig.WriteU32(fb, 0xcafef00d);
            Assert.That(rig.PreadU32(fds.Device, MdpyDevice.MemoryBarOffset), Is.EqualTo(0xcafef00du));

            // The kernel's mdev_access drops the offset: any framebuffer pwrite lands at byte 0.
            rig.PwriteU32(fds.Device, MdpyDevice.MemoryBarOffset + 0x1000, 0x55aa55aa);
            Assert.That(rig.ReadU32(fb), Is.EqualTo(0x55aa55aau));
            Assert.That(rig.ReadU32(fb + (2 * 2560)), Is.EqualTo(0x01010101u), "row 2 of the gradient (2*255/480 = 1) is untouched");
            Assert.That(rig.User.Munmap(fb, dev.MemSize), Is.Zero);
            rig.CloseAll(fds);
        });
    }

    [Test]
    public void Reset_repaints_the_gray_gradient()
    {
        var rig = new DisplayRig();
        rig.Run(() =>
        {
            MdpyDevice dev = Mdpy.DeviceOf(rig.CreateOk(rig.Mdpy.Types[0]))!;
            var fds = rig.Open(dev);
            ulong fb = rig.Map(fds.Device, dev.MemSize, MdpyDevice.MemoryBarOffset);
            rig.WriteU32(fb, 0);
            rig.WriteU32(fb + (479 * 2560), 0);
            Assert.That(rig.User.Ioctl(fds.Device, VfioIoctl.DeviceReset), Is.Zero);
            Assert.That(rig.ReadU32(fb), Is.Zero, "row 0: 0");
            Assert.That(rig.ReadU32(fb + (240 * 2560)), Is.EqualTo(0x7f7f7f7fu), "row 240: 240*255/480 = 127");
            Assert.That(rig.ReadU32(fb + (479 * 2560)), Is.EqualTo(0xfefefefeu), "row 479: 254");
            rig.User.Munmap(fb, dev.MemSize);
            rig.CloseAll(fds);
        });
    }

    [Test]
    public void Mmap_rejects_a_wrong_offset_an_oversize_window_and_a_private_map_with_nothing_mapped()
    {
        var rig = new DisplayRig();
        rig.Run(() =>
        {
            MdpyDevice dev = Mdpy.DeviceOf(rig.CreateOk(rig.Mdpy.Types[0]))!;
            var fds = rig.Open(dev);
            long used = rig.Memory.UsedPages;
            Assert.That((long)rig.Map(fds.Device, 4096, 0), Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That((long)rig.Map(fds.Device, 4096, 2 * 4096), Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That((long)rig.Map(fds.Device, dev.MemSize + 4096, MdpyDevice.MemoryBarOffset), Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That((long)rig.Map(fds.Device, 4096, MdpyDevice.MemoryBarOffset, MapFlags.MAP_PRIVATE), Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That(rig.Memory.UsedPages, Is.EqualTo(used));
            Assert.That(rig.Memory.RefCount(dev.FramebufferPages[0]), Is.EqualTo(1), "only the driver's reference");
            ulong fb = rig.Map(fds.Device, 8192, MdpyDevice.MemoryBarOffset);
            Assert.That(rig.Memory.RefCount(dev.FramebufferPages[0]), Is.EqualTo(2));
            rig.User.Munmap(fb, 8192);
            Assert.That(rig.Memory.RefCount(dev.FramebufferPages[0]), Is.EqualTo(1));
            rig.CloseAll(fds);
        });
    }

    [Test]
    public void Interrupts_count_zero_after_get_info_and_set_irqs_is_EINVAL()
    {
        var rig = new DisplayRig();
        rig.Run(() =>
        {
            MdpyDevice dev = Mdpy.DeviceOf(rig.CreateOk(rig.Mdpy.Types[0]))!;
            var fds = rig.Open(dev);
            var irq = new VfioIrqInfo { Argsz = VfioIrqInfo.MinSz, Index = 0, Count = 7 };
            Assert.That(rig.Ioctl(fds.Device, VfioIoctl.DeviceGetIrqInfo, ref irq), Is.EqualTo(Errno.EINVAL.Negative()), "GET_INFO not called yet: no interrupts known");
            Assert.That(irq.Count, Is.EqualTo(7));
            var info = new VfioDeviceInfo { Argsz = VfioDeviceInfo.MinSz };
            Assert.That(rig.Ioctl(fds.Device, VfioIoctl.DeviceGetInfo, ref info), Is.Zero);
            Assert.That((info.Flags, info.NumRegions, info.NumIrqs), Is.EqualTo((VfioDeviceFlags.Pci, 9u, 5u)));
            Assert.That(rig.Ioctl(fds.Device, VfioIoctl.DeviceGetIrqInfo, ref irq), Is.Zero);
            Assert.That(irq.Count, Is.Zero);
            irq.Index = 5;
            Assert.That(rig.Ioctl(fds.Device, VfioIoctl.DeviceGetIrqInfo, ref irq), Is.EqualTo(Errno.EINVAL.Negative()));
            var set = new VfioIrqSet { Argsz = VfioIrqSet.MinSz };
            Assert.That(rig.Ioctl(fds.Device, VfioIoctl.DeviceSetIrqs, ref set), Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That(rig.User.Ioctl(fds.Device, VfioIoctl.DeviceGetGfxDmabuf, 0), Is.EqualTo(Errno.ENOTTY.Negative()));
            rig.CloseAll(fds);
        });
    }

    [Test]
    public void Query_gfx_plane_probes_region_only_and_reports_the_display_region()
    {
        var rig = new DisplayRig();
        rig.Run(() =>
        {
            MdpyDevice dev = Mdpy.DeviceOf(rig.CreateOk(rig.Mdpy.Types[1]))!;
            var fds = rig.Open(dev);
            Assert.That(rig.Plane(fds.Device, VfioGfxPlaneFlags.Probe | VfioGfxPlaneFlags.Region, out _), Is.Zero);
            Assert.That(rig.Plane(fds.Device, VfioGfxPlaneFlags.Probe | VfioGfxPlaneFlags.Dmabuf, out _), Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That(rig.Plane(fds.Device, VfioGfxPlaneFlags.Probe, out _), Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That(rig.Plane(fds.Device, VfioGfxPlaneFlags.Dmabuf, out VfioDeviceGfxPlaneInfo bad), Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That(bad.Width, Is.Zero);
            Assert.That(rig.Plane(fds.Device, VfioGfxPlaneFlags.Region, out VfioDeviceGfxPlaneInfo p), Is.Zero);
            Assert.That((p.DrmFormat, p.Width, p.Height, p.Stride, p.Size, p.RegionIndexOrDmabufId), Is.EqualTo((DrmFourcc.Xrgb8888, 1024u, 768u, 4096u, 4u << 20, 16u)));
            var shortArg = new VfioDeviceGfxPlaneInfo { Argsz = 56, Flags = VfioGfxPlaneFlags.Region };
            Assert.That(rig.Ioctl(fds.Device, VfioIoctl.DeviceQueryGfxPlane, ref shortArg), Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That(rig.User.Ioctl(fds.Device, VfioIoctl.DeviceIoeventfd, 0), Is.EqualTo(Errno.ENOTTY.Negative()));
            rig.CloseAll(fds);
        });
    }

    [Test]
    public void Drm_constants_are_the_headers()
    {
        Assert.That(DrmFourcc.Xrgb8888, Is.EqualTo(0x34325258u));
        Assert.That((DrmPlaneType.Overlay, DrmPlaneType.Primary, DrmPlaneType.Cursor), Is.EqualTo((0u, 1u, 2u)));
    }
}
