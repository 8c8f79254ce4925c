// Models the IOMMU core of drivers/iommu/iommu.c (v6.12) on top of the emulated hardware:
// device probe and release through the PCI bus notifier, group formation
// (pci_device_group, below in IommuCore.Groups.cs), group ids from an IDA (lowest free),
// the sysfs ABI (/sys/kernel/iommu_groups/N/{devices,reserved_regions,type} and each
// device's iommu_group link), reserved regions, domains and attach/detach, DMA ownership
// (IommuCore.Ownership.cs), and the DMA path of every device: its group's current domain
// through the hardware.
//
// Lock order: _lock (iommu_probe_device_lock: group formation, the IDA and the group table)
// → group.Mutex (group->mutex). Neither is held across a bus notifier chain call.

using System.Globalization;
using Vfio.Kernel;
using Vfio.Platform.Base;
using Vfio.Platform.Fs;
using Vfio.Platform.Pci;

namespace Vfio.Platform.Iommu;

/// <summary>IOMMU capabilities for iommu_capable() (enum iommu_cap).</summary>
public enum IommuCap
{
    /// <summary>IOMMU_CAP_CACHE_COHERENCY: DMA is cache coherent (vfio requires it to register a device).</summary>
    CacheCoherency,

    /// <summary>IOMMU_CAP_NOEXEC (VT-d answers no).</summary>
    NoExec,

    /// <summary>IOMMU_CAP_ENFORCE_CACHE_COHERENCY: a domain can be made to enforce snooping (snoop control; vfio_file_enforced_coherent).</summary>
    EnforceCacheCoherency,
}

/// <summary>The IOMMU subsystem of the simulated kernel.</summary>
public sealed partial class IommuCore : IDmaTranslator
{
    private static readonly LockClass s_probeClass = LockClass.Get("iommu_probe_device_lock");

    // Protects _groups and group formation (iommu_probe_device_lock); the last put of a
    // group happens under it, so formation never finds a group whose count reached zero.
    private readonly KMutex _lock;
    private readonly SortedDictionary<int, IommuGroup> _groups = [];
    private readonly Ida _groupIds;

    // Extra reserved regions per device (RMRRs and the like); every device also has the MSI window. Under _lock.
    private readonly Dictionary<SimDevice, List<IommuReservedRegion>> _extraRegions = [];

    /// <summary>Installs the IOMMU on <paramref name="machine"/>: groups for PCI functions added from now on, and device DMA through <paramref name="hardware"/>.</summary>
    public IommuCore(SimMachine machine, IommuHardware hardware, IommuDomainType defaultDomainType = IommuDomainType.Dma)
    {
        ArgumentNullException.ThrowIfNull(machine);
        ArgumentNullException.ThrowIfNull(hardware);
        if (defaultDomainType is not (IommuDomainType.Dma or IommuDomainType.DmaFq or IommuDomainType.Identity))
        {
            throw new ArgumentOutOfRangeException(nameof(defaultDomainType), defaultDomainType, "the default domain is DMA, DMA-FQ or identity");
        }

        Machine = machine;
        _hardware = hardware;
        DefaultDomainType = defaultDomainType;
        _lock = new KMutex(machine.Kernel, "iommu_probe_device_lock", s_probeClass);
        _groupIds = new Ida(machine.Kernel, "iommu_group_ida");
        GroupsDir = machine.Sysfs.GetOrCreateDir(machine.Sysfs.KernelDir, "iommu_groups");
        machine.Pci.Notifier.Register(new NotifierBlock((_, action, data) => OnPciBusEvent(action, data), priority: 100));
        machine.DmaTranslator = this;
        machine.Iommu = this;

        // bus_iommu_probe(): functions already on the bus are grouped now.
        foreach (Base.SimDevice dev in machine.Pci.Devices)
        {
            ProbeDevice(dev);
        }
    }

    /// <summary>The machine.</summary>
    public SimMachine Machine { get; }

    /// <summary>The emulated IOMMU unit.</summary>
    public IommuHardware Hardware => _hardware ?? throw new InvalidOperationException("this machine has no IOMMU hardware: only software (fake) groups exist");

