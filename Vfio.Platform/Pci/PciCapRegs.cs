// Models the capability part of include/uapi/linux/pci_regs.h (v6.12) that PciRegs does
// not carry: every standard and extended capability id, and the registers of the
// capabilities the builders in PciDevice.Caps.cs make and vfio-pci's permission tables
// describe (VPD, PCI-X, Advanced Features, AER, power budgeting, vendor-specific, DVSEC).

namespace Vfio.Platform.Pci;

/// <summary>Capability ids and capability registers of pci_regs.h.</summary>
public static class PciCapRegs
{
    // ---- Standard capability ids (PCI_CAP_ID_*).
    public const byte IdPm = 0x01;
    public const byte IdAgp = 0x02;
    public const byte IdVpd = 0x03;
    public const byte IdSlotId = 0x04;
    public const byte IdMsi = 0x05;
    public const byte IdChswp = 0x06;
    public const byte IdPcix = 0x07;
    public const byte IdHt = 0x08;
    public const byte IdVndr = 0x09;
    public const byte IdDbg = 0x0a;
    public const byte IdCcrc = 0x0b;
    public const byte IdShpc = 0x0c;
    public const byte IdSsvid = 0x0d;
    public const byte IdAgp3 = 0x0e;
    public const byte IdSecdev = 0x0f;
    public const byte IdExp = 0x10;
    public const byte IdMsix = 0x11;
    public const byte IdSata = 0x12;
    public const byte IdAf = 0x13;

    /// <summary>PCI_CAP_ID_EA: Enhanced Allocation (vfio-pci's length table gives it 0: hidden).</summary>
    public const byte IdEa = 0x14;

    /// <summary>PCI_CAP_ID_MAX (EA since v4.2).</summary>
    public const byte IdMax = IdEa;

    // ---- Extended capability ids (PCI_EXT_CAP_ID_*).
    public const ushort ExtIdErr = 0x01;
    public const ushort ExtIdVc = 0x02;
    public const ushort ExtIdDsn = 0x03;
    public const ushort ExtIdPwr = 0x04;
    public const ushort ExtIdRcld = 0x05;
    public const ushort ExtIdRcilc = 0x06;
    public const ushort ExtIdRcec = 0x07;
    public const ushort ExtIdMfvc = 0x08;
    public const ushort ExtIdVc9 = 0x09;
    public const ushort ExtIdRcrb = 0x0a;
    public const ushort ExtIdVndr = 0x0b;
    public const ushort ExtIdCac = 0x0c;
    public const ushort ExtIdAcs = 0x0d;
    public const ushort ExtIdAri = 0x0e;
    public const ushort ExtIdAts = 0x0f;
    public const ushort ExtIdSriov = 0x10;
    public const ushort ExtIdMriov = 0x11;
    public const ushort ExtIdMcast = 0x12;
    public const ushort ExtIdPri = 0x13;
    public const ushort ExtIdAmdXxx = 0x14;
    public const ushort ExtIdRebar = 0x15;
    public const ushort ExtIdDpa = 0x16;
    public const ushort ExtIdTph = 0x17;
    public const ushort ExtIdLtr = 0x18;
    public const ushort ExtIdSecpci = 0x19;
    public const ushort ExtIdPmux = 0x1a;
    public const ushort ExtIdPasid = 0x1b;
    public const ushort ExtIdDvsec = 0x23;

    /// <summary>PCI_EXT_CAP_ID_MAX of v6.12 (Physical Layer 64.0 GT/s).</summary>
    public const ushort ExtIdMax = 0x31;

    // ---- Capability list bytes.
    public const int CapListId = 0;
    public const int CapListNext = 1;
    public const int CapFlags = 2;

    /// <summary>PCI_STD_HEADER_SIZEOF.</summary>
    public const int StdHeaderSizeof = 64;

