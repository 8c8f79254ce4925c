// The mbochs sample: the memory pool, region info with the EDID capability, the dispi
// registers and mode decoding, QUERY_GFX_PLANE and GET_GFX_DMABUF, the dma-buf's mmap and
// lifetime against the device fd, the EDID region's access rules, and the rejections.

using System.Buffers.Binary;
using NUnit.Framework;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Mdev;
using Vfio.Mdev.Samples.Mbochs;
using Vfio.Platform.Mm;

namespace Vfio.Tests.Mdev;

[TestFixture]
public sealed class MbochsTests
{
    private const long Mmio = MbochsDevice.MmioBarOffset;

    private static IEnumerable<KernelProfile> Profiles() => [KernelProfile.Linux6_12, KernelProfile.Linux6_1];

    [TestCaseSource(nameof(Profiles))]
    public void The_pool_refuses_with_ENOSPC_and_gets_the_memory_back_at_release(KernelProfile profile)
    {
        var rig = new DisplayRig(profile, mbochsMiB: 100);
        rig.Run(() =>
        {
            MbochsType small = rig.Mbochs.Types[0], medium = rig.Mbochs.Types[1], large = rig.Mbochs.Types[2];
            Assert.That((rig.Mbochs.GetAvailable(small), rig.Mbochs.GetAvailable(medium), rig.Mbochs.GetAvailable(large)), Is.EqualTo((25, 6, 1)));
            MdevDevice l = rig.CreateOk(large);
            Assert.That(rig.Mbochs.AvailableMBytes, Is.EqualTo(36));
            Assert.That(rig.Create(large, out _), Is.EqualTo(Errno.ENOSPC.Negative()));
            Assert.That(rig.Mbochs.AvailableMBytes, Is.EqualTo(36), "a refused create reserves nothing");
            MdevDevice m1 = rig.CreateOk(medium);
            MdevDevice m2 = rig.CreateOk(medium);
            Assert.That((rig.AvailableInstances(small), rig.AvailableInstances(medium), rig.AvailableInstances(large)), Is.EqualTo((1, 0, 0)), "available_instances: pool MiB / type MiB");
            Assert.That(rig.Create(medium, out _), Is.EqualTo(Errno.ENOSPC.Negative()));
            rig.Remove(l);
            Assert.That(rig.Mbochs.AvailableMBytes, Is.EqualTo(68));
            rig.Remove(m1);
            rig.Remove(m2);
            Assert.That(rig.Mbochs.AvailableMBytes, Is.EqualTo(100));
        });
        Assert.That(rig.Mbochs.ShowDescription(rig.Mbochs.Types[1]), Is.EqualTo("virtual display, 16 MB video memory\n"));
        Assert.That(rig.Mbochs.Types.Select(t => (t.DirName, t.MaxX, t.MaxY)), Is.EqualTo(new[] { ("mbochs-small", 800u, 600u), ("mbochs-medium", 1920u, 1440u), ("mbochs-large", 0u, 0u) }));
    }

