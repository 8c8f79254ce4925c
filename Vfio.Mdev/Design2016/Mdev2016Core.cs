// Models drivers/vfio/mdev/mdev_core.c of v4.10 (the 2016 series "Add Mediated device
// support"): mdev_register_device / mdev_unregister_device with parent_ops, and
// mdev_device_create / mdev_device_remove. Loaded on top of the mdev core (its bus) when
// MdevDesign.Api is Series2016; registers the vfio_mdev bridge driver on the mdev bus.
//
// Differences from today's core, in the kernel's order:
// * registration: ops without create, remove or types → EINVAL; a parent already
//   registered for the device → EEXIST;
// * create: unknown parent → EINVAL; a UUID in use → EEXIST; the device is registered and
//   bound to vfio_mdev (which registers the vfio device) BEFORE the vendor's create runs; a
//   create error unregisters it again;
// * remove: not on the list → ENODEV; the vendor's remove runs first and may refuse: the
//   write then fails with EBUSY and the mdev stays (back on the list); otherwise the device
//   is unregistered, which blocks in vfio until user space has closed it;
// * parent unregistration forces every child's removal (vendor errors are ignored).
//
// Lock order: _parentLock (parent_list_lock) → _listLock (mdev_list_lock, a leaf) →
// the mdev's device_lock → vfio locks. Removal runs with neither list lock held across
// device_unregister, as v4.10 did for the remove write; unregistration holds
// parent_list_lock across the children's removal, as v4.10 did.

using System.Collections.Concurrent;
using Vfio.Core;
using Vfio.Kernel;
using Vfio.Platform;
using Vfio.Platform.Base;

namespace Vfio.Mdev.Design2016;

/// <summary>The 2016 mdev core (mdev_core.c of v4.10) with its vfio_mdev bridge.</summary>
public sealed class Mdev2016Core
{
    private readonly KMutex _parentLock;
    private readonly KMutex _listLock;
    private readonly Dictionary<SimDevice, (MdevParent Parent, IMdevParentOps Ops)> _parents = [];
    private readonly List<MdevDevice> _mdevs = [];

    private Mdev2016Core(MdevCore core)
    {
        Core = core;
        _parentLock = new KMutex(core.Kernel, "parent_list_lock");
        _listLock = new KMutex(core.Kernel, "mdev_list_lock(2016)");
        Driver = new VfioMdevDriver(this);
    }

    /// <summary>The mdev core (its bus).</summary>
    public MdevCore Core { get; }

    /// <summary>The vfio_mdev bridge driver.</summary>
    public VfioMdevDriver Driver { get; }

    /// <summary>The mediated devices that exist now, a snapshot.</summary>
    public IReadOnlyList<MdevDevice> Devices
    {
        get
        {
            _listLock.Lock();
            try
            {
                return [.. _mdevs];
            }
            finally
            {
                _listLock.Unlock();
            }
        }
    }

    internal ConcurrentDictionary<MdevDevice, VfioDevice> VfioDevices { get; } = new();

    /// <summary>Loads the 2016 core on a machine whose mdev core runs <see cref="MdevApi.Series2016"/>; registers vfio_mdev.</summary>
    public static Mdev2016Core Load(SimMachine machine)
    {
        MdevCore core = MdevCore.Of(machine);
        if (core.Design.Api != MdevApi.Series2016)
        {
            throw new InvalidOperationException("the 2016 mdev API needs MdevDesign.Api = MdevApi.Series2016");
        }

        var c = new Mdev2016Core(core);
        if (!machine.AddModule(c))
        {
            throw new InvalidOperationException("the 2016 mdev core is already loaded on this machine");
        }

        int err = core.RegisterDriver(c.Driver);
        if (err != 0)
        {
            throw new InvalidOperationException($"vfio_mdev: driver registration failed ({err})");
        }

        return c;
    }

    /// <summary>The 2016 core of <paramref name="machine"/>; throws when it is not loaded.</summary>
    public static Mdev2016Core Of(SimMachine machine)
    {
        ArgumentNullException.ThrowIfNull(machine);
        return machine.GetModule<Mdev2016Core>() ?? throw new InvalidOperationException("the 2016 mdev core is not loaded: use UseMdevDesign2016() on the builder");
    }

