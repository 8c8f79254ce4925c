// Models drivers/vfio/group.c (v6.12): the vfio_group object, its /dev/vfio/N node, and
// how groups are found, created and removed as devices register and unregister. The fd
// and its ioctls are in VfioGroup.Fops.cs, viability in VfioGroup.Viability.cs.
//
// Life cycle: a group is created when the first device of an iommu_group registers
// (drivers = 1) and found again by later ones (drivers++). When the last one unregisters
// the node goes, the container is detached and the group lets go of its iommu_group;
// the object lives on while an open file holds it. Locks: group_lock protects container,
// container_users, opened_file, iommu_group and kvm; device_lock protects the device list.

using Vfio.Kernel;
using Vfio.Platform.Base;
using Vfio.Platform.Fs;
using Vfio.Platform.Iommu;

namespace Vfio.Core;

/// <summary>struct vfio_group.</summary>
public sealed partial class VfioGroup
{
    private readonly KRef _kref;
    private readonly List<VfioDevice> _devices = [];
    private readonly List<SimDevice> _unbound = [];
    private IommuGroup? _iommuGroup;
    private int _drivers;
    private VfsCharDevice? _node;
    private VfsDir? _sysfsDir;

    internal VfioGroup(VfioCore core, IommuGroup iommuGroup, VfioGroupType type, int minor, int drivers)
    {
        Core = core;
        Type = type;
        Minor = minor;
        Id = iommuGroup.Id;
        Name = (type == VfioGroupType.NoIommu ? "noiommu-" : string.Empty) + VfioCore.Dec(iommuGroup.Id);
        _drivers = drivers;
        _iommuGroup = iommuGroup;
        if (core.Design.GroupHoldsIommuGroupReference)
        {
            iommuGroup.Get();
        }

        SimKernel k = core.Kernel;
        _kref = new KRef(k, $"vfio_group[{Name}].dev.kobj");
        _kref.RefCount.OnTimeline = true; // The group's users, as a timeline counter.
        GroupLock = new KMutex(k, $"vfio_group[{Name}].group_lock", VfioCore.GroupLockClass);
        DeviceLock = new KMutex(k, $"vfio_group[{Name}].device_lock", VfioCore.GroupDeviceLockClass);
        KvmRefLock = new KSpinLock(k, $"vfio_group[{Name}].kvm_ref_lock");
    }

    /// <summary>The vfio core.</summary>
    public VfioCore Core { get; }

    /// <summary>group-&gt;type.</summary>
    public VfioGroupType Type { get; }

    /// <summary>The node's minor number.</summary>
    public int Minor { get; }

    /// <summary>The iommu_group id the group was created for.</summary>
    public int Id { get; }

    /// <summary>dev_name(): the iommu group id, prefixed <c>noiommu-</c> for noiommu groups; /dev/vfio/&lt;Name&gt;.</summary>
    public string Name { get; }

    /// <summary>/dev/vfio/&lt;Name&gt;.</summary>
    public string DevPath => "/dev/vfio/" + Name;

    /// <summary>group-&gt;group_lock.</summary>
    internal KMutex GroupLock { get; }

    /// <summary>group-&gt;device_lock.</summary>
    internal KMutex DeviceLock { get; }

    /// <summary>group-&gt;kvm_ref_lock: protects <see cref="Kvm"/>.</summary>
    internal KSpinLock KvmRefLock { get; }

    /// <summary>group-&gt;container (under group_lock).</summary>
    internal VfioContainer? Container { get; set; }

    /// <summary>group-&gt;container_users (under group_lock): 1 while attached, +1 per open device, +1 per legacy external user.</summary>
    internal int ContainerUsers
    {
        get => _containerUsers;
        set
        {
            _containerUsers = value;
            if (Core.Kernel.Trace.TimelineEnabled)
            {
                Core.Kernel.Trace.Counter($"vfio_group[{Name}].container_users", value);
            }
        }
    }

    private int _containerUsers;

    /// <summary>group-&gt;opened_file (under group_lock).</summary>
    internal SimFile? OpenedFile { get; set; }

    /// <summary>group-&gt;kvm (under kvm_ref_lock).</summary>
    internal IVfioKvm? Kvm { get; set; }

    /// <summary>group-&gt;cdev_device_open_cnt: devices of the group open through their cdev (under group_lock).</summary>
    internal int CdevDeviceOpenCount { get; set; }

    /// <summary>group-&gt;iommu_group without the use-after-free check (list searches compare pointers only).</summary>
    internal IommuGroup? IommuGroupUnchecked => _iommuGroup;

    /// <summary>
    /// group-&gt;iommu_group for a dereference in <paramref name="function"/>. When the group
    /// does not hold its own reference (design variant) the iommu_group may already be freed
    /// (its release poisons it): KASAN reports the use-after-free as the kernel BUG.
    /// </summary>
    internal IommuGroup? IommuGroupLocked(string function)
    {
        GroupLock.AssertHeld();
        IommuGroup? g = _iommuGroup;
        if (g is not null)
        {
            Core.Kernel.Kasan.Check(g, function);
        }

        return g;
    }

