// Models include/uapi/linux/vfio.h (v6.12): ioctl numbers, flags, extension ids and the
// PCI region and IRQ indexes. Every VFIO ioctl is _IO(';', 100 + n): no size or
// direction is encoded, the structs carry argsz instead.

namespace Vfio.Core.Uapi;

/// <summary>VFIO ioctl request numbers (<c>_IO(VFIO_TYPE, VFIO_BASE + n)</c>).</summary>
public static class VfioIoctl
{
    /// <summary>VFIO_TYPE: the ioctl type character ';'.</summary>
    public const uint Type = ';';

    /// <summary>VFIO_BASE.</summary>
    public const uint Base = 100;

    /// <summary>_IO(VFIO_TYPE, VFIO_BASE + n).</summary>
    public static uint Io(uint n) => (Type << 8) | (Base + n);

    // Container (/dev/vfio/vfio).

    /// <summary>VFIO_GET_API_VERSION (0x3B64).</summary>
    public const uint GetApiVersion = (Type << 8) | (Base + 0);

    /// <summary>VFIO_CHECK_EXTENSION (0x3B65).</summary>
    public const uint CheckExtension = (Type << 8) | (Base + 1);

    /// <summary>VFIO_SET_IOMMU (0x3B66).</summary>
    public const uint SetIommu = (Type << 8) | (Base + 2);

    // Group (/dev/vfio/N).

    /// <summary>VFIO_GROUP_GET_STATUS (0x3B67).</summary>
    public const uint GroupGetStatus = (Type << 8) | (Base + 3);

    /// <summary>VFIO_GROUP_SET_CONTAINER (0x3B68).</summary>
    public const uint GroupSetContainer = (Type << 8) | (Base + 4);

    /// <summary>VFIO_GROUP_UNSET_CONTAINER (0x3B69).</summary>
    public const uint GroupUnsetContainer = (Type << 8) | (Base + 5);

    /// <summary>VFIO_GROUP_GET_DEVICE_FD (0x3B6A).</summary>
    public const uint GroupGetDeviceFd = (Type << 8) | (Base + 6);

    // Device.

    /// <summary>VFIO_DEVICE_GET_INFO (0x3B6B).</summary>
    public const uint DeviceGetInfo = (Type << 8) | (Base + 7);

    /// <summary>VFIO_DEVICE_GET_REGION_INFO (0x3B6C).</summary>
    public const uint DeviceGetRegionInfo = (Type << 8) | (Base + 8);

    /// <summary>VFIO_DEVICE_GET_IRQ_INFO (0x3B6D).</summary>
    public const uint DeviceGetIrqInfo = (Type << 8) | (Base + 9);

    /// <summary>VFIO_DEVICE_SET_IRQS (0x3B6E).</summary>
    public const uint DeviceSetIrqs = (Type << 8) | (Base + 10);

    /// <summary>VFIO_DEVICE_RESET (0x3B6F).</summary>
    public const uint DeviceReset = (Type << 8) | (Base + 11);

    /// <summary>VFIO_DEVICE_GET_PCI_HOT_RESET_INFO (0x3B70; same number as VFIO_IOMMU_GET_INFO).</summary>
    public const uint DeviceGetPciHotResetInfo = (Type << 8) | (Base + 12);

    /// <summary>VFIO_DEVICE_PCI_HOT_RESET (0x3B71; same number as VFIO_IOMMU_MAP_DMA).</summary>
    public const uint DevicePciHotReset = (Type << 8) | (Base + 13);

    /// <summary>VFIO_DEVICE_QUERY_GFX_PLANE (0x3B72).</summary>
    public const uint DeviceQueryGfxPlane = (Type << 8) | (Base + 14);

    /// <summary>VFIO_DEVICE_GET_GFX_DMABUF (0x3B73).</summary>
    public const uint DeviceGetGfxDmabuf = (Type << 8) | (Base + 15);

