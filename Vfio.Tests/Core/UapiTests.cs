// Pins Vfio.Core/Uapi (VfioUapi.cs, VfioStructs.cs) to include/uapi/linux/vfio.h: every
// ioctl number, flag, id and index, and every struct's size and field offsets (x86-64).

using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using NUnit.Framework;
using Vfio.Core.Uapi;

namespace Vfio.Tests.Core;

public sealed class UapiTests
{
    [Test]
    public void CG_23_IoctlNumbers_MatchTheHeader()
    {
        Assert.Multiple(() =>
        {
            Assert.That(VfioIoctl.GetApiVersion, Is.EqualTo(15204));
            Assert.That(VfioIoctl.CheckExtension, Is.EqualTo(15205));
            Assert.That(VfioIoctl.SetIommu, Is.EqualTo(15206));
            Assert.That(VfioIoctl.GroupGetStatus, Is.EqualTo(15207));
            Assert.That(VfioIoctl.GroupSetContainer, Is.EqualTo(15208));
            Assert.That(VfioIoctl.GroupUnsetContainer, Is.EqualTo(15209));
            Assert.That(VfioIoctl.GroupGetDeviceFd, Is.EqualTo(15210));
            Assert.That(VfioIoctl.DeviceGetInfo, Is.EqualTo(15211));
            Assert.That(VfioIoctl.DeviceGetRegionInfo, Is.EqualTo(15212));
            Assert.That(VfioIoctl.DeviceGetIrqInfo, Is.EqualTo(15213));
            Assert.That(VfioIoctl.DeviceSetIrqs, Is.EqualTo(15214));
            Assert.That(VfioIoctl.DeviceReset, Is.EqualTo(15215));
            Assert.That(VfioIoctl.DeviceIoeventfd, Is.EqualTo(15220));
            Assert.That(VfioIoctl.IommuDisable, Is.EqualTo(15220), "DEVICE_IOEVENTFD and IOMMU_DISABLE share a number");
            Assert.That(VfioIoctl.DeviceBindIommufd, Is.EqualTo(15222));
            Assert.That(VfioIoctl.DeviceAttachIommufdPt, Is.EqualTo(15223));
            Assert.That(VfioIoctl.DeviceDetachIommufdPt, Is.EqualTo(15224));
            Assert.That(VfioIoctl.DeviceGetPciHotResetInfo, Is.EqualTo(VfioIoctl.IommuGetInfo), "told apart by the fd type");
        });
    }

    [Test]
    public void EveryIoctlNumber_IsIoOfTypeSemicolonAndBase100PlusN()
    {
        // _IO(';', 100 + n) = (0x3B << 8) | (100 + n): no direction or size bits.
        (uint Cmd, int N)[] all =
        [
            (VfioIoctl.GetApiVersion, 0), (VfioIoctl.CheckExtension, 1), (VfioIoctl.SetIommu, 2),
            (VfioIoctl.GroupGetStatus, 3), (VfioIoctl.GroupSetContainer, 4), (VfioIoctl.GroupUnsetContainer, 5),
            (VfioIoctl.GroupGetDeviceFd, 6), (VfioIoctl.DeviceGetInfo, 7), (VfioIoctl.DeviceGetRegionInfo, 8),
            (VfioIoctl.DeviceGetIrqInfo, 9), (VfioIoctl.DeviceSetIrqs, 10), (VfioIoctl.DeviceReset, 11),
            (VfioIoctl.DeviceGetPciHotResetInfo, 12), (VfioIoctl.DevicePciHotReset, 13), (VfioIoctl.DeviceQueryGfxPlane, 14),
            (VfioIoctl.DeviceGetGfxDmabuf, 15), (VfioIoctl.DeviceIoeventfd, 16), (VfioIoctl.DeviceFeature, 17),
            (VfioIoctl.DeviceBindIommufd, 18), (VfioIoctl.DeviceAttachIommufdPt, 19), (VfioIoctl.DeviceDetachIommufdPt, 20),
            (VfioIoctl.MigGetPrecopyInfo, 21),
            (VfioIoctl.IommuGetInfo, 12), (VfioIoctl.IommuMapDma, 13), (VfioIoctl.IommuUnmapDma, 14),
            (VfioIoctl.IommuEnable, 15), (VfioIoctl.IommuDisable, 16), (VfioIoctl.IommuDirtyPages, 17),
        ];

        Assert.Multiple(() =>
        {
            Assert.That(VfioIoctl.Type, Is.EqualTo(0x3B));
            Assert.That(VfioIoctl.Base, Is.EqualTo(100));
            foreach ((uint cmd, int n) in all)
            {
                Assert.That(cmd, Is.EqualTo(0x3B00u + 100u + (uint)n), $"nr {n}");
                Assert.That(VfioIoctl.Io((uint)n), Is.EqualTo(cmd), $"Io({n})");
            }

            Assert.That(VfioIoctl.MigGetPrecopyInfo, Is.EqualTo(0x3B79));
            Assert.That(VfioIoctl.IommuDirtyPages, Is.EqualTo(0x3B75));
        });
    }

