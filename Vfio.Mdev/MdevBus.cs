// Models mdev_bus_type (drivers/vfio/mdev/mdev_driver.c, v6.12): the bus mediated devices
// live on. Its match always says no, so nothing binds by itself: mdev creation attaches
// the parent's driver explicitly.

using Vfio.Platform;
using Vfio.Platform.Base;
using Vfio.Platform.Fs;

namespace Vfio.Mdev;

/// <summary>mdev_bus_type: /sys/bus/mdev.</summary>
public sealed class MdevBus : BusType
{
    internal MdevBus(SimMachine machine)
        : base(machine, "mdev")
    {
    }

    /// <summary>The core the bus belongs to (its remove store).</summary>
    internal MdevCore? Core { get; set; }

    /// <summary>mdev_match(): always 0; creation binds the parent's driver with device_driver_attach.</summary>
    public override int Match(SimDevice dev, DeviceDriver drv) => 0;

    /// <summary>mdev_device_groups: the <c>remove</c> attribute (0200).</summary>
    protected override void AddDeviceAttributes(SimDevice dev, VfsDir dir)
    {
        if (dev is MdevDevice mdev && Core is { } core)
        {
            mdev.RemoveFile = Machine.Sysfs.CreateFile(dir, "remove", 0x80 /* 0200 */, null, s => core.RemoveStore(mdev, s));
        }
    }
}
