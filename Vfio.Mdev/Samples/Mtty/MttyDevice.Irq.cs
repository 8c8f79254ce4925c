// Models mtty_ioctl() and mtty_set_irqs() of samples/vfio-mdev/mtty.c: v6.12 (after
// "vfio/mtty: Overhaul mtty interrupt handling", MttyFeatures.IrqOverhaul) and v6.1
// (before it), each answer checked on the real kernels.

using Vfio.Core;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Fs;

namespace Vfio.Mdev.Samples.Mtty;

internal sealed partial class MttyDevice
{
    private const string SetIrqs = "VFIO_DEVICE_SET_IRQS";

    /// <summary>The eventfds the device holds now, for tests (INTx, MSI).</summary>
    internal (EventFdContext? Intx, EventFdContext? Msi, int IrqIndex, bool IntxMasked) IrqStateForTests => (_intxEvtfd, _msiEvtfd, _irqIndex, _intxMask);

    public long Ioctl(uint cmd, ulong arg)
    {
        switch (cmd)
        {
            case VfioIoctl.DeviceGetInfo:
            {
                int err = VfioArg.CopyIn(arg, VfioDeviceInfo.MinSz, out VfioDeviceInfo info, "VFIO_DEVICE_GET_INFO");
                if (err != 0)
                {
                    return err;
                }

                info.Flags = VfioDeviceFlags.Pci;
                info.NumRegions = 9;
                info.NumIrqs = VfioPciIrq.Num;
                Volatile.Write(ref _numIrqs, info.NumIrqs);
                return VfioArg.CopyOut(arg, info, VfioDeviceInfo.MinSz);
            }

            case VfioIoctl.DeviceGetRegionInfo:
            {
                int err = VfioArg.CopyIn(arg, VfioRegionInfo.MinSz, out VfioRegionInfo info, "VFIO_DEVICE_GET_REGION_INFO");
                if (err != 0)
                {
                    return err;
                }

                if (info.Index >= 9)
                {
                    return ErrorReason.Fail(Errno.EINVAL, $"VFIO_DEVICE_GET_REGION_INFO: index {info.Index} is not below VFIO_PCI_NUM_REGIONS (9)");
                }

                info.Size = info.Index switch
                {
                    7 => ConfigSpaceSize,
                    0 => IoBarSize,
                    1 when NrPorts == 2 => IoBarSize,
                    _ => 0,
                };
                info.Offset = (ulong)info.Index << OffsetShift;
                info.Flags = VfioRegionFlags.Read | VfioRegionFlags.Write;
                return VfioArg.CopyOut(arg, info, VfioRegionInfo.MinSz);
            }

            case VfioIoctl.DeviceGetIrqInfo:
            {
                int err = VfioArg.CopyIn(arg, VfioIrqInfo.MinSz, out VfioIrqInfo info, "VFIO_DEVICE_GET_IRQ_INFO");
                if (err != 0)
                {
                    return err;
                }

                if (info.Index >= Volatile.Read(ref _numIrqs))
                {
                    return ErrorReason.Fail(Errno.EINVAL, $"VFIO_DEVICE_GET_IRQ_INFO: index {info.Index} is not below the {Volatile.Read(ref _numIrqs)} IRQ indexes GET_INFO reported (call VFIO_DEVICE_GET_INFO first)");
                }

                bool known = info.Index is VfioPciIrq.Intx or VfioPciIrq.Msi || (!Overhauled && info.Index == VfioPciIrq.Req);
                if (!known)
                {
                    return ErrorReason.Fail(Errno.EINVAL, $"VFIO_DEVICE_GET_IRQ_INFO: mtty has no IRQ index {info.Index}");
                }

                info.Flags = VfioIrqInfoFlags.Eventfd | (info.Index == VfioPciIrq.Intx ? VfioIrqInfoFlags.Maskable | VfioIrqInfoFlags.Automasked : VfioIrqInfoFlags.NoResize);
                info.Count = 1;
                return VfioArg.CopyOut(arg, info, VfioIrqInfo.MinSz);
            }

            case VfioIoctl.DeviceSetIrqs:
            {
                VfioIrqSet hdr = default;
                if (VfioArg.CopyInPrefix(arg, VfioIrqSet.MinSz, ref hdr) != 0)
                {
                    return Errno.EFAULT.Negative();
                }

                int err = VfioIrqSetValidation.ValidateAndPrepare(hdr, (int)Volatile.Read(ref _numIrqs), VfioPciIrq.Num, out int dataSize);
                if (err != 0)
                {
                    return err;
                }

                Span<byte> data = stackalloc byte[Math.Min(dataSize, 64)];
                if (dataSize > 64)
                {
                    data = new byte[dataSize];
                }

                if (dataSize != 0 && UserMemory.CopyFromUser(data, arg + VfioIrqSet.MinSz) != 0)
                {
                    return Errno.EFAULT.Negative();
                }

                return Overhauled ? SetIrqsOverhauled(hdr, data) : SetIrqs61(hdr, data);
            }

            case VfioIoctl.DeviceReset:
                return Migrates ? Reset() : 0;
            default:
                return ErrorReason.Fail(Errno.ENOTTY, $"{VfioIoctl.Name(cmd)}: not an mtty ioctl");
        }
    }

