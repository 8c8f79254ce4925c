// Models the parent_ops side of drivers/vfio/mdev/mdev_core.c of v4.10 (the 2016 series
// "Add Mediated device support"): mdev_register_device / mdev_unregister_device with
// parent_ops, on top of the mdev core's sysfs (the types' create files, the devices' remove
// files), which branches on MdevDesign.Api where v4.10 differed (MdevCore.Design2016.cs).
//
// In v4.10 order: registration without create, remove or types → EINVAL, a second
// registration of the device → EEXIST; create adds the device and binds vfio_mdev (which
// registers the vfio device), then runs the vendor's create (its error undoes the device);
// the remove write runs the vendor's remove first, and a refusal is EBUSY with the mdev
// left in place; parent unregistration removes every child by force.
//
// Lock order: _lock (parent_list_lock) → the mdev core's locks → the mdev's device_lock →
// vfio locks. _lock is not held across create or remove.

using System.Collections.Concurrent;
using Vfio.Core;
using Vfio.Kernel;
using Vfio.Platform;
using Vfio.Platform.Base;

namespace Vfio.Mdev.Design2016;

/// <summary>The 2016 mdev core (mdev_core.c of v4.10) with its vfio_mdev bridge.</summary>
public sealed class Mdev2016Core
{
    private readonly KMutex _lock;
    private readonly Dictionary<SimDevice, (MdevParent Parent, IMdevParentOps Ops)> _parents = [];
    private readonly ConcurrentDictionary<MdevDevice, bool> _vendorRemoved = new();

    private Mdev2016Core(MdevCore core)
    {
        Core = core;
        _lock = new KMutex(core.Kernel, "parent_list_lock");
        Driver = new VfioMdevDriver(this);
    }

    /// <summary>The mdev core (its bus and sysfs).</summary>
    public MdevCore Core { get; }

    /// <summary>The vfio_mdev bridge driver.</summary>
    public VfioMdevDriver Driver { get; }

    /// <summary>The mediated devices of 2016-API parents that exist now, a snapshot.</summary>
    public IReadOnlyList<MdevDevice> Devices
    {
        get
        {
            var list = new List<MdevDevice>();
            foreach (MdevDevice m in Core.Devices)
            {
                if (OpsOf(m.MdevParent) is not null)
                {
                    list.Add(m);
                }
            }

            return list;
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

    /// <summary>mdev_register_device(dev, ops): the types appear under <c>&lt;dev&gt;/mdev_supported_types</c>; 0 or -errno.</summary>
    public int RegisterDevice(SimDevice dev, IMdevParentOps ops)
    {
        ArgumentNullException.ThrowIfNull(dev);
        if (ops is null || ops.SupportedTypes is not { Count: > 0 } types)
        {
            return ErrorReason.Fail(Errno.EINVAL, "mdev_register_device: no parent_ops or no supported_type_groups");
        }

        var parent = new MdevParent();
        _lock.Lock();
        try
        {
            if (_parents.ContainsKey(dev))
            {
                return ErrorReason.Fail(Errno.EEXIST, $"mdev_register_device: {dev.Name} is already a parent");
            }

            _parents.Add(dev, (parent, ops));
        }
        finally
        {
            _lock.Unlock();
        }

        int ret = Core.RegisterParent(parent, dev, Driver, types);
        if (ret != 0)
        {
            _lock.Lock();
            _parents.Remove(dev);
            _lock.Unlock();
        }

        return ret;
    }

    /// <summary>mdev_unregister_device(dev): every child is removed by force (the vendor cannot refuse; each removal waits for its vfio device to be closed).</summary>
    public void UnregisterDevice(SimDevice dev)
    {
        ArgumentNullException.ThrowIfNull(dev);
        MdevParent? parent;
        _lock.Lock();
        parent = _parents.TryGetValue(dev, out (MdevParent Parent, IMdevParentOps Ops) p) ? p.Parent : null;
        _lock.Unlock();
        if (parent is null)
        {
            return;
        }

        Core.UnregisterParent(parent);
        _lock.Lock();
        _parents.Remove(dev);
        _lock.Unlock();
    }

    /// <summary>Writes <paramref name="uuid"/> to the type's <c>create</c> file: 0 or -errno.</summary>
    public int CreateDevice(MdevType type, Guid uuid)
    {
        ArgumentNullException.ThrowIfNull(type);
        long r = Core.CreateStore(type, uuid.ToString("D"));
        return r < 0 ? (int)r : 0;
    }

    /// <summary>Writes 1 to the device's <c>remove</c> file: 0 or -errno (EBUSY when the vendor refuses, and the mdev stays).</summary>
    public int RemoveDevice(MdevDevice mdev)
    {
        ArgumentNullException.ThrowIfNull(mdev);
        long r = Core.RemoveStore(mdev, "1\n");
        return r < 0 ? (int)r : 0;
    }

    internal IMdevParentOps? OpsOf(MdevParent parent)
    {
        _lock.Lock();
        try
        {
            return parent.Dev is { } dev && _parents.TryGetValue(dev, out (MdevParent Parent, IMdevParentOps Ops) p) && p.Parent == parent ? p.Ops : null;
        }
        finally
        {
            _lock.Unlock();
        }
    }

    /// <summary>mdev_device_remove_ops(): the vendor's remove; with <paramref name="force"/> its refusal is ignored. 0 or the vendor's -errno.</summary>
    internal int VendorRemove(MdevDevice mdev, bool force)
    {
        if (_vendorRemoved.ContainsKey(mdev))
        {
            return 0;
        }

        IMdevParentOps? ops = OpsOf(mdev.MdevParent);
        int ret = ops?.Remove(mdev) ?? 0;
        if (ret != 0 && !force)
        {
            return ret;
        }

        _vendorRemoved[mdev] = true;
        return 0;
    }

    /// <summary>The device is gone: forget that its vendor remove ran.</summary>
    internal void Forget(MdevDevice mdev) => _vendorRemoved.TryRemove(mdev, out _);
}
