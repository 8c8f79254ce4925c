// One run of the vfio.rst demo: the steps, in vfio.rst's order, and the state they pass on
// (the edu function, its group, the typed-client fds, the user buffer). Each step returns
// what it showed; a check that fails says what the kernel does and what happened instead.

using System.Globalization;
using System.Text;
using Vfio.Core.Client;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Pci;
using Vfio.Platform.Devices;
using Vfio.Platform.Fs;
using Vfio.Platform.Iommu;
using Vfio.Platform.Mm;
using Vfio.Platform.Pci;
using Vfio.Platform.Proc;
using static Vfio.Sim.Scenarios.ScenarioContext;

namespace Vfio.Sim.Scenarios;

internal sealed class VfioRstDemoRun(ScenarioContext context)
{
    private const ulong Iova = VfioRstDemo.Iova;
    private const ulong BufferSize = VfioRstDemo.BufferSize;
    private const ulong BackOffset = VfioRstDemo.BackOffset;
    private const int DmaBytes = EduDevice.DmaBufferSize;
    private const string Greeting = "Hello from edu, through the IOMMU! ";

    private readonly VfioSim _sim = context.Sim;
    private readonly SimProcess _p = context.Sim.Spawn("vfio-demo");
    private PciDevice _edu = null!;
    private int _groupId;
    private string? _hostDriver;
    private VfioContainerFd? _container;
    private VfioGroupFd? _group;
    private VfioDeviceFd? _device;
    private ulong _va;
    private VfioRegionMapping? _bar0;
    private int _msi = -1;

    public void Run()
    {
        bool ok = context.Step("Find the edu device and its IOMMU group", FindEdu)
            && context.Step("Is the group viable?", GroupViability)
            && context.Step("Unbind edu from its host driver and bind it to vfio-pci", BindToVfioPci)
            && context.Step("Open the container /dev/vfio/vfio", OpenContainer)
            && context.Step("Open the group and ask VFIO_GROUP_GET_STATUS", OpenGroup)
            && context.Step("VFIO_GROUP_SET_CONTAINER", SetContainer)
            && context.Step("VFIO_SET_IOMMU(VFIO_TYPE1v2_IOMMU)", SetIommu)
            && context.Step("VFIO_IOMMU_GET_INFO", IommuInfo)
            && context.Step($"mmap {BufferSize >> 20} MiB and VFIO_IOMMU_MAP_DMA it at IOVA 0x{Iova:x}", MapBuffer)
            && context.Step("VFIO_GROUP_GET_DEVICE_FD and VFIO_DEVICE_GET_INFO", GetDevice)
            && context.Step("VFIO_DEVICE_GET_REGION_INFO for every region", Regions)
            && context.Step("VFIO_DEVICE_GET_IRQ_INFO for every IRQ index", Irqs)
            && context.Step("VFIO_DEVICE_RESET, then enable bus mastering", ResetDevice)
            && context.Step("mmap BAR0 and use edu's registers through the mapping", MapBar0)
            && context.Step("VFIO_DEVICE_SET_IRQS: an eventfd for edu's MSI", EnableMsi)
            && context.Step("edu DMA, RAM -> device: the user buffer into edu's buffer at 0x40000; wait for the MSI", DmaIn)
            && context.Step("edu DMA, device -> RAM: edu's buffer back to the user buffer", DmaOut)
            && context.Step($"VFIO_IOMMU_UNMAP_DMA of IOVA 0x{Iova:x}", Unmap)
            && context.Step("The same DMA again, now that the IOVA is unmapped", DmaFaults)
            && context.Step("Close the device, group and container fds", CloseFds)
            && context.Step("Unbind edu from vfio-pci and give it back to its host driver", Unbind);
        if (!ok)
        {
            _bar0?.Dispose();
            _device?.Dispose();
            _group?.Dispose();
            _container?.Dispose();
        }
    }

    // ---- sysfs, container, group, IOMMU, device.

