// Models the shared tables of drivers/vfio/pci/vfio_pci_config.c (v6.12, compared with
// v6.1): the capability length tables (pci_cap_length, pci_ext_cap_length: a fixed length,
// 0xFF for "work it out from the hardware", 0 for "hide it from the user") and the
// per-capability permission tables (struct perm_bits), built once for every device
// (vfio_pci_init_perm_bits). A permission table gives each bit of a capability two flags:
// virt (the user reads and writes vconfig, never the hardware) and write (the user may
// change it); bits with neither read the hardware and drop writes. readfn/writefn name the
// handler that applies them.
//
// Life cycle: the tables are built by the static constructor and never change; only the
// MSI table is per device (it depends on the function's Message Control) and lives in
// VfioPciCoreDevice from open to close.

using System.Buffers.Binary;
using Vfio.Platform.Pci;

namespace Vfio.Pci;

/// <summary>The read handler of a permission table.</summary>
internal enum ConfigReadFn : byte
{
    /// <summary>No readfn: the access reads 0.</summary>
    None,

    /// <summary>vfio_default_config_read: (hardware &amp; ~virt) | (vconfig &amp; virt).</summary>
    Default,

    /// <summary>vfio_direct_config_read: the hardware, with the capability id/next (first dword of an extended one) from vconfig.</summary>
    Direct,

    /// <summary>vfio_raw_config_read: the hardware.</summary>
    Raw,

    /// <summary>vfio_virt_config_read: vconfig.</summary>
    Virt,

    /// <summary>vfio_basic_config_read: BAR sizing, then the default.</summary>
    Basic,

    /// <summary>vfio_msi_config_read.</summary>
    Msi,
}

/// <summary>The write handler of a permission table.</summary>
internal enum ConfigWriteFn : byte
{
    /// <summary>No writefn: the write is dropped (and succeeds).</summary>
    None,

    /// <summary>vfio_default_config_write.</summary>
    Default,

    /// <summary>vfio_raw_config_write: straight to the hardware.</summary>
    Raw,

    /// <summary>vfio_virt_config_write: into vconfig.</summary>
    Virt,

    /// <summary>vfio_basic_config_write: COMMAND, BARs, INTx disable.</summary>
    Basic,

    /// <summary>vfio_pm_config_write: power state changes.</summary>
    Pm,

    /// <summary>vfio_vpd_config_write: the VPD address/data handshake.</summary>
    Vpd,

    /// <summary>vfio_exp_config_write: Initiate FLR and Max_Read_Request_Size.</summary>
    Exp,

    /// <summary>vfio_af_config_write: Advanced Features' Initiate FLR.</summary>
    Af,

    /// <summary>vfio_msi_config_write: Message Control written back.</summary>
    Msi,
}

/// <summary>struct perm_bits: per-bit virt and write flags of one capability, and its handlers.</summary>
internal sealed class PermBits
{
    private static readonly byte[] s_none = [];

    private PermBits(byte[] virt, byte[] write, ConfigReadFn read, ConfigWriteFn writeFn)
    {
        Virt = virt;
        Write = write;
        Read = read;
        WriteFn = writeFn;
    }

    /// <summary>Virtualised bits, little endian, the capability's length rounded up to a dword (empty: none).</summary>
    public byte[] Virt { get; }

    /// <summary>Writable bits, laid out as <see cref="Virt"/>.</summary>
    public byte[] Write { get; }

    public ConfigReadFn Read { get; set; }

    public ConfigWriteFn WriteFn { get; set; }

    /// <summary>A table without bit arrays (the default for capabilities with no table of their own).</summary>
    public static PermBits Handlers(ConfigReadFn read, ConfigWriteFn write = ConfigWriteFn.None) => new(s_none, s_none, read, write);

    /// <summary>alloc_perm_bits(): all readable, nothing writable, nothing virtual, default handlers.</summary>
    public static PermBits Alloc(int size)
    {
        size = (size + 3) & ~3;
        return new PermBits(new byte[size], new byte[size], ConfigReadFn.Default, ConfigWriteFn.Default);
    }

    /// <summary>p_setb().</summary>
    public void SetB(int off, byte virt, byte write)
    {
        Virt[off] = virt;
        Write[off] = write;
    }

