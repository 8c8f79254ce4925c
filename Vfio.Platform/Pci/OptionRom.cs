// Builds PCI expansion-ROM contents as the PCI Firmware Specification (3.x, chapter 5) lays
// them out and drivers/pci/rom.c pci_get_rom_size() walks them (v6.12): each image starts
// with the 0x55 0xAA signature and a pointer (offset 0x18) to its "PCIR" data structure,
// which carries the vendor and device id, the class code, the image length in 512-byte
// units (offset 0x10) and the indicator byte whose bit 7 marks the last image (offset 0x15).
// Bytes past the last image read 0xff, as erased flash does. A blank ROM (no image) is all
// 0xff, which the kernel reports as "Invalid PCI ROM header signature".

using System.Buffers.Binary;
using System.Collections.Concurrent;

namespace Vfio.Platform.Pci;

/// <summary>Expansion-ROM images for the simulated functions.</summary>
public static class OptionRom
{
    /// <summary>Where each image keeps its PCI data structure (after the 0x18 pointer and a little padding).</summary>
    public const int DataStructureOffset = 0x1c;

    /// <summary>The "PCIR" signature as a little-endian dword.</summary>
    public const uint PcirSignature = 0x52494350;

    // Images handed out by Shared, by what they are built from: a machine never writes its ROM
    // (CPU writes to it are ignored), so every function with the same identity, size and image
    // count reads one array. Bounded by the distinct ROMs machine descriptions ask for.
    private static readonly ConcurrentDictionary<(PciIdentity Identity, long Size, int Images), byte[]> s_shared = new();

    /// <summary>
    /// The bytes <see cref="Build"/> gives, built once per process for each identity, size and
    /// image count and shared by every caller: read-only (the caller must not write to it).
    /// </summary>
    internal static byte[] Shared(PciIdentity identity, long romSize, int images)
    {
        var key = (identity, romSize, images);
        return s_shared.TryGetValue(key, out byte[]? rom) ? rom : s_shared.GetOrAdd(key, k => Build(k.Identity, k.Size, k.Images));
    }

    /// <summary>
    /// A ROM of <paramref name="romSize"/> bytes holding <paramref name="images"/> chained
    /// images for <paramref name="identity"/>: together they fill half the ROM (each a multiple
    /// of 512 bytes), the first an x86 BIOS image (code type 0), the rest EFI (code type 3); the
    /// rest of the ROM is 0xff. 0 images gives a blank ROM.
    /// </summary>
    public static byte[] Build(PciIdentity identity, long romSize, int images = 1)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(romSize, 2048);
        ArgumentOutOfRangeException.ThrowIfNegative(images);
        byte[] rom = new byte[romSize];
        rom.AsSpan().Fill(0xff);
        if (images == 0)
        {
            return rom;
        }

        long blocks = romSize / 2 / 512 / images;
        if (blocks == 0 || blocks > ushort.MaxValue)
        {
            throw new ArgumentOutOfRangeException(nameof(images), images, $"{images} images do not fit half of a {romSize}-byte ROM in 512-byte blocks");
        }

        int imageLength = (int)(blocks * 512);
        for (int i = 0; i < images; i++)
        {
            WriteImage(rom.AsSpan(i * imageLength, imageLength), identity, codeType: (byte)(i == 0 ? 0 : 3), last: i == images - 1);
        }

        return rom;
    }

    private static void WriteImage(Span<byte> image, PciIdentity id, byte codeType, bool last)
    {
        int blocks = image.Length / 512;
        image.Clear();
        image[0] = 0x55;
        image[1] = 0xaa;
        image[2] = (byte)Math.Min(blocks, 0xff); // legacy size byte (512-byte units)
        image[3] = 0xcb; // a far return where the BIOS would call the initialisation entry
        BinaryPrimitives.WriteUInt16LittleEndian(image[0x18..], DataStructureOffset);

        Span<byte> pcir = image[DataStructureOffset..];
        BinaryPrimitives.WriteUInt32LittleEndian(pcir, PcirSignature);
        BinaryPrimitives.WriteUInt16LittleEndian(pcir[4..], (ushort)id.Vendor);
        BinaryPrimitives.WriteUInt16LittleEndian(pcir[6..], (ushort)id.Device);
        BinaryPrimitives.WriteUInt16LittleEndian(pcir[0x0a..], 0x18); // structure length
        pcir[0x0c] = 3; // structure revision (PCI Firmware 3.0)
        pcir[0x0d] = (byte)id.Class;
        pcir[0x0e] = (byte)(id.Class >> 8);
        pcir[0x0f] = (byte)(id.Class >> 16);
        BinaryPrimitives.WriteUInt16LittleEndian(pcir[0x10..], (ushort)blocks);
        BinaryPrimitives.WriteUInt16LittleEndian(pcir[0x12..], 1); // code revision
        pcir[0x14] = codeType;
        pcir[0x15] = (byte)(last ? 0x80 : 0);
        BinaryPrimitives.WriteUInt16LittleEndian(pcir[0x16..], (ushort)blocks); // maximum run-time image length

        // The BIOS checks that an image's bytes sum to 0.
        byte sum = 0;
        foreach (byte b in image)
        {
            sum += b;
        }

        image[^1] = (byte)(0x100 - sum);
    }
}
