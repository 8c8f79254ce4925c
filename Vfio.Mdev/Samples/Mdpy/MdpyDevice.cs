// Models the vfio device of samples/vfio-mdev/mdpy.c (v6.12; v6.1 behaves the same):
// mdpy_init_dev / mdpy_release_dev, the config space, mdev_access for config and
// framebuffer, mmap through remap_vmalloc_range, and the ioctls (GET_INFO,
// GET_REGION_INFO, GET_IRQ_INFO, QUERY_GFX_PLANE, SET_IRQS, RESET), in the kernel's order
// with its errnos.
//
// Kernel behaviour kept as it is: a framebuffer read or write through the device fd always
// reaches the first bytes of the framebuffer (mdev_access drops the offset), GET_IRQ_INFO
// checks the index against the count GET_INFO cached (so it fails until GET_INFO ran), and
// RESET repaints without the lock.
//
// Lock order: mmap_lock (mmap) → ops_lock (mdev_access only) → the zone lock (page data).

using System.Buffers.Binary;
using Vfio.Core;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Fs;
using Vfio.Platform.Mm;

namespace Vfio.Mdev.Samples.Mdpy;

/// <summary>struct mdev_state of mdpy: one virtual display.</summary>
public sealed class MdpyDevice : VfioDevice
{
    /// <summary>MDPY_CONFIG_SPACE_SIZE.</summary>
    public const int ConfigSpaceSize = 0xff;

    /// <summary>MDPY_MEMORY_BAR_OFFSET: the framebuffer's file offset.</summary>
    public const long MemoryBarOffset = PhysMem.PageSize;

    /// <summary>MDPY_DISPLAY_REGION: the region index QUERY_GFX_PLANE reports.</summary>
    public const int DisplayRegion = 16;

    /// <summary>MDPY_PCI_VENDOR_ID (PCI_VENDOR_ID_REDHAT).</summary>
    public const ushort PciVendorId = 0x1b36;

    /// <summary>MDPY_PCI_DEVICE_ID.</summary>
    public const ushort PciDeviceId = 0x000f;

    /// <summary>MDPY_VENDORCAP_OFFSET.</summary>
    public const int VendorCapOffset = 0x40;

    internal const int VendorCapSize = 0x10;

    private static readonly LockClass s_opsLockClass = LockClass.Get("mdpy.mdev_state.ops_lock");

    // One spare byte past the 0xff the kernel allocates: a 4-byte read at 0xfc reads it (0).
    private readonly byte[] _vconfig = new byte[ConfigSpaceSize + 1];
    private long[] _pages = [];
    private uint _barMask;
    private VfioDeviceInfo _devInfo;

    internal MdpyDevice()
    {
    }

    /// <summary>The mdev.</summary>
    public MdevDevice Mdev { get; private set; } = null!;

    /// <summary>The type.</summary>
    public MdpyType Type { get; private set; } = null!;

    /// <summary>memsize: roundup_pow_of_two(width × height × 4).</summary>
    public uint MemSize { get; private set; }

    /// <summary>The framebuffer's frames (vmalloc_user memory), in order.</summary>
    public IReadOnlyList<long> FramebufferPages => _pages;

    internal KMutex OpsLock { get; private set; } = null!;

    internal VfsDir? VendorDir { get; set; }

    private PhysMem Mem => Core.Machine.Memory;

    /// <summary>Reads the framebuffer at byte <paramref name="offset"/> (a kernel-side view, for tests and tools).</summary>
    public void ReadFramebuffer(long offset, Span<byte> dst)
    {
        while (!dst.IsEmpty)
        {
            int inPage = (int)Math.Min(dst.Length, PhysMem.PageSize - (offset & (PhysMem.PageSize - 1)));
            KernelPages.Read(Mem, _pages[offset >> PhysMem.PageShift], (int)(offset & (PhysMem.PageSize - 1)), dst[..inPage]);
            offset += inPage;
            dst = dst[inPage..];
        }
    }