    [Test]
    public void Region_info_describes_the_layout_and_the_edid_region_carries_the_gfx_type_cap()
    {
        var rig = new DisplayRig();
        rig.Run(() =>
        {
            MbochsDevice dev = Mbochs.DeviceOf(rig.CreateOk(rig.Mbochs.Types[0]))!;
            var fds = rig.Open(dev);
            var info = new VfioDeviceInfo { Argsz = VfioDeviceInfo.MinSz };
            Assert.That(rig.Ioctl(fds.Device, VfioIoctl.DeviceGetInfo, ref info), Is.Zero);
            Assert.That((info.NumRegions, info.NumIrqs), Is.EqualTo((10u, 5u)));
            VfioRegionInfo bar0 = rig.RegionInfo(fds.Device, 0, out long r);
            Assert.That((r, bar0.Offset, bar0.Size, bar0.Flags), Is.EqualTo((0L, 3UL * 4096, 4UL << 20, VfioRegionFlags.Read | VfioRegionFlags.Write | VfioRegionFlags.Mmap)));
            VfioRegionInfo bar2 = rig.RegionInfo(fds.Device, 2, out r);
            Assert.That((r, bar2.Offset, bar2.Size, bar2.Flags), Is.EqualTo((0L, 4096UL, 4096UL, VfioRegionFlags.Read | VfioRegionFlags.Write)));
            VfioRegionInfo cfg = rig.RegionInfo(fds.Device, 7, out r);
            Assert.That((r, cfg.Offset, cfg.Size), Is.EqualTo((0L, 0UL, 0xffUL)));

            byte[] ext = new byte[48];
            BinaryPrimitives.WriteUInt32LittleEndian(ext, 48);
            BinaryPrimitives.WriteUInt32LittleEndian(ext.AsSpan(8), 9);
            Assert.That(rig.User.Ioctl(fds.Device, VfioIoctl.DeviceGetRegionInfo, ext), Is.Zero);
            Assert.That(BinaryPrimitives.ReadUInt32LittleEndian(ext.AsSpan(4)), Is.EqualTo((uint)(VfioRegionFlags.Read | VfioRegionFlags.Write | VfioRegionFlags.Caps)));
            Assert.That(BinaryPrimitives.ReadUInt32LittleEndian(ext.AsSpan(12)), Is.EqualTo(32u), "cap_offset");
            Assert.That((BinaryPrimitives.ReadUInt64LittleEndian(ext.AsSpan(16)), BinaryPrimitives.ReadUInt64LittleEndian(ext.AsSpan(24))), Is.EqualTo((4096UL, 2UL * 4096)));
            Assert.That((BinaryPrimitives.ReadUInt16LittleEndian(ext.AsSpan(32)), BinaryPrimitives.ReadUInt16LittleEndian(ext.AsSpan(34)), BinaryPrimitives.ReadUInt32LittleEndian(ext.AsSpan(36))), Is.EqualTo(((ushort)VfioCapId.RegionType, (ushort)1, 0u)));
            Assert.That((BinaryPrimitives.ReadUInt32LittleEndian(ext.AsSpan(40)), BinaryPrimitives.ReadUInt32LittleEndian(ext.AsSpan(44))), Is.EqualTo((VfioRegionType.Gfx, VfioRegionType.SubtypeGfxEdid)));

            // argsz 32: the fixed part only, but argsz says 48 and cap_offset still points at 32.
            byte[] fixedOnly = new byte[48];
            BinaryPrimitives.WriteUInt32LittleEndian(fixedOnly, 32);
            BinaryPrimitives.WriteUInt32LittleEndian(fixedOnly.AsSpan(8), 9);
            Assert.That(rig.User.Ioctl(fds.Device, VfioIoctl.DeviceGetRegionInfo, fixedOnly), Is.Zero);
            Assert.That((BinaryPrimitives.ReadUInt32LittleEndian(fixedOnly), BinaryPrimitives.ReadUInt32LittleEndian(fixedOnly.AsSpan(12))), Is.EqualTo((48u, 32u)));
            Assert.That(fixedOnly.AsSpan(32).ToArray(), Is.All.Zero, "the cap is not copied");

            byte[] big = new byte[56];
            BinaryPrimitives.WriteUInt32LittleEndian(big, 56);
            BinaryPrimitives.WriteUInt32LittleEndian(big.AsSpan(8), 0);
            Assert.That(rig.User.Ioctl(fds.Device, VfioIoctl.DeviceGetRegionInfo, big), Is.EqualTo(Errno.EINVAL.Negative()), "argsz past the driver's struct");
            Assert.That(BinaryPrimitives.ReadUInt64LittleEndian(big.AsSpan(16)), Is.Zero);
            rig.RegionInfo(fds.Device, 10, out r);
            Assert.That(r, Is.EqualTo(Errno.EINVAL.Negative()));
            rig.CloseAll(fds);
        });
    }

