// Models the PCI bus type of drivers/pci/pci-driver.c and the driver-binding attributes
// of drivers/pci/pci-sysfs.c and drivers/base/driver.c (driver_set_override) (v6.12):
// matching by dynamic ids first, then the static table (override-only entries only when
// driver_override names the driver), then "any device" when driver_override names it;
// new_id / remove_id; driver_override; vendor, device, class and friends.

using System.Globalization;
using Vfio.Kernel;
using Vfio.Platform.Base;
using Vfio.Platform.Fs;

namespace Vfio.Platform.Pci;

/// <summary>struct pci_device_id.</summary>
/// <param name="Vendor">Vendor id or <see cref="Any"/>.</param>
/// <param name="Device">Device id or <see cref="Any"/>.</param>
/// <param name="SubVendor">Subsystem vendor or <see cref="Any"/>.</param>
/// <param name="SubDevice">Subsystem device or <see cref="Any"/>.</param>
/// <param name="Class">Class code (base, sub, prog-if).</param>
/// <param name="ClassMask">Bits of <paramref name="Class"/> that must match.</param>
/// <param name="DriverData">Opaque data for the driver.</param>
/// <param name="OverrideOnly">Matches only when driver_override names the driver (vfio-pci's catch-all).</param>
public sealed record PciDeviceId(
    uint Vendor,
    uint Device,
    uint SubVendor = PciDeviceId.Any,
    uint SubDevice = PciDeviceId.Any,
    uint Class = 0,
    uint ClassMask = 0,
    ulong DriverData = 0,
    bool OverrideOnly = false)
{
    /// <summary>PCI_ANY_ID.</summary>
    public const uint Any = 0xffffffff;

    /// <summary>The dummy id a driver gets when matched through driver_override alone.</summary>
    public static PciDeviceId AnyDevice { get; } = new(Any, Any);

    /// <summary>PCI_DEVICE_CLASS(class, mask).</summary>
    public static PciDeviceId ForClass(uint @class, uint mask) => new(Any, Any, Any, Any, @class, mask);

    /// <summary>pci_match_one_device().</summary>
    public bool Matches(PciIdentity dev)
        => (Vendor == Any || Vendor == dev.Vendor)
        && (Device == Any || Device == dev.Device)
        && (SubVendor == Any || SubVendor == dev.SubsystemVendor)
        && (SubDevice == Any || SubDevice == dev.SubsystemDevice)
        && ((Class ^ dev.Class) & ClassMask) == 0;
}

/// <summary>The identification registers of a PCI function.</summary>
/// <param name="Vendor">Vendor id.</param>
/// <param name="Device">Device id.</param>
/// <param name="SubsystemVendor">Subsystem vendor id.</param>
/// <param name="SubsystemDevice">Subsystem id.</param>
/// <param name="Class">24-bit class code: base class, subclass, programming interface.</param>
/// <param name="Revision">Revision id.</param>
public readonly record struct PciIdentity(uint Vendor, uint Device, uint SubsystemVendor, uint SubsystemDevice, uint Class, byte Revision = 0);

/// <summary>struct pci_driver.</summary>
public abstract class PciDriver : DeviceDriver
{
    private readonly List<PciDeviceId> _dynIds = [];

    /// <summary>A driver with a static id table.</summary>
    protected PciDriver(string name, IEnumerable<PciDeviceId>? idTable = null)
        : base(name)
    {
        IdTable = [.. idTable ?? []];
    }

    /// <summary>The static id table.</summary>
    public IReadOnlyList<PciDeviceId> IdTable { get; }

    /// <summary>Ids added through new_id, a snapshot.</summary>
    public IReadOnlyList<PciDeviceId> DynamicIds
    {
        get
        {
            KSpinLock? l = (Bus as PciBus)?.DynIdLock;
            l?.Lock();
            try
            {
                return [.. _dynIds];
            }
            finally
            {
                l?.Unlock();
            }
        }
    }

    internal List<PciDeviceId> DynIdsLocked => _dynIds;

    /// <summary>-&gt;probe() with the matching id.</summary>
    public abstract int Probe(PciDevice dev, PciDeviceId id);

    /// <summary>-&gt;remove().</summary>
    public virtual void Remove(PciDevice dev)
    {
    }

