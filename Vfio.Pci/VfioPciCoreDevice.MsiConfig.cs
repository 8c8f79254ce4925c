// Models the MSI capability's permissions of drivers/vfio/pci/vfio_pci_config.c (v6.12),
// as far as the user's view of MSI needs them: the low byte of Message Control, the message
// address and the message data are virtual — copied from the hardware at open, written by
// the user into the copy, never to the hardware vfio-pci programs through SET_IRQS. Reads of
// Message Control report QMASK from msi_qmax (the vectors SET_IRQS enabled; the capable
// count until then), and a written QSIZE is clamped to it. So after SET_IRQS enabled MSI the
// user still reads the enable bit it wrote (0x80 on edu, as the real 6.1 and 6.12 show), not
// the host's.
//
// Not modelled: writing the virtual enable and QSIZE back to the hardware (the kernel does),
// and the per-vector mask and pending registers (no function here has them).
//
// Lock rule: the vconfig lock protects _vmsi, as it protects _vconfig.

using Vfio.Platform.Pci;

namespace Vfio.Pci;

public sealed partial class VfioPciCoreDevice
{
    // The virtual MSI capability bytes [cap, end) (null while closed or without MSI).
    private byte[]? _vmsi;
    private int _vmsiCap;

    /// <summary>The virtual MSI bytes start as the hardware's; msi_qmax starts at the capable count.</summary>
    private void MsiConfigInit()
    {
        int cap = Pdev.MsiCap;
        if (cap == 0)
        {
            return;
        }

        uint flags = Pdev.ReadConfig(cap + PciRegs.MsiFlags, 2);
        int end = cap + ((flags & PciRegs.MsiFlags64Bit) != 0 ? 14 : 10);
        byte[] v = new byte[end - cap];
        for (int i = 0; i < v.Length; i++)
        {
            v[i] = (byte)Pdev.ReadConfig(cap + i, 1);
        }

        _vconfigLock.Lock();
        _vmsi = v;
        _vmsiCap = cap;
        _msiQmax = (int)((flags & PciRegs.MsiFlagsQmask) >> 1);
        _vconfigLock.Unlock();
    }

    /// <summary>The dword at <paramref name="dw"/> as the user sees it: virtual MSI bytes laid over the hardware's <paramref name="hw"/>.</summary>
    private uint MsiVirtualDword(int dw, uint hw)
    {
        _vconfigLock.Lock();
        try
        {
            if (_vmsi is not { } v || dw + 4 <= _vmsiCap + PciRegs.MsiFlags || dw >= _vmsiCap + v.Length)
            {
                return hw;
            }

            uint value = hw;
            for (int i = 0; i < 4; i++)
            {
                int at = dw + i - _vmsiCap;
                if (at < PciRegs.MsiFlags || at == PciRegs.MsiFlags + 1 || at >= v.Length)
                {
                    continue;
                }

                uint b = v[at];
                if (at == PciRegs.MsiFlags)
                {
                    b = (b & ~(uint)PciRegs.MsiFlagsQmask) | ((uint)_msiQmax << 1);
                }

                value = (value & ~(0xffu << (8 * i))) | (b << (8 * i));
            }

            return value;
        }
        finally
        {
            _vconfigLock.Unlock();
        }
    }

    /// <summary>A user write into the MSI capability: the flags' low byte (QSIZE clamped), address and data go to the virtual copy; the rest is dropped.</summary>
    private void MsiConfigWrite(int off, int size, uint value)
    {
        _vconfigLock.Lock();
        try
        {
            if (_vmsi is not { } v)
            {
                return;
            }

            for (int i = 0; i < size; i++)
            {
                int at = off + i - _vmsiCap;
                byte b = (byte)(value >> (8 * i));
                if (at == PciRegs.MsiFlags)
                {
                    int qsize = Math.Min((b & PciRegs.MsiFlagsQsize) >> 4, _msiQmax);
                    v[at] = (byte)((v[at] & ~(PciRegs.MsiFlagsEnable | PciRegs.MsiFlagsQsize)) | (b & PciRegs.MsiFlagsEnable) | (qsize << 4));
                }
                else if (at >= PciRegs.MsiAddressLo && at < v.Length)
                {
                    v[at] = b;
                }
            }
        }
        finally
        {
            _vconfigLock.Unlock();
        }
    }
}
