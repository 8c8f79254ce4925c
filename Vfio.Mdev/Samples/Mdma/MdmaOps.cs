// The vfio_device_ops of the mdma sample (no kernel counterpart; the shape of mtty's and
// vfio-ccw's ops): GET_INFO, GET_REGION_INFO, GET_IRQ_INFO, SET_IRQS and RESET as a small
// PCI function (config space, BAR0 of registers, one MSI vector), read/write of the regions
// at vfio-pci's offsets (index << 40), dma_unmap and close_device.
//
// Lock rules: none of its own; every register access takes the device's state lock
// (MdmaDevice). SET_IRQS takes the eventfd reference before it swaps the trigger in.

using System.Buffers.Binary;
using Vfio.Core;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Fs;

namespace Vfio.Mdev.Samples.Mdma;

/// <summary>mdma's vfio_device_ops.</summary>
internal sealed class MdmaOps : VfioDeviceOps
{
    private const string SetIrqsName = "VFIO_DEVICE_SET_IRQS";
    private readonly bool _withDmaUnmap;

    public MdmaOps(MdmaOptions options) => _withDmaUnmap = !options.WithoutDmaUnmapOp;

    public override string Name => "mdma";

    /// <summary>Without dma_unmap when the options say so (the driver that cannot pin).</summary>
    public override VfioOps Provides => _withDmaUnmap ? base.Provides : base.Provides & ~VfioOps.DmaUnmap;

    public override void CloseDevice(VfioDevice device) => ((MdmaDevice)device).Closed();

    public override void DmaUnmap(VfioDevice device, ulong iova, ulong length) => ((MdmaDevice)device).DmaUnmapped(iova, length);

    public override long Ioctl(VfioDevice device, uint cmd, ulong arg)
    {
        var m = (MdmaDevice)device;
        return cmd switch
        {
            VfioIoctl.DeviceGetInfo => GetInfo(arg),
            VfioIoctl.DeviceGetRegionInfo => GetRegionInfo(arg),
            VfioIoctl.DeviceGetIrqInfo => GetIrqInfo(arg),
            VfioIoctl.DeviceSetIrqs => SetIrqs(m, arg),
            VfioIoctl.DeviceReset => Reset(m),
            _ => ErrorReason.Fail(Errno.ENOTTY, $"{VfioIoctl.Name(cmd)}: not an mdma ioctl"),
        };
    }

    public override long Read(VfioDevice device, ulong buf, long count, ref long pos)
    {
        Span<byte> data = stackalloc byte[8];
        int err = Access((MdmaDevice)device, pos, count, write: false, data);
        if (err != 0)
        {
            return err;
        }

        if (UserMemory.CopyToUser(buf, data[..(int)count]) != 0)
        {
            return ErrorReason.Fail(Errno.EFAULT, $"mdma read: cannot write {count} bytes to 0x{buf:x}");
        }

        pos += count;
        return count;
    }

    public override long Write(VfioDevice device, ulong buf, long count, ref long pos)
    {
        Span<byte> data = stackalloc byte[8];
        if (count is > 0 and <= 8 && UserMemory.CopyFromUser(data[..(int)count], buf) != 0)
        {
            return ErrorReason.Fail(Errno.EFAULT, $"mdma write: cannot read {count} bytes at 0x{buf:x}");
        }

        int err = Access((MdmaDevice)device, pos, count, write: true, data);
        if (err != 0)
        {
            return err;
        }

        pos += count;
        return count;
    }