    [Test]
    public void IoctlNames_DependOnTheFileKind_WhereNumbersOverlap()
    {
        Assert.Multiple(() =>
        {
            Assert.That(VfioIoctl.Name(VfioIoctl.IommuGetInfo, "container"), Is.EqualTo("VFIO_IOMMU_GET_INFO"));
            Assert.That(VfioIoctl.Name(VfioIoctl.IommuGetInfo, "device"), Is.EqualTo("VFIO_DEVICE_GET_PCI_HOT_RESET_INFO"));
            Assert.That(VfioIoctl.Name(VfioIoctl.IommuUnmapDma, "container"), Is.EqualTo("VFIO_IOMMU_UNMAP_DMA"));
            Assert.That(VfioIoctl.Name(VfioIoctl.GroupGetDeviceFd, "group"), Is.EqualTo("VFIO_GROUP_GET_DEVICE_FD"));
            Assert.That(VfioIoctl.Name(VfioIoctl.MigGetPrecopyInfo), Is.EqualTo("VFIO_MIG_GET_PRECOPY_INFO"));
            Assert.That(VfioIoctl.Name(0x5421), Is.EqualTo("ioctl 0x5421"));
            Assert.That(VfioIoctl.Name(VfioIoctl.Io(22)), Is.EqualTo("ioctl 0x3b7a"));
        });
    }

    [Test]
    public void ExtensionIds_AndTheApiVersion_MatchTheHeader()
    {
        Assert.Multiple(() =>
        {
            Assert.That(VfioExtension.ApiVersion, Is.EqualTo(0));
            Assert.That(VfioExtension.Type1, Is.EqualTo(1));
            Assert.That(VfioExtension.SpaprTce, Is.EqualTo(2));
            Assert.That(VfioExtension.Type1v2, Is.EqualTo(3));
            Assert.That(VfioExtension.DmaCcIommu, Is.EqualTo(4));
            Assert.That(VfioExtension.Eeh, Is.EqualTo(5));
            Assert.That(VfioExtension.Type1Nesting, Is.EqualTo(6));
            Assert.That(VfioExtension.SpaprTceV2, Is.EqualTo(7));
            Assert.That(VfioExtension.NoIommu, Is.EqualTo(8));
            Assert.That(VfioExtension.UnmapAll, Is.EqualTo(9));
            Assert.That(VfioExtension.UpdateVaddr, Is.EqualTo(10));
        });
    }

