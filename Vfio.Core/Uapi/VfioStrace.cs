// Models an strace decoder for include/uapi/linux/vfio.h and the VFIO part of
// include/uapi/linux/kvm.h (v6.12), in strace's conventions (src/kvm.c, src/ioctl.c): the
// names of the VFIO and KVM ioctls per file type, registered with the machine's strace when
// vfio loads, and the decoders of their argument structs.
//
// A struct the kernel only reads prints once, at exit: {argsz=32, flags=…, iova=0, size=…}.
// A struct the kernel reads and writes back (_IOWR-like: the GET_*INFO calls, UNMAP_DMA's
// size, KVM_CREATE_DEVICE's fd) prints the fields passed in at entry and, when the call
// succeeded, the fields written back after " => ": {argsz=32, index=0} => {flags=…, size=…}.
// Memory that cannot be read prints as its address, as strace does.

using System.Globalization;
using System.Text;
using Vfio.Core.Kvm;
using Vfio.Platform.Proc;

namespace Vfio.Core.Uapi;

/// <summary>The VFIO and KVM ioctls as strace names and decodes them.</summary>
internal static class VfioStrace
{
    private static readonly (ulong, string)[] s_groupFlags =
    [
        ((ulong)VfioGroupFlags.Viable, "VFIO_GROUP_FLAGS_VIABLE"),
        ((ulong)VfioGroupFlags.ContainerSet, "VFIO_GROUP_FLAGS_CONTAINER_SET"),
    ];

    private static readonly (ulong, string)[] s_deviceFlags =
    [
        ((ulong)VfioDeviceFlags.Reset, "VFIO_DEVICE_FLAGS_RESET"),
        ((ulong)VfioDeviceFlags.Pci, "VFIO_DEVICE_FLAGS_PCI"),
        ((ulong)VfioDeviceFlags.Platform, "VFIO_DEVICE_FLAGS_PLATFORM"),
        ((ulong)VfioDeviceFlags.Amba, "VFIO_DEVICE_FLAGS_AMBA"),
        ((ulong)VfioDeviceFlags.Ccw, "VFIO_DEVICE_FLAGS_CCW"),
        ((ulong)VfioDeviceFlags.Ap, "VFIO_DEVICE_FLAGS_AP"),
        ((ulong)VfioDeviceFlags.FslMc, "VFIO_DEVICE_FLAGS_FSL_MC"),
        ((ulong)VfioDeviceFlags.Caps, "VFIO_DEVICE_FLAGS_CAPS"),
        ((ulong)VfioDeviceFlags.Cdx, "VFIO_DEVICE_FLAGS_CDX"),
    ];

    private static readonly (ulong, string)[] s_regionFlags =
    [
        ((ulong)VfioRegionFlags.Read, "VFIO_REGION_INFO_FLAG_READ"),
        ((ulong)VfioRegionFlags.Write, "VFIO_REGION_INFO_FLAG_WRITE"),
        ((ulong)VfioRegionFlags.Mmap, "VFIO_REGION_INFO_FLAG_MMAP"),
        ((ulong)VfioRegionFlags.Caps, "VFIO_REGION_INFO_FLAG_CAPS"),
    ];

    private static readonly (ulong, string)[] s_irqInfoFlags =
    [
        ((ulong)VfioIrqInfoFlags.Eventfd, "VFIO_IRQ_INFO_EVENTFD"),
        ((ulong)VfioIrqInfoFlags.Maskable, "VFIO_IRQ_INFO_MASKABLE"),
        ((ulong)VfioIrqInfoFlags.Automasked, "VFIO_IRQ_INFO_AUTOMASKED"),
        ((ulong)VfioIrqInfoFlags.NoResize, "VFIO_IRQ_INFO_NORESIZE"),
    ];

    private static readonly (ulong, string)[] s_irqSetFlags =
    [
        ((ulong)VfioIrqSetFlags.DataNone, "VFIO_IRQ_SET_DATA_NONE"),
        ((ulong)VfioIrqSetFlags.DataBool, "VFIO_IRQ_SET_DATA_BOOL"),
        ((ulong)VfioIrqSetFlags.DataEventfd, "VFIO_IRQ_SET_DATA_EVENTFD"),
        ((ulong)VfioIrqSetFlags.ActionMask, "VFIO_IRQ_SET_ACTION_MASK"),
        ((ulong)VfioIrqSetFlags.ActionUnmask, "VFIO_IRQ_SET_ACTION_UNMASK"),
        ((ulong)VfioIrqSetFlags.ActionTrigger, "VFIO_IRQ_SET_ACTION_TRIGGER"),
    ];

    private static readonly (ulong, string)[] s_iommuInfoFlags =
    [
        (VfioType1Flags.InfoPgsizes, "VFIO_IOMMU_INFO_PGSIZES"),
        (VfioType1Flags.InfoCaps, "VFIO_IOMMU_INFO_CAPS"),
    ];