    /// <summary>p_setw().</summary>
    public void SetW(int off, ushort virt, ushort write)
    {
        BinaryPrimitives.WriteUInt16LittleEndian(Virt.AsSpan(off), virt);
        BinaryPrimitives.WriteUInt16LittleEndian(Write.AsSpan(off), write);
    }

    /// <summary>p_setd().</summary>
    public void SetD(int off, uint virt, uint write)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(Virt.AsSpan(off), virt);
        BinaryPrimitives.WriteUInt32LittleEndian(Write.AsSpan(off), write);
    }

    /// <summary>The virt bits of <paramref name="count"/> bytes at <paramref name="offset"/> (0 past the table).</summary>
    public uint VirtBits(int offset, int count) => Bits(Virt, offset, count);

    /// <summary>The write bits of <paramref name="count"/> bytes at <paramref name="offset"/> (0 past the table).</summary>
    public uint WriteBits(int offset, int count) => Bits(Write, offset, count);

    private static uint Bits(byte[] table, int offset, int count)
    {
        uint v = 0;
        for (int i = 0; i < count && offset + i < table.Length; i++)
        {
            v |= (uint)table[offset + i] << (8 * i);
        }

        return v;
    }
}

/// <summary>vfio_pci_init_perm_bits(): the length tables and the shared permission tables.</summary>
internal static class VfioPciPermTables
{
    /// <summary>PCI_CAP_ID_BASIC: the fake capability id of the type 0 header.</summary>
    public const byte CapIdBasic = 0;

    /// <summary>PCI_CAP_ID_INVALID: a byte no capability claims (raw access).</summary>
    public const byte CapIdInvalid = 0xff;

    /// <summary>PCI_CAP_ID_INVALID_VIRT: a byte served from vconfig alone.</summary>
    public const byte CapIdInvalidVirt = 0xfe;

    /// <summary>Marks a length the hardware decides (vfio_cap_len / vfio_ext_cap_len).</summary>
    public const int VariableLength = 0xff;

    private const uint AllVirt = 0xffffffff, AllWrite = 0xffffffff;

    /// <summary>pci_cap_length[]: 0 hides the capability.</summary>
    public static readonly byte[] CapLength = BuildCapLength();

    /// <summary>pci_ext_cap_length[] (DVSEC as v6.4 has it: variable; hidden before, see <see cref="VfioPciFeatures.DvsecVisible"/>).</summary>
    public static readonly ushort[] ExtCapLength = BuildExtCapLength();

    /// <summary>cap_perms[]: every id reads direct and cannot be written unless set below.</summary>
    public static readonly PermBits[] CapPerms = new PermBits[PciCapRegs.IdMax + 1];

    /// <summary>ecap_perms[].</summary>
    public static readonly PermBits[] EcapPerms = new PermBits[PciCapRegs.ExtIdMax + 1];

    /// <summary>unassigned_perms: bytes between capabilities are raw (devices hide registers there, be2net).</summary>
    public static readonly PermBits Unassigned = PermBits.Handlers(ConfigReadFn.Raw, ConfigWriteFn.Raw);

    /// <summary>virt_perms: bytes served from vconfig alone.</summary>
    public static readonly PermBits VirtOnly = PermBits.Handlers(ConfigReadFn.Virt, ConfigWriteFn.Virt);

    /// <summary>direct_ro_perms: a hidden unknown extended capability anchoring the list at 0x100.</summary>
    public static readonly PermBits DirectRo = PermBits.Handlers(ConfigReadFn.Direct);