    // ---- Power management.
    public const ushort PmCapPmeMask = 0xf800;
    public const ushort PmCtrlPmeEnable = 0x0100;
    public const ushort PmCtrlPmeStatus = 0x8000;

    // ---- PCI Express.
    public const ushort ExpFlagsVers = 0x000f;
    public const ushort ExpDevCtlPayload = 0x00e0;
    public const ushort ExpDevCtlPhantom = 0x0200;
    public const ushort ExpDevCtlReadrq = 0x7000;
    public const int ExpLnkCtl = 0x10;
    public const int ExpSltCtl = 0x18;
    public const int ExpRtCtl = 0x1c;
    public const int ExpDevCtl2 = 0x28;
    public const ushort ExpDevCtl2Ari = 0x0020;
    public const int ExpLnkCtl2 = 0x30;
    public const int ExpEndpointSizeofV1 = 20;

    /// <summary>PCI_CAP_EXP_ENDPOINT_SIZEOF_V2: a v2 endpoint's PCIe capability through Device Control 2 / Link Status 2 (52; Slot Cap/Control/Status 2 after it are outside).</summary>
    public const int ExpEndpointSizeofV2 = 0x34;

    // ---- Vital Product Data.
    public const int VpdAddr = 2;
    public const ushort VpdAddrF = 0x8000;
    public const ushort VpdAddrMask = 0x7fff;
    public const int VpdData = 4;
    public const int VpdSizeof = 8;

    // ---- PCI-X.
    public const int XCmd = 2;
    public const int XStatus = 4;
    public const int XEccCsr = 8;
    public const int PcixSizeofV0 = 8;
    public const int PcixSizeofV2 = 24;

    // ---- Advanced Features.
    public const int AfLength = 2;
    public const int AfCap = 3;
    public const byte AfCapTp = 0x01;
    public const byte AfCapFlr = 0x02;
    public const int AfCtrl = 4;
    public const byte AfCtrlFlr = 0x01;
    public const int AfStatus = 5;
    public const int AfSizeof = 6;

    // ---- Advanced Error Reporting.
    public const int ErrUncorStatus = 0x04;
    public const int ErrUncorMask = 0x08;
    public const int ErrUncorSever = 0x0c;
    public const int ErrCorStatus = 0x10;
    public const int ErrCorMask = 0x14;
    public const int ErrCap = 0x18;
    public const int ErrHeaderLog = 0x1c;

    /// <summary>PCI_ERR_ROOT_COMMAND: the length vfio gives AER.</summary>
    public const int ErrRootCommand = 0x2c;

    /// <summary>The uncorrectable error bits vfio lets the user write (Undefined … TLP prefix blocked).</summary>
    public const uint ErrUncWritable = 0x00000001 | 0x00000010 | 0x00000020 | 0x00001000 | 0x00002000 | 0x00004000 | 0x00008000
        | 0x00010000 | 0x00020000 | 0x00040000 | 0x00080000 | 0x00100000 | 0x00200000 | 0x00400000 | 0x00800000 | 0x01000000 | 0x02000000;

    /// <summary>The correctable error bits vfio lets the user write (Receiver Error … Header Log Overflow).</summary>
    public const uint ErrCorWritable = 0x00000001 | 0x00000040 | 0x00000080 | 0x00000100 | 0x00001000 | 0x00002000 | 0x00004000 | 0x00008000;

    public const uint ErrCapEcrcGenc = 0x20;
    public const uint ErrCapEcrcGene = 0x40;
    public const uint ErrCapEcrcChkc = 0x80;
    public const uint ErrCapEcrcChke = 0x100;

    // ---- Power budgeting.
    public const int PwrDsr = 4;
    public const int PwrData = 8;
    public const int PwrCap = 12;
    public const int PwrSizeof = 16;

    // ---- Vendor-specific extended capability and DVSEC.
    public const int VsecHdr = 4;
    public const int VsecHdrLenShift = 20;
    public const int DvsecHeader1 = 4;
    public const int DvsecHeader2 = 8;
}
