// Building a function from its machine-description entry: the parts every model shares
// (place, PCI Express or conventional, multifunction bit, INTx pin, DMA alias and ACS
// quirks, the PM / PCI Express / ACS capabilities that carry the description's reset
// methods).

using Vfio.Platform.Machine;

namespace Vfio.Platform.Pci;

public partial class PciDevice
{
    /// <summary>A function at <paramref name="address"/> as <paramref name="description"/> says, with <paramref name="identity"/>.</summary>
    protected PciDevice(SimMachine machine, PciAddress address, PciFunctionDescription description, PciIdentity identity)
        : this(machine, address.Domain, address.Bus, address.Slot, address.Function, identity, pcie: (description ?? throw new ArgumentNullException(nameof(description))).Pcie ?? true)
    {
        SetMultifunction(description.Multifunction);
        SetInterruptPin(description.InterruptPin);
        foreach (int alias in description.DmaAliases)
        {
            AddDmaAlias(alias);
        }

        AcsQuirkFlags = description.AcsQuirk;
        NoBusReset = !description.Resets.Contains(PciResetMethod.Bus);
    }

    /// <summary>
    /// Adds the capabilities that carry the description's reset methods and isolation: PM
    /// (No_Soft_Reset unless <c>pm</c> is listed), PCI Express endpoint (FLR if <c>flr</c> is
    /// listed) on a PCI Express function, and an ACS capability when the description has one.
    /// </summary>
    protected void AddStandardCapabilities(PciFunctionDescription description)
    {
        ArgumentNullException.ThrowIfNull(description);
        AddPmCapability(noSoftReset: !description.Resets.Contains(PciResetMethod.Pm));
        if (ConfigSize == PciRegs.ConfigSpaceSize)
        {
            AddExpCapability(PciRegs.ExpTypeEndpoint, flr: description.Resets.Contains(PciResetMethod.Flr));
            if (description.Acs is { } acs)
            {
                const ushort implemented = PciRegs.AcsSv | PciRegs.AcsRr | PciRegs.AcsCr | PciRegs.AcsUf;
                AddAcsCapability(implemented, acs);
            }
        }
    }
}
