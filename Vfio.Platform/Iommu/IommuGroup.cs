// Models struct iommu_group of drivers/iommu/iommu.c (v6.12): the devices that cannot be
// isolated from each other, the group's domains (default, blocking, current), DMA ownership
// (owner, owner_cnt) and its kobject under /sys/kernel/iommu_groups/<id>.
//
// Lock rule: Mutex (group->mutex) protects the member list, the domains and the ownership
// fields. The reference count is the kobject's: each member device holds one, as does every
// iommu_group_get(); the last put removes the sysfs directory and frees the id.

using Vfio.Kernel;
using Vfio.Platform.Base;
using Vfio.Platform.Fs;

namespace Vfio.Platform.Iommu;

/// <summary>struct iommu_group.</summary>
public sealed class IommuGroup
{
    private readonly List<SimDevice> _devices = [];
    private readonly RefCount _refs;

    internal IommuGroup(IommuCore core, int id, string? name)
    {
        Core = core;
        Id = id;
        Name = name;
        Mutex = new KMutex(core.Machine.Kernel, $"iommu_group[{id}].mutex", s_mutexClass);
        _refs = new RefCount(core.Machine.Kernel, $"iommu_group[{id}].kobj", 1);
    }

    private static readonly LockClass s_mutexClass = LockClass.Get("iommu_group.mutex");

    /// <summary>The IOMMU core that owns the group.</summary>
    public IommuCore Core { get; }

    /// <summary>iommu_group_id(): the number in /sys/kernel/iommu_groups and /dev/vfio.</summary>
    public int Id { get; }

    /// <summary>The group's name (vfio's fake groups are "vfio-noiommu"), or null.</summary>
    public string? Name { get; }

    /// <summary>group-&gt;mutex.</summary>
    public KMutex Mutex { get; }

    /// <summary>The sysfs directory.</summary>
    public VfsDir? SysfsDir { get; internal set; }

    internal VfsDir? DevicesDir { get; set; }

    // The name of each member's link in devices/ (under Mutex).
    internal Dictionary<SimDevice, string> LinkNames { get; } = [];

    /// <summary>group-&gt;owner_cnt: kernel drivers using the default domain, or claims by the owner.</summary>
    public int OwnerCount { get; internal set; }

    /// <summary>group-&gt;owner: the DMA owner's cookie (vfio's container or iommufd), or null.</summary>
    public object? Owner { get; internal set; }

    /// <summary>group-&gt;domain: the domain the members translate through now.</summary>
    public IommuDomain? Domain { get; internal set; }

    /// <summary>group-&gt;default_domain: what kernel drivers use.</summary>
    public IommuDomain? DefaultDomain { get; internal set; }

    /// <summary>group-&gt;blocking_domain: attached while a user owns the group and has not attached its own.</summary>
    public IommuDomain? BlockingDomain { get; internal set; }

    /// <summary>True once the last reference is gone.</summary>
    public bool IsReleased { get; private set; }

    /// <summary>The reference count (kobject).</summary>
    public int ReferenceCount => _refs.Value;

    /// <summary>The members, a snapshot in the order they joined.</summary>
    public IReadOnlyList<SimDevice> Devices
    {
        get
        {
            Mutex.Lock();
            try
            {
                return [.. _devices];
            }
            finally
            {
                Mutex.Unlock();
            }
        }
    }

    internal List<SimDevice> DevicesLocked
    {
        get
        {
            Mutex.AssertHeld();
            return _devices;
        }
    }

    /// <summary>Member count without taking the mutex (a racy snapshot, like list_count_nodes for reporting).</summary>
    public int DeviceCount => Volatile.Read(ref _deviceCount);

    private int _deviceCount;

    internal void AddDeviceLocked(SimDevice dev)
    {
        Mutex.AssertHeld();
        _devices.Add(dev);
        Interlocked.Increment(ref _deviceCount);
    }

    internal bool RemoveDeviceLocked(SimDevice dev)
    {
        Mutex.AssertHeld();
        bool removed = _devices.Remove(dev);
        if (removed)
        {
            Interlocked.Decrement(ref _deviceCount);
        }

        return removed;
    }

    /// <summary>iommu_group_ref_get() / kobject_get().</summary>
    public IommuGroup Get()
    {
        _refs.Inc();
        return this;
    }

    /// <summary>iommu_group_put(): the last reference releases the group (sysfs directory, id, domains).</summary>
    public void Put()
    {
        if (_refs.DecAndTest())
        {
            IsReleased = true;
            Core.ReleaseGroup(this);
        }
    }

    /// <inheritdoc/>
    public override string ToString() => $"iommu_group {Id}";
}
