// Test-only stand-in for a VFIO bus driver (the shape of drivers/vfio/pci/vfio_pci.c,
// v6.12, without regions or interrupts) so the KVM-VFIO tests have a vfio group and a
// device to open: probe allocates and registers a vfio_device, remove unregisters it.

using System.Collections.Concurrent;
using Vfio.Core;
using Vfio.Platform.Pci;

namespace Vfio.Tests.Core.Kvm;

/// <summary>A PCI driver named "vfio-test" that registers every device it binds with the vfio core.</summary>
internal sealed class KvmTestVfioDriver() : PciDriver(DriverName)
{
    public const string DriverName = "vfio-test";

    public override bool DriverManagedDma => true;

    /// <summary>The KVM each open_device saw on the device (device->kvm), in order.</summary>
    public ConcurrentQueue<IVfioKvm?> KvmAtOpen { get; } = new();

    public override int Probe(PciDevice dev, PciDeviceId id)
    {
        KvmTestVfioDevice? vdev = VfioDevice.Alloc(dev, new KvmTestVfioOps(this), () => new KvmTestVfioDevice(), out int err);
        if (vdev is null)
        {
            return err;
        }

        err = vdev.RegisterGroupDev();
        if (err != 0)
        {
            vdev.PutDevice();
            return err;
        }

        dev.DriverData = vdev;
        return 0;
    }

    public override void Remove(PciDevice dev)
    {
        var vdev = (VfioDevice)dev.DriverData!;
        vdev.UnregisterGroupDev();
        vdev.PutDevice();
        dev.DriverData = null;
    }
}

/// <summary>The driver's vfio_device (container_of in the kernel).</summary>
internal sealed class KvmTestVfioDevice : VfioDevice;

/// <summary>vfio_device_ops of the test driver: open_device records the KVM it was given.</summary>
internal sealed class KvmTestVfioOps(KvmTestVfioDriver driver) : VfioDeviceOps
{
    public override string Name => KvmTestVfioDriver.DriverName;

    public override int OpenDevice(VfioDevice device)
    {
        driver.KvmAtOpen.Enqueue(device.Kvm);
        return 0;
    }
}
