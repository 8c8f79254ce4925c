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
    // The members and the name of each one's link in devices/ (struct group_device).
    private readonly List<(SimDevice Dev, string? Link)> _devices = [];
    private readonly RefCount _refs;

    internal IommuGroup(IommuCore core, int id)
    {
        Core = core;
        Id = id;
        Mutex = new KMutex(core.Machine.Kernel, $"iommu_group[{id}].mutex", s_mutexClass);
        _refs = new RefCount(core.Machine.Kernel, $"iommu_group[{id}].kobj", 1);
    }

    private static readonly LockClass s_mutexClass = LockClass.Get("iommu_group.mutex");

    /// <summary>The IOMMU core that owns the group.</summary>
    public IommuCore Core { get; }

    /// <summary>iommu_group_id(): the number in /sys/kernel/iommu_groups and /dev/vfio.</summary>
    public int Id { get; }

    /// <summary>group-&gt;mutex.</summary>
    public KMutex Mutex { get; }

    /// <summary>A software group (vfio noiommu / emulated IOMMU): no IOMMU ops, no domains.</summary>
    public bool IsSoftware { get; init; }

    /// <summary>
    /// The group sits behind a remapping unit without snoop control (VT-d ECAP.SC clear): a
    /// domain it is attached to cannot enforce cache coherency, and a domain that already
    /// enforces it refuses the group (-EINVAL), as intel-iommu does. Default false.
    /// </summary>
    public bool NoSnoopControl { get; set; }

    /// <summary>iommu_group_set_name(): the group's name attribute, or null.</summary>
    public string? Name { get; internal set; }

    /// <summary>The sysfs directory.</summary>
    public VfsDir? SysfsDir { get; init; }

    internal VfsDir? DevicesDir { get; init; }

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
    public bool IsReleased => _refs.Value == 0;

    /// <summary>The reference count (kobject).</summary>
    public int ReferenceCount => _refs.Value;

    /// <summary>The members in the order they joined, read without the group mutex: only when no task runs (the object graph's snapshot).</summary>
    internal IReadOnlyList<SimDevice> DevicesUnlocked => [.. _devices.Select(d => d.Dev)];

    /// <summary>The members, a snapshot in the order they joined.</summary>
    public IReadOnlyList<SimDevice> Devices
    {
        get
        {
            Mutex.Lock();
            try
            {
                return [.. _devices.Select(d => d.Dev)];
            }
            finally
            {
                Mutex.Unlock();
            }
        }
    }

    /// <summary>The member count (the caller holds the mutex).</summary>
    internal int CountLocked
    {
        get
        {
            Mutex.AssertHeld();
            return _devices.Count;
        }
    }

    internal void AddDeviceLocked(SimDevice dev, string? link)
    {
        Mutex.AssertHeld();
        _devices.Add((dev, link));
    }

    /// <summary>Removes <paramref name="dev"/>; returns the name of its devices/ link (null if it had none or was not a member).</summary>
    internal string? RemoveDeviceLocked(SimDevice dev)
    {
        Mutex.AssertHeld();
        int i = _devices.FindIndex(d => d.Dev == dev);
        if (i < 0)
        {
            return null;
        }

        string? link = _devices[i].Link;
        _devices.RemoveAt(i);
        return link;
    }

    /// <summary>iommu_group_ref_get() / kobject_get().</summary>
    public IommuGroup Get()
    {
        _refs.Inc();
        return this;
    }

    /// <summary>iommu_group_put(): the last reference releases the group (sysfs directory and id).</summary>
    public void Put() => Core.PutGroup(this, _refs);

    /// <inheritdoc/>
    public override string ToString() => $"iommu_group {Id}";
}
