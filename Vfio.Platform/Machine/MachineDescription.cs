// The machine description: what a simulated host is made of — memory, the IOMMU model and
// the PCI topology with its functions — as read from JSON (MachineDescriptionReader) or
// built in code. Records only; MachineBuilder turns one into a running SimMachine.

using Vfio.Platform.Iommu;
using Vfio.Platform.Mm;
using Vfio.Platform.Pci;

namespace Vfio.Platform.Machine;

/// <summary>A whole machine.</summary>
public sealed record MachineDescription
{
    /// <summary>A short name shown by the tools.</summary>
    public string Name { get; init; } = "machine";

    /// <summary>RAM, hugetlb pools and page placement.</summary>
    public MemoryConfig Memory { get; init; } = new();

    /// <summary>The IOMMU; null for a machine without one (DMA goes straight to memory, vfio needs noiommu).</summary>
    public IommuHardwareConfig? Iommu { get; init; } = new();

    /// <summary>Functions on the root bus (bridges carry their own children).</summary>
    public IReadOnlyList<PciFunctionDescription> Pci { get; init; } = [];

    /// <summary>Host stand-in drivers to register at boot, with the ids they claim.</summary>
    public IReadOnlyList<HostDriverDescription> Drivers { get; init; } = [];
}

/// <summary>A host driver stand-in (e1000e, nvme…) that binds the listed ids at boot.</summary>
/// <param name="Name">The driver's name.</param>
/// <param name="Ids">vendor:device pairs.</param>
public sealed record HostDriverDescription(string Name, IReadOnlyList<(uint Vendor, uint Device)> Ids);

/// <summary>An MSI-X capability: table and PBA locations.</summary>
/// <param name="Vectors">Table size.</param>
/// <param name="TableBar">BAR of the table.</param>
/// <param name="TableOffset">Offset of the table in that BAR.</param>
/// <param name="PbaBar">BAR of the PBA.</param>
/// <param name="PbaOffset">Offset of the PBA.</param>
public sealed record MsixDescription(int Vectors, int TableBar, long TableOffset, int PbaBar, long PbaOffset);

/// <summary>
/// A capability beyond PM, PCI Express, ACS, MSI and MSI-X: <c>vpd</c>, <c>vendor</c>,
/// <c>pcix</c>, <c>af</c>, <c>aer</c>, <c>power-budget</c>, <c>vendor-ext</c>, <c>dvsec</c>,
/// or <c>raw</c> / <c>raw-ext</c> (any id with a plain payload).
/// </summary>
public sealed record CapabilityDescription
{
    /// <summary>What kind of capability.</summary>
    public string Type { get; init; } = "raw";

    /// <summary>The capability id (raw, raw-ext), the VSEC id (vendor-ext) or the DVSEC id (dvsec).</summary>
    public int? Id { get; init; }

    /// <summary>The DVSEC vendor (default: the function's vendor).</summary>
    public int? Vendor { get; init; }

    /// <summary>Payload bytes after the header (vendor, vendor-ext, dvsec, raw, raw-ext), or the VPD image (vpd).</summary>
    public byte[] Payload { get; init; } = [];

    /// <summary>Whether the payload is writable in hardware.</summary>
    public bool? Writable { get; init; }

    /// <summary>Total size of a raw capability without payload, or of the VPD store.</summary>
    public int? Size { get; init; }

    /// <summary>Advanced Features: advertise function level reset (default true).</summary>
    public bool? Flr { get; init; }
}

/// <summary>One BAR.</summary>
/// <param name="Index">0..5.</param>
/// <param name="Size">Bytes, a power of two.</param>
/// <param name="Kind">Memory32, Memory64 or Io.</param>
/// <param name="Prefetchable">The prefetchable bit.</param>
public sealed record BarDescription(int Index, long Size, PciBarKind Kind, bool Prefetchable = false);

/// <summary>
/// One PCI function: its place, its model (a registered device model name such as
/// <c>edu</c>, <c>nic</c>, <c>generic</c>, or a bridge kind), identity and hardware options.
/// Options a model fixes itself (edu's ids, BARs and capabilities) are ignored for it.
/// </summary>
public sealed record PciFunctionDescription
{
    /// <summary>Where this entry sits in the file, for messages (<c>pci[1].children[0]</c>).</summary>
    public string Path { get; init; } = "pci";

