// Models the basic part of drivers/vfio/pci/vfio_pci_config.c (v6.12): the config region
// of the device fd, accessed in naturally aligned 1/2/4-byte pieces, with a virtual copy
// of the type-0 header (vconfig) built at open.
//
// What is virtual in this first vfio-pci:
//   * BAR0–5 and the ROM BAR: fully virtual and writable; reads return what the user
//     wrote masked by the BAR's size with the type bits (stored & ~(size-1) | flags); BARs
//     the host did not assign read 0; writes never reach the hardware.
//   * COMMAND: INTX_DISABLE is virtual; every other bit is written through to hardware
//     (memory_lock held for write when MEM changes) and MEM/IO are mirrored into vconfig,
//     which is what BAR accesses test (-EIO when off).
//   * INTERRUPT_LINE virtual and writable; INTERRUPT_PIN virtual, read-only (0 with nointx).
//   * Cache line size, latency timer and BIST are written through.
//   * The PM capability's power-state field: D3hot (zapping the BAR mappings first, as
//     decode stops) and D0 go to the hardware; D1/D2 are not supported and ignored.
// Everything else reads the hardware. Writes to the other header registers and to the
// capabilities (0x40 and up) are dropped, as the kernel drops writes to read-only bits —
// the per-capability permission tables (PM, MSI, PCIe FLR, AER, …) come later.
//
// Lock rule: _vconfigLock protects _vconfig; a COMMAND write takes memory_lock (write)
// first, then the vconfig lock.

using System.Buffers.Binary;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Fs;
using Vfio.Platform.Pci;

namespace Vfio.Pci;

public sealed partial class VfioPciCoreDevice
{
    private const int HeaderSize = 0x40;

    // Protects _vconfig (the virtual header; null while the device is closed).
    private KMutex _vconfigLock = null!;
    private byte[]? _vconfig;

    // vdev->pm_save: the state saved on entering D3hot (memory_lock held for write).
    private PciSavedState? _pmSave;

    /// <summary>vfio_config_init(): the virtual header starts as a copy of the hardware's.</summary>
    private void ConfigInit()
    {
        byte[] v = new byte[HeaderSize];
        for (int off = 0; off < HeaderSize; off += 4)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(v.AsSpan(off), Pdev.ReadConfig(off, 4));
        }

