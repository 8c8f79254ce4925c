// Models the vfio device of samples/vfio-mdev/mbochs.c (v6.12; v6.1 behaves the same):
// init (pool reservation, config space, EDID registers, reset), release, mdev_access over
// the file layout (config at 0, the MMIO BAR2 page at PAGE_SIZE with the Bochs dispi
// registers, the EDID region at 2 × PAGE_SIZE, the framebuffer BAR0 at 3 × PAGE_SIZE),
// the framebuffer's pages (allocated on first use, dropped at the last close), mmap, and
// the ioctls with QUERY_GFX_PLANE and GET_GFX_DMABUF.
//
// Kernel behaviour kept as it is: a framebuffer read or write through the device fd lands
// two pages further into the framebuffer than its offset says (mdev_access subtracts the
// MMIO BAR's offset, not the memory BAR's); where that runs past the page array the kernel
// reads beyond it, and here the access fails (-EFAULT) with an error logged. The first
// QUERY_GFX_PLANE of a new mode creates its dma-buf object and still returns -ENOMEM (the
// allocation's result is dropped); the next one finds it. GET_GFX_DMABUF installs the
// exported file in a new fd on every call without taking a reference for it.
//
// Differences: BAR0 mmap maps the window's pages at mmap time (allocating them then) where
// the kernel maps each page at its first fault.
//
// Lock order: mmap_lock (mmap) → ops_lock → the zone lock (page allocation and data).

using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Vfio.Core;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Fs;
using Vfio.Platform.Mm;

namespace Vfio.Mdev.Samples.Mbochs;

/// <summary>struct mdev_state of mbochs: one Bochs-dispi display.</summary>
public sealed class MbochsDevice : VfioDevice
{
    /// <summary>MBOCHS_CONFIG_SPACE_SIZE.</summary>
    public const int ConfigSpaceSize = 0xff;

    /// <summary>MBOCHS_MMIO_BAR_OFFSET.</summary>
    public const long MmioBarOffset = PhysMem.PageSize;

    /// <summary>MBOCHS_MMIO_BAR_SIZE.</summary>
    public const long MmioBarSize = PhysMem.PageSize;

    /// <summary>MBOCHS_EDID_OFFSET.</summary>
    public const long EdidOffset = MmioBarOffset + MmioBarSize;

    /// <summary>MBOCHS_EDID_SIZE.</summary>
    public const long EdidSize = PhysMem.PageSize;

    /// <summary>MBOCHS_MEMORY_BAR_OFFSET.</summary>
    public const long MemoryBarOffset = EdidOffset + EdidSize;

    /// <summary>MBOCHS_EDID_BLOB_OFFSET (inside the EDID region).</summary>
    public const int EdidBlobOffset = (int)(EdidSize / 2);

    /// <summary>MBOCHS_EDID_REGION_INDEX (VFIO_PCI_NUM_REGIONS).</summary>
    public const int EdidRegionIndex = VfioPciIndex.NumRegions;

    /// <summary>MBOCHS_NUM_REGIONS.</summary>
    public const int NumRegions = EdidRegionIndex + 1;

    /// <summary>VBE_DISPI_INDEX_COUNT: the dispi registers.</summary>
    public const int VbeCount = 11;

    /// <summary>VBE_DISPI_ID5.</summary>
    public const ushort VbeId5 = 0xB0C5;

    /// <summary>VBE_DISPI_INDEX_* of the registers the mode uses.</summary>
    public const int VbeId = 0, VbeXres = 1, VbeYres = 2, VbeBpp = 3, VbeEnable = 4, VbeBank = 5, VbeVirtWidth = 6, VbeVirtHeight = 7, VbeXOffset = 8, VbeYOffset = 9, VbeVideoMemory64K = 10;

    /// <summary>VBE_DISPI_ENABLED.</summary>
    public const ushort VbeEnabled = 0x01;

    /// <summary>sizeof(struct vfio_region_info) + sizeof(struct vfio_region_info_cap_type): the largest argsz GET_REGION_INFO takes.</summary>
    public const int RegionInfoExtSize = 48;

