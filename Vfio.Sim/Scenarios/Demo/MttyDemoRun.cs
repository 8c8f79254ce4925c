// One run of the mtty demo: the steps and the state they pass on (the instance, its group,
// the vfio session, the MSI eventfd, the cable). UART registers are reached as the guest's
// driver reaches them, one byte at a time through BAR0 of the vfio device (region 0 at file
// offset 0). A check that fails says what the kernel's mtty does and what happened instead.

using System.Globalization;
using System.Text;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Mdev.Samples.Mtty;
using Vfio.Platform.Fs;
using Vfio.Platform.Proc;
using static Vfio.Sim.Scenarios.ScenarioContext;

namespace Vfio.Sim.Scenarios;

internal sealed class MttyDemoRun(ScenarioContext context)
{
    private const string Parent = "mtty";
    private const string TypesDir = "/sys/class/mdev_bus/mtty/mdev_supported_types";

    // 16550A registers (offsets in BAR0) and the bits the demo uses.
    private const int Rbr = 0, Thr = 0, Ier = 1, Iir = 2, Fcr = 2, Lcr = 3, Lsr = 5;
    private const byte IerRdi = 0x01, FcrEnableAndClear = 0x07, Lcr8N1 = 0x03;
    private const byte LsrDr = 0x01, LsrThreTemt = 0x60, IirNone = 0xC1, IirRdi = 0xC4;

    private readonly VfioSim _sim = context.Sim;
    private readonly SimProcess _p = context.Sim.Spawn("mtty-demo");
    private readonly Guid _uuid = MttyDemo.Uuid;
    private int _group;
    private VfioSession? _session;
    private int _msi = -1;
    private MttyCable? _cable;

    public void Run()
    {
        bool ok = context.Step("The mtty parent and the types it offers", Types)
            && context.Step("Create an mtty-2 instance through sysfs", Create)
            && context.Step("The instance's IOMMU group and /dev/vfio node", Group)
            && context.Step("Open it through vfio: container, group, type1, device fd", Open)
            && context.Step("Config space and the two UART BARs", ConfigAndRegions)
            && context.Step("Program UART 0 and loop \"Hello\" back through its FIFO", Loopback)
            && context.Step("An eventfd for MSI: the receive interrupt fires", Msi)
            && context.Step("Attach a cable to port 0: what the guest transmits arrives at the far end", CableTransmit)
            && context.Step("Type at the far end: the MSI eventfd fires and the bytes come out of RBR", CableReceive)
            && context.Step("Detach the cable and close the fds", Close)
            && context.Step("Remove the instance: nothing is left", Remove);
        if (!ok)
        {
            _cable?.Dispose();
            _session?.Dispose();
            if (_msi >= 0)
            {
                _p.Close(_msi);
            }
        }
    }

    private string Read(string path) => _sim.SysfsRead(path, _p);

    private int Available(string type) => int.Parse(Read($"{TypesDir}/{type}/available_instances"), CultureInfo.InvariantCulture);

    private string Types()
    {
        var sb = new StringBuilder();
        IReadOnlyList<string> types = _sim.Machine.Sysfs.List(TypesDir) ?? [];
        CheckEqual(string.Join(" ", types.Order(StringComparer.Ordinal)), "mtty-1 mtty-2", $"ls {TypesDir}");
        foreach (string t in types.Order(StringComparer.Ordinal))
        {
            sb.Append(CultureInfo.InvariantCulture, $"{TypesDir}/{t}: name \"{Read($"{TypesDir}/{t}/name")}\", device_api {Read($"{TypesDir}/{t}/device_api")}, available_instances {Available(t)}\n");
        }

        CheckEqual(Read($"{TypesDir}/mtty-1/name"), "Single port serial", "mtty-1's name");
        CheckEqual(Read($"{TypesDir}/mtty-2/name"), "Dual port serial", "mtty-2's name");
        CheckEqual(Read($"{TypesDir}/mtty-2/device_api"), "vfio-pci", "mtty-2's device_api");
        CheckEqual(Available("mtty-1"), 24, "mtty-1's available_instances (24 free ports, one each)");
        CheckEqual(Available("mtty-2"), 12, "mtty-2's available_instances (24 free ports, two each)");
        return sb.Append("24 ports are free: 24 single-port or 12 dual-port instances").ToString();
    }

    private string Create()
    {
        _sim.CreateMdev(Parent, "mtty-2", _uuid, _p);
        string dev = $"/sys/bus/mdev/devices/{_uuid:D}";
        Check(_sim.Machine.Sysfs.Exists(dev), $"{dev} exists", "no such device");
        string? type = _sim.Machine.Sysfs.ReadLink($"{dev}/mdev_type");
        Check(type is not null && type.EndsWith("/mtty-2", StringComparison.Ordinal), $"{dev}/mdev_type links to the mtty-2 type", type ?? "no link");
        CheckEqual(Available("mtty-2"), 11, "mtty-2's available_instances after the create");
        CheckEqual(Available("mtty-1"), 22, "mtty-1's available_instances after the create (the pool is shared)");
        return $"echo {_uuid:D} > {TypesDir}/mtty-2/create\n" +
            $"readlink {dev}/mdev_type = {type}\n" +
            "available_instances: mtty-2 12 -> 11, mtty-1 24 -> 22 (two of the 24 ports are taken)";
    }

