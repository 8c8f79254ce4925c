// Models struct bus_type with drivers/base/bus.c, drivers/base/dd.c and the device_add /
// device_del parts of drivers/base/core.c (v6.12).
//
// Binding, in the kernel's order (really_probe): dev->driver = drv; dma_configure (a
// kernel driver in a group owned by user space fails here, -EBUSY); BIND_DRIVER notifier
// and the sysfs links; ->probe; BOUND_DRIVER. A probe failure unwinds exactly that:
// links removed, DRIVER_NOT_BOUND, dma_cleanup, dev->driver = NULL. Unbinding
// (__device_release_driver): links removed, UNBIND_DRIVER, ->remove (in the caller's
// task, under device_lock — it may block, vfio makes it block), dma_cleanup,
// UNBOUND_DRIVER.
//
// sysfs writes, with the kernel's errnos: bind (-ENODEV unknown device or no match,
// -EBUSY already bound, probe errors as -errno), unbind (-ENODEV unless bound to this
// driver), drivers_probe (-ENODEV unknown device; -EINVAL only for a negative attach error).
//
// Locks: ListLock (klist locks) protects the device and driver lists and every driver's
// bound list; it is never held across probe or remove. device_lock is taken per device.

using System.Globalization;
using Vfio.Kernel;
using Vfio.Platform.Fs;

namespace Vfio.Platform.Base;

/// <summary>Bus notifier actions (BUS_NOTIFY_*).</summary>
public enum BusNotification : ulong
{
    AddDevice = 0x1,
    DelDevice = 0x2,
    RemovedDevice = 0x3,
    BindDriver = 0x4,
    BoundDriver = 0x5,
    UnbindDriver = 0x6,
    UnboundDriver = 0x7,
    DriverNotBound = 0x8,
}

/// <summary>struct bus_type: a bus, its devices and drivers, and the binding logic of the driver core.</summary>
public abstract class BusType
{
    private readonly List<SimDevice> _devices = [];
    private readonly List<DeviceDriver> _drivers = [];

    // An immutable copy of _drivers, replaced under ListLock at every register and unregister,
    // so that reading the list (every device attach) copies nothing.
    private IReadOnlyList<DeviceDriver> _driversSnapshot = Array.Empty<DeviceDriver>().AsReadOnly();

    /// <summary>bus_register(): /sys/bus/<paramref name="name"/> with devices/, drivers/, drivers_probe and drivers_autoprobe.</summary>
    protected BusType(SimMachine machine, string name)
    {
        ArgumentNullException.ThrowIfNull(machine);
        Machine = machine;
        Name = name;
        ListLock = new KSpinLock(machine.Kernel, $"bus[{name}].klist_lock");
        Notifier = new BlockingNotifierChain(machine.Kernel, $"bus[{name}].notifier");
        Sysfs.SysfsTree fs = machine.Sysfs;
        SysfsDir = fs.CreateDir(fs.Bus, name) ?? throw new InvalidOperationException($"bus {name} is already registered");
        DevicesDir = fs.CreateDir(SysfsDir, "devices")!;
        DriversDir = fs.CreateDir(SysfsDir, "drivers")!;
        fs.CreateFile(SysfsDir, "drivers_probe", 0x80 /* 0200 */, null, DriversProbeStore);
        fs.CreateFile(SysfsDir, "drivers_autoprobe", 0x1a4 /* 0644 */, () => DriversAutoprobe ? "1\n" : "0\n", s =>
        {
            DriversAutoprobe = s.Length == 0 || s[0] != '0';
            return s.Length;
        });
        fs.CreateFile(SysfsDir, "uevent", 0x80, null, s => s.Length);
    }

    /// <summary>The machine.</summary>
    public SimMachine Machine { get; }

    /// <summary>The bus name (<c>pci</c>).</summary>
    public string Name { get; }

    /// <summary>The bus notifier chain (bus_register_notifier).</summary>
    public BlockingNotifierChain Notifier { get; }

    /// <summary>drivers_autoprobe: bind drivers to new devices (and devices to new drivers) automatically.</summary>
    public bool DriversAutoprobe { get; set; } = true;

    /// <summary>/sys/bus/&lt;name&gt;.</summary>
    public VfsDir SysfsDir { get; }

    /// <summary>/sys/bus/&lt;name&gt;/devices.</summary>
    public VfsDir DevicesDir { get; }

    /// <summary>/sys/bus/&lt;name&gt;/drivers.</summary>
    public VfsDir DriversDir { get; }