    private static readonly (ulong, string)[] s_mapFlags =
    [
        (VfioType1Flags.MapRead, "VFIO_DMA_MAP_FLAG_READ"),
        (VfioType1Flags.MapWrite, "VFIO_DMA_MAP_FLAG_WRITE"),
        (VfioType1Flags.MapVaddr, "VFIO_DMA_MAP_FLAG_VADDR"),
    ];

    private static readonly (ulong, string)[] s_unmapFlags =
    [
        (VfioType1Flags.UnmapGetDirtyBitmap, "VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP"),
        (VfioType1Flags.UnmapAll, "VFIO_DMA_UNMAP_FLAG_ALL"),
        (VfioType1Flags.UnmapVaddr, "VFIO_DMA_UNMAP_FLAG_VADDR"),
    ];

    private static readonly (ulong, string)[] s_dirtyFlags =
    [
        (VfioType1Flags.DirtyStart, "VFIO_IOMMU_DIRTY_PAGES_FLAG_START"),
        (VfioType1Flags.DirtyStop, "VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP"),
        (VfioType1Flags.DirtyGetBitmap, "VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP"),
    ];

    private static readonly (ulong, string)[] s_featureFlags =
    [
        (VfioFeature.Get, "VFIO_DEVICE_FEATURE_GET"),
        (VfioFeature.Set, "VFIO_DEVICE_FEATURE_SET"),
        (VfioFeature.Probe, "VFIO_DEVICE_FEATURE_PROBE"),
    ];

    private static readonly string[] s_features =
    [
        "VFIO_DEVICE_FEATURE_PCI_VF_TOKEN", "VFIO_DEVICE_FEATURE_MIGRATION", "VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE",
        "VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY", "VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP", "VFIO_DEVICE_FEATURE_LOW_POWER_EXIT",
        "VFIO_DEVICE_FEATURE_DMA_LOGGING_START", "VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP", "VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT",
        "VFIO_DEVICE_FEATURE_MIG_DATA_SIZE", "VFIO_DEVICE_FEATURE_BUS_MASTER", "VFIO_DEVICE_FEATURE_DMA_BUF",
    ];

    private static readonly (ulong, string)[] s_hotResetFlags =
    [
        (VfioPciFlags.HotResetDevId, "VFIO_PCI_HOT_RESET_FLAG_DEV_ID"),
        (VfioPciFlags.HotResetDevIdOwned, "VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED"),
    ];

    private static readonly (ulong, string)[] s_ioeventfdFlags =
    [
        (VfioPciFlags.Ioeventfd8, "VFIO_DEVICE_IOEVENTFD_8"),
        (VfioPciFlags.Ioeventfd16, "VFIO_DEVICE_IOEVENTFD_16"),
        (VfioPciFlags.Ioeventfd32, "VFIO_DEVICE_IOEVENTFD_32"),
        (VfioPciFlags.Ioeventfd64, "VFIO_DEVICE_IOEVENTFD_64"),
    ];

    private static readonly (ulong, string)[] s_gfxPlaneFlags =
    [
        ((ulong)VfioGfxPlaneFlags.Probe, "VFIO_GFX_PLANE_TYPE_PROBE"),
        ((ulong)VfioGfxPlaneFlags.Dmabuf, "VFIO_GFX_PLANE_TYPE_DMABUF"),
        ((ulong)VfioGfxPlaneFlags.Region, "VFIO_GFX_PLANE_TYPE_REGION"),
    ];

    private static readonly (ulong, string)[] s_createDeviceFlags = [(KvmIoctl.CreateDeviceTest, "KVM_CREATE_DEVICE_TEST")];

    /// <summary>At most this many elements of an array are printed, then <c>...</c> (strace's default -s/array limit is larger; VFIO arrays are short).</summary>
    private const int MaxArray = 32;