    internal void WriteFramebuffer(long offset, ReadOnlySpan<byte> src)
    {
        while (!src.IsEmpty)
        {
            int inPage = (int)Math.Min(src.Length, PhysMem.PageSize - (offset & (PhysMem.PageSize - 1)));
            KernelPages.Write(Mem, _pages[offset >> PhysMem.PageShift], (int)(offset & (PhysMem.PageSize - 1)), src[..inPage]);
            offset += inPage;
            src = src[inPage..];
        }
    }

    /// <summary>mdpy_init_dev(): the cap, the config buffer, the framebuffer, config space and gradient.</summary>
    internal int InitDev(Mdpy driver)
    {
        int err = driver.TryCount();
        if (err != 0)
        {
            return err;
        }

        Mdev = (MdevDevice)Dev;
        Type = (MdpyType)Mdev.Type;
        uint fbsize = RoundUpPowerOfTwo(Type.Width * Type.Height * Type.BytesPerPixel);
        var pages = new long[fbsize >> PhysMem.PageShift];
        for (int i = 0; i < pages.Length; i++)
        {
            pages[i] = KernelPages.AllocPage(Mem);
            if (pages[i] < 0)
            {
                for (int j = 0; j < i; j++)
                {
                    KernelPages.PutPage(Mem, pages[j]);
                }

                return ErrorReason.Fail(Errno.ENOMEM, $"mdpy: vmalloc_user of {fbsize} bytes failed");
            }
        }

        _pages = pages;
        OpsLock = new KMutex(Core.Kernel, $"mdpy[{Dev.Name}].ops_lock", s_opsLockClass);
        MemSize = fbsize;
        CreateConfigSpace();
        Reset();
        DevInfo($"mdpy_init_dev: {Type.PrettyName} ({Type.Width}x{Type.Height})");
        driver.CountUp();
        return 0;
    }

    /// <summary>mdpy_release_dev(): the count goes down, the framebuffer is freed.</summary>
    internal void ReleaseDev(Mdpy driver)
    {
        driver.CountDown();
        foreach (long pfn in _pages)
        {
            KernelPages.PutPage(Mem, pfn);
        }

        _pages = [];
    }

    /// <summary>mdpy_reset(): a vertical gray gradient, row i filled with i × 255 / height.</summary>
    internal int Reset()
    {
        uint stride = Type.Width * Type.BytesPerPixel;
        byte[] row = new byte[stride];
        for (uint i = 0; i < Type.Height; i++)
        {
            Array.Fill(row, (byte)(i * 255 / Type.Height));
            WriteFramebuffer(i * stride, row);
        }

        return 0;
    }

    internal int Access(Span<byte> buf, long pos, bool write)
    {
        OpsLock.Lock();
        try
        {
            if (pos < ConfigSpaceSize)
            {
                if (write)
                {
                    HandleCfgWriteLocked((int)pos, buf);
                }
                else
                {
                    _vconfig.AsSpan((int)pos, buf.Length).CopyTo(buf);
                }
            }
            else if (pos >= MemoryBarOffset && pos + buf.Length <= MemoryBarOffset + MemSize)
            {
                // The kernel subtracts the BAR offset and then copies at the start of the
                // framebuffer whatever the offset was.
                if (write)
                {
                    WriteFramebuffer(0, buf);
                }
                else
                {
                    ReadFramebuffer(0, buf);
                }
            }
            else
            {
                DevInfo($"mdev_access: {(write ? "WR" : "RD")} @0x{pos:x} (unhandled)");
                return -1;
            }

            return buf.Length;
        }
        finally
        {
            OpsLock.Unlock();
        }
    }