    internal KSpinLock ListLock { get; }

    /// <summary>The devices on the bus, read without the klist lock: only when no task runs (the object graph's snapshot).</summary>
    internal IReadOnlyList<SimDevice> DevicesUnlocked => [.. _devices];

    /// <summary>The devices on the bus, a snapshot in the order they were added.</summary>
    public IReadOnlyList<SimDevice> Devices
    {
        get
        {
            ListLock.Lock();
            try
            {
                return [.. _devices];
            }
            finally
            {
                ListLock.Unlock();
            }
        }
    }

    /// <summary>The registered drivers, a snapshot.</summary>
    public IReadOnlyList<DeviceDriver> Drivers
    {
        get
        {
            ListLock.Lock();
            try
            {
                return _driversSnapshot;
            }
            finally
            {
                ListLock.Unlock();
            }
        }
    }

    // ---- Bus hooks.

    /// <summary>-&gt;match(): &gt;0 match, 0 no match, &lt;0 error.</summary>
    public abstract int Match(SimDevice dev, DeviceDriver drv);

    /// <summary>-&gt;probe(): by default the driver's probe.</summary>
    protected virtual int BusProbe(SimDevice dev, DeviceDriver drv) => drv.Probe(dev);

    /// <summary>-&gt;remove(): by default the driver's remove.</summary>
    protected virtual void BusRemove(SimDevice dev, DeviceDriver drv) => drv.Remove(dev);

    /// <summary>bus-&gt;pm: the bus's runtime PM callbacks, which run instead of the driver's (and call them); null: the driver's run directly.</summary>
    public virtual DevPmOps? Pm => null;

    /// <summary>-&gt;dma_configure(): runs before probe with dev-&gt;driver set; a failure fails the bind.</summary>
    protected virtual int DmaConfigure(SimDevice dev) => 0;

    /// <summary>-&gt;dma_cleanup(): undoes <see cref="DmaConfigure"/> after remove or a failed probe.</summary>
    protected virtual void DmaCleanup(SimDevice dev)
    {
    }

    /// <summary>Bus-specific device attributes (dev_groups), created when the device is added.</summary>
    protected virtual void AddDeviceAttributes(SimDevice dev, VfsDir dir)
    {
    }

    /// <summary>Bus-specific driver attributes (drv_groups: new_id, remove_id).</summary>
    protected virtual void AddDriverAttributes(DeviceDriver drv, VfsDir dir)
    {
    }

    // ---- Devices.

    /// <summary>
    /// device_add() on this bus: sysfs directory under the parent (or /sys/devices), the
    /// bus links, ADD_DEVICE, then a probe if drivers_autoprobe. 0, or -EEXIST for a
    /// duplicate name.
    /// </summary>
    public int AddDevice(SimDevice dev)
    {
        ArgumentNullException.ThrowIfNull(dev);
        if (dev.IsRegistered)
        {
            throw new InvalidOperationException($"device {dev.Name} is already added");
        }

        Sysfs.SysfsTree fs = Machine.Sysfs;
        VfsDir parentDir = dev.Parent?.SysfsDir ?? fs.Devices;
        VfsDir? dir = fs.CreateDir(parentDir, dev.Name);
        if (dir is null)
        {
            return Errno.EEXIST.Negative();
        }

        if (fs.CreateLink(DevicesDir, dev.Name, dir) != 0)
        {
            fs.Remove(dir);
            return Errno.EEXIST.Negative();
        }

        dev.Get();
        dev.SysfsDir = dir;
        dev.Bus = this;
        fs.CreateLink(dir, "subsystem", SysfsDir);
        dev.UeventFile = fs.CreateFile(dir, "uevent", 0x1a4, () => dev.Driver is { } d ? $"DRIVER={d.Name}\n" : string.Empty, s => s.Length);
        dev.PowerDir = AddPowerAttributes(dev, dir);
        dev.BusAttributes = fs.Track(dir, () => AddDeviceAttributes(dev, dir));
        ListLock.Lock();
        _devices.Add(dev);
        ListLock.Unlock();
        dev.IsRegistered = true;
        Notifier.CallChain((ulong)BusNotification.AddDevice, dev);
        if (DriversAutoprobe)
        {
            DeviceAttach(dev);
        }

        return 0;
    }

