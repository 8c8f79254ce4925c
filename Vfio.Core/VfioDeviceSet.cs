// Models struct vfio_device_set (drivers/vfio/vfio_main.c, v6.12): devices that must be
// opened, closed and reset together (vfio-pci keys them by slot or bus) share one lock.

using Vfio.Kernel;
using Vfio.Platform.Base;

namespace Vfio.Core;

/// <summary>struct vfio_device_set.</summary>
public sealed class VfioDeviceSet
{
    private readonly List<VfioDevice> _devices = [];

    internal VfioDeviceSet(VfioCore core, object setId)
    {
        SetId = setId;
        Lock = new KMutex(core.Kernel, $"vfio_device_set[{setId}].lock", VfioCore.DevSetLockClass);
    }

    /// <summary>set_id: the key drivers chose (a slot, a bus, or the device itself).</summary>
    public object SetId { get; }

    /// <summary>dev_set-&gt;lock: serialises open_device/close_device (and vfio-pci resets) for every device of the set.</summary>
    public KMutex Lock { get; }

    // dev_set->device_count, under the core's xarray lock.
    internal int DeviceCountXa { get; set; }

    /// <summary>The devices of the set (caller holds <see cref="Lock"/>).</summary>
    public IReadOnlyList<VfioDevice> DevicesLocked
    {
        get
        {
            Lock.AssertHeld();
            return _devices;
        }
    }

    /// <summary>The number of devices in the set, read without the lock: only when no task runs (the object graph's snapshot).</summary>
    internal int DeviceCountUnlocked => _devices.Count;

    /// <summary>The number of devices in the set, a snapshot.</summary>
    public int DeviceCount
    {
        get
        {
            Lock.Lock();
            try
            {
                return _devices.Count;
            }
            finally
            {
                Lock.Unlock();
            }
        }
    }

    /// <summary>vfio_device_set_open_count(): the sum of the devices' open counts (caller holds <see cref="Lock"/>).</summary>
    public int OpenCountLocked()
    {
        Lock.AssertHeld();
        int n = 0;
        foreach (VfioDevice d in _devices)
        {
            n += d.OpenCountUnlocked;
        }

        return n;
    }

    /// <summary>vfio_find_device_in_devset() (caller holds <see cref="Lock"/>).</summary>
    public VfioDevice? FindDeviceLocked(SimDevice dev)
    {
        Lock.AssertHeld();
        foreach (VfioDevice d in _devices)
        {
            if (d.Dev == dev)
            {
                return d;
            }
        }

        return null;
    }

    internal void AddLocked(VfioDevice device)
    {
        Lock.AssertHeld();
        _devices.Add(device);
    }

    internal void RemoveLocked(VfioDevice device)
    {
        Lock.AssertHeld();
        _devices.Remove(device);
    }

    /// <inheritdoc/>
    public override string ToString() => $"vfio device set {SetId}";
}