    /// <summary>False for the group registry of a machine without an IOMMU (noiommu and emulated-IOMMU groups only).</summary>
    public bool HasHardware => _hardware is not null;

    // Null for a machine without an IOMMU.
    private readonly IommuHardware? _hardware;

    // A groups-only core for a machine without an IOMMU.
    private IommuCore(SimMachine machine)
    {
        Machine = machine;
        DefaultDomainType = IommuDomainType.Dma;
        _lock = new KMutex(machine.Kernel, "iommu_probe_device_lock", s_probeClass);
        _groupIds = new Ida(machine.Kernel, "iommu_group_ida");
        GroupsDir = machine.Sysfs.GetOrCreateDir(machine.Sysfs.KernelDir, "iommu_groups");
    }

    /// <summary>
    /// The registry that allocates software groups (iommu_group_alloc without IOMMU ops, as
    /// vfio's noiommu and emulated-IOMMU groups use): the machine's IOMMU core, or on a
    /// machine without an IOMMU a groups-only core created on first use.
    /// </summary>
    public static IommuCore ForSoftwareGroups(SimMachine machine)
    {
        ArgumentNullException.ThrowIfNull(machine);
        if (machine.Iommu is { } iommu)
        {
            return iommu;
        }

        IommuCore? existing = Volatile.Read(ref machine.SoftwareIommuField);
        if (existing is not null)
        {
            return existing;
        }

        var created = new IommuCore(machine);
        return Interlocked.CompareExchange(ref machine.SoftwareIommuField, created, null) ?? created;
    }

    /// <summary>
    /// iommu_group_alloc() + iommu_group_set_name() for a software group: no domains, the
    /// caller holds the only reference. Members join with <see cref="GroupAddDevice"/>.
    /// </summary>
    public IommuGroup AllocSoftwareGroup(string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        _lock.Lock();
        try
        {
            IommuGroup g = AllocGroupLocked(software: true);
            g.Name = name;
            Machine.Sysfs.CreateFile(g.SysfsDir!, "name", 0x124 /* 0444 */, () => name + "\n");
            return g;
        }
        finally
        {
            _lock.Unlock();
        }
    }

    /// <summary>iommu_group_add_device() for a software group: the sysfs links and dev-&gt;iommu_group; the group gains a reference held by the device.</summary>
    public int GroupAddDevice(IommuGroup group, SimDevice dev)
    {
        ArgumentNullException.ThrowIfNull(group);
        ArgumentNullException.ThrowIfNull(dev);
        if (dev.IommuGroup is not null)
        {
            return Errno.EBUSY.Negative();
        }

        group.Get();
        _lock.Lock();
        try
        {
            AddDeviceToGroupLocked(group, dev);
        }
        finally
        {
            _lock.Unlock();
        }

        return 0;
    }

    /// <summary>iommu_group_remove_device().</summary>
    public void GroupRemoveDevice(SimDevice dev) => ReleaseDevice(dev);

    /// <summary>The type of new groups' default domains (iommu.passthrough / iommu.strict).</summary>
    public IommuDomainType DefaultDomainType { get; }

    /// <summary>/sys/kernel/iommu_groups.</summary>
    public VfsDir GroupsDir { get; }

    /// <summary>The live groups by id, read without the lock: only when no task runs (the object graph's snapshot).</summary>
    internal IReadOnlyList<IommuGroup> GroupsUnlocked => [.. _groups.Values];

    /// <summary>The live groups by id, a snapshot.</summary>
    public IReadOnlyList<IommuGroup> Groups
    {
        get
        {
            _lock.Lock();
            try
            {
                return [.. _groups.Values];
            }
            finally
            {
                _lock.Unlock();
            }
        }
    }

    // ---- Probe and release (iommu_bus_notifier).

    private int OnPciBusEvent(ulong action, object? data)
    {
        if (data is not PciDevice dev)
        {
            return 0;
        }

        switch ((BusNotification)action)
        {
            case BusNotification.AddDevice:
                ProbeDevice(dev);
                break;
            case BusNotification.RemovedDevice:
                ReleaseDevice(dev);
                break;
        }

        return 0;
    }

