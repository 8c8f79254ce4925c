// The ioctls the display samples answer alike (samples/vfio-mdev/mdpy.c and mbochs.c,
// v6.12): VFIO_DEVICE_GET_INFO of a PCI-like device, GET_IRQ_INFO of a device with no
// interrupts (count 0 for every index it admits), and QUERY_GFX_PLANE's copy-in, query,
// copy-out. Each sample keeps its own checks where its kernel code differs: mdpy admits the
// IRQ indexes its last GET_INFO reported, mbochs every VFIO-PCI index.

using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Fs;

namespace Vfio.Mdev.Samples;

/// <summary>A display sample's plane query: fills <paramref name="plane"/>; 0 or -errno.</summary>
internal delegate int GfxPlaneQuery(ref VfioDeviceGfxPlaneInfo plane);

internal static class SampleIoctl
{
    /// <summary>VFIO_DEVICE_GET_INFO: flags PCI, <paramref name="numRegions"/> and <paramref name="numIrqs"/>; 0 or -errno, with what was reported in <paramref name="info"/>.</summary>
    public static long GetPciInfo(ulong arg, uint numRegions, uint numIrqs, out VfioDeviceInfo info)
    {
        int err = VfioArg.CopyIn(arg, VfioDeviceInfo.MinSz, out info, "VFIO_DEVICE_GET_INFO");
        if (err != 0)
        {
            return err;
        }

        info.Flags = VfioDeviceFlags.Pci;
        info.NumRegions = numRegions;
        info.NumIrqs = numIrqs;
        return VfioArg.CopyOut(arg, in info, VfioDeviceInfo.MinSz);
    }

    /// <summary>VFIO_DEVICE_GET_IRQ_INFO of a device without interrupts: argsz and index (below <paramref name="numIrqs"/>) checked, count 0.</summary>
    public static long GetIrqInfoWithoutIrqs(ulong arg, uint numIrqs)
    {
        if (UserMemory.Get(arg, out VfioIrqInfo info) != 0)
        {
            return ErrorReason.Fail(Errno.EFAULT, $"VFIO_DEVICE_GET_IRQ_INFO: cannot read the argument at 0x{arg:x}");
        }

        if (info.Argsz < VfioIrqInfo.MinSz || info.Index >= numIrqs)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"VFIO_DEVICE_GET_IRQ_INFO: argsz {info.Argsz} (min {VfioIrqInfo.MinSz}), index {info.Index} of {numIrqs}");
        }

        info.Count = 0;
        return VfioArg.CopyOut(arg, in info, VfioIrqInfo.MinSz);
    }

    /// <summary>VFIO_DEVICE_QUERY_GFX_PLANE: the argument in, <paramref name="query"/>, the answer out; 0 or -errno.</summary>
    public static long QueryGfxPlane(ulong arg, GfxPlaneQuery query)
    {
        int err = VfioArg.CopyIn(arg, VfioDeviceGfxPlaneInfo.MinSz, out VfioDeviceGfxPlaneInfo plane, "VFIO_DEVICE_QUERY_GFX_PLANE");
        if (err != 0)
        {
            return err;
        }

        err = query(ref plane);
        return err != 0 ? err : VfioArg.CopyOut(arg, in plane, VfioDeviceGfxPlaneInfo.MinSz);
    }
}