    static VfioPciPermTables()
    {
        for (int i = 0; i < CapPerms.Length; i++)
        {
            CapPerms[i] = PermBits.Handlers(ConfigReadFn.Direct);
        }

        for (int i = 0; i < EcapPerms.Length; i++)
        {
            EcapPerms[i] = PermBits.Handlers(ConfigReadFn.Direct);
        }

        CapPerms[CapIdBasic] = BasicPerm();
        CapPerms[PciCapRegs.IdPm] = PmPerm();
        CapPerms[PciCapRegs.IdVpd] = VpdPerm();
        CapPerms[PciCapRegs.IdPcix] = PcixPerm();
        CapPerms[PciCapRegs.IdVndr].WriteFn = ConfigWriteFn.Raw;
        CapPerms[PciCapRegs.IdExp] = ExpPerm();
        CapPerms[PciCapRegs.IdAf] = AfPerm();

        EcapPerms[PciCapRegs.ExtIdErr] = ErrPerm();
        EcapPerms[PciCapRegs.ExtIdPwr] = PwrPerm();
        EcapPerms[PciCapRegs.ExtIdVndr].WriteFn = ConfigWriteFn.Raw;
        EcapPerms[PciCapRegs.ExtIdDvsec].WriteFn = ConfigWriteFn.Raw;
    }

    private static byte[] BuildCapLength()
    {
        byte[] t = new byte[PciCapRegs.IdMax + 1];
        t[CapIdBasic] = PciCapRegs.StdHeaderSizeof;
        t[PciCapRegs.IdPm] = PciRegs.PmSizeof;
        t[PciCapRegs.IdAgp] = 12;                       // PCI_AGP_SIZEOF
        t[PciCapRegs.IdVpd] = PciCapRegs.VpdSizeof;
        t[PciCapRegs.IdMsi] = VariableLength;           // 10, 14, 20 or 24
        t[PciCapRegs.IdPcix] = VariableLength;          // 8 or 24
        t[PciCapRegs.IdHt] = VariableLength;
        t[PciCapRegs.IdVndr] = VariableLength;
        t[PciCapRegs.IdExp] = VariableLength;           // 20 or 60 (12 or 44 without a link)
        t[PciCapRegs.IdMsix] = PciRegs.MsixCapSizeof;
        t[PciCapRegs.IdSata] = VariableLength;
        t[PciCapRegs.IdAf] = PciCapRegs.AfSizeof;

        // Slot ID, CompactPCI hot swap, Debug, CCRC, SHPC, SSVID, AGP 8x and Secure stay 0: hidden.
        return t;
    }

    private static ushort[] BuildExtCapLength()
    {
        ushort[] t = new ushort[PciCapRegs.ExtIdMax + 1];
        t[PciCapRegs.ExtIdErr] = PciCapRegs.ErrRootCommand;
        t[PciCapRegs.ExtIdVc] = VariableLength;
        t[PciCapRegs.ExtIdDsn] = 12;                    // PCI_EXT_CAP_DSN_SIZEOF
        t[PciCapRegs.ExtIdPwr] = PciCapRegs.PwrSizeof;
        t[PciCapRegs.ExtIdMfvc] = VariableLength;
        t[PciCapRegs.ExtIdVc9] = VariableLength;
        t[PciCapRegs.ExtIdVndr] = VariableLength;
        t[PciCapRegs.ExtIdAcs] = VariableLength;
        t[PciCapRegs.ExtIdAri] = 8;                     // PCI_EXT_CAP_ARI_SIZEOF
        t[PciCapRegs.ExtIdAts] = 8;                     // PCI_EXT_CAP_ATS_SIZEOF
        t[PciCapRegs.ExtIdSriov] = 0x40;                // PCI_EXT_CAP_SRIOV_SIZEOF
        t[PciCapRegs.ExtIdMcast] = 40;                  // PCI_EXT_CAP_MCAST_ENDPOINT_SIZEOF
        t[PciCapRegs.ExtIdPri] = 16;                    // PCI_EXT_CAP_PRI_SIZEOF
        t[PciCapRegs.ExtIdRebar] = VariableLength;
        t[PciCapRegs.ExtIdDpa] = VariableLength;
        t[PciCapRegs.ExtIdTph] = VariableLength;
        t[PciCapRegs.ExtIdLtr] = 8;                     // PCI_EXT_CAP_LTR_SIZEOF
        t[PciCapRegs.ExtIdDvsec] = VariableLength;

        // RCLD, RCILC, RCEC, RCRB, CAC, MR-IOV, AMD, Secondary PCIe, PMUX, PASID and every id
        // the table does not name stay 0: hidden.
        return t;
    }