    [Test]
    public void GroupDeviceRegionAndIrqFlags_MatchTheHeader()
    {
        Assert.Multiple(() =>
        {
            Assert.That((uint)VfioGroupFlags.Viable, Is.EqualTo(1));
            Assert.That((uint)VfioGroupFlags.ContainerSet, Is.EqualTo(2));

            Assert.That((uint)VfioDeviceFlags.Reset, Is.EqualTo(0x1));
            Assert.That((uint)VfioDeviceFlags.Pci, Is.EqualTo(0x2));
            Assert.That((uint)VfioDeviceFlags.Platform, Is.EqualTo(0x4));
            Assert.That((uint)VfioDeviceFlags.Amba, Is.EqualTo(0x8));
            Assert.That((uint)VfioDeviceFlags.Ccw, Is.EqualTo(0x10));
            Assert.That((uint)VfioDeviceFlags.Ap, Is.EqualTo(0x20));
            Assert.That((uint)VfioDeviceFlags.FslMc, Is.EqualTo(0x40));
            Assert.That((uint)VfioDeviceFlags.Caps, Is.EqualTo(0x80));
            Assert.That((uint)VfioDeviceFlags.Cdx, Is.EqualTo(0x100));

            Assert.That((uint)VfioRegionFlags.Read, Is.EqualTo(1));
            Assert.That((uint)VfioRegionFlags.Write, Is.EqualTo(2));
            Assert.That((uint)VfioRegionFlags.Mmap, Is.EqualTo(4));
            Assert.That((uint)VfioRegionFlags.Caps, Is.EqualTo(8));

            Assert.That((uint)VfioIrqInfoFlags.Eventfd, Is.EqualTo(1));
            Assert.That((uint)VfioIrqInfoFlags.Maskable, Is.EqualTo(2));
            Assert.That((uint)VfioIrqInfoFlags.Automasked, Is.EqualTo(4));
            Assert.That((uint)VfioIrqInfoFlags.NoResize, Is.EqualTo(8));

            Assert.That((uint)VfioIrqSetFlags.DataNone, Is.EqualTo(0x1));
            Assert.That((uint)VfioIrqSetFlags.DataBool, Is.EqualTo(0x2));
            Assert.That((uint)VfioIrqSetFlags.DataEventfd, Is.EqualTo(0x4));
            Assert.That((uint)VfioIrqSetFlags.ActionMask, Is.EqualTo(0x8));
            Assert.That((uint)VfioIrqSetFlags.ActionUnmask, Is.EqualTo(0x10));
            Assert.That((uint)VfioIrqSetFlags.ActionTrigger, Is.EqualTo(0x20));
            Assert.That((uint)VfioIrqSetFlags.DataTypeMask, Is.EqualTo(0x7));
            Assert.That((uint)VfioIrqSetFlags.ActionTypeMask, Is.EqualTo(0x38));

            Assert.That((uint)VfioGfxPlaneFlags.Probe, Is.EqualTo(1));
            Assert.That((uint)VfioGfxPlaneFlags.Dmabuf, Is.EqualTo(2));
            Assert.That((uint)VfioGfxPlaneFlags.Region, Is.EqualTo(4));
        });
    }

    [Test]
    public void CapabilityIds_MatchTheHeader()
    {
        Assert.Multiple(() =>
        {
            Assert.That(VfioCapId.RegionSparseMmap, Is.EqualTo(1));
            Assert.That(VfioCapId.RegionType, Is.EqualTo(2));
            Assert.That(VfioCapId.RegionMsixMappable, Is.EqualTo(3));
            Assert.That(VfioCapId.RegionNvlink2Ssatgt, Is.EqualTo(4));
            Assert.That(VfioCapId.RegionNvlink2Lnkspd, Is.EqualTo(5));
            Assert.That(VfioCapId.DeviceZpciBase, Is.EqualTo(1));
            Assert.That(VfioCapId.DeviceZpciGroup, Is.EqualTo(2));
            Assert.That(VfioCapId.DeviceZpciUtil, Is.EqualTo(3));
            Assert.That(VfioCapId.DeviceZpciPfip, Is.EqualTo(4));
            Assert.That(VfioCapId.DevicePciAtomicComp, Is.EqualTo(5));
            Assert.That(VfioCapId.Type1IovaRange, Is.EqualTo(1));
            Assert.That(VfioCapId.Type1Migration, Is.EqualTo(2));
            Assert.That(VfioCapId.Type1DmaAvail, Is.EqualTo(3));
        });
    }

    [Test]
    public void RegionTypesAndSubtypes_MatchTheHeader()
    {
        Assert.Multiple(() =>
        {
            Assert.That(VfioRegionType.PciVendorType, Is.EqualTo(0x8000_0000u));
            Assert.That(VfioRegionType.PciVendorMask, Is.EqualTo(0xffffu));
            Assert.That(VfioRegionType.Gfx, Is.EqualTo(1));
            Assert.That(VfioRegionType.Ccw, Is.EqualTo(2));
            Assert.That(VfioRegionType.MigrationDeprecated, Is.EqualTo(3));
            Assert.That(VfioRegionType.SubtypeIntelIgdOpregion, Is.EqualTo(1));
            Assert.That(VfioRegionType.SubtypeIntelIgdHostCfg, Is.EqualTo(2));
            Assert.That(VfioRegionType.SubtypeIntelIgdLpcCfg, Is.EqualTo(3));
            Assert.That(VfioRegionType.SubtypeNvidiaNvlink2Ram, Is.EqualTo(1));
            Assert.That(VfioRegionType.SubtypeIbmNvlink2Atsd, Is.EqualTo(1));
            Assert.That(VfioRegionType.SubtypeGfxEdid, Is.EqualTo(1));
            Assert.That(VfioRegionType.SubtypeCcwAsyncCmd, Is.EqualTo(1));
            Assert.That(VfioRegionType.SubtypeCcwSchib, Is.EqualTo(2));
            Assert.That(VfioRegionType.SubtypeCcwCrw, Is.EqualTo(3));
            Assert.That(VfioRegionType.SubtypeMigrationDeprecated, Is.EqualTo(1));
            Assert.That(VfioRegionType.GfxLinkStateUp, Is.EqualTo(1));
            Assert.That(VfioRegionType.GfxLinkStateDown, Is.EqualTo(2));
        });
    }