    /// <summary>
    /// device_del(), in the kernel's order: kill_device, DEL_DEVICE, the uevent file, then
    /// bus_remove_device (the subsystem and bus links, the bus's attributes, off the bus
    /// list, the driver released — its remove may block, with the attributes already
    /// gone), REMOVED_DEVICE, the directory (kobject_del), and the bus's reference.
    /// </summary>
    public void RemoveDevice(SimDevice dev)
    {
        ArgumentNullException.ThrowIfNull(dev);
        if (!dev.IsRegistered)
        {
            return;
        }

        dev.Lock();
        dev.IsDead = true;
        dev.Unlock();
        Notifier.CallChain((ulong)BusNotification.DelDevice, dev);
        Sysfs.SysfsTree fs = Machine.Sysfs;
        fs.RemoveAll([dev.PowerDir]);
        dev.PowerDir = null;
        fs.RemoveAll([dev.UeventFile]);
        dev.UeventFile = null;
        if (dev.SysfsDir is { } devDir)
        {
            fs.RemoveLink(devDir, "subsystem");
        }

        fs.RemoveLink(DevicesDir, dev.Name);
        fs.RemoveAll(dev.BusAttributes);
        dev.BusAttributes = [];
        ListLock.Lock();
        _devices.Remove(dev);
        ListLock.Unlock();
        DeviceReleaseDriver(dev);
        dev.IsRegistered = false;
        Notifier.CallChain((ulong)BusNotification.RemovedDevice, dev);
        if (dev.SysfsDir is { } dir)
        {
            fs.Remove(dir);
        }

        dev.Bus = null;
        dev.Put();
    }

    /// <summary>
    /// dpm_sysfs_add(): the device's power/ directory with control (auto/on), runtime_status
    /// and runtime_usage (the last one is CONFIG_PM_ADVANCED_DEBUG's, which distribution
    /// kernels enable).
    /// </summary>
    private VfsDir? AddPowerAttributes(SimDevice dev, VfsDir dir)
    {
        Sysfs.SysfsTree fs = Machine.Sysfs;
        VfsDir? power = fs.CreateDir(dir, "power");
        if (power is null)
        {
            return null;
        }

        RuntimePm pm = dev.Power;
        fs.CreateFile(power, "control", 0x1a4 /* 0644 */, pm.ControlShow, pm.ControlStore);
        fs.CreateFile(power, "runtime_status", 0x124 /* 0444 */, pm.RuntimeStatusShow);
        fs.CreateFile(power, "runtime_usage", 0x124, () => string.Create(CultureInfo.InvariantCulture, $"{pm.UsageCount}\n"));
        return power;
    }

    /// <summary>bus_find_device_by_name(): the device whose name equals <paramref name="name"/> (sysfs_streq: a trailing newline is ignored), with a reference taken.</summary>
    public SimDevice? FindDevice(string name)
    {
        string want = StripNewline(name);
        ListLock.Lock();
        try
        {
            foreach (SimDevice d in _devices)
            {
                if (d.Name == want)
                {
                    return d.Get();
                }
            }

            return null;
        }
        finally
        {
            ListLock.Unlock();
        }
    }

    /// <summary>The driver called <paramref name="name"/>, or null.</summary>
    public DeviceDriver? FindDriver(string name)
    {
        ListLock.Lock();
        try
        {
            return _drivers.FirstOrDefault(d => d.Name == name);
        }
        finally
        {
            ListLock.Unlock();
        }
    }

    internal static string StripNewline(string s) => s.EndsWith('\n') ? s[..^1] : s;

    // ---- Drivers.

    /// <summary>
    /// driver_register(): /sys/bus/&lt;bus&gt;/drivers/&lt;name&gt; with bind, unbind and
    /// the bus's own files, then binds every unbound matching device if drivers_autoprobe.
    /// -EBUSY when a driver of that name exists.
    /// </summary>
    public int RegisterDriver(DeviceDriver drv)
    {
        ArgumentNullException.ThrowIfNull(drv);
        if (FindDriver(drv.Name) is not null)
        {
            return Errno.EBUSY.Negative();
        }

        Sysfs.SysfsTree fs = Machine.Sysfs;
        VfsDir dir = fs.CreateDir(DriversDir, drv.Name)!;
        drv.SysfsDir = dir;
        drv.Bus = this;
        if (!drv.SuppressBindAttrs)
        {
            drv.BindFiles =
            [
                fs.CreateFile(dir, "unbind", 0x80, null, s => UnbindStore(drv, s)),
                fs.CreateFile(dir, "bind", 0x80, null, s => BindStore(drv, s)),
            ];
        }

        drv.UeventFile = fs.CreateFile(dir, "uevent", 0x80, null, s => s.Length);
        drv.BusAttributes = fs.Track(dir, () => AddDriverAttributes(drv, dir));
        ListLock.Lock();
        _drivers.Add(drv);
        _driversSnapshot = _drivers.ToArray().AsReadOnly();
        drv.IsRegistered = true;
        ListLock.Unlock();
        if (DriversAutoprobe)
        {
            DriverAttach(drv);
        }

        return 0;
    }

