// Models struct mdev_driver and mdev_register_driver/mdev_unregister_driver
// (include/linux/mdev.h, drivers/vfio/mdev/mdev_driver.c, v6.12): a vendor driver for
// mediated devices. The mdev bus matches nothing on its own; the core binds a parent's
// driver to each device it creates (device_driver_attach), so probe runs inside the
// create write and its errno is the write's.

using System.Reflection;
using Vfio.Platform.Base;

namespace Vfio.Mdev;

/// <summary>The optional callbacks of an mdev driver (the non-NULL members of struct mdev_driver).</summary>
[Flags]
public enum MdevDriverOps
{
    None = 0,

    /// <summary>-&gt;get_available(): the driver counts its instances itself; the core's per-parent count is unused.</summary>
    GetAvailable = 1 << 0,

    /// <summary>-&gt;show_description(): the type directories get a <c>description</c> attribute.</summary>
    ShowDescription = 1 << 1,
}

/// <summary>
/// struct mdev_driver: a vendor driver of mediated devices. Override <see cref="Probe(MdevDevice)"/>
/// (normally vfio_alloc_device + vfio_register_emulated_iommu_dev) and
/// <see cref="Remove(MdevDevice)"/>, and <see cref="GetAvailable"/> /
/// <see cref="ShowDescription"/> when the driver has them.
/// </summary>
public abstract class MdevDriver : DeviceDriver
{
    private MdevDriverOps? _provides;

    /// <summary>A driver called <paramref name="name"/> (its directory in /sys/bus/mdev/drivers).</summary>
    protected MdevDriver(string name)
        : base(name)
    {
    }

    /// <summary>-&gt;device_api: the <c>device_api</c> attribute of every type (<c>vfio-pci</c>).</summary>
    public abstract string DeviceApi { get; }

    /// <summary>-&gt;max_instances: the parent's <c>available_instances</c> at registration (unused with <see cref="GetAvailable"/>).</summary>
    public virtual int MaxInstances => 0;

    /// <summary>Which optional callbacks the concrete driver overrides.</summary>
    public MdevDriverOps Provides => _provides ??= Discover(GetType());

    /// <summary>mdev drivers do their own DMA (through vfio_pin_pages / vfio_dma_rw).</summary>
    public override bool DriverManagedDma => true;

    /// <summary>-&gt;probe(): take the new mdev; 0 or -errno (the create write returns it).</summary>
    public abstract int Probe(MdevDevice mdev);

    /// <summary>-&gt;remove(): let the mdev go (runs in the remove write or parent unregistration; may block in vfio unregister).</summary>
    public abstract void Remove(MdevDevice mdev);

    /// <summary>-&gt;get_available(type): instances of <paramref name="type"/> that can still be created.</summary>
    public virtual int GetAvailable(MdevType type) => throw new NotSupportedException($"{Name} has no get_available");

    /// <summary>-&gt;show_description(type): the text of the type's <c>description</c> attribute.</summary>
    public virtual string ShowDescription(MdevType type) => throw new NotSupportedException($"{Name} has no show_description");

    /// <inheritdoc/>
    public sealed override int Probe(SimDevice dev) => Probe((MdevDevice)dev);

    /// <inheritdoc/>
    public sealed override void Remove(SimDevice dev) => Remove((MdevDevice)dev);

    private static MdevDriverOps Discover(Type type)
    {
        MdevDriverOps ops = MdevDriverOps.None;
        if (type.GetMethod(nameof(GetAvailable), BindingFlags.Public | BindingFlags.Instance)?.DeclaringType != typeof(MdevDriver))
        {
            ops |= MdevDriverOps.GetAvailable;
        }

        if (type.GetMethod(nameof(ShowDescription), BindingFlags.Public | BindingFlags.Instance)?.DeclaringType != typeof(MdevDriver))
        {
            ops |= MdevDriverOps.ShowDescription;
        }

        return ops;
    }
}