    /// <summary>Whether the driver has -&gt;sriov_configure() (sriov_numvfs is -ENOENT without it).</summary>
    public virtual bool HasSriovConfigure => false;

    /// <summary>-&gt;sriov_configure(): enable <paramref name="numVfs"/> VFs (the count enabled, or -errno) or disable them (0). Runs under the PF's device_lock.</summary>
    public virtual int SriovConfigure(PciDevice dev, int numVfs) => Errno.ENOENT.Negative();

    /// <inheritdoc/>
    public sealed override int Probe(SimDevice dev) => throw new InvalidOperationException("PCI drivers are probed through the PCI bus with their matching id");

    /// <inheritdoc/>
    public sealed override void Remove(SimDevice dev) => Remove((PciDevice)dev);
}

/// <summary>pci_bus_type.</summary>
public sealed class PciBus : BusType
{
    internal PciBus(SimMachine machine)
        : base(machine, "pci")
    {
        DynIdLock = new KSpinLock(machine.Kernel, "pci.dynids.lock");
    }

    // Protects every PCI driver's dynamic id list (drv->dynids.lock).
    internal KSpinLock DynIdLock { get; }

    /// <summary>
    /// pci_match_device(): the id under which <paramref name="drv"/> takes a function with
    /// identity <paramref name="dev"/> and <paramref name="driverOverride"/>, or null.
    /// </summary>
    public PciDeviceId? MatchDevice(PciDriver drv, PciIdentity dev, string? driverOverride)
    {
        ArgumentNullException.ThrowIfNull(drv);

        // device_match_driver_override(): 1 names this driver, 0 names another, -1 none set.
        int ov = driverOverride is null ? -1 : driverOverride == drv.Name ? 1 : 0;
        if (ov == 0)
        {
            return null;
        }

        DynIdLock.Lock();
        try
        {
            foreach (PciDeviceId id in drv.DynIdsLocked)
            {
                if (id.Matches(dev))
                {
                    return id;
                }
            }
        }
        finally
        {
            DynIdLock.Unlock();
        }

        foreach (PciDeviceId id in drv.IdTable)
        {
            if (id.Matches(dev) && (!id.OverrideOnly || ov > 0))
            {
                return id;
            }
        }

        return ov > 0 ? PciDeviceId.AnyDevice : null;
    }

    /// <inheritdoc/>
    public override int Match(SimDevice dev, DeviceDriver drv)
        => dev is PciDevice p && drv is PciDriver d && MatchDevice(d, p.Identity, p.DriverOverride) is not null ? 1 : 0;

    /// <summary>pci_dev_pm_ops: the PCI core's runtime PM callbacks, which run the driver's.</summary>
    public override DevPmOps? Pm => PciDevice.BusRuntimePmOps;

    /// <summary>
    /// pci_device_probe() → local_pci_probe(): the function is resumed and counted for the
    /// probe (a driver doing runtime PM drops that count itself); a failed probe drops it.
    /// </summary>
    protected override int BusProbe(SimDevice dev, DeviceDriver drv)
    {
        var pdev = (PciDevice)dev;
        var pdrv = (PciDriver)drv;
        if (!pdev.CanProbe)
        {
            return Errno.ENODEV.Negative(); // a VF whose PF has sriov_drivers_autoprobe off
        }

        PciDeviceId? id = MatchDevice(pdrv, pdev.Identity, pdev.DriverOverride);
        if (id is null)
        {
            return Errno.ENODEV.Negative();
        }

        pdev.Power.GetSync();
        int rc = pdrv.Probe(pdev, id);
        if (rc < 0)
        {
            pdev.Power.PutSync();
        }

        return rc;
    }

    /// <summary>
    /// pci_device_remove(): the function is resumed and counted around -&gt;remove, then the
    /// count local_pci_probe() took is dropped.
    /// </summary>
    protected override void BusRemove(SimDevice dev, DeviceDriver drv)
    {
        var pdev = (PciDevice)dev;
        pdev.Power.GetSync();
        ((PciDriver)drv).Remove(pdev);
        pdev.Power.PutNoidle();
        pdev.Power.PutSync();
    }

    // ---- sysfs.