    [Test]
    public void PciRegionAndIrqIndexes_AndTheOffsetEncoding_MatchTheHeader()
    {
        Assert.Multiple(() =>
        {
            int[] bars = [VfioPciIndex.Bar0, VfioPciIndex.Bar1, VfioPciIndex.Bar2, VfioPciIndex.Bar3, VfioPciIndex.Bar4, VfioPciIndex.Bar5];
            Assert.That(bars, Is.EqualTo(new[] { 0, 1, 2, 3, 4, 5 }));
            Assert.That(VfioPciIndex.Rom, Is.EqualTo(6));
            Assert.That(VfioPciIndex.Config, Is.EqualTo(7));
            Assert.That(VfioPciIndex.Vga, Is.EqualTo(8));
            Assert.That(VfioPciIndex.NumRegions, Is.EqualTo(9));
            Assert.That(VfioPciIndex.IrqIntx, Is.EqualTo(0));
            Assert.That(VfioPciIndex.IrqMsi, Is.EqualTo(1));
            Assert.That(VfioPciIndex.IrqMsix, Is.EqualTo(2));
            Assert.That(VfioPciIndex.IrqErr, Is.EqualTo(3));
            Assert.That(VfioPciIndex.IrqReq, Is.EqualTo(4));
            Assert.That(VfioPciIndex.NumIrqs, Is.EqualTo(5));
            Assert.That(VfioPciIndex.OffsetShift, Is.EqualTo(40));
            Assert.That(VfioPciIndex.OffsetMask, Is.EqualTo(0xFF_FFFF_FFFFL));
            Assert.That(VfioPciIndex.IndexToOffset(VfioPciIndex.Config), Is.EqualTo(0x700_0000_0000L));
            Assert.That(VfioPciIndex.OffsetToIndex(0x700_0000_0040L), Is.EqualTo(7));
        });
    }

    [Test]
    public void FeatureIdsAndFlags_MatchTheHeader()
    {
        Assert.Multiple(() =>
        {
            Assert.That(VfioFeature.Mask, Is.EqualTo(0xffff));
            Assert.That(VfioFeature.Get, Is.EqualTo(0x1_0000));
            Assert.That(VfioFeature.Set, Is.EqualTo(0x2_0000));
            Assert.That(VfioFeature.Probe, Is.EqualTo(0x4_0000));
            uint[] ids =
            [
                VfioFeature.PciVfToken, VfioFeature.Migration, VfioFeature.MigDeviceState, VfioFeature.LowPowerEntry,
                VfioFeature.LowPowerEntryWithWakeup, VfioFeature.LowPowerExit, VfioFeature.DmaLoggingStart,
                VfioFeature.DmaLoggingStop, VfioFeature.DmaLoggingReport, VfioFeature.MigDataSize, VfioFeature.BusMaster,
                VfioFeature.DmaBuf,
            ];
            Assert.That(ids, Is.EqualTo(new uint[] { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 }));
            Assert.That(VfioFeature.MigrationStopCopy, Is.EqualTo(1));
            Assert.That(VfioFeature.MigrationP2p, Is.EqualTo(2));
            Assert.That(VfioFeature.MigrationPreCopy, Is.EqualTo(4));
            Assert.That(VfioFeature.ClearMaster, Is.EqualTo(0));
            Assert.That(VfioFeature.SetMaster, Is.EqualTo(1));
            Assert.That(VfioFeature.BindFlagToken, Is.EqualTo(1));
            Assert.That(VfioFeature.AttachPasid, Is.EqualTo(1));
            Assert.That(VfioFeature.DetachPasid, Is.EqualTo(1));

            Assert.That((uint)VfioDeviceMigState.Error, Is.EqualTo(0));
            Assert.That((uint)VfioDeviceMigState.Stop, Is.EqualTo(1));
            Assert.That((uint)VfioDeviceMigState.Running, Is.EqualTo(2));
            Assert.That((uint)VfioDeviceMigState.StopCopy, Is.EqualTo(3));
            Assert.That((uint)VfioDeviceMigState.Resuming, Is.EqualTo(4));
            Assert.That((uint)VfioDeviceMigState.RunningP2p, Is.EqualTo(5));
            Assert.That((uint)VfioDeviceMigState.PreCopy, Is.EqualTo(6));
            Assert.That((uint)VfioDeviceMigState.PreCopyP2p, Is.EqualTo(7));
            Assert.That((uint)VfioDeviceMigState.Nr, Is.EqualTo(8));
        });
    }

