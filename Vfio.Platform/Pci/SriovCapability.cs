// Models the SR-IOV extended capability as hardware presents it (PCI Express 6.0 §9.3.3,
// include/uapi/linux/pci_regs.h v6.12 PCI_SRIOV_*): TotalVFs and InitialVFs read-only, NumVFs
// writable, First VF Offset and VF Stride, the VF Device ID, the page sizes, six VF BAR
// registers sized like ordinary BARs (each describes one VF's BAR; VF n's copy sits n BAR
// sizes above the register's address) and SR-IOV Control with VF Enable and VF Memory
// Space Enable. The hardware latches NumVFs when VF Enable rises; clearing VF Enable makes
// every VF vanish and go through a reset. What the PCI core does with the capability is in
// PciDevice.Sriov.cs.

namespace Vfio.Platform.Pci;

/// <summary>Offsets and bits of the SR-IOV capability (pci_regs.h PCI_SRIOV_*).</summary>
public static class SriovRegs
{
    /// <summary>PCI_EXT_CAP_ID_SRIOV.</summary>
    public const ushort ExtCapId = 0x10;

    /// <summary>PCI_EXT_CAP_SRIOV_SIZEOF.</summary>
    public const int Sizeof = 0x40;

    public const int Cap = 0x04;
    public const int Ctrl = 0x08;
    public const int Status = 0x0a;
    public const int InitialVf = 0x0c;
    public const int TotalVf = 0x0e;
    public const int NumVf = 0x10;
    public const int FuncLink = 0x12;
    public const int VfOffset = 0x14;
    public const int VfStride = 0x16;
    public const int VfDid = 0x1a;
    public const int SupPgsize = 0x1c;
    public const int SysPgsize = 0x20;
    public const int Bar = 0x24;

    /// <summary>PCI_SRIOV_NUM_BARS.</summary>
    public const int NumBars = 6;

    /// <summary>PCI_SRIOV_CTRL_VFE: VF Enable.</summary>
    public const ushort CtrlVfe = 0x01;

    /// <summary>PCI_SRIOV_CTRL_MSE: VF Memory Space Enable.</summary>
    public const ushort CtrlMse = 0x08;

    /// <summary>The page sizes the simulated functions support (4K, 8K, 64K, 256K, 1M, 4M), as many NICs report.</summary>
    public const uint SupportedPageSizes = 0x553;
}

/// <summary>The SR-IOV hardware of a physical function, as its machine description gives it.</summary>
/// <param name="TotalVfs">TotalVFs (and InitialVFs): 1..255.</param>
/// <param name="VfDevice">The VF Device ID.</param>
/// <param name="Offset">First VF Offset (routing-id distance of VF 0 from the PF).</param>
/// <param name="Stride">VF Stride.</param>
/// <param name="Bars">Each VF's BARs (the capability's VF BAR registers).</param>
/// <param name="Msix">Each VF's MSI-X capability (table and PBA in the VF's BARs), or null.</param>
public sealed record SriovDescription(int TotalVfs, uint VfDevice, int Offset, int Stride, IReadOnlyList<Machine.BarDescription> Bars, Machine.MsixDescription? Msix = null);

/// <summary>One VF BAR of the capability: the size of each VF's BAR and where firmware placed the window of all of them.</summary>
public sealed class SriovBar
{
    internal SriovBar(int index, long vfSize, PciBarKind kind, bool prefetchable, int totalVfs)
    {
        Index = index;
        VfSize = vfSize;
        Kind = kind;
        Prefetchable = prefetchable;
        WindowSize = vfSize * totalVfs;
    }

    /// <summary>0..5.</summary>
    public int Index { get; }

    /// <summary>The size of one VF's BAR (a power of two, at least a page).</summary>
    public long VfSize { get; }

    /// <summary>Memory32 or Memory64.</summary>
    public PciBarKind Kind { get; }

    /// <summary>The prefetchable bit.</summary>
    public bool Prefetchable { get; }

    /// <summary>The IOV resource: VfSize × TotalVFs.</summary>
    public long WindowSize { get; }

    /// <summary>Where firmware placed the window (the IOV resource's start), 0 if unassigned.</summary>
    public long ResourceStart { get; internal set; }

    /// <summary>The low flag bits of the register.</summary>
    public uint FlagBits => Kind == PciBarKind.Memory64
        ? PciRegs.BarMemType64 | (Prefetchable ? PciRegs.BarMemPrefetch : 0)
        : Prefetchable ? PciRegs.BarMemPrefetch : 0;
}