    /// <inheritdoc/>
    protected override void AddDeviceAttributes(SimDevice dev, VfsDir dir)
    {
        var p = (PciDevice)dev;
        Sysfs.SysfsTree fs = Machine.Sysfs;
        const int ro = 0x124; // 0444
        fs.CreateFile(dir, "vendor", ro, () => Hex(p.Identity.Vendor, 4));
        fs.CreateFile(dir, "device", ro, () => Hex(p.Identity.Device, 4));
        fs.CreateFile(dir, "subsystem_vendor", ro, () => Hex(p.Identity.SubsystemVendor, 4));
        fs.CreateFile(dir, "subsystem_device", ro, () => Hex(p.Identity.SubsystemDevice, 4));
        fs.CreateFile(dir, "class", ro, () => Hex(p.Identity.Class, 6));
        fs.CreateFile(dir, "revision", ro, () => Hex(p.Identity.Revision, 2));
        fs.CreateFile(dir, "driver_override", 0x1a4 /* 0644 */, () => (p.DriverOverride ?? "(null)") + "\n", s => DriverOverrideStore(p, s));
        fs.CreateFile(dir, "power_state", ro, () => p.PowerStateName + "\n");
        fs.CreateFile(dir, "irq", ro, () => string.Create(CultureInfo.InvariantCulture, $"{p.Irq}\n"));
        fs.CreateFile(dir, "resource", ro, () => ResourceShow(p));
        p.AddSriovAttributes(dir);
        fs.CreateBinFile(dir, "config", 0x1a4 /* 0644 */, p.ConfigSize, (pos, buf) => ConfigRead(p, pos, buf), (pos, buf) => ConfigWrite(p, pos, buf));

        // The reset attributes exist only for functions with a reset method (pci_reset_supported).
        if (p.ResetSupported)
        {
            fs.CreateFile(dir, "reset", 0x80 /* 0200 */, null, p.ResetStore);
            fs.CreateFile(dir, "reset_method", 0x1a4 /* 0644 */, p.ResetMethodShow, p.ResetMethodStore);
        }
    }

    /// <summary>
    /// resource_show(): start, end and flags of each resource — 13 lines for an endpoint
    /// (BARs, ROM, IOV), 17 for a bridge (plus its windows, not modelled here, so zero). The
    /// flags are decode_bar()'s: the BAR's low bits with IORESOURCE_IO/MEM, PREFETCH, MEM_64
    /// and SIZEALIGN; the ROM is MEM|PREFETCH|READONLY|SIZEALIGN. A BAR firmware did not
    /// place shows start 0, end size-1 and IORESOURCE_UNSET.
    /// </summary>
    private static string ResourceShow(PciDevice p)
    {
        const long io = 0x100, mem = 0x200, prefetch = 0x2000, readOnly = 0x4000, sizeAlign = 0x40000, mem64 = 0x100000, unset = 0x20000000;
        var sb = new System.Text.StringBuilder();
        int lines = p.Subordinate is null ? 13 : 17;
        for (int i = 0; i < lines; i++)
        {
            long start = 0, end = 0, flags = 0;
            if (i <= PciDevice.RomBarIndex && p.Bars[i] is { } bar)
            {
                flags = i == PciDevice.RomBarIndex
                    ? mem | prefetch | readOnly | sizeAlign
                    : bar.FlagBits | sizeAlign | (bar.Kind == PciBarKind.Io ? io : mem | (bar.Prefetchable ? prefetch : 0) | (bar.Kind == PciBarKind.Memory64 ? mem64 : 0));
                start = bar.ResourceStart;
                end = start + bar.Size - 1;
                if (bar.ResourceStart == 0)
                {
                    flags |= unset;
                }
            }

            sb.Append(CultureInfo.InvariantCulture, $"0x{start:x16} 0x{end:x16} 0x{flags:x16}\n");
        }

        return sb.ToString();
    }

    /// <summary>
    /// pci_read_config(): the whole space for CAP_SYS_ADMIN, the first 64 bytes for anyone
    /// else; read in naturally aligned pieces as the kernel does.
    /// </summary>
    private static long ConfigRead(PciDevice p, long pos, Span<byte> buf)
    {
        int size = Proc.SimProcess.Current?.Credentials.Capable(Proc.Capabilities.CAP_SYS_ADMIN) == false ? 64 : p.ConfigSize;
        if (pos >= size)
        {
            return 0;
        }

        int count = (int)Math.Min(buf.Length, size - pos);
        int off = (int)pos;
        int i = 0;
        while (i < count)
        {
            int left = count - i;
            int width = (off & 3) == 0 && left >= 4 ? 4 : (off & 1) == 0 && left >= 2 ? 2 : 1;
            uint v = p.ReadConfig(off, width);
            for (int b = 0; b < width; b++)
            {
                buf[i + b] = (byte)(v >> (8 * b));
            }

            i += width;
            off += width;
        }

        return count;
    }

