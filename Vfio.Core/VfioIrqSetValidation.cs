// Models vfio_set_irqs_validate_and_prepare() of drivers/vfio/vfio_main.c (v6.12): the
// checks every bus driver runs on a VFIO_DEVICE_SET_IRQS header before it looks at the
// index, in the kernel's order (argsz, index, start/count overflow, unknown flags, the
// range against the index's count, one data type, the payload size).

using Vfio.Core.Uapi;
using Vfio.Kernel;

namespace Vfio.Core;

/// <summary>The shared VFIO_DEVICE_SET_IRQS header checks.</summary>
public static class VfioIrqSetValidation
{
    private const string IoctlName = "VFIO_DEVICE_SET_IRQS";

    /// <summary>
    /// vfio_set_irqs_validate_and_prepare(): 0 with <paramref name="dataSize"/> = the bytes of
    /// payload that follow the header (count × 1 for BOOL, count × 4 for EVENTFD, 0 for NONE),
    /// or -EINVAL with the reason recorded. <paramref name="numIrqs"/> is the index's count,
    /// <paramref name="maxIrqType"/> the number of indexes.
    /// </summary>
    public static int ValidateAndPrepare(in VfioIrqSet hdr, int numIrqs, int maxIrqType, out int dataSize)
    {
        dataSize = 0;
        const uint known = (uint)(VfioIrqSetFlags.DataTypeMask | VfioIrqSetFlags.ActionTypeMask);
        if (hdr.Argsz < VfioIrqSet.MinSz)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{IoctlName}: argsz {hdr.Argsz} is smaller than the minimum {VfioIrqSet.MinSz}");
        }

        if (hdr.Index >= (uint)maxIrqType)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{IoctlName}: index {hdr.Index} is not below the number of IRQ indexes {maxIrqType}");
        }

        if (hdr.Count >= uint.MaxValue - hdr.Start)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{IoctlName}: start {hdr.Start} + count {hdr.Count} overflows");
        }

        if (((uint)hdr.Flags & ~known) != 0)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{IoctlName}: unknown flags 0x{(uint)hdr.Flags & ~known:x}");
        }

        if (hdr.Start >= (uint)numIrqs || hdr.Start + hdr.Count > (uint)numIrqs)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{IoctlName}: vectors [{hdr.Start}, {(ulong)hdr.Start + hdr.Count}) are outside index {hdr.Index}'s {numIrqs}");
        }

        int size;
        switch (hdr.Flags & VfioIrqSetFlags.DataTypeMask)
        {
            case VfioIrqSetFlags.DataNone:
                size = 0;
                break;
            case VfioIrqSetFlags.DataBool:
                size = sizeof(byte);
                break;
            case VfioIrqSetFlags.DataEventfd:
                size = sizeof(int);
                break;
            default:
                return ErrorReason.Fail(Errno.EINVAL, $"{IoctlName}: flags 0x{(uint)hdr.Flags:x} name {(((uint)hdr.Flags & (uint)VfioIrqSetFlags.DataTypeMask) == 0 ? "no" : "more than one")} data type");
        }

        if (size != 0)
        {
            ulong need = (ulong)hdr.Count * (ulong)size;
            if ((ulong)(hdr.Argsz - VfioIrqSet.MinSz) < need)
            {
                return ErrorReason.Fail(Errno.EINVAL, $"{IoctlName}: argsz {hdr.Argsz} leaves {hdr.Argsz - VfioIrqSet.MinSz} data bytes, {hdr.Count} vectors need {need}");
            }

            dataSize = (int)need;
        }

        return 0;
    }
}