    [Test]
    public void Reset_values_config_ids_and_16_bit_only_dispi_registers()
    {
        var rig = new DisplayRig();
        rig.Run(() =>
        {
            MbochsDevice dev = Mbochs.DeviceOf(rig.CreateOk(rig.Mbochs.Types[1]))!;
            var fds = rig.Open(dev);
            Assert.That(rig.PreadU32(fds.Device, 0), Is.EqualTo(0x11111234u));
            Assert.That(rig.PreadU32(fds.Device, 0x08) >> 8, Is.EqualTo(0x038000u));
            rig.PwriteU32(fds.Device, 0x18, 0xffffffff);
            Assert.That(rig.PreadU32(fds.Device, 0x18), Is.EqualTo(0xfffff000u), "BAR2 is one page");
            rig.PwriteU32(fds.Device, 0x10, 0xffffffff);
            Assert.That(rig.PreadU32(fds.Device, 0x10), Is.EqualTo(0xff000008u), "BAR0 is 16 MiB, prefetchable");

            byte[] two = new byte[2];
            Assert.That(rig.User.Pread(fds.Device, two, Mmio + 0x500), Is.EqualTo(2));
            Assert.That(BitConverter.ToUInt16(two), Is.EqualTo(MbochsDevice.VbeId5));
            Assert.That(rig.User.Pread(fds.Device, two, Mmio + 0x514), Is.EqualTo(2));
            Assert.That(BitConverter.ToUInt16(two), Is.EqualTo(16 * 16), "VIDEO_MEMORY_64K");
            Assert.That(rig.PreadU32(fds.Device, Mmio + 0x500), Is.Zero, "a 32-bit read of the dispi window reads 0");
            rig.PwriteU32(fds.Device, Mmio + 0x504, 0x12345678);
            Assert.That(dev.Vbe(MbochsDevice.VbeYres), Is.Zero, "a 32-bit write is ignored");
            rig.PwriteU32(fds.Device, Mmio + 0x506, 0x00200010);
            Assert.That((dev.Vbe(MbochsDevice.VbeBpp), dev.Vbe(MbochsDevice.VbeEnable)), Is.EqualTo((0x10, 0x20)), "at a 2-aligned offset the write is cut into two 16-bit pieces");
            rig.PwriteU16(fds.Device, Mmio + 0x502, 1024);
            Assert.That(dev.Vbe(MbochsDevice.VbeXres), Is.EqualTo(1024));
            Assert.That(rig.User.Ioctl(fds.Device, VfioIoctl.DeviceReset), Is.Zero);
            Assert.That((dev.Vbe(MbochsDevice.VbeXres), dev.Vbe(MbochsDevice.VbeId)), Is.EqualTo((0, MbochsDevice.VbeId5)));
            Assert.That(rig.User.Pread(fds.Device, new byte[4], 0x200), Is.EqualTo(Errno.EFAULT.Negative()));
            rig.CloseAll(fds);
        });
    }

    [Test]
    public void The_edid_region_writes_only_link_state_and_size_and_gates_the_blob_in_the_mmio_bar()
    {
        var rig = new DisplayRig();
        rig.Run(() =>
        {
            MbochsDevice dev = Mbochs.DeviceOf(rig.CreateOk(rig.Mbochs.Types[0]))!;
            var fds = rig.Open(dev);
            long e = MbochsDevice.EdidOffset;
            Assert.That((rig.PreadU32(fds.Device, e), rig.PreadU32(fds.Device, e + 4)), Is.EqualTo((2048u, 0x400u)));
            Assert.That((rig.PreadU32(fds.Device, e + 12), rig.PreadU32(fds.Device, e + 16)), Is.EqualTo((800u, 600u)));
            rig.PwriteU32(fds.Device, e + 12, 4096);
            Assert.That(rig.PreadU32(fds.Device, e + 12), Is.EqualTo(800u), "max_xres is read-only");
            rig.PwriteU16(fds.Device, e + 8, 0x80);
            Assert.That(rig.PreadU32(fds.Device, e + 8), Is.Zero, "only 4-byte accesses reach the registers");

            rig.PwriteU32(fds.Device, e + 2048, 0xffffff00);
            rig.PwriteU32(fds.Device, e + 2048 + 0x400, 0xdeadbeef);
            Assert.That(rig.PreadU32(fds.Device, e + 2048 + 0x400), Is.Zero, "past edid_max_size is dropped");
            Assert.That(rig.PreadU32(fds.Device, e + 2048), Is.EqualTo(0xffffff00u));
            Assert.That(rig.PreadU32(fds.Device, Mmio), Is.Zero, "the blob is hidden while the link is down");
            rig.PwriteU32(fds.Device, e + 8, 128);
            rig.PwriteU32(fds.Device, e + 20, VfioRegionType.GfxLinkStateUp);
            Assert.That(rig.PreadU32(fds.Device, Mmio), Is.EqualTo(0xffffff00u));
            Assert.That(rig.PreadU32(fds.Device, Mmio + 128), Is.Zero, "past edid_size");
            rig.CloseAll(fds);
        });
    }