    private int SetIrqsOverhauled(in VfioIrqSet hdr, ReadOnlySpan<byte> data)
    {
        VfioIrqSetFlags flags = hdr.Flags;
        VfioIrqSetFlags action = flags & VfioIrqSetFlags.ActionTypeMask;
        _opsLock.Lock();
        try
        {
            switch ((int)hdr.Index)
            {
                case VfioPciIrq.Intx:
                case VfioPciIrq.Msi:
                    bool intx = hdr.Index == VfioPciIrq.Intx;
                    if (action is VfioIrqSetFlags.ActionMask or VfioIrqSetFlags.ActionUnmask)
                    {
                        if (!intx)
                        {
                            return ErrorReason.Fail(Errno.ENOTTY, $"{SetIrqs}: MSI cannot be masked");
                        }

                        if (_irqIndex != VfioPciIrq.Intx || hdr.Start != 0 || hdr.Count != 1)
                        {
                            return ErrorReason.Fail(Errno.EINVAL, $"{SetIrqs}: INTx {(action == VfioIrqSetFlags.ActionMask ? "MASK" : "UNMASK")} needs INTx active and start 0, count 1");
                        }

                        bool to = action == VfioIrqSetFlags.ActionMask;
                        if ((flags & VfioIrqSetFlags.DataNone) != 0 || ((flags & VfioIrqSetFlags.DataBool) != 0 && data[0] != 0))
                        {
                            _intxMask = to;
                        }
                        else if ((flags & VfioIrqSetFlags.DataEventfd) != 0)
                        {
                            return ErrorReason.Fail(Errno.ENOTTY, $"{SetIrqs}: mtty has no INTx mask/unmask eventfd");
                        }

                        return 0;
                    }

                    // TRIGGER
                    bool isThis = _irqIndex == (int)hdr.Index;
                    bool noIrq = _irqIndex != VfioPciIrq.Intx && _irqIndex != VfioPciIrq.Msi;
                    if (isThis && hdr.Count == 0 && (flags & VfioIrqSetFlags.DataNone) != 0)
                    {
                        DisableLocked(intx);
                        return 0;
                    }

                    if (!(isThis || noIrq) || hdr.Start != 0 || hdr.Count != 1)
                    {
                        return ErrorReason.Fail(Errno.EINVAL, $"{SetIrqs}: {(intx ? "INTx" : "MSI")} trigger needs start 0, count 1 and no other index active (active: {_irqIndex})");
                    }

                    if ((flags & VfioIrqSetFlags.DataEventfd) != 0)
                    {
                        int fd = BitConverter.ToInt32(data);
                        DisableLocked(intx);
                        if (fd < 0)
                        {
                            return 0;
                        }

                        int err = EventFdContext.Fdget(fd, SetIrqs, out EventFdContext? ctx);
                        if (err != 0)
                        {
                            return err;
                        }

                        if (intx)
                        {
                            _intxEvtfd = ctx;
                        }
                        else
                        {
                            _msiEvtfd = ctx;
                        }

                        _irqIndex = (int)hdr.Index;
                        return 0;
                    }

                    if (!isThis)
                    {
                        return ErrorReason.Fail(Errno.EINVAL, $"{SetIrqs}: {(intx ? "INTx" : "MSI")} is not set up");
                    }

                    if ((flags & VfioIrqSetFlags.DataNone) != 0 || data[0] != 0)
                    {
                        TriggerInterruptLocked();
                    }

                    return 0;
                default:
                    return ErrorReason.Fail(Errno.ENOTTY, $"{SetIrqs}: mtty has no IRQ index {hdr.Index}");
            }
        }
        finally
        {
            _opsLock.Unlock();
        }
    }

