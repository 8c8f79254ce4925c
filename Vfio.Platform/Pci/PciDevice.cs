// Models struct pci_dev (include/linux/pci.h) (v6.12) as far as the driver model needs it:
// the function's address and identification. Configuration space, BARs, capabilities,
// interrupts and resets belong to the PCI layer of the machine description.

using System.Globalization;
using Vfio.Platform.Base;

namespace Vfio.Platform.Pci;

/// <summary>A PCI function on the simulated machine.</summary>
public class PciDevice : SimDevice
{
    /// <summary>A function at <paramref name="domain"/>:<paramref name="bus"/>:<paramref name="slot"/>.<paramref name="function"/>.</summary>
    public PciDevice(SimMachine machine, int domain, int bus, int slot, int function, PciIdentity identity, SimDevice? parent = null, Action<SimDevice>? release = null)
        : base(machine, FormatName(domain, bus, slot, function), parent ?? machine.PciRoot, release)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(bus, 255);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(slot, 31);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(function, 7);
        Domain = domain;
        BusNumber = bus;
        Slot = slot;
        Function = function;
        Identity = identity;
    }

    /// <summary>The PCI domain (segment).</summary>
    public int Domain { get; }

    /// <summary>The bus number.</summary>
    public int BusNumber { get; }

    /// <summary>PCI_SLOT(devfn).</summary>
    public int Slot { get; }

    /// <summary>PCI_FUNC(devfn).</summary>
    public int Function { get; }

    /// <summary>devfn.</summary>
    public int DevFn => (Slot << 3) | Function;

    /// <summary>Vendor, device, subsystem ids, class and revision.</summary>
    public PciIdentity Identity { get; protected set; }

    /// <summary>True for a PCI-to-PCI bridge (class 0x0604xx).</summary>
    public bool IsBridge => (Identity.Class >> 8) == 0x0604;

    /// <summary>True for a PCI Express port (root or switch port), which pcieport drives.</summary>
    public virtual bool IsPcieport => false;

    /// <summary>The bound driver as a PCI driver.</summary>
    public PciDriver? PciDriver => Driver as PciDriver;

    /// <summary>"DDDD:BB:DD.F".</summary>
    public static string FormatName(int domain, int bus, int slot, int function)
        => string.Create(CultureInfo.InvariantCulture, $"{domain:x4}:{bus:x2}:{slot:x2}.{function}");
}