    [Test]
    public void Type1AndPciFlags_MatchTheHeader()
    {
        Assert.Multiple(() =>
        {
            Assert.That(VfioType1Flags.InfoPgsizes, Is.EqualTo(1));
            Assert.That(VfioType1Flags.InfoCaps, Is.EqualTo(2));
            Assert.That(VfioType1Flags.MapRead, Is.EqualTo(1));
            Assert.That(VfioType1Flags.MapWrite, Is.EqualTo(2));
            Assert.That(VfioType1Flags.MapVaddr, Is.EqualTo(4));
            Assert.That(VfioType1Flags.UnmapGetDirtyBitmap, Is.EqualTo(1));
            Assert.That(VfioType1Flags.UnmapAll, Is.EqualTo(2));
            Assert.That(VfioType1Flags.UnmapVaddr, Is.EqualTo(4));
            Assert.That(VfioType1Flags.DirtyStart, Is.EqualTo(1));
            Assert.That(VfioType1Flags.DirtyStop, Is.EqualTo(2));
            Assert.That(VfioType1Flags.DirtyGetBitmap, Is.EqualTo(4));

            Assert.That(VfioPciFlags.HotResetDevId, Is.EqualTo(1));
            Assert.That(VfioPciFlags.HotResetDevIdOwned, Is.EqualTo(2));
            Assert.That(VfioPciFlags.DevidOwned, Is.EqualTo(0));
            Assert.That(VfioPciFlags.DevidNotOwned, Is.EqualTo(0xFFFF_FFFFu), "-1 in a __u32");
            Assert.That(VfioPciFlags.Ioeventfd8, Is.EqualTo(1));
            Assert.That(VfioPciFlags.Ioeventfd16, Is.EqualTo(2));
            Assert.That(VfioPciFlags.Ioeventfd32, Is.EqualTo(4));
            Assert.That(VfioPciFlags.Ioeventfd64, Is.EqualTo(8));
            Assert.That(VfioPciFlags.IoeventfdSizeMask, Is.EqualTo(0xf));
            Assert.That(VfioPciFlags.AtomicComp32, Is.EqualTo(1));
            Assert.That(VfioPciFlags.AtomicComp64, Is.EqualTo(2));
            Assert.That(VfioPciFlags.AtomicComp128, Is.EqualTo(4));
            Assert.That(VfioPciFlags.DeviceApiPciString, Is.EqualTo("vfio-pci"));
            Assert.That(VfioPciFlags.DeviceApiPlatformString, Is.EqualTo("vfio-platform"));
            Assert.That(VfioPciFlags.DeviceApiAmbaString, Is.EqualTo("vfio-amba"));
            Assert.That(VfioPciFlags.DeviceApiCcwString, Is.EqualTo("vfio-ccw"));
            Assert.That(VfioPciFlags.DeviceApiApString, Is.EqualTo("vfio-ap"));
        });
    }

    // ---- Struct layouts: size, then every field's offset in declaration order. A field
    // added to a struct without being pinned here fails the field-list check.