    /// <summary>
    /// driver_unregister() (bus_remove_driver), in the kernel's order: the bind and unbind
    /// files, the bus's driver attributes and the uevent file go first, then the driver
    /// leaves the bus list (no new probe can pick it: -ENODEV), then every device is unbound
    /// (each remove may block), then the directory goes.
    /// </summary>
    public void UnregisterDriver(DeviceDriver drv)
    {
        ArgumentNullException.ThrowIfNull(drv);
        ListLock.Lock();
        bool present = _drivers.Contains(drv);
        ListLock.Unlock();
        if (!present)
        {
            return;
        }

        Sysfs.SysfsTree fs = Machine.Sysfs;
        fs.RemoveAll(drv.BindFiles);
        fs.RemoveAll(drv.BusAttributes);
        fs.RemoveAll([drv.UeventFile]);
        drv.BindFiles = drv.BusAttributes = [];
        drv.UeventFile = null;
        ListLock.Lock();
        present = _drivers.Remove(drv);
        _driversSnapshot = _drivers.ToArray().AsReadOnly();
        drv.IsRegistered = false;
        ListLock.Unlock();
        if (!present)
        {
            return; // A concurrent unregister got there first.
        }

        // driver_detach(): newest binding first.
        while (drv.BoundDevices is { Count: > 0 } bound)
        {
            SimDevice dev = bound[^1].Get();
            ReleaseDriverInternal(dev, drv);
            dev.Put();
        }

        if (drv.SysfsDir is { } dir)
        {
            fs.Remove(dir);
        }

        drv.Bus = null;
    }

    /// <summary>driver_attach(): tries <paramref name="drv"/> on every device of the bus; errors are dropped, as the kernel does.</summary>
    public int DriverAttach(DeviceDriver drv)
    {
        foreach (SimDevice dev in Devices)
        {
            if (Match(dev, drv) <= 0)
            {
                continue;
            }

            dev.Lock();
            try
            {
                DriverProbeDevice(drv, dev);
            }
            finally
            {
                dev.Unlock();
            }
        }

        return 0;
    }

    /// <summary>device_attach(): 1 if a driver is (now) bound, 0 if none matched, or -errno.</summary>
    public int DeviceAttach(SimDevice dev)
    {
        dev.Lock();
        try
        {
            if (dev.IsDead)
            {
                return 0;
            }

            if (dev.Driver is not null)
            {
                return 1;
            }

            foreach (DeviceDriver drv in Drivers)
            {
                int m = Match(dev, drv);
                if (m == 0)
                {
                    continue;
                }

                if (m < 0)
                {
                    return m;
                }

                // Probe failures come back positive: let the next driver try its luck.
                int ret = DriverProbeDevice(drv, dev);
                if (ret < 0)
                {
                    return ret;
                }

                if (ret == 0)
                {
                    return 1;
                }
            }

            return 0;
        }
        finally
        {
            dev.Unlock();
        }
    }

    /// <summary>device_driver_attach(): binds <paramref name="drv"/> to <paramref name="dev"/>; 0 or -errno (-EBUSY if bound, probe errors negated).</summary>
    public int DeviceDriverAttach(DeviceDriver drv, SimDevice dev)
    {
        dev.Lock();
        int ret;
        try
        {
            ret = DriverProbeDevice(drv, dev);
        }
        finally
        {
            dev.Unlock();
        }

        if (ret > 0)
        {
            ret = -ret;
        }

        return ret == Errno.EPROBE_DEFER.Negative() ? Errno.EAGAIN.Negative() : ret;
    }

    /// <summary>device_release_driver(): unbinds whatever driver <paramref name="dev"/> has.</summary>
    public void DeviceReleaseDriver(SimDevice dev) => ReleaseDriverInternal(dev, null);