    private void DisableLocked(bool intx)
    {
        _opsLock.AssertHeld();
        if (intx && _intxEvtfd is not null)
        {
            _intxEvtfd.Put();
            _intxEvtfd = null;
            _intxMask = false;
            _irqIndex = -1;
        }
        else if (!intx && _msiEvtfd is not null)
        {
            _msiEvtfd.Put();
            _msiEvtfd = null;
            _irqIndex = -1;
        }
    }

    /// <summary>The v6.1 sample: mask/unmask accepted and ignored, MSI-X/ERR/REQ accepted, eventfds never put on replacement.</summary>
    private int SetIrqs61(in VfioIrqSet hdr, ReadOnlySpan<byte> data)
    {
        VfioIrqSetFlags flags = hdr.Flags;
        if ((flags & VfioIrqSetFlags.ActionTypeMask) != VfioIrqSetFlags.ActionTrigger || hdr.Index > VfioPciIrq.Msi)
        {
            return 0;
        }

        _opsLock.Lock();
        try
        {
            bool intx = hdr.Index == VfioPciIrq.Intx;
            if ((flags & VfioIrqSetFlags.DataNone) != 0)
            {
                // The reference goes but the pointer stays: a later interrupt signals a
                // context the sample no longer holds (alive only while user space keeps it).
                if (intx)
                {
                    if (_intxEvtfd is not null && !_intxStale)
                    {
                        _intxEvtfd.Put();
                        _intxStale = true;
                    }
                }
                else
                {
                    if (_msiEvtfd is not null && !_msiStale)
                    {
                        _msiEvtfd.Put();
                        _msiStale = true;
                    }

                    _irqIndex = VfioPciIrq.Intx;
                }

                return 0;
            }

            if ((flags & VfioIrqSetFlags.DataEventfd) == 0)
            {
                return 0;
            }

            int fd = BitConverter.ToInt32(data);
            if (fd <= 0 || (!intx && _msiEvtfd is not null))
            {
                return 0;
            }

            int err = EventFdContext.Fdget(fd, SetIrqs, out EventFdContext? ctx);
            if (err != 0)
            {
                return err;
            }

            // The replaced context is not put (the v6.1 sample leaks it; the simulator keeps
            // the leaked references on _leaked until the device is released).
            if (intx)
            {
                if (_intxEvtfd is not null && !_intxStale)
                {
                    _leaked.Add(_intxEvtfd);
                }

                _intxEvtfd = ctx;
                _intxStale = false;
            }
            else
            {
                _msiEvtfd = ctx;
                _msiStale = false;
            }

            _irqIndex = (int)hdr.Index;
            return 0;
        }
        finally
        {
            _opsLock.Unlock();
        }
    }

    /// <summary>mtty_close(): the overhauled sample drops its migration files and eventfds; v6.1 had no close_device.</summary>
    public void Close()
    {
        if (!Overhauled)
        {
            return;
        }

        DisableFiles();
        _opsLock.Lock();
        DisableLocked(intx: true);
        DisableLocked(intx: false);
        _opsLock.Unlock();
    }
}
