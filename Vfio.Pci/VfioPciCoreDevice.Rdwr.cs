// Models drivers/vfio/pci/vfio_pci_rdwr.c and vfio_pci_rw() of vfio_pci_core.c (v6.12):
// read/write on the device fd. The file offset carries the region (index << 40); config
// space goes through the virtual config space (Config.cs); a BAR access is clamped to the
// BAR, split into naturally aligned 8/4/2/1-byte device accesses (8 only with
// VfioPciFeatures.BarRdwrQwordAccess, never for the ROM), refused with -EIO while
// memory decode is (virtually) off, and reads all-ones / drops writes over the MSI-X table;
// an I/O BAR goes to the port space (not gated by memory decode); the ROM reads through a
// temporarily enabled ROM BAR (pci_map_rom, drivers/pci/rom.c) up to the end of its images,
// all-ones past them, and cannot be written; the VGA region is in Vga.cs. Every access runs
// with the function runtime-resumed and counted (-EIO when it cannot be resumed): on a device
// in low power that wakes it for the access, and a wake-up eventfd then ends low power.
//
// Lock rule: each device access holds memory_lock for read. The BAR path allocates nothing.

using System.Buffers.Binary;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Fs;
using Vfio.Platform.Pci;

namespace Vfio.Pci;

public sealed partial class VfioPciCoreDevice
{
    /// <summary>vfio_pci_rw(): the region index checked, the function resumed for the access, then dispatch on the region.</summary>
    internal long Rw(ulong buf, long count, ref long pos, bool write)
    {
        ulong index = (ulong)pos >> VfioPciIndex.OffsetShift;
        if (index >= NumRegions)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{(write ? "write" : "read")}: offset 0x{pos:x} is in region {index}, {Pname} has {NumRegions}");
        }

        int ret = Pdev.Power.ResumeAndGet();
        if (ret != 0)
        {
            Core.Kernel.Log.Info($"{VfioPciDriver.DriverName} {Pname}: runtime resume failed {ret}");
            return ErrorReason.Fail(Errno.EIO, $"{(write ? "write" : "read")}: {Pname} cannot be runtime-resumed ({ErrnoExtensions.FromReturn(ret).Describe()})");
        }

