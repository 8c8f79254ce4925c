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
    /// <summary>IOMMU_CAP_CACHE_COHERENCY: DMA is cache coherent (snoop control can be enforced).</summary>
    CacheCoherency,

    /// <summary>IOMMU_CAP_NOEXEC.</summary>
    NoExec,
}

/// <summary>The IOMMU subsystem of the simulated kernel.</summary>
public sealed partial class IommuCore : IDmaTranslator
{
    private static readonly LockClass s_probeClass = LockClass.Get("iommu_probe_device_lock");

    // Protects _groups (the IDA) and group formation (iommu_probe_device_lock).
    private readonly KMutex _lock;
    private readonly SortedDictionary<int, IommuGroup> _groups = [];

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
        Hardware = hardware;
        DefaultDomainType = defaultDomainType;
        _lock = new KMutex(machine.Kernel, "iommu_probe_device_lock", s_probeClass);
        GroupsDir = machine.Sysfs.GetOrCreateDir(machine.Sysfs.KernelDir, "iommu_groups");
        machine.Pci.Notifier.Register(new NotifierBlock((_, action, data) => OnPciBusEvent(action, data), priority: 100));
        machine.DmaTranslator = this;
        machine.Iommu = this;
    }

    /// <summary>The machine.</summary>
    public SimMachine Machine { get; }

    /// <summary>The emulated IOMMU unit.</summary>
    public IommuHardware Hardware { get; }

    /// <summary>The type of new groups' default domains (iommu.passthrough / iommu.strict).</summary>
    public IommuDomainType DefaultDomainType { get; }

    /// <summary>/sys/kernel/iommu_groups.</summary>
    public VfsDir GroupsDir { get; }

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

    /// <summary>iommu_probe_device(): puts <paramref name="dev"/> in its group and attaches it to the group's domain. 0 or -errno.</summary>
    public int ProbeDevice(SimDevice dev)
    {
        ArgumentNullException.ThrowIfNull(dev);
        IommuGroup group;
        _lock.Lock();
        try
        {
            if (dev.IommuGroup is not null)
            {
                return 0;
            }

            group = dev is PciDevice pdev ? PciDeviceGroupLocked(pdev) ?? AllocGroupLocked(null) : AllocGroupLocked(null);
            AddDeviceToGroupLocked(group, dev);
        }
        finally
        {
            _lock.Unlock();
        }

        return 0;
    }

    /// <summary>iommu_release_device(): takes <paramref name="dev"/> out of its group (the group goes when its last reference does).</summary>
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
            group.RemoveDeviceLocked(dev);
            if (group.DevicesDir is { } devicesDir && group.LinkNames.Remove(dev, out string? link))
            {
                Machine.Sysfs.RemoveLink(devicesDir, link);
            }

            if (dev.SysfsDir is { } d)
            {
                Machine.Sysfs.RemoveLink(d, "iommu_group");
            }

            dev.IommuGroup = null;
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
    private IommuGroup AllocGroupLocked(string? name)
    {
        _lock.AssertHeld();
        int id = 0;
        while (_groups.ContainsKey(id))
        {
            id++;
        }

        var group = new IommuGroup(this, id, name);
        _groups.Add(id, group);
        Sysfs.SysfsTree fs = Machine.Sysfs;
        VfsDir dir = fs.CreateDir(GroupsDir, id.ToString(CultureInfo.InvariantCulture))
            ?? throw new InvalidOperationException($"/sys/kernel/iommu_groups/{id} already exists");
        group.SysfsDir = dir;
        group.DevicesDir = fs.CreateDir(dir, "devices");
        fs.CreateFile(dir, "reserved_regions", 0x124 /* 0444 */, () => ReservedRegionsShow(group));
        fs.CreateFile(dir, "type", 0x1a4 /* 0644 */, () => TypeShow(group), s => TypeStore(group, s));
        if (name is not null)
        {
            fs.CreateFile(dir, "name", 0x124, () => name + "\n");
        }

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
        Sysfs.SysfsTree fs = Machine.Sysfs;
        group.Mutex.Lock();
        try
        {
            if (group.DevicesDir is { } devicesDir && dev.SysfsDir is { } devDir)
            {
                string link = dev.Name;
                for (int n = 0; fs.CreateLink(devicesDir, link, devDir) != 0; n++)
                {
                    link = $"{dev.Name}.{n}";
                }

                group.LinkNames[dev] = link;

                fs.CreateLink(devDir, "iommu_group", group.SysfsDir!);
            }

            group.AddDeviceLocked(dev);
            dev.IommuGroup = group;
            if (group.DefaultDomain is null)
            {
                group.DefaultDomain = Hardware.AllocDomain(DefaultDomainType);
                group.Domain ??= group.DefaultDomain;
            }
        }
        finally
        {
            group.Mutex.Unlock();
        }

        Machine.Kernel.Trace.Event(KTask.CurrentOrNull, "iommu_group_add_device", group.ToString(), dev.Name);
    }

    /// <summary>The last reference of <paramref name="group"/> went: its directory, id and domains go.</summary>
    internal void ReleaseGroup(IommuGroup group)
    {
        _lock.Lock();
        try
        {
            _groups.Remove(group.Id);
            if (group.SysfsDir is { } dir)
            {
                Machine.Sysfs.Remove(dir);
            }
        }
        finally
        {
            _lock.Unlock();
        }

        group.DefaultDomain?.Free();
        group.BlockingDomain?.Free();
        group.DefaultDomain = null;
        group.BlockingDomain = null;
        group.Domain = null;
        Machine.Kernel.Trace.Event(KTask.CurrentOrNull, "iommu_group_release", group.ToString());
    }

    /// <summary>iommu_group_get(): the device's group with a reference, or null.</summary>
    public static IommuGroup? GroupGet(SimDevice dev)
    {
        ArgumentNullException.ThrowIfNull(dev);
        return dev.IommuGroup?.Get();
    }

    /// <summary>iommu_group_get_by_id(): the group with <paramref name="id"/> and a reference, or null.</summary>
    public IommuGroup? GroupGetById(int id)
    {
        _lock.Lock();
        try
        {
            return _groups.TryGetValue(id, out IommuGroup? g) ? g.Get() : null;
        }
        finally
        {
            _lock.Unlock();
        }
    }

    /// <summary>device_iommu_capable() / iommu_capable().</summary>
    public bool Capable(SimDevice dev, IommuCap cap)
    {
        ArgumentNullException.ThrowIfNull(dev);
        return dev.IommuGroup is not null && cap switch
        {
            IommuCap.CacheCoherency => Hardware.Config.CacheCoherent,
            IommuCap.NoExec => true,
            _ => false,
        };
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
    /// iommu_group_store_type(): CAP_SYS_ADMIN and CAP_SYS_RAWIO (else -EACCES); identity,
    /// DMA, DMA-FQ or auto (else -EINVAL); only while no driver uses the group and no owner
    /// has claimed it (else -EPERM). Changes the default domain.
    /// </summary>
    private long TypeStore(IommuGroup group, string buf)
    {
        Proc.Credentials? cred = Proc.SimProcess.Current?.Credentials;
        if (cred is not null && (!cred.Capable(Proc.Capabilities.CAP_SYS_ADMIN) || !cred.Capable(Proc.Capabilities.CAP_SYS_RAWIO)))
        {
            return Errno.EACCES.Negative();
        }

        string s = buf.EndsWith('\n') ? buf[..^1] : buf;
        IommuDomainType type;
        switch (s)
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
            if (group.OwnerCount != 0)
            {
                return Errno.EPERM.Negative();
            }

            IommuDomain? old = group.DefaultDomain;
            if (old?.Type != type)
            {
                IommuDomain fresh = Hardware.AllocDomain(type);
                group.DefaultDomain = fresh;
                group.Domain = fresh;
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
        return Hardware.Dma(device.IommuGroup?.Domain, device.Name, iova, buffer, IommuAccess.Read);
    }

    /// <inheritdoc/>
    public int DmaWrite(PciDevice device, ulong iova, ReadOnlySpan<byte> buffer)
    {
        ArgumentNullException.ThrowIfNull(device);
        return Hardware.Dma(device.IommuGroup?.Domain, device.Name, iova, buffer);
    }
}