    [Test]
    public void CoreStructs_HaveTheHeadersLayout()
    {
        Assert.Multiple(() =>
        {
            Layout<VfioInfoCapHeader>(8, ("Id", 0), ("Version", 2), ("Next", 4));
            Layout<VfioGroupStatus>(8, ("Argsz", 0), ("Flags", 4));
            Layout<VfioDeviceInfo>(24, ("Argsz", 0), ("Flags", 4), ("NumRegions", 8), ("NumIrqs", 12), ("CapOffset", 16), ("Pad", 20));
            Layout<VfioRegionInfo>(32, ("Argsz", 0), ("Flags", 4), ("Index", 8), ("CapOffset", 12), ("Size", 16), ("Offset", 24));
            Layout<VfioRegionSparseMmapArea>(16, ("Offset", 0), ("Size", 8));
            Layout<VfioRegionInfoCapSparseMmap>(16, ("Header", 0), ("NrAreas", 8), ("Reserved", 12));
            Layout<VfioRegionInfoCapType>(16, ("Header", 0), ("Type", 8), ("Subtype", 12));
            Layout<VfioIrqInfo>(16, ("Argsz", 0), ("Flags", 4), ("Index", 8), ("Count", 12));
            Layout<VfioIrqSet>(20, ("Argsz", 0), ("Flags", 4), ("Index", 8), ("Start", 12), ("Count", 16));
            Layout<VfioDeviceFeature>(8, ("Argsz", 0), ("Flags", 4));
            Layout<VfioDeviceBindIommufd>(24, ("Argsz", 0), ("Flags", 4), ("Iommufd", 8), ("OutDevid", 12), ("TokenUuidPtr", 16));
            Layout<VfioDeviceAttachIommufdPt>(16, ("Argsz", 0), ("Flags", 4), ("PtId", 8), ("Pasid", 12));
            Layout<VfioDeviceDetachIommufdPt>(12, ("Argsz", 0), ("Flags", 4), ("Pasid", 8));
            Layout<VfioDeviceInfoCapPciAtomicComp>(16, ("Header", 0), ("Flags", 8), ("Reserved", 12));
        });
    }

    [Test]
    public void PciAndGfxStructs_HaveTheHeadersLayout()
    {
        Assert.Multiple(() =>
        {
            Layout<VfioPciDependentDevice>(8, ("GroupIdOrDevid", 0), ("Segment", 4), ("Bus", 6), ("Devfn", 7));
            Layout<VfioPciHotResetInfo>(12, ("Argsz", 0), ("Flags", 4), ("Count", 8));
            Layout<VfioPciHotReset>(12, ("Argsz", 0), ("Flags", 4), ("Count", 8));
            Layout<VfioDeviceIoeventfd>(32, ("Argsz", 0), ("Flags", 4), ("Offset", 8), ("Data", 16), ("Fd", 24), ("Reserved", 28));
            Layout<VfioRegionGfxEdid>(24, ("EdidOffset", 0), ("EdidMaxSize", 4), ("EdidSize", 8), ("MaxXres", 12), ("MaxYres", 16), ("LinkState", 20));
            Layout<VfioDeviceGfxPlaneInfo>(
                64,
                ("Argsz", 0), ("Flags", 4), ("DrmPlaneType", 8), ("DrmFormat", 12), ("DrmFormatMod", 16), ("Width", 24),
                ("Height", 28), ("Stride", 32), ("Size", 36), ("XPos", 40), ("YPos", 44), ("XHot", 48), ("YHot", 52),
                ("RegionIndexOrDmabufId", 56), ("Reserved", 60));
        });
    }

    [Test]
    public void FeaturePayloads_HaveTheHeadersLayout()
    {
        Assert.Multiple(() =>
        {
            Layout<VfioDeviceFeatureMigration>(8, ("Flags", 0));
            Layout<VfioDeviceFeatureMigState>(8, ("DeviceState", 0), ("DataFd", 4));
            Layout<VfioPrecopyInfo>(24, ("Argsz", 0), ("Flags", 4), ("InitialBytes", 8), ("DirtyBytes", 16));
            Layout<VfioDeviceLowPowerEntryWithWakeup>(8, ("WakeupEventfd", 0), ("Reserved", 4));
            Layout<VfioDeviceFeatureDmaLoggingControl>(24, ("PageSize", 0), ("NumRanges", 8), ("Reserved", 12), ("Ranges", 16));
            Layout<VfioDeviceFeatureDmaLoggingRange>(16, ("Iova", 0), ("Length", 8));
            Layout<VfioDeviceFeatureDmaLoggingReport>(32, ("Iova", 0), ("Length", 8), ("PageSize", 16), ("Bitmap", 24));
            Layout<VfioDeviceFeatureMigDataSize>(8, ("StopCopyLength", 0));
            Layout<VfioDeviceFeatureBusMaster>(4, ("Op", 0));
            Layout<VfioRegionDmaRange>(16, ("Offset", 0), ("Length", 8));
            Layout<VfioDeviceFeatureDmaBuf>(16, ("RegionIndex", 0), ("OpenFlags", 4), ("Flags", 8), ("NrRanges", 12));
        });
    }

