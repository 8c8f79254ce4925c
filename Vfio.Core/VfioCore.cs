// Models the module-wide state of drivers/vfio (v6.12): vfio_main.c's device index IDA
// and device-set xarray, group.c's `vfio` (class, group list, group lock, minor IDA,
// char region) and container.c's `vfio` (the IOMMU-backend list and its lock, the
// /dev/vfio/vfio misc device, the noiommu backend and its module parameter).
//
// Lock order (lockdep checks it across the whole suite):
//   vfio.group_lock → vfio_group.group_lock → vfio_container.group_lock → vfio.iommu_drivers_lock
//   vfio_group.group_lock → vfio_device_set.lock
//   vfio_group.device_lock is a leaf (taken alone or under group_lock).

using System.Globalization;
using Vfio.Kernel;
using Vfio.Platform;
using Vfio.Platform.Base;
using Vfio.Platform.Fs;
using Vfio.Platform.Iommu;

namespace Vfio.Core;

/// <summary>The vfio core loaded on one machine (the vfio module).</summary>
public sealed class VfioCore
{
    /// <summary>VFIO_MINOR: the container's misc minor.</summary>
    public const int ContainerMinor = 196;

    /// <summary>MINORMASK + 1: the group char region's size.</summary>
    public const int MaxMinors = 1 << 20;

    internal static readonly LockClass GroupListLockClass = LockClass.Get("vfio.group_lock");
    internal static readonly LockClass GroupLockClass = LockClass.Get("vfio_group.group_lock");
    internal static readonly LockClass GroupDeviceLockClass = LockClass.Get("vfio_group.device_lock");
    internal static readonly LockClass ContainerLockClass = LockClass.Get("vfio_container.group_lock");
    internal static readonly LockClass DriversLockClass = LockClass.Get("vfio.iommu_drivers_lock");
    internal static readonly LockClass DevSetLockClass = LockClass.Get("vfio_device_set.lock");

    // Protects _groups (vfio.group_list) and group creation/removal.
    private readonly KMutex _groupLock;
    private readonly List<VfioGroup> _groups = [];

    // Protects _minors (the cdev map from minor to group: a lookup takes a group reference under it).
    private readonly KSpinLock _minorLock;
    private readonly Dictionary<int, VfioGroup> _byMinor = [];

    // Protects _drivers (vfio.iommu_drivers_list; head = most recently registered).
    private readonly KMutex _driversLock;
    private readonly List<IVfioIommuDriver> _drivers = [];

    // Protects _deviceSets (vfio_device_set_xa).
    private readonly KSpinLock _devSetLock;
    private readonly Dictionary<object, VfioDeviceSet> _deviceSets = new(ReferenceEqualityComparer.Instance);

    private volatile bool _noiommu;

    private VfioCore(SimMachine machine, VfioOptions options)
    {
        Machine = machine;
        Kernel = machine.Kernel;
        Options = options;
        _noiommu = options.EnableUnsafeNoiommuMode;
        _groupLock = new KMutex(Kernel, "vfio.group_lock", GroupListLockClass);
        _minorLock = new KSpinLock(Kernel, "vfio.group_minors");
        _driversLock = new KMutex(Kernel, "vfio.iommu_drivers_lock", DriversLockClass);
        _devSetLock = new KSpinLock(Kernel, "vfio_device_set_xa");
        GroupMinors = new Ida(Kernel, "vfio.group_ida");
        DeviceIndexes = new Ida(Kernel, "vfio.device_ida");
        GroupFops = new VfioGroupFops(this);
        ContainerFops = new VfioContainerFops(this);
        DeviceFops = new VfioDeviceFops();
        NoIommuDriver = new VfioNoIommuDriver(this);
    }

    /// <summary>The machine.</summary>
    public SimMachine Machine { get; }

    /// <summary>The simulated kernel.</summary>
    public SimKernel Kernel { get; }

    /// <summary>Module parameters and design variants.</summary>
    public VfioOptions Options { get; }

    /// <summary>The design variants in force.</summary>
    public VfioDesign Design => Options.Design;

    /// <summary>vfio.enable_unsafe_noiommu_mode (writable at run time, like the 0644 parameter).</summary>
    public bool NoIommuMode
    {
        get => _noiommu;
        set => _noiommu = value;
    }

    /// <summary>The noiommu backend (registered at load, so searched after any later backend).</summary>
    public IVfioIommuDriver NoIommuDriver { get; }

    internal Ida GroupMinors { get; }

    internal Ida DeviceIndexes { get; }

    internal int GroupMajor { get; private set; }

    internal VfioGroupFops GroupFops { get; }

    internal VfioContainerFops ContainerFops { get; }

    internal VfioDeviceFops DeviceFops { get; }

