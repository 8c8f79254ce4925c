// Models drivers/vfio/mdev/mdev_core.c, mdev_sysfs.c and mdev_driver.c (v6.12; v6.1
// differences gated on MdevFeatures): the mdev bus, the mdev_bus compat class, parent
// registration with its sysfs types and uevents, and mdev creation and removal through
// sysfs, in the kernel's order with its errnos. MdevDesign.SynchronizeWithParentRemoval
// off gives the v5.1 core (no unreg_sem, no active flag) for race 15.
//
// Lock order: type kn->active (read, for a create write; drained for write by type
// removal) → parent->unreg_sem (read for create/remove, trylock only; write for
// unregistration) → device_lock (the driver core, around probe/remove) → vfio locks.
// Unregistration holds unreg_sem for write while it drains the types' active
// protection, so unreg_sem → kn->active as well (create only try-locks unreg_sem, so no
// cycle). mdev_list_lock (_listLock) is a leaf: held only to look up, link and unlink
// devices, to count instances and to flip `active`, never across probe or remove.

using System.Globalization;
using System.Text;
using Vfio.Kernel;
using Vfio.Platform;
using Vfio.Platform.Base;
using Vfio.Platform.Fs;

namespace Vfio.Mdev;

/// <summary>The mdev core module: load it once per machine with <see cref="Load"/>.</summary>
public sealed partial class MdevCore
{
    /// <summary>UUID_STRING_LEN.</summary>
    public const int UuidStringLength = 36;

    private static readonly LockClass s_unregSemClass = LockClass.Get("mdev_parent.unreg_sem");
    private static readonly LockClass s_typeActiveClass = LockClass.Get("kernfs.active#mdev_type");

    // Protects _mdevs (mdev_list), every device's Active flag and every parent's
    // available_instances (mdev_list_lock).
    private readonly KMutex _listLock;
    private readonly List<MdevDevice> _mdevs = [];

    // mdev_bus_compat_class: /sys/class/mdev_bus (null until registered).
    private VfsDir? _compatClass;

    // v6.1: a racing first registration stored NULL over the class (set once, never cleared).
    private bool _compatClassLost;

    private MdevCore(SimMachine machine, MdevOptions options)
    {
        Machine = machine;
        Options = options;
        _listLock = new KMutex(machine.Kernel, "mdev_list_lock");
        Bus = new MdevBus(machine) { Core = this };
    }

    /// <summary>The machine.</summary>
    public SimMachine Machine { get; }

    /// <summary>The kernel.</summary>
    public SimKernel Kernel => Machine.Kernel;

    /// <summary>The module options and design variants.</summary>
    public MdevOptions Options { get; }

    /// <summary>The design variants.</summary>
    public MdevDesign Design => Options.Design;

    /// <summary>mdev_bus_type: /sys/bus/mdev.</summary>
    public MdevBus Bus { get; }

    /// <summary>mdev_init(): registers the mdev bus (and, where the profile does it at init, the mdev_bus class). Loading twice is a programming error.</summary>
    public static MdevCore Load(SimMachine machine, MdevOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(machine);
        var core = new MdevCore(machine, options ?? new MdevOptions());
        if (!machine.AddModule(core))
        {
            throw new InvalidOperationException("mdev is already loaded on this machine");
        }

        core.Init();
        return core;
    }

    /// <summary>The mdev core of <paramref name="machine"/>; throws when mdev is not loaded.</summary>
    public static MdevCore Of(SimMachine machine)
    {
        ArgumentNullException.ThrowIfNull(machine);
        return machine.GetModule<MdevCore>() ?? throw new InvalidOperationException("mdev is not loaded on this machine: call MdevCore.Load(machine) (or AddMdev() on the builder) first");
    }

    /// <summary>The mediated devices that exist now (mdev_list), a snapshot.</summary>
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

    /// <summary>The mdev named <paramref name="uuid"/> on mdev_list, or null.</summary>
    public MdevDevice? Find(Guid uuid)
    {
        _listLock.Lock();
        try
        {
            foreach (MdevDevice m in _mdevs)
            {
                if (m.Uuid == uuid)
                {
                    return m;
                }
            }

            return null;
        }
        finally
        {
            _listLock.Unlock();
        }
    }

