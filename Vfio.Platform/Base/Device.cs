// Models struct device and struct device_driver (include/linux/device.h,
// drivers/base/core.c, drivers/base/driver.c) (v6.12).
//
// Lock rules: device_lock (the device's mutex, a lockdep novalidate class as in the
// kernel) serialises probe, remove and changes of the driver binding. Reference counts:
// get/put as get_device/put_device; the release callback runs when the last reference
// goes, possibly long after the device left the bus.

using System.Runtime.CompilerServices;
using Vfio.Kernel;
using Vfio.Platform.Fs;

namespace Vfio.Platform.Base;

/// <summary>struct device.</summary>
public class SimDevice
{
    private static readonly LockClass s_deviceMutexClass = LockClass.NoValidate("device.mutex");
    private readonly KRef _kref;
    private Action<SimDevice>? _release;

    /// <summary>device_initialize(): a device named <paramref name="name"/>, not yet added.</summary>
    public SimDevice(SimMachine machine, string name, SimDevice? parent = null, Action<SimDevice>? release = null)
    {
        ArgumentNullException.ThrowIfNull(machine);
        ArgumentException.ThrowIfNullOrEmpty(name);
        Machine = machine;
        Name = name;
        Parent = parent;
        _release = release;
        Mutex = new KMutex(machine.Kernel, $"device[{name}].mutex", s_deviceMutexClass);
        _kref = new KRef(machine.Kernel, $"device[{name}].kobj.kref");
        Power = new RuntimePm(this);
    }

    /// <summary>The machine.</summary>
    public SimMachine Machine { get; }

    /// <summary>dev_name().</summary>
    public string Name { get; }

    /// <summary>The parent device, if any.</summary>
    public SimDevice? Parent { get; internal set; }

    /// <summary>The bus the device sits on, if any.</summary>
    public BusType? Bus { get; internal set; }

    /// <summary>The device's class (dev-&gt;class), for a class device registered with <see cref="DeviceClass.DeviceRegister"/>; else null.</summary>
    public DeviceClass? Class { get; internal set; }

    /// <summary>dev_driver_string(): the bound driver's name, else the bus's name, else the class's name, else empty.</summary>
    public string DriverString => Driver?.Name ?? Bus?.Name ?? Class?.Name ?? string.Empty;

    /// <summary>The bound driver, or null.</summary>
    public DeviceDriver? Driver { get; internal set; }

    /// <summary>device_lock.</summary>
    public KMutex Mutex { get; }

    /// <summary>dev-&gt;power: the device's runtime PM state and the pm_runtime_* calls.</summary>
    public RuntimePm Power { get; }

    /// <summary>dev_get_drvdata() / dev_set_drvdata().</summary>
    public object? DriverData { get; set; }

    /// <summary>driver_override: when set, only the driver of that name may bind.</summary>
    public string? DriverOverride { get; internal set; }

    /// <summary>dev-&gt;iommu_group: set by the IOMMU core when the device is probed.</summary>
    public Iommu.IommuGroup? IommuGroup { get; internal set; }

    /// <summary>The device's directory in /sys/devices (null until added).</summary>
    public VfsDir? SysfsDir { get; internal set; }

    // The bus's attributes (dev_groups) and uevent file, removed by device_del() before the driver is released.
    internal VfsNode[] BusAttributes { get; set; } = [];

    internal VfsNode? UeventFile { get; set; }

    // The power/ directory dpm_sysfs_add() created, removed by device_del() right after DEL_DEVICE.
    internal VfsDir? PowerDir { get; set; }

    /// <summary>True between device_add and device_del.</summary>
    public bool IsRegistered { get; internal set; }

    /// <summary>Set by device_del: the device can no longer bind.</summary>
    public bool IsDead { get; internal set; }

    /// <summary>True after the release callback ran.</summary>
    public bool IsReleased { get; private set; }