    /// <summary>mdev_register_device(dev, ops): 0 or -errno.</summary>
    public int RegisterDevice(SimDevice dev, IMdevParentOps ops)
    {
        ArgumentNullException.ThrowIfNull(dev);
        if (ops is null || ops.SupportedTypes is not { Count: > 0 } types)
        {
            return ErrorReason.Fail(Errno.EINVAL, "mdev_register_device: no parent_ops or no supported_type_groups");
        }

        _parentLock.Lock();
        try
        {
            if (_parents.ContainsKey(dev))
            {
                return ErrorReason.Fail(Errno.EEXIST, $"mdev_register_device: {dev.Name} is already a parent");
            }

            var parent = new MdevParent { Dev = dev, Driver = Driver, Types = types, IsRegistered = true };
            foreach (MdevType t in types)
            {
                t.Parent = parent;
                t.DirName = dev.Driver is { } drv ? $"{drv.Name}-{t.SysfsName}" : t.SysfsName;
            }

            _parents.Add(dev, (parent, ops));
            Core.Kernel.Log.Info($"{dev.Name}: MDEV: Registered");
            return 0;
        }
        finally
        {
            _parentLock.Unlock();
        }
    }

    /// <summary>mdev_unregister_device(dev): every child is removed by force (the vendor cannot refuse; each removal waits for its vfio device to be closed).</summary>
    public void UnregisterDevice(SimDevice dev)
    {
        ArgumentNullException.ThrowIfNull(dev);
        _parentLock.Lock();
        try
        {
            if (!_parents.Remove(dev, out (MdevParent Parent, IMdevParentOps Ops) p))
            {
                return;
            }

            Core.Kernel.Log.Info($"{dev.Name}: MDEV: Unregistering");
            foreach (MdevDevice m in Devices)
            {
                if (m.MdevParent == p.Parent)
                {
                    RemoveCore(m, p.Ops, force: true);
                }
            }

            p.Parent.IsRegistered = false;
        }
        finally
        {
            _parentLock.Unlock();
        }
    }

    /// <summary>mdev_device_create(kobj, dev, uuid): 0 or -errno.</summary>
    public int CreateDevice(MdevType type, Guid uuid)
    {
        ArgumentNullException.ThrowIfNull(type);
        IMdevParentOps? ops = type.Parent is { } parent ? OpsOf(parent) : null;
        if (ops is null)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"mdev_device_create: type {type} has no registered parent");
        }

        _listLock.Lock();
        try
        {
            foreach (MdevDevice m in _mdevs)
            {
                if (m.Uuid == uuid)
                {
                    return ErrorReason.Fail(Errno.EEXIST, $"mdev_device_create: {uuid:D} is in use");
                }
            }
        }
        finally
        {
            _listLock.Unlock();
        }

        var mdev = new MdevDevice(Core.Machine, uuid, type, _ => { });
        int ret = Core.Bus.AddDevice(mdev);
        if (ret == 0)
        {
            ret = Core.Bus.DeviceDriverAttach(Driver, mdev);
            if (ret != 0)
            {
                Core.Bus.RemoveDevice(mdev);
            }
        }

        if (ret != 0)
        {
            mdev.Put();
            return ret;
        }

        ret = ops.Create(type, mdev);
        if (ret != 0)
        {
            Core.Bus.RemoveDevice(mdev);
            mdev.Put();
            return ret;
        }

        _listLock.Lock();
        mdev.Active = true;
        _mdevs.Add(mdev);
        _listLock.Unlock();
        return 0;
    }

    /// <summary>The remove write: mdev_device_remove(dev, false); 0 or -errno (EBUSY when the vendor refuses, and the mdev stays).</summary>
    public int RemoveDevice(MdevDevice mdev)
    {
        ArgumentNullException.ThrowIfNull(mdev);
        IMdevParentOps? ops = OpsOf(mdev.MdevParent);
        return ops is null ? ErrorReason.Fail(Errno.ENODEV, $"mdev_device_remove: {mdev.Name}'s parent is gone") : RemoveCore(mdev, ops, force: false);
    }

    internal IMdevParentOps? OpsOf(MdevParent parent)
    {
        _parentLock.Lock();
        try
        {
            return _parents.TryGetValue(parent.Dev, out (MdevParent Parent, IMdevParentOps Ops) p) && p.Parent == parent ? p.Ops : null;
        }
        finally
        {
            _parentLock.Unlock();
        }
    }

    private int RemoveCore(MdevDevice mdev, IMdevParentOps ops, bool force)
    {
        _listLock.Lock();
        bool found = _mdevs.Remove(mdev);
        _listLock.Unlock();
        if (!found)
        {
            return ErrorReason.Fail(Errno.ENODEV, $"mdev_device_remove: {mdev.Name} is not on the mdev list");
        }

        int ret = ops.Remove(mdev);
        if (ret != 0 && !force)
        {
            _listLock.Lock();
            _mdevs.Add(mdev);
            _listLock.Unlock();
            return ErrorReason.Fail(Errno.EBUSY, $"mdev_device_remove: the vendor refused to remove {mdev.Name} ({ErrnoExtensions.FromReturn(ret).Describe()})");
        }

        mdev.Active = false;
        Core.Bus.RemoveDevice(mdev);
        mdev.Put();
        return 0;
    }
}