    /// <summary>VFIO_DEVICE_IOEVENTFD (0x3B74; same number as VFIO_IOMMU_DISABLE).</summary>
    public const uint DeviceIoeventfd = (Type << 8) | (Base + 16);

    /// <summary>VFIO_DEVICE_FEATURE (0x3B75).</summary>
    public const uint DeviceFeature = (Type << 8) | (Base + 17);

    /// <summary>VFIO_DEVICE_BIND_IOMMUFD (0x3B76).</summary>
    public const uint DeviceBindIommufd = (Type << 8) | (Base + 18);

    /// <summary>VFIO_DEVICE_ATTACH_IOMMUFD_PT (0x3B77).</summary>
    public const uint DeviceAttachIommufdPt = (Type << 8) | (Base + 19);

    /// <summary>VFIO_DEVICE_DETACH_IOMMUFD_PT (0x3B78).</summary>
    public const uint DeviceDetachIommufdPt = (Type << 8) | (Base + 20);

    /// <summary>VFIO_MIG_GET_PRECOPY_INFO (0x3B79).</summary>
    public const uint MigGetPrecopyInfo = (Type << 8) | (Base + 21);

    // Type1 IOMMU (on the container once SET_IOMMU chose type1).

    /// <summary>VFIO_IOMMU_GET_INFO (0x3B70).</summary>
    public const uint IommuGetInfo = (Type << 8) | (Base + 12);

    /// <summary>VFIO_IOMMU_MAP_DMA (0x3B71).</summary>
    public const uint IommuMapDma = (Type << 8) | (Base + 13);

    /// <summary>VFIO_IOMMU_UNMAP_DMA (0x3B72).</summary>
    public const uint IommuUnmapDma = (Type << 8) | (Base + 14);

    /// <summary>VFIO_IOMMU_ENABLE (0x3B73; SPAPR only).</summary>
    public const uint IommuEnable = (Type << 8) | (Base + 15);

    /// <summary>VFIO_IOMMU_DISABLE (0x3B74; SPAPR only).</summary>
    public const uint IommuDisable = (Type << 8) | (Base + 16);

    /// <summary>VFIO_IOMMU_DIRTY_PAGES (0x3B75).</summary>
    public const uint IommuDirtyPages = (Type << 8) | (Base + 17);

    /// <summary>The kernel's name for a VFIO ioctl number on a file of <paramref name="kind"/> ("container", "group", "device"), for messages.</summary>
    public static string Name(uint cmd, string kind = "device")
    {
        if ((cmd >> 8) != Type || (cmd & 0xff) < Base)
        {
            return $"ioctl 0x{cmd:x}";
        }

        uint n = (cmd & 0xff) - Base;
        return (kind, n) switch
        {
            (_, 0) => "VFIO_GET_API_VERSION",
            (_, 1) => "VFIO_CHECK_EXTENSION",
            (_, 2) => "VFIO_SET_IOMMU",
            (_, 3) => "VFIO_GROUP_GET_STATUS",
            (_, 4) => "VFIO_GROUP_SET_CONTAINER",
            (_, 5) => "VFIO_GROUP_UNSET_CONTAINER",
            (_, 6) => "VFIO_GROUP_GET_DEVICE_FD",
            (_, 7) => "VFIO_DEVICE_GET_INFO",
            (_, 8) => "VFIO_DEVICE_GET_REGION_INFO",
            (_, 9) => "VFIO_DEVICE_GET_IRQ_INFO",
            (_, 10) => "VFIO_DEVICE_SET_IRQS",
            (_, 11) => "VFIO_DEVICE_RESET",
            ("container", 12) => "VFIO_IOMMU_GET_INFO",
            ("container", 13) => "VFIO_IOMMU_MAP_DMA",
            ("container", 14) => "VFIO_IOMMU_UNMAP_DMA",
            ("container", 15) => "VFIO_IOMMU_ENABLE",
            ("container", 16) => "VFIO_IOMMU_DISABLE",
            ("container", 17) => "VFIO_IOMMU_DIRTY_PAGES",
            (_, 12) => "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO",
            (_, 13) => "VFIO_DEVICE_PCI_HOT_RESET",
            (_, 14) => "VFIO_DEVICE_QUERY_GFX_PLANE",
            (_, 15) => "VFIO_DEVICE_GET_GFX_DMABUF",
            (_, 16) => "VFIO_DEVICE_IOEVENTFD",
            (_, 17) => "VFIO_DEVICE_FEATURE",
            (_, 18) => "VFIO_DEVICE_BIND_IOMMUFD",
            (_, 19) => "VFIO_DEVICE_ATTACH_IOMMUFD_PT",
            (_, 20) => "VFIO_DEVICE_DETACH_IOMMUFD_PT",
            (_, 21) => "VFIO_MIG_GET_PRECOPY_INFO",
            _ => $"ioctl 0x{cmd:x}",
        };
    }
}