    /// <summary>The reference count (kref of the kobject), without a scheduling point.</summary>
    public int ReferenceCount => _kref.RefCount.Value;

    /// <summary>get_device().</summary>
    public SimDevice Get()
    {
        _kref.Get();
        return this;
    }

    /// <summary>put_device(): the last reference runs the release callback.</summary>
    public void Put() => _kref.Put(() =>
    {
        IsReleased = true;
        Action<SimDevice>? release = Interlocked.Exchange(ref _release, null);
        release?.Invoke(this);
    });

    /// <summary>device_lock().</summary>
    public void Lock() => Mutex.Lock(nameof(Lock));

    /// <summary>device_unlock().</summary>
    public void Unlock() => Mutex.Unlock();

    /// <summary>device_lock_assert(): WARNs (as lockdep_assert_held) unless the current task holds device_lock.</summary>
    public void AssertLockHeld([CallerMemberName] string caller = "", [CallerFilePath] string file = "", [CallerLineNumber] int line = 0)
        => Mutex.AssertHeld(caller, file, line);

    /// <inheritdoc/>
    public override string ToString() => Name;
}

/// <summary>struct device_driver.</summary>
public abstract class DeviceDriver
{
    private readonly List<SimDevice> _bound = [];

    /// <summary>A driver called <paramref name="name"/>.</summary>
    protected DeviceDriver(string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        Name = name;
    }

    /// <summary>The driver's name (its directory in /sys/bus/*/drivers).</summary>
    public string Name { get; }

    /// <summary>The bus it registered on.</summary>
    public BusType? Bus { get; internal set; }

    /// <summary>
    /// driver_managed_dma: the driver does its own DMA ownership (vfio-pci, pci-stub,
    /// pcieport), so binding it does not claim the IOMMU group for kernel DMA.
    /// </summary>
    public virtual bool DriverManagedDma => false;

    /// <summary>driver-&gt;pm: the driver's runtime PM callbacks, or null (the driver does no runtime PM).</summary>
    public DevPmOps? Pm { get; protected set; }

    /// <summary>suppress_bind_attrs: no bind/unbind files.</summary>
    public virtual bool SuppressBindAttrs => false;

    /// <summary>The driver's directory in sysfs (null until registered).</summary>
    public VfsDir? SysfsDir { get; internal set; }

    /// <summary>True while registered: cleared before driver_unregister() detaches devices, so no new bind starts.</summary>
    public bool IsRegistered
    {
        get => Volatile.Read(ref _isRegistered);
        internal set => Volatile.Write(ref _isRegistered, value);
    }

    private bool _isRegistered;

    // The sysfs files bus_add_driver() created, removed in its reverse order by bus_remove_driver().
    internal VfsNode[] BindFiles { get; set; } = [];

    internal VfsNode[] BusAttributes { get; set; } = [];

    internal VfsNode? UeventFile { get; set; }

    /// <summary>Devices bound to the driver (klist_devices), a snapshot.</summary>
    public IReadOnlyList<SimDevice> BoundDevices
    {
        get
        {
            LockList();
            try
            {
                return [.. _bound];
            }
            finally
            {
                UnlockList();
            }
        }
    }

    internal void AddBound(SimDevice dev)
    {
        LockList();
        _bound.Add(dev);
        UnlockList();
    }

    internal void RemoveBound(SimDevice dev)
    {
        LockList();
        _bound.Remove(dev);
        UnlockList();
    }

    private void LockList() => Bus?.ListLock.Lock();

    private void UnlockList() => Bus?.ListLock.Unlock();

    /// <summary>-&gt;probe(): take the device (0) or refuse (-errno; -ENODEV/-ENXIO quietly).</summary>
    public abstract int Probe(SimDevice dev);

    /// <summary>-&gt;remove(): let go of the device. Runs with device_lock held and may sleep.</summary>
    public virtual void Remove(SimDevice dev)
    {
    }

    /// <inheritdoc/>
    public override string ToString() => Name;
}