    /// <summary>Device number on its bus (0..31).</summary>
    public int Slot { get; init; }

    /// <summary>Function number (0..7).</summary>
    public int Function { get; init; }

    /// <summary>The model: a device model name or root-port, switch-upstream, switch-downstream, pcie-to-pci-bridge, pci-bridge.</summary>
    public string Type { get; init; } = "generic";

    /// <summary>Identity; for models with fixed ids, null fields keep the model's.</summary>
    public uint? Vendor { get; init; }

    public uint? Device { get; init; }

    public uint? SubsystemVendor { get; init; }

    public uint? SubsystemDevice { get; init; }

    public uint? Class { get; init; }

    public byte? Revision { get; init; }

    /// <summary>PCI Express (4 KiB configuration space); null: PCIe unless the bus above is conventional.</summary>
    public bool? Pcie { get; init; }

    /// <summary>The header's multifunction bit.</summary>
    public bool Multifunction { get; init; }

    /// <summary>
    /// ACS: for ports, the control bits enabled at boot (true = SV|RR|CR|UF, false = capability
    /// present but disabled, null = no capability); for multifunction endpoints, an ACS
    /// capability with these controls.
    /// </summary>
    public ushort? Acs { get; init; }

    /// <summary>A quirk reporting ACS as enabled with these flags (pci_dev_specific_acs_enabled).</summary>
    public ushort? AcsQuirk { get; init; }

    /// <summary>Reset methods the hardware supports: flr (FLR capability), pm (D3hot→D0 resets), bus (a bus reset is allowed).</summary>
    public IReadOnlyList<PciResetMethod> Resets { get; init; } = [PciResetMethod.Flr, PciResetMethod.Pm, PciResetMethod.Bus];

    /// <summary>BARs (generic model).</summary>
    public IReadOnlyList<BarDescription> Bars { get; init; } = [];

    /// <summary>Expansion ROM size, 0 for none (generic model).</summary>
    public long RomSize { get; init; }

    /// <summary>How many chained option-ROM images the ROM holds (<c>romImages</c>, default 1; 0 is a blank ROM of all-ones).</summary>
    public int RomImages { get; init; } = 1;

    /// <summary>MSI vectors, 0 for no MSI capability (generic model).</summary>
    public int MsiVectors { get; init; }

    /// <summary>MSI-X capability (generic model).</summary>
    public MsixDescription? Msix { get; init; }

    /// <summary>An SR-IOV capability and the VFs it enables (generic model); null for none.</summary>
    public SriovDescription? Sriov { get; init; }

    /// <summary>Further capabilities, in chain order after PM, PCI Express and ACS (generic model).</summary>
    public IReadOnlyList<CapabilityDescription> Capabilities { get; init; } = [];

    /// <summary>Interrupt pin, 0 none, 1 = INTA#.</summary>
    public int InterruptPin { get; init; } = 1;

    /// <summary>Quirk DMA aliases (devfns on the same bus).</summary>
    public IReadOnlyList<int> DmaAliases { get; init; } = [];

    /// <summary>For bridges: the secondary bus number; null numbers buses depth first.</summary>
    public int? SecondaryBus { get; init; }

    /// <summary>For bridges: the functions on the bus below.</summary>
    public IReadOnlyList<PciFunctionDescription> Children { get; init; } = [];

    /// <summary>A host driver that binds this function at boot (must be in <see cref="MachineDescription.Drivers"/> or is created for it).</summary>
    public string? Driver { get; init; }

    /// <summary>Model-specific settings (name → JSON text), for device models that take options.</summary>
    public IReadOnlyDictionary<string, string> Options { get; init; } = new Dictionary<string, string>();

    /// <summary>True for the bridge types.</summary>
    public bool IsBridge => PciBridgeKinds.Parse(Type) is not null;
}

/// <summary>Where a function sits: domain, bus, slot, function.</summary>
/// <param name="Domain">PCI domain.</param>
/// <param name="Bus">Bus number.</param>
/// <param name="Slot">Device number.</param>
/// <param name="Function">Function number.</param>
public readonly record struct PciAddress(int Domain, int Bus, int Slot, int Function)
{
    /// <inheritdoc/>
    public override string ToString() => PciDevice.FormatName(Domain, Bus, Slot, Function);
}
