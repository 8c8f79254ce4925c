// Models mtty_dev_init/mtty_dev_exit of samples/vfio-mdev/mtty.c (v6.12): loading makes
// the class "mtty", registers the mdev driver "mtty" and the class device "mtty"
// (/sys/devices/virtual/mtty/mtty) as a parent offering mtty-1 "Single port serial" and
// mtty-2 "Dual port serial" from a pool of 24 ports; unloading unregisters the parent
// (removing every instance, which waits for user space to close them), the device, the
// driver and the class. Also the cable API (MttyCable), the simulator's extension.

using Vfio.Kernel;
using Vfio.Platform;
using Vfio.Platform.Base;

namespace Vfio.Mdev.Samples.Mtty;

/// <summary>The loaded mtty sample: its parent device, its types and the cables.</summary>
public sealed class MttyModule
{
    private readonly MttyDriver _driver;
    private readonly MdevParent _parent;

    private MttyModule(MdevCore core, DeviceClass cls, SimDevice dev, MttyDriver driver, IReadOnlyList<MdevType> types, MdevParent parent)
    {
        _parent = parent;
        Core = core;
        Class = cls;
        ParentDevice = dev;
        _driver = driver;
        Types = types;
    }

    /// <summary>The mdev core.</summary>
    public MdevCore Core { get; }

    /// <summary>The class "mtty".</summary>
    public DeviceClass Class { get; }

    /// <summary>The parent, /sys/devices/virtual/mtty/mtty.</summary>
    public SimDevice ParentDevice { get; }

    /// <summary>mtty-1 and mtty-2.</summary>
    public IReadOnlyList<MdevType> Types { get; }

    /// <summary>Free ports of the 24.</summary>
    public int AvailablePorts => _driver.Pool.Available;

    /// <summary>mtty_dev_init(): loads the sample on the machine's mdev core; throws if it cannot.</summary>
    public static MttyModule Load(SimMachine machine)
    {
        MdevCore core = MdevCore.Of(machine);
        var pool = new MttyPortPool();
        var driver = new MttyDriver(machine.Kernel, pool);
        MdevType[] types = [new MttyType(1, "Single port serial"), new MttyType(2, "Dual port serial")];
        var parent = new MdevParent();
        int err = SampleModule.Init(core, driver, "mtty", "mtty", parent, types, out DeviceClass cls, out SimDevice dev);
        if (err != 0)
        {
            throw new InvalidOperationException($"mtty: module init failed ({(Errno)(-err)})");
        }

        var module = new MttyModule(core, cls, dev, driver, types, parent);
        if (!machine.AddModule(module))
        {
            throw new InvalidOperationException("mtty is already loaded on this machine");
        }

        return module;
    }

    /// <summary>mtty_dev_exit(): removes every instance (blocking while one is open), then the parent, driver and class.</summary>
    public void Unload() => SampleModule.Exit(Core, _driver, _parent, Class, ParentDevice);

    /// <summary>
    /// Plugs a cable into <paramref name="port"/> of the mtty instance <paramref name="uuid"/>:
    /// from now on the guest's THR writes reach <see cref="MttyCable.FarEnd"/> and what the
    /// far end sends arrives in the port's receive FIFO. Throws when the instance does not
    /// exist, the port is not one of its ports, or a cable is already attached.
    /// </summary>
    public MttyCable Attach(Guid uuid, int port)
    {
        MttyDevice dev = _driver.Find(uuid) ?? throw new InvalidOperationException($"no mtty instance {uuid:D}: create one through sysfs first");
        return AttachTo(dev, uuid, port);
    }

    /// <summary>Unplugs <paramref name="cable"/>: the port loops back again.</summary>
    public static void Detach(MttyCable cable)
    {
        ArgumentNullException.ThrowIfNull(cable);
        cable.Dispose();
    }

    internal static MttyCable AttachTo(MttyDevice dev, Guid uuid, int port)
    {
        if (port < 0 || port >= dev.NrPorts)
        {
            throw new ArgumentOutOfRangeException(nameof(port), port, $"mtty instance {uuid:D} has {dev.NrPorts} port(s)");
        }

        var cable = new MttyCable(dev, uuid, port);
        if (!dev.AttachCable(port, cable))
        {
            throw new InvalidOperationException($"port {port} of mtty instance {uuid:D} already has a cable: detach it first");
        }

        return cable;
    }
}