    /// <summary>mdev_register_driver(): registers a vendor driver on the mdev bus; 0 or -errno.</summary>
    public int RegisterDriver(MdevDriver driver)
    {
        ArgumentNullException.ThrowIfNull(driver);
        return Bus.RegisterDriver(driver);
    }

    /// <summary>mdev_unregister_driver().</summary>
    public void UnregisterDriver(MdevDriver driver)
    {
        ArgumentNullException.ThrowIfNull(driver);
        Bus.UnregisterDriver(driver);
    }

    // ---- Parents (mdev_register_parent / mdev_unregister_parent).

    /// <summary>
    /// mdev_register_parent(): <paramref name="dev"/> offers <paramref name="types"/>, whose
    /// devices <paramref name="driver"/> drives. Creates the sysfs types, the mdev_bus class
    /// link and a <c>MDEV_STATE=registered</c> uevent. 0 or -errno.
    /// </summary>
    public int RegisterParent(MdevParent parent, SimDevice dev, MdevDriver driver, IReadOnlyList<MdevType> types)
    {
        ArgumentNullException.ThrowIfNull(parent);
        ArgumentNullException.ThrowIfNull(dev);
        ArgumentNullException.ThrowIfNull(driver);
        ArgumentNullException.ThrowIfNull(types);
        if (parent.IsRegistered)
        {
            throw new InvalidOperationException($"{dev.Name}: this mdev_parent is registered already");
        }

        // memset + init_rwsem: the parent starts afresh.
        parent.UnregSem = new RwSemaphore(Kernel, $"mdev_parent[{dev.Name}].unreg_sem", s_unregSemClass);
        parent.Dev = dev;
        parent.Driver = driver;
        parent.Types = [.. types];
        parent.TypesDir = null;
        parent.TypesAdded = 0;
        parent.HasCompatLink = false;
        Volatile.Write(ref parent.AvailableInstancesRef, driver.MaxInstances);
        if (!Design.SynchronizeWithParentRemoval)
        {
            parent.Ref = new KRef(Kernel, $"mdev_parent[{dev.Name}].ref");
        }

        if (!Kernel.Profile.Has(MdevFeatures.CompatClassAtInit) && Volatile.Read(ref _compatClass) is null)
        {
            // Unserialised, as in v6.1: two first registrations at once both get here.
            // The loser stores class_compat_register()'s NULL into the shared pointer, so the
            // winner's link (or a later unlink) dereferences NULL, and every later first
            // registration fails ENOMEM on the directory that is still there.
            VfsDir? cls = Machine.Sysfs.CreateDir(Machine.Sysfs.Class, "mdev_bus");
            Volatile.Write(ref _compatClass, cls);
            _compatClassLost |= cls is null;
            if (cls is null)
            {
                return ErrorReason.Fail(Errno.ENOMEM, $"mdev_register_parent: {dev.Name}: class_compat_register(\"mdev_bus\") failed (the class was created by another registration)");
            }
        }

        int ret = CreateParentSysfs(parent);
        if (ret != 0)
        {
            return ret;
        }

        Bug.On(_compatClassLost && Volatile.Read(ref _compatClass) is null, $"BUG: kernel NULL pointer dereference in class_compat_create_link() from mdev_register_parent({dev.Name}): a racing first registration left mdev_bus_compat_class NULL (v6.1)");
        if (Volatile.Read(ref _compatClass) is { } compat && dev.SysfsDir is { } devDir && Machine.Sysfs.CreateLink(compat, dev.Name, devDir) == 0)
        {
            parent.HasCompatLink = true;
        }
        else
        {
            Kernel.Log.Warn($"{Prefix(dev)}: Failed to create compatibility class link");
        }

        parent.IsRegistered = true;
        Kernel.Log.Info($"{Prefix(dev)}: MDEV: Registered");
        Machine.Uevents.Emit(dev, UeventAction.Change, "MDEV_STATE=registered");
        return 0;
    }