    /// <summary>iommu_probe_device(): puts <paramref name="dev"/> in its group and attaches it to the group's domain.</summary>
    public void ProbeDevice(SimDevice dev)
    {
        ArgumentNullException.ThrowIfNull(dev);
        _lock.Lock();
        try
        {
            if (dev.IommuGroup is null)
            {
                IommuGroup group = (dev is PciDevice pdev ? PciDeviceGroupLocked(pdev) : null) ?? AllocGroupLocked();
                AddDeviceToGroupLocked(group, dev);
            }
        }
        finally
        {
            _lock.Unlock();
        }
    }

    /// <summary>
    /// iommu_release_device(): takes <paramref name="dev"/> out of its group. When the last
    /// member leaves, the group's domains are freed (iommu_deinit_device); the group itself
    /// goes when its last reference does.
    /// </summary>
    public void ReleaseDevice(SimDevice dev)
    {
        ArgumentNullException.ThrowIfNull(dev);
        IommuGroup? group = dev.IommuGroup;
        if (group is null)
        {
            return;
        }

        group.Mutex.Lock();
        try
        {
            string? link = group.RemoveDeviceLocked(dev);
            if (group.DevicesDir is { } devicesDir && link is not null)
            {
                Machine.Sysfs.RemoveLink(devicesDir, link);
            }

            if (dev.SysfsDir is { } d)
            {
                Machine.Sysfs.RemoveLink(d, "iommu_group");
            }

            dev.IommuGroup = null;
            if (group.CountLocked == 0)
            {
                SetDomainLocked(group, null);
                group.DefaultDomain?.Free();
                group.BlockingDomain?.Free();
                group.DefaultDomain = null;
                group.BlockingDomain = null;
            }
        }
        finally
        {
            group.Mutex.Unlock();
        }

        _lock.Lock();
        _extraRegions.Remove(dev);
        _lock.Unlock();
        group.Put();
    }

    /// <summary>iommu_group_alloc(): the lowest free id, the sysfs directory, a reference for the caller.</summary>
    private IommuGroup AllocGroupLocked(bool software = false)
    {
        _lock.AssertHeld();
        int id = _groupIds.Alloc();
        Sysfs.SysfsTree fs = Machine.Sysfs;
        VfsDir? dir = fs.CreateDir(GroupsDir, id.ToString(CultureInfo.InvariantCulture));
        if (dir is null)
        {
            _groupIds.Free(id);
            throw new InvalidOperationException($"/sys/kernel/iommu_groups/{id} already exists");
        }

        var group = new IommuGroup(this, id) { SysfsDir = dir, DevicesDir = fs.CreateDir(dir, "devices"), IsSoftware = software };
        _groups.Add(id, group);
        fs.CreateFile(dir, "reserved_regions", 0x124 /* 0444 */, () => ReservedRegionsShow(group));
        fs.CreateFile(dir, "type", 0x1a4 /* 0644 */, () => TypeShow(group), s => TypeStore(group, s));
        Machine.Kernel.Trace.Event(KTask.CurrentOrNull, "iommu_group_alloc", group.ToString());
        return group;
    }

    /// <summary>
    /// iommu_group_add_device() with the default-domain setup of __iommu_probe_device: the
    /// devices/ link (name.N on a collision), the device's iommu_group link, and the device
    /// joins the group's current domain (a new group gets its default domain first).
    /// The group reference from formation passes to the device.
    /// </summary>
    private void AddDeviceToGroupLocked(IommuGroup group, SimDevice dev)
    {
        _lock.AssertHeld();
        Sysfs.SysfsTree fs = Machine.Sysfs;
        group.Mutex.Lock();
        try
        {
            string? link = null;
            if (group.DevicesDir is { } devicesDir && dev.SysfsDir is { } devDir)
            {
                link = dev.Name;
                for (int n = 0; fs.CreateLink(devicesDir, link, devDir) != 0; n++)
                {
                    link = $"{dev.Name}.{n}";
                }

                fs.CreateLink(devDir, "iommu_group", group.SysfsDir!);
            }

            group.AddDeviceLocked(dev, link);
            dev.IommuGroup = group;
            if (group.DefaultDomain is null && !group.IsSoftware)
            {
                // A new group (an emptied one is never found again: only members lead to a group).
                group.DefaultDomain = Hardware.AllocDomain(DefaultDomainType);
                SetDomainLocked(group, group.DefaultDomain);
            }
        }

        finally
        {
            group.Mutex.Unlock();
        }

        Machine.Kernel.Trace.Event(KTask.CurrentOrNull, "iommu_group_add_device", group.ToString(), dev.Name);
    }

