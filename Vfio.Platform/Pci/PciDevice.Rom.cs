// The contents of a function's expansion ROM (the ROM BAR, index 6): read-only bytes that
// the CPU reads while the ROM BAR decodes (its enable bit and COMMAND.MEM), as
// drivers/pci/rom.c pci_map_rom() reads them (v6.12). Built by OptionRom; a function whose
// model gives no content reads its ROM through BarRead like any BAR.

namespace Vfio.Platform.Pci;

public partial class PciDevice
{
    // Set while building; read-only afterwards.
    private byte[]? _romContent;

    /// <summary>The expansion ROM's bytes, or null when the model serves its ROM itself.</summary>
    public ReadOnlyMemory<byte>? RomContent => _romContent;

    /// <summary>Gives the ROM (added with <see cref="AddRom"/>) fixed contents; CPU writes to it are ignored.</summary>
    protected void SetRomContent(byte[] content)
    {
        ArgumentNullException.ThrowIfNull(content);
        CheckBuilding();
        if (_bars[RomBarIndex] is not { } rom || content.Length != rom.Size)
        {
            throw new InvalidOperationException($"{Name}: ROM contents need a ROM of {content.Length} bytes");
        }

        _romContent = content;
    }

    /// <summary>A CPU read of the ROM from its contents: true when the function has them.</summary>
    private bool RomContentRead(long offset, Span<byte> data)
    {
        if (_romContent is not { } rom)
        {
            return false;
        }

        int at = (int)Math.Min(offset, rom.Length);
        int n = Math.Min(data.Length, rom.Length - at);
        rom.AsSpan(at, n).CopyTo(data);
        data[n..].Fill(0xff);
        return true;
    }
}
