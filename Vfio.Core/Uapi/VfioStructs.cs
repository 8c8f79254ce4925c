// Models the argument structs of include/uapi/linux/vfio.h (v6.12) as blittable C#
// structs with the header's sizes and field offsets (pinned by tests). Each struct's
// MinSz is the kernel's minsz: offsetofend() of its last mandatory field.

using System.Runtime.InteropServices;

namespace Vfio.Core.Uapi;

/// <summary>struct vfio_info_cap_header (8 bytes).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public struct VfioInfoCapHeader
{
    /// <summary>Capability id.</summary>
    public ushort Id;

    /// <summary>Capability version.</summary>
    public ushort Version;

    /// <summary>Offset of the next capability from the start of the info buffer; 0 ends the chain.</summary>
    public uint Next;
}

/// <summary>struct vfio_group_status (8 bytes).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 4)]
public struct VfioGroupStatus
{
    /// <summary>minsz.</summary>
    public const int MinSz = 8;

    public uint Argsz;
    public VfioGroupFlags Flags;
}

/// <summary>struct vfio_device_info (24 bytes; minsz 16, cap_offset read when argsz ≥ 20).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 4)]
public struct VfioDeviceInfo
{
    /// <summary>minsz.</summary>
    public const int MinSz = 16;

    public uint Argsz;
    public VfioDeviceFlags Flags;
    public uint NumRegions;
    public uint NumIrqs;
    public uint CapOffset;
    public uint Pad;
}

/// <summary>struct vfio_region_info (32 bytes).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 8)]
public struct VfioRegionInfo
{
    /// <summary>minsz.</summary>
    public const int MinSz = 32;

    public uint Argsz;
    public VfioRegionFlags Flags;
    public uint Index;
    public uint CapOffset;
    public ulong Size;
    public ulong Offset;
}

/// <summary>struct vfio_region_sparse_mmap_area (16 bytes).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 8)]
public struct VfioRegionSparseMmapArea
{
    public ulong Offset;
    public ulong Size;
}

/// <summary>struct vfio_region_info_cap_sparse_mmap (16 bytes + areas).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 4)]
public struct VfioRegionInfoCapSparseMmap
{
    public VfioInfoCapHeader Header;
    public uint NrAreas;
    public uint Reserved;
}

/// <summary>struct vfio_region_info_cap_type (16 bytes).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 4)]
public struct VfioRegionInfoCapType
{
    public VfioInfoCapHeader Header;
    public uint Type;
    public uint Subtype;
}

/// <summary>struct vfio_irq_info (16 bytes).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 4)]
public struct VfioIrqInfo
{
    /// <summary>minsz.</summary>
    public const int MinSz = 16;

    public uint Argsz;
    public VfioIrqInfoFlags Flags;
    public uint Index;
    public uint Count;
}

/// <summary>struct vfio_irq_set (20 bytes + data).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 4)]
public struct VfioIrqSet
{
    /// <summary>minsz (offsetofend count).</summary>
    public const int MinSz = 20;

    public uint Argsz;
    public VfioIrqSetFlags Flags;
    public uint Index;
    public uint Start;
    public uint Count;
}

/// <summary>struct vfio_pci_dependent_device (8 bytes): group_id or devid, then the address.</summary>
[StructLayout(LayoutKind.Sequential, Pack = 4)]
public struct VfioPciDependentDevice
{
    public uint GroupIdOrDevid;
    public ushort Segment;
    public byte Bus;
    public byte Devfn;
}

/// <summary>struct vfio_pci_hot_reset_info (12 bytes + devices).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 4)]
public struct VfioPciHotResetInfo
{
    /// <summary>minsz.</summary>
    public const int MinSz = 12;

    public uint Argsz;
    public uint Flags;
    public uint Count;
}

/// <summary>struct vfio_pci_hot_reset (12 bytes + group fds).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 4)]
public struct VfioPciHotReset
{
    /// <summary>minsz.</summary>
    public const int MinSz = 12;

    public uint Argsz;
    public uint Flags;
    public uint Count;
}

/// <summary>struct vfio_device_ioeventfd (32 bytes; minsz 28).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 8)]
public struct VfioDeviceIoeventfd
{
    /// <summary>minsz (offsetofend fd).</summary>
    public const int MinSz = 28;

