// The mdma sample's mdev driver (no kernel counterpart; probe and remove as mtty's and
// vfio-ccw's): max_instances counted by the mdev core (no get_available), device_api
// vfio-pci; probe allocates the vfio_device and registers it as an emulated-IOMMU device,
// remove unregisters it (blocking while user space holds it) and drops the reference.

using Vfio.Core;

namespace Vfio.Mdev.Samples.Mdma;

/// <summary>The mdma mdev driver (/sys/bus/mdev/drivers/mdma).</summary>
public sealed class MdmaDriver : MdevDriver
{
    private readonly MdmaOps _ops;

    internal MdmaDriver(MdmaOptions options)
        : base("mdma")
    {
        Options = options;
        _ops = new MdmaOps(options);
    }

    /// <summary>The module options.</summary>
    public MdmaOptions Options { get; }

    /// <inheritdoc/>
    public override string DeviceApi => "vfio-pci";

    /// <inheritdoc/>
    public override int MaxInstances => Options.MaxInstances;

    /// <summary>mdma_probe(): vfio_alloc_device, then vfio_register_emulated_iommu_dev; 0 or -errno.</summary>
    public override int Probe(MdevDevice mdev)
    {
        var type = (MdmaType)mdev.Type;
        MdmaDevice? vdev = VfioDevice.Alloc(mdev, _ops, () => new MdmaDevice(type, Options), out int err);
        if (vdev is null)
        {
            return err;
        }

        vdev.InitState();
        err = vdev.RegisterEmulatedIommuDev();
        if (err != 0)
        {
            vdev.PutDevice();
            return err;
        }

        mdev.DriverData = vdev;
        return 0;
    }

    /// <summary>mdma_remove(): vfio_unregister_group_dev (waits for the last user), then the last put.</summary>
    public override void Remove(MdevDevice mdev)
    {
        var vdev = (MdmaDevice)mdev.DriverData!;
        vdev.UnregisterGroupDev();
        mdev.DriverData = null;
        vdev.PutDevice();
    }
}