    private string Group()
    {
        _group = _sim.MdevGroupOf(_uuid);
        string node = $"/dev/vfio/{_group}";
        Check(_sim.Machine.Vfs.Exists(node), $"{node} exists", "no such node");
        string ig = $"/sys/kernel/iommu_groups/{_group}";
        string? name = _sim.Machine.Sysfs.Exists($"{ig}/name") ? Read($"{ig}/name") : null;
        return $"readlink /sys/bus/mdev/devices/{_uuid:D}/iommu_group: group {_group}" +
            (name is null ? "" : $" (a software group, name \"{name}\")") +
            $"\n{node} exists: an mdev has an emulated IOMMU, so its group holds only itself";
    }

    private string Open()
    {
        _session = _sim.OpenMdev(_p, _uuid);
        VfioDeviceInfo info = _session.Device.GetInfo().Info;
        Check((info.Flags & VfioDeviceFlags.Pci) != 0, "VFIO_DEVICE_GET_INFO reports a PCI device", $"flags 0x{(uint)info.Flags:x}");
        CheckEqual(info.NumRegions, 9u, "num_regions (VFIO_PCI_NUM_REGIONS)");
        CheckEqual(info.NumIrqs, 5u, "num_irqs (VFIO_PCI_NUM_IRQS)");
        return $"open /dev/vfio/vfio; open /dev/vfio/{_group}; VFIO_GROUP_SET_CONTAINER; VFIO_SET_IOMMU(VFIO_TYPE1v2_IOMMU)\n" +
            $"VFIO_GROUP_GET_DEVICE_FD(\"{_uuid:D}\")\n" +
            $"VFIO_DEVICE_GET_INFO: flags 0x{(uint)info.Flags:x} (PCI), {info.NumRegions} regions, {info.NumIrqs} irqs";
    }

    private string ConfigAndRegions()
    {
        var d = _session!.Device;
        ushort vendor = d.ReadConfig16(0), device = d.ReadConfig16(2);
        uint classRev = d.ReadConfig32(8);
        CheckEqual($"{vendor:x4}:{device:x4}", "4348:3253", "the vendor and device IDs in config space");
        CheckEqual(classRev >> 8, 0x070002u, "the class code (16550 serial)");
        VfioRegionInfo bar0 = d.GetRegionInfo(VfioPciIndex.Bar0).Info, bar1 = d.GetRegionInfo(VfioPciIndex.Bar0 + 1).Info;
        CheckEqual(bar0.Size, 8ul, "BAR0's size (one UART)");
        CheckEqual(bar1.Size, 8ul, "BAR1's size (the second UART of mtty-2)");
        Check((bar0.Flags & VfioRegionFlags.Mmap) == 0, "BAR0 is not mmap-able (mtty emulates every access)", $"flags 0x{(uint)bar0.Flags:x}");
        return $"config: {vendor:x4}:{device:x4}, class {classRev >> 8:x6} (serial, 16550)\n" +
            $"region 0 (BAR0, port 0): size {bar0.Size}, offset 0x{bar0.Offset:x}; region 1 (BAR1, port 1): size {bar1.Size}, offset 0x{bar1.Offset:x}; read/write only";
    }

    private byte Reg(int reg)
    {
        Span<byte> b = stackalloc byte[1];
        long n = _session!.Device.Read(VfioPciIndex.Bar0, reg, b);
        Check(n == 1, $"a 1-byte read of UART register {reg}", $"{n}");
        return b[0];
    }

    private void SetReg(int reg, byte value)
    {
        long n = _session!.Device.Write(VfioPciIndex.Bar0, reg, [value]);
        Check(n == 1, $"a 1-byte write of UART register {reg}", $"{n}");
    }

    private string Drain(int count)
    {
        var sb = new StringBuilder();
        for (int i = 0; i < count; i++)
        {
            Check((Reg(Lsr) & LsrDr) != 0, $"LSR shows data ready before byte {i}", "no data");
            sb.Append((char)Reg(Rbr));
        }

        return sb.ToString();
    }

    private string Loopback()
    {
        SetReg(Lcr, Lcr8N1);
        SetReg(Fcr, FcrEnableAndClear);
        SetReg(Ier, 0);
        foreach (char c in "Hello")
        {
            SetReg(Thr, (byte)c);
        }

        byte lsr = Reg(Lsr), iir = Reg(Iir);
        Check((lsr & LsrDr) != 0, "LSR shows data ready after the writes", $"LSR 0x{lsr:x2}");
        CheckEqual(iir, IirNone, "IIR with every interrupt disabled");
        string back = Drain(5);
        CheckEqual(back, "Hello", "the bytes read back from RBR");
        byte empty = Reg(Lsr);
        CheckEqual(empty & (LsrDr | LsrThreTemt), LsrThreTemt, "LSR once the FIFO is empty (THRE|TEMT, no DR)");
        return $"LCR = 0x{Lcr8N1:x2} (8N1), FCR = 0x{FcrEnableAndClear:x2} (FIFO on, cleared), IER = 0\n" +
            $"THR <- 'H' 'e' 'l' 'l' 'o'; LSR = 0x{lsr:x2} (data ready), IIR = 0x{iir:x2} (no interrupt)\n" +
            $"RBR -> \"{back}\" (the sample loops every transmitted byte into its receive FIFO); LSR = 0x{empty:x2}";
    }