    /// <summary>Registers every VFIO and KVM ioctl with <paramref name="table"/>, on the file type it belongs to.</summary>
    internal static void Register(IoctlDecoderTable table)
    {
        Type container = typeof(VfioContainerFops);
        Type group = typeof(VfioGroupFops);
        Type device = typeof(VfioDeviceFops);
        IoctlEntryDecoder none = SyscallTracer.NoArgument;

        table.Register(VfioIoctl.GetApiVersion, "VFIO_GET_API_VERSION", null, container, none);
        table.Register(VfioIoctl.CheckExtension, "VFIO_CHECK_EXTENSION", static (_, arg, _, _) => ExtensionName(arg), container);
        table.Register(VfioIoctl.SetIommu, "VFIO_SET_IOMMU", static (_, arg, _, _) => ExtensionName(arg), container);
        table.Register(VfioIoctl.IommuGetInfo, "VFIO_IOMMU_GET_INFO", IommuInfoOut, container, ArgszIn);
        table.Register(VfioIoctl.IommuMapDma, "VFIO_IOMMU_MAP_DMA", MapDma, container);
        table.Register(VfioIoctl.IommuUnmapDma, "VFIO_IOMMU_UNMAP_DMA", UnmapDmaOut, container, UnmapDmaIn);
        table.Register(VfioIoctl.IommuEnable, "VFIO_IOMMU_ENABLE", null, container, none);
        table.Register(VfioIoctl.IommuDisable, "VFIO_IOMMU_DISABLE", null, container, none);
        table.Register(VfioIoctl.IommuDirtyPages, "VFIO_IOMMU_DIRTY_PAGES", DirtyPages, container);

        table.Register(VfioIoctl.GroupGetStatus, "VFIO_GROUP_GET_STATUS", GroupStatusOut, group, ArgszIn);
        table.Register(VfioIoctl.GroupSetContainer, "VFIO_GROUP_SET_CONTAINER", static (p, arg, _, _) => SyscallTracer.IntPointer(p, arg), group);
        table.Register(VfioIoctl.GroupUnsetContainer, "VFIO_GROUP_UNSET_CONTAINER", null, group, none);
        table.Register(VfioIoctl.GroupGetDeviceFd, "VFIO_GROUP_GET_DEVICE_FD", static (p, arg, _, _) => SyscallTracer.UserString(p, arg), group);

        table.Register(VfioIoctl.DeviceGetInfo, "VFIO_DEVICE_GET_INFO", DeviceInfoOut, device, ArgszIn);
        table.Register(VfioIoctl.DeviceGetRegionInfo, "VFIO_DEVICE_GET_REGION_INFO", RegionInfoOut, device, IndexIn);
        table.Register(VfioIoctl.DeviceGetIrqInfo, "VFIO_DEVICE_GET_IRQ_INFO", IrqInfoOut, device, IndexIn);
        table.Register(VfioIoctl.DeviceSetIrqs, "VFIO_DEVICE_SET_IRQS", SetIrqs, device);
        table.Register(VfioIoctl.DeviceReset, "VFIO_DEVICE_RESET", null, device, none);
        table.Register(VfioIoctl.DeviceGetPciHotResetInfo, "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO", HotResetInfoOut, device, ArgszIn);
        table.Register(VfioIoctl.DevicePciHotReset, "VFIO_DEVICE_PCI_HOT_RESET", HotReset, device);
        table.Register(VfioIoctl.DeviceQueryGfxPlane, "VFIO_DEVICE_QUERY_GFX_PLANE", GfxPlaneOut, device, GfxPlaneIn);
        table.Register(VfioIoctl.DeviceGetGfxDmabuf, "VFIO_DEVICE_GET_GFX_DMABUF", static (p, arg, _, _) => U32Pointer(p, arg), device);
        table.Register(VfioIoctl.DeviceIoeventfd, "VFIO_DEVICE_IOEVENTFD", Ioeventfd, device);
        table.Register(VfioIoctl.DeviceFeature, "VFIO_DEVICE_FEATURE", FeatureOut, device, FeatureIn);
        table.Register(VfioIoctl.DeviceBindIommufd, "VFIO_DEVICE_BIND_IOMMUFD", BindOut, device, BindIn);
        table.Register(VfioIoctl.DeviceAttachIommufdPt, "VFIO_DEVICE_ATTACH_IOMMUFD_PT", AttachOut, device, AttachIn);
        table.Register(VfioIoctl.DeviceDetachIommufdPt, "VFIO_DEVICE_DETACH_IOMMUFD_PT", Detach, device);
        table.Register(VfioIoctl.MigGetPrecopyInfo, "VFIO_MIG_GET_PRECOPY_INFO", PrecopyOut, null, ArgszIn);

        table.Register(KvmIoctl.GetApiVersion, "KVM_GET_API_VERSION", null, typeof(KvmDevFops));
        table.Register(KvmIoctl.CreateVm, "KVM_CREATE_VM", static (_, arg, _, _) => arg.ToString(CultureInfo.InvariantCulture), typeof(KvmDevFops));
        table.Register(KvmIoctl.CheckExtension, "KVM_CHECK_EXTENSION", static (_, arg, _, _) => KvmCapName(arg), typeof(KvmDevFops));
        table.Register(KvmIoctl.CheckExtension, "KVM_CHECK_EXTENSION", static (_, arg, _, _) => KvmCapName(arg), typeof(KvmVmFops));
        table.Register(KvmIoctl.CreateDevice, "KVM_CREATE_DEVICE", CreateDeviceOut, typeof(KvmVmFops), CreateDeviceIn);
        table.Register(KvmIoctl.SetDeviceAttr, "KVM_SET_DEVICE_ATTR", DeviceAttr, typeof(KvmDeviceFops));
        table.Register(KvmIoctl.GetDeviceAttr, "KVM_GET_DEVICE_ATTR", DeviceAttr, typeof(KvmDeviceFops));
        table.Register(KvmIoctl.HasDeviceAttr, "KVM_HAS_DEVICE_ATTR", DeviceAttr, typeof(KvmDeviceFops));
    }