    public uint Argsz;
    public uint Flags;
    public ulong Offset;
    public ulong Data;
    public int Fd;
    public uint Reserved;
}

/// <summary>struct vfio_device_feature (8 bytes + data).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 4)]
public struct VfioDeviceFeature
{
    /// <summary>minsz.</summary>
    public const int MinSz = 8;

    public uint Argsz;
    public uint Flags;
}

/// <summary>struct vfio_device_bind_iommufd (24 bytes; minsz 16).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 8)]
public struct VfioDeviceBindIommufd
{
    /// <summary>minsz (offsetofend out_devid).</summary>
    public const int MinSz = 16;

    public uint Argsz;
    public uint Flags;
    public int Iommufd;
    public uint OutDevid;
    public ulong TokenUuidPtr;
}

/// <summary>struct vfio_device_attach_iommufd_pt (16 bytes; minsz 12).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 4)]
public struct VfioDeviceAttachIommufdPt
{
    /// <summary>minsz (offsetofend pt_id).</summary>
    public const int MinSz = 12;

    public uint Argsz;
    public uint Flags;
    public uint PtId;
    public uint Pasid;
}

/// <summary>struct vfio_device_detach_iommufd_pt (12 bytes; minsz 8).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 4)]
public struct VfioDeviceDetachIommufdPt
{
    /// <summary>minsz (offsetofend flags).</summary>
    public const int MinSz = 8;

    public uint Argsz;
    public uint Flags;
    public uint Pasid;
}

/// <summary>struct vfio_iommu_type1_info (24 bytes; minsz 16, cap_offset from argsz ≥ 20).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 8)]
public struct VfioIommuType1Info
{
    /// <summary>minsz (offsetofend iova_pgsizes).</summary>
    public const int MinSz = 16;

    public uint Argsz;
    public uint Flags;
    public ulong IovaPgsizes;
    public uint CapOffset;
    public uint Pad;
}

/// <summary>struct vfio_iova_range (16 bytes).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 8)]
public struct VfioIovaRange
{
    public ulong Start;
    public ulong End;
}

/// <summary>struct vfio_iommu_type1_info_cap_iova_range (16 bytes + ranges).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 4)]
public struct VfioIommuType1InfoCapIovaRange
{
    public VfioInfoCapHeader Header;
    public uint NrIovas;
    public uint Reserved;
}

/// <summary>struct vfio_iommu_type1_info_cap_migration (32 bytes).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 8)]
public struct VfioIommuType1InfoCapMigration
{
    public VfioInfoCapHeader Header;
    public uint Flags;
    public ulong PgsizeBitmap;
    public ulong MaxDirtyBitmapSize;
}

/// <summary>struct vfio_iommu_type1_info_dma_avail (12 bytes).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 4)]
public struct VfioIommuType1InfoDmaAvail
{
    public VfioInfoCapHeader Header;
    public uint Avail;
}

/// <summary>struct vfio_iommu_type1_dma_map (32 bytes).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 8)]
public struct VfioIommuType1DmaMap
{
    /// <summary>minsz.</summary>
    public const int MinSz = 32;

    public uint Argsz;
    public uint Flags;
    public ulong Vaddr;
    public ulong Iova;
    public ulong Size;
}

/// <summary>struct vfio_bitmap (24 bytes).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 8)]
public struct VfioBitmap
{
    public ulong Pgsize;
    public ulong Size;
    public ulong Data;
}

/// <summary>struct vfio_iommu_type1_dma_unmap (24 bytes + data).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 8)]
public struct VfioIommuType1DmaUnmap
{
    /// <summary>minsz.</summary>
    public const int MinSz = 24;

    public uint Argsz;
    public uint Flags;
    public ulong Iova;
    public ulong Size;
}

/// <summary>struct vfio_iommu_type1_dirty_bitmap (8 bytes + data).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 4)]
public struct VfioIommuType1DirtyBitmap
{
    /// <summary>minsz.</summary>
    public const int MinSz = 8;

    public uint Argsz;
    public uint Flags;
}

