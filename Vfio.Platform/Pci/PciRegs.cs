// Models include/uapi/linux/pci_regs.h (v6.12): the offsets and bits of configuration
// space that the simulated hardware and the PCI core use.

namespace Vfio.Platform.Pci;

/// <summary>Configuration-space offsets, capability ids and register bits (pci_regs.h).</summary>
public static class PciRegs
{
    /// <summary>Size of a PCI Express function's configuration space.</summary>
    public const int ConfigSpaceSize = 4096;

    /// <summary>Size of the conventional (type 0/1 header + capabilities) part.</summary>
    public const int StdConfigSpaceSize = 256;

    public const int VendorId = 0x00;
    public const int DeviceId = 0x02;
    public const int Command = 0x04;
    public const int Status = 0x06;
    public const int RevisionId = 0x08;
    public const int ClassProg = 0x09;
    public const int ClassDevice = 0x0a;
    public const int CacheLineSize = 0x0c;
    public const int LatencyTimer = 0x0d;
    public const int HeaderType = 0x0e;
    public const int Bist = 0x0f;
    public const int BaseAddress0 = 0x10;
    public const int SubsystemVendorId = 0x2c;
    public const int SubsystemId = 0x2e;
    public const int RomAddress = 0x30;
    public const int CapabilityList = 0x34;
    public const int InterruptLine = 0x3c;
    public const int InterruptPin = 0x3d;

    // Type 1 (bridge) header.
    public const int PrimaryBus = 0x18;
    public const int SecondaryBus = 0x19;
    public const int SubordinateBus = 0x1a;
    public const int IoBase = 0x1c;
    public const int MemoryBase = 0x20;
    public const int PrefMemoryBase = 0x24;
    public const int RomAddress1 = 0x38;
    public const int BridgeControl = 0x3e;

    /// <summary>PCI_BRIDGE_CTL_BUS_RESET: secondary bus reset.</summary>
    public const ushort BridgeCtlBusReset = 0x40;

    public const byte HeaderTypeNormal = 0;
    public const byte HeaderTypeBridge = 1;
    public const byte HeaderTypeMultifunction = 0x80;

    // Command register.
    public const ushort CommandIo = 0x1;
    public const ushort CommandMemory = 0x2;
    public const ushort CommandMaster = 0x4;
    public const ushort CommandSerr = 0x100;
    public const ushort CommandIntxDisable = 0x400;

    // Status register.
    public const ushort StatusInterrupt = 0x8;
    public const ushort StatusCapList = 0x10;
    public const ushort StatusDetectedParity = 0x8000;
    public const ushort StatusSigSystemError = 0x4000;
    public const ushort StatusRecMasterAbort = 0x2000;
    public const ushort StatusRecTargetAbort = 0x1000;
    public const ushort StatusSigTargetAbort = 0x0800;

    // BAR bits.
    public const uint BarSpaceIo = 0x1;
    public const uint BarMemType64 = 0x4;
    public const uint BarMemPrefetch = 0x8;
    public const uint RomEnable = 0x1;

    // Capability ids.
    public const byte CapIdPm = 0x01;
    public const byte CapIdMsi = 0x05;
    public const byte CapIdVendor = 0x09;
    public const byte CapIdExp = 0x10;
    public const byte CapIdMsix = 0x11;

    // Extended capability ids.
    public const ushort ExtCapIdErr = 0x01;
    public const ushort ExtCapIdAcs = 0x0d;

    // Power management capability.
    public const int PmPmc = 2;
    public const int PmCtrl = 4;
    public const ushort PmCtrlStateMask = 0x3;
    public const ushort PmCtrlNoSoftReset = 0x8;
    public const int PmSizeof = 8;

    // MSI capability.
    public const int MsiFlags = 2;
    public const ushort MsiFlagsEnable = 0x1;
    public const ushort MsiFlagsQmask = 0xe;
    public const ushort MsiFlagsQsize = 0x70;
    public const ushort MsiFlags64Bit = 0x80;
    public const ushort MsiFlagsMaskBit = 0x100;
    public const int MsiAddressLo = 4;

    // MSI-X capability.
    public const int MsixFlags = 2;
    public const ushort MsixFlagsQsize = 0x7ff;
    public const ushort MsixFlagsMaskAll = 0x4000;
    public const ushort MsixFlagsEnable = 0x8000;
    public const int MsixTable = 4;
    public const int MsixPba = 8;
    public const uint MsixTableBir = 0x7;
    public const int MsixCapSizeof = 12;
    public const int MsixEntrySize = 16;
    public const uint MsixEntryCtrlMaskBit = 0x1;

    // PCI Express capability.
    public const int ExpFlags = 2;
    public const int ExpDevCap = 4;
    public const int ExpDevCtl = 8;
    public const int ExpDevSta = 10;
    public const uint ExpDevCapFlr = 0x10000000;
    public const ushort ExpDevCtlBcrFlr = 0x8000;
    public const int ExpCapSizeofV2 = 60;
    public const int ExpTypeEndpoint = 0x0;
    public const int ExpTypeLegacyEndpoint = 0x1;
    public const int ExpTypeRootPort = 0x4;
    public const int ExpTypeUpstream = 0x5;
    public const int ExpTypeDownstream = 0x6;
    public const int ExpTypePciBridge = 0x7;
    public const int ExpTypePcieBridge = 0x8;
    public const int ExpTypeRcEndpoint = 0x9;
    public const int ExpTypeRcEventCollector = 0xa;

    // ACS extended capability.
    public const int AcsCap = 4;
    public const int AcsCtrl = 6;
    public const ushort AcsSv = 0x01;
    public const ushort AcsTb = 0x02;
    public const ushort AcsRr = 0x04;
    public const ushort AcsCr = 0x08;
    public const ushort AcsUf = 0x10;
    public const ushort AcsEc = 0x20;
    public const ushort AcsDt = 0x40;
    public const int AcsSizeof = 8;

    /// <summary>REQ_ACS_FLAGS of drivers/iommu/iommu.c: SV | RR | CR | UF.</summary>
    public const ushort ReqAcsFlags = AcsSv | AcsRr | AcsCr | AcsUf;
}