    /// <summary>The last reference of <paramref name="group"/> went (under _lock): its directory and id go.</summary>
    internal void ReleaseGroupLocked(IommuGroup group)
    {
        _lock.AssertHeld();
        Warn.On(Machine.Kernel, group.Domain is not null || group.DefaultDomain is not null, $"iommu_group_release: {group} still has a domain");
        _groups.Remove(group.Id);
        if (group.SysfsDir is { } dir)
        {
            Machine.Sysfs.Remove(dir);
        }

        _groupIds.Free(group.Id);
        Machine.Kernel.Trace.Event(KTask.CurrentOrNull, "iommu_group_release", group.ToString());

        // kfree(group): a pointer that still reaches it is a use-after-free (KASAN).
        Machine.Kernel.Kasan.Free(group, $"iommu_group {group.Id}", "iommu_group_release");
    }

    /// <summary>Drops a group reference; the last one releases the group under _lock.</summary>
    internal void PutGroup(IommuGroup group, RefCount refs)
    {
        if (refs.DecAndMutexLock(_lock))
        {
            try
            {
                ReleaseGroupLocked(group);
            }
            finally
            {
                _lock.Unlock();
            }
        }
    }

    /// <summary>iommu_group_get(): the device's group with a reference, or null.</summary>
    public static IommuGroup? GroupGet(SimDevice dev)
    {
        ArgumentNullException.ThrowIfNull(dev);
        return dev.IommuGroup?.Get();
    }

    /// <summary>device_iommu_capable() / iommu_capable().</summary>
    public bool Capable(SimDevice dev, IommuCap cap)
    {
        ArgumentNullException.ThrowIfNull(dev);
        return dev.IommuGroup is not null && cap switch
        {
            IommuCap.CacheCoherency => !dev.IommuGroup.IsSoftware && Hardware.Config.CacheCoherent,
            IommuCap.EnforceCacheCoherency => !dev.IommuGroup.IsSoftware && Hardware.Config.CanEnforceCacheCoherency && !dev.IommuGroup.NoSnoopControl,
            _ => false,
        };
    }

    /// <summary>
    /// iommu_group_has_isolated_msi(): every member's MSI is isolated (interrupt remapping).
    /// Software groups have no IOMMU and never isolate.
    /// </summary>
    public bool GroupHasIsolatedMsi(IommuGroup group)
    {
        ArgumentNullException.ThrowIfNull(group);
        return !group.IsSoftware && HasHardware && Hardware.Config.InterruptRemapping;
    }

    // ---- Reserved regions.

    /// <summary>Adds a reserved region (an RMRR, a reserved window) for <paramref name="dev"/> (iommu_get_resv_regions of its driver).</summary>
    public void AddDeviceReservedRegion(SimDevice dev, IommuReservedRegion region)
    {
        ArgumentNullException.ThrowIfNull(dev);
        _lock.Lock();
        try
        {
            if (!_extraRegions.TryGetValue(dev, out List<IommuReservedRegion>? list))
            {
                _extraRegions[dev] = list = [];
            }

            list.Add(region);
        }
        finally
        {
            _lock.Unlock();
        }
    }

    /// <summary>iommu_get_resv_regions() of one device: the MSI window and any extras.</summary>
    public IReadOnlyList<IommuReservedRegion> DeviceReservedRegions(SimDevice dev)
    {
        ArgumentNullException.ThrowIfNull(dev);
        _lock.Lock();
        try
        {
            List<IommuReservedRegion> list = [IommuReservedRegion.X86MsiWindow];
            if (_extraRegions.TryGetValue(dev, out List<IommuReservedRegion>? extra))
            {
                list.AddRange(extra);
            }

            return list;
        }
        finally
        {
            _lock.Unlock();
        }
    }

