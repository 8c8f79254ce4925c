// Models drivers/vfio/mdev/mdev_core.c, mdev_sysfs.c and mdev_driver.c (v6.12; v6.1
// differences gated on profile features): the mdev bus, the mdev_bus compat class, parent
// registration with its sysfs types and uevents, and mdev creation and removal through
// sysfs, in the kernel's order with its errnos.
//
// Lock order: parent->unreg_sem (read for create/remove, trylock; write for unregistration)
// → device_lock (the driver core, around probe/remove) → vfio locks. mdev_list_lock
// (_listLock) is a leaf: held only to look up, link and unlink devices and to flip
// `active`, never across probe or remove.

using Vfio.Kernel;
using Vfio.Platform;
using Vfio.Platform.Base;

namespace Vfio.Mdev;

/// <summary>The mdev core module: load it once per machine with <see cref="Load"/>.</summary>
public sealed class MdevCore
{
    // Protects _mdevs (mdev_list) and every device's Active flag (mdev_list_lock).
    private readonly KMutex _listLock;
    private readonly List<MdevDevice> _mdevs = [];

    private MdevCore(SimMachine machine, MdevOptions options)
    {
        Machine = machine;
        Options = options;
        _listLock = new KMutex(machine.Kernel, "mdev_list_lock");
        Bus = new MdevBus(machine);
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
        throw new NotImplementedException("mdev core: RegisterParent");
    }

    /// <summary>
    /// mdev_unregister_parent(): waits for create/remove in flight, removes every child mdev
    /// (which may block while user space holds one open), the types, the class link, then a
    /// <c>MDEV_STATE=unregistered</c> uevent.
    /// </summary>
    public void UnregisterParent(MdevParent parent)
    {
        ArgumentNullException.ThrowIfNull(parent);
        throw new NotImplementedException("mdev core: UnregisterParent");
    }

    private void Init()
    {
        // The core helper fills in the class (v6.5 at init, earlier at first registration).
        _ = _listLock;
        _ = _mdevs;
    }
}
