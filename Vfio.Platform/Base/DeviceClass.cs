// Models struct class and the class-device parts of drivers/base/class.c and core.c
// (v6.12) as sysfs shows them: class_create() makes /sys/class/<name>; device_register()
// of a device with that class and no parent puts it at /sys/devices/virtual/<class>/<dev>
// with /sys/class/<class>/<dev> linking to it, plus its subsystem link and uevent file.
// Sample drivers use this for the parents they invent (mtty's "mtty" device).
//
// Lock rules: none of its own; the sysfs tree lock covers the directory changes. A class
// device is registered and unregistered by its module's load and unload, never concurrently.

using Vfio.Kernel;
using Vfio.Platform.Fs;

namespace Vfio.Platform.Base;

/// <summary>struct class: a class of devices in /sys/class.</summary>
public sealed class DeviceClass
{
    // Protects _devices (the class's klist_devices).
    private readonly KSpinLock _listLock;
    private readonly List<SimDevice> _devices = [];

    private DeviceClass(SimMachine machine, string name, VfsDir dir)
    {
        _listLock = new KSpinLock(machine.Kernel, $"class[{name}].klist_lock");
        Machine = machine;
        Name = name;
        SysfsDir = dir;
    }

    /// <summary>The machine.</summary>
    public SimMachine Machine { get; }

    /// <summary>The class name (<c>mtty</c>).</summary>
    public string Name { get; }

    /// <summary>/sys/class/&lt;name&gt;.</summary>
    public VfsDir SysfsDir { get; }

    /// <summary>class_create(): /sys/class/<paramref name="name"/>. Throws when the class exists (a programming error: two modules with one class).</summary>
    public static DeviceClass Create(SimMachine machine, string name)
    {
        ArgumentNullException.ThrowIfNull(machine);
        ArgumentException.ThrowIfNullOrEmpty(name);
        Sysfs.SysfsTree fs = machine.Sysfs;
        VfsDir dir = fs.CreateDir(fs.Class, name) ?? throw new InvalidOperationException($"class {name} already exists");
        return new DeviceClass(machine, name, dir);
    }

    /// <summary>The devices registered in the class, a snapshot.</summary>
    public IReadOnlyList<SimDevice> Devices
    {
        get
        {
            _listLock.Lock();
            try
            {
                return [.. _devices];
            }
            finally
            {
                _listLock.Unlock();
            }
        }
    }

    /// <summary>
    /// device_register() of a class device without a bus: /sys/devices/virtual/&lt;class&gt;/&lt;name&gt;
    /// (or under its parent when it has one), the class link, subsystem and uevent. 0, or
    /// -EEXIST for a duplicate name.
    /// </summary>
    public int DeviceRegister(SimDevice dev)
    {
        ArgumentNullException.ThrowIfNull(dev);
        if (dev.IsRegistered)
        {
            throw new InvalidOperationException($"device {dev.Name} is already registered");
        }

        Sysfs.SysfsTree fs = Machine.Sysfs;
        VfsDir parentDir = dev.Parent?.SysfsDir ?? Machine.Vfs.MkdirP("/sys/devices/virtual/" + Name);
        VfsDir? dir = fs.CreateDir(parentDir, dev.Name);
        if (dir is null)
        {
            return Errno.EEXIST.Negative();
        }

        if (fs.CreateLink(SysfsDir, dev.Name, dir) != 0)
        {
            fs.Remove(dir);
            return Errno.EEXIST.Negative();
        }

        dev.Get();
        dev.SysfsDir = dir;
        dev.Class = this;
        fs.CreateLink(dir, "subsystem", SysfsDir);
        dev.UeventFile = fs.CreateFile(dir, "uevent", 0x1a4, () => string.Empty, s => s.Length);
        dev.IsRegistered = true;
        _listLock.Lock();
        _devices.Add(dev);
        _listLock.Unlock();

        return 0;
    }

    /// <summary>device_unregister() of a class device: the class link and the directory go, then the registration's reference.</summary>
    public void DeviceUnregister(SimDevice dev)
    {
        ArgumentNullException.ThrowIfNull(dev);
        if (!dev.IsRegistered)
        {
            return;
        }

        _listLock.Lock();
        _devices.Remove(dev);
        _listLock.Unlock();

        Sysfs.SysfsTree fs = Machine.Sysfs;
        fs.RemoveLink(SysfsDir, dev.Name);
        dev.IsDead = true;
        dev.IsRegistered = false;
        if (dev.SysfsDir is { } dir)
        {
            fs.Remove(dir);
        }

        dev.Put();
    }

    /// <summary>class_destroy(): removes /sys/class/&lt;name&gt;; every device must be unregistered first.</summary>
    public void Destroy()
    {
        if (Devices.Count != 0)
        {
            throw new InvalidOperationException($"class {Name} still has devices: unregister them first");
        }

        Machine.Sysfs.Remove(SysfsDir);
    }

    /// <inheritdoc/>
    public override string ToString() => Name;
}