    /// <summary>The u32 a VFIO struct starts with (its argsz) as passed in, for the exit decoder; 0 when unreadable.</summary>
    private static ulong Argsz(SimProcess p, ulong arg) => SyscallTracer.TryRead(p, arg, out uint argsz) ? argsz : 0;

    // ---- Container.

    /// <summary>An extension or IOMMU type by name (VFIO_TYPE1v2_IOMMU), else the number.</summary>
    internal static string ExtensionName(ulong arg) => arg switch
    {
        VfioExtension.Type1 => "VFIO_TYPE1_IOMMU",
        VfioExtension.SpaprTce => "VFIO_SPAPR_TCE_IOMMU",
        VfioExtension.Type1v2 => "VFIO_TYPE1v2_IOMMU",
        VfioExtension.DmaCcIommu => "VFIO_DMA_CC_IOMMU",
        VfioExtension.Eeh => "VFIO_EEH",
        VfioExtension.Type1Nesting => "VFIO_TYPE1_NESTING_IOMMU",
        VfioExtension.SpaprTceV2 => "VFIO_SPAPR_TCE_v2_IOMMU",
        VfioExtension.NoIommu => "VFIO_NOIOMMU_IOMMU",
        VfioExtension.UnmapAll => "VFIO_UNMAP_ALL",
        VfioExtension.UpdateVaddr => "VFIO_UPDATE_VADDR",
        _ => arg.ToString(CultureInfo.InvariantCulture),
    };

    /// <summary>The argsz a caller passes in to a GET call whose other fields are all out.</summary>
    private static string? ArgszIn(SimProcess p, ulong arg, out ulong state)
    {
        state = Argsz(p, arg);
        return SyscallTracer.TryRead(p, arg, out uint argsz) ? $"{{argsz={argsz}}}" : SyscallTracer.Hex(arg);
    }

    private static string? IommuInfoOut(SimProcess p, ulong arg, long ret, ulong state)
    {
        if (!SyscallTracer.TryRead(p, arg, out VfioIommuType1Info v, state >= 20 ? -1 : VfioIommuType1Info.MinSz))
        {
            return null;
        }

        // The kernel writes cap_offset back only to a caller whose argsz covered it; a
        // smaller caller gets the argsz it would need (and the CAPS flag) in the first 16 bytes.
        string cap = state >= 20 ? Inv($", cap_offset={v.CapOffset}") : "";
        return Inv($"{{argsz={v.Argsz}, flags={SyscallTracer.Flags(v.Flags, s_iommuInfoFlags)}, iova_pgsizes={SyscallTracer.Number(v.IovaPgsizes)}{cap}}}");
    }

    private static string? MapDma(SimProcess p, ulong arg, long ret, ulong state)
        => SyscallTracer.TryRead(p, arg, out VfioIommuType1DmaMap v)
            ? Inv($"{{argsz={v.Argsz}, flags={SyscallTracer.Flags(v.Flags, s_mapFlags)}, vaddr={SyscallTracer.Hex(v.Vaddr)}, iova={SyscallTracer.Number(v.Iova)}, size={v.Size}}}")
            : SyscallTracer.Hex(arg);

    private static string? UnmapDmaIn(SimProcess p, ulong arg, out ulong state)
    {
        state = Argsz(p, arg);
        if (!SyscallTracer.TryRead(p, arg, out VfioIommuType1DmaUnmap v))
        {
            return SyscallTracer.Hex(arg);
        }

        string text = Inv($"{{argsz={v.Argsz}, flags={SyscallTracer.Flags(v.Flags, s_unmapFlags)}, iova={SyscallTracer.Number(v.Iova)}, size={v.Size}");
        if ((v.Flags & VfioType1Flags.UnmapGetDirtyBitmap) != 0 && v.Argsz >= VfioIommuType1DmaUnmap.MinSz + 24)
        {
            text += ", bitmap=" + Bitmap(p, arg + VfioIommuType1DmaUnmap.MinSz);
        }

        return text + "}";
    }

    // The kernel writes back the size it unmapped.
    private static string? UnmapDmaOut(SimProcess p, ulong arg, long ret, ulong state)
        => SyscallTracer.TryRead(p, arg, out VfioIommuType1DmaUnmap v) ? Inv($"{{size={v.Size}}}") : null;