    /// <summary>
    /// mdev_unregister_parent(): waits for create/remove in flight, removes the class link,
    /// every child mdev (which may block while user space holds one open) and the types, then
    /// sends a <c>MDEV_STATE=unregistered</c> uevent.
    /// </summary>
    public void UnregisterParent(MdevParent parent)
    {
        ArgumentNullException.ThrowIfNull(parent);
        SimDevice dev = parent.Dev ?? throw new InvalidOperationException("the mdev_parent was never registered");
        Kernel.Log.Info($"{Prefix(dev)}: MDEV: Unregistering");
        bool sync = Design.SynchronizeWithParentRemoval;
        if (sync)
        {
            parent.UnregSem.DownWrite();
        }

        try
        {
            Bug.On(parent.HasCompatLink && _compatClassLost && Volatile.Read(ref _compatClass) is null, $"BUG: kernel NULL pointer dereference in class_compat_remove_link() from mdev_unregister_parent({dev.Name}): mdev_bus_compat_class was left NULL by a racing registration (v6.1)");
            if (parent.HasCompatLink && Volatile.Read(ref _compatClass) is { } compat)
            {
                Machine.Sysfs.RemoveLink(compat, dev.Name);
                parent.HasCompatLink = false;
            }

            // device_for_each_child(): every mdev under the parent, created or half-made.
            foreach (SimDevice child in Bus.Devices)
            {
                if (child is MdevDevice mdev && ReferenceEquals(child.Parent, dev))
                {
                    if (sync)
                    {
                        DeviceRemoveCommonLocked(mdev);
                    }
                    else
                    {
                        DeviceRemoveUnsynchronized(mdev);
                    }
                }
            }

            RemoveParentSysfs(parent);
            parent.IsRegistered = false;
        }
        finally
        {
            if (sync)
            {
                parent.UnregSem.UpWrite();
            }
        }

        Machine.Uevents.Emit(dev, UeventAction.Change, "MDEV_STATE=unregistered");

        // The v5.1 core: the parent goes with its registration; whatever still refers to it
        // (a create or remove that raced, a device that outlived it) now uses freed memory.
        parent.Ref?.Put(static () => { });
    }

    // ---- sysfs of a parent (mdev_sysfs.c: parent_create_sysfs_files / parent_remove_sysfs_files).

    private int CreateParentSysfs(MdevParent parent)
    {
        Platform.Sysfs.SysfsTree fs = Machine.Sysfs;
        SimDevice dev = parent.Dev;
        VfsDir? kset = dev.SysfsDir is { } devDir && !Kernel.Faults.ShouldFail("kset_create_and_add:mdev_supported_types")
            ? fs.CreateDir(devDir, "mdev_supported_types")
            : null;
        if (kset is null)
        {
            return ErrorReason.Fail(Errno.ENOMEM, $"mdev_register_parent: {dev.Name}: cannot create mdev_supported_types");
        }

        parent.TypesDir = kset;
        int i = 0;
        int ret = 0;
        for (; i < parent.Types.Count; i++)
        {
            ret = AddType(parent, parent.Types[i]);
            if (ret != 0)
            {
                break;
            }

            parent.TypesAdded = i + 1;
        }

        if (ret == 0)
        {
            return 0;
        }

        for (int j = i - 1; j >= 0; j--)
        {
            RemoveType(parent.Types[j]);
        }

        parent.TypesAdded = 0;
        if (!Kernel.Profile.Has(MdevFeatures.TypeSysfsFailureFailsRegistration))
        {
            // v6.1: the error is lost and mdev_supported_types stays; the types that were
            // never added are still in parent->types, for unregistration to trip on.
            parent.TypesAdded = -1;
            return 0;
        }

        fs.Remove(kset);
        parent.TypesDir = null;
        return ret;
    }