    /// <summary>
    /// __driver_probe_device(): -ENODEV for a dead device or a driver being unregistered,
    /// -EBUSY if bound, 0 when bound now, a positive errno when -&gt;probe failed, -errno
    /// when dma_configure failed. Caller holds device_lock.
    /// </summary>
    private int DriverProbeDevice(DeviceDriver drv, SimDevice dev)
    {
        dev.AssertLockHeld();

        // The kernel needs no driver check here: kernfs drains a bind store before
        // bus_remove_driver() goes on, and the driver is off the bus list before
        // driver_detach(). The simulator has no drain, so a bind (or an attach that took
        // its snapshot of the driver list earlier) could otherwise bind a driver whose
        // detach already ran.
        if (dev.IsDead || !dev.IsRegistered || !drv.IsRegistered)
        {
            return Errno.ENODEV.Negative();
        }

        if (dev.Driver is not null)
        {
            return Errno.EBUSY.Negative();
        }

        return ReallyProbe(dev, drv);
    }

    private int ReallyProbe(SimDevice dev, DeviceDriver drv)
    {
        dev.Driver = drv;
        int ret = DmaConfigure(dev);
        if (ret != 0)
        {
            dev.Driver = null;
            return ret;
        }

        Notifier.CallChain((ulong)BusNotification.BindDriver, dev);
        Sysfs.SysfsTree fs = Machine.Sysfs;
        fs.CreateLink(drv.SysfsDir!, dev.Name, dev.SysfsDir!);
        fs.CreateLink(dev.SysfsDir!, "driver", drv.SysfsDir!);
        ret = BusProbe(dev, drv);
        if (ret != 0)
        {
            fs.RemoveLink(drv.SysfsDir!, dev.Name);
            fs.RemoveLink(dev.SysfsDir!, "driver");
            Notifier.CallChain((ulong)BusNotification.DriverNotBound, dev);
            DmaCleanup(dev);
            dev.Driver = null;
            dev.DriverData = null;
            return -ret;
        }

        drv.AddBound(dev);
        Notifier.CallChain((ulong)BusNotification.BoundDriver, dev);
        return 0;
    }

    private void ReleaseDriverInternal(SimDevice dev, DeviceDriver? onlyIf)
    {
        dev.Lock();
        try
        {
            DeviceDriver? drv = dev.Driver;
            if (drv is null || (onlyIf is not null && !ReferenceEquals(drv, onlyIf)))
            {
                return;
            }

            Sysfs.SysfsTree fs = Machine.Sysfs;
            fs.RemoveLink(drv.SysfsDir!, dev.Name);
            fs.RemoveLink(dev.SysfsDir!, "driver");
            Notifier.CallChain((ulong)BusNotification.UnbindDriver, dev);
            BusRemove(dev, drv);
            DmaCleanup(dev);
            dev.Driver = null;
            dev.DriverData = null;
            drv.RemoveBound(dev);
            Notifier.CallChain((ulong)BusNotification.UnboundDriver, dev);
        }
        finally
        {
            dev.Unlock();
        }
    }

    // ---- sysfs stores.

    private long BindStore(DeviceDriver drv, string buf)
    {
        SimDevice? dev = FindDevice(buf);
        try
        {
            if (dev is null || Match(dev, drv) <= 0)
            {
                return Errno.ENODEV.Negative();
            }

            int err = DeviceDriverAttach(drv, dev);
            return err == 0 ? buf.Length : err;
        }
        finally
        {
            dev?.Put();
        }
    }

    private long UnbindStore(DeviceDriver drv, string buf)
    {
        SimDevice? dev = FindDevice(buf);
        try
        {
            if (dev is null || !ReferenceEquals(dev.Driver, drv))
            {
                return Errno.ENODEV.Negative();
            }

            ReleaseDriverInternal(dev, null);
            return buf.Length;
        }
        finally
        {
            dev?.Put();
        }
    }

    private long DriversProbeStore(string buf)
    {
        SimDevice? dev = FindDevice(buf);
        if (dev is null)
        {
            return Errno.ENODEV.Negative();
        }

        try
        {
            // bus_rescan_devices_helper(): only a negative attach result is an error.
            int ret = dev.Driver is null ? DeviceAttach(dev) : 0;
            return ret < 0 ? Errno.EINVAL.Negative() : buf.Length;
        }
        finally
        {
            dev.Put();
        }
    }

    /// <summary>Formats a sysfs hex attribute the way the PCI core does (<c>0x8086\n</c>).</summary>
    protected static string Hex(uint value, int digits)
        => "0x" + value.ToString("x" + digits.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture) + "\n";
}