/// <summary>VFIO_API_VERSION and the container extension ids.</summary>
public static class VfioExtension
{
    /// <summary>VFIO_API_VERSION.</summary>
    public const int ApiVersion = 0;

    /// <summary>VFIO_TYPE1_IOMMU.</summary>
    public const uint Type1 = 1;

    /// <summary>VFIO_SPAPR_TCE_IOMMU.</summary>
    public const uint SpaprTce = 2;

    /// <summary>VFIO_TYPE1v2_IOMMU.</summary>
    public const uint Type1v2 = 3;

    /// <summary>VFIO_DMA_CC_IOMMU: every domain enforces cache coherency.</summary>
    public const uint DmaCcIommu = 4;

    /// <summary>VFIO_EEH.</summary>
    public const uint Eeh = 5;

    /// <summary>VFIO_TYPE1_NESTING_IOMMU (removed in v6.13).</summary>
    public const uint Type1Nesting = 6;

    /// <summary>VFIO_SPAPR_TCE_v2_IOMMU.</summary>
    public const uint SpaprTceV2 = 7;

    /// <summary>VFIO_NOIOMMU_IOMMU.</summary>
    public const uint NoIommu = 8;

    /// <summary>VFIO_UNMAP_ALL.</summary>
    public const uint UnmapAll = 9;

    /// <summary>VFIO_UPDATE_VADDR.</summary>
    public const uint UpdateVaddr = 10;
}

/// <summary>struct vfio_group_status flags.</summary>
[Flags]
public enum VfioGroupFlags : uint
{
    None = 0,

    /// <summary>VFIO_GROUP_FLAGS_VIABLE.</summary>
    Viable = 1 << 0,

    /// <summary>VFIO_GROUP_FLAGS_CONTAINER_SET.</summary>
    ContainerSet = 1 << 1,
}

/// <summary>struct vfio_device_info flags.</summary>
[Flags]
public enum VfioDeviceFlags : uint
{
    None = 0,

    /// <summary>VFIO_DEVICE_FLAGS_RESET: VFIO_DEVICE_RESET is supported.</summary>
    Reset = 1 << 0,

    /// <summary>VFIO_DEVICE_FLAGS_PCI.</summary>
    Pci = 1 << 1,

    /// <summary>VFIO_DEVICE_FLAGS_PLATFORM.</summary>
    Platform = 1 << 2,

    /// <summary>VFIO_DEVICE_FLAGS_AMBA.</summary>
    Amba = 1 << 3,

    /// <summary>VFIO_DEVICE_FLAGS_CCW.</summary>
    Ccw = 1 << 4,

    /// <summary>VFIO_DEVICE_FLAGS_AP.</summary>
    Ap = 1 << 5,

    /// <summary>VFIO_DEVICE_FLAGS_FSL_MC.</summary>
    FslMc = 1 << 6,