    private static readonly LockClass s_opsLockClass = LockClass.Get("mbochs.mdev_state.ops_lock");

    private readonly byte[] _vconfig = new byte[ConfigSpaceSize + 1];
    private readonly ushort[] _vbe = new ushort[VbeCount];
    private readonly uint[] _barMask = new uint[3];
    private readonly byte[] _edidBlob = new byte[0x400];
    private readonly List<MbochsDmabuf> _dmabufs = [];
    private VfioRegionGfxEdid _edidRegs;
    private long[] _pages = [];
    private uint _activeId;
    private uint _nextId;

    internal MbochsDevice()
    {
    }

    /// <summary>The mdev.</summary>
    public MdevDevice Mdev { get; private set; } = null!;

    /// <summary>The type.</summary>
    public MbochsType Type { get; private set; } = null!;

    /// <summary>memsize in bytes.</summary>
    public long MemSize { get; private set; }

    /// <summary>pagecount.</summary>
    public int PageCount => _pages.Length;

    /// <summary>Framebuffer pages allocated now (0 until first use and again after the last close).</summary>
    public int AllocatedPages
    {
        get
        {
            OpsLock.Lock();
            try
            {
                int n = 0;
                foreach (long p in _pages)
                {
                    n += p != 0 ? 1 : 0;
                }

                return n;
            }
            finally
            {
                OpsLock.Unlock();
            }
        }
    }

    /// <summary>active_id: the dmabuf_id of the last primary plane reported.</summary>
    public uint ActiveId => _activeId;

    /// <summary>The dma-buf objects listed on the device now.</summary>
    public IReadOnlyList<MbochsDmabuf> Dmabufs
    {
        get
        {
            OpsLock.Lock();
            try
            {
                return [.. _dmabufs];
            }
            finally
            {
                OpsLock.Unlock();
            }
        }
    }

    /// <summary>The dispi register <paramref name="index"/>.</summary>
    public ushort Vbe(int index) => _vbe[index];

    internal KMutex OpsLock { get; private set; } = null!;

    internal VfsDir? VendorDir { get; set; }

    private PhysMem Mem => Core.Machine.Memory;

    /// <summary>mbochs_init_dev().</summary>
    internal int InitDev(Mbochs driver)
    {
        Mdev = (MdevDevice)Dev;
        var type = (MbochsType)Mdev.Type;
        int err = driver.Reserve(type.MBytes);
        if (err != 0)
        {
            return err;
        }

        Type = type;
        MemSize = (long)type.MBytes * 1024 * 1024;
        _pages = new long[MemSize >> PhysMem.PageShift];
        OpsLock = new KMutex(Core.Kernel, $"mbochs[{Dev.Name}].ops_lock", s_opsLockClass);
        _nextId = 1;
        _edidRegs.MaxXres = type.MaxX;
        _edidRegs.MaxYres = type.MaxY;
        _edidRegs.EdidOffset = (uint)EdidBlobOffset;
        _edidRegs.EdidMaxSize = (uint)_edidBlob.Length;
        CreateConfigSpace();
        Reset();
        DevInfo($"mbochs_init_dev: {type.PrettyName}, {type.MBytes} MB, {_pages.Length} pages");
        return 0;
    }

    /// <summary>mbochs_release_dev(): the pool gets the memory back.</summary>
    internal void ReleaseDev(Mbochs driver) => driver.Unreserve(Type.MBytes);

    /// <summary>mbochs_close_device(): dma-buf objects are unlinked (freed unless exported), the framebuffer's pages dropped.</summary>
    internal void CloseDevice()
    {
        OpsLock.Lock();
        try
        {
            foreach (MbochsDmabuf d in _dmabufs)
            {
                if (d.Buf is not null)
                {
                    d.Unlinked = true;
                }
            }

            _dmabufs.Clear();
            PutPagesLocked();
        }
        finally
        {
            OpsLock.Unlock();
        }
    }

    internal int Reset()
    {
        Array.Clear(_vbe);
        _vbe[VbeId] = VbeId5;
        _vbe[VbeVideoMemory64K] = (ushort)(MemSize / (64 * 1024));
        return 0;
    }