    internal int Mmap(Vma vma)
    {
        if (vma.PgOff != (ulong)(MemoryBarOffset >> PhysMem.PageShift))
        {
            return ErrorReason.Fail(Errno.EINVAL, $"mdpy mmap: pgoff {vma.PgOff} is not the framebuffer's {MemoryBarOffset >> PhysMem.PageShift}");
        }

        if (vma.Length > MemSize)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"mdpy mmap: length 0x{vma.Length:x} exceeds the framebuffer's 0x{MemSize:x}");
        }

        if ((vma.Flags & VmFlags.VM_SHARED) == 0)
        {
            return ErrorReason.Fail(Errno.EINVAL, "mdpy mmap: the framebuffer can only be mapped MAP_SHARED");
        }

        return KernelPages.RemapPages(vma, _pages);
    }

    internal long Ioctl(uint cmd, ulong arg)
    {
        switch (cmd)
        {
            case VfioIoctl.DeviceGetInfo:
                {
                    long ret = SampleIoctl.GetPciInfo(arg, VfioPciIndex.NumRegions, VfioPciIndex.NumIrqs, out VfioDeviceInfo info);
                    if (ret == 0)
                    {
                        _devInfo = info; // mdpy_ioctl caches it: GET_IRQ_INFO checks against it
                    }

                    return ret;
                }

            case VfioIoctl.DeviceGetRegionInfo:
                {
                    int err = VfioArg.CopyIn(arg, VfioRegionInfo.MinSz, out VfioRegionInfo info, "VFIO_DEVICE_GET_REGION_INFO");
                    if (err != 0)
                    {
                        return err;
                    }

                    if (info.Index >= VfioPciIndex.NumRegions && info.Index != DisplayRegion)
                    {
                        return ErrorReason.Fail(Errno.EINVAL, $"VFIO_DEVICE_GET_REGION_INFO: mdpy has no region {info.Index}");
                    }

                    switch (info.Index)
                    {
                        case VfioPciIndex.Config:
                            info.Offset = 0;
                            info.Size = ConfigSpaceSize;
                            info.Flags = VfioRegionFlags.Read | VfioRegionFlags.Write;
                            break;
                        case VfioPciIndex.Bar0:
                        case DisplayRegion:
                            info.Offset = (ulong)MemoryBarOffset;
                            info.Size = MemSize;
                            info.Flags = VfioRegionFlags.Read | VfioRegionFlags.Write | VfioRegionFlags.Mmap;
                            break;
                        default:
                            info.Size = 0;
                            info.Offset = 0;
                            info.Flags = 0;
                            break;
                    }

                    return VfioArg.CopyOut(arg, in info, VfioRegionInfo.MinSz);
                }

            case VfioIoctl.DeviceGetIrqInfo:
                return SampleIoctl.GetIrqInfoWithoutIrqs(arg, _devInfo.NumIrqs);

            case VfioIoctl.DeviceQueryGfxPlane:
                return SampleIoctl.QueryGfxPlane(arg, QueryGfxPlane);

            case VfioIoctl.DeviceSetIrqs:
                return ErrorReason.Fail(Errno.EINVAL, "VFIO_DEVICE_SET_IRQS: mdpy has no interrupts");

            case VfioIoctl.DeviceReset:
                return Reset();

            default:
                return ErrorReason.Fail(Errno.ENOTTY, $"{VfioIoctl.Name(cmd)}: not an mdpy ioctl");
        }
    }

    private int QueryGfxPlane(ref VfioDeviceGfxPlaneInfo plane)
    {
        if ((plane.Flags & VfioGfxPlaneFlags.Probe) != 0)
        {
            return plane.Flags == (VfioGfxPlaneFlags.Probe | VfioGfxPlaneFlags.Region)
                ? 0
                : ErrorReason.Fail(Errno.EINVAL, $"VFIO_DEVICE_QUERY_GFX_PLANE: mdpy offers only PROBE|REGION, not flags 0x{(uint)plane.Flags:x}");
        }

        if (plane.Flags != VfioGfxPlaneFlags.Region)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"VFIO_DEVICE_QUERY_GFX_PLANE: flags 0x{(uint)plane.Flags:x} are not REGION");
        }

        plane.DrmFormat = Type.Format;
        plane.Width = Type.Width;
        plane.Height = Type.Height;
        plane.Stride = Type.Width * Type.BytesPerPixel;
        plane.Size = MemSize;
        plane.RegionIndexOrDmabufId = DisplayRegion;
        plane.DrmFormatMod = 0;
        plane.XPos = 0;
        plane.YPos = 0;
        plane.XHot = 0;
        plane.YHot = 0;
        return 0;
    }

    private void CreateConfigSpace()
    {
        Span<byte> c = _vconfig;
        BinaryPrimitives.WriteUInt16LittleEndian(c[0x00..], PciVendorId);
        BinaryPrimitives.WriteUInt16LittleEndian(c[0x02..], PciDeviceId);
        BinaryPrimitives.WriteUInt16LittleEndian(c[0x2c..], 0x1af4); // PCI_SUBVENDOR_ID_REDHAT_QUMRANET
        BinaryPrimitives.WriteUInt16LittleEndian(c[0x2e..], 0x1100); // PCI_SUBDEVICE_ID_QEMU
        BinaryPrimitives.WriteUInt16LittleEndian(c[0x04..], 0x0003); // PCI_COMMAND_IO | PCI_COMMAND_MEMORY
        BinaryPrimitives.WriteUInt16LittleEndian(c[0x06..], 0x0010); // PCI_STATUS_CAP_LIST
        BinaryPrimitives.WriteUInt16LittleEndian(c[0x0a..], 0x0380); // PCI_CLASS_DISPLAY_OTHER
        c[0x08] = 0x01;
        BinaryPrimitives.WriteUInt32LittleEndian(c[0x10..], 0x08); // memory, 32-bit, prefetchable
        _barMask = ~MemSize + 1;
        c[0x34] = VendorCapOffset;
        c[VendorCapOffset + 0] = 0x09; // PCI_CAP_ID_VNDR
        c[VendorCapOffset + 1] = 0x00;
        c[VendorCapOffset + 2] = VendorCapSize;
        BinaryPrimitives.WriteUInt32LittleEndian(c[(VendorCapOffset + 4)..], Type.Format);
        BinaryPrimitives.WriteUInt32LittleEndian(c[(VendorCapOffset + 8)..], Type.Width);
        BinaryPrimitives.WriteUInt32LittleEndian(c[(VendorCapOffset + 12)..], Type.Height);
    }

    private void HandleCfgWriteLocked(int offset, ReadOnlySpan<byte> buf)
    {
        OpsLock.AssertHeld();
        if (offset != 0x10)
        {
            return;
        }

        Span<byte> wide = stackalloc byte[4];
        buf.CopyTo(wide);
        uint cfg = BinaryPrimitives.ReadUInt32LittleEndian(wide);
        if (cfg == 0xffffffff)
        {
            cfg &= _barMask;
        }
        else
        {
            cfg &= ~0xfu;
            if (cfg != 0)
            {
                DevInfo($"BAR0 @ 0x{cfg:x}");
            }
        }

        cfg |= _vconfig[offset] & 0xfu;
        BinaryPrimitives.WriteUInt32LittleEndian(_vconfig.AsSpan(offset), cfg);
    }

    private static uint RoundUpPowerOfTwo(uint v) => v <= 1 ? 1 : 1u << (32 - System.Numerics.BitOperations.LeadingZeroCount(v - 1));
}

/// <summary>mdpy_dev_ops.</summary>
internal sealed class MdpyOps(Mdpy driver) : VfioDeviceOps
{
    public override string Name => Mdpy.DriverName;

    public override int Init(VfioDevice device) => ((MdpyDevice)device).InitDev(driver);

    public override void Release(VfioDevice device) => ((MdpyDevice)device).ReleaseDev(driver);

    public override long Read(VfioDevice device, ulong buf, long count, ref long pos)
        => SampleRw.Loop("mdpy", ((MdpyDevice)device).Access, buf, count, ref pos, write: false);

    public override long Write(VfioDevice device, ulong buf, long count, ref long pos)
        => SampleRw.Loop("mdpy", ((MdpyDevice)device).Access, buf, count, ref pos, write: true);

    public override long Ioctl(VfioDevice device, uint cmd, ulong arg) => ((MdpyDevice)device).Ioctl(cmd, arg);

    public override int Mmap(VfioDevice device, Vma vma) => ((MdpyDevice)device).Mmap(vma);
}