    /// <summary>init_pci_cap_basic_perm(): the type 0 header.</summary>
    private static PermBits BasicPerm()
    {
        PermBits p = PermBits.Alloc(PciCapRegs.StdHeaderSizeof);
        p.Read = ConfigReadFn.Basic;
        p.WriteFn = ConfigWriteFn.Basic;

        // Virtual for VFs, whose hardware answers 0xffff.
        p.SetW(PciRegs.VendorId, 0xffff, 0);
        p.SetW(PciRegs.DeviceId, 0xffff, 0);

        // INTx disable is vfio's own (it masks INTx with it); everything else goes through.
        p.SetW(PciRegs.Command, PciRegs.CommandIntxDisable, 0xffff);

        // The capability list bit is virtual so a chain of hidden capabilities can vanish.
        p.SetW(PciRegs.Status, PciRegs.StatusCapList, 0);
        p.SetB(PciRegs.CacheLineSize, 0, 0xff);
        p.SetB(PciRegs.LatencyTimer, 0, 0xff);
        p.SetB(PciRegs.Bist, 0, 0xff);

        // The BARs and the ROM BAR are all virtual: the user sizes and moves its own copy.
        for (int bar = PciRegs.BaseAddress0; bar <= PciRegs.BaseAddress0 + 20; bar += 4)
        {
            p.SetD(bar, AllVirt, AllWrite);
        }

        p.SetD(PciRegs.RomAddress, AllVirt, AllWrite);
        p.SetB(PciRegs.CapabilityList, 0xff, 0);
        p.SetB(PciRegs.InterruptLine, 0xff, 0xff);
        p.SetB(PciRegs.InterruptPin, 0xff, 0);
        return p;
    }

    /// <summary>init_pci_cap_pm_perm(): power state changes are trapped; PME is virtual (cleared at open).</summary>
    private static PermBits PmPerm()
    {
        PermBits p = PermBits.Alloc(PciRegs.PmSizeof);
        p.WriteFn = ConfigWriteFn.Pm;
        p.SetB(PciCapRegs.CapListNext, 0xff, 0);
        p.SetW(PciRegs.PmPmc, PciCapRegs.PmCapPmeMask, 0);
        const uint pme = PciCapRegs.PmCtrlPmeEnable | PciCapRegs.PmCtrlPmeStatus;
        p.SetD(PciRegs.PmCtrl, pme, ~(pme | PciRegs.PmCtrlStateMask));
        return p;
    }

    /// <summary>init_pci_cap_vpd_perm(): address and data virtual, served through pci_read_vpd/pci_write_vpd.</summary>
    private static PermBits VpdPerm()
    {
        PermBits p = PermBits.Alloc(PciCapRegs.VpdSizeof);
        p.WriteFn = ConfigWriteFn.Vpd;
        p.SetB(PciCapRegs.CapListNext, 0xff, 0);
        p.SetW(PciCapRegs.VpdAddr, 0xffff, 0xffff);
        p.SetD(PciCapRegs.VpdData, AllVirt, AllWrite);
        return p;
    }

    /// <summary>init_pci_cap_pcix_perm(): command and ECC control/status pass through (24 bytes; v0 uses 8).</summary>
    private static PermBits PcixPerm()
    {
        PermBits p = PermBits.Alloc(PciCapRegs.PcixSizeofV2);
        p.SetB(PciCapRegs.CapListNext, 0xff, 0);
        p.SetW(PciCapRegs.XCmd, 0, 0xffff);
        p.SetD(PciCapRegs.XEccCsr, 0, AllWrite);
        return p;
    }

    /// <summary>
    /// init_pci_cap_exp_perm(): Device Control writable but Phantom Functions; Initiate FLR,
    /// Max_Payload_Size and Max_Read_Request_Size virtual (the writefn acts on them); Device
    /// Control 2 writable but ARI. Link, slot and root control are read-only.
    /// </summary>
    private static PermBits ExpPerm()
    {
        PermBits p = PermBits.Alloc(PciCapRegs.ExpEndpointSizeofV2);
        p.WriteFn = ConfigWriteFn.Exp;
        p.SetB(PciCapRegs.CapListNext, 0xff, 0);
        p.SetW(PciRegs.ExpDevCtl, PciRegs.ExpDevCtlBcrFlr | PciCapRegs.ExpDevCtlPayload | PciCapRegs.ExpDevCtlReadrq, unchecked((ushort)~PciCapRegs.ExpDevCtlPhantom));
        p.SetW(PciCapRegs.ExpDevCtl2, 0, unchecked((ushort)~PciCapRegs.ExpDevCtl2Ari));
        return p;
    }

