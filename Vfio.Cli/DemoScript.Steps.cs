// The steps of the vfio.rst flow: sysfs, container, group, IOMMU, device.

using System.Text;
using Vfio.Core.Client;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Pci;
using Vfio.Platform.Devices;
using Vfio.Platform.Mm;
using Vfio.Platform.Pci;

namespace Vfio.Cli;

internal sealed partial class DemoScript
{
    private string FindEdu()
    {
        _edu = machine.Pci.Devices.OfType<PciDevice>().FirstOrDefault(d => d.Identity.Vendor == EduDevice.VendorId && d.Identity.Device == EduDevice.DeviceId);
        Check(_edu is not null, "the machine has an edu device (1234:11e8)");
        string dir = $"/sys/bus/pci/devices/{_edu!.Name}";
        string vendor = Sysfs($"{dir}/vendor"), device = Sysfs($"{dir}/device");
        Check(vendor == "0x1234" && device == "0x11e8", $"{dir}/vendor and device read 0x1234 and 0x11e8, not {vendor} {device}");
        string? link = machine.Sysfs.ReadLink($"{dir}/iommu_group");
        Check(link is not null, $"{dir}/iommu_group is a link (the machine has an IOMMU)");
        _groupId = int.Parse(link![(link!.LastIndexOf('/') + 1)..], System.Globalization.CultureInfo.InvariantCulture);
        Check(_groupId == _edu.IommuGroup?.Id, $"the link names the device's group {_edu.IommuGroup?.Id}");
        return $"{_edu.Name} [{vendor[2..]}:{device[2..]}]\nreadlink {dir}/iommu_group = {link}: group {_groupId}";
    }

    private string GroupViability()
    {
        var sb = new StringBuilder();
        bool viable = true;
        foreach (var d in _edu!.IommuGroup!.Devices)
        {
            string? drv = DriverOf(d.Name);
            bool fine = drv is null or VfioPciDriver.DriverName;
            viable &= fine;
            sb.Append($"/sys/kernel/iommu_groups/{_groupId}/devices/{d.Name}: ").Append(drv is null ? "no driver" : $"bound to {drv}").Append(fine ? "" : " (a host driver: not viable for user space)").Append('\n');
        }

        _hostDriver = DriverOf(_edu.Name);
        Check(!viable && _hostDriver is not null, "the group is not viable while edu is bound to its host driver");
        return sb.Append($"group {_groupId} is not viable: every device in it must be bound to vfio-pci (or to no driver) first").ToString();
    }

    private string BindToVfioPci()
    {
        string bdf = _edu!.Name;
        SysfsWrite($"/sys/bus/pci/drivers/{_hostDriver}/unbind", bdf);
        Check(DriverOf(bdf) is null, $"{bdf} has no driver after the unbind");
        SysfsWrite($"/sys/bus/pci/devices/{bdf}/driver_override", VfioPciDriver.DriverName);
        SysfsWrite("/sys/bus/pci/drivers_probe", bdf);
        string? now = DriverOf(bdf);
        Check(now == VfioPciDriver.DriverName, $"{bdf} is bound to vfio-pci after drivers_probe, not {now ?? "nothing"}");
        Check(machine.Vfs.Exists($"/dev/vfio/{_groupId}"), $"/dev/vfio/{_groupId} exists");
        return $"echo {bdf} > /sys/bus/pci/drivers/{_hostDriver}/unbind\n" +
            $"echo {VfioPciDriver.DriverName} > /sys/bus/pci/devices/{bdf}/driver_override\n" +
            $"echo {bdf} > /sys/bus/pci/drivers_probe\n" +
            $"driver -> {VfioPciDriver.DriverName}; /dev/vfio/{_groupId} appeared";
    }