    private string FindEdu()
    {
        _edu = VfioRstDemo.FindEdu(_sim)!;
        string dir = $"/sys/bus/pci/devices/{_edu.Name}";
        string vendor = _sim.SysfsRead($"{dir}/vendor", _p), device = _sim.SysfsRead($"{dir}/device", _p);
        Check(vendor == "0x1234" && device == "0x11e8", $"{dir}/vendor and device read 0x1234 and 0x11e8", $"{vendor} and {device}");
        string? link = _sim.Machine.Sysfs.ReadLink($"{dir}/iommu_group");
        Check(link is not null, $"{dir}/iommu_group is a link", "no link");
        _groupId = int.Parse(link![(link!.LastIndexOf('/') + 1)..], CultureInfo.InvariantCulture);
        Check(_groupId == _edu.IommuGroup?.Id, $"the link names the device's group {_edu.IommuGroup?.Id}", $"group {_groupId}");
        return $"{_edu.Name} [{vendor[2..]}:{device[2..]}]\nreadlink {dir}/iommu_group = {link}: group {_groupId}";
    }

    private string GroupViability()
    {
        var sb = new StringBuilder();
        bool viable = true;
        foreach (var d in _edu.IommuGroup!.Devices)
        {
            string? drv = _sim.DriverOf(d.Name);
            bool fine = drv is null or VfioPciDriver.DriverName;
            viable &= fine;
            sb.Append($"/sys/kernel/iommu_groups/{_groupId}/devices/{d.Name}: ").Append(drv is null ? "no driver" : $"bound to {drv}").Append(fine ? "" : " (a host driver: not viable for user space)").Append('\n');
        }

        _hostDriver = _sim.DriverOf(_edu.Name);
        Check(!viable && _hostDriver is not null, "the group is not viable while edu is bound to its host driver", viable ? "a viable group" : "edu bound to no driver");
        return sb.Append($"group {_groupId} is not viable: every device in it must be bound to vfio-pci (or to no driver) first").ToString();
    }

    private string BindToVfioPci()
    {
        string bdf = _edu.Name;
        _sim.SysfsWrite($"/sys/bus/pci/drivers/{_hostDriver}/unbind", bdf, _p);
        string? after = _sim.DriverOf(bdf);
        Check(after is null, $"{bdf} has no driver after the unbind", $"bound to {after}");
        _sim.SysfsWrite($"/sys/bus/pci/devices/{bdf}/driver_override", VfioPciDriver.DriverName, _p);
        _sim.SysfsWrite("/sys/bus/pci/drivers_probe", bdf, _p);
        string? now = _sim.DriverOf(bdf);
        Check(now == VfioPciDriver.DriverName, $"{bdf} is bound to vfio-pci after drivers_probe", now is null ? "no driver" : $"bound to {now}");
        Check(_sim.Machine.Vfs.Exists($"/dev/vfio/{_groupId}"), $"/dev/vfio/{_groupId} exists", "no such node");
        return $"echo {bdf} > /sys/bus/pci/drivers/{_hostDriver}/unbind\n" +
            $"echo {VfioPciDriver.DriverName} > /sys/bus/pci/devices/{bdf}/driver_override\n" +
            $"echo {bdf} > /sys/bus/pci/drivers_probe\n" +
            $"driver -> {VfioPciDriver.DriverName}; /dev/vfio/{_groupId} appeared";
    }

    private string OpenContainer()
    {
        _container = new VfioContainerFd(_p);
        int version = _container.GetApiVersion();
        CheckEqual(version, VfioExtension.ApiVersion, "VFIO_GET_API_VERSION");
        bool v2 = _container.CheckExtension(VfioExtension.Type1v2);
        Check(v2, "VFIO_CHECK_EXTENSION(VFIO_TYPE1v2_IOMMU) = 1 with type1 loaded", "0");
        return $"fd {_container.Fd}; VFIO_GET_API_VERSION = {version}; VFIO_CHECK_EXTENSION(VFIO_TYPE1v2_IOMMU) = {(v2 ? 1 : 0)}";
    }

    private string OpenGroup()
    {
        _group = new VfioGroupFd(_p, _groupId);
        VfioGroupFlags flags = _group.GetStatus();
        CheckEqual(flags, VfioGroupFlags.Viable, "the group status (VIABLE, no CONTAINER_SET yet)");
        return $"/dev/vfio/{_groupId}: fd {_group.Fd}; status {flags}";
    }

    private string SetContainer()
    {
        _group!.SetContainer(_container!);
        VfioGroupFlags flags = _group.GetStatus();
        CheckEqual(flags, VfioGroupFlags.Viable | VfioGroupFlags.ContainerSet, "the group status");
        return $"group {_groupId} is in container fd {_container!.Fd}; status {flags}";
    }