    // mdev_type_add(): <kset>/<dev_driver_string>-<sysfs_name>/ with its attributes, then devices/.
    private int AddType(MdevParent parent, MdevType type)
    {
        Platform.Sysfs.SysfsTree fs = Machine.Sysfs;
        SimDevice dev = parent.Dev;
        type.Parent = parent;
        type.DirName = $"{dev.DriverString}-{type.SysfsName}";
        type.Deactivated = false;
        type.Active = new RwSemaphore(Kernel, $"kn->active[{type.DirName}]", s_typeActiveClass);
        dev.Get(); // released by the type kobject's release
        type.Kref = new KRef(Kernel, $"mdev_type[{dev.Name}/{type.DirName}].kobj");
        VfsDir? dir = fs.CreateDir(parent.TypesDir!, type.DirName);
        if (dir is null)
        {
            PutType(type);
            return ErrorReason.Fail(Errno.EEXIST, $"mdev_register_parent: {dev.Name}: two types are called {type.DirName}");
        }

        type.SysfsDir = dir;
        fs.CreateFile(dir, "create", 0x80 /* 0200 */, null, s => CreateStore(type, s));
        fs.CreateFile(dir, "device_api", 0x124 /* 0444 */, () => parent.Driver.DeviceApi + "\n");
        fs.CreateFile(dir, "name", 0x124, () => (type.PrettyName ?? type.SysfsName) + "\n");
        fs.CreateFile(dir, "available_instances", 0x124, () => AvailableInstancesShow(type));
        if ((parent.Driver.Provides & MdevDriverOps.ShowDescription) != 0)
        {
            fs.CreateFile(dir, "description", 0x124, () => parent.Driver.ShowDescription(type));
        }

        VfsDir? devices = Kernel.Faults.ShouldFail("kobject_create_and_add:devices") ? null : fs.CreateDir(dir, "devices");
        if (devices is null)
        {
            type.SysfsDir = null;
            fs.Remove(dir);
            PutType(type);
            return ErrorReason.Fail(Errno.ENOMEM, $"mdev_register_parent: {dev.Name}: cannot create {type.DirName}/devices");
        }

        type.DevicesDir = devices;
        return 0;
    }

    // mdev_type_remove(): drain the attributes (kernfs), remove devices/ and the directory, put the kobject.
    private void RemoveType(MdevType type)
    {
        type.Deactivated = true;
        if (type.Active is { } active)
        {
            active.DownWrite();
            active.UpWrite();
        }

        if (type.SysfsDir is { } dir)
        {
            Machine.Sysfs.Remove(dir);
        }

        type.SysfsDir = null;
        type.DevicesDir = null;
        PutType(type);
    }

    private static void PutType(MdevType type)
    {
        // mdev_type_release(): the parent's device reference goes with the type's last one.
        SimDevice dev = type.Parent!.Dev;
        type.Kref!.Put(() => dev.Put());
    }

    private void RemoveParentSysfs(MdevParent parent)
    {
        if (parent.TypesAdded < 0)
        {
            // v6.1 after a type that could not be added: mdev_type_remove() runs on it anyway.
            Bug.On(true, $"BUG: kernel NULL pointer dereference in kobject_del: parent_remove_sysfs_files() of {parent.Dev.Name} removes a type that was never added (registration lost the error)");
            return;
        }

        for (int i = 0; i < parent.TypesAdded; i++)
        {
            RemoveType(parent.Types[i]);
        }

        parent.TypesAdded = 0;
        if (parent.TypesDir is { } kset)
        {
            Machine.Sysfs.Remove(kset);
            parent.TypesDir = null;
        }
    }

    private static string AvailableInstancesShow(MdevType type)
    {
        MdevParent parent = type.Parent!;
        int n = (parent.Driver.Provides & MdevDriverOps.GetAvailable) != 0 ? parent.Driver.GetAvailable(type) : parent.AvailableInstances;
        return ((uint)n).ToString(CultureInfo.InvariantCulture) + "\n";
    }

    // ---- Creation (create_store / mdev_device_create).

    /// <summary>
    /// create_store(): 36 or 37 bytes (a UUID, optionally one more byte such as echo's
    /// newline) else -EINVAL; guid_parse() of the first 36 else -EINVAL; then
    /// <see cref="DeviceCreate"/>. The byte count, or -errno.
    /// </summary>
    internal long CreateStore(MdevType type, string buf)
    {
        // kernfs active protection comes first (kernfs_fop_write_iter takes it before the
        // store runs): a type being removed takes no more writes, whatever they hold.
        RwSemaphore active = type.Active!;
        if (!active.DownReadTrylock())
        {
            return ErrorReason.Fail(Errno.ENODEV, $"mdev create: {type.DirName} is being removed");
        }

        try
        {
            if (type.Deactivated)
            {
                return ErrorReason.Fail(Errno.ENODEV, $"mdev create: {type.DirName} is being removed");
            }

            int count = Encoding.UTF8.GetByteCount(buf);
            if (count < UuidStringLength || count > UuidStringLength + 1)
            {
                return ErrorReason.Fail(Errno.EINVAL, $"mdev create: {count} bytes written; a UUID is {UuidStringLength} (or {UuidStringLength + 1} with a newline)");
            }

            if (!GuidParse(buf, out Guid uuid))
            {
                return ErrorReason.Fail(Errno.EINVAL, $"mdev create: '{buf.TrimEnd('\n')}' is not a UUID (guid_parse: 8-4-4-4-12 hex digits)");
            }

            int ret = Design.SynchronizeWithParentRemoval ? DeviceCreate(type, uuid) : DeviceCreateUnsynchronized(type, uuid);
            return ret != 0 ? ret : count;
        }
        finally
        {
            active.UpRead();
        }
    }