    /// <summary>VFIO_DEVICE_FLAGS_CAPS: cap_offset is valid.</summary>
    Caps = 1 << 7,

    /// <summary>VFIO_DEVICE_FLAGS_CDX.</summary>
    Cdx = 1 << 8,
}

/// <summary>struct vfio_region_info flags.</summary>
[Flags]
public enum VfioRegionFlags : uint
{
    None = 0,

    /// <summary>VFIO_REGION_INFO_FLAG_READ.</summary>
    Read = 1 << 0,

    /// <summary>VFIO_REGION_INFO_FLAG_WRITE.</summary>
    Write = 1 << 1,

    /// <summary>VFIO_REGION_INFO_FLAG_MMAP.</summary>
    Mmap = 1 << 2,

    /// <summary>VFIO_REGION_INFO_FLAG_CAPS.</summary>
    Caps = 1 << 3,
}

/// <summary>struct vfio_irq_info flags.</summary>
[Flags]
public enum VfioIrqInfoFlags : uint
{
    None = 0,

    /// <summary>VFIO_IRQ_INFO_EVENTFD.</summary>
    Eventfd = 1 << 0,

    /// <summary>VFIO_IRQ_INFO_MASKABLE.</summary>
    Maskable = 1 << 1,

    /// <summary>VFIO_IRQ_INFO_AUTOMASKED.</summary>
    Automasked = 1 << 2,

    /// <summary>VFIO_IRQ_INFO_NORESIZE.</summary>
    NoResize = 1 << 3,
}

/// <summary>struct vfio_irq_set flags: one data type and one action.</summary>
[Flags]
public enum VfioIrqSetFlags : uint
{
    None = 0,

    /// <summary>VFIO_IRQ_SET_DATA_NONE.</summary>
    DataNone = 1 << 0,

    /// <summary>VFIO_IRQ_SET_DATA_BOOL.</summary>
    DataBool = 1 << 1,

    /// <summary>VFIO_IRQ_SET_DATA_EVENTFD.</summary>
    DataEventfd = 1 << 2,

    /// <summary>VFIO_IRQ_SET_ACTION_MASK.</summary>
    ActionMask = 1 << 3,

    /// <summary>VFIO_IRQ_SET_ACTION_UNMASK.</summary>
    ActionUnmask = 1 << 4,

    /// <summary>VFIO_IRQ_SET_ACTION_TRIGGER.</summary>
    ActionTrigger = 1 << 5,

    /// <summary>VFIO_IRQ_SET_DATA_TYPE_MASK.</summary>
    DataTypeMask = DataNone | DataBool | DataEventfd,

    /// <summary>VFIO_IRQ_SET_ACTION_TYPE_MASK.</summary>
    ActionTypeMask = ActionMask | ActionUnmask | ActionTrigger,
}

/// <summary>Capability ids of the info-cap chains (device, region, type1 info).</summary>
public static class VfioCapId
{
    /// <summary>VFIO_REGION_INFO_CAP_SPARSE_MMAP.</summary>
    public const ushort RegionSparseMmap = 1;

    /// <summary>VFIO_REGION_INFO_CAP_TYPE.</summary>
    public const ushort RegionType = 2;

    /// <summary>VFIO_REGION_INFO_CAP_MSIX_MAPPABLE.</summary>
    public const ushort RegionMsixMappable = 3;

    /// <summary>VFIO_REGION_INFO_CAP_NVLINK2_SSATGT.</summary>
    public const ushort RegionNvlink2Ssatgt = 4;

    /// <summary>VFIO_REGION_INFO_CAP_NVLINK2_LNKSPD.</summary>
    public const ushort RegionNvlink2Lnkspd = 5;

    /// <summary>VFIO_DEVICE_INFO_CAP_ZPCI_BASE.</summary>
    public const ushort DeviceZpciBase = 1;

    /// <summary>VFIO_DEVICE_INFO_CAP_ZPCI_GROUP.</summary>
    public const ushort DeviceZpciGroup = 2;