    private string SetIommu()
    {
        _container!.SetIommu(VfioExtension.Type1v2);
        IommuDomainType? type = _edu.IommuGroup!.Domain?.Type;
        Check(type == IommuDomainType.Unmanaged, "the group is attached to an unmanaged (vfio-owned) domain", type is null ? "no domain" : $"a {type} domain");
        return $"type1 attached group {_groupId} to an unmanaged IOMMU domain";
    }

    private string IommuInfo()
    {
        VfioIommuInfo info = _container!.GetIommuInfo();
        Check((info.Flags & VfioType1Flags.InfoPgsizes) != 0 && info.IovaPgsizes != 0, "GET_INFO reports page sizes", $"flags {info.Flags}, iova_pgsizes {Hex(info.IovaPgsizes)}");
        Check(info.IovaRanges.Count > 0, "GET_INFO carries the IOVA_RANGE capability", "no IOVA ranges");
        Check(info.DmaAvail is not null, "GET_INFO carries the DMA_AVAIL capability", "no dma_avail");
        string sizes = string.Join(", ", Enumerable.Range(0, 64).Where(b => ((info.IovaPgsizes >> b) & 1) != 0).Select(b => Size(1UL << b)));
        string ranges = string.Join(", ", info.IovaRanges.Select(r => $"[{Hex(r.Start)}, {Hex(r.End)}]"));
        return $"iova_pgsizes {Hex(info.IovaPgsizes)} ({sizes})\nIOVA ranges {ranges}\ndma_avail {info.DmaAvail}";
    }

    private string MapBuffer()
    {
        _va = VfioSim.Allocate(_p, BufferSize).Address;
        uint before = _container!.GetIommuInfo().DmaAvail ?? 0;
        long lockedBefore = _p.Mm.LockedVm;
        _container.MapDma(_va, Iova, BufferSize);
        uint after = _container.GetIommuInfo().DmaAvail ?? 0;
        long locked = _p.Mm.LockedVm - lockedBefore;
        CheckEqual(after, before - 1, "dma_avail after one MAP_DMA");
        CheckEqual(locked, (long)(BufferSize / PhysMem.PageSize), "the pages MAP_DMA charges to locked_vm");
        return $"user va {Hex(_va)} -> IOVA {Hex(Iova)}, {Size(BufferSize)}, READ | WRITE\n" +
            $"pinned and charged to the process's locked_vm: +{locked} pages\ndma_avail {before} -> {after}";
    }

