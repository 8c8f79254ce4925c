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
    private DeviceClass _class = null!;

    private MdmaSample(MdevCore core, MdmaOptions options, MdmaDriver driver)
    {
        Core = core;
        Options = options;
        Driver = driver;
        Types = [new MdmaType("1", "DMA engine, 64 pages a command", 64), new MdmaType("2", "DMA engine, 1024 pages a command", 1024)];
    }

    /// <summary>The mdev core.</summary>
    public MdevCore Core { get; }

    /// <summary>The module options.</summary>
    public MdmaOptions Options { get; }

    /// <summary>The parent device, /sys/devices/virtual/mdma/mdma.</summary>
    public SimDevice ParentDevice { get; private set; } = null!;

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
        var driver = new MdmaDriver(options);
        var sample = new MdmaSample(core, options, driver);
        int err = SampleModule.Init(core, driver, "mdma", "mdma", sample.Parent, sample.Types, out DeviceClass cls, out SimDevice parentDev);
        if (err != 0)
        {
            throw new InvalidOperationException($"mdma: module init failed: {ErrnoExtensions.FromReturn(err).Describe()}");
        }

        (sample._class, sample.ParentDevice) = (cls, parentDev);
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
    public void Unload() => SampleModule.Exit(Core, Driver, Parent, _class, ParentDevice);
}