        try
        {
            return RwRegion((int)index, buf, count, ref pos, write);
        }
        finally
        {
            Pdev.Power.Put();
        }
    }

    private long RwRegion(int index, ulong buf, long count, ref long pos, bool write)
    {
        switch (index)
        {
            case VfioPciIndex.Config:
                return ConfigRw(buf, count, ref pos, write);
            case VfioPciIndex.Rom:
                return write
                    ? ErrorReason.Fail(Errno.EINVAL, $"write: the ROM region of {Pname} is read-only")
                    : BarRw(buf, count, ref pos, write: false);
            case VfioPciIndex.Vga:
                return VgaRw(buf, count, ref pos, write);
            default:
                return BarRw(buf, count, ref pos, write);
        }
    }

    /// <summary>
    /// vfio_pci_bar_rw(): a BAR firmware did not assign is -EINVAL, as is a start at or past
    /// the end; the count is clamped to the BAR. I/O BARs go through the port space.
    /// </summary>
    private long BarRw(ulong buf, long count, ref long pos, bool write)
    {
        long off = pos & VfioPciIndex.OffsetMask;
        int bar = VfioPciIndex.OffsetToIndex(pos);
        long start = Pdev.ResourceStart(bar);
        if (start == 0)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{(write ? "write" : "read")}: region {bar} of {Pname} is not an assigned BAR");
        }

        long end = Pdev.ResourceLength(bar);
        if (off >= end)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{(write ? "write" : "read")}: offset 0x{off:x} is past the end of region {bar} of {Pname} (0x{end:x} bytes)");
        }

        count = Math.Min(count, end - off);
        long xStart = 0, xEnd = 0;
        if (bar == PciDevice.RomBarIndex)
        {
            // pci_map_rom(): the ROM decodes only while its enable bit is set; past the
            // image the BAR reads as all-ones. Nothing turns memory decode on here: with it
            // off the header reads all-ones, no image is found and the read is -ENOMEM (as the
            // real 6.1 and 6.12 answer), before the per-access decode check could say -EIO.
            xStart = MapRomImageSize();
            if (xStart == 0)
            {
                return ErrorReason.Fail(Errno.ENOMEM, $"read: {Pname}'s ROM shows no valid image (pci_map_rom failed: no 0xaa55 signature, or memory decode is off)");
            }

            SetRomEnable(true);
            xEnd = end;
        }
        else
        {
            int ret = SetupBarmap(bar, write ? "write" : "read");
            if (ret != 0)
            {
                return ret;
            }
        }

        if (bar == MsixBar)
        {
            xStart = MsixOffset;
            xEnd = MsixOffset + MsixSize;
        }

        // The ROM is read at most 4 bytes at a time (some devices fault on qword ROM reads).
        int maxWidth = bar != PciDevice.RomBarIndex && Core.Kernel.Profile.Has(VfioPciFeatures.BarRdwrQwordAccess) ? 8 : 4;

        long done;
        try
        {
            // I/O BARs are not gated by memory decode (test_mem is for memory resources,
            // which the ROM is).
            bool port = Pdev.Bars[bar]?.Kind == PciBarKind.Io;
            done = DoIoRw(testMem: !port && BlocksMmio, port, start, buf, off, count, xStart, xEnd, write, maxWidth);
        }
        finally
        {
            if (bar == PciDevice.RomBarIndex)
            {
                SetRomEnable(false);
            }
        }

        if (done >= 0)
        {
            pos += done;
        }

        return done;
    }

    /// <summary>
    /// vfio_pci_core_do_io_rw(): naturally aligned accesses of up to <paramref name="maxWidth"/>
    /// (8 or 4) bytes; the excluded range [<paramref name="xStart"/>, <paramref name="xEnd"/>)
    /// reads all-ones and drops writes.
    /// </summary>
    private long DoIoRw(bool testMem, bool port, long io, ulong buf, long off, long count, long xStart, long xEnd, bool write, int maxWidth)
    {
        long done = 0;
        Span<byte> val = stackalloc byte[8];
        while (count > 0)
        {
            long fillable = off < xStart ? Math.Min(count, xStart - off) : off >= xEnd ? count : 0;
            int size = fillable >= 8 && off % 8 == 0 && maxWidth >= 8 ? 8 : fillable >= 4 && off % 4 == 0 ? 4 : fillable >= 2 && off % 2 == 0 ? 2 : fillable > 0 ? 1 : 0;
            long filled;
            if (size > 0)
            {
                Span<byte> v = val[..size];
                int ret = write ? IoWrite(testMem, port, io + off, buf, v) : IoRead(testMem, port, io + off, buf, v);
                if (ret != 0)
                {
                    return ret;
                }

                filled = size;
            }
            else
            {
                filled = Math.Min(count, xEnd - off);
                if (!write)
                {
                    val.Fill(0xff);
                    for (long i = 0; i < filled; i += 8)
                    {
                        int n = (int)Math.Min(8, filled - i);
                        if (UserMemory.CopyToUser(buf + (ulong)i, val[..n]) != 0)
                        {
                            return ErrorReason.Fail(Errno.EFAULT, $"read: cannot copy to 0x{buf + (ulong)i:x}");
                        }
                    }
                }
            }

            count -= filled;
            done += filled;
            off += filled;
            buf += (ulong)filled;
        }

        return done;
    }

    /// <summary>vfio_pci_iowrite{8,16,32,64}: copy from user, then under memory_lock (read) one device write.</summary>
    private int IoWrite(bool testMem, bool port, long addr, ulong buf, Span<byte> v)
    {
        if (UserMemory.CopyFromUser(v, buf) != 0)
        {
            return ErrorReason.Fail(Errno.EFAULT, $"write: cannot copy from 0x{buf:x}");
        }

        if (testMem)
        {
            MemoryLock.DownRead();
        }

        try
        {
            if (testMem && !MemoryEnabled())
            {
                return ErrorReason.Fail(Errno.EIO, $"write: memory decode of {Pname} is disabled in its COMMAND register");
            }

            DeviceWrite(port, addr, v);
            return 0;
        }
        finally
        {
            if (testMem)
            {
                MemoryLock.UpRead();
            }
        }
    }

    /// <summary>vfio_pci_ioread{8,16,32,64}: under memory_lock (read) one device read, then copy to user.</summary>
    private int IoRead(bool testMem, bool port, long addr, ulong buf, Span<byte> v)
    {
        if (testMem)
        {
            MemoryLock.DownRead();
        }

        try
        {
            if (testMem && !MemoryEnabled())
            {
                return ErrorReason.Fail(Errno.EIO, $"read: memory decode of {Pname} is disabled in its COMMAND register");
            }

            DeviceRead(port, addr, v);
        }
        finally
        {
            if (testMem)
            {
                MemoryLock.UpRead();
            }
        }

        return UserMemory.CopyToUser(buf, v) != 0 ? ErrorReason.Fail(Errno.EFAULT, $"read: cannot copy to 0x{buf:x}") : 0;
    }

    /// <summary>One device read: a memory BAR through physical memory, an I/O BAR through the port space.</summary>
    private void DeviceRead(bool port, long addr, Span<byte> v)
    {
        if (port)
        {
            Core.Machine.IoPorts.Read((int)addr, v);
        }
        else
        {
            Core.Machine.Memory.Read(addr, v);
        }
    }

    /// <summary>One device write; see <see cref="DeviceRead"/>.</summary>
    private void DeviceWrite(bool port, long addr, ReadOnlySpan<byte> v)
    {
        if (port)
        {
            Core.Machine.IoPorts.Write((int)addr, v);
        }
        else
        {
            Core.Machine.Memory.Write(addr, v);
        }
    }

    /// <summary>
    /// __vfio_pci_memory_enabled(): not in D3hot, and the virtual COMMAND's memory bit — or
    /// a VF (no_command_memory), whose decode its PF's VF MSE controls.
    /// </summary>
    private bool MemoryEnabled() => Pdev.PowerState < 3 && (Pdev.NoCommandMemory || (VirtualCommand() & PciRegs.CommandMemory) != 0);

    // ---- The expansion ROM (drivers/pci/rom.c as vfio-pci uses it).

    private void SetRomEnable(bool on)
    {
        uint rom = Pdev.ReadConfig(PciRegs.RomAddress, 4);
        uint want = on ? rom | PciRegs.RomEnable : rom & ~PciRegs.RomEnable;
        if (want != rom)
        {
            Pdev.WriteConfig(PciRegs.RomAddress, want, 4);
        }
    }

    /// <summary>
    /// pci_map_rom() + pci_get_rom_size(): with the ROM decoding, walk the images (0xAA55
    /// signature, "PCIR" data structure, length in 512-byte units, last-image flag; a
    /// non-last image must be followed by another signature) and return the bytes they
    /// cover, at most the BAR; 0 when no valid image shows — also when memory decode is off,
    /// since the header then reads all-ones (GET_REGION_INFO turns decode on around it).
    /// </summary>
    private long MapRomImageSize()
    {
        long start = Pdev.ResourceStart(PciDevice.RomBarIndex);
        long size = Pdev.ResourceLength(PciDevice.RomBarIndex);
        if (start == 0 || size == 0)
        {
            return 0;
        }

        SetRomEnable(true);
        try
        {
            Span<byte> b = stackalloc byte[4];
            long image = 0;
            while (true)
            {
                Core.Machine.Memory.Read(start + image, b[..2]);
                ushort sig = BinaryPrimitives.ReadUInt16LittleEndian(b);
                if (sig != 0xaa55)
                {
                    Core.Kernel.Log.Info($"{VfioPciDriver.DriverName} {Pname}: Invalid PCI ROM header signature: expecting 0xaa55, got 0x{sig:x4}");
                    break;
                }

                Core.Machine.Memory.Read(start + image + 24, b[..2]);
                long pds = image + BinaryPrimitives.ReadUInt16LittleEndian(b);
                Core.Machine.Memory.Read(start + pds, b);
                if (BinaryPrimitives.ReadUInt32LittleEndian(b) != 0x52494350)
                {
                    Core.Kernel.Log.Info($"{VfioPciDriver.DriverName} {Pname}: Invalid PCI ROM data signature: expecting 0x52494350, got 0x{BinaryPrimitives.ReadUInt32LittleEndian(b):x8}");
                    break;
                }

                Core.Machine.Memory.Read(start + pds + 21, b[..1]);
                bool last = (b[0] & 0x80) != 0;
                Core.Machine.Memory.Read(start + pds + 16, b[..2]);
                int length = BinaryPrimitives.ReadUInt16LittleEndian(b);
                image += length * 512L;
                if (image >= size || length == 0 || last)
                {
                    break;
                }

                Core.Machine.Memory.Read(start + image, b[..2]);
                if (BinaryPrimitives.ReadUInt16LittleEndian(b) != 0xaa55)
                {
                    Core.Kernel.Log.Info($"{VfioPciDriver.DriverName} {Pname}: No more image in the PCI ROM");
                    break;
                }
            }

            return Math.Min(image, size);
        }
        finally
        {
            SetRomEnable(false);
        }
    }
}
