// Models the capability write handlers of drivers/vfio/pci/vfio_pci_config.c (v6.12): the
// PM capability's power-state request (vfio_pm_config_write with
// vfio_lock_and_set_power_state), VPD's address/data handshake served by the PCI core's VPD
// access (vfio_vpd_config_write), PCI Express Initiate FLR and Max_Read_Request_Size
// (vfio_exp_config_write), and Advanced Features' Initiate FLR (vfio_af_config_write).
//
// Lock rule: vconfig bytes change under the vconfig lock; resets and power changes take
// memory_lock for write (zapping the BAR mappings first) with the vconfig lock dropped.

using System.Buffers.Binary;
using Vfio.Platform.Pci;

namespace Vfio.Pci;

public sealed partial class VfioPciCoreDevice
{
    /// <summary>vfio_pm_config_write(): a piece starting at PMCSR asks for the power state in its low two bits.</summary>
    private void PmConfigWritePiece(PermBits perm, int pos, int count, int offset, uint val)
    {
        DefaultConfigWrite(perm, pos, count, offset, val);
        if (offset == PciRegs.PmCtrl)
        {
            PmConfigWrite((int)(val & PciRegs.PmCtrlStateMask));
        }
    }

    /// <summary>
    /// vfio_lock_and_set_power_state(): entering D3hot zaps the BAR mappings first (decode
    /// stops in D3hot). A function without No_Soft_Reset (needs_pm_restore) has its state
    /// saved on the way into D3hot and restored on the way back to D0, which reset it. D1
    /// and D2 are not supported by these functions: pci_set_power_state refuses them.
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
            else if (state == 3 && Pdev.PowerState != 3 && Pdev.NumVfs == 0) // a PF with VFs stays in D0 (vfio_pci_set_power_state: -EBUSY, the write dropped)
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

    /// <summary>
    /// vfio_vpd_config_write(): address and data are virtual. A piece that reaches the
    /// address's upper byte (where the F flag is) runs the transfer through the PCI core —
    /// F set: pci_write_vpd of the virtual data to the address; F clear: pci_read_vpd into the
    /// virtual data — and then flips F to say it is done. A failed transfer leaves F as the
    /// user wrote it (the user's driver times out).
    /// </summary>
    private void VpdConfigWrite(PermBits perm, int pos, int count, int offset, uint val)
    {
        DefaultConfigWrite(perm, pos, count, offset, val);
        if (offset > PciCapRegs.VpdAddr + 1 || offset + count <= PciCapRegs.VpdAddr + 1)
        {
            return;
        }

        int cap = pos - offset;
        ushort addr = (ushort)VconfigRead(cap + PciCapRegs.VpdAddr, 2);
        Span<byte> data = stackalloc byte[4];
        if ((addr & PciCapRegs.VpdAddrF) != 0)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(data, VconfigRead(cap + PciCapRegs.VpdData, 4));
            if (Pdev.WriteVpd(addr & ~PciCapRegs.VpdAddrF, data) != 4)
            {
                return;
            }
        }
        else
        {
            data.Clear();
            if (Pdev.ReadVpd(addr, data) < 0)
            {
                return;
            }

            VconfigWrite(cap + PciCapRegs.VpdData, 4, BinaryPrimitives.ReadUInt32LittleEndian(data));
        }

        VconfigWrite(cap + PciCapRegs.VpdAddr, 2, (uint)(addr ^ PciCapRegs.VpdAddrF));
    }

    /// <summary>
    /// vfio_exp_config_write(): Initiate FLR is virtual and always reads 0; setting it resets
    /// the function (pci_try_reset_function, whatever method that picks) when Device
    /// Capabilities advertises FLR. A changed Max_Read_Request_Size goes to the hardware, but
    /// never below the function's Max_Payload_Size (pcie_set_readrq).
    /// </summary>
    private void ExpConfigWrite(PermBits perm, int pos, int count, int offset, uint val)
    {
        int cap = pos - offset;
        int ctrlAt = cap + PciRegs.ExpDevCtl;
        uint readrq = VconfigRead(ctrlAt, 2) & PciCapRegs.ExpDevCtlReadrq;
        DefaultConfigWrite(perm, pos, count, offset, val);

        bool flr = false;
        uint ctrl;
        _vconfigLock.Lock();
        try
        {
            ctrl = VconfigReadLocked(ctrlAt, 2);
            if ((ctrl & PciRegs.ExpDevCtlBcrFlr) != 0)
            {
                ctrl &= ~(uint)PciRegs.ExpDevCtlBcrFlr;
                VconfigWriteLocked(ctrlAt, 2, ctrl);
                flr = true;
            }
        }
        finally
        {
            _vconfigLock.Unlock();
        }

        if (flr && (Pdev.ReadConfig(cap + PciRegs.ExpDevCap, 4) & PciRegs.ExpDevCapFlr) != 0)
        {
            TryResetFunctionZapped();
        }

        if (readrq != (ctrl & PciCapRegs.ExpDevCtlReadrq))
        {
            int want = 128 << (int)((ctrl & PciCapRegs.ExpDevCtlReadrq) >> 12);
            uint hw = Pdev.ReadConfig(ctrlAt, 2);
            int mps = 128 << (int)((hw & PciCapRegs.ExpDevCtlPayload) >> 5);
            want = Math.Max(want, mps);
            if (want <= 4096)
            {
                uint field = (uint)(System.Numerics.BitOperations.Log2((uint)want) - 7) << 12;
                Pdev.WriteConfig(ctrlAt, (hw & ~(uint)PciCapRegs.ExpDevCtlReadrq) | field, 2);
            }
        }
    }

    /// <summary>
    /// vfio_af_config_write(): Initiate FLR is virtual and always reads 0; setting it resets
    /// the function when the capability advertises both FLR and Transactions Pending.
    /// </summary>
    private void AfConfigWrite(PermBits perm, int pos, int count, int offset, uint val)
    {
        int cap = pos - offset;
        DefaultConfigWrite(perm, pos, count, offset, val);
        bool flr = false;
        _vconfigLock.Lock();
        try
        {
            uint ctrl = VconfigReadLocked(cap + PciCapRegs.AfCtrl, 1);
            if ((ctrl & PciCapRegs.AfCtrlFlr) != 0)
            {
                VconfigWriteLocked(cap + PciCapRegs.AfCtrl, 1, ctrl & ~(uint)PciCapRegs.AfCtrlFlr);
                flr = true;
            }
        }
        finally
        {
            _vconfigLock.Unlock();
        }

        uint afcap = Pdev.ReadConfig(cap + PciCapRegs.AfCap, 1);
        if (flr && (afcap & PciCapRegs.AfCapFlr) != 0 && (afcap & PciCapRegs.AfCapTp) != 0)
        {
            TryResetFunctionZapped();
        }
    }

    /// <summary>The FLR handlers' reset: BAR mappings zapped, memory_lock held for write around pci_try_reset_function.</summary>
    private void TryResetFunctionZapped()
    {
        ZapAndDownWriteMemoryLock();
        try
        {
            _ = Pdev.TryResetFunction();
        }
        finally
        {
            MemoryLock.UpWrite();
        }
    }
}