    private static string? DirtyPages(SimProcess p, ulong arg, long ret, ulong state)
    {
        if (!SyscallTracer.TryRead(p, arg, out VfioIommuType1DirtyBitmap v))
        {
            return SyscallTracer.Hex(arg);
        }

        string text = Inv($"{{argsz={v.Argsz}, flags={SyscallTracer.Flags(v.Flags, s_dirtyFlags)}");
        if ((v.Flags & VfioType1Flags.DirtyGetBitmap) != 0 && v.Argsz >= VfioIommuType1DirtyBitmap.MinSz + 40
            && SyscallTracer.TryRead(p, arg + VfioIommuType1DirtyBitmap.MinSz, out VfioIommuType1DirtyBitmapGet g))
        {
            text += Inv($", data={{iova={SyscallTracer.Number(g.Iova)}, size={g.Size}, bitmap={{pgsize={g.Bitmap.Pgsize}, size={g.Bitmap.Size}, data={SyscallTracer.Hex(g.Bitmap.Data)}}}}}");
        }

        return text + "}";
    }

    private static string Bitmap(SimProcess p, ulong addr)
        => SyscallTracer.TryRead(p, addr, out VfioBitmap b)
            ? Inv($"{{pgsize={b.Pgsize}, size={b.Size}, data={SyscallTracer.Hex(b.Data)}}}")
            : SyscallTracer.Hex(addr);

    // ---- Group.

    private static string? GroupStatusOut(SimProcess p, ulong arg, long ret, ulong state)
        => SyscallTracer.TryRead(p, arg, out VfioGroupStatus v) ? $"{{flags={SyscallTracer.Flags((ulong)v.Flags, s_groupFlags)}}}" : null;

    // ---- Device.

    private static string? DeviceInfoOut(SimProcess p, ulong arg, long ret, ulong state)
    {
        if (!SyscallTracer.TryRead(p, arg, out VfioDeviceInfo v, state >= 20 ? -1 : VfioDeviceInfo.MinSz))
        {
            return null;
        }

        string cap = state >= 20 ? Inv($", cap_offset={v.CapOffset}") : "";
        return Inv($"{{argsz={v.Argsz}, flags={SyscallTracer.Flags((ulong)v.Flags, s_deviceFlags)}, num_regions={v.NumRegions}, num_irqs={v.NumIrqs}{cap}}}");
    }

    // GET_REGION_INFO and GET_IRQ_INFO pass argsz and an index: both have index at offset 8.
    private static string? IndexIn(SimProcess p, ulong arg, out ulong state)
    {
        state = Argsz(p, arg);
        return SyscallTracer.TryRead(p, arg, out VfioIrqInfo v) ? Inv($"{{argsz={v.Argsz}, index={v.Index}}}") : SyscallTracer.Hex(arg);
    }

    private static string? RegionInfoOut(SimProcess p, ulong arg, long ret, ulong state)
    {
        if (!SyscallTracer.TryRead(p, arg, out VfioRegionInfo v))
        {
            return null;
        }

        string cap = (v.Flags & VfioRegionFlags.Caps) != 0 ? Inv($", cap_offset={v.CapOffset}") : "";
        return Inv($"{{argsz={v.Argsz}, flags={SyscallTracer.Flags((ulong)v.Flags, s_regionFlags)}{cap}, size={v.Size}, offset={SyscallTracer.Number(v.Offset)}}}");
    }

    private static string? IrqInfoOut(SimProcess p, ulong arg, long ret, ulong state)
        => SyscallTracer.TryRead(p, arg, out VfioIrqInfo v)
            ? Inv($"{{flags={SyscallTracer.Flags((ulong)v.Flags, s_irqInfoFlags)}, count={v.Count}}}")
            : null;

    private static string? SetIrqs(SimProcess p, ulong arg, long ret, ulong state)
    {
        if (!SyscallTracer.TryRead(p, arg, out VfioIrqSet v))
        {
            return SyscallTracer.Hex(arg);
        }

        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"{{argsz={v.Argsz}, flags={SyscallTracer.Flags((ulong)v.Flags, s_irqSetFlags)}, index={v.Index}, start={v.Start}, count={v.Count}");

        // The data follows the header: one s32 eventfd or one u8 bool per vector, as far as
        // argsz says there is room (the kernel checks argsz against count the same way).
        ulong data = arg + VfioIrqSet.MinSz;
        long room = (long)v.Argsz - VfioIrqSet.MinSz;
        switch (v.Flags & VfioIrqSetFlags.DataTypeMask)
        {
            case VfioIrqSetFlags.DataEventfd when room >= 4 && v.Count > 0:
                sb.Append(", data=");
                AppendArray(sb, p, data, (int)Math.Min(v.Count, room / 4), 4);
                break;
            case VfioIrqSetFlags.DataBool when room >= 1 && v.Count > 0:
                sb.Append(", data=");
                AppendArray(sb, p, data, (int)Math.Min(v.Count, room), 1);
                break;
        }