        // SR-IOV (sriov branch): a VF's vendor and device read 0xffff in hardware; vfio shows the PCI core's ids.
        if (Pdev.IsVirtfn)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(v.AsSpan(PciRegs.VendorId), (ushort)Pdev.Identity.Vendor);
            BinaryPrimitives.WriteUInt16LittleEndian(v.AsSpan(PciRegs.DeviceId), (ushort)Pdev.Identity.Device);
        }

        if (NoIntx)
        {
            v[PciRegs.InterruptPin] = 0;
            v[PciRegs.Command + 1] |= (byte)(PciRegs.CommandIntxDisable >> 8);
        }

        _vconfigLock.Lock();
        _vconfig = v;
        _vconfigLock.Unlock();
        MsiConfigInit();
    }

    /// <summary>vfio_config_free().</summary>
    private void ConfigFree()
    {
        _vconfigLock.Lock();
        _vconfig = null;
        _vmsi = null;
        _vconfigLock.Unlock();
    }

    /// <summary>The virtual COMMAND register (0 when the device is closed).</summary>
    private ushort VirtualCommand()
    {
        byte[]? v = Volatile.Read(ref _vconfig);
        return v is null ? (ushort)0 : BinaryPrimitives.ReadUInt16LittleEndian(v.AsSpan(PciRegs.Command));
    }

    /// <summary>
    /// vfio_pci_config_rw(): the whole access must lie in [0, cfg_size) (else -EFAULT); it
    /// is done in naturally aligned pieces of at most 4 bytes.
    /// </summary>
    private long ConfigRw(ulong buf, long count, ref long ppos, bool write)
    {
        long pos = ppos & VfioPciIndex.OffsetMask;
        long done = 0;
        Span<byte> b = stackalloc byte[4];
        while (count > 0)
        {
            if (pos < 0 || pos >= Pdev.ConfigSize || pos + count > Pdev.ConfigSize)
            {
                return ErrorReason.Fail(Errno.EFAULT, $"{(write ? "write" : "read")}: config bytes [0x{pos:x}, 0x{pos + count:x}) are outside {Pname}'s {Pdev.ConfigSize}-byte config space");
            }

            int size = count >= 4 && pos % 4 == 0 ? 4 : count >= 2 && pos % 2 == 0 ? 2 : 1;
            Span<byte> piece = b[..size];
            if (write)
            {
                if (UserMemory.CopyFromUser(piece, buf) != 0)
                {
                    return ErrorReason.Fail(Errno.EFAULT, $"write: cannot copy from 0x{buf:x}");
                }

                ConfigWrite((int)pos, size, ReadLe(piece));
            }
            else
            {
                WriteLe(piece, ConfigRead((int)pos, size));
                if (UserMemory.CopyToUser(buf, piece) != 0)
                {
                    return ErrorReason.Fail(Errno.EFAULT, $"read: cannot copy to 0x{buf:x}");
                }
            }

            count -= size;
            done += size;
            pos += size;
            buf += (ulong)size;
        }

        ppos += done;
        return done;
    }

    /// <summary>A naturally aligned read of <paramref name="size"/> bytes: the hardware with the virtual bytes laid over it.</summary>
    private uint ConfigRead(int off, int size)
    {
        int dw = off & ~3;
        uint value = Pdev.ReadConfig(dw, 4);
        if (dw < HeaderSize)
        {
            _vconfigLock.Lock();
            try
            {
                value = VirtualDwordLocked(dw, value);
            }
            finally
            {
                _vconfigLock.Unlock();
            }
        }
        else
        {
            value = MsiVirtualDword(dw, value);
        }

        int shift = 8 * (off & 3);
        return size == 4 ? value : (value >> shift) & ((1u << (8 * size)) - 1);
    }

    /// <summary>The header dword at <paramref name="dw"/> as the user sees it, from the hardware's <paramref name="hw"/>.</summary>
    private uint VirtualDwordLocked(int dw, uint hw)
    {
        _vconfigLock.AssertHeld();
        if (_vconfig is not { } v)
        {
            return hw;
        }

        uint stored = BinaryPrimitives.ReadUInt32LittleEndian(v.AsSpan(dw));
        switch (dw)
        {
            case PciRegs.Command:
                // SR-IOV (sriov branch): no_command_memory — a VF's MEM bit is the one in vconfig.
                return (hw & ~(uint)PciRegs.CommandIntxDisable) | (stored & PciRegs.CommandIntxDisable)
                    | (Pdev.NoCommandMemory ? stored & PciRegs.CommandMemory : 0);
            case PciRegs.VendorId when Pdev.IsVirtfn:
                return stored; // SR-IOV (sriov branch): vendor and device synthesised for a VF
            case >= PciRegs.BaseAddress0 and < PciRegs.BaseAddress0 + 24:
                return VirtualBar((dw - PciRegs.BaseAddress0) / 4, stored);
            case PciRegs.RomAddress:
                return Pdev.ResourceStart(PciDevice.RomBarIndex) == 0
                    ? 0
                    : stored & (~(uint)(Pdev.ResourceLength(PciDevice.RomBarIndex) - 1) | PciRegs.RomEnable);
            case PciRegs.InterruptLine:
                return (hw & 0xffff0000) | (stored & 0xffff);
            default:
                return hw;
        }
    }

    /// <summary>vfio_bar_fixup() for one BAR register: the stored value masked by the size, with the type bits; 0 where the host assigned nothing.</summary>
    private uint VirtualBar(int i, uint stored)
    {
        if (i > 0 && Pdev.Bars[i - 1] is { Kind: PciBarKind.Memory64 } lower)
        {
            return Pdev.ResourceStart(i - 1) == 0 ? 0 : stored & (uint)(~(ulong)(lower.Size - 1) >> 32);
        }

        if (Pdev.Bars[i] is not { } bar || Pdev.ResourceStart(i) == 0)
        {
            return 0;
        }

        uint typeMask = bar.Kind == PciBarKind.Io ? 0x3u : 0xfu;
        return (stored & (uint)~(bar.Size - 1) & ~typeMask) | bar.FlagBits;
    }

    /// <summary>A naturally aligned write of <paramref name="size"/> bytes at <paramref name="off"/>.</summary>
    private void ConfigWrite(int off, int size, uint value)
    {
        if (off >= HeaderSize)
        {
            // Capabilities: read-only in this vfio-pci (see the file header), except the
            // power state of the PM capability and MSI's virtual flags, address and data
            // (MsiConfig.cs).
            int pmctrl = Pdev.PmCap + PciRegs.PmCtrl;
            if (Pdev.PmCap != 0 && off <= pmctrl && off + size > pmctrl)
            {
                PmConfigWrite((int)(value >> (8 * (pmctrl - off))) & PciRegs.PmCtrlStateMask);
            }

            MsiConfigWrite(off, size, value);
            return;
        }

        int dw = off & ~3;
        int shift = 8 * (off & 3);
        uint mask = (size == 4 ? 0xffffffffu : (1u << (8 * size)) - 1) << shift;
        uint bits = value << shift;
        switch (dw)
        {
            case PciRegs.Command:
                if ((mask & 0xffff) != 0)
                {
                    WriteCommand(mask, bits);
                    EmulateIntxDisable();
                }

                return;
            case >= PciRegs.BaseAddress0 and < PciRegs.BaseAddress0 + 24:
            case PciRegs.RomAddress:
                StoreVirtual(dw, mask, bits);
                return;
            case PciRegs.InterruptLine:
                StoreVirtual(dw, mask & 0xff, bits);
                return;
            case PciRegs.CacheLineSize:
                // Cache line size, latency timer and BIST pass through; the header type is read-only.
                for (int i = 0; i < 4; i++)
                {
                    if (i != 2 && (mask & (0xffu << (8 * i))) != 0)
                    {
                        Pdev.WriteConfig(dw + i, (bits >> (8 * i)) & 0xff, 1);
                    }
                }

                return;
            default:
                return;
        }
    }

    private void StoreVirtual(int dw, uint mask, uint bits)
    {
        _vconfigLock.Lock();
        try
        {
            if (_vconfig is { } v)
            {
                uint old = BinaryPrimitives.ReadUInt32LittleEndian(v.AsSpan(dw));
                BinaryPrimitives.WriteUInt32LittleEndian(v.AsSpan(dw), (old & ~mask) | (bits & mask));
            }
        }
        finally
        {
            _vconfigLock.Unlock();
        }
    }

    /// <summary>
    /// vfio_basic_config_write() for COMMAND: INTX_DISABLE goes to vconfig, the rest to the
    /// hardware (read-modify-write), and MEM/IO are mirrored into vconfig. memory_lock is
    /// held for write around it; a write clearing MEM zaps the BAR mappings first.
    /// </summary>
    private void WriteCommand(uint mask, uint bits)
    {
        mask &= 0xffff;

        // A write that leaves memory decode off first zaps every BAR mapping (CVE-2020-12888).
        if ((mask & PciRegs.CommandMemory) != 0 && (bits & PciRegs.CommandMemory) == 0)
        {
            ZapAndDownWriteMemoryLock();
        }
        else
        {
            MemoryLock.DownWrite();
        }

        try
        {
            _vconfigLock.Lock();
            try
            {
                if (_vconfig is not { } v)
                {
                    return;
                }

                ushort vcmd = BinaryPrimitives.ReadUInt16LittleEndian(v.AsSpan(PciRegs.Command));
                ushort hw = (ushort)Pdev.ReadConfig(PciRegs.Command, 2);
                ushort current = (ushort)((hw & ~PciRegs.CommandIntxDisable) | (vcmd & PciRegs.CommandIntxDisable));
                ushort wanted = (ushort)((current & ~mask) | (bits & mask));
                ushort phys = (ushort)((wanted & ~PciRegs.CommandIntxDisable) | (hw & PciRegs.CommandIntxDisable));
                if (phys != hw)
                {
                    Pdev.WriteConfig(PciRegs.Command, phys, 2);
                }

                const ushort mirrored = PciRegs.CommandMemory | PciRegs.CommandIo;
                vcmd = (ushort)((vcmd & ~(PciRegs.CommandIntxDisable | mirrored)) | (wanted & (PciRegs.CommandIntxDisable | mirrored)));
                BinaryPrimitives.WriteUInt16LittleEndian(v.AsSpan(PciRegs.Command), vcmd);
            }
            finally
            {
                _vconfigLock.Unlock();
            }
        }
        finally
        {
            MemoryLock.UpWrite();
        }
    }

    /// <summary>
    /// vfio_pm_config_write() for the power-state field: vfio_lock_and_set_power_state() —
    /// entering D3hot zaps the BAR mappings first (decode stops in D3hot). A function without
    /// No_Soft_Reset (needs_pm_restore) has its state saved on the way into D3hot and
    /// restored on the way back to D0, which reset it.
    /// </summary>
    private void PmConfigWrite(int state)
    {
        if (state == 3)
        {
            ZapAndDownWriteMemoryLock();
        }
        else
        {
            MemoryLock.DownWrite();
        }

        try
        {
            if (state == 0 && Pdev.PowerState == 3)
            {
                SetPowerStateD0();
            }
            else if (state == 3 && Pdev.PowerState != 3 && Pdev.NumVfs == 0) // SR-IOV (sriov branch): a PF with VFs stays in D0 (-EBUSY, dropped)
            {
                uint csr = Pdev.ReadConfig(Pdev.PmCap + PciRegs.PmCtrl, 2);
                if ((csr & PciRegs.PmCtrlNoSoftReset) == 0)
                {
                    _pmSave = Pdev.StoreSavedState();
                }

                Pdev.WriteConfig(Pdev.PmCap + PciRegs.PmCtrl, (csr & ~(uint)PciRegs.PmCtrlStateMask) | 3u, 2);
            }
        }
        finally
        {
            MemoryLock.UpWrite();
        }
    }

    private static uint ReadLe(ReadOnlySpan<byte> b) => b.Length switch
    {
        4 => BinaryPrimitives.ReadUInt32LittleEndian(b),
        2 => BinaryPrimitives.ReadUInt16LittleEndian(b),
        _ => b[0],
    };

    private static void WriteLe(Span<byte> b, uint v)
    {
        for (int i = 0; i < b.Length; i++)
        {
            b[i] = (byte)(v >> (8 * i));
        }
    }
}
