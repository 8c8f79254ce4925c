// A PCI function built entirely from its description: identity, BARs (plain register
// memory), ROM (an option-ROM image, Pci/OptionRom.cs), MSI, MSI-X, PM, PCI Express with FLR, ACS, and the described capabilities
// (VPD, vendor-specific, AER, … see PciDevice.Caps.cs). It stands for any device the
// machine needs but vfio labs do not program (NIC functions of a two-function card, devices
// behind a bridge, a peer-to-peer target); reads of its BARs return what was last written,
// kept in 4 KiB pages allocated on first write, so even a 1 GiB BAR is cheap until used.
// With an "sriov" entry it is an SR-IOV PF whose VFs are GenericVirtualFunctions.

using System.Collections.Concurrent;
using Vfio.Platform.Machine;
using Vfio.Platform.Pci;

namespace Vfio.Platform.Devices;

/// <summary>A description-driven function whose BARs are plain memory.</summary>
[PciDeviceModel("generic")]
public sealed class GenericPciDevice : PciDevice
{
    private const int BarPageShift = 12;
    private const int BarPageSize = 1 << BarPageShift;
    private readonly ConcurrentDictionary<long, byte[]>?[] _barMemory = new ConcurrentDictionary<long, byte[]>?[7];

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
            SetRomContent(OptionRom.Shared(Identity, description.RomSize, description.RomImages));
        }

        AddStandardCapabilities(description);
        AddDescribedCapabilities(description);
        if (description.MsiVectors > 0)
        {
            AddMsiCapability(description.MsiVectors, is64Bit: true, perVectorMask: true);
        }

        if (description.Msix is { } x)
        {
            AddMsixCapability(x.Vectors, x.TableBar, x.TableOffset, x.PbaBar, x.PbaOffset);
        }

        if (description.Sriov is { } sriov)
        {
            AddSriovCapability(sriov);
        }
    }

    /// <inheritdoc/>
    protected internal override PciVirtualFunction CreateVirtualFunction(PciAddress address, int vfId) => new GenericVirtualFunction(this, vfId, address);

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
        ConcurrentDictionary<long, byte[]>? pages = _barMemory[bar];
        while (!data.IsEmpty)
        {
            int inPage = (int)Math.Min(data.Length, BarPageSize - (offset & (BarPageSize - 1)));
            if (pages is not null && pages.TryGetValue(offset >> BarPageShift, out byte[]? page))
            {
                page.AsSpan((int)(offset & (BarPageSize - 1)), inPage).CopyTo(data);
            }
            else
            {
                data[..inPage].Clear();
            }

            offset += inPage;
            data = data[inPage..];
        }
    }

    /// <inheritdoc/>
    protected override void BarWrite(int bar, long offset, ReadOnlySpan<byte> data)
    {
        PciBar? b = Bars[bar];
        if (b is null)
        {
            return;
        }

        // BAR memory is kept in 4 KiB pages allocated on their first write: a 1 GiB BAR costs
        // nothing until something (a CPU store, a peer's DMA) writes it.
        ConcurrentDictionary<long, byte[]> pages = _barMemory[bar] ?? Interlocked.CompareExchange(ref _barMemory[bar], new ConcurrentDictionary<long, byte[]>(), null) ?? _barMemory[bar]!;
        while (!data.IsEmpty && offset < b.Size)
        {
            int inPage = (int)Math.Min(data.Length, BarPageSize - (offset & (BarPageSize - 1)));
            byte[] page = pages.GetOrAdd(offset >> BarPageShift, static _ => new byte[BarPageSize]);
            data[..inPage].CopyTo(page.AsSpan((int)(offset & (BarPageSize - 1))));
            offset += inPage;
            data = data[inPage..];
        }
    }

    /// <summary>How many bytes of BAR <paramref name="bar"/> hold data (whole 4 KiB pages written at least once).</summary>
    public long BarBytesBacked(int bar) => (_barMemory[bar]?.Count ?? 0) * (long)BarPageSize;

    /// <inheritdoc/>
    protected override void OnReset(PciResetKind kind) => Array.Clear(_barMemory);
}