    internal KMutex GroupListLock => _groupLock;

    internal KMutex DriversLock => _driversLock;

    internal VfsDir ClassVfio { get; private set; } = null!;

    internal VfsDir ClassVfioDev { get; private set; } = null!;

    internal VfsDir VirtualVfio { get; private set; } = null!;

    /// <summary>
    /// Loads vfio on <paramref name="machine"/> (vfio_init: the container misc device
    /// /dev/vfio/vfio, the group class and char region, the noiommu backend). Loading twice
    /// is a programming error.
    /// </summary>
    public static VfioCore Load(SimMachine machine, VfioOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(machine);
        var core = new VfioCore(machine, options ?? new VfioOptions());
        if (!machine.AddModule(core))
        {
            throw new InvalidOperationException("vfio is already loaded on this machine");
        }

        core.Init();
        return core;
    }

    /// <summary>The vfio core of <paramref name="machine"/>; throws when vfio is not loaded.</summary>
    public static VfioCore Of(SimMachine machine)
        => machine.GetModule<VfioCore>() ?? throw new InvalidOperationException("vfio is not loaded on this machine: call VfioCore.Load(machine) first");

    private void Init()
    {
        Uapi.VfioStrace.Register(Machine.Strace.Ioctls);
        var fs = Machine.Sysfs;
        ClassVfio = fs.GetOrCreateDir(fs.Class, "vfio");
        ClassVfioDev = fs.GetOrCreateDir(fs.Class, "vfio-dev");
        VirtualVfio = Machine.Vfs.MkdirP("/sys/devices/virtual/vfio");
        Machine.Vfs.MkdirP("/dev/vfio");

        int major = Machine.CharDevices.AllocRegion("vfio", MaxMinors, GroupFops);
        if (major < 0)
        {
            throw new InvalidOperationException($"vfio: cannot allocate the group char region: {ErrnoExtensions.FromReturn(major).Describe()}");
        }

        GroupMajor = major;
        int err = Machine.CharDevices.RegisterMisc(ContainerMinor, "vfio/vfio", ContainerFops, 0x1b6 /* 0666 */);
        if (err != 0)
        {
            throw new InvalidOperationException($"vfio: cannot register /dev/vfio/vfio: {ErrnoExtensions.FromReturn(err).Describe()}");
        }

        VfsDir param = Machine.Vfs.MkdirP("/sys/module/vfio/parameters");
        fs.CreateFile(param, "enable_unsafe_noiommu_mode", 0x1a4 /* 0644 */, () => NoIommuMode ? "Y\n" : "N\n", NoiommuStore);
        _drivers.Insert(0, NoIommuDriver);

        if (Design.Viability == VfioViabilityModel.LegacyNotifier)
        {
            Machine.Pci.Notifier.Register(new NotifierBlock((_, action, data) => LegacyBusNotify((BusNotification)action, data as SimDevice)));
        }

        if (Design.GroupNodes == VfioGroupNodes.AllGroupsAtLoad && Machine.Iommu is { } iommu)
        {
            foreach (IommuGroup ig in iommu.Groups)
            {
                _groupLock.Lock();
                try
                {
                    CreateGroupLocked(ig, VfioGroupType.Iommu, drivers: 0);
                }
                finally
                {
                    _groupLock.Unlock();
                }
            }
        }
    }

    private long NoiommuStore(string value)
    {
        string v = value.Trim();
        if (v is "1" or "Y" or "y")
        {
            NoIommuMode = true;
        }
        else if (v is "0" or "N" or "n")
        {
            NoIommuMode = false;
        }
        else
        {
            return Errno.EINVAL.Negative();
        }

        return value.Length;
    }

    // ---- IOMMU backends (container.c).

    /// <summary>vfio_register_iommu_driver(): -EINVAL for a duplicate or a backend with only one of register/unregister_device.</summary>
    public int RegisterIommuDriver(IVfioIommuDriver driver)
    {
        ArgumentNullException.ThrowIfNull(driver);
        _driversLock.Lock();
        try
        {
            if (_drivers.Contains(driver))
            {
                return ErrorReason.Fail(Errno.EINVAL, $"vfio_register_iommu_driver: {driver.Name} is already registered");
            }

            _drivers.Insert(0, driver);
            return 0;
        }
        finally
        {
            _driversLock.Unlock();
        }
    }

    /// <summary>vfio_unregister_iommu_driver().</summary>
    public void UnregisterIommuDriver(IVfioIommuDriver driver)
    {
        _driversLock.Lock();
        try
        {
            _drivers.Remove(driver);
        }
        finally
        {
            _driversLock.Unlock();
        }
    }

    /// <summary>The registered backends, most recent first (the caller holds the drivers lock).</summary>
    internal List<IVfioIommuDriver> DriversLocked
    {
        get
        {
            _driversLock.AssertHeld();
            return _drivers;
        }
    }