        return sb.Append('}').ToString();
    }

    /// <summary>An array of s32 (size 4) or u8 (size 1) as strace prints one: <c>[7, 8]</c>; unreadable elements end it with the address.</summary>
    private static void AppendArray(StringBuilder sb, SimProcess p, ulong addr, int count, int size)
    {
        sb.Append('[');
        for (int i = 0; i < count; i++)
        {
            if (i == MaxArray)
            {
                sb.Append(", ...");
                break;
            }

            ulong a = addr + (ulong)(i * size);
            string element = size == 4
                ? SyscallTracer.TryRead(p, a, out int fd) ? fd.ToString(CultureInfo.InvariantCulture) : SyscallTracer.Hex(a)
                : SyscallTracer.TryRead(p, a, out byte b) ? b.ToString(CultureInfo.InvariantCulture) : SyscallTracer.Hex(a);
            sb.Append(i == 0 ? "" : ", ").Append(element);
        }

        sb.Append(']');
    }

    private static string? HotResetInfoOut(SimProcess p, ulong arg, long ret, ulong state)
    {
        if (!SyscallTracer.TryRead(p, arg, out VfioPciHotResetInfo v))
        {
            return null;
        }

        bool devid = (v.Flags & VfioPciFlags.HotResetDevId) != 0;
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"{{argsz={v.Argsz}, flags={SyscallTracer.Flags(v.Flags, s_hotResetFlags)}, count={v.Count}, devices=[");
        uint room = (v.Argsz - VfioPciHotResetInfo.MinSz) / 8;
        for (uint i = 0; i < Math.Min(v.Count, room); i++)
        {
            if (i == MaxArray)
            {
                sb.Append(", ...");
                break;
            }

            ulong a = arg + VfioPciHotResetInfo.MinSz + (i * 8);
            sb.Append(i == 0 ? "" : ", ");
            sb.Append(SyscallTracer.TryRead(p, a, out VfioPciDependentDevice d)
                ? Inv($"{{{(devid ? "devid" : "group_id")}={d.GroupIdOrDevid}, segment={d.Segment}, bus={d.Bus}, devfn={d.Devfn}}}")
                : SyscallTracer.Hex(a));
        }

        return sb.Append("]}").ToString();
    }

    private static string? HotReset(SimProcess p, ulong arg, long ret, ulong state)
    {
        if (!SyscallTracer.TryRead(p, arg, out VfioPciHotReset v))
        {
            return SyscallTracer.Hex(arg);
        }

        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"{{argsz={v.Argsz}, flags={SyscallTracer.Flags(v.Flags, s_hotResetFlags)}, count={v.Count}");
        long room = ((long)v.Argsz - VfioPciHotReset.MinSz) / 4;
        if (v.Count > 0 && room > 0)
        {
            sb.Append(", group_fds=");
            AppendArray(sb, p, arg + VfioPciHotReset.MinSz, (int)Math.Min(v.Count, room), 4);
        }

        return sb.Append('}').ToString();
    }

    private static string? GfxPlaneIn(SimProcess p, ulong arg, out ulong state)
    {
        state = Argsz(p, arg);
        return SyscallTracer.TryRead(p, arg, out VfioDeviceGfxPlaneInfo v)
        ? Inv($"{{argsz={v.Argsz}, flags={SyscallTracer.Flags((ulong)v.Flags, s_gfxPlaneFlags)}}}")
        : SyscallTracer.Hex(arg);
    }

    private static string? GfxPlaneOut(SimProcess p, ulong arg, long ret, ulong state)
    {
        if (!SyscallTracer.TryRead(p, arg, out VfioDeviceGfxPlaneInfo v) || (v.Flags & VfioGfxPlaneFlags.Probe) != 0)
        {
            return null;
        }

        string id = (v.Flags & VfioGfxPlaneFlags.Dmabuf) != 0 ? "dmabuf_id" : "region_index";
        return Inv($"{{drm_plane_type={v.DrmPlaneType}, drm_format={SyscallTracer.Number(v.DrmFormat)}, width={v.Width}, height={v.Height}, stride={v.Stride}, size={v.Size}, {id}={v.RegionIndexOrDmabufId}}}");
    }

    private static string U32Pointer(SimProcess p, ulong arg)
        => SyscallTracer.TryRead(p, arg, out uint v) ? Inv($"[{v}]") : SyscallTracer.Hex(arg);

    private static string? Ioeventfd(SimProcess p, ulong arg, long ret, ulong state)
        => SyscallTracer.TryRead(p, arg, out VfioDeviceIoeventfd v)
            ? Inv($"{{argsz={v.Argsz}, flags={SyscallTracer.Flags(v.Flags, s_ioeventfdFlags)}, offset={SyscallTracer.Number(v.Offset)}, data={SyscallTracer.Number(v.Data)}, fd={v.Fd}}}")
            : SyscallTracer.Hex(arg);

    /// <summary>The feature's flags and id by name: <c>VFIO_DEVICE_FEATURE_GET|VFIO_DEVICE_FEATURE_MIGRATION</c>.</summary>
    internal static string FeatureFlags(uint flags)
    {
        uint id = flags & VfioFeature.Mask;
        string name = id < s_features.Length ? s_features[id] : Inv($"{id}");
        string rest = SyscallTracer.Flags(flags & ~VfioFeature.Mask, s_featureFlags, zero: "");
        return rest.Length == 0 ? name : $"{rest}|{name}";
    }

    private static string? FeatureIn(SimProcess p, ulong arg, out ulong state)
    {
        state = Argsz(p, arg);
        if (!SyscallTracer.TryRead(p, arg, out VfioDeviceFeature v))
        {
            return SyscallTracer.Hex(arg);
        }

        string data = (v.Flags & VfioFeature.Set) != 0 ? FeatureData(p, arg, v) : "";
        return Inv($"{{argsz={v.Argsz}, flags={FeatureFlags(v.Flags)}{data}}}");
    }

    // A GET (not a probe) fills the data: show it after the call.
    private static string? FeatureOut(SimProcess p, ulong arg, long ret, ulong state)
    {
        if (!SyscallTracer.TryRead(p, arg, out VfioDeviceFeature v) || (v.Flags & (VfioFeature.Get | VfioFeature.Probe)) != VfioFeature.Get)
        {
            return null;
        }

        string data = FeatureData(p, arg, v);
        return data.Length == 0 ? null : "{" + data[2..] + "}";
    }

    /// <summary>The data of the features whose payload is a small struct, as <c>, data={…}</c>; else nothing.</summary>
    private static string FeatureData(SimProcess p, ulong arg, VfioDeviceFeature v)
    {
        ulong data = arg + VfioDeviceFeature.MinSz;
        uint room = v.Argsz - VfioDeviceFeature.MinSz;
        return (v.Flags & VfioFeature.Mask) switch
        {
            VfioFeature.Migration when room >= 8 && SyscallTracer.TryRead(p, data, out VfioDeviceFeatureMigration m)
                => Inv($", data={{flags={SyscallTracer.Number(m.Flags)}}}"),
            VfioFeature.MigDeviceState when room >= 8 && SyscallTracer.TryRead(p, data, out VfioDeviceFeatureMigState s)
                => Inv($", data={{device_state={(uint)s.DeviceState}, data_fd={s.DataFd}}}"),
            VfioFeature.LowPowerEntryWithWakeup when room >= 4 && SyscallTracer.TryRead(p, data, out int fd)
                => Inv($", data={{wakeup_eventfd={fd}}}"),
            VfioFeature.BusMaster when room >= 4 && SyscallTracer.TryRead(p, data, out uint op)
                => Inv($", data={{op={(op == VfioFeature.SetMaster ? "VFIO_DEVICE_FEATURE_SET_MASTER" : op == VfioFeature.ClearMaster ? "VFIO_DEVICE_FEATURE_CLEAR_MASTER" : op.ToString(CultureInfo.InvariantCulture))}}}"),
            VfioFeature.MigDataSize when room >= 8 && SyscallTracer.TryRead(p, data, out ulong len)
                => Inv($", data={{stop_copy_length={len}}}"),
            _ => "",
        };
    }

    private static string? BindIn(SimProcess p, ulong arg, out ulong state)
    {
        state = Argsz(p, arg);
        return SyscallTracer.TryRead(p, arg, out VfioDeviceBindIommufd v, VfioDeviceBindIommufd.MinSz)
        ? Inv($"{{argsz={v.Argsz}, flags={v.Flags}, iommufd={v.Iommufd}}}")
        : SyscallTracer.Hex(arg);
    }

    private static string? BindOut(SimProcess p, ulong arg, long ret, ulong state)
        => SyscallTracer.TryRead(p, arg, out VfioDeviceBindIommufd v, VfioDeviceBindIommufd.MinSz) ? Inv($"{{out_devid={v.OutDevid}}}") : null;

    private static string? AttachIn(SimProcess p, ulong arg, out ulong state)
    {
        state = Argsz(p, arg);
        return SyscallTracer.TryRead(p, arg, out VfioDeviceAttachIommufdPt v, VfioDeviceAttachIommufdPt.MinSz)
        ? Inv($"{{argsz={v.Argsz}, flags={v.Flags}, pt_id={v.PtId}}}")
        : SyscallTracer.Hex(arg);
    }

    private static string? AttachOut(SimProcess p, ulong arg, long ret, ulong state)
        => SyscallTracer.TryRead(p, arg, out VfioDeviceAttachIommufdPt v, VfioDeviceAttachIommufdPt.MinSz) ? Inv($"{{pt_id={v.PtId}}}") : null;

    private static string? Detach(SimProcess p, ulong arg, long ret, ulong state)
        => SyscallTracer.TryRead(p, arg, out VfioDeviceDetachIommufdPt v, VfioDeviceDetachIommufdPt.MinSz)
            ? Inv($"{{argsz={v.Argsz}, flags={v.Flags}}}")
            : SyscallTracer.Hex(arg);

    private static string? PrecopyOut(SimProcess p, ulong arg, long ret, ulong state)
        => SyscallTracer.TryRead(p, arg, out VfioPrecopyInfo v) ? Inv($"{{initial_bytes={v.InitialBytes}, dirty_bytes={v.DirtyBytes}}}") : null;

    // ---- KVM.

    private static string KvmCapName(ulong arg) => arg == KvmIoctl.CapDeviceCtrl ? "KVM_CAP_DEVICE_CTRL" : arg.ToString(CultureInfo.InvariantCulture);

    private static string DeviceTypeName(uint type) => type switch
    {
        (uint)KvmDeviceType.Vfio => "KVM_DEV_TYPE_VFIO",
        (uint)KvmDeviceType.FslMpic20 => "KVM_DEV_TYPE_FSL_MPIC_20",
        (uint)KvmDeviceType.FslMpic42 => "KVM_DEV_TYPE_FSL_MPIC_42",
        (uint)KvmDeviceType.Xics => "KVM_DEV_TYPE_XICS",
        (uint)KvmDeviceType.ArmVgicV2 => "KVM_DEV_TYPE_ARM_VGIC_V2",
        (uint)KvmDeviceType.Flic => "KVM_DEV_TYPE_FLIC",
        (uint)KvmDeviceType.ArmVgicV3 => "KVM_DEV_TYPE_ARM_VGIC_V3",
        (uint)KvmDeviceType.ArmVgicIts => "KVM_DEV_TYPE_ARM_VGIC_ITS",
        (uint)KvmDeviceType.Xive => "KVM_DEV_TYPE_XIVE",
        (uint)KvmDeviceType.ArmPvTime => "KVM_DEV_TYPE_ARM_PV_TIME",
        (uint)KvmDeviceType.RiscvAia => "KVM_DEV_TYPE_RISCV_AIA",
        _ => type.ToString(CultureInfo.InvariantCulture),
    };

    private static string? CreateDeviceIn(SimProcess p, ulong arg, out ulong state)
    {
        state = Argsz(p, arg);
        return SyscallTracer.TryRead(p, arg, out KvmCreateDevice v)
        ? Inv($"{{type={DeviceTypeName(v.Type)}, fd={v.Fd}, flags={SyscallTracer.Flags(v.Flags, s_createDeviceFlags)}}}")
        : SyscallTracer.Hex(arg);
    }

    private static string? CreateDeviceOut(SimProcess p, ulong arg, long ret, ulong state)
        => SyscallTracer.TryRead(p, arg, out KvmCreateDevice v) && (v.Flags & KvmIoctl.CreateDeviceTest) == 0 ? Inv($"{{fd={v.Fd}}}") : null;

    /// <summary>struct kvm_device_attr; for the VFIO file group, the attribute by name and the fd addr points to.</summary>
    private static string? DeviceAttr(SimProcess p, ulong arg, long ret, ulong state)
    {
        if (!SyscallTracer.TryRead(p, arg, out KvmDeviceAttr v))
        {
            return SyscallTracer.Hex(arg);
        }

        if (v.Group != KvmDevVfio.File)
        {
            return Inv($"{{flags={v.Flags}, group={v.Group}, attr={v.Attr}, addr={SyscallTracer.Hex(v.Addr)}}}");
        }

        string attr = v.Attr switch
        {
            KvmDevVfio.FileAdd => "KVM_DEV_VFIO_FILE_ADD",
            KvmDevVfio.FileDel => "KVM_DEV_VFIO_FILE_DEL",
            KvmDevVfio.GroupSetSpaprTce => "KVM_DEV_VFIO_GROUP_SET_SPAPR_TCE",
            _ => v.Attr.ToString(CultureInfo.InvariantCulture),
        };
        string addr = v.Attr is KvmDevVfio.FileAdd or KvmDevVfio.FileDel ? SyscallTracer.IntPointer(p, v.Addr) : SyscallTracer.Hex(v.Addr);
        return Inv($"{{flags={v.Flags}, group=KVM_DEV_VFIO_FILE, attr={attr}, addr={addr}}}");
    }

    private static string Inv(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