    private string GetDevice()
    {
        _device = _group!.GetDeviceFd(_edu.Name);
        VfioDeviceInfo info = _device.GetInfo().Info;
        Check((info.Flags & VfioDeviceFlags.Pci) != 0, "the device is a PCI device (VFIO_DEVICE_FLAGS_PCI)", $"flags {info.Flags}");
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
                CheckEqual(r.Offset, (ulong)VfioPciIndex.IndexToOffset(i), $"region {i}'s offset (index << 40)");
                sb.Append($"{i} {name,-6} size {Hex(r.Size),-9} offset {Hex(r.Offset),-15} flags {r.Flags}\n");
            }
            catch (VfioException e) when (i == VfioPciIndex.Vga && e.Errno == Errno.EINVAL)
            {
                sb.Append($"{i} {name,-6} EINVAL (edu is not a VGA device)\n");
            }
        }

        VfioRegionInfo bar0 = _device.GetRegionInfo(0).Info;
        CheckEqual(bar0.Size, (ulong)EduDevice.MmioSize, "BAR0's size");
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

        CheckEqual(_device.GetIrqInfo(0).Count, 1u, "edu's INTx line count");
        return sb.ToString().TrimEnd('\n');
    }

    private string ResetDevice()
    {
        _device!.Reset();
        uint ident = _device.ReadRegion32(VfioPciIndex.Bar0, EduDevice.RegIdentification);
        Check(ident == EduDevice.Identification, $"BAR0's identification register reads {Hex(EduDevice.Identification)}", Hex(ident));
        ushort cmd = _device.ReadConfig16(PciRegs.Command);
        _device.WriteConfig16(PciRegs.Command, (ushort)(cmd | PciRegs.CommandMaster | PciRegs.CommandMemory));
        ushort now = _device.ReadConfig16(PciRegs.Command);
        Check((now & PciRegs.CommandMaster) != 0, "PCI_COMMAND keeps the bus master bit once set", $"PCI_COMMAND 0x{now:x4}");
        return $"reset done; BAR0 identification register (pread of region 0 at 0x0) = 0x{ident:x8}\n" +
            $"PCI_COMMAND (config region at 0x4): 0x{cmd:x4} -> 0x{now:x4} (memory space and bus master enabled, so edu may DMA)";
    }

    private string MapBar0()
    {
        _bar0 = _device!.MmapRegion(VfioPciIndex.Bar0, 0, EduDevice.MmioSize);
        uint ident = _bar0.Read32(EduDevice.RegIdentification);
        Check(ident == EduDevice.Identification, $"a load of BAR0+0x0 through the mapping reads {Hex(EduDevice.Identification)}", Hex(ident));
        const uint probe = 0x12345678;
        _bar0.Write32(EduDevice.RegLiveness, probe);
        uint inverse = _bar0.Read32(EduDevice.RegLiveness);
        CheckEqual(inverse, ~probe, "edu's liveness register after a store of 0x12345678 (its bitwise inverse)");
        return $"mmap(region 0, {Size((ulong)EduDevice.MmioSize)}, MAP_SHARED) = {Hex(_bar0.Address)}; the first access faulted the page in\n" +
            $"load  BAR0+0x0 (identification) = 0x{ident:x8}\n" +
            $"store BAR0+0x4 (liveness) = {Hex(probe)}; load = {Hex(inverse)} (the inverse, so edu is alive)";
    }

    private string EnableMsi()
    {
        _msi = _p.Eventfd(0, EventFdContext.EFD_NONBLOCK);
        Check(_msi >= 0, "eventfd() gives an fd", Describe(_msi));
        _device!.SetIrqEventfd(VfioPciIndex.IrqMsi, _msi);
        Check(_edu.MsiEnabled, "edu's MSI capability is enabled by vfio-pci", "MSI is off");
        Span<byte> count = stackalloc byte[8];
        long r = _p.Read(_msi, count);
        CheckEqual(r, (long)Errno.EAGAIN.Negative(), "a read of the eventfd before any interrupt (EAGAIN: nothing signalled)");
        return $"eventfd(0, EFD_NONBLOCK) = fd {_msi}\n" +
            $"VFIO_DEVICE_SET_IRQS(MSI, ACTION_TRIGGER | DATA_EVENTFD, start 0, count 1, [{_msi}])\n" +
            $"edu's MSI is on: vfio-pci took vector {MsiVector()} of the interrupt controller (\"{_sim.Machine.Interrupts.VectorName(MsiVector())}\"); the eventfd is quiet (EAGAIN)";
    }

    // ---- The DMA: edu's engine programmed through BAR0, the bus address is the IOVA.

    private string DmaIn()
    {
        byte[] pattern = Pattern();
        int w = _p.Mm.WriteUser(_va, pattern);
        Check(w == 0, "the user buffer is writable", Describe(w));
        int rc = Dma(Iova, EduDevice.DmaBufferStart, EduDevice.DmaCmdStart | EduDevice.DmaCmdIrq, out string irq);
        Check(rc == 0, "the transfer completes without error", Describe(rc));
        byte[] inEdu = ((EduDevice)_edu).CopyBuffer();
        Check(inEdu.AsSpan().SequenceEqual(pattern), "edu's buffer holds the user's bytes", $"\"{Ascii(inEdu)}\"");
        return $"wrote {DmaBytes} bytes of \"{Greeting.Trim()}…\" at user va {Hex(_va)}\n" +
            $"BAR0 (stores through the mapping): src {Hex(Iova)} (IOVA), dst {Hex(EduDevice.DmaBufferStart)}, count {Hex(DmaBytes)}, cmd {Hex(EduDevice.DmaCmdStart | EduDevice.DmaCmdIrq)} (start, interrupt when done)\n" +
            irq + "\n" +
            $"edu's buffer now starts with \"{Ascii(inEdu)}\"";
    }

    private string DmaOut()
    {
        int rc = Dma(EduDevice.DmaBufferStart, Iova + BackOffset, EduDevice.DmaCmdStart | EduDevice.DmaCmdToRam | EduDevice.DmaCmdIrq, out string irq);
        Check(rc == 0, "the transfer completes without error", Describe(rc));
        byte[] got = new byte[DmaBytes];
        int r = _p.Mm.ReadUser(_va + BackOffset, got);
        Check(r == 0, "the user buffer is readable", Describe(r));
        Check(got.AsSpan().SequenceEqual(Pattern()), "the bytes at the user buffer are the ones edu sent", $"\"{Ascii(got)}\"");
        return $"BAR0: src {Hex(EduDevice.DmaBufferStart)}, dst {Hex(Iova + BackOffset)} (IOVA), count {Hex(DmaBytes)}, cmd {Hex(EduDevice.DmaCmdStart | EduDevice.DmaCmdToRam | EduDevice.DmaCmdIrq)}\n" +
            irq + "\n" +
            $"bytes arrived: {DmaBytes} bytes at user va {Hex(_va + BackOffset)}: \"{Ascii(got)}\"";
    }

    private string Unmap()
    {
        long lockedBefore = _p.Mm.LockedVm;
        ulong unmapped = _container!.UnmapDma(Iova, BufferSize);
        long released = lockedBefore - _p.Mm.LockedVm;
        CheckEqual(unmapped, BufferSize, "the size UNMAP_DMA reports unmapped");
        CheckEqual(released, (long)(BufferSize / PhysMem.PageSize), "the pages UNMAP_DMA takes off locked_vm");
        return $"unmapped {Size(unmapped)} at IOVA {Hex(Iova)}; unpinned, locked_vm -{released} pages";
    }

    private string DmaFaults()
    {
        IommuFaultLog log = _sim.Machine.Iommu!.Hardware.Faults;
        long before = log.Total;
        int rc = Dma(EduDevice.DmaBufferStart, Iova + BackOffset, EduDevice.DmaCmdStart | EduDevice.DmaCmdToRam | EduDevice.DmaCmdIrq, out _);
        Check(rc == Errno.EFAULT.Negative(), "the transfer fails with EFAULT", Describe(rc));
        Check(log.Total > before, "the IOMMU records a fault", "no new entry in the fault log");
        IommuFault f = log.Snapshot()[^1];
        Check(f.Device == _edu.Name && f.Iova == Iova + BackOffset && f.Reason == IommuFaultReason.NotPresent,
            $"a fault of {_edu.Name} at IOVA {Hex(Iova + BackOffset)}, reason NotPresent", f.ToString());
        return $"edu: {((EduDevice)_edu).LastDmaError}\n" +
            $"IOMMU fault log, new entry: device {f.Device}, iova {Hex(f.Iova)}, {f.Access}, reason {f.Reason}, domain {f.DomainId}, at t={(f.TimeNs / 1e9).ToString("0.000", CultureInfo.InvariantCulture)} s";
    }

    private string CloseFds()
    {
        _device!.DisableIrqs(VfioPciIndex.IrqMsi);
        Check(!_edu.MsiEnabled, "SET_IRQS(MSI, DATA_NONE, count 0) turns edu's MSI off", "MSI is still on");
        _bar0!.Dispose();
        _bar0 = null;
        Check(_p.Close(_msi) == 0, "the eventfd closes", "close failed");
        _device!.Dispose();
        _group!.Dispose();
        _container!.Dispose();
        (_device, _group, _container) = (null, null, null);
        IommuDomainType? type = _edu.IommuGroup!.Domain?.Type;
        Check(type != IommuDomainType.Unmanaged, "the group leaves vfio's domain", "still in the unmanaged domain");
        return $"VFIO_DEVICE_SET_IRQS(MSI, ACTION_TRIGGER | DATA_NONE, count 0): MSI off; munmap of BAR0; eventfd closed\n" +
            $"closed the device, group and container fds; group {_groupId} is back in its default domain ({type?.SysfsName() ?? "none"})";
    }

    private string Unbind()
    {
        string bdf = _edu.Name;
        _sim.SysfsWrite($"/sys/bus/pci/drivers/{VfioPciDriver.DriverName}/unbind", bdf, _p);
        string? after = _sim.DriverOf(bdf);
        Check(after is null, $"{bdf} has no driver after the unbind", $"bound to {after}");
        Check(!_sim.Machine.Vfs.Exists($"/dev/vfio/{_groupId}"), $"/dev/vfio/{_groupId} is gone", "the node is still there");
        _sim.SysfsWrite($"/sys/bus/pci/devices/{bdf}/driver_override", "", _p);
        _sim.SysfsWrite("/sys/bus/pci/drivers_probe", bdf, _p);
        string? now = _sim.DriverOf(bdf);
        Check(now == _hostDriver, $"{bdf} is back on {_hostDriver}", now is null ? "no driver" : $"bound to {now}");
        return $"echo {bdf} > /sys/bus/pci/drivers/{VfioPciDriver.DriverName}/unbind; /dev/vfio/{_groupId} is gone\n" +
            $"cleared driver_override and reprobed: {bdf} is bound to {now} again";
    }

    /// <summary>
    /// Programs one edu transfer through the BAR0 mapping and waits for its completion
    /// interrupt: poll the MSI eventfd (virtual time passes while the engine runs), read the
    /// count, read and acknowledge edu's interrupt status. Returns edu's result.
    /// </summary>
    private int Dma(ulong src, ulong dst, ulong cmd, out string irq)
    {
        VfioRegionMapping bar = _bar0!;
        bar.Write64(EduDevice.RegDmaSource, src);
        bar.Write64(EduDevice.RegDmaDestination, dst);
        bar.Write64(EduDevice.RegDmaCount, DmaBytes);
        bar.Write64(EduDevice.RegDmaCommand, cmd);
        Span<PollFd> fds = [new PollFd(_msi, PollEvents.POLLIN)];
        long t0 = _sim.Kernel.Clock.NowNs;
        int ready = _p.Poll(fds, 10_000);
        long waited = (_sim.Kernel.Clock.NowNs - t0) / 1_000_000;
        Check(ready == 1 && (fds[0].REvents & PollEvents.POLLIN) != 0, "the MSI eventfd becomes readable within 10 s of virtual time", ready == 0 ? "poll timed out" : Describe(ready));
        Span<byte> count = stackalloc byte[8];
        long r = _p.Read(_msi, count);
        CheckEqual(r, 8L, "the eventfd read's length");
        ulong n = BitConverter.ToUInt64(count);
        CheckEqual(n, 1UL, "the eventfd count (one MSI per transfer)");
        uint status = bar.Read32(EduDevice.RegIrqStatus);
        Check((status & EduDevice.IrqDma) != 0, $"edu's interrupt status has the DMA bit {Hex(EduDevice.IrqDma)}", Hex(status));
        bar.Write32(EduDevice.RegIrqAck, status);
        irq = $"poll(eventfd) ready after {waited} ms of virtual time; read = {n} (one MSI); interrupt status {Hex(status)} acknowledged";
        return ((EduDevice)_edu).LastDmaResult;
    }

    /// <summary>The controller vector vfio-pci allocated for edu's MSI (-1 if none).</summary>
    private int MsiVector()
    {
        string name = $"vfio-msi({_edu.Name})";
        for (int v = InterruptController.FirstVector; v < InterruptController.VectorCount; v++)
        {
            if (_sim.Machine.Interrupts.VectorName(v) == name)
            {
                return v;
            }
        }

        return -1;
    }

    private static byte[] Pattern()
    {
        byte[] b = new byte[DmaBytes];
        byte[] g = Encoding.ASCII.GetBytes(Greeting);
        for (int i = 0; i < b.Length; i++)
        {
            b[i] = g[i % g.Length];
        }

        return b;
    }

    private static string Ascii(byte[] b) => Encoding.ASCII.GetString(b, 0, Greeting.Length).Trim();

    private static string Describe(long rc) => rc == 0 ? "success" : ErrnoExtensions.FromReturn(rc).Describe();

    private static string Hex(ulong v) => string.Create(CultureInfo.InvariantCulture, $"0x{v:x}");

    private static string Size(ulong bytes) => bytes switch
    {
        >= 1UL << 30 when bytes % (1UL << 30) == 0 => $"{bytes >> 30} GiB",
        >= 1UL << 20 when bytes % (1UL << 20) == 0 => $"{bytes >> 20} MiB",
        >= 1UL << 10 when bytes % (1UL << 10) == 0 => $"{bytes >> 10} KiB",
        _ => $"{bytes} B",
    };
}
