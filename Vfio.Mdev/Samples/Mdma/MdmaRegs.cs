// The register file of the mdma sample device (no kernel counterpart): what BAR0 and the
// emulated config space hold, as a guest driver would see them.

namespace Vfio.Mdev.Samples.Mdma;

/// <summary>Offsets and values of the mdma device's BAR0 registers (little-endian).</summary>
public static class MdmaRegs
{
    /// <summary>BAR0's size in bytes.</summary>
    public const int Bar0Size = 0x40;

    /// <summary>RO, 32 bits: <see cref="IdValue"/>.</summary>
    public const int Id = 0x00;

    /// <summary>RO, 32 bits: the largest transfer in pages (the instance type's limit).</summary>
    public const int MaxPages = 0x04;

    /// <summary>RW, 64 bits: source IOVA.</summary>
    public const int Src = 0x08;

    /// <summary>RW, 64 bits: destination IOVA.</summary>
    public const int Dst = 0x10;

    /// <summary>RW, 32 bits: transfer length in bytes.</summary>
    public const int Len = 0x18;

    /// <summary>RW, 32 bits: the command the doorbell runs (<see cref="CmdCopy"/>, <see cref="CmdCopyRw"/>, <see cref="CmdUnpin"/>).</summary>
    public const int Cmd = 0x1c;

    /// <summary>RO, 32 bits: <see cref="StatusDone"/>, <see cref="StatusError"/> and the errno in bits 31:16.</summary>
    public const int Status = 0x20;

    /// <summary>WO, 32 bits: any write runs the command; reads 0.</summary>
    public const int Doorbell = 0x24;

    /// <summary>RO, 32 bits: guest pages the device holds pinned now (its pin cache).</summary>
    public const int Pinned = 0x28;

    /// <summary>RO, 32 bits: commands completed since open or reset.</summary>
    public const int Completions = 0x2c;

    /// <summary>"MDMA".</summary>
    public const uint IdValue = 0x414d444d;

    /// <summary>
    /// Pin the source pages (read) and destination pages (write) with vfio_pin_pages, at most
    /// 512 per call, keeping them in the device's pin cache, then copy with vfio_dma_rw.
    /// </summary>
    public const uint CmdCopy = 1;

    /// <summary>Copy with vfio_dma_rw alone, pinning nothing.</summary>
    public const uint CmdCopyRw = 2;

    /// <summary>Drop the cached pins of the pages in [SRC, SRC + LEN).</summary>
    public const uint CmdUnpin = 3;

    /// <summary>Status: the last command finished.</summary>
    public const uint StatusDone = 1;

    /// <summary>Status: the last command failed; bits 31:16 hold the errno.</summary>
    public const uint StatusError = 2;

    /// <summary>Where the errno sits in the status register.</summary>
    public const int StatusErrnoShift = 16;

    /// <summary>PCI vendor id of the emulated function.</summary>
    public const ushort VendorId = 0x4d44;

    /// <summary>PCI device id of the emulated function.</summary>
    public const ushort DeviceId = 0x4d41;

    /// <summary>PCI class code (other system peripheral).</summary>
    public const uint ClassCode = 0x088000;

    /// <summary>Config-space offset of the MSI capability.</summary>
    public const int MsiCap = 0x40;
}