    /// <summary>VFIO_DEVICE_INFO_CAP_ZPCI_UTIL.</summary>
    public const ushort DeviceZpciUtil = 3;

    /// <summary>VFIO_DEVICE_INFO_CAP_ZPCI_PFIP.</summary>
    public const ushort DeviceZpciPfip = 4;

    /// <summary>VFIO_DEVICE_INFO_CAP_PCI_ATOMIC_COMP.</summary>
    public const ushort DevicePciAtomicComp = 5;

    /// <summary>VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE.</summary>
    public const ushort Type1IovaRange = 1;

    /// <summary>VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION.</summary>
    public const ushort Type1Migration = 2;

    /// <summary>VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL.</summary>
    public const ushort Type1DmaAvail = 3;
}

/// <summary>vfio-pci region and IRQ indexes and the offset encoding of its regions.</summary>
public static class VfioPciIndex
{
    /// <summary>VFIO_PCI_BAR0_REGION_INDEX .. BAR5 are 0..5.</summary>
    public const int Bar0 = 0;

    /// <summary>VFIO_PCI_BAR1_REGION_INDEX.</summary>
    public const int Bar1 = 1;

    /// <summary>VFIO_PCI_BAR2_REGION_INDEX.</summary>
    public const int Bar2 = 2;

    /// <summary>VFIO_PCI_BAR3_REGION_INDEX.</summary>
    public const int Bar3 = 3;

    /// <summary>VFIO_PCI_BAR4_REGION_INDEX.</summary>
    public const int Bar4 = 4;

    /// <summary>VFIO_PCI_BAR5_REGION_INDEX.</summary>
    public const int Bar5 = 5;

    /// <summary>VFIO_PCI_ROM_REGION_INDEX.</summary>
    public const int Rom = 6;

    /// <summary>VFIO_PCI_CONFIG_REGION_INDEX.</summary>
    public const int Config = 7;

    /// <summary>VFIO_PCI_VGA_REGION_INDEX.</summary>
    public const int Vga = 8;

    /// <summary>VFIO_PCI_NUM_REGIONS.</summary>
    public const int NumRegions = 9;

    /// <summary>VFIO_PCI_INTX_IRQ_INDEX.</summary>
    public const int IrqIntx = 0;

    /// <summary>VFIO_PCI_MSI_IRQ_INDEX.</summary>
    public const int IrqMsi = 1;

    /// <summary>VFIO_PCI_MSIX_IRQ_INDEX.</summary>
    public const int IrqMsix = 2;

    /// <summary>VFIO_PCI_ERR_IRQ_INDEX.</summary>
    public const int IrqErr = 3;

    /// <summary>VFIO_PCI_REQ_IRQ_INDEX.</summary>
    public const int IrqReq = 4;

    /// <summary>VFIO_PCI_NUM_IRQS.</summary>
    public const int NumIrqs = 5;

    /// <summary>VFIO_PCI_OFFSET_SHIFT: a region's file offset is its index shifted by 40.</summary>
    public const int OffsetShift = 40;

    /// <summary>VFIO_PCI_INDEX_TO_OFFSET().</summary>
    public static long IndexToOffset(int index) => (long)index << OffsetShift;

    /// <summary>VFIO_PCI_OFFSET_TO_INDEX().</summary>
    public static int OffsetToIndex(long offset) => (int)((ulong)offset >> OffsetShift);

    /// <summary>VFIO_PCI_OFFSET_MASK.</summary>
    public const long OffsetMask = (1L << OffsetShift) - 1;
}

/// <summary>struct vfio_device_feature flags and feature ids.</summary>
public static class VfioFeature
{
    /// <summary>VFIO_DEVICE_FEATURE_MASK: the feature id.</summary>
    public const uint Mask = 0xffff;

