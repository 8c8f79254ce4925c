// Models the viability rules of drivers/vfio/group.c (v6.12: DMA ownership) and of the ≤v5.18
// vfio.c group notifier (the legacy design variant, with its unbound_list and BUG_ON).

using Vfio.Kernel;
using Vfio.Platform.Base;
using Vfio.Platform.Iommu;
using Vfio.Platform.Pci;

namespace Vfio.Core;

public sealed partial class VfioGroup
{

    /// <summary>The legacy model's viability of one device (vfio_dev_viable).</summary>
    private bool LegacyDeviceViable(SimDevice dev)
    {
        DeviceLock.Lock();
        try
        {
            if (_unbound.Contains(dev))
            {
                return true;
            }

            DeviceDriver? drv = dev.Driver;
            if (drv is null || dev is PciDevice { IsBridge: true } || drv.Name == "pci-stub")
            {
                return true;
            }

            foreach (VfioDevice d in _devices)
            {
                if (d.Dev == dev)
                {
                    return true;
                }
            }

            return false;
        }
        finally
        {
            DeviceLock.Unlock();
        }
    }

    /// <summary>
    /// Whether the group is viable now. Under DMA ownership: it has a container, or no
    /// device is bound to a DMA-API kernel driver (iommu_group_dma_owner_claimed is false).
    /// Under the legacy model: every device is vfio-bound, driver-less, pci-stub or a
    /// bridge. When it is not, <paramref name="blocker"/> names a device that breaks it.
    /// </summary>
    internal bool ViableLocked(out SimDevice? blocker)
    {
        GroupLock.AssertHeld();
        blocker = null;
        IommuGroup? ig = IommuGroupLocked("iommu_group_dma_owner_claimed");
        if (ig is null)
        {
            return false;
        }

        bool legacy = Core.Design.Viability == VfioViabilityModel.LegacyNotifier;
        if (!legacy && (HasIommuLocked() || !IommuCore.GroupDmaOwnerClaimed(ig)))
        {
            return true;
        }

        foreach (SimDevice dev in ig.Devices)
        {
            if (legacy ? !LegacyDeviceViable(dev) : dev.Driver is { DriverManagedDma: false })
            {
                blocker = dev;
                return false;
            }
        }

        // Legacy: every device passed. Ownership: claimed, but by no kernel driver (another owner).
        return legacy;
    }

    private bool HasIommuLocked()
    {
        GroupLock.AssertHeld();
        Warn.On(Core.Kernel, (Container is null) != (ContainerUsers == 0), $"vfio group {Name}: container and container_users disagree");
        return Container is not null;
    }

    // ---- The legacy bus notifier (design variant).

    internal void LegacyNotify(BusNotification action, SimDevice dev)
    {
        switch (action)
        {
            case BusNotification.AddDevice:
                GroupLock.Lock();
                bool live = ContainerUsers > 0;
                GroupLock.Unlock();
                Warn.On(Core.Kernel, live, $"{dev.Name}: Device added to live group {Id}!");
                break;
            case BusNotification.BoundDriver:
                GroupLock.Lock();
                int users = ContainerUsers;
                GroupLock.Unlock();
                if (users > 0 && !LegacyDeviceViable(dev))
                {
                    Bug.On(true, $"kernel BUG in vfio_group_nb_verify: {dev.Name} bound to {dev.Driver?.Name} inside group {Id}, which user space is using");
                }

                break;
            case BusNotification.UnboundDriver:
                DeviceLock.Lock();
                _unbound.Remove(dev);
                DeviceLock.Unlock();
                break;
        }
    }
}