    /// <summary>init_pci_cap_af_perm(): Initiate FLR virtual and writable.</summary>
    private static PermBits AfPerm()
    {
        PermBits p = PermBits.Alloc(PciCapRegs.AfSizeof);
        p.WriteFn = ConfigWriteFn.Af;
        p.SetB(PciCapRegs.CapListNext, 0xff, 0);
        p.SetB(PciCapRegs.AfCtrl, PciCapRegs.AfCtrlFlr, PciCapRegs.AfCtrlFlr);
        return p;
    }

    /// <summary>init_pci_ext_cap_err_perm(): the defined error bits of status, mask and severity, and the ECRC enables.</summary>
    private static PermBits ErrPerm()
    {
        PermBits p = PermBits.Alloc(PciCapRegs.ErrRootCommand);

        // The header dword holds the next pointer: virtual, so hidden capabilities can be skipped.
        p.SetD(0, AllVirt, 0);
        p.SetD(PciCapRegs.ErrUncorStatus, 0, PciCapRegs.ErrUncWritable);
        p.SetD(PciCapRegs.ErrUncorMask, 0, PciCapRegs.ErrUncWritable);
        p.SetD(PciCapRegs.ErrUncorSever, 0, PciCapRegs.ErrUncWritable);
        p.SetD(PciCapRegs.ErrCorStatus, 0, PciCapRegs.ErrCorWritable);
        p.SetD(PciCapRegs.ErrCorMask, 0, PciCapRegs.ErrCorWritable);
        p.SetD(PciCapRegs.ErrCap, 0, PciCapRegs.ErrCapEcrcGene | PciCapRegs.ErrCapEcrcChke);
        return p;
    }

    /// <summary>
    /// init_pci_ext_cap_pwr_perm(): the kernel means the data select register but marks the
    /// byte at PCI_PWR_DATA (0x08) writable; the select register at 0x04 stays read-only.
    /// </summary>
    private static PermBits PwrPerm()
    {
        PermBits p = PermBits.Alloc(PciCapRegs.PwrSizeof);
        p.SetD(0, AllVirt, 0);
        p.SetB(PciCapRegs.PwrData, 0, 0xff);
        return p;
    }

    /// <summary>
    /// init_pci_cap_msi_perm(): per device, for its Message Control. The flags' low byte,
    /// address and data are virtual; the per-vector mask and pending bits pass through.
    /// </summary>
    public static PermBits MsiPerm(int len, ushort flags)
    {
        PermBits p = PermBits.Alloc(len);
        p.Read = ConfigReadFn.Msi;
        p.WriteFn = ConfigWriteFn.Msi;
        p.SetB(PciCapRegs.CapListNext, 0xff, 0);
        p.SetB(PciRegs.MsiFlags, 0xff, 0xff);
        p.SetD(PciRegs.MsiAddressLo, AllVirt, AllWrite);
        bool mask = (flags & PciRegs.MsiFlagsMaskBit) != 0;
        if ((flags & PciRegs.MsiFlags64Bit) != 0)
        {
            p.SetD(8, AllVirt, AllWrite);      // PCI_MSI_ADDRESS_HI
            p.SetW(12, 0xffff, 0xffff);        // PCI_MSI_DATA_64
            if (mask)
            {
                p.SetD(16, 0, AllWrite);       // PCI_MSI_MASK_64
                p.SetD(20, 0, AllWrite);       // PCI_MSI_PENDING_64
            }
        }
        else
        {
            p.SetW(8, 0xffff, 0xffff);         // PCI_MSI_DATA_32
            if (mask)
            {
                p.SetD(12, 0, AllWrite);       // PCI_MSI_MASK_32
                p.SetD(16, 0, AllWrite);       // PCI_MSI_PENDING_32
            }
        }

        return p;
    }
}
