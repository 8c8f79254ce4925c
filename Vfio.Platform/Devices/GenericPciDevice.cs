// A PCI function built entirely from its description: identity, BARs (plain register
// memory), ROM, MSI, MSI-X, PM, PCI Express with FLR, ACS. It stands for any device the
// machine needs but vfio labs do not program (NIC functions of a two-function card, devices
// behind a bridge); reads of its BARs return what was last written.

using Vfio.Platform.Machine;
using Vfio.Platform.Pci;

namespace Vfio.Platform.Devices;

/// <summary>A description-driven function whose BARs are plain memory.</summary>
[PciDeviceModel("generic")]
public sealed class GenericPciDevice : PciDevice
{
    private readonly byte[]?[] _barMemory = new byte[]?[7];

    /// <summary>Builds the function at <paramref name="address"/> from <paramref name="description"/>.</summary>
    public GenericPciDevice(SimMachine machine, PciAddress address, PciFunctionDescription description)
        : base(machine, address, description, IdentityOf(description))
    {
        foreach (BarDescription b in description.Bars)
        {
            AddBar(b.Index, b.Size, b.Kind, b.Prefetchable);
        }

        if (description.RomSize > 0)
        {
            AddRom(description.RomSize);
        }

        AddStandardCapabilities(description);
        if (description.MsiVectors > 0)
        {
            AddMsiCapability(description.MsiVectors, is64Bit: true, perVectorMask: true);
        }

        if (description.Msix is { } x)
        {
            AddMsixCapability(x.Vectors, x.TableBar, x.TableOffset, x.PbaBar, x.PbaOffset);
        }
    }

    private static PciIdentity IdentityOf(PciFunctionDescription d)
        => new(d.Vendor ?? 0x1b36, d.Device ?? 0x0001, d.SubsystemVendor ?? d.Vendor ?? 0x1b36, d.SubsystemDevice ?? 0x1100, d.Class ?? 0xff0000, d.Revision ?? 0);

    /// <summary>Lets a test raise interrupt <paramref name="vector"/> as the device would.</summary>
    public bool Fire(int vector = 0) => RaiseInterrupt(vector);

    /// <summary>Lets a test drop the INTx line.</summary>
    public void Lower() => DeassertIntx();

    /// <summary>Lets a test issue a DMA read as the device would.</summary>
    public int DmaReadAs(ulong iova, Span<byte> buffer) => DmaRead(iova, buffer);

    /// <summary>Lets a test issue a DMA write as the device would.</summary>
    public int DmaWriteAs(ulong iova, ReadOnlySpan<byte> buffer) => DmaWrite(iova, buffer);

    /// <inheritdoc/>
    protected override void BarRead(int bar, long offset, Span<byte> data)
    {
        byte[]? mem = _barMemory[bar];
        if (mem is null || offset >= mem.Length)
        {
            data.Clear();
            return;
        }

        int n = (int)Math.Min(data.Length, mem.Length - offset);
        mem.AsSpan((int)offset, n).CopyTo(data);
        data[n..].Clear();
    }

    /// <inheritdoc/>
    protected override void BarWrite(int bar, long offset, ReadOnlySpan<byte> data)
    {
        PciBar? b = Bars[bar];
        if (b is null)
        {
            return;
        }

        // Register memory is allocated on the first write, and at most 1 MiB of a BAR keeps data.
        long keep = Math.Min(b.Size, 1 << 20);
        if (offset >= keep)
        {
            return;
        }

        byte[] mem = _barMemory[bar] ??= new byte[keep];
        int n = (int)Math.Min(data.Length, keep - offset);
        data[..n].CopyTo(mem.AsSpan((int)offset));
    }

    /// <inheritdoc/>
    protected override void OnReset(PciResetKind kind) => Array.Clear(_barMemory);
}