    /// <summary>pci_write_config(): writes in naturally aligned pieces (root only, by the file's mode).</summary>
    private static long ConfigWrite(PciDevice p, long pos, ReadOnlySpan<byte> buf)
    {
        if (pos >= p.ConfigSize)
        {
            return 0;
        }

        int count = (int)Math.Min(buf.Length, p.ConfigSize - pos);
        int off = (int)pos;
        int i = 0;
        while (i < count)
        {
            int left = count - i;
            int width = (off & 3) == 0 && left >= 4 ? 4 : (off & 1) == 0 && left >= 2 ? 2 : 1;
            uint v = 0;
            for (int b = 0; b < width; b++)
            {
                v |= (uint)buf[i + b] << (8 * b);
            }

            p.WriteConfig(off, v, width);
            i += width;
            off += width;
        }

        return count;
    }

    /// <summary>driver_set_override(): sets or clears driver_override; the write's byte count or -EINVAL.</summary>
    private static long DriverOverrideStore(PciDevice p, string buf)
    {
        if (buf.Length >= 4096 - 1)
        {
            return Errno.EINVAL.Negative();
        }

        string s = buf;
        int nul = s.IndexOf('\0', StringComparison.Ordinal);
        if (nul >= 0)
        {
            s = s[..nul];
        }

        string? value;
        if (s.Length == 0)
        {
            value = null;
        }
        else
        {
            int nl = s.IndexOf('\n', StringComparison.Ordinal);
            value = nl == 0 ? null : nl > 0 ? s[..nl] : s;
        }

        p.Lock();
        p.DriverOverride = value;
        p.Unlock();
        return buf.Length;
    }

    /// <inheritdoc/>
    protected override void AddDriverAttributes(DeviceDriver drv, VfsDir dir)
    {
        var p = (PciDriver)drv;
        Machine.Sysfs.CreateFile(dir, "new_id", 0x80, null, s => NewIdStore(p, s));
        Machine.Sysfs.CreateFile(dir, "remove_id", 0x80, null, s => RemoveIdStore(p, s));
    }

    private long NewIdStore(PciDriver drv, string buf)
    {
        ulong[] f = ScanHex(buf, 7, out int fields);
        if (fields < 2)
        {
            return Errno.EINVAL.Negative();
        }

        var id = new PciDeviceId(
            (uint)f[0],
            (uint)f[1],
            fields > 2 ? (uint)f[2] : PciDeviceId.Any,
            fields > 3 ? (uint)f[3] : PciDeviceId.Any,
            fields > 4 ? (uint)f[4] : 0,
            fields > 5 ? (uint)f[5] : 0,
            fields > 6 ? f[6] : 0);
        if (fields != 7)
        {
            var probe = new PciIdentity(id.Vendor, id.Device, id.SubVendor, id.SubDevice, id.Class);
            if (MatchDevice(drv, probe, null) is not null)
            {
                return Errno.EEXIST.Negative();
            }
        }

        // Only accept driver_data values that match an existing id_table entry.
        if (drv.IdTable.Count > 0 && !drv.IdTable.Any(t => t.DriverData == id.DriverData))
        {
            return Errno.EINVAL.Negative();
        }

        AddDynamicId(drv, id);
        return buf.Length;
    }

    /// <summary>
    /// pci_add_dynid(): adds <paramref name="id"/> to <paramref name="drv"/>'s dynamic ids and
    /// binds every unbound device it now matches: what new_id does after its duplicate and
    /// driver_data checks, and what drivers' <c>ids=</c> module parameters do without them.
    /// 0 or -errno of driver_attach.
    /// </summary>
    public int AddDynamicId(PciDriver drv, PciDeviceId id)
    {
        ArgumentNullException.ThrowIfNull(drv);
        ArgumentNullException.ThrowIfNull(id);
        DynIdLock.Lock();
        drv.DynIdsLocked.Add(id);
        DynIdLock.Unlock();
        return DriverAttach(drv);
    }

