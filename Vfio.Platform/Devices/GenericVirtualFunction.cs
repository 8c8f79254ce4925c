// A virtual function of a generic SR-IOV PF (GenericPciDevice with an "sriov" entry): the
// VF's registers come from PciVirtualFunction, its BARs are plain memory like the PF's —
// what was last written reads back, kept in 4 KiB pages allocated on first write — and a
// reset of the VF (FLR, or its PF clearing VF Enable) forgets them.

using System.Collections.Concurrent;
using Vfio.Platform.Machine;
using Vfio.Platform.Pci;

namespace Vfio.Platform.Devices;

/// <summary>A VF whose BARs are plain memory.</summary>
public sealed class GenericVirtualFunction : PciVirtualFunction
{
    private const int PageShift = 12;
    private const int PageSize = 1 << PageShift;
    private readonly ConcurrentDictionary<long, byte[]>?[] _barMemory = new ConcurrentDictionary<long, byte[]>?[6];

    /// <summary>VF <paramref name="vfId"/> of <paramref name="physfn"/> at <paramref name="address"/>.</summary>
    public GenericVirtualFunction(PciDevice physfn, int vfId, PciAddress address)
        : base(physfn, vfId, address)
    {
    }

    /// <summary>Lets a test raise MSI-X vector <paramref name="vector"/> as the VF would.</summary>
    public bool Fire(int vector = 0) => RaiseInterrupt(vector);

    /// <summary>Lets a test issue a DMA write as the VF would (with the VF's requester id).</summary>
    public int DmaWriteAs(ulong iova, ReadOnlySpan<byte> buffer) => DmaWrite(iova, buffer);

    /// <inheritdoc/>
    protected override void BarRead(int bar, long offset, Span<byte> data)
    {
        ConcurrentDictionary<long, byte[]>? pages = bar < _barMemory.Length ? _barMemory[bar] : null;
        while (!data.IsEmpty)
        {
            int inPage = (int)Math.Min(data.Length, PageSize - (offset & (PageSize - 1)));
            if (pages is not null && pages.TryGetValue(offset >> PageShift, out byte[]? page))
            {
                page.AsSpan((int)(offset & (PageSize - 1)), inPage).CopyTo(data);
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
        if (bar >= _barMemory.Length || Bars[bar] is not { } b)
        {
            return;
        }

        ConcurrentDictionary<long, byte[]> pages = _barMemory[bar] ?? Interlocked.CompareExchange(ref _barMemory[bar], new ConcurrentDictionary<long, byte[]>(), null) ?? _barMemory[bar]!;
        while (!data.IsEmpty && offset < b.Size)
        {
            int inPage = (int)Math.Min(data.Length, PageSize - (offset & (PageSize - 1)));
            byte[] page = pages.GetOrAdd(offset >> PageShift, static _ => new byte[PageSize]);
            data[..inPage].CopyTo(page.AsSpan((int)(offset & (PageSize - 1))));
            offset += inPage;
            data = data[inPage..];
        }
    }

    /// <inheritdoc/>
    protected override void OnReset(PciResetKind kind) => Array.Clear(_barMemory);
}