    internal int Access(Span<byte> buf, long pos, bool write)
    {
        OpsLock.Lock();
        try
        {
            int count = buf.Length;
            if (pos < ConfigSpaceSize)
            {
                if (write)
                {
                    HandleCfgWriteLocked((int)pos, buf);
                }
                else
                {
                    _vconfig.AsSpan((int)pos, count).CopyTo(buf);
                }
            }
            else if (pos >= MmioBarOffset && pos + count <= MmioBarOffset + MmioBarSize)
            {
                int off = (int)(pos - MmioBarOffset);
                if (write)
                {
                    MmioWriteLocked(off, buf);
                }
                else
                {
                    MmioReadLocked(off, buf);
                }
            }
            else if (pos >= EdidOffset && pos + count <= EdidOffset + EdidSize)
            {
                int off = (int)(pos - EdidOffset);
                if (off < EdidBlobOffset)
                {
                    EdidRegsLocked(off, buf, write);
                }
                else
                {
                    EdidBlobLocked(off - EdidBlobOffset, buf, write);
                }
            }
            else if (pos >= MemoryBarOffset && pos + count <= MemoryBarOffset + MemSize)
            {
                long rel = pos - MmioBarOffset;
                long pgoff = rel >> PhysMem.PageShift;
                if (pgoff >= _pages.Length)
                {
                    Core.Kernel.Log.Err($"mbochs {Dev.Name}: mdev_access: page {pgoff} of a {_pages.Length}-page array (file offset 0x{pos:x}): out of bounds");
                    return -1;
                }

                long pfn = GetPageLocked(pgoff);
                if (pfn < 0)
                {
                    return -1;
                }

                int poff = (int)(rel & (PhysMem.PageSize - 1));
                if (write)
                {
                    KernelPages.Write(Mem, pfn, poff, buf);
                }
                else
                {
                    KernelPages.Read(Mem, pfn, poff, buf);
                }

                KernelPages.PutPage(Mem, pfn);
            }
            else
            {
                return -1;
            }

            return count;
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
            return ErrorReason.Fail(Errno.EINVAL, $"mbochs mmap: pgoff {vma.PgOff} is not the memory BAR's {MemoryBarOffset >> PhysMem.PageShift}");
        }

        if ((long)vma.Length > MemSize)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"mbochs mmap: length 0x{vma.Length:x} exceeds the 0x{MemSize:x} of video memory");
        }

        if ((vma.Flags & VmFlags.VM_SHARED) == 0)
        {
            return ErrorReason.Fail(Errno.EINVAL, "mbochs mmap: the memory BAR can only be mapped MAP_SHARED");
        }

        vma.PrivateData = this;
        OpsLock.Lock();
        try
        {
            for (ulong a = vma.Start; a < vma.End; a += (ulong)PhysMem.PageSize)
            {
                long pfn = GetPageLocked((long)((a - vma.Start) >> PhysMem.PageShift));
                if (pfn < 0)
                {
                    return Errno.ENOMEM.Negative();
                }

                int err = KernelPages.InsertPage(vma, a, pfn);
                KernelPages.PutPage(Mem, pfn);
                if (err != 0)
                {
                    return err;
                }
            }

            return 0;
        }
        finally
        {
            OpsLock.Unlock();
        }
    }

    internal long Ioctl(uint cmd, ulong arg)
    {
        switch (cmd)
        {
            case VfioIoctl.DeviceGetInfo:
                return SampleIoctl.GetPciInfo(arg, NumRegions, VfioPciIndex.NumIrqs, out _);

            case VfioIoctl.DeviceGetRegionInfo:
                return GetRegionInfo(arg);

            case VfioIoctl.DeviceGetIrqInfo:
                return SampleIoctl.GetIrqInfoWithoutIrqs(arg, VfioPciIndex.NumIrqs);

            case VfioIoctl.DeviceQueryGfxPlane:
                return SampleIoctl.QueryGfxPlane(arg, QueryGfxPlane);

            case VfioIoctl.DeviceGetGfxDmabuf:
                {
                    if (UserMemory.Get(arg, out uint id) != 0)
                    {
                        return ErrorReason.Fail(Errno.EFAULT, $"VFIO_DEVICE_GET_GFX_DMABUF: cannot read the id at 0x{arg:x}");
                    }

                    return GetGfxDmabuf(id);
                }

            case VfioIoctl.DeviceSetIrqs:
                return ErrorReason.Fail(Errno.EINVAL, "VFIO_DEVICE_SET_IRQS: mbochs has no interrupts");

            case VfioIoctl.DeviceReset:
                return Reset();

            default:
                return ErrorReason.Fail(Errno.ENOTTY, $"{VfioIoctl.Name(cmd)}: not an mbochs ioctl");
        }
    }

    /// <summary>mbochs_check_framebuffer(): the mode the dispi registers describe, or null (no plane).</summary>
    internal MbochsMode? CheckFramebufferLocked()
    {
        OpsLock.AssertHeld();
        if ((_vbe[VbeEnable] & VbeEnabled) == 0 || _vbe[VbeBpp] != 32)
        {
            return null;
        }

        uint width = _vbe[VbeXres], height = _vbe[VbeYres];
        uint virt = Math.Max((uint)_vbe[VbeVirtWidth], width);
        uint stride = virt * 4;
        ulong size = (ulong)stride * height;
        ulong offset = ((ulong)_vbe[VbeXOffset] * 4) + ((ulong)_vbe[VbeYOffset] * stride);
        if (width < 64 || height < 64 || offset + size > (ulong)MemSize)
        {
            return null;
        }

        return new MbochsMode(DrmFourcc.Xrgb8888, 4, width, height, stride, offset, size);
    }

    private long GetRegionInfo(ulong arg)
    {
        const string Name = "VFIO_DEVICE_GET_REGION_INFO";
        Span<byte> ext = stackalloc byte[RegionInfoExtSize];
        ext.Clear();
        if (UserMemory.CopyFromUser(ext[..VfioRegionInfo.MinSz], arg) != 0)
        {
            return ErrorReason.Fail(Errno.EFAULT, $"{Name}: cannot read the argument at 0x{arg:x}");
        }

        ref VfioRegionInfo info = ref MemoryMarshal.AsRef<VfioRegionInfo>(ext);
        uint outsz = info.Argsz;
        if (outsz < VfioRegionInfo.MinSz || outsz > RegionInfoExtSize)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{Name}: argsz {outsz} is outside [{VfioRegionInfo.MinSz}, {RegionInfoExtSize}]");
        }

        if (info.Index >= NumRegions)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{Name}: mbochs has no region {info.Index}");
        }

        switch (info.Index)
        {
            case VfioPciIndex.Config:
                info.Offset = 0;
                info.Size = ConfigSpaceSize;
                info.Flags = VfioRegionFlags.Read | VfioRegionFlags.Write;
                break;
            case VfioPciIndex.Bar0:
                info.Offset = (ulong)MemoryBarOffset;
                info.Size = (ulong)MemSize;
                info.Flags = VfioRegionFlags.Read | VfioRegionFlags.Write | VfioRegionFlags.Mmap;
                break;
            case VfioPciIndex.Bar2:
                info.Offset = (ulong)MmioBarOffset;
                info.Size = (ulong)MmioBarSize;
                info.Flags = VfioRegionFlags.Read | VfioRegionFlags.Write;
                break;
            case EdidRegionIndex:
                {
                    // A fixed two-part struct, not the vfio_info_cap chain: argsz always
                    // becomes its size and cap_offset points at the cap even when the
                    // caller's argsz leaves the cap out. The entry is built as vfio builds one.
                    var caps = new VfioInfoCaps(Core.Kernel.Profile);
                    if (caps.Add(VfioArg.SizeOf<VfioRegionInfoCapType>(), VfioCapId.RegionType, 1, out Span<byte> cap) != 0)
                    {
                        return Errno.ENOMEM.Negative();
                    }

                    BinaryPrimitives.WriteUInt32LittleEndian(cap[8..], VfioRegionType.Gfx);
                    BinaryPrimitives.WriteUInt32LittleEndian(cap[12..], VfioRegionType.SubtypeGfxEdid);
                    caps.Bytes[..(RegionInfoExtSize - VfioRegionInfo.MinSz)].CopyTo(ext[VfioRegionInfo.MinSz..]);
                    info.Argsz = RegionInfoExtSize;
                    info.Offset = (ulong)EdidOffset;
                    info.Size = (ulong)EdidSize;
                    info.Flags = VfioRegionFlags.Read | VfioRegionFlags.Write | VfioRegionFlags.Caps;
                    info.CapOffset = VfioRegionInfo.MinSz;
                    break;
                }

            default:
                info.Size = 0;
                info.Offset = 0;
                info.Flags = 0;
                break;
        }

        return UserMemory.CopyToUser(arg, ext[..(int)outsz]) != 0 ? ErrorReason.Fail(Errno.EFAULT, $"{Name}: cannot copy to 0x{arg:x}") : 0;
    }

    private int QueryGfxPlane(ref VfioDeviceGfxPlaneInfo plane)
    {
        if ((plane.Flags & VfioGfxPlaneFlags.Probe) != 0)
        {
            return plane.Flags == (VfioGfxPlaneFlags.Probe | VfioGfxPlaneFlags.Dmabuf)
                ? 0
                : ErrorReason.Fail(Errno.EINVAL, $"VFIO_DEVICE_QUERY_GFX_PLANE: mbochs offers only PROBE|DMABUF, not flags 0x{(uint)plane.Flags:x}");
        }

        if (plane.Flags != VfioGfxPlaneFlags.Dmabuf)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"VFIO_DEVICE_QUERY_GFX_PLANE: flags 0x{(uint)plane.Flags:x} are not DMABUF");
        }

        plane.DrmFormatMod = 0;
        plane.XPos = 0;
        plane.YPos = 0;
        plane.XHot = 0;
        plane.YHot = 0;
        OpsLock.Lock();
        try
        {
            MbochsMode? mode = plane.DrmPlaneType == DrmPlaneType.Primary ? CheckFramebufferLocked() : null;
            if (mode is not { } m)
            {
                plane.DrmFormat = 0;
                plane.Width = 0;
                plane.Height = 0;
                plane.Stride = 0;
                plane.Size = 0;
                plane.RegionIndexOrDmabufId = 0;
            }
            else
            {
                MbochsDmabuf? d = FindByModeLocked(m);
                if (d is null)
                {
                    // The kernel allocates the object here and drops the result.
                    _ = AllocDmabufLocked(m);
                    return ErrorReason.Fail(Errno.ENOMEM, "VFIO_DEVICE_QUERY_GFX_PLANE: mbochs made a dma-buf object for this mode but reports -ENOMEM (its result is dropped); ask again");
                }

                plane.DrmFormat = d.Mode.DrmFormat;
                plane.Width = d.Mode.Width;
                plane.Height = d.Mode.Height;
                plane.Stride = d.Mode.Stride;
                plane.Size = (uint)d.Mode.Size;
                plane.RegionIndexOrDmabufId = d.Id;
            }

            if (plane.DrmPlaneType == DrmPlaneType.Primary && _activeId != plane.RegionIndexOrDmabufId)
            {
                _activeId = plane.RegionIndexOrDmabufId;
            }

            return 0;
        }
        finally
        {
            OpsLock.Unlock();
        }
    }

    private long GetGfxDmabuf(uint id)
    {
        MbochsDmabuf? d;
        OpsLock.Lock();
        try
        {
            d = null;
            foreach (MbochsDmabuf x in _dmabufs)
            {
                if (x.Id == id)
                {
                    d = x;
                    break;
                }
            }

            if (d is null)
            {
                return ErrorReason.Fail(Errno.ENOENT, $"VFIO_DEVICE_GET_GFX_DMABUF: no dma-buf object {id}");
            }

            if (d.Buf is null)
            {
                ExportLocked(d);
            }
        }
        finally
        {
            OpsLock.Unlock();
        }

        if (d.Buf is not { } buf)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"VFIO_DEVICE_GET_GFX_DMABUF: dma-buf object {id} cannot be exported (framebuffer offset 0x{d.Mode.Offset:x} is not page-aligned)");
        }

        return buf.InstallFd(0);
    }

    private void ExportLocked(MbochsDmabuf d)
    {
        OpsLock.AssertHeld();
        if ((d.Mode.Offset & (PhysMem.PageSize - 1)) != 0)
        {
            DevInfo("mbochs_dmabuf_export: framebuffer not page-aligned");
            return;
        }

        d.Buf = DmaBuf.Export(Core.Kernel, d, (long)d.Mode.Size, d, out _);
    }

    private MbochsDmabuf? FindByModeLocked(MbochsMode mode)
    {
        OpsLock.AssertHeld();
        foreach (MbochsDmabuf d in _dmabufs)
        {
            if (d.Mode == mode)
            {
                return d;
            }
        }

        return null;
    }

    private MbochsDmabuf? AllocDmabufLocked(MbochsMode mode)
    {
        OpsLock.AssertHeld();
        long count = (long)((mode.Size + (ulong)PhysMem.PageSize - 1) >> PhysMem.PageShift);
        long first = (long)(mode.Offset >> PhysMem.PageShift);
        var pages = new long[count];
        for (long pg = 0; pg < count; pg++)
        {
            long pfn = first + pg < _pages.Length ? GetPageLocked(first + pg) : -1;
            if (pfn < 0)
            {
                while (pg > 0)
                {
                    KernelPages.PutPage(Mem, pages[--pg]);
                }

                return null;
            }

            pages[pg] = pfn;
        }

        var d = new MbochsDmabuf(this, mode, _nextId++, pages);
        _dmabufs.Insert(0, d);
        return d;
    }

    // __mbochs_get_page(): allocates the page on first use; returns it with a reference for the caller, or -1.
    private long GetPageLocked(long pgoff)
    {
        OpsLock.AssertHeld();
        if (_pages[pgoff] == 0)
        {
            long pfn = KernelPages.AllocPage(Mem);
            if (pfn < 0)
            {
                return -1;
            }

            _pages[pgoff] = pfn;
        }

        KernelPages.GetPage(Mem, _pages[pgoff]);
        return _pages[pgoff];
    }

    private void PutPagesLocked()
    {
        OpsLock.AssertHeld();
        for (int i = 0; i < _pages.Length; i++)
        {
            if (_pages[i] != 0)
            {
                KernelPages.PutPage(Mem, _pages[i]);
                _pages[i] = 0;
            }
        }
    }

    private void CreateConfigSpace()
    {
        Span<byte> c = _vconfig;
        BinaryPrimitives.WriteUInt16LittleEndian(c[0x00..], 0x1234);
        BinaryPrimitives.WriteUInt16LittleEndian(c[0x02..], 0x1111);
        BinaryPrimitives.WriteUInt16LittleEndian(c[0x2c..], 0x1af4);
        BinaryPrimitives.WriteUInt16LittleEndian(c[0x2e..], 0x1100);
        BinaryPrimitives.WriteUInt16LittleEndian(c[0x04..], 0x0003);
        BinaryPrimitives.WriteUInt16LittleEndian(c[0x0a..], 0x0380);
        c[0x08] = 0x01;
        BinaryPrimitives.WriteUInt32LittleEndian(c[0x10..], 0x08);
        _barMask[0] = (uint)(~(ulong)MemSize + 1);
        BinaryPrimitives.WriteUInt32LittleEndian(c[0x18..], 0x00);
        _barMask[2] = unchecked((uint)(~(ulong)MmioBarSize + 1));
    }

    private void HandleCfgWriteLocked(int offset, ReadOnlySpan<byte> buf)
    {
        OpsLock.AssertHeld();
        if (offset is not (0x10 or 0x18))
        {
            return;
        }

        int index = (offset - 0x10) / 4;
        Span<byte> wide = stackalloc byte[4];
        wide.Clear();
        buf.CopyTo(wide);
        uint cfg = BinaryPrimitives.ReadUInt32LittleEndian(wide);
        if (cfg == 0xffffffff)
        {
            cfg &= _barMask[index];
        }
        else
        {
            cfg &= ~0xfu;
            if (cfg != 0)
            {
                DevInfo($"BAR #{index} @ 0x{cfg:x}");
            }
        }

        cfg |= _vconfig[offset] & 0xfu;
        BinaryPrimitives.WriteUInt32LittleEndian(_vconfig.AsSpan(offset), cfg);
    }

    private void MmioWriteLocked(int offset, ReadOnlySpan<byte> buf)
    {
        OpsLock.AssertHeld();
        if (offset is >= 0x500 and <= 0x515 && buf.Length == 2)
        {
            int index = (offset - 0x500) / 2;
            if (index < VbeCount)
            {
                _vbe[index] = BinaryPrimitives.ReadUInt16LittleEndian(buf);
            }
        }
    }

    private void MmioReadLocked(int offset, Span<byte> buf)
    {
        OpsLock.AssertHeld();
        buf.Clear();
        if (offset <= 0x3ff)
        {
            if (_edidRegs.LinkState == VfioRegionType.GfxLinkStateUp && offset < _edidRegs.EdidSize)
            {
                int n = Math.Min(buf.Length, _edidBlob.Length - offset);
                _edidBlob.AsSpan(offset, n).CopyTo(buf);
            }
        }
        else if (offset is >= 0x500 and <= 0x515 && buf.Length == 2)
        {
            int index = (offset - 0x500) / 2;
            BinaryPrimitives.WriteUInt16LittleEndian(buf, index < VbeCount ? _vbe[index] : (ushort)0);
        }
    }

    private void EdidRegsLocked(int offset, Span<byte> buf, bool write)
    {
        OpsLock.AssertHeld();
        int size = VfioArg.SizeOf<VfioRegionGfxEdid>();
        if (!write)
        {
            buf.Clear();
        }

        if (offset + buf.Length > size || buf.Length != 4 || offset % 4 != 0)
        {
            return;
        }

        Span<byte> regs = MemoryMarshal.AsBytes(MemoryMarshal.CreateSpan(ref _edidRegs, 1));
        if (!write)
        {
            regs.Slice(offset, 4).CopyTo(buf);
        }
        else if (offset is 8 or 20)
        {
            // edid_size and link_state; the rest is read-only.
            buf.CopyTo(regs[offset..]);
        }
    }

    private void EdidBlobLocked(int offset, Span<byte> buf, bool write)
    {
        OpsLock.AssertHeld();
        if (!write)
        {
            buf.Clear();
        }

        if (offset + buf.Length > _edidRegs.EdidMaxSize)
        {
            return;
        }

        if (write)
        {
            buf.CopyTo(_edidBlob.AsSpan(offset));
        }
        else
        {
            _edidBlob.AsSpan(offset, buf.Length).CopyTo(buf);
        }
    }
}

/// <summary>mbochs_dev_ops.</summary>
internal sealed class MbochsOps(Mbochs driver) : VfioDeviceOps
{
    public override string Name => Mbochs.DriverName;

    public override int Init(VfioDevice device) => ((MbochsDevice)device).InitDev(driver);

    public override void Release(VfioDevice device) => ((MbochsDevice)device).ReleaseDev(driver);

    public override void CloseDevice(VfioDevice device) => ((MbochsDevice)device).CloseDevice();

    public override long Read(VfioDevice device, ulong buf, long count, ref long pos)
        => SampleRw.Loop("mbochs", ((MbochsDevice)device).Access, buf, count, ref pos, write: false);

    public override long Write(VfioDevice device, ulong buf, long count, ref long pos)
        => SampleRw.Loop("mbochs", ((MbochsDevice)device).Access, buf, count, ref pos, write: true);

    public override long Ioctl(VfioDevice device, uint cmd, ulong arg) => ((MbochsDevice)device).Ioctl(cmd, arg);

    public override int Mmap(VfioDevice device, Vma vma) => ((MbochsDevice)device).Mmap(vma);
}