    /// <summary>guid_parse() (lib/uuid.c): uuid_is_valid() on the first 36 characters (hyphens at 8, 13, 18, 23, hex digits elsewhere), either case.</summary>
    public static bool GuidParse(string text, out Guid uuid)
    {
        ArgumentNullException.ThrowIfNull(text);
        uuid = Guid.Empty;
        if (text.Length < UuidStringLength)
        {
            return false;
        }

        for (int i = 0; i < UuidStringLength; i++)
        {
            bool hyphen = i is 8 or 13 or 18 or 23;
            if (hyphen ? text[i] != '-' : !char.IsAsciiHexDigit(text[i]))
            {
                return false;
            }
        }

        return Guid.TryParseExact(text.AsSpan(0, UuidStringLength), "D", out uuid);
    }

    /// <summary>
    /// mdev_device_create(), in the kernel's order: under mdev_list_lock the duplicate check
    /// (-EEXIST, any parent) and the core's instance count (-EUSERS), the new device linked
    /// in; then unreg_sem trylock (-ENODEV), device_add, the parent's driver attached (probe
    /// errors come back), the sysfs links, active. 0 or -errno; a failure gives back
    /// everything through the device's release.
    /// </summary>
    private int DeviceCreate(MdevType type, Guid uuid)
    {
        MdevParent parent = type.Parent!;
        MdevDevice? mdev = LinkNewDevice(type, uuid, out int err);
        if (mdev is null)
        {
            return err;
        }

        if (!parent.UnregSem.DownReadTrylock())
        {
            mdev.Put();
            return ErrorReason.Fail(Errno.ENODEV, $"mdev create: {parent.Dev.Name} is being unregistered");
        }

        try
        {
            int ret = AddAndProbe(mdev);
            if (ret != 0)
            {
                mdev.Put();
                return ret;
            }

            _listLock.Lock();
            mdev.Active = true;
            _listLock.Unlock();
            return 0;
        }
        finally
        {
            parent.UnregSem.UpRead();
        }
    }

    // The mdev_list_lock part of mdev_device_create(): null with -EEXIST / -EUSERS, or a
    // device on mdev_list holding a reference on its type (and an instance, if counted).
    private MdevDevice? LinkNewDevice(MdevType type, Guid uuid, out int err)
    {
        MdevParent parent = type.Parent!;
        bool counted = (parent.Driver.Provides & MdevDriverOps.GetAvailable) == 0;
        err = 0;
        _listLock.Lock();
        try
        {
            foreach (MdevDevice m in _mdevs)
            {
                if (m.Uuid == uuid)
                {
                    err = ErrorReason.Fail(Errno.EEXIST, $"mdev create: {uuid:D} exists already (on {m.MdevParent.Dev.Name})");
                    return null;
                }
            }

            if (counted)
            {
                if (parent.AvailableInstances == 0)
                {
                    err = ErrorReason.Fail(Errno.EUSERS, $"mdev create: {parent.Dev.Name} has no instances left (max_instances {parent.Driver.MaxInstances})");
                    return null;
                }

                Interlocked.Decrement(ref parent.AvailableInstancesRef);
            }

            var mdev = new MdevDevice(Machine, uuid, type, DeviceRelease);
            type.Kref!.Get();
            _mdevs.Add(mdev);
            return mdev;
        }
        finally
        {
            _listLock.Unlock();
        }
    }