    private string OpenContainer()
    {
        _container = new VfioContainerFd(_p);
        int version = _container.GetApiVersion();
        Check(version == VfioExtension.ApiVersion, $"VFIO_GET_API_VERSION is {VfioExtension.ApiVersion}, not {version}");
        bool v2 = _container.CheckExtension(VfioExtension.Type1v2);
        Check(v2, "VFIO_CHECK_EXTENSION(VFIO_TYPE1v2_IOMMU) is true with type1 loaded");
        return $"fd {_container.Fd}; VFIO_GET_API_VERSION = {version}; VFIO_CHECK_EXTENSION(VFIO_TYPE1v2_IOMMU) = {(v2 ? 1 : 0)}";
    }

    private string OpenGroup()
    {
        _group = new VfioGroupFd(_p, _groupId);
        VfioGroupFlags flags = _group.GetStatus();
        Check(flags == VfioGroupFlags.Viable, $"the status is VIABLE without CONTAINER_SET, not {flags}");
        return $"/dev/vfio/{_groupId}: fd {_group.Fd}; status {flags}";
    }

    private string SetContainer()
    {
        _group!.SetContainer(_container!);
        VfioGroupFlags flags = _group.GetStatus();
        Check(flags == (VfioGroupFlags.Viable | VfioGroupFlags.ContainerSet), $"the status is VIABLE | CONTAINER_SET, not {flags}");
        return $"group {_groupId} is in container fd {_container!.Fd}; status {flags}";
    }

    private string SetIommu()
    {
        _container!.SetIommu(VfioExtension.Type1v2);
        Check(_edu!.IommuGroup!.Domain?.Type == Platform.Iommu.IommuDomainType.Unmanaged, "the group is attached to an unmanaged (vfio-owned) domain");
        return $"type1 attached group {_groupId} to an unmanaged IOMMU domain";
    }

    private string IommuInfo()
    {
        VfioIommuInfo info = _container!.GetIommuInfo();
        Check((info.Flags & VfioType1Flags.InfoPgsizes) != 0 && info.IovaPgsizes != 0, "GET_INFO reports page sizes");
        Check(info.IovaRanges.Count > 0, "GET_INFO carries the IOVA_RANGE capability");
        Check(info.DmaAvail is not null, "GET_INFO carries the DMA_AVAIL capability");
        string sizes = string.Join(", ", Enumerable.Range(0, 64).Where(b => ((info.IovaPgsizes >> b) & 1) != 0).Select(b => Size(1UL << b)));
        string ranges = string.Join(", ", info.IovaRanges.Select(r => $"[{Hex(r.Start)}, {Hex(r.End)}]"));
        return $"iova_pgsizes {Hex(info.IovaPgsizes)} ({sizes})\nIOVA ranges {ranges}\ndma_avail {info.DmaAvail}";
    }

    private string MapBuffer()
    {
        long va = _p.Mmap(0, BufferSize, Prot.PROT_READ | Prot.PROT_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS);
        Check(va > 0, $"mmap of {BufferSize} bytes succeeds ({(va < 0 ? ErrnoExtensions.FromReturn(va).Describe() : "")})");
        _va = (ulong)va;
        uint before = _container!.GetIommuInfo().DmaAvail ?? 0;
        long lockedBefore = _p.Mm.LockedVm;
        _container.MapDma(_va, Iova, BufferSize);
        uint after = _container.GetIommuInfo().DmaAvail ?? 0;
        long locked = _p.Mm.LockedVm - lockedBefore;
        Check(after == before - 1, $"dma_avail drops by one, from {before} to {before - 1}, not {after}");
        Check(locked == (long)(BufferSize / PhysMem.PageSize), $"the {BufferSize / PhysMem.PageSize} pages are charged to locked_vm, not {locked}");
        return $"user va {Hex(_va)} -> IOVA {Hex(Iova)}, {Size(BufferSize)}, READ | WRITE\n" +
            $"pinned and charged to the process's locked_vm: +{locked} pages\ndma_avail {before} -> {after}";
    }