    /// <summary>iommu_get_group_resv_regions(): every member's regions, sorted and merged.</summary>
    public IReadOnlyList<IommuReservedRegion> GroupReservedRegions(IommuGroup group)
    {
        ArgumentNullException.ThrowIfNull(group);
        var merged = new List<IommuReservedRegion>();
        foreach (SimDevice dev in group.Devices)
        {
            foreach (IommuReservedRegion r in DeviceReservedRegions(dev))
            {
                IommuReservedRegion.Insert(merged, r);
            }
        }

        return merged;
    }

    private string ReservedRegionsShow(IommuGroup group)
    {
        var sb = new System.Text.StringBuilder();
        foreach (IommuReservedRegion r in GroupReservedRegions(group))
        {
            sb.Append(r.ToString()).Append('\n');
        }

        return sb.ToString();
    }

    // ---- type attribute.

    private static string TypeShow(IommuGroup group)
    {
        group.Mutex.Lock();
        try
        {
            return (group.DefaultDomain?.Type.SysfsName() ?? "unknown") + "\n";
        }
        finally
        {
            group.Mutex.Unlock();
        }
    }

    /// <summary>
    /// iommu_group_store_type(): CAP_SYS_ADMIN and CAP_SYS_RAWIO (else -EACCES); a default
    /// domain (else -EINVAL); identity, DMA, DMA-FQ or auto (else -EINVAL); DMA to DMA-FQ
    /// switches the live domain in place; anything else only while the group has members
    /// and nobody uses it (else -EPERM). Changes the default domain, and the current one
    /// when that was the default.
    /// </summary>
    private long TypeStore(IommuGroup group, string buf)
    {
        Proc.Credentials? cred = Proc.SimProcess.Current?.Credentials;
        if (cred is not null && (!cred.Capable(Proc.Capabilities.CAP_SYS_ADMIN) || !cred.Capable(Proc.Capabilities.CAP_SYS_RAWIO)))
        {
            return Errno.EACCES.Negative();
        }

        if (group.DefaultDomain is null)
        {
            return Errno.EINVAL.Negative();
        }

        IommuDomainType type;
        switch (Base.BusType.StripNewline(buf))
        {
            case "identity":
                type = IommuDomainType.Identity;
                break;
            case "DMA":
                type = IommuDomainType.Dma;
                break;
            case "DMA-FQ":
                type = IommuDomainType.DmaFq;
                break;
            case "auto":
                type = DefaultDomainType;
                break;
            default:
                return Errno.EINVAL.Negative();
        }

        group.Mutex.Lock();
        try
        {
            // A flush queue comes up on the live DMA domain, even with a driver bound.
            if (type == IommuDomainType.DmaFq && group.DefaultDomain?.Type == IommuDomainType.Dma)
            {
                group.DefaultDomain.UseFlushQueue();
                return buf.Length;
            }

            if (group.CountLocked == 0 || group.OwnerCount != 0)
            {
                return Errno.EPERM.Negative();
            }

            IommuDomain? old = group.DefaultDomain;
            if (old?.Type != type)
            {
                IommuDomain fresh = Hardware.AllocDomain(type);
                group.DefaultDomain = fresh;
                if (group.Domain == old)
                {
                    SetDomainLocked(group, fresh);
                }

                old?.Free();
            }

            return buf.Length;
        }
        finally
        {
            group.Mutex.Unlock();
        }
    }

    // ---- DMA through the IOMMU.

    /// <inheritdoc/>
    public int DmaRead(PciDevice device, ulong iova, Span<byte> buffer)
    {
        ArgumentNullException.ThrowIfNull(device);
        return Hardware.DmaRead(device.IommuGroup?.Domain, device.Name, iova, buffer);
    }

    /// <inheritdoc/>
    public int DmaWrite(PciDevice device, ulong iova, ReadOnlySpan<byte> buffer)
    {
        ArgumentNullException.ThrowIfNull(device);
        return Hardware.DmaWrite(device.IommuGroup?.Domain, device.Name, iova, buffer);
    }
}