    // device_add, device_driver_attach, mdev_create_sysfs_files; undoes its own part on failure.
    private int AddAndProbe(MdevDevice mdev)
    {
        MdevParent parent = mdev.MdevParent;
        int ret = Bus.AddDevice(mdev);
        if (ret != 0)
        {
            return ret;
        }

        ret = Bus.DeviceDriverAttach(parent.Driver, mdev);
        if (ret == 0)
        {
            ret = CreateDeviceLinks(mdev);
        }

        if (ret != 0)
        {
            Bus.RemoveDevice(mdev);
            return ret;
        }

        return 0;
    }

    // mdev_create_sysfs_files(): <type>/devices/<uuid> and <uuid>/mdev_type.
    private int CreateDeviceLinks(MdevDevice mdev)
    {
        Platform.Sysfs.SysfsTree fs = Machine.Sysfs;
        MdevType type = mdev.Type;
        if (type.DevicesDir is not { } devices || mdev.SysfsDir is not { } dir)
        {
            return Errno.ENOENT.Negative();
        }

        int ret = fs.CreateLink(devices, mdev.Name, dir);
        if (ret != 0)
        {
            return ret;
        }

        ret = fs.CreateLink(dir, "mdev_type", type.SysfsDir!);
        if (ret != 0)
        {
            fs.RemoveLink(devices, mdev.Name);
        }

        return ret;
    }

    private void RemoveDeviceLinks(MdevDevice mdev)
    {
        Platform.Sysfs.SysfsTree fs = Machine.Sysfs;
        if (mdev.SysfsDir is { } dir)
        {
            fs.RemoveLink(dir, "mdev_type");
        }

        if (mdev.Type.DevicesDir is { } devices)
        {
            fs.RemoveLink(devices, mdev.Name);
        }
    }

    // mdev_device_release(): off mdev_list, the instance given back, the type's reference dropped.
    private void DeviceRelease(SimDevice dev)
    {
        var mdev = (MdevDevice)dev;
        MdevParent parent = mdev.MdevParent;
        _listLock.Lock();
        _mdevs.Remove(mdev);
        if ((parent.Driver.Provides & MdevDriverOps.GetAvailable) == 0)
        {
            Interlocked.Increment(ref parent.AvailableInstancesRef);
        }

        _listLock.Unlock();
        PutType(mdev.Type);
    }

    // ---- Removal (remove_store / mdev_device_remove).

    /// <summary>
    /// remove_store(): kstrtoul (base 0) else -EINVAL; 0 does nothing; otherwise the
    /// attribute removes itself (a writer that loses that race does nothing) and
    /// <see cref="DeviceRemove"/> runs. The byte count, or -errno.
    /// </summary>
    internal long RemoveStore(MdevDevice mdev, string buf)
    {
        if (!Kstrtox.Kstrtoul(buf, out ulong val))
        {
            return ErrorReason.Fail(Errno.EINVAL, $"mdev remove: '{buf.TrimEnd('\n')}' is not an unsigned number");
        }

        if (val != 0 && RemoveFileSelf(mdev))
        {
            int ret = Design.SynchronizeWithParentRemoval ? DeviceRemove(mdev) : DeviceRemoveStoreUnsynchronized(mdev);
            if (ret != 0)
            {
                return ret;
            }
        }

        return buf.Length;
    }

    // device_remove_file_self(): true for the one writer that removed the attribute.
    private bool RemoveFileSelf(MdevDevice mdev)
    {
        if (!mdev.TakeRemoveFile())
        {
            return false;
        }

        if (mdev.RemoveFile is { } file)
        {
            Machine.Sysfs.Remove(file);
        }

        return true;
    }

