// Models drivers/vfio/group.c (v6.12): the vfio_group object, its /dev/vfio/N node, the
// group fd (single opener) and its ioctls GET_STATUS, SET_CONTAINER, UNSET_CONTAINER and
// GET_DEVICE_FD, and the group side of the vfio_file API.
//
// Life cycle: a group is created when the first device of an iommu_group registers
// (drivers = 1) and found again by later ones (drivers++). When the last one unregisters
// the node goes, the container is detached and the group lets go of its iommu_group;
// the object lives on while an open file holds it. Locks: group_lock protects container,
// container_users, opened_file, iommu_group and kvm; device_lock protects the device list.

using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Base;
using Vfio.Platform.Fs;
using Vfio.Platform.Iommu;
using Vfio.Platform.Pci;
using Vfio.Platform.Proc;

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
    internal int ContainerUsers { get; set; }

    /// <summary>group-&gt;opened_file (under group_lock).</summary>
    internal SimFile? OpenedFile { get; set; }

    /// <summary>group-&gt;kvm (under kvm_ref_lock).</summary>
    internal IVfioKvm? Kvm { get; set; }

    /// <summary>group-&gt;cdev_device_open_cnt: devices of the group open through their cdev (under group_lock).</summary>
    internal int CdevDeviceOpenCount { get; set; }

    /// <summary>group-&gt;iommu_group without the use-after-free check (list searches compare pointers only).</summary>
    internal IommuGroup? IommuGroupUnchecked => _iommuGroup;

    /// <summary>
    /// group-&gt;iommu_group for a dereference. When the group does not hold its own
    /// reference (design variant) the iommu_group may already be freed: that is reported
    /// as the kernel would have crashed.
    /// </summary>
    internal IommuGroup? IommuGroupLocked
    {
        get
        {
            GroupLock.AssertHeld();
            IommuGroup? g = _iommuGroup;
            if (g is not null && g.IsReleased)
            {
                Bug.On(true, $"use-after-free: vfio group {Name} dereferences iommu_group {g.Id}, freed when its last device was removed (the vfio group holds no reference of its own)");
            }

            return g;
        }
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

    // ---- Viability.

    /// <summary>The legacy model's viability of one device (vfio_dev_viable).</summary>
    private bool LegacyDeviceViable(SimDevice dev)
    {
        DeviceLock.Lock();
        try
        {
            if (_unbound.Contains(dev))
            {
                return true;
            }

            DeviceDriver? drv = dev.Driver;
            if (drv is null || dev is PciDevice { IsBridge: true } || drv.Name == "pci-stub")
            {
                return true;
            }

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

    /// <summary>
    /// Whether the group is viable now. Under DMA ownership: it has a container, or no
    /// device is bound to a DMA-API kernel driver (iommu_group_dma_owner_claimed is false).
    /// Under the legacy model: every device is vfio-bound, driver-less, pci-stub or a
    /// bridge. When it is not, <paramref name="blocker"/> names a device that breaks it.
    /// </summary>
    internal bool ViableLocked(out SimDevice? blocker)
    {
        GroupLock.AssertHeld();
        blocker = null;
        IommuGroup? ig = IommuGroupLocked;
        if (ig is null)
        {
            return false;
        }

        bool legacy = Core.Design.Viability == VfioViabilityModel.LegacyNotifier;
        if (!legacy && (HasIommuLocked() || !IommuCore.GroupDmaOwnerClaimed(ig)))
        {
            return true;
        }

        foreach (SimDevice dev in ig.Devices)
        {
            if (legacy ? !LegacyDeviceViable(dev) : dev.Driver is { DriverManagedDma: false })
            {
                blocker = dev;
                return false;
            }
        }

        // Legacy: every device passed. Ownership: claimed, but by no kernel driver (another owner).
        return legacy;
    }

    private bool HasIommuLocked()
    {
        GroupLock.AssertHeld();
        Warn.On(Core.Kernel, (Container is null) != (ContainerUsers == 0), $"vfio group {Name}: container and container_users disagree");
        return Container is not null;
    }

    // ---- The legacy bus notifier (design variant).

    internal void LegacyNotify(BusNotification action, SimDevice dev)
    {
        switch (action)
        {
            case BusNotification.AddDevice:
                GroupLock.Lock();
                bool live = ContainerUsers > 0;
                GroupLock.Unlock();
                Warn.On(Core.Kernel, live, $"{dev.Name}: Device added to live group {Id}!");
                break;
            case BusNotification.BoundDriver:
                GroupLock.Lock();
                int users = ContainerUsers;
                GroupLock.Unlock();
                if (users > 0 && !LegacyDeviceViable(dev))
                {
                    Bug.On(true, $"kernel BUG in vfio_group_nb_verify: {dev.Name} bound to {dev.Driver?.Name} inside group {Id}, which user space is using");
                }

                break;
            case BusNotification.UnboundDriver:
                DeviceLock.Lock();
                _unbound.Remove(dev);
                DeviceLock.Unlock();
                break;
        }
    }

    // ---- The group fd (vfio_group_fops).

    internal int OpenFile(SimFile file)
    {
        GroupLock.Lock();
        try
        {
            if (Drivers == 0 && Core.Design.GroupNodes != VfioGroupNodes.AllGroupsAtLoad)
            {
                return ErrorReason.Fail(Errno.ENODEV, $"open {DevPath}: the group's last device is being removed");
            }

            if (Type == VfioGroupType.NoIommu && !Capable(Capabilities.CAP_SYS_RAWIO))
            {
                return ErrorReason.Fail(Errno.EPERM, $"open {DevPath}: a noiommu group needs CAP_SYS_RAWIO");
            }

            if (CdevDeviceOpenCount > 0)
            {
                return ErrorReason.Fail(Errno.EBUSY, $"open {DevPath}: a device of the group is open through its cdev");
            }

            if (OpenedFile is not null)
            {
                return ErrorReason.Fail(Errno.EBUSY, $"open {DevPath}: the group is already open (single opener)");
            }

            if (Core.Design.GroupNodes == VfioGroupNodes.OpenRefusedUntilViable && !ViableLocked(out SimDevice? blocker))
            {
                return ErrorReason.Fail(Errno.EBUSY, $"open {DevPath}: the group is not viable ({Describe(blocker)})");
            }

            OpenedFile = file;
            file.PrivateData = this;
            return 0;
        }
        finally
        {
            GroupLock.Unlock();
        }
    }

    internal void ReleaseFile(SimFile file)
    {
        file.PrivateData = null;
        GroupLock.Lock();
        try
        {
            if (Container is not null)
            {
                if (ContainerUsers > 1 && Core.Design.ExternalUsers != VfioExternalUsers.FileApi)
                {
                    // ≤v5.18: an external user still holds the container; the last put dissolves it.
                    ContainerUsers--;
                }
                else
                {
                    DetachContainerLocked();
                }
            }

            OpenedFile = null;
        }
        finally
        {
            GroupLock.Unlock();
        }

        Put();
    }

    internal long Ioctl(uint cmd, ulong arg) => cmd switch
    {
        VfioIoctl.GroupGetDeviceFd => GetDeviceFd(arg),
        VfioIoctl.GroupGetStatus => GetStatus(arg),
        VfioIoctl.GroupSetContainer => SetContainer(arg),
        VfioIoctl.GroupUnsetContainer => UnsetContainer(),
        _ => ErrorReason.Fail(Errno.ENOTTY, $"{VfioIoctl.Name(cmd, "group")}: not a group ioctl"),
    };

    private const string GetStatusName = "VFIO_GROUP_GET_STATUS";
    private const string SetContainerName = "VFIO_GROUP_SET_CONTAINER";
    private const string UnsetContainerName = "VFIO_GROUP_UNSET_CONTAINER";
    private const string GetDeviceFdName = "VFIO_GROUP_GET_DEVICE_FD";

    private int GetStatus(ulong arg)
    {
        int err = VfioArg.CopyIn(arg, VfioGroupStatus.MinSz, out VfioGroupStatus status, GetStatusName);
        if (err != 0)
        {
            return err;
        }

        status.Flags = VfioGroupFlags.None;
        GroupLock.Lock();
        try
        {
            if (IommuGroupLocked is null)
            {
                return ErrorReason.Fail(Errno.ENODEV, $"{GetStatusName}: group {Name}'s last device was unregistered");
            }

            if (ViableLocked(out _))
            {
                status.Flags |= VfioGroupFlags.Viable;
            }

            if (HasIommuLocked())
            {
                status.Flags |= VfioGroupFlags.ContainerSet;
            }
        }
        finally
        {
            GroupLock.Unlock();
        }

        return VfioArg.CopyOut(arg, status, VfioGroupStatus.MinSz);
    }

    private int SetContainer(ulong arg)
    {
        // Before iommufd (v6.2) any other file was EINVAL; since, EBADFD.
        bool legacy = !Core.Kernel.Profile.AtLeast(6, 2);
        if (UserMemory.Get(arg, out int fd) != 0)
        {
            return ErrorReason.Fail(Errno.EFAULT, $"{SetContainerName}: cannot read the fd argument at 0x{arg:x}");
        }

        SimProcess proc = SimProcess.Current!;
        SimFile? f = proc.Files.Get(fd);
        if (f is null)
        {
            return ErrorReason.Fail(Errno.EBADF, $"{SetContainerName}: fd {fd} is not open");
        }

        try
        {
            GroupLock.Lock();
            try
            {
                if (HasIommuLocked())
                {
                    return ErrorReason.Fail(Errno.EINVAL, $"{SetContainerName}: group {Name} already has a container");
                }

                if (IommuGroupLocked is null)
                {
                    return ErrorReason.Fail(Errno.ENODEV, $"{SetContainerName}: group {Name}'s last device was unregistered");
                }

                if (VfioContainer.FromFile(f) is { } container)
                {
                    return container.AttachGroupLocked(this);
                }

                // No iommufd in this simulator: any other file is not recognised.
                return legacy
                    ? ErrorReason.Fail(Errno.EINVAL, $"{SetContainerName}: fd {fd} ({f.Path}) is not a vfio container")
                    : ErrorReason.Fail(Errno.EBADFD, $"{SetContainerName}: fd {fd} ({f.Path}) is neither a vfio container nor an iommufd");
            }
            finally
            {
                GroupLock.Unlock();
            }
        }
        finally
        {
            f.Put();
        }
    }

    private int UnsetContainer()
    {
        GroupLock.Lock();
        try
        {
            if (!HasIommuLocked())
            {
                return ErrorReason.Fail(Errno.EINVAL, $"{UnsetContainerName}: group {Name} has no container");
            }

            if (ContainerUsers != 1)
            {
                return ErrorReason.Fail(Errno.EBUSY, $"{UnsetContainerName}: group {Name}'s container has {ContainerUsers - 1} other user(s) (open device fds or external users)");
            }

            DetachContainerLocked();
            return 0;
        }
        finally
        {
            GroupLock.Unlock();
        }
    }

    /// <summary>vfio_group_detach_container() (caller holds group_lock).</summary>
    internal void DetachContainerLocked()
    {
        GroupLock.AssertHeld();
        Warn.On(Core.Kernel, ContainerUsers != 1, $"vfio_group_detach_container: group {Name} has container_users {ContainerUsers}");
        Container!.DetachGroupLocked(this);
        Container = null;
        ContainerUsers = 0;
    }

    private long GetDeviceFd(ulong arg)
    {
        int err = UserMemory.StrndupUser(arg, (int)Platform.Mm.PhysMem.PageSize, out string name);
        if (err != 0)
        {
            return ErrorReason.Fail(ErrnoExtensions.FromReturn(err), err == Errno.EFAULT.Negative()
                ? $"{GetDeviceFdName}: cannot read the device name at 0x{arg:x}"
                : $"{GetDeviceFdName}: the device name is not NUL-terminated within a page");
        }

        int lookup = GetDeviceFromName(name, out VfioDevice? device);
        if (lookup != 0)
        {
            return lookup;
        }

        SimProcess proc = SimProcess.Current!;
        int fdno = proc.GetUnusedFd(cloexec: true);
        if (fdno < 0)
        {
            device!.PutRegistration();
            return ErrorReason.Fail(ErrnoExtensions.FromReturn(fdno), $"{GetDeviceFdName}: no free fd");
        }

        int ret = VfioDeviceFile.OpenGroupPath(device!, this, out SimFile? file);
        if (ret != 0)
        {
            proc.PutUnusedFd(fdno);
            device!.PutRegistration();
            return ret;
        }

        proc.FdInstall(fdno, file!);
        return fdno;
    }

    /// <summary>vfio_device_get_from_name(): a registered device matching <paramref name="name"/>, with a registration reference.</summary>
    private int GetDeviceFromName(string name, out VfioDevice? device)
    {
        device = null;
        DeviceLock.Lock();
        try
        {
            foreach (VfioDevice it in _devices)
            {
                int ret = (it.Ops.Provides & VfioOps.Match) != 0
                    ? it.Ops.Match(it, name)
                    : string.Equals(it.Dev.Name, name, StringComparison.Ordinal) ? 1 : 0;
                if (ret < 0)
                {
                    return ErrorReason.Current is null
                        ? ErrorReason.Fail(ErrnoExtensions.FromReturn(ret), $"{GetDeviceFdName}: {it.Ops.Name} refused \"{name}\"")
                        : ret;
                }

                if (ret > 0 && it.TryGetRegistration())
                {
                    device = it;
                    return 0;
                }
            }

            return ErrorReason.Fail(Errno.ENODEV, $"{GetDeviceFdName}: no registered device \"{name}\" in group {Name}");
        }
        finally
        {
            DeviceLock.Unlock();
        }
    }

    /// <summary>vfio_group_use_container(): a device of the group is being opened (caller holds group_lock).</summary>
    internal int UseContainerLocked()
    {
        GroupLock.AssertHeld();
        if (Container is null || !Container.HasIommuDriver || Warn.On(Core.Kernel, ContainerUsers == 0, "vfio_group_use_container: no container users"))
        {
            return ErrorReason.Fail(Errno.EINVAL, Container is null
                ? $"{GetDeviceFdName}: group {Name} is not in a container (VFIO_GROUP_SET_CONTAINER first)"
                : $"{GetDeviceFdName}: group {Name}'s container has no IOMMU driver (VFIO_SET_IOMMU first)");
        }

        if (Type == VfioGroupType.NoIommu && !Capable(Capabilities.CAP_SYS_RAWIO))
        {
            return ErrorReason.Fail(Errno.EPERM, $"{GetDeviceFdName}: a noiommu device needs CAP_SYS_RAWIO");
        }

        if (Core.Design.Viability == VfioViabilityModel.LegacyNotifier && !ViableLocked(out SimDevice? blocker))
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{GetDeviceFdName}: group {Name} is not viable ({Describe(blocker)})");
        }

        OpenedFile!.Get();
        ContainerUsers++;
        return 0;
    }

    /// <summary>vfio_group_unuse_container() (caller holds group_lock).</summary>
    internal void UnuseContainerLocked()
    {
        GroupLock.AssertHeld();
        Warn.On(Core.Kernel, ContainerUsers <= 1, $"vfio_group_unuse_container: group {Name} has container_users {ContainerUsers}");
        ContainerUsers--;
        OpenedFile!.Put();
    }

    internal static string Describe(SimDevice? dev)
        => dev is null ? "no iommu group" : $"{dev.Name} is bound to {dev.Driver?.Name ?? "no driver"}";

    internal static bool Capable(int cap) => SimProcess.Current?.Credentials.Capable(cap) ?? true;

    /// <inheritdoc/>
    public override string ToString() => $"vfio group {Name}";
}

/// <summary>vfio_group_fops: the /dev/vfio/N char device.</summary>
internal sealed class VfioGroupFops(VfioCore core) : FileOperations
{
    public override int Open(VfsNode? node, SimFile file)
    {
        if (node is not VfsCharDevice cdev || core.GroupByMinorGet(cdev.Minor) is not { } group)
        {
            return Errno.ENXIO.Negative();
        }

        int err = group.OpenFile(file);
        if (err != 0)
        {
            group.Put();
        }

        return err;
    }

    public override void Release(SimFile file) => ((VfioGroup)file.PrivateData!).ReleaseFile(file);

    public override long Ioctl(SimFile file, uint cmd, ulong arg) => ((VfioGroup)file.PrivateData!).Ioctl(cmd, arg);
}
