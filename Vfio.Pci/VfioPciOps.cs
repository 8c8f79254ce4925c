// Models vfio_pci_ops of drivers/vfio/pci/vfio_pci.c (v6.12): the vfio_device_ops table of
// vfio-pci, each entry forwarding to the vfio_pci_core_* function. bind_iommufd and the
// iommufd attach ops are not part of this vfio-pci.

using Vfio.Core;
using Vfio.Platform.Mm;

namespace Vfio.Pci;

/// <summary>vfio_pci_ops.</summary>
internal sealed class VfioPciOps(VfioPciDriver driver) : VfioDeviceOps
{
    public VfioPciDriver Driver { get; } = driver;

    public override string Name => VfioPciDriver.DriverName;

    /// <summary>vfio_pci_core_init_dev().</summary>
    public override int Init(VfioDevice device)
    {
        ((VfioPciCoreDevice)device).InitDev(Driver);
        return 0;
    }

    /// <summary>vfio_pci_core_release_dev().</summary>
    public override void Release(VfioDevice device) => ((VfioPciCoreDevice)device).ReleaseDev();

    /// <summary>vfio_pci_open_device(): enable, then finish_enable.</summary>
    public override int OpenDevice(VfioDevice device)
    {
        var vdev = (VfioPciCoreDevice)device;
        int ret = vdev.Enable();
        if (ret != 0)
        {
            return ret;
        }

        vdev.FinishEnable();
        return 0;
    }

    /// <summary>vfio_pci_core_close_device().</summary>
    public override void CloseDevice(VfioDevice device) => ((VfioPciCoreDevice)device).CloseDevice();

    /// <summary>vfio_pci_core_read().</summary>
    public override long Read(VfioDevice device, ulong buf, long count, ref long pos)
        => count == 0 ? 0 : ((VfioPciCoreDevice)device).Rw(buf, count, ref pos, write: false);

    /// <summary>vfio_pci_core_write().</summary>
    public override long Write(VfioDevice device, ulong buf, long count, ref long pos)
        => count == 0 ? 0 : ((VfioPciCoreDevice)device).Rw(buf, count, ref pos, write: true);

    /// <summary>vfio_pci_core_mmap().</summary>
    public override int Mmap(VfioDevice device, Vma vma) => ((VfioPciCoreDevice)device).Mmap(vma);

    /// <summary>vfio_pci_core_ioctl().</summary>
    public override long Ioctl(VfioDevice device, uint cmd, ulong arg) => ((VfioPciCoreDevice)device).Ioctl(cmd, arg);

    /// <summary>vfio_pci_core_request().</summary>
    public override void Request(VfioDevice device, uint count) => ((VfioPciCoreDevice)device).Request(count);

    /// <summary>vfio_pci_core_match().</summary>
    public override int Match(VfioDevice device, string buf) => ((VfioPciCoreDevice)device).Match(buf);

    /// <summary>vfio_pci_core_ioctl_feature().</summary>
    public override int DeviceFeature(VfioDevice device, uint flags, ulong arg, ulong argsz)
        => ((VfioPciCoreDevice)device).IoctlFeature(flags, arg, argsz);
}