    [Test]
    public void Type1Structs_HaveTheHeadersLayout()
    {
        Assert.Multiple(() =>
        {
            Layout<VfioIommuType1Info>(24, ("Argsz", 0), ("Flags", 4), ("IovaPgsizes", 8), ("CapOffset", 16), ("Pad", 20));
            Layout<VfioIovaRange>(16, ("Start", 0), ("End", 8));
            Layout<VfioIommuType1InfoCapIovaRange>(16, ("Header", 0), ("NrIovas", 8), ("Reserved", 12));
            Layout<VfioIommuType1InfoCapMigration>(32, ("Header", 0), ("Flags", 8), ("PgsizeBitmap", 16), ("MaxDirtyBitmapSize", 24));
            Layout<VfioIommuType1InfoDmaAvail>(12, ("Header", 0), ("Avail", 8));
            Layout<VfioIommuType1DmaMap>(32, ("Argsz", 0), ("Flags", 4), ("Vaddr", 8), ("Iova", 16), ("Size", 24));
            Layout<VfioBitmap>(24, ("Pgsize", 0), ("Size", 8), ("Data", 16));
            Layout<VfioIommuType1DmaUnmap>(24, ("Argsz", 0), ("Flags", 4), ("Iova", 8), ("Size", 16));
            Layout<VfioIommuType1DirtyBitmap>(8, ("Argsz", 0), ("Flags", 4));
            Layout<VfioIommuType1DirtyBitmapGet>(40, ("Iova", 0), ("Size", 8), ("Bitmap", 16));
        });
    }

    [Test]
    public void MinSz_IsOffsetOfEndOfTheLastMandatoryField()
    {
        Assert.Multiple(() =>
        {
            Assert.That(EndOf<VfioGroupStatus>("Flags"), Is.EqualTo(VfioGroupStatus.MinSz), "VfioGroupStatus");
            Assert.That(EndOf<VfioDeviceInfo>("NumIrqs"), Is.EqualTo(VfioDeviceInfo.MinSz), "VfioDeviceInfo");
            Assert.That(EndOf<VfioRegionInfo>("Offset"), Is.EqualTo(VfioRegionInfo.MinSz), "VfioRegionInfo");
            Assert.That(EndOf<VfioIrqInfo>("Count"), Is.EqualTo(VfioIrqInfo.MinSz), "VfioIrqInfo");
            Assert.That(EndOf<VfioIrqSet>("Count"), Is.EqualTo(VfioIrqSet.MinSz), "VfioIrqSet");
            Assert.That(EndOf<VfioPciHotResetInfo>("Count"), Is.EqualTo(VfioPciHotResetInfo.MinSz), "VfioPciHotResetInfo");
            Assert.That(EndOf<VfioPciHotReset>("Count"), Is.EqualTo(VfioPciHotReset.MinSz), "VfioPciHotReset");
            Assert.That(EndOf<VfioDeviceIoeventfd>("Fd"), Is.EqualTo(VfioDeviceIoeventfd.MinSz), "VfioDeviceIoeventfd");
            Assert.That(EndOf<VfioDeviceFeature>("Flags"), Is.EqualTo(VfioDeviceFeature.MinSz), "VfioDeviceFeature");
            Assert.That(EndOf<VfioDeviceBindIommufd>("OutDevid"), Is.EqualTo(VfioDeviceBindIommufd.MinSz), "VfioDeviceBindIommufd");
            Assert.That(EndOf<VfioDeviceAttachIommufdPt>("PtId"), Is.EqualTo(VfioDeviceAttachIommufdPt.MinSz), "VfioDeviceAttachIommufdPt");
            Assert.That(EndOf<VfioDeviceDetachIommufdPt>("Flags"), Is.EqualTo(VfioDeviceDetachIommufdPt.MinSz), "VfioDeviceDetachIommufdPt");
            Assert.That(EndOf<VfioDeviceGfxPlaneInfo>("RegionIndexOrDmabufId"), Is.EqualTo(VfioDeviceGfxPlaneInfo.MinSz), "VfioDeviceGfxPlaneInfo");
            Assert.That(EndOf<VfioPrecopyInfo>("DirtyBytes"), Is.EqualTo(VfioPrecopyInfo.MinSz), "VfioPrecopyInfo");
            Assert.That(EndOf<VfioIommuType1Info>("IovaPgsizes"), Is.EqualTo(VfioIommuType1Info.MinSz), "VfioIommuType1Info");
            Assert.That(EndOf<VfioIommuType1DmaMap>("Size"), Is.EqualTo(VfioIommuType1DmaMap.MinSz), "VfioIommuType1DmaMap");
            Assert.That(EndOf<VfioIommuType1DmaUnmap>("Size"), Is.EqualTo(VfioIommuType1DmaUnmap.MinSz), "VfioIommuType1DmaUnmap");
            Assert.That(EndOf<VfioIommuType1DirtyBitmap>("Flags"), Is.EqualTo(VfioIommuType1DirtyBitmap.MinSz), "VfioIommuType1DirtyBitmap");
        });
    }

