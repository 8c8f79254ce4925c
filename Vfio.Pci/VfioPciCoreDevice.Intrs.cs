// Models vfio_pci_set_irqs_ioctl() and the ERR/REQ handlers of
// drivers/vfio/pci/vfio_pci_intrs.c (v6.12), and the AER error_detected callback of
// vfio_pci_core.c that signals ERR. INTx, MSI and MSI-X are not part of this first
// vfio-pci: once the shared header checks pass they fail with -ENOTTY and say so.
//
// Lock rule: everything here runs under igate (SetIrqsLocked asserts it).

using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Fs;
using Vfio.Platform.Proc;

namespace Vfio.Pci;

public sealed partial class VfioPciCoreDevice
{
    private const string SetIrqsName = "VFIO_DEVICE_SET_IRQS";

    /// <summary>
    /// vfio_pci_set_irqs_ioctl(): picks the handler for the index and the action; an index
    /// or action without one is -ENOTTY. ERR exists only on PCI Express functions.
    /// </summary>
    internal int SetIrqsLocked(VfioIrqSetFlags flags, int index, uint start, uint count, ReadOnlySpan<byte> data)
    {
        _igate.AssertHeld();
        VfioIrqSetFlags action = flags & VfioIrqSetFlags.ActionTypeMask;
        switch (index)
        {
            case VfioPciIndex.IrqIntx:
            case VfioPciIndex.IrqMsi:
            case VfioPciIndex.IrqMsix:
                return ErrorReason.Fail(Errno.ENOTTY, $"{SetIrqsName}: {(index == VfioPciIndex.IrqIntx ? "INTx" : index == VfioPciIndex.IrqMsi ? "MSI" : "MSI-X")} is not built in this first vfio-pci (only ERR and REQ are)");
            case VfioPciIndex.IrqErr when action == VfioIrqSetFlags.ActionTrigger && Pdev.IsPcie:
                return SetCtxTriggerSingle(ref _errTrigger, start, count, flags, data, "ERR");
            case VfioPciIndex.IrqReq when action == VfioIrqSetFlags.ActionTrigger:
                return SetCtxTriggerSingle(ref _reqTrigger, start, count, flags, data, "REQ");
            default:
                return ErrorReason.Fail(Errno.ENOTTY, $"{SetIrqsName}: index {index} has no handler for flags 0x{(uint)flags:x} (ERR and REQ take ACTION_TRIGGER only)");
        }
    }

    /// <summary>
    /// vfio_pci_set_err_trigger() / vfio_pci_set_req_trigger(), which differ only in the
    /// eventfd they set: start 0 and count 0 or 1, then vfio_pci_set_ctx_trigger_single():
    /// DATA_NONE signals (count 1) or drops (count 0) a registered eventfd — with none
    /// registered it is -EINVAL; DATA_BOOL(1) signals; DATA_EVENTFD installs fd ≥ 0
    /// (replacing the old one), -1 removes, other negative fds change nothing.
    /// </summary>
    private int SetCtxTriggerSingle(ref EventFdContext? ctx, uint start, uint count, VfioIrqSetFlags flags, ReadOnlySpan<byte> data, string what)
    {
        _igate.AssertHeld();
        if (start != 0 || count > 1)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{SetIrqsName}: {what} takes start 0 and count 0 or 1 (got start {start}, count {count})");
        }

        if ((flags & VfioIrqSetFlags.DataNone) != 0)
        {
            if (ctx is not null)
            {
                if (count != 0)
                {
                    ctx.Signal();
                }
                else
                {
                    ctx.Put();
                    ctx = null;
                }

                return 0;
            }

            return ErrorReason.Fail(Errno.EINVAL, $"{SetIrqsName}: DATA_NONE on {what} with no eventfd registered");
        }

        if ((flags & VfioIrqSetFlags.DataBool) != 0)
        {
            if (count == 0)
            {
                return ErrorReason.Fail(Errno.EINVAL, $"{SetIrqsName}: DATA_BOOL on {what} needs count 1");
            }

            if (data[0] != 0 && ctx is not null)
            {
                ctx.Signal();
            }

            return 0;
        }

        if ((flags & VfioIrqSetFlags.DataEventfd) != 0)
        {
            if (count == 0)
            {
                return ErrorReason.Fail(Errno.EINVAL, $"{SetIrqsName}: DATA_EVENTFD on {what} needs count 1");
            }

            int fd = BitConverter.ToInt32(data);
            if (fd == -1)
            {
                ctx?.Put();
                ctx = null;
            }
            else if (fd >= 0)
            {
                int err = EventFdCtxFdget(fd, out EventFdContext? efd);
                if (err != 0)
                {
                    return err;
                }

                ctx?.Put();
                ctx = efd;
            }

            return 0;
        }

        return ErrorReason.Fail(Errno.EINVAL, $"{SetIrqsName}: no data type");
    }

    /// <summary>eventfd_ctx_fdget(): -EBADF for a closed fd, -EINVAL for a file that is not an eventfd.</summary>
    private static int EventFdCtxFdget(int fd, out EventFdContext? ctx)
    {
        ctx = null;
        SimFile? file = SimProcess.Current?.Files.Get(fd);
        if (file is null)
        {
            return ErrorReason.Fail(Errno.EBADF, $"{SetIrqsName}: fd {fd} is not open");
        }

        try
        {
            ctx = EventFdContext.FromFile(file);
            return ctx is null ? ErrorReason.Fail(Errno.EINVAL, $"{SetIrqsName}: fd {fd} ({file.Path}) is not an eventfd") : 0;
        }
        finally
        {
            file.Put();
        }
    }

    /// <summary>vfio_pci_core_aer_err_detected(): the AER core reports an error on the function; the ERR eventfd is signalled.</summary>
    public void AerErrorDetected()
    {
        _igate.Lock();
        try
        {
            _errTrigger?.Signal();
        }
        finally
        {
            _igate.Unlock();
        }
    }
}
