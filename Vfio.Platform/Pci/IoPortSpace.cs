// Models the x86 I/O port space as PCI I/O BARs decode it (kernel/resource.c ioport_resource,
// the inb/outb family): 64 Ki ports; a function answers the ports of an I/O BAR while its
// COMMAND.IO bit is set; a port nobody decodes reads all-ones and drops writes (master
// abort), as on a PC.
//
// Lock rule: _lock protects the sorted range list. Device handlers run after it is dropped.

using Vfio.Kernel;
using Vfio.Platform.Mm;

namespace Vfio.Platform.Pci;

/// <summary>The machine's I/O port space: ports 0..0xffff routed to the I/O BARs that decode them.</summary>
public sealed class IoPortSpace
{
    /// <summary>One past the last port (IO_SPACE_LIMIT + 1).</summary>
    public const int Size = 0x10000;

    /// <summary>Where firmware starts placing PCI I/O BARs (below are the legacy ISA ports).</summary>
    public const int PciStart = 0x1000;

    // Under _lock.
    private readonly AddressRangeMap _ranges = new();
    private readonly KSpinLock _lock;

    internal IoPortSpace(SimKernel kernel)
    {
        _lock = new KSpinLock(kernel, "ioport_resource.lock");
    }

    /// <summary>
    /// Routes ports [<paramref name="start"/>, +<paramref name="length"/>) to
    /// <paramref name="handler"/>; false (nothing routed) when the range leaves the port space
    /// or overlaps a routed range.
    /// </summary>
    internal bool TryRegister(int start, int length, IMmioHandler handler)
    {
        int end = start + length;
        if (start <= 0 || length <= 0 || end > Size)
        {
            return false;
        }

        _lock.Lock();
        try
        {
            return _ranges.TryAdd(start, end, handler);
        }
        finally
        {
            _lock.Unlock();
        }
    }

    /// <summary>Removes the range starting at <paramref name="start"/>.</summary>
    internal void Unregister(int start)
    {
        _lock.Lock();
        try
        {
            _ranges.Remove(start);
        }
        finally
        {
            _lock.Unlock();
        }
    }

    /// <summary>
    /// inb/inw/inl: one access of <paramref name="data"/>.Length bytes; all-ones where no
    /// device decodes. Ports have no 8-byte access: 8 bytes are two inl, low then high (what
    /// ioread64_lo_hi does on a port mapping).
    /// </summary>
    public void Read(int port, Span<byte> data)
    {
        if (data.Length == 8)
        {
            Read(port, data[..4]);
            Read(port + 4, data[4..]);
            return;
        }

        IMmioHandler? h = Find(port, data.Length, out long offset);
        if (h is null)
        {
            data.Fill(0xff);
        }
        else
        {
            h.Read(offset, data);
        }
    }

    /// <summary>outb/outw/outl: one access; dropped where no device decodes. 8 bytes are two outl, low then high.</summary>
    public void Write(int port, ReadOnlySpan<byte> data)
    {
        if (data.Length == 8)
        {
            Write(port, data[..4]);
            Write(port + 4, data[4..]);
            return;
        }

        Find(port, data.Length, out long offset)?.Write(offset, data);
    }

    private IMmioHandler? Find(int port, int length, out long offset)
    {
        _lock.Lock();
        try
        {
            return _ranges.Find(port, length, out offset);
        }
        finally
        {
            _lock.Unlock();
        }
    }
}