    /// <summary>refcount_read(&amp;group-&gt;drivers) (stable under vfio.group_lock).</summary>
    internal int Drivers => Volatile.Read(ref _drivers);

    /// <summary>True while the group's /dev node exists.</summary>
    public bool HasNode => Volatile.Read(ref _node) is not null;

    /// <summary>The container's users count, for tests and the shell.</summary>
    internal int ContainerUsersSnapshot
    {
        get
        {
            GroupLock.Lock();
            try
            {
                return ContainerUsers;
            }
            finally
            {
                GroupLock.Unlock();
            }
        }
    }

    /// <summary>The registered devices, read without device_lock: only when no task runs (the object graph's snapshot).</summary>
    internal IReadOnlyList<VfioDevice> DevicesUnlocked => [.. _devices];

    /// <summary>The registered devices, a snapshot.</summary>
    public IReadOnlyList<VfioDevice> Devices
    {
        get
        {
            DeviceLock.Lock();
            try
            {
                return [.. _devices];
            }
            finally
            {
                DeviceLock.Unlock();
            }
        }
    }

    /// <summary>The group-device reference count (get_device / put_device).</summary>
    internal int ReferenceCount => _kref.Read();

    /// <summary>The count without a scheduling point (refcount_read is one): for the object graph, which must not yield.</summary>
    internal int ReferenceCountValue => _kref.RefCount.Value;

    internal void Get() => _kref.Get();

    /// <summary>put_device(&amp;group-&gt;dev): the last reference releases the group (vfio_group_release).</summary>
    internal void Put() => _kref.Put(() =>
    {
        Warn.On(Core.Kernel, Core.Design.GroupHoldsIommuGroupReference && _iommuGroup is not null, $"vfio_group_release: group {Name} still has its iommu_group");
        Core.GroupMinors.Free(Minor);
        Core.Kernel.Trace.Event(KTask.CurrentOrNull, "vfio_group_release", Name);
    });

    // ---- The node (cdev_device_add / cdev_device_del).

    internal void AddNode()
    {
        var fs = Core.Machine.Sysfs;
        uint devt = CharDevices.MakeDev(Core.GroupMajor, Minor);
        _sysfsDir = fs.CreateDir(Core.VirtualVfio, Name);
        if (_sysfsDir is not null)
        {
            fs.CreateFile(_sysfsDir, "dev", 0x124, () => $"{Core.GroupMajor}:{Minor}\n");
            fs.CreateLink(Core.ClassVfio, Name, _sysfsDir);
        }

        _node = Core.Machine.Vfs.CreateDevNode("vfio/" + Name, devt, 0x180 /* 0600 */);
    }

    internal void RemoveNode()
    {
        if (Interlocked.Exchange(ref _node, null) is null)
        {
            return;
        }

        Core.Machine.Vfs.RemoveDevNode("vfio/" + Name);
        var fs = Core.Machine.Sysfs;
        fs.RemoveLink(Core.ClassVfio, Name);
        if (_sysfsDir is not null)
        {
            fs.Remove(_sysfsDir);
            _sysfsDir = null;
        }
    }

    // ---- Finding and creating groups for devices (vfio_device_set_group / vfio_device_remove_group).

    /// <summary>vfio_device_set_group(): the group <paramref name="device"/> joins, with a drivers count for it; 0 or -errno.</summary>
    internal static int SetGroup(VfioDevice device, VfioGroupType type)
    {
        VfioCore core = device.Core;
        VfioGroup? group;
        int err = type == VfioGroupType.Iommu ? FindOrAlloc(core, device.Dev, out group) : NoIommuGroupAlloc(core, device.Dev, type, out group);
        if (err != 0)
        {
            return err;
        }

        device.Group = group;
        return 0;
    }