    /// <summary>
    /// mdev_device_remove(): under mdev_list_lock, -ENODEV when the device is off the list and
    /// -EAGAIN when it is not active (still being created, or already being removed), else
    /// it stops being active; then unreg_sem trylock (-ENODEV: unregistration removes it),
    /// and the device goes (which blocks while user space holds its vfio device).
    /// </summary>
    private int DeviceRemove(MdevDevice mdev)
    {
        MdevParent parent = mdev.MdevParent;
        _listLock.Lock();
        try
        {
            if (!_mdevs.Contains(mdev))
            {
                return ErrorReason.Fail(Errno.ENODEV, $"mdev remove: {mdev.Name} is gone");
            }

            if (!mdev.Active)
            {
                return ErrorReason.Fail(Errno.EAGAIN, $"mdev remove: {mdev.Name} is not active (being created or removed)");
            }

            mdev.Active = false;
        }
        finally
        {
            _listLock.Unlock();
        }

        if (!parent.UnregSem.DownReadTrylock())
        {
            return ErrorReason.Fail(Errno.ENODEV, $"mdev remove: {parent.Dev.Name} is being unregistered (it removes {mdev.Name})");
        }

        try
        {
            // The 2016 design (MdevCore.Design2016.cs): the vendor's remove runs first and may refuse.
            if (Design.Api == MdevApi.Series2016 && RemoveOps2016Locked(mdev) is var refused && refused != 0)
            {
                return refused;
            }

            DeviceRemoveCommonLocked(mdev);
        }
        finally
        {
            parent.UnregSem.UpRead();
        }

        return 0;
    }

    // mdev_device_remove_common(): the links, device_del (vendor remove, vfio unregister), the creation's reference.
    private void DeviceRemoveCommonLocked(MdevDevice mdev)
    {
        mdev.MdevParent.UnregSem.AssertHeld();
        RemoveDeviceLinks(mdev);
        mdev.TakeDelete();
        Bus.RemoveDevice(mdev);
        mdev.RemoveFile = null;
        mdev.Put();
    }

    // ---- The v5.1 core (MdevDesign.SynchronizeWithParentRemoval off).

    // v5.1 mdev_device_create(): the parent is taken by reference, the device added and
    // probed with no unreg_sem and no active flag.
    private int DeviceCreateUnsynchronized(MdevType type, Guid uuid)
    {
        MdevParent parent = type.Parent!;
        parent.Ref!.Get(); // mdev_get_parent(): after unregistration, on freed memory
        try
        {
            MdevDevice? mdev = LinkNewDevice(type, uuid, out int err);
            if (mdev is null)
            {
                return err;
            }

            int ret = AddAndProbe(mdev);
            if (ret != 0)
            {
                mdev.Put();
                return ret;
            }

            _listLock.Lock();
            mdev.Active = true;
            _listLock.Unlock();
            return 0;
        }
        finally
        {
            parent.Ref.Put(static () => { });
        }
    }

    // v5.1 remove_store(): a failed removal makes the remove file again, on a device that may be dead.
    private int DeviceRemoveStoreUnsynchronized(MdevDevice mdev)
    {
        MdevParent parent = mdev.MdevParent;
        parent.Ref!.Get();
        try
        {
            _listLock.Lock();
            bool listed = _mdevs.Contains(mdev);
            _listLock.Unlock();
            if (!listed)
            {
                RecreateRemoveFile(mdev);
                return ErrorReason.Fail(Errno.ENODEV, $"mdev remove: {mdev.Name} is gone");
            }

            DeviceRemoveUnsynchronized(mdev);
            return 0;
        }
        finally
        {
            parent.Ref.Put(static () => { });
        }
    }

    private void DeviceRemoveUnsynchronized(MdevDevice mdev)
    {
        RemoveDeviceLinks(mdev);
        if (mdev.TakeDelete())
        {
            Bus.RemoveDevice(mdev);
        }

        mdev.Put(); // a second remover drops a reference it does not own
    }

    private void RecreateRemoveFile(MdevDevice mdev)
    {
        if (Warn.On(Kernel, !mdev.IsRegistered || mdev.SysfsDir is null, $"sysfs_create_file_ns: kobj->sd is NULL: re-creating 'remove' on {mdev.Name}, a device already deleted"))
        {
            return;
        }

        mdev.RestoreRemoveFile();
        mdev.RemoveFile = Machine.Sysfs.CreateFile(mdev.SysfsDir!, "remove", 0x80, null, s => RemoveStore(mdev, s));
    }

    // ---- Module init.

    private void Init()
    {
        if (Kernel.Profile.Has(MdevFeatures.CompatClassAtInit))
        {
            _compatClass = Machine.Sysfs.CreateDir(Machine.Sysfs.Class, "mdev_bus");
        }
    }

    // dev_info()'s prefix: "<driver string> <device name>".
    private static string Prefix(SimDevice dev) => $"{dev.DriverString} {dev.Name}";
}