/// <summary>struct vfio_iommu_type1_dirty_bitmap_get (40 bytes).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 8)]
public struct VfioIommuType1DirtyBitmapGet
{
    public ulong Iova;
    public ulong Size;
    public VfioBitmap Bitmap;
}

/// <summary>struct vfio_device_info_cap_pci_atomic_comp (16 bytes).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 4)]
public struct VfioDeviceInfoCapPciAtomicComp
{
    public VfioInfoCapHeader Header;
    public uint Flags;
    public uint Reserved;
}

/// <summary>struct vfio_region_gfx_edid (24 bytes): the layout of a GFX_EDID region.</summary>
[StructLayout(LayoutKind.Sequential, Pack = 4)]
public struct VfioRegionGfxEdid
{
    public uint EdidOffset;
    public uint EdidMaxSize;
    public uint EdidSize;
    public uint MaxXres;
    public uint MaxYres;
    public uint LinkState;
}

/// <summary>struct vfio_device_gfx_plane_info (64 bytes).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 8)]
public struct VfioDeviceGfxPlaneInfo
{
    /// <summary>minsz of the mdev samples and i915 (offsetofend region_index / dmabuf_id).</summary>
    public const int MinSz = 60;

    public uint Argsz;
    public VfioGfxPlaneFlags Flags;
    public uint DrmPlaneType;
    public uint DrmFormat;
    public ulong DrmFormatMod;
    public uint Width;
    public uint Height;
    public uint Stride;
    public uint Size;
    public uint XPos;
    public uint YPos;
    public uint XHot;
    public uint YHot;

    /// <summary>region_index or dmabuf_id (a union in the header).</summary>
    public uint RegionIndexOrDmabufId;
    public uint Reserved;
}

/// <summary>struct vfio_device_feature_migration (8 bytes).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 8)]
public struct VfioDeviceFeatureMigration
{
    public ulong Flags;
}

/// <summary>struct vfio_device_feature_mig_state (8 bytes).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 4)]
public struct VfioDeviceFeatureMigState
{
    public VfioDeviceMigState DeviceState;
    public int DataFd;
}

/// <summary>struct vfio_precopy_info (24 bytes).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 8)]
public struct VfioPrecopyInfo
{
    /// <summary>minsz (offsetofend dirty_bytes).</summary>
    public const int MinSz = 24;

    public uint Argsz;
    public uint Flags;
    public ulong InitialBytes;
    public ulong DirtyBytes;
}

/// <summary>struct vfio_device_low_power_entry_with_wakeup (8 bytes).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 4)]
public struct VfioDeviceLowPowerEntryWithWakeup
{
    public int WakeupEventfd;
    public uint Reserved;
}

/// <summary>struct vfio_device_feature_dma_logging_control (24 bytes).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 8)]
public struct VfioDeviceFeatureDmaLoggingControl
{
    public ulong PageSize;
    public uint NumRanges;
    public uint Reserved;
    public ulong Ranges;
}

/// <summary>struct vfio_device_feature_dma_logging_range (16 bytes).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 8)]
public struct VfioDeviceFeatureDmaLoggingRange
{
    public ulong Iova;
    public ulong Length;
}

/// <summary>struct vfio_device_feature_dma_logging_report (32 bytes).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 8)]
public struct VfioDeviceFeatureDmaLoggingReport
{
    public ulong Iova;
    public ulong Length;
    public ulong PageSize;
    public ulong Bitmap;
}

/// <summary>struct vfio_device_feature_mig_data_size (8 bytes).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 8)]
public struct VfioDeviceFeatureMigDataSize
{
    public ulong StopCopyLength;
}

/// <summary>struct vfio_device_feature_bus_master (4 bytes).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 4)]
public struct VfioDeviceFeatureBusMaster
{
    public uint Op;
}

/// <summary>struct vfio_region_dma_range (16 bytes; newer than the v6.12 baseline).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 8)]
public struct VfioRegionDmaRange
{
    public ulong Offset;
    public ulong Length;
}

/// <summary>struct vfio_device_feature_dma_buf (16 bytes + ranges; newer than the v6.12 baseline).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 4)]
public struct VfioDeviceFeatureDmaBuf
{
    public uint RegionIndex;
    public uint OpenFlags;
    public uint Flags;
    public uint NrRanges;
}