    private static int FindOrAlloc(VfioCore core, SimDevice dev, out VfioGroup? group)
    {
        group = null;
        IommuGroup? ig = IommuCore.GroupGet(dev);
        if (ig is null && core.NoIommuMode)
        {
            int err = NoIommuGroupAlloc(core, dev, VfioGroupType.NoIommu, out group);
            if (err == 0)
            {
                core.Kernel.AddTaint(SimKernel.TaintUser);
                core.Kernel.Log.Warn($"{dev.Name}: Adding kernel taint for vfio-noiommu group on device");
            }

            return err;
        }

        if (ig is null)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"vfio_register_group_dev: {dev.Name} has no IOMMU group (and vfio.enable_unsafe_noiommu_mode is off)");
        }

        try
        {
            if (!ig.Core.Capable(dev, IommuCap.CacheCoherency))
            {
                return ErrorReason.Fail(Errno.EINVAL, $"vfio_register_group_dev: {dev.Name}'s IOMMU does not support DMA cache coherency (IOMMU_CAP_CACHE_COHERENCY)");
            }

            core.GroupListLock.Lock();
            try
            {
                group = core.FindGroupLocked(ig);
                if (group is not null)
                {
                    if (Warn.On(core.Kernel, group.HasDevice(dev), $"vfio: {dev.Name} is already registered in group {group.Name}"))
                    {
                        group = null;
                        return ErrorReason.Fail(Errno.EINVAL, $"vfio_register_group_dev: {dev.Name} is already in vfio group");
                    }

                    group._drivers++;
                    return 0;
                }

                group = core.CreateGroupLocked(ig, VfioGroupType.Iommu);
                return group is null ? Errno.ENOMEM.Negative() : 0;
            }
            finally
            {
                core.GroupListLock.Unlock();
            }
        }
        finally
        {
            // The vfio group holds its own reference (or, in the borrowed-reference variant, none).
            ig.Put();
        }
    }

    private static int NoIommuGroupAlloc(VfioCore core, SimDevice dev, VfioGroupType type, out VfioGroup? group)
    {
        group = null;
        IommuCore registry = IommuCore.ForSoftwareGroups(core.Machine);
        IommuGroup ig = registry.AllocSoftwareGroup("vfio-noiommu");
        int err = registry.GroupAddDevice(ig, dev);
        if (err != 0)
        {
            ig.Put();
            return err;
        }

        core.GroupListLock.Lock();
        try
        {
            group = core.CreateGroupLocked(ig, type);
        }
        finally
        {
            core.GroupListLock.Unlock();
        }

        if (group is null)
        {
            registry.GroupRemoveDevice(dev);
            ig.Put();
            return Errno.ENOMEM.Negative();
        }

        ig.Put();
        return 0;
    }

    private bool HasDevice(SimDevice dev)
    {
        DeviceLock.Lock();
        try
        {
            foreach (VfioDevice d in _devices)
            {
                if (d.Dev == dev)
                {
                    return true;
                }
            }

            return false;
        }
        finally
        {
            DeviceLock.Unlock();
        }
    }

    /// <summary>vfio_device_remove_group(): the device's drivers count goes; the last one removes the node and lets go of the iommu_group.</summary>
    internal static void RemoveGroup(VfioDevice device)
    {
        VfioGroup group = device.Group!;
        VfioCore core = group.Core;
        if (group.Type is VfioGroupType.NoIommu or VfioGroupType.EmulatedIommu)
        {
            IommuCore.ForSoftwareGroups(core.Machine).GroupRemoveDevice(device.Dev);
        }

        core.GroupListLock.Lock();
        if (--group._drivers > 0 || core.Design.GroupNodes == VfioGroupNodes.AllGroupsAtLoad && group.Type == VfioGroupType.Iommu)
        {
            core.GroupListLock.Unlock();
            return;
        }

        IommuGroup? ig;
        try
        {
            core.UnlistGroupLocked(group);
            group.RemoveNode();
            group.GroupLock.Lock();
            try
            {
                Warn.On(core.Kernel, group.DeviceCountUnlocked() != 0, $"vfio_device_remove_group: group {group.Name} still lists devices");
                if (group.Container is not null)
                {
                    group.DetachContainerLocked();
                }

                ig = group._iommuGroup;
                if (core.Design.GroupHoldsIommuGroupReference)
                {
                    // v6.1+: revoke every user of the iommu_group; an open fd now sees ENODEV.
                    group._iommuGroup = null;
                }
                else
                {
                    ig = null;
                }
            }
            finally
            {
                group.GroupLock.Unlock();
            }
        }
        finally
        {
            core.GroupListLock.Unlock();
        }

        ig?.Put();
        group.Put();
    }

    private int DeviceCountUnlocked()
    {
        DeviceLock.Lock();
        try
        {
            return _devices.Count;
        }
        finally
        {
            DeviceLock.Unlock();
        }
    }

    /// <summary>vfio_device_group_register(): the device becomes findable by GET_DEVICE_FD.</summary>
    internal void RegisterDevice(VfioDevice device)
    {
        DeviceLock.Lock();
        _devices.Add(device);
        DeviceLock.Unlock();
    }

    /// <summary>vfio_device_group_unregister(): no new GET_DEVICE_FD can find the device. With device tracking (legacy variant) it stays viable until its driver is gone.</summary>
    internal void UnregisterDevice(VfioDevice device)
    {
        DeviceLock.Lock();
        if (Core.Design.Viability == VfioViabilityModel.LegacyNotifier && Core.Design.TrackDevicesDuringUnbind)
        {
            _unbound.Add(device.Dev);
        }

        _devices.Remove(device);
        DeviceLock.Unlock();
    }

    /// <inheritdoc/>
    public override string ToString() => $"vfio group {Name}";
}