    [Test]
    public void EveryUapiStruct_IsPinnedByALayoutTest()
    {
        // The layout tests above name these; a new struct in Vfio.Core.Uapi must join them.
        string[] pinned =
        [
            nameof(VfioInfoCapHeader), nameof(VfioGroupStatus), nameof(VfioDeviceInfo), nameof(VfioRegionInfo),
            nameof(VfioRegionSparseMmapArea), nameof(VfioRegionInfoCapSparseMmap), nameof(VfioRegionInfoCapType),
            nameof(VfioIrqInfo), nameof(VfioIrqSet), nameof(VfioDeviceFeature), nameof(VfioDeviceBindIommufd),
            nameof(VfioDeviceAttachIommufdPt), nameof(VfioDeviceDetachIommufdPt), nameof(VfioDeviceInfoCapPciAtomicComp),
            nameof(VfioPciDependentDevice), nameof(VfioPciHotResetInfo), nameof(VfioPciHotReset), nameof(VfioDeviceIoeventfd),
            nameof(VfioRegionGfxEdid), nameof(VfioDeviceGfxPlaneInfo), nameof(VfioDeviceFeatureMigration),
            nameof(VfioDeviceFeatureMigState), nameof(VfioPrecopyInfo), nameof(VfioDeviceLowPowerEntryWithWakeup),
            nameof(VfioDeviceFeatureDmaLoggingControl), nameof(VfioDeviceFeatureDmaLoggingRange),
            nameof(VfioDeviceFeatureDmaLoggingReport), nameof(VfioDeviceFeatureMigDataSize), nameof(VfioDeviceFeatureBusMaster),
            nameof(VfioRegionDmaRange), nameof(VfioDeviceFeatureDmaBuf), nameof(VfioIommuType1Info), nameof(VfioIovaRange),
            nameof(VfioIommuType1InfoCapIovaRange), nameof(VfioIommuType1InfoCapMigration), nameof(VfioIommuType1InfoDmaAvail),
            nameof(VfioIommuType1DmaMap), nameof(VfioBitmap), nameof(VfioIommuType1DmaUnmap), nameof(VfioIommuType1DirtyBitmap),
            nameof(VfioIommuType1DirtyBitmapGet),
        ];

        string[] declared = [.. typeof(VfioDeviceInfo).Assembly.GetTypes()
            .Where(t => t.Namespace == "Vfio.Core.Uapi" && t.IsPublic && t.IsValueType && !t.IsEnum && !t.IsByRefLike)
            .Select(t => t.Name)];

        Assert.That(declared, Is.EquivalentTo(pinned));
    }

    private static void Layout<T>(int size, params (string Field, int Offset)[] fields)
        where T : unmanaged
    {
        string name = typeof(T).Name;
        Assert.That(Marshal.SizeOf<T>(), Is.EqualTo(size), $"Marshal.SizeOf<{name}>");
        Assert.That(Unsafe.SizeOf<T>(), Is.EqualTo(size), $"sizeof({name}) as the span copies see it");
        string[] declared = [.. typeof(T).GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic).Select(f => f.Name)];
        Assert.That(declared, Is.EqualTo(fields.Select(f => f.Field).ToArray()), $"{name}'s fields, in order");
        foreach ((string field, int offset) in fields)
        {
            Assert.That((int)Marshal.OffsetOf<T>(field), Is.EqualTo(offset), $"offsetof({name}, {field})");
        }
    }

    private static int EndOf<T>(string field)
        where T : unmanaged
    {
        FieldInfo f = typeof(T).GetField(field) ?? throw new ArgumentException($"{typeof(T).Name} has no field {field}", nameof(field));
        Type t = f.FieldType.IsEnum ? Enum.GetUnderlyingType(f.FieldType) : f.FieldType;
        return (int)Marshal.OffsetOf<T>(field) + Marshal.SizeOf(t);
    }
}
