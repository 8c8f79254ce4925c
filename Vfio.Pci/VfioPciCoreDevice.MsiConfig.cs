// Models the MSI capability of drivers/vfio/pci/vfio_pci_config.c (v6.12): its length and
// per-device permission table (vfio_msi_cap_len, init_pci_cap_msi_perm) and its handlers.
// The low byte of Message Control, the address and the data are virtual: the user reads
// what it wrote (or what the hardware held at open), never what SET_IRQS programmed. A
// write that reaches Message Control writes the resulting flags back to vconfig and to the
// hardware, with Enable cleared unless MSI is the active index and the Multiple Message
// Enable clamped to msi_qmax (log2 of the vectors SET_IRQS last enabled; 0 before).
//
// The kernel's read handler means to report msi_qmax in QMASK but updates the word at the
// capability's start (the id and next bytes, which the MSI table does not virtualise for
// id) rather than Message Control: the QMASK the user reads stays the one copied at open.
// The simulator does the same.
//
// Lock rule: the vconfig lock protects the virtual bytes; _msiQmax is written under igate.

using Vfio.Core.Uapi;
using Vfio.Platform.Pci;

namespace Vfio.Pci;

public sealed partial class VfioPciCoreDevice
{
    /// <summary>vfio_msi_cap_len(): 10 bytes, +4 for 64-bit addresses, +10 for per-vector masking; the permission table is built on first use.</summary>
    private int MsiCapLen(int pos)
    {
        ushort flags = (ushort)Pdev.ReadConfig(pos + PciRegs.MsiFlags, 2);
        int len = 10;
        if ((flags & PciRegs.MsiFlags64Bit) != 0)
        {
            len += 4;
        }

        if ((flags & PciRegs.MsiFlagsMaskBit) != 0)
        {
            len += 10;
        }

        _msiPerm ??= VfioPciPermTables.MsiPerm(len, flags);
        return len;
    }

    /// <summary>vfio_msi_config_read(): the kernel's msi_qmax update (to the capability's first word, see the file header), then the default read.</summary>
    private uint MsiConfigRead(PermBits perm, int pos, int count, int offset)
    {
        if (offset <= PciRegs.MsiFlags && offset + count >= PciRegs.MsiFlags)
        {
            int start = pos - offset;
            _vconfigLock.Lock();
            try
            {
                uint word = VconfigReadLocked(start, 2);
                VconfigWriteLocked(start, 2, (word & ~(uint)PciRegs.MsiFlagsQmask) | ((uint)Volatile.Read(ref _msiQmax) << 1));
            }
            finally
            {
                _vconfigLock.Unlock();
            }
        }

        return DefaultConfigRead(perm, pos, count, offset);
    }

    /// <summary>
    /// vfio_msi_config_write(): the default write, then — when the piece reaches Message
    /// Control — Enable cleared unless MSI is active, QSIZE clamped to msi_qmax, and the flags
    /// stored in vconfig and written to the hardware.
    /// </summary>
    private void MsiConfigWrite(PermBits perm, int pos, int count, int offset, uint val)
    {
        DefaultConfigWrite(perm, pos, count, offset, val);
        if (offset > PciRegs.MsiFlags || offset + count < PciRegs.MsiFlags)
        {
            return;
        }

        int at = pos - offset + PciRegs.MsiFlags;
        ushort flags;
        _vconfigLock.Lock();
        try
        {
            flags = (ushort)VconfigReadLocked(at, 2);
            if (Volatile.Read(ref _irqType) != VfioPciIndex.IrqMsi)
            {
                flags &= unchecked((ushort)~PciRegs.MsiFlagsEnable);
            }

            int qmax = Volatile.Read(ref _msiQmax);
            if ((flags & PciRegs.MsiFlagsQsize) >> 4 > qmax)
            {
                flags = (ushort)((flags & ~PciRegs.MsiFlagsQsize) | (qmax << 4));
            }

            VconfigWriteLocked(at, 2, flags);
        }
        finally
        {
            _vconfigLock.Unlock();
        }

        Pdev.WriteConfig(at, flags, 2);
    }
}