    [Test]
    public void Dispi_mode_programming_gives_a_plane_and_its_dmabuf_maps_the_framebuffer()
    {
        var rig = new DisplayRig();
        rig.Run(() =>
        {
            MbochsDevice dev = Mbochs.DeviceOf(rig.CreateOk(rig.Mbochs.Types[0]))!;
            var fds = rig.Open(dev);
            Assert.That(rig.Plane(fds.Device, VfioGfxPlaneFlags.Probe | VfioGfxPlaneFlags.Dmabuf, out _), Is.Zero);
            Assert.That(rig.Plane(fds.Device, VfioGfxPlaneFlags.Probe | VfioGfxPlaneFlags.Region, out _), Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That(rig.Plane(fds.Device, VfioGfxPlaneFlags.Region, out _), Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That(rig.Plane(fds.Device, VfioGfxPlaneFlags.Dmabuf, out VfioDeviceGfxPlaneInfo none), Is.Zero, "disabled: no plane");
            Assert.That((none.Width, none.RegionIndexOrDmabufId), Is.EqualTo((0u, 0u)));

            SetMode(rig, fds.Device, 640, 480, 32);
            Assert.That(rig.Plane(fds.Device, VfioGfxPlaneFlags.Dmabuf, out _), Is.EqualTo(Errno.ENOMEM.Negative()), "the kernel drops the new object and says ENOMEM");
            Assert.That(dev.Dmabufs, Has.Count.EqualTo(1));
            Assert.That(rig.Plane(fds.Device, VfioGfxPlaneFlags.Dmabuf, out VfioDeviceGfxPlaneInfo p), Is.Zero);
            Assert.That((p.DrmFormat, p.Width, p.Height, p.Stride, p.Size, p.RegionIndexOrDmabufId), Is.EqualTo((DrmFourcc.Xrgb8888, 640u, 480u, 2560u, 2560u * 480, 1u)));
            Assert.That(dev.ActiveId, Is.EqualTo(1u));
            Assert.That(rig.Plane(fds.Device, VfioGfxPlaneFlags.Dmabuf, out VfioDeviceGfxPlaneInfo cursor, DrmPlaneType.Cursor), Is.Zero);
            Assert.That(cursor.Width, Is.Zero, "only the primary plane exists");

            uint id = 1;
            long dfd = rig.Ioctl(fds.Device, VfioIoctl.DeviceGetGfxDmabuf, ref id);
            Assert.That(dfd, Is.GreaterThanOrEqualTo(0), ErrorReason.Current);
            uint missing = 9;
            Assert.That(rig.Ioctl(fds.Device, VfioIoctl.DeviceGetGfxDmabuf, ref missing), Is.EqualTo(Errno.ENOENT.Negative()));

            ulong fb = rig.Map(fds.Device, 4UL << 20, MbochsDevice.MemoryBarOffset);
            ulong buf = rig.Map((int)dfd, 2560 * 480, 0);
            rig.WriteU32(fb + 4096, 0xa5a5a5a5);
            Assert.That(rig.ReadU32(buf + 4096), Is.EqualTo(0xa5a5a5a5u), "the dma-buf maps the framebuffer's pages");
            rig.WriteU32(buf + 8, 0x01020304);
            Assert.That(rig.ReadU32(fb + 8), Is.EqualTo(0x01020304u));
            Assert.That((long)rig.Map((int)dfd, 2560 * 480, 0, MapFlags.MAP_PRIVATE), Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That((long)rig.Map((int)dfd, 4096, 300 * 4096), Is.EqualTo(Errno.EINVAL.Negative()), "past the buffer");

            // pread/pwrite of BAR0 land two pages further in (the kernel's mdev_access).
            rig.PwriteU32(fds.Device, MbochsDevice.MemoryBarOffset, 0x77777777);
            Assert.That(rig.ReadU32(fb + 2 * 4096), Is.EqualTo(0x77777777u));
            rig.WriteU32(fb + (2 * 4096) + 4, 0x66666666);
            Assert.That(rig.PreadU32(fds.Device, MbochsDevice.MemoryBarOffset + 4), Is.EqualTo(0x66666666u));
            Assert.That(rig.User.Pread(fds.Device, new byte[4], MbochsDevice.MemoryBarOffset + (4 << 20) - 4096), Is.EqualTo(Errno.EFAULT.Negative()), "past the page array");
            rig.User.Munmap(fb, 4UL << 20);
            rig.User.Munmap(buf, 2560 * 480);
            rig.User.Close((int)dfd);
            rig.CloseAll(fds);
        });
    }

    [Test]
    public void Modes_without_a_plane_report_zeros()
    {
        var rig = new DisplayRig();
        rig.Run(() =>
        {
            MbochsDevice dev = Mbochs.DeviceOf(rig.CreateOk(rig.Mbochs.Types[0]))!;
            var fds = rig.Open(dev);
            foreach ((ushort w, ushort h, ushort bpp) in new (ushort, ushort, ushort)[] { (640, 480, 16), (63, 480, 32), (640, 63, 32), (1920, 1080, 32) })
            {
                SetMode(rig, fds.Device, w, h, bpp);
                Assert.That(rig.Plane(fds.Device, VfioGfxPlaneFlags.Dmabuf, out VfioDeviceGfxPlaneInfo p), Is.Zero);
                Assert.That((p.Width, p.Size, p.RegionIndexOrDmabufId), Is.EqualTo((0u, 0u, 0u)), $"{w}x{h}x{bpp}");
            }

            Assert.That(dev.Dmabufs, Is.Empty);
            rig.CloseAll(fds);
        });
    }

    [Test]
    public void The_dmabuf_outlives_the_device_fd_and_keeps_its_pages_until_its_last_close()
    {
        var rig = new DisplayRig();
        rig.Run(() =>
        {
            MdevDevice mdev = rig.CreateOk(rig.Mbochs.Types[0]);
            MbochsDevice dev = Mbochs.DeviceOf(mdev)!;
            var fds = rig.Open(dev);
            SetMode(rig, fds.Device, 64, 64, 32);
            rig.Plane(fds.Device, VfioGfxPlaneFlags.Dmabuf, out _);
            Assert.That(rig.Plane(fds.Device, VfioGfxPlaneFlags.Dmabuf, out VfioDeviceGfxPlaneInfo p), Is.Zero);
            uint id = p.RegionIndexOrDmabufId;
            long dfd = rig.Ioctl(fds.Device, VfioIoctl.DeviceGetGfxDmabuf, ref id);
            Assert.That(dfd, Is.GreaterThanOrEqualTo(0));
            Assert.That(dev.AllocatedPages, Is.EqualTo(4), "64x64x4 is four pages");
            ulong buf = rig.Map((int)dfd, 16384, 0);
            rig.WriteU32(buf, 0x5eed5eed);
            MbochsDmabuf d = dev.Dmabufs[0];
            long page = d.Pages[0];
            Assert.That(rig.Memory.RefCount(page), Is.EqualTo(3), "the device, the dma-buf object, the mapping");

            rig.CloseAll(fds);
            Assert.That(dev.AllocatedPages, Is.Zero, "the last close drops the device's pages");
            Assert.That(d.Unlinked, Is.True);
            Assert.That(rig.Memory.RefCount(page), Is.EqualTo(2), "the dma-buf and its mapping still hold it");
            Assert.That(rig.ReadU32(buf), Is.EqualTo(0x5eed5eedu));
            rig.User.Close((int)dfd);
            Assert.That(d.Buf, Is.Not.Null, "the mapping keeps the dma-buf's file");
            rig.User.Munmap(buf, 16384);
            Assert.That(d.Buf, Is.Null);
            Assert.That(rig.Memory.RefCount(page), Is.Zero, "freed with the dma-buf");
            rig.Remove(mdev);
        });
    }

    [Test]
    public void Reopening_the_device_starts_with_fresh_zeroed_video_memory()
    {
        var rig = new DisplayRig();
        rig.Run(() =>
        {
            MbochsDevice dev = Mbochs.DeviceOf(rig.CreateOk(rig.Mbochs.Types[0]))!;
            var fds = rig.Open(dev);
            ulong fb = rig.Map(fds.Device, 4096, MbochsDevice.MemoryBarOffset);
            rig.WriteU32(fb, 0x12345678);
            rig.User.Munmap(fb, 4096);
            rig.CloseAll(fds);
            fds = rig.Open(dev);
            fb = rig.Map(fds.Device, 4096, MbochsDevice.MemoryBarOffset);
            Assert.That(rig.ReadU32(fb), Is.Zero);
            rig.User.Munmap(fb, 4096);
            rig.CloseAll(fds);
        });
    }

    [Test]
    public void Mmap_and_irq_rejections_change_nothing()
    {
        var rig = new DisplayRig();
        rig.Run(() =>
        {
            MbochsDevice dev = Mbochs.DeviceOf(rig.CreateOk(rig.Mbochs.Types[0]))!;
            var fds = rig.Open(dev);
            Assert.That((long)rig.Map(fds.Device, 4096, MbochsDevice.MmioBarOffset), Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That((long)rig.Map(fds.Device, (4UL << 20) + 4096, MbochsDevice.MemoryBarOffset), Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That((long)rig.Map(fds.Device, 4096, MbochsDevice.MemoryBarOffset, MapFlags.MAP_PRIVATE), Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That(dev.AllocatedPages, Is.Zero);
            var irq = new VfioIrqInfo { Argsz = VfioIrqInfo.MinSz, Index = 4 };
            Assert.That(rig.Ioctl(fds.Device, VfioIoctl.DeviceGetIrqInfo, ref irq), Is.Zero, "mbochs checks against VFIO_PCI_NUM_IRQS");
            irq.Index = 5;
            Assert.That(rig.Ioctl(fds.Device, VfioIoctl.DeviceGetIrqInfo, ref irq), Is.EqualTo(Errno.EINVAL.Negative()));
            var set = new VfioIrqSet { Argsz = VfioIrqSet.MinSz };
            Assert.That(rig.Ioctl(fds.Device, VfioIoctl.DeviceSetIrqs, ref set), Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That(rig.User.Ioctl(fds.Device, VfioIoctl.DeviceGetGfxDmabuf, 8), Is.EqualTo(Errno.EFAULT.Negative()));
            rig.CloseAll(fds);
        });
    }

    private static void SetMode(DisplayRig rig, int fd, ushort width, ushort height, ushort bpp)
    {
        rig.PwriteU16(fd, Mmio + 0x500 + (2 * MbochsDevice.VbeEnable), 0);
        rig.PwriteU16(fd, Mmio + 0x500 + (2 * MbochsDevice.VbeXres), width);
        rig.PwriteU16(fd, Mmio + 0x500 + (2 * MbochsDevice.VbeYres), height);
        rig.PwriteU16(fd, Mmio + 0x500 + (2 * MbochsDevice.VbeBpp), bpp);
        rig.PwriteU16(fd, Mmio + 0x500 + (2 * MbochsDevice.VbeEnable), MbochsDevice.VbeEnabled);
    }
}