    private long EventCount()
    {
        Span<byte> b = stackalloc byte[8];
        long n = _p.Read(_msi, b);
        return n == 8 ? BitConverter.ToInt64(b) : n;
    }

    private string Msi()
    {
        _msi = _p.Eventfd(0, EventFdContext.EFD_NONBLOCK);
        Check(_msi >= 0, "eventfd() succeeds", $"{_msi}");
        _session!.Device.SetIrqEventfd(VfioPciIndex.IrqMsi, _msi);
        SetReg(Ier, IerRdi);
        CheckEqual(EventCount(), (long)Errno.EAGAIN.Negative(), "the eventfd before any byte arrives (EAGAIN: no interrupt yet)");
        SetReg(Thr, (byte)'!');
        byte iir = Reg(Iir);
        CheckEqual(iir, IirRdi, "IIR with a byte received and RDI enabled");
        long count = EventCount();
        CheckEqual(count, 1L, "the MSI eventfd's count after the byte came back");
        string got = Drain(1);
        return $"VFIO_DEVICE_SET_IRQS(MSI, ACTION_TRIGGER, eventfd {_msi}); IER = 0x{IerRdi:x2} (receive data interrupt)\n" +
            $"THR <- '!': IIR = 0x{iir:x2} (receive data), read(eventfd) = {count}: the MSI fired\nRBR -> \"{got}\"";
    }

    private string CableTransmit()
    {
        _cable = _sim.Mtty!.Attach(_uuid, port: 0);
        foreach (char c in "ping")
        {
            SetReg(Thr, (byte)c);
        }

        string far = Encoding.ASCII.GetString(_cable.ReadAvailable());
        CheckEqual(far, "ping", "what the far end read");
        byte lsr = Reg(Lsr);
        CheckEqual(lsr & LsrDr, 0, "LSR's data-ready bit (the bytes left on the cable, none looped back)");
        CheckEqual(EventCount(), (long)Errno.EAGAIN.Negative(), "the MSI eventfd (nothing was received)");
        return $"sim.Mtty.Attach({_uuid:D}, port 0): the far end is a System.IO.Pipelines duplex pipe\n" +
            $"THR <- 'p' 'i' 'n' 'g'; the far end reads \"{far}\"; LSR = 0x{lsr:x2}, no interrupt";
    }

    private string CableReceive()
    {
        int accepted = _cable!.Send("pong"u8);
        CheckEqual(accepted, 4, "bytes the line accepted from the far end");
        long count = EventCount();
        Check(count >= 1, "the MSI eventfd fired for the received bytes", $"read(eventfd) = {count}");
        string got = Drain(4);
        CheckEqual(got, "pong", "the bytes read from RBR");
        return $"the far end writes \"pong\": read(eventfd) = {count} (MSI: receive data)\nRBR -> \"{got}\"";
    }

    private string Close()
    {
        MttyModule.Detach(_cable!);
        _cable = null;
        SetReg(Thr, (byte)'x');
        string back = Drain(1);
        CheckEqual(back, "x", "the byte looped back once the cable is detached");
        _session!.Device.DisableIrqs(VfioPciIndex.IrqMsi);
        _session.Dispose();
        _session = null;
        _p.Close(_msi);
        _msi = -1;
        return "detach: port 0 loops back again (THR <- 'x', RBR -> \"x\")\n" +
            "VFIO_DEVICE_SET_IRQS(MSI, DATA_NONE, count 0); close the device, group and container fds and the eventfd";
    }

    private string Remove()
    {
        _sim.RemoveMdev(_uuid, _p);
        string dev = $"/sys/bus/mdev/devices/{_uuid:D}";
        Check(!_sim.Machine.Sysfs.Exists(dev), $"{dev} is gone", "it is still there");
        Check(!_sim.Machine.Vfs.Exists($"/dev/vfio/{_group}"), $"/dev/vfio/{_group} is gone", "it is still there");
        CheckEqual(Available("mtty-2"), 12, "mtty-2's available_instances after the remove");
        CheckEqual(Available("mtty-1"), 24, "mtty-1's available_instances after the remove");
        CheckEqual(_sim.Mdev!.Devices.Count, 0, "mediated devices left");
        IReadOnlyList<string> problems = _sim.CheckInvariants();
        Check(problems.Count == 0, "every invariant holds (no pinned page, no leaked reference)", string.Join("; ", problems));
        return $"echo 1 > {dev}/remove\n" +
            $"{dev} and /dev/vfio/{_group} are gone; available_instances back to 12 (mtty-2) and 24 (mtty-1); no pins, no leaks";
    }
}