    /// <summary>VFIO_DEVICE_FEATURE_GET.</summary>
    public const uint Get = 1 << 16;

    /// <summary>VFIO_DEVICE_FEATURE_SET.</summary>
    public const uint Set = 1 << 17;

    /// <summary>VFIO_DEVICE_FEATURE_PROBE.</summary>
    public const uint Probe = 1 << 18;

    /// <summary>VFIO_DEVICE_FEATURE_PCI_VF_TOKEN.</summary>
    public const uint PciVfToken = 0;

    /// <summary>VFIO_DEVICE_FEATURE_MIGRATION.</summary>
    public const uint Migration = 1;

    /// <summary>VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE.</summary>
    public const uint MigDeviceState = 2;

    /// <summary>VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY.</summary>
    public const uint LowPowerEntry = 3;

    /// <summary>VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP.</summary>
    public const uint LowPowerEntryWithWakeup = 4;

    /// <summary>VFIO_DEVICE_FEATURE_LOW_POWER_EXIT.</summary>
    public const uint LowPowerExit = 5;

    /// <summary>VFIO_DEVICE_FEATURE_DMA_LOGGING_START.</summary>
    public const uint DmaLoggingStart = 6;

    /// <summary>VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP.</summary>
    public const uint DmaLoggingStop = 7;

    /// <summary>VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT.</summary>
    public const uint DmaLoggingReport = 8;

    /// <summary>VFIO_DEVICE_FEATURE_MIG_DATA_SIZE.</summary>
    public const uint MigDataSize = 9;

    /// <summary>VFIO_DEVICE_FEATURE_BUS_MASTER.</summary>
    public const uint BusMaster = 10;

    /// <summary>VFIO_DEVICE_FEATURE_DMA_BUF (newer than the v6.12 baseline).</summary>
    public const uint DmaBuf = 11;

    /// <summary>VFIO_MIGRATION_STOP_COPY (struct vfio_device_feature_migration flags).</summary>
    public const ulong MigrationStopCopy = 1 << 0;

    /// <summary>VFIO_MIGRATION_P2P.</summary>
    public const ulong MigrationP2p = 1 << 1;

    /// <summary>VFIO_MIGRATION_PRE_COPY.</summary>
    public const ulong MigrationPreCopy = 1 << 2;

    /// <summary>VFIO_DEVICE_FEATURE_CLEAR_MASTER (struct vfio_device_feature_bus_master op).</summary>
    public const uint ClearMaster = 0;

    /// <summary>VFIO_DEVICE_FEATURE_SET_MASTER.</summary>
    public const uint SetMaster = 1;

    /// <summary>VFIO_DEVICE_BIND_FLAG_TOKEN (struct vfio_device_bind_iommufd flags).</summary>
    public const uint BindFlagToken = 1 << 0;

    /// <summary>VFIO_DEVICE_ATTACH_PASID (struct vfio_device_attach_iommufd_pt flags).</summary>
    public const uint AttachPasid = 1 << 0;

    /// <summary>VFIO_DEVICE_DETACH_PASID (struct vfio_device_detach_iommufd_pt flags).</summary>
    public const uint DetachPasid = 1 << 0;
}

/// <summary>enum vfio_device_mig_state: the migration state machine.</summary>
public enum VfioDeviceMigState : uint
{
    /// <summary>VFIO_DEVICE_STATE_ERROR.</summary>
    Error = 0,

    /// <summary>VFIO_DEVICE_STATE_STOP.</summary>
    Stop = 1,

    /// <summary>VFIO_DEVICE_STATE_RUNNING.</summary>
    Running = 2,

    /// <summary>VFIO_DEVICE_STATE_STOP_COPY.</summary>
    StopCopy = 3,

    /// <summary>VFIO_DEVICE_STATE_RESUMING.</summary>
    Resuming = 4,

    /// <summary>VFIO_DEVICE_STATE_RUNNING_P2P.</summary>
    RunningP2p = 5,

