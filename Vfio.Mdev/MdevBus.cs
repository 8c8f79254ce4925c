// Models mdev_bus_type (drivers/vfio/mdev/mdev_driver.c, v6.12): the bus mediated devices
// live on. Its match always says no, so nothing binds by itself: mdev creation attaches
// the parent's driver explicitly.

using Vfio.Platform;
using Vfio.Platform.Base;

namespace Vfio.Mdev;

/// <summary>mdev_bus_type: /sys/bus/mdev.</summary>
public sealed class MdevBus : BusType
{
    internal MdevBus(SimMachine machine)
        : base(machine, "mdev")
    {
    }

    /// <summary>mdev_match(): always 0; creation binds the parent's driver with device_driver_attach.</summary>
    public override int Match(SimDevice dev, DeviceDriver drv) => 0;
}