    /// <summary>
    /// One access at file position <paramref name="pos"/>: config space takes 1, 2 or 4 bytes,
    /// BAR0 4 or 8 naturally aligned; anything else (other regions, past the end) is EINVAL.
    /// </summary>
    private static int Access(MdmaDevice m, long pos, long count, bool write, Span<byte> data)
    {
        int index = VfioPciIndex.OffsetToIndex(pos);
        long off = pos & VfioPciIndex.OffsetMask;
        string op = write ? "write" : "read";
        switch (index)
        {
            case VfioPciIndex.Config:
                if (count is not (1 or 2 or 4) || (off & (count - 1)) != 0 || off + count > 256)
                {
                    return ErrorReason.Fail(Errno.EINVAL, $"mdma {op}: config access of {count} bytes at 0x{off:x}");
                }

                if (write)
                {
                    m.ConfigWrite((int)off, data[..(int)count]);
                }
                else
                {
                    m.ConfigRead((int)off, data[..(int)count]);
                }

                return 0;
            case VfioPciIndex.Bar0:
                if (count is not (4 or 8) || (off & (count - 1)) != 0 || off + count > MdmaRegs.Bar0Size
                    || (count == 8 && off is not (MdmaRegs.Src or MdmaRegs.Dst)))
                {
                    return ErrorReason.Fail(Errno.EINVAL, $"mdma {op}: BAR0 access of {count} bytes at 0x{off:x} (4 bytes aligned below 0x{MdmaRegs.Bar0Size:x}, or 8 at the 64-bit SRC and DST registers)");
                }

                if (write)
                {
                    ulong v = count == 8 ? BinaryPrimitives.ReadUInt64LittleEndian(data) : BinaryPrimitives.ReadUInt32LittleEndian(data);
                    m.BarWrite((int)off, v, (int)count);
                }
                else
                {
                    // SRC and DST read whole (one lock hold); every other register is 32 bits.
                    ulong v = m.BarRead((int)off);
                    if (count == 8)
                    {
                        BinaryPrimitives.WriteUInt64LittleEndian(data, v);
                    }
                    else
                    {
                        BinaryPrimitives.WriteUInt32LittleEndian(data, (uint)v);
                    }
                }

                return 0;
            default:
                return ErrorReason.Fail(Errno.EINVAL, $"mdma {op}: region {index} has no data");
        }
    }

    /// <summary>GET_INFO: a PCI function with reset, 9 regions, 5 IRQ indexes; minsz copied back.</summary>
    private static long GetInfo(ulong arg)
    {
        const string name = "VFIO_DEVICE_GET_INFO";
        int err = VfioArg.CopyIn(arg, VfioDeviceInfo.MinSz, out VfioDeviceInfo info, name);
        if (err != 0)
        {
            return err;
        }

        info.Flags = VfioDeviceFlags.Pci | VfioDeviceFlags.Reset;
        info.NumRegions = VfioPciIndex.NumRegions;
        info.NumIrqs = VfioPciIndex.NumIrqs;
        return VfioArg.CopyOut(arg, info, VfioDeviceInfo.MinSz) != 0 ? ErrorReason.Fail(Errno.EFAULT, $"{name}: cannot write the answer to 0x{arg:x}") : 0;
    }

    /// <summary>GET_REGION_INFO: config (256 bytes) and BAR0 read/write, no mmap; the other PCI indexes size 0; beyond them EINVAL.</summary>
    private static long GetRegionInfo(ulong arg)
    {
        const string name = "VFIO_DEVICE_GET_REGION_INFO";
        int err = VfioArg.CopyIn(arg, VfioRegionInfo.MinSz, out VfioRegionInfo info, name);
        if (err != 0)
        {
            return err;
        }

        if (info.Index >= VfioPciIndex.NumRegions)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{name}: index {info.Index} is not below the {VfioPciIndex.NumRegions} regions of mdma");
        }

