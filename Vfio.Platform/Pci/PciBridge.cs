// Models PCI-to-PCI bridges (type 1 header): PCI Express root ports and switch ports, which
// pcieport drives, and PCIe-to-PCI(-X) bridges whose conventional bus takes the bridge's
// requester id for DMA (drivers/pci/search.c pci_for_each_dma_alias) (v6.12). The bridge's
// Secondary Bus Reset resets everything below it.

namespace Vfio.Platform.Pci;

/// <summary>What kind of bridge a <see cref="PciBridge"/> is.</summary>
public enum PciBridgeKind
{
    /// <summary>PCI Express root port.</summary>
    RootPort,

    /// <summary>PCI Express switch upstream port.</summary>
    SwitchUpstream,

    /// <summary>PCI Express switch downstream port.</summary>
    SwitchDownstream,

    /// <summary>PCI Express to PCI/PCI-X bridge (conventional bus below).</summary>
    PcieToPci,

    /// <summary>Conventional PCI-to-PCI bridge.</summary>
    PciToPci,
}

/// <summary>The names machine descriptions give the bridge kinds.</summary>
public static class PciBridgeKinds
{
    /// <summary>The kind named <paramref name="type"/> (root-port, switch-upstream, switch-downstream, pcie-to-pci-bridge, pci-bridge), or null.</summary>
    public static PciBridgeKind? Parse(string? type) => type switch
    {
        "root-port" => PciBridgeKind.RootPort,
        "switch-upstream" => PciBridgeKind.SwitchUpstream,
        "switch-downstream" => PciBridgeKind.SwitchDownstream,
        "pcie-to-pci-bridge" => PciBridgeKind.PcieToPci,
        "pci-bridge" => PciBridgeKind.PciToPci,
        _ => null,
    };

    /// <summary>The bus below is conventional PCI.</summary>
    public static bool HasConventionalBus(this PciBridgeKind kind) => kind is PciBridgeKind.PcieToPci or PciBridgeKind.PciToPci;

    /// <summary>A PCI Express port or bridge (it cannot sit on a conventional bus).</summary>
    public static bool IsExpress(this PciBridgeKind kind) => kind != PciBridgeKind.PciToPci;
}

/// <summary>A PCI-to-PCI bridge and the bus below it.</summary>
public sealed class PciBridge : PciDevice
{
    /// <summary>
    /// A bridge at bus:slot.function leading to <paramref name="secondaryBus"/>.
    /// <paramref name="acs"/> is the ACS control enabled at boot on ports that have the capability (null: no ACS capability).
    /// </summary>
    public PciBridge(SimMachine machine, int domain, int bus, int slot, int function, PciBridgeKind kind, int secondaryBus, PciIdentity? identity = null, ushort? acs = null, bool multifunction = false)
        : base(machine, domain, bus, slot, function, identity ?? DefaultIdentity(kind), pcie: kind != PciBridgeKind.PciToPci)
    {
        Kind = kind;
        Config.SetByte(PciRegs.PrimaryBus, (byte)bus);
        Config.SetByte(PciRegs.SecondaryBus, (byte)secondaryBus);
        Config.SetByte(PciRegs.SubordinateBus, (byte)secondaryBus);
        SetMultifunction(multifunction);
        if (kind != PciBridgeKind.PciToPci)
        {
            AddPmCapability(noSoftReset: true);
            AddExpCapability(
                kind switch
                {
                    PciBridgeKind.RootPort => PciRegs.ExpTypeRootPort,
                    PciBridgeKind.SwitchUpstream => PciRegs.ExpTypeUpstream,
                    PciBridgeKind.SwitchDownstream => PciRegs.ExpTypeDownstream,
                    _ => PciRegs.ExpTypePciBridge,
                },
                flr: false);
            if (acs is { } ctrl && kind != PciBridgeKind.PcieToPci)
            {
                const ushort implemented = PciRegs.AcsSv | PciRegs.AcsTb | PciRegs.AcsRr | PciRegs.AcsCr | PciRegs.AcsUf;
                AddAcsCapability(implemented, ctrl);
            }
        }

        RecapturePowerOn();
    }

    /// <summary>The bridge's kind.</summary>
    public PciBridgeKind Kind { get; }

    /// <inheritdoc/>
    public override bool IsPcieport => Kind is PciBridgeKind.RootPort or PciBridgeKind.SwitchUpstream or PciBridgeKind.SwitchDownstream;

    /// <summary>Updates the subordinate bus number once the buses below are numbered.</summary>
    /// <remarks>Firmware's bus numbering counts as the bridge's reset state here, so a bus reset of the bridge above keeps it (the kernel would restore it).</remarks>
    internal void SetSubordinateNumber(int last)
    {
        ConfigLock.Lock();
        Config.SetByte(PciRegs.SubordinateBus, (byte)last);
        RecapturePowerOn();
        ConfigLock.Unlock();
    }

    private static PciIdentity DefaultIdentity(PciBridgeKind kind) => kind switch
    {
        PciBridgeKind.RootPort => new PciIdentity(0x8086, 0x7c02, 0, 0, 0x060400),
        PciBridgeKind.SwitchUpstream => new PciIdentity(0x10b5, 0x8747, 0, 0, 0x060400),
        PciBridgeKind.SwitchDownstream => new PciIdentity(0x10b5, 0x8748, 0, 0, 0x060400),
        PciBridgeKind.PcieToPci => new PciIdentity(0x1b36, 0x000e, 0, 0, 0x060400),
        _ => new PciIdentity(0x8086, 0x244e, 0, 0, 0x060401),
    };
}