    private long RemoveIdStore(PciDriver drv, string buf)
    {
        ulong[] f = ScanHex(buf, 6, out int fields);
        if (fields < 2)
        {
            return Errno.EINVAL.Negative();
        }

        uint vendor = (uint)f[0], device = (uint)f[1];
        uint subvendor = fields > 2 ? (uint)f[2] : PciDeviceId.Any, subdevice = fields > 3 ? (uint)f[3] : PciDeviceId.Any;
        uint cls = fields > 4 ? (uint)f[4] : 0, mask = fields > 5 ? (uint)f[5] : 0;
        DynIdLock.Lock();
        try
        {
            int i = drv.DynIdsLocked.FindIndex(d => d.Vendor == vendor && d.Device == device && d.SubVendor == subvendor
                && d.SubDevice == subdevice && d.Class == cls && d.ClassMask == mask);
            if (i < 0)
            {
                return Errno.ENODEV.Negative();
            }

            drv.DynIdsLocked.RemoveAt(i);
            return buf.Length;
        }
        finally
        {
            DynIdLock.Unlock();
        }
    }

    /// <summary>sscanf(buf, "%x %x ..."): up to <paramref name="max"/> hex fields, stopping at the first that does not parse.</summary>
    internal static ulong[] ScanHex(string buf, int max, out int fields)
    {
        var values = new ulong[max];
        fields = 0;
        int i = 0;
        while (fields < max)
        {
            while (i < buf.Length && char.IsWhiteSpace(buf[i]))
            {
                i++;
            }

            if (i + 1 < buf.Length && buf[i] == '0' && (buf[i + 1] == 'x' || buf[i + 1] == 'X'))
            {
                i += 2;
            }

            int start = i;
            while (i < buf.Length && Uri.IsHexDigit(buf[i]))
            {
                i++;
            }

            if (i == start || !ulong.TryParse(buf.AsSpan(start, Math.Min(i - start, 16)), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out ulong v))
            {
                break;
            }

            values[fields++] = v;
        }

        return values;
    }

    // ---- Devices.

    /// <summary>pci_device_add() + pci_bus_add_device(): adds <paramref name="dev"/> and probes drivers for it. 0 or -EEXIST.</summary>
    public int Add(PciDevice dev)
    {
        ArgumentNullException.ThrowIfNull(dev);
        dev.Seal();
        dev.IovInit();
        dev.InitResetMethods();
        PciBusSegment? given = dev.OnBus;
        PciBusSegment bus = given ?? Machine.PciRootBus;

        // dev->dev.parent = bus->bridge: a function's sysfs directory sits under its bridge's.
        if (bus.Self is { } bridge && dev.Parent == Machine.PciRoot)
        {
            dev.Parent = bridge;
        }

        dev.OnBus = bus;
        bus.AddDevice(dev);
        int ret = AddDevice(dev);
        if (ret != 0)
        {
            bus.RemoveDevice(dev);
            dev.OnBus = given;
        }

        return ret;
    }

    /// <summary>pci_stop_and_remove_bus_device(): unbinds the driver (its remove may block) and removes the function.</summary>
    public void Remove(PciDevice dev)
    {
        ArgumentNullException.ThrowIfNull(dev);
        RemoveDevice(dev);
        dev.UnrouteAllBars();
        dev.OnBus?.RemoveDevice(dev);
    }

    /// <inheritdoc/>
    protected override int DmaConfigure(SimDevice dev)
        => Machine.Iommu is { } iommu && dev.Driver is { DriverManagedDma: false } ? iommu.DeviceUseDefaultDomain(dev) : 0;

    /// <inheritdoc/>
    protected override void DmaCleanup(SimDevice dev)
    {
        if (Machine.Iommu is { } iommu && dev.Driver is { DriverManagedDma: false })
        {
            iommu.DeviceUnuseDefaultDomain(dev);
        }
    }

    /// <summary>The function named <paramref name="name"/> (<c>0000:01:00.0</c>), or null.</summary>
    public PciDevice? Find(string name)
    {
        SimDevice? d = FindDevice(name);
        d?.Put();
        return d as PciDevice;
    }
}