        info.Offset = (ulong)VfioPciIndex.IndexToOffset((int)info.Index);
        (info.Size, info.Flags) = (int)info.Index switch
        {
            VfioPciIndex.Config => (256UL, VfioRegionFlags.Read | VfioRegionFlags.Write),
            VfioPciIndex.Bar0 => ((ulong)MdmaRegs.Bar0Size, VfioRegionFlags.Read | VfioRegionFlags.Write),
            _ => (0UL, VfioRegionFlags.None),
        };
        info.CapOffset = 0;
        return VfioArg.CopyOut(arg, info, VfioRegionInfo.MinSz) != 0 ? ErrorReason.Fail(Errno.EFAULT, $"{name}: cannot write the answer to 0x{arg:x}") : 0;
    }

    private static int IrqCount(uint index) => index == VfioPciIndex.IrqMsi ? 1 : 0;

    /// <summary>GET_IRQ_INFO: MSI has one vector through an eventfd; INTx, MSI-X, ERR and REQ have none.</summary>
    private static long GetIrqInfo(ulong arg)
    {
        const string name = "VFIO_DEVICE_GET_IRQ_INFO";
        int err = VfioArg.CopyIn(arg, VfioIrqInfo.MinSz, out VfioIrqInfo info, name);
        if (err != 0)
        {
            return err;
        }

        if (info.Index >= VfioPciIndex.NumIrqs)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{name}: index {info.Index} is not below the {VfioPciIndex.NumIrqs} IRQ indexes");
        }

        info.Count = (uint)IrqCount(info.Index);
        info.Flags = info.Count == 0 ? VfioIrqInfoFlags.None : VfioIrqInfoFlags.Eventfd | VfioIrqInfoFlags.NoResize;
        return VfioArg.CopyOut(arg, info, VfioIrqInfo.MinSz) != 0 ? ErrorReason.Fail(Errno.EFAULT, $"{name}: cannot write the answer to 0x{arg:x}") : 0;
    }

    /// <summary>
    /// SET_IRQS: the shared header checks against the index's count, then MSI TRIGGER only:
    /// an eventfd sets (fd -1 clears) the trigger, DATA_NONE with count 0 clears it, DATA_NONE
    /// or a true BOOL with count 1 fires it. MASK and UNMASK are ENOTTY.
    /// </summary>
    private static long SetIrqs(MdmaDevice m, ulong arg)
    {
        VfioIrqSet hdr = default;
        int err = VfioArg.CopyInPrefix(arg, VfioIrqSet.MinSz, ref hdr);
        if (err != 0)
        {
            return ErrorReason.Fail(Errno.EFAULT, $"{SetIrqsName}: cannot read the header at 0x{arg:x}");
        }

        err = VfioIrqSetValidation.ValidateAndPrepare(hdr, hdr.Index < VfioPciIndex.NumIrqs ? IrqCount(hdr.Index) : 0, VfioPciIndex.NumIrqs, out int dataSize);
        if (err != 0)
        {
            return err;
        }

        if ((hdr.Flags & VfioIrqSetFlags.ActionTrigger) == 0)
        {
            return ErrorReason.Fail(Errno.ENOTTY, $"{SetIrqsName}: mdma's MSI cannot be masked or unmasked");
        }

        Span<byte> payload = stackalloc byte[4];
        if (dataSize != 0 && UserMemory.CopyFromUser(payload[..dataSize], arg + VfioIrqSet.MinSz) != 0)
        {
            return ErrorReason.Fail(Errno.EFAULT, $"{SetIrqsName}: cannot read {dataSize} bytes of data");
        }

        switch (hdr.Flags & VfioIrqSetFlags.DataTypeMask)
        {
            case VfioIrqSetFlags.DataEventfd:
                int fd = BinaryPrimitives.ReadInt32LittleEndian(payload);
                if (fd < 0)
                {
                    m.SetMsiTrigger(null);
                    return 0;
                }

                err = EventFdContext.Fdget(fd, SetIrqsName, out EventFdContext? ctx);
                if (err != 0)
                {
                    return err;
                }

                m.SetMsiTrigger(ctx);
                return 0;
            case VfioIrqSetFlags.DataNone when hdr.Count == 0:
                m.SetMsiTrigger(null);
                return 0;
            case VfioIrqSetFlags.DataBool when payload[0] == 0:
                return 0;
            default:
                m.FireMsi();
                return 0;
        }
    }

    private static long Reset(MdmaDevice m)
    {
        m.ResetRegisters();
        return 0;
    }
}