    /// <summary>VFIO_DEVICE_STATE_PRE_COPY.</summary>
    PreCopy = 6,

    /// <summary>VFIO_DEVICE_STATE_PRE_COPY_P2P.</summary>
    PreCopyP2p = 7,

    /// <summary>VFIO_DEVICE_STATE_NR: the number of states.</summary>
    Nr = 8,
}

/// <summary>Region types and subtypes of the VFIO_REGION_INFO_CAP_TYPE capability, and the EDID link states.</summary>
public static class VfioRegionType
{
    /// <summary>VFIO_REGION_TYPE_PCI_VENDOR_TYPE: the type carries a PCI vendor id in its low 16 bits.</summary>
    public const uint PciVendorType = 1u << 31;

    /// <summary>VFIO_REGION_TYPE_PCI_VENDOR_MASK.</summary>
    public const uint PciVendorMask = 0xffff;

    /// <summary>VFIO_REGION_TYPE_GFX.</summary>
    public const uint Gfx = 1;

    /// <summary>VFIO_REGION_TYPE_CCW.</summary>
    public const uint Ccw = 2;

    /// <summary>VFIO_REGION_TYPE_MIGRATION_DEPRECATED.</summary>
    public const uint MigrationDeprecated = 3;

    /// <summary>VFIO_REGION_SUBTYPE_INTEL_IGD_OPREGION.</summary>
    public const uint SubtypeIntelIgdOpregion = 1;

    /// <summary>VFIO_REGION_SUBTYPE_INTEL_IGD_HOST_CFG.</summary>
    public const uint SubtypeIntelIgdHostCfg = 2;

    /// <summary>VFIO_REGION_SUBTYPE_INTEL_IGD_LPC_CFG.</summary>
    public const uint SubtypeIntelIgdLpcCfg = 3;

    /// <summary>VFIO_REGION_SUBTYPE_NVIDIA_NVLINK2_RAM (deprecated).</summary>
    public const uint SubtypeNvidiaNvlink2Ram = 1;

    /// <summary>VFIO_REGION_SUBTYPE_IBM_NVLINK2_ATSD (deprecated).</summary>
    public const uint SubtypeIbmNvlink2Atsd = 1;

    /// <summary>VFIO_REGION_SUBTYPE_GFX_EDID.</summary>
    public const uint SubtypeGfxEdid = 1;

    /// <summary>VFIO_REGION_SUBTYPE_CCW_ASYNC_CMD.</summary>
    public const uint SubtypeCcwAsyncCmd = 1;

    /// <summary>VFIO_REGION_SUBTYPE_CCW_SCHIB.</summary>
    public const uint SubtypeCcwSchib = 2;

    /// <summary>VFIO_REGION_SUBTYPE_CCW_CRW.</summary>
    public const uint SubtypeCcwCrw = 3;

    /// <summary>VFIO_REGION_SUBTYPE_MIGRATION_DEPRECATED.</summary>
    public const uint SubtypeMigrationDeprecated = 1;

    /// <summary>VFIO_DEVICE_GFX_LINK_STATE_UP (struct vfio_region_gfx_edid link_state).</summary>
    public const uint GfxLinkStateUp = 1;

    /// <summary>VFIO_DEVICE_GFX_LINK_STATE_DOWN.</summary>
    public const uint GfxLinkStateDown = 2;
}

/// <summary>struct vfio_device_gfx_plane_info flags.</summary>
[Flags]
public enum VfioGfxPlaneFlags : uint
{
    None = 0,

    /// <summary>VFIO_GFX_PLANE_TYPE_PROBE.</summary>
    Probe = 1 << 0,

    /// <summary>VFIO_GFX_PLANE_TYPE_DMABUF.</summary>
    Dmabuf = 1 << 1,

    /// <summary>VFIO_GFX_PLANE_TYPE_REGION.</summary>
    Region = 1 << 2,
}