    private string GetDevice()
    {
        _device = _group!.GetDeviceFd(_edu!.Name);
        VfioDeviceInfo info = _device.GetInfo().Info;
        Check((info.Flags & VfioDeviceFlags.Pci) != 0, "the device is a PCI device");
        return $"fd {_device.Fd}; flags {info.Flags}, {info.NumRegions} regions, {info.NumIrqs} IRQ indexes";
    }

    private string Regions()
    {
        var sb = new StringBuilder();
        uint n = _device!.GetInfo().Info.NumRegions;
        for (int i = 0; i < n; i++)
        {
            string name = i switch { VfioPciIndex.Config => "CONFIG", VfioPciIndex.Vga => "VGA", 6 => "ROM", _ => $"BAR{i}" };
            try
            {
                VfioRegionInfo r = _device.GetRegionInfo(i).Info;
                Check(r.Offset == (ulong)VfioPciIndex.IndexToOffset(i), $"region {i} sits at offset {i} << 40");
                sb.Append($"{i} {name,-6} size {Hex(r.Size),-9} offset {Hex(r.Offset),-15} flags {r.Flags}\n");
            }
            catch (VfioException e) when (i == VfioPciIndex.Vga && e.Errno == Errno.EINVAL)
            {
                sb.Append($"{i} {name,-6} EINVAL (edu is not a VGA device)\n");
            }
        }

        VfioRegionInfo bar0 = _device.GetRegionInfo(0).Info;
        Check(bar0.Size == EduDevice.MmioSize, $"BAR0 is edu's {Size(EduDevice.MmioSize)}");
        return sb.ToString().TrimEnd('\n');
    }

    private string Irqs()
    {
        var sb = new StringBuilder();
        uint n = _device!.GetInfo().Info.NumIrqs;
        string[] names = ["INTX", "MSI", "MSIX", "ERR", "REQ"];
        for (int i = 0; i < n; i++)
        {
            string name = i < names.Length ? names[i] : $"#{i}";
            try
            {
                VfioIrqInfo irq = _device.GetIrqInfo(i);
                sb.Append($"{i} {name,-4} count {irq.Count} flags {irq.Flags}\n");
            }
            catch (VfioException e) when (e.Errno == Errno.EINVAL)
            {
                sb.Append($"{i} {name,-4} EINVAL (not offered by this function)\n");
            }
        }

        Check(_device.GetIrqInfo(0).Count == 1, "edu has one INTx line");
        return sb.ToString().TrimEnd('\n');
    }

    private string ResetDevice()
    {
        _device!.Reset();
        uint ident = Read32(EduDevice.RegIdentification);
        Check(ident == EduDevice.Identification, $"BAR0 identification reads {Hex(EduDevice.Identification)}, not {Hex(ident)}");
        ushort cmd = _device.ReadConfig16(PciRegs.Command);
        _device.WriteConfig16(PciRegs.Command, (ushort)(cmd | PciRegs.CommandMaster | PciRegs.CommandMemory));
        ushort now = _device.ReadConfig16(PciRegs.Command);
        Check((now & PciRegs.CommandMaster) != 0, "PCI_COMMAND keeps the bus master bit once set");
        return $"reset done; BAR0 identification register (pread of region 0 at 0x0) = 0x{ident:x8}\n" +
            $"PCI_COMMAND (config region at 0x4): 0x{cmd:x4} -> 0x{now:x4} (memory space and bus master enabled, so edu may DMA)";
    }

    private static string Size(ulong bytes) => bytes switch
    {
        >= 1UL << 30 when bytes % (1UL << 30) == 0 => $"{bytes >> 30} GiB",
        >= 1UL << 20 when bytes % (1UL << 20) == 0 => $"{bytes >> 20} MiB",
        >= 1UL << 10 when bytes % (1UL << 10) == 0 => $"{bytes >> 10} KiB",
        _ => $"{bytes} B",
    };
}
