// The mdma sample module (no kernel counterpart; load and unload in the order of
// samples/vfio-mdev/mtty.c): class_create("mdma"), mdev_register_driver, device_register of
// the parent /sys/devices/virtual/mdma/mdma, mdev_register_parent with the two types;
// unload undoes it in reverse (unregistering the parent removes every instance, blocking
// while one is open).

using Vfio.Kernel;
using Vfio.Platform;
using Vfio.Platform.Base;

namespace Vfio.Mdev.Samples.Mdma;

/// <summary>The loaded mdma sample: its parent device, types and driver.</summary>
public sealed class MdmaSample
{
    private readonly DeviceClass _class;

    private MdmaSample(MdevCore core, MdmaOptions options, DeviceClass cls, SimDevice parentDev, MdmaDriver driver)
    {
        Core = core;
        Options = options;
        _class = cls;
        ParentDevice = parentDev;
        Driver = driver;
        Types = [new MdmaType("1", "DMA engine, 64 pages a command", 64), new MdmaType("2", "DMA engine, 1024 pages a command", 1024)];
    }

    /// <summary>The mdev core.</summary>
    public MdevCore Core { get; }

    /// <summary>The module options.</summary>
    public MdmaOptions Options { get; }

    /// <summary>The parent device, /sys/devices/virtual/mdma/mdma.</summary>
    public SimDevice ParentDevice { get; }

    /// <summary>The mdev parent.</summary>
    public MdevParent Parent { get; } = new();

    /// <summary>The driver.</summary>
    public MdmaDriver Driver { get; }

    /// <summary>mdma-1 (64 pages a command) and mdma-2 (1024 pages, more than one vfio_pin_pages call).</summary>
    public IReadOnlyList<MdmaType> Types { get; }

    /// <summary>
    /// Loads the sample on <paramref name="machine"/>, whose mdev core must be loaded. Throws
    /// <see cref="InvalidOperationException"/> when a step fails (with the errno).
    /// </summary>
    public static MdmaSample Load(SimMachine machine, MdmaOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(machine);
        options ??= new MdmaOptions();
        if (options.MaxInstances < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.MaxInstances, "MaxInstances cannot be negative");
        }

        MdevCore core = MdevCore.Of(machine);
        DeviceClass cls = DeviceClass.Create(machine, "mdma");
        var driver = new MdmaDriver(options);
        int err = core.RegisterDriver(driver);
        if (err != 0)
        {
            cls.Destroy();
            throw new InvalidOperationException($"mdma: cannot register the mdev driver: {ErrnoExtensions.FromReturn(err).Describe()}");
        }

        var parentDev = new SimDevice(machine, "mdma");
        err = cls.DeviceRegister(parentDev);
        if (err != 0)
        {
            core.UnregisterDriver(driver);
            cls.Destroy();
            throw new InvalidOperationException($"mdma: cannot register the parent device: {ErrnoExtensions.FromReturn(err).Describe()}");
        }

        var sample = new MdmaSample(core, options, cls, parentDev, driver);
        err = core.RegisterParent(sample.Parent, parentDev, driver, sample.Types);
        if (err != 0)
        {
            cls.DeviceUnregister(parentDev);
            core.UnregisterDriver(driver);
            cls.Destroy();
            throw new InvalidOperationException($"mdma: cannot register the mdev parent: {ErrnoExtensions.FromReturn(err).Describe()}");
        }

        return sample;
    }

    /// <summary>The mdma vfio device of the instance <paramref name="uuid"/>, or null.</summary>
    public MdmaDevice? DeviceOf(Guid uuid)
    {
        foreach (MdevDevice d in Core.Devices)
        {
            if (d.Uuid == uuid && d.DriverData is MdmaDevice m)
            {
                return m;
            }
        }

        return null;
    }

    /// <summary>mdma_dev_exit(): unregisters the parent (removing every instance), the parent device, the driver and the class.</summary>
    public void Unload()
    {
        Core.UnregisterParent(Parent);
        _class.DeviceUnregister(ParentDevice);
        Core.UnregisterDriver(Driver);
        _class.Destroy();
    }
}
