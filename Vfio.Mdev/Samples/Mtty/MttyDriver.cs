// Models mtty_driver, mtty_probe/mtty_remove and mtty_get_available of
// samples/vfio-mdev/mtty.c (v6.12, the same in v6.1): the mdev driver "mtty" with its
// "vendor/sample_mdev_dev" device attribute. Probe allocates the vfio device (whose init
// reserves ports: ENOSPC) and registers it as an emulated-IOMMU device; remove
// unregisters (waiting for user space to close it) and puts it; release returns the ports.

using Vfio.Core;
using Vfio.Kernel;

namespace Vfio.Mdev.Samples.Mtty;

/// <summary>An mtty type: mtty-1 (one port) or mtty-2 (two).</summary>
internal sealed class MttyType : MdevType
{
    public MttyType(int nrPorts, string prettyName)
        : base(nrPorts.ToString(System.Globalization.CultureInfo.InvariantCulture), prettyName)
        => NrPorts = nrPorts;

    public int NrPorts { get; }
}

/// <summary>struct mdev_driver mtty_driver.</summary>
internal sealed class MttyDriver : MdevDriver
{
    private readonly Dictionary<MdevDevice, MttyDevice> _devices = [];

    // Protects _devices (probe/remove run under device_lock; lookups come from any task).
    private readonly KSpinLock _lock;

    public MttyDriver(SimKernel kernel, MttyPortPool pool)
        : base("mtty")
    {
        Pool = pool;
        _lock = new KSpinLock(kernel, "mtty.devices");
    }

    public MttyPortPool Pool { get; }

    /// <inheritdoc/>
    public override string DeviceApi => "vfio-pci";

    /// <inheritdoc/>
    public override int GetAvailable(MdevType type) => Pool.Available / ((MttyType)type).NrPorts;

    /// <summary>The mtty state of the instance <paramref name="uuid"/>, or null.</summary>
    public MttyDevice? Find(Guid uuid)
    {
        _lock.Lock();
        try
        {
            foreach (KeyValuePair<MdevDevice, MttyDevice> kv in _devices)
            {
                if (kv.Key.Uuid == uuid)
                {
                    return kv.Value;
                }
            }

            return null;
        }
        finally
        {
            _lock.Unlock();
        }
    }

    /// <inheritdoc/>
    public override int Probe(MdevDevice mdev)
    {
        var state = new MttyDevice(mdev.Machine.Kernel, Pool, ((MttyType)mdev.Type).NrPorts, mdev.Name);
        MttyVfioDevice? vdev = VfioDevice.Alloc(mdev, state.Ops, static () => new MttyVfioDevice(), out int err);
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

        state.VfioDevice = vdev;
        if (mdev.SysfsDir is { } dir)
        {
            var fs = mdev.Machine.Sysfs;
            if (fs.CreateDir(dir, "vendor") is { } vendor)
            {
                string text = $"This is MDEV {mdev.Name}\n";
                fs.CreateFile(vendor, "sample_mdev_dev", 0x124, () => text, null);
            }
        }

        _lock.Lock();
        _devices[mdev] = state;
        _lock.Unlock();
        return 0;
    }

    /// <inheritdoc/>
    public override void Remove(MdevDevice mdev)
    {
        _lock.Lock();
        _devices.Remove(mdev, out MttyDevice? state);
        _lock.Unlock();
        if (state?.VfioDevice is not { } vdev)
        {
            return;
        }

        vdev.UnregisterGroupDev();
        vdev.PutDevice();
    }

    private sealed class MttyVfioDevice : VfioDevice
    {
    }
}
