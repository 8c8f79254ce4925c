// Models drivers/vfio/mdev/vfio_mdev.c of v4.10 (the 2016 series): the vfio_mdev driver on
// the mdev bus, whose probe registers a vfio device for the mdev and whose vfio ops forward
// to the parent's parent_ops (an absent op is -EINVAL); its remove unregisters the vfio
// device, which waits until user space has closed it (there is no request op in v4.10).
//
// v4.10 called ops->open on every open of the device file and ops->release on each release;
// the simulated vfio core calls open_device/close_device on the first open and the last
// close. The group: in v4.10 the mdev core allocated it (mdev_attach_iommu) before this
// probe; here the bridge registers an emulated-IOMMU device and vfio allocates the software
// group (the same group type to type1, which in v4.10 recognised mdev groups by their bus).
//
// Lock order: the mdev's device_lock (probe/remove) → vfio locks.

using Vfio.Core;
using Vfio.Kernel;
using Vfio.Platform.Mm;

namespace Vfio.Mdev.Design2016;

/// <summary>The vfio_mdev bus driver of the 2016 design.</summary>
public sealed class VfioMdevDriver : MdevDriver
{
    private readonly Mdev2016Core _core;

    internal VfioMdevDriver(Mdev2016Core core)
        : base("vfio_mdev")
    {
        _core = core;
    }

    /// <summary>Not used: the 2016 parents publish their types themselves.</summary>
    public override string DeviceApi => "vfio-pci";

    /// <summary>The vfio device of <paramref name="mdev"/> while it is bound, else null.</summary>
    public static VfioDevice? DeviceOf(MdevDevice mdev) => Mdev2016Core.Of(mdev.Machine).VfioDevices.TryGetValue(mdev, out VfioDevice? d) ? d : null;

    /// <summary>vfio_mdev_probe(): vfio_add_group_dev with the forwarding ops.</summary>
    public override int Probe(MdevDevice mdev)
    {
        IMdevParentOps? ops = _core.OpsOf(mdev.MdevParent);
        if (ops is null)
        {
            return ErrorReason.Fail(Errno.ENODEV, $"vfio_mdev: {mdev.Name} has no registered parent");
        }

        var vops = new VfioMdevOps(ops);
        VfioDevice? vdev = VfioDevice.Alloc(mdev, vops, () => new VfioMdevDevice(mdev), out int err);
        if (vdev is null)
        {
            return err;
        }

        err = vdev.RegisterEmulatedIommuDev();
        if (err != 0)
        {
            vdev.PutDevice();
            return err;
        }

        _core.VfioDevices[mdev] = vdev;

        // v4.10 ran parent_ops->create right after the device was registered and bound.
        err = ops.Create(mdev.Type, mdev);
        if (err != 0)
        {
            _core.VfioDevices.TryRemove(mdev, out _);
            vdev.UnregisterGroupDev();
            vdev.PutDevice();
            return err;
        }

        return 0;
    }

    /// <summary>The parent's per-type available_instances (a vendor attribute in v4.10).</summary>
    public override int GetAvailable(MdevType type)
    {
        ArgumentNullException.ThrowIfNull(type);
        return type.Parent is { } p && _core.OpsOf(p) is { } ops ? ops.AvailableInstances(type) : 0;
    }

    /// <summary>vfio_mdev_remove(): vfio_del_group_dev, which blocks until the device is closed.</summary>
    public override void Remove(MdevDevice mdev)
    {
        // The remove write ran the vendor's remove already; parent unregistration runs it here, by force.
        _core.VendorRemove(mdev, force: true);
        _core.Forget(mdev);
        if (!_core.VfioDevices.TryRemove(mdev, out VfioDevice? vdev))
        {
            return;
        }

        vdev.UnregisterGroupDev();
        vdev.PutDevice();
    }
}

/// <summary>The vfio device of an mdev under vfio_mdev.</summary>
public sealed class VfioMdevDevice : VfioDevice
{
    internal VfioMdevDevice(MdevDevice mdev)
    {
        Mdev = mdev;
    }

    /// <summary>The mediated device.</summary>
    public MdevDevice Mdev { get; }
}

/// <summary>vfio_mdev_dev_ops: every op forwards to the parent's parent_ops.</summary>
internal sealed class VfioMdevOps(IMdevParentOps ops) : VfioDeviceOps
{
    public override string Name => "vfio-mdev";

    public override int OpenDevice(VfioDevice device) => ops.Open(Mdev(device));

    public override void CloseDevice(VfioDevice device) => ops.Release(Mdev(device));

    public override long Read(VfioDevice device, ulong buf, long count, ref long pos) => ops.Read(Mdev(device), buf, count, ref pos);

    public override long Write(VfioDevice device, ulong buf, long count, ref long pos) => ops.Write(Mdev(device), buf, count, ref pos);

    public override long Ioctl(VfioDevice device, uint cmd, ulong arg) => ops.Ioctl(Mdev(device), cmd, arg);

    public override int Mmap(VfioDevice device, Vma vma) => ops.Mmap(Mdev(device), vma);

    private static MdevDevice Mdev(VfioDevice device) => ((VfioMdevDevice)device).Mdev;
}