/// <summary>Type1 flags: GET_INFO, MAP_DMA, UNMAP_DMA and DIRTY_PAGES.</summary>
public static class VfioType1Flags
{
    /// <summary>VFIO_IOMMU_INFO_PGSIZES.</summary>
    public const uint InfoPgsizes = 1 << 0;

    /// <summary>VFIO_IOMMU_INFO_CAPS.</summary>
    public const uint InfoCaps = 1 << 1;

    /// <summary>VFIO_DMA_MAP_FLAG_READ.</summary>
    public const uint MapRead = 1 << 0;

    /// <summary>VFIO_DMA_MAP_FLAG_WRITE.</summary>
    public const uint MapWrite = 1 << 1;

    /// <summary>VFIO_DMA_MAP_FLAG_VADDR.</summary>
    public const uint MapVaddr = 1 << 2;

    /// <summary>VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP.</summary>
    public const uint UnmapGetDirtyBitmap = 1 << 0;

    /// <summary>VFIO_DMA_UNMAP_FLAG_ALL.</summary>
    public const uint UnmapAll = 1 << 1;

    /// <summary>VFIO_DMA_UNMAP_FLAG_VADDR.</summary>
    public const uint UnmapVaddr = 1 << 2;

    /// <summary>VFIO_IOMMU_DIRTY_PAGES_FLAG_START.</summary>
    public const uint DirtyStart = 1 << 0;

    /// <summary>VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP.</summary>
    public const uint DirtyStop = 1 << 1;

    /// <summary>VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP.</summary>
    public const uint DirtyGetBitmap = 1 << 2;
}

/// <summary>vfio-pci hot-reset flags and other small PCI constants.</summary>
public static class VfioPciFlags
{
    /// <summary>VFIO_PCI_HOT_RESET_FLAG_DEV_ID.</summary>
    public const uint HotResetDevId = 1 << 0;

    /// <summary>VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED.</summary>
    public const uint HotResetDevIdOwned = 1 << 1;

    /// <summary>VFIO_DEVICE_IOEVENTFD_8 .. _64 and VFIO_DEVICE_IOEVENTFD_SIZE_MASK.</summary>
    public const uint Ioeventfd8 = 1, Ioeventfd16 = 2, Ioeventfd32 = 4, Ioeventfd64 = 8, IoeventfdSizeMask = 0xf;

    /// <summary>VFIO_PCI_DEVID_OWNED (struct vfio_pci_dependent_device devid).</summary>
    public const uint DevidOwned = 0;

    /// <summary>VFIO_PCI_DEVID_NOT_OWNED (-1 as a u32).</summary>
    public const uint DevidNotOwned = uint.MaxValue;

    /// <summary>VFIO_PCI_ATOMIC_COMP32 (struct vfio_device_info_cap_pci_atomic_comp flags).</summary>
    public const uint AtomicComp32 = 1 << 0;

    /// <summary>VFIO_PCI_ATOMIC_COMP64.</summary>
    public const uint AtomicComp64 = 1 << 1;

    /// <summary>VFIO_PCI_ATOMIC_COMP128.</summary>
    public const uint AtomicComp128 = 1 << 2;

    /// <summary>VFIO_DEVICE_API_PCI_STRING.</summary>
    public const string DeviceApiPciString = "vfio-pci";

    /// <summary>VFIO_DEVICE_API_PLATFORM_STRING.</summary>
    public const string DeviceApiPlatformString = "vfio-platform";

    /// <summary>VFIO_DEVICE_API_AMBA_STRING.</summary>
    public const string DeviceApiAmbaString = "vfio-amba";

    /// <summary>VFIO_DEVICE_API_CCW_STRING.</summary>
    public const string DeviceApiCcwString = "vfio-ccw";

    /// <summary>VFIO_DEVICE_API_AP_STRING.</summary>
    public const string DeviceApiApString = "vfio-ap";
}
