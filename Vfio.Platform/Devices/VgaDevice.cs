// A VGA-class display function in the shape of QEMU's standard VGA (-device VGA, 1234:1111,
// class 0x030000): BAR0 a 16 MiB prefetchable framebuffer, BAR2 a 4 KiB register block, an
// expansion ROM holding a valid option-ROM image (OptionRom), and the legacy VGA decode
// (PciDevice.Vga.cs): the I/O ports 0x3b0–0x3bb and 0x3c0–0x3df and the memory window
// 0xa0000–0xbffff. Only enough of VGA is modelled for accesses to show something:
//   * 0x3c4/0x3c5 sequencer, 0x3ce/0x3cf graphics controller, 0x3d4/0x3d5 CRTC (0x3b4/0x3b5
//     while the miscellaneous output register selects mono) — index/data pairs whose
//     registers read back what was written;
//   * 0x3c2 (write) / 0x3cc (read) miscellaneous output; 0x3c6 PEL mask;
//   * 0x3c0/0x3c1 attribute controller with its index/data flip-flop, reset by reading input
//     status 1 (0x3da, or 0x3ba in mono), whose retrace bits toggle on every read;
//   * 0x3c7/0x3c8/0x3c9 the DAC: 256 entries of three 6-bit components, auto-incrementing;
//   * the memory window is the first 128 KiB of the framebuffer (a linear alias: no planar
//     or odd/even modes), so what is written at 0xa0000 reads back through BAR0 at 0.
// A word or dword port access is a byte access per port, low port first, as the bus splits it.
// Reset returns every register and the framebuffer to zero.

using Vfio.Kernel;
using Vfio.Platform.Machine;
using Vfio.Platform.Mm;
using Vfio.Platform.Pci;

namespace Vfio.Platform.Devices;

/// <summary>A VGA-compatible display function (QEMU's std VGA).</summary>
[PciDeviceModel("vga")]
public sealed class VgaDevice : PciDevice
{
    /// <summary>QEMU's vendor id.</summary>
    public const int VendorId = 0x1234;

    /// <summary>QEMU std VGA's device id.</summary>
    public const int DeviceId = 0x1111;

    /// <summary>PCI_CLASS_DISPLAY_VGA &lt;&lt; 8 (programming interface 0: VGA compatible).</summary>
    public const int ClassVga = 0x030000;

    /// <summary>The framebuffer BAR (0): 16 MiB.</summary>
    public const long FramebufferSize = 16L << 20;

    /// <summary>The register BAR (2): 4 KiB.</summary>
    public const long RegisterBarSize = 4096;

    private const int PageShift = 12;
    private const int PageSize = 1 << PageShift;

    // Protects every register below and the framebuffer pages.
    private readonly KSpinLock _lock;
    private readonly Dictionary<long, byte[]> _vram = [];
    private readonly byte[] _regBar = new byte[RegisterBarSize];
    private readonly byte[] _seq = new byte[8];
    private readonly byte[] _gc = new byte[16];
    private readonly byte[] _crtc = new byte[32];
    private readonly byte[] _attr = new byte[32];
    private readonly byte[] _dac = new byte[256 * 3];
    private byte _seqIndex, _gcIndex, _crtcIndex, _attrIndex;
    private bool _attrData;
    private byte _misc;
    private byte _pelMask = 0xff;
    private byte _status1;
    private int _dacRead, _dacWrite;
    private bool _dacReading;

    /// <summary>Builds the function at <paramref name="address"/>; a <c>rom</c> size in the description adds the ROM.</summary>
    public VgaDevice(SimMachine machine, PciAddress address, PciFunctionDescription description)
        : base(machine, address, description.Pcie is null ? description with { Pcie = false } : description, new PciIdentity(VendorId, DeviceId, 0x1af4, 0x1100, ClassVga, 2))
    {
        _lock = new KSpinLock(machine.Kernel, $"vga[{Name}].regs");
        AddBar(0, FramebufferSize, PciBarKind.Memory32, prefetchable: true);
        AddBar(2, RegisterBarSize, PciBarKind.Memory32);
        if (description.RomSize > 0)
        {
            AddRom(description.RomSize);
            SetRomContent(OptionRom.Shared(Identity, description.RomSize, description.RomImages));
        }

        AddLegacyVga();
    }

    /// <summary>The miscellaneous output register (bit 0 selects the colour CRTC ports 0x3d4/0x3d5).</summary>
    public byte MiscOutput
    {
        get
        {
            _lock.Lock();
            byte v = _misc;
            _lock.Unlock();
            return v;
        }
    }

    /// <inheritdoc/>
    protected override void BarRead(int bar, long offset, Span<byte> data)
    {
        _lock.Lock();
        try
        {
            if (bar == 0)
            {
                VramRead(offset, data);
            }
            else if (bar == 2)
            {
                _regBar.AsSpan((int)offset, data.Length).CopyTo(data);
            }
            else
            {
                data.Clear();
            }
        }
        finally
        {
            _lock.Unlock();
        }
    }

    /// <inheritdoc/>
    protected override void BarWrite(int bar, long offset, ReadOnlySpan<byte> data)
    {
        _lock.Lock();
        try
        {
            if (bar == 0)
            {
                VramWrite(offset, data);
            }
            else if (bar == 2)
            {
                data.CopyTo(_regBar.AsSpan((int)offset));
            }
        }
        finally
        {
            _lock.Unlock();
        }
    }