    // ---- Groups (group.c).

    /// <summary>The live vfio groups, read without vfio.group_lock: only when no task runs (the object graph's snapshot).</summary>
    internal IReadOnlyList<VfioGroup> GroupsUnlocked => [.. _groups];

    /// <summary>The live vfio groups (on vfio.group_list), a snapshot.</summary>
    public IReadOnlyList<VfioGroup> Groups
    {
        get
        {
            _groupLock.Lock();
            try
            {
                return [.. _groups];
            }
            finally
            {
                _groupLock.Unlock();
            }
        }
    }

    /// <summary>vfio_group_find_from_iommu() (caller holds vfio.group_lock).</summary>
    internal VfioGroup? FindGroupLocked(IommuGroup iommuGroup)
    {
        _groupLock.AssertHeld();
        foreach (VfioGroup g in _groups)
        {
            if (g.IommuGroupUnchecked == iommuGroup)
            {
                return g;
            }
        }

        return null;
    }

    /// <summary>vfio_create_group(): a new group with its /dev/vfio node (caller holds vfio.group_lock); null on allocation failure.</summary>
    internal VfioGroup? CreateGroupLocked(IommuGroup iommuGroup, VfioGroupType type, int drivers = 1)
    {
        _groupLock.AssertHeld();
        if (Kernel.Faults.ShouldFail("kzalloc:vfio_group"))
        {
            return null;
        }

        int minor = GroupMinors.Alloc();
        var group = new VfioGroup(this, iommuGroup, type, minor, drivers);
        _minorLock.Lock();
        _byMinor[minor] = group;
        _minorLock.Unlock();
        group.AddNode();
        _groups.Insert(0, group);
        Kernel.Trace.Event(KTask.CurrentOrNull, "vfio_group_create", group.Name, $"iommu_group {iommuGroup.Id} type {type}");
        return group;
    }

    /// <summary>Removes <paramref name="group"/> from the list and its minor from the cdev map (caller holds vfio.group_lock).</summary>
    internal void UnlistGroupLocked(VfioGroup group)
    {
        _groupLock.AssertHeld();
        _groups.Remove(group);
        _minorLock.Lock();
        _byMinor.Remove(group.Minor);
        _minorLock.Unlock();
    }

    /// <summary>The cdev lookup of chrdev_open: the group at <paramref name="minor"/> with a reference, or null (-ENXIO).</summary>
    internal VfioGroup? GroupByMinorGet(int minor)
    {
        _minorLock.Lock();
        try
        {
            if (_byMinor.TryGetValue(minor, out VfioGroup? g))
            {
                g.Get();
                return g;
            }

            return null;
        }
        finally
        {
            _minorLock.Unlock();
        }
    }

    // ---- Device sets (vfio_main.c).

    /// <summary>Finds or creates the set for <paramref name="setId"/> (xa lookup + xa_cmpxchg).</summary>
    internal VfioDeviceSet DeviceSetFor(object setId)
    {
        _devSetLock.Lock();
        try
        {
            if (!_deviceSets.TryGetValue(setId, out VfioDeviceSet? set))
            {
                set = new VfioDeviceSet(this, setId);
                _deviceSets.Add(setId, set);
            }

            // dev_set->device_count++ under the xarray lock, so the set's last member erases it.
            set.DeviceCountXa++;
            return set;
        }
        finally
        {
            _devSetLock.Unlock();
        }
    }

    /// <summary>Drops one device from <paramref name="set"/>; the last one erases it.</summary>
    internal void ReleaseDeviceSetMember(VfioDeviceSet set)
    {
        _devSetLock.Lock();
        try
        {
            if (--set.DeviceCountXa == 0)
            {
                _deviceSets.Remove(set.SetId);
            }
        }
        finally
        {
            _devSetLock.Unlock();
        }
    }

    /// <summary>The number of live device sets.</summary>
    internal int DeviceSetCount
    {
        get
        {
            _devSetLock.Lock();
            try
            {
                return _deviceSets.Count;
            }
            finally
            {
                _devSetLock.Unlock();
            }
        }
    }

    // ---- The ≤v5.18 group notifier (design variant).

    private int LegacyBusNotify(BusNotification action, SimDevice? dev)
    {
        if (dev?.IommuGroup is not { } ig)
        {
            return 0;
        }

        VfioGroup? group;
        _groupLock.Lock();
        try
        {
            group = FindGroupLocked(ig);
        }
        finally
        {
            _groupLock.Unlock();
        }

        group?.LegacyNotify(action, dev);
        return 0;
    }

    internal static string Dec(int v) => v.ToString(CultureInfo.InvariantCulture);
}