    /// <inheritdoc/>
    protected override void LegacyVgaRead(bool io, long address, Span<byte> data)
    {
        _lock.Lock();
        try
        {
            if (!io)
            {
                VramRead(address - PhysMem.LegacyVgaStart, data);
                return;
            }

            for (int i = 0; i < data.Length; i++)
            {
                data[i] = PortRead((int)address + i);
            }
        }
        finally
        {
            _lock.Unlock();
        }
    }

    /// <inheritdoc/>
    protected override void LegacyVgaWrite(bool io, long address, ReadOnlySpan<byte> data)
    {
        _lock.Lock();
        try
        {
            if (!io)
            {
                VramWrite(address - PhysMem.LegacyVgaStart, data);
                return;
            }

            for (int i = 0; i < data.Length; i++)
            {
                PortWrite((int)address + i, data[i]);
            }
        }
        finally
        {
            _lock.Unlock();
        }
    }

    /// <inheritdoc/>
    protected override void OnReset(PciResetKind kind)
    {
        _lock.Lock();
        try
        {
            _vram.Clear();
            Array.Clear(_regBar);
            Array.Clear(_seq);
            Array.Clear(_gc);
            Array.Clear(_crtc);
            Array.Clear(_attr);
            Array.Clear(_dac);
            _seqIndex = _gcIndex = _crtcIndex = _attrIndex = 0;
            _attrData = false;
            _misc = 0;
            _pelMask = 0xff;
            _status1 = 0;
            _dacRead = _dacWrite = 0;
            _dacReading = false;
        }
        finally
        {
            _lock.Unlock();
        }
    }

    private bool Mono => (_misc & 1) == 0;

    private byte PortRead(int port)
    {
        switch (port)
        {
            case 0x3c0:
                return _attrIndex;
            case 0x3c1:
                return _attr[_attrIndex & 0x1f];
            case 0x3c2:
                return 0; // input status 0
            case 0x3c4:
                return _seqIndex;
            case 0x3c5:
                return _seq[_seqIndex & 7];
            case 0x3c6:
                return _pelMask;
            case 0x3c7:
                return (byte)(_dacReading ? 3 : 0);
            case 0x3c8:
                return (byte)(_dacWrite / 3);
            case 0x3c9:
                byte v = _dac[_dacRead];
                _dacRead = (_dacRead + 1) % _dac.Length;
                return v;
            case 0x3cc:
                return _misc;
            case 0x3ce:
                return _gcIndex;
            case 0x3cf:
                return _gc[_gcIndex & 0xf];
            case 0x3b4 or 0x3d4 when (port == 0x3b4) == Mono:
                return _crtcIndex;
            case 0x3b5 or 0x3d5 when (port == 0x3b5) == Mono:
                return _crtc[_crtcIndex & 0x1f];
            case 0x3ba or 0x3da when (port == 0x3ba) == Mono:
                // Input status 1: the retrace bits toggle; the read resets the attribute flip-flop.
                _attrData = false;
                _status1 ^= 0x09;
                return _status1;
            default:
                return 0xff;
        }
    }

    private void PortWrite(int port, byte value)
    {
        switch (port)
        {
            case 0x3c0:
                if (_attrData)
                {
                    _attr[_attrIndex & 0x1f] = value;
                }
                else
                {
                    _attrIndex = value;
                }

                _attrData = !_attrData;
                break;
            case 0x3c2:
                _misc = value;
                break;
            case 0x3c4:
                _seqIndex = value;
                break;
            case 0x3c5:
                _seq[_seqIndex & 7] = value;
                break;
            case 0x3c6:
                _pelMask = value;
                break;
            case 0x3c7:
                _dacRead = value * 3;
                _dacReading = true;
                break;
            case 0x3c8:
                _dacWrite = value * 3;
                _dacReading = false;
                break;
            case 0x3c9:
                _dac[_dacWrite] = (byte)(value & 0x3f);
                _dacWrite = (_dacWrite + 1) % _dac.Length;
                break;
            case 0x3ce:
                _gcIndex = value;
                break;
            case 0x3cf:
                _gc[_gcIndex & 0xf] = value;
                break;
            case 0x3b4 or 0x3d4 when (port == 0x3b4) == Mono:
                _crtcIndex = value;
                break;
            case 0x3b5 or 0x3d5 when (port == 0x3b5) == Mono:
                _crtc[_crtcIndex & 0x1f] = value;
                break;
        }
    }

    private void VramRead(long offset, Span<byte> data)
    {
        _lock.AssertHeld();
        while (!data.IsEmpty)
        {
            int inPage = (int)Math.Min(data.Length, PageSize - (offset & (PageSize - 1)));
            if (_vram.TryGetValue(offset >> PageShift, out byte[]? page))
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

    private void VramWrite(long offset, ReadOnlySpan<byte> data)
    {
        _lock.AssertHeld();
        while (!data.IsEmpty && offset < FramebufferSize)
        {
            int inPage = (int)Math.Min(data.Length, PageSize - (offset & (PageSize - 1)));
            if (!_vram.TryGetValue(offset >> PageShift, out byte[]? page))
            {
                page = new byte[PageSize];
                _vram[offset >> PageShift] = page;
            }

            data[..inPage].CopyTo(page.AsSpan((int)(offset & (PageSize - 1))));
            offset += inPage;
            data = data[inPage..];
        }
    }
}
