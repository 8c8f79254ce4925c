// Models the configuration space of a PCI function as hardware presents it (PCI Local Bus
// 3.0 §6, PCI Express 6.0 §7) (v6.12 pci_regs.h layout): 4 KiB of registers with a mask
// of writable bits and a mask of write-1-to-clear bits, as QEMU's hw/pci/pci.c keeps them,
// and the capability lists (standard ones chained from 0x34, extended ones from 0x100).
//
// Lock rule: the owning device's ConfigLock (pci_lock) serialises accesses; this type is
// plain data under it.

using System.Buffers.Binary;

namespace Vfio.Platform.Pci;

/// <summary>The 4 KiB configuration space of one function, with per-bit write semantics.</summary>
public sealed class PciConfigSpace
{
    private readonly byte[] _data;
    // The masks cover the registers from 0 up to their length (a multiple of 256, at most the
    // space's size) and grow when a bit beyond is made writable; past their end nothing is
    // writable. Most extended spaces have few or no writable bits.
    private byte[] _wmask;
    private byte[] _w1cmask;
    private int _lastCap;
    private int _nextExtCap = PciRegs.StdConfigSpaceSize;
    private int _lastExtCap;

    // The power-on state (what a reset restores), copy-on-write: CapturePowerOn only marks the
    // current registers and masks as that state; the first change after it copies them out.
    // Registers change after power-on at enumeration (BAR addresses), masks only while the
    // model builds its function, so most functions never copy their masks.
    private byte[]? _powerOnData;
    private byte[]? _powerOnWmask;
    private byte[]? _powerOnW1c;
    private bool _hasPowerOn;
    private bool _dataIsPowerOn;
    private bool _masksArePowerOn;

    /// <summary>An all-zero space of <paramref name="size"/> bytes (256 for conventional PCI, 4096 for PCI Express).</summary>
    public PciConfigSpace(int size = PciRegs.ConfigSpaceSize)
    {
        if (size != PciRegs.StdConfigSpaceSize && size != PciRegs.ConfigSpaceSize)
        {
            throw new ArgumentOutOfRangeException(nameof(size), size, "configuration space is 256 or 4096 bytes");
        }

        _data = new byte[size];
        _wmask = new byte[PciRegs.StdConfigSpaceSize];
        _w1cmask = new byte[PciRegs.StdConfigSpaceSize];
        NextCapOffset = 0x40;
    }

    /// <summary>256 or 4096.</summary>
    public int Size => _data.Length;

    /// <summary>The raw register bytes (hardware's view; the PCI core reads through <see cref="Read"/>).</summary>
    public ReadOnlySpan<byte> Bytes => _data;

    /// <summary>Where the next standard capability goes.</summary>
    public int NextCapOffset { get; private set; }

    /// <summary>Reads <paramref name="size"/> (1, 2 or 4) bytes at <paramref name="offset"/>, little endian.</summary>
    public uint Read(int offset, int size)
    {
        CheckAccess(offset, size);
        return size switch
        {
            1 => _data[offset],
            2 => BinaryPrimitives.ReadUInt16LittleEndian(_data.AsSpan(offset)),
            _ => BinaryPrimitives.ReadUInt32LittleEndian(_data.AsSpan(offset)),
        };
    }

    /// <summary>
    /// A bus write of <paramref name="size"/> bytes: writable bits take the new value,
    /// write-1-to-clear bits are cleared where a 1 is written, the rest stay.
    /// </summary>
    public void Write(int offset, uint value, int size)
    {
        CheckAccess(offset, size);
        DataChanging();
        for (int i = 0; i < size; i++)
        {
            int a = offset + i;
            byte v = (byte)(value >> (8 * i));
            byte wm = 0, w1c = 0;
            if (a < _wmask.Length)
            {
                wm = _wmask[a];
                w1c = _w1cmask[a];
            }

            _data[a] = (byte)((_data[a] & ~wm) | (v & wm));
            _data[a] = (byte)(_data[a] & ~(v & w1c));
        }
    }

    // ---- Device-side accessors: the hardware sets its own read-only state.

    /// <summary>Sets a byte regardless of masks (the device's own state).</summary>
    public void SetByte(int offset, byte value)
    {
        DataChanging();
        _data[offset] = value;
    }

    /// <summary>Sets a 16-bit register regardless of masks.</summary>
    public void SetWord(int offset, ushort value)
    {
        DataChanging();
        BinaryPrimitives.WriteUInt16LittleEndian(_data.AsSpan(offset), value);
    }

    /// <summary>Sets a 32-bit register regardless of masks.</summary>
    public void SetDword(int offset, uint value)
    {
        DataChanging();
        BinaryPrimitives.WriteUInt32LittleEndian(_data.AsSpan(offset), value);
    }

    /// <summary>The byte at <paramref name="offset"/>.</summary>
    public byte GetByte(int offset) => _data[offset];

    /// <summary>The 16-bit register at <paramref name="offset"/>.</summary>
    public ushort GetWord(int offset) => BinaryPrimitives.ReadUInt16LittleEndian(_data.AsSpan(offset));

    /// <summary>The 32-bit register at <paramref name="offset"/>.</summary>
    public uint GetDword(int offset) => BinaryPrimitives.ReadUInt32LittleEndian(_data.AsSpan(offset));

    /// <summary>Makes the bits of <paramref name="mask"/> in the 16-bit register writable.</summary>
    public void SetWritableWord(int offset, ushort mask)
    {
        MasksChanging(offset + 2);
        BinaryPrimitives.WriteUInt16LittleEndian(_wmask.AsSpan(offset), mask);
    }

    /// <summary>Makes the bits of <paramref name="mask"/> in the 32-bit register writable.</summary>
    public void SetWritableDword(int offset, uint mask)
    {
        MasksChanging(offset + 4);
        BinaryPrimitives.WriteUInt32LittleEndian(_wmask.AsSpan(offset), mask);
    }

    /// <summary>Makes the byte writable under <paramref name="mask"/>.</summary>
    public void SetWritableByte(int offset, byte mask)
    {
        MasksChanging(offset + 1);
        _wmask[offset] = mask;
    }

    /// <summary>Makes the bits of <paramref name="mask"/> in the 16-bit register write-1-to-clear.</summary>
    public void SetW1cWord(int offset, ushort mask)
    {
        MasksChanging(offset + 2);
        BinaryPrimitives.WriteUInt16LittleEndian(_w1cmask.AsSpan(offset), mask);
    }

    /// <summary>The writable-bit mask of the 32-bit register at <paramref name="offset"/>.</summary>
    public uint WritableDword(int offset) => offset >= 0 && offset + 4 <= _wmask.Length ? BinaryPrimitives.ReadUInt32LittleEndian(_wmask.AsSpan(offset)) : 0;

    // ---- Capability lists.

    /// <summary>
    /// Appends a standard capability of <paramref name="length"/> bytes with id <paramref name="id"/>
    /// to the list at 0x34 (sets Status.CapList) and returns its offset.
    /// </summary>
    public int AddCapability(byte id, int length)
    {
        int off = NextCapOffset;
        if (off + length > PciRegs.StdConfigSpaceSize)
        {
            throw new InvalidOperationException($"capability 0x{id:x2} of {length} bytes does not fit below 0x100 (next free 0x{off:x})");
        }

        DataChanging();
        _data[off] = id;
        _data[off + 1] = 0;
        if (_lastCap == 0)
        {
            _data[PciRegs.CapabilityList] = (byte)off;
            SetWord(PciRegs.Status, (ushort)(GetWord(PciRegs.Status) | PciRegs.StatusCapList));
        }
        else
        {
            _data[_lastCap + 1] = (byte)off;
        }

        _lastCap = off;
        NextCapOffset = (off + length + 3) & ~3;
        return off;
    }

    /// <summary>Appends an extended capability (PCI Express) and returns its offset.</summary>
    public int AddExtCapability(ushort id, byte version, int length)
    {
        if (Size < PciRegs.ConfigSpaceSize)
        {
            throw new InvalidOperationException("extended capabilities need a 4 KiB (PCI Express) configuration space");
        }

        int off = _nextExtCap;
        if (off + length > Size)
        {
            throw new InvalidOperationException($"extended capability 0x{id:x4} does not fit");
        }

        SetDword(off, id | ((uint)version << 16));
        if (_lastExtCap != 0)
        {
            uint prev = GetDword(_lastExtCap);
            SetDword(_lastExtCap, (prev & 0x000fffff) | ((uint)off << 20));
        }

        _lastExtCap = off;
        _nextExtCap = (off + length + 3) & ~3;
        return off;
    }

    /// <summary>pci_find_capability(): the offset of standard capability <paramref name="id"/>, or 0.</summary>
    public int FindCapability(byte id)
    {
        if ((GetWord(PciRegs.Status) & PciRegs.StatusCapList) == 0)
        {
            return 0;
        }

        int pos = _data[PciRegs.CapabilityList] & ~3;
        for (int ttl = 48; pos >= 0x40 && ttl > 0; ttl--)
        {
            if (_data[pos] == id)
            {
                return pos;
            }

            pos = _data[pos + 1] & ~3;
        }

        return 0;
    }

    /// <summary>pci_find_ext_capability(): the offset of extended capability <paramref name="id"/>, or 0.</summary>
    public int FindExtCapability(ushort id)
    {
        if (Size < PciRegs.ConfigSpaceSize)
        {
            return 0;
        }

        int pos = PciRegs.StdConfigSpaceSize;
        for (int ttl = (PciRegs.ConfigSpaceSize - PciRegs.StdConfigSpaceSize) / 8; ttl > 0 && pos >= PciRegs.StdConfigSpaceSize; ttl--)
        {
            uint header = GetDword(pos);
            if (header == 0)
            {
                return 0;
            }

            if ((header & 0xffff) == id)
            {
                return pos;
            }

            pos = (int)(header >> 20) & ~3;
        }

        return 0;
    }

    /// <summary>A copy of registers and masks, restored by <see cref="Restore"/> (power-on state for resets).</summary>
    public (byte[] Data, byte[] Wmask, byte[] W1c) Snapshot()
    {
        byte[] wmask = new byte[Size];
        byte[] w1c = new byte[Size];
        _wmask.CopyTo(wmask, 0);
        _w1cmask.CopyTo(w1c, 0);
        return ((byte[])_data.Clone(), wmask, w1c);
    }

    /// <summary>A copy of the registers alone (what pci_save_state keeps).</summary>
    public byte[] SnapshotRegisters() => (byte[])_data.Clone();

    /// <summary>The registers into <paramref name="into"/> (as long as <see cref="SnapshotRegisters()"/>'s copy), or a new copy when it is null or of another length.</summary>
    public byte[] SnapshotRegisters(byte[]? into)
    {
        if (into is null || into.Length != _data.Length)
        {
            return SnapshotRegisters();
        }

        _data.CopyTo(into, 0);
        return into;
    }

    /// <summary>Overwrites <paramref name="snapshot"/> (taken by <see cref="Snapshot"/> of this space) with the current registers and masks.</summary>
    public void SnapshotInto((byte[] Data, byte[] Wmask, byte[] W1c) snapshot)
    {
        _data.CopyTo(snapshot.Data, 0);
        _wmask.CopyTo(snapshot.Wmask, 0);
        _w1cmask.CopyTo(snapshot.W1c, 0);
        snapshot.Wmask.AsSpan(_wmask.Length).Clear();
        snapshot.W1c.AsSpan(_w1cmask.Length).Clear();
    }

    /// <summary>Puts back registers captured by <see cref="Snapshot"/>.</summary>
    public void Restore((byte[] Data, byte[] Wmask, byte[] W1c) snapshot)
    {
        DataChanging();
        MasksChanging(Size);
        snapshot.Data.CopyTo(_data, 0);
        snapshot.Wmask.CopyTo(_wmask, 0);
        snapshot.W1c.CopyTo(_w1cmask, 0);
    }

    /// <summary>Makes the current registers and masks the power-on state that <see cref="RestorePowerOn"/> puts back.</summary>
    internal void CapturePowerOn()
    {
        _hasPowerOn = true;
        _dataIsPowerOn = true;
        _masksArePowerOn = true;
    }

    /// <summary>Puts back the registers and masks of the last <see cref="CapturePowerOn"/> (a reset).</summary>
    internal void RestorePowerOn()
    {
        if (!_hasPowerOn)
        {
            throw new InvalidOperationException("no power-on state was captured");
        }

        // A saved copy exists exactly when the state changed since the capture; it stays
        // valid after being put back, so later changes need not copy again.
        if (!_dataIsPowerOn)
        {
            _powerOnData!.CopyTo(_data, 0);
        }

        if (!_masksArePowerOn)
        {
            // The masks only grow: a longer current mask has nothing writable past the saved one.
            _powerOnWmask!.CopyTo(_wmask, 0);
            _powerOnW1c!.CopyTo(_w1cmask, 0);
            _wmask.AsSpan(_powerOnWmask.Length).Clear();
            _w1cmask.AsSpan(_powerOnW1c.Length).Clear();
        }
    }

    private void DataChanging()
    {
        if (_dataIsPowerOn)
        {
            _powerOnData ??= new byte[_data.Length];
            _data.CopyTo(_powerOnData, 0);
            _dataIsPowerOn = false;
        }
    }

    /// <summary>
    /// True while the model builds its function: every change of the masks is then followed by
    /// a <see cref="CapturePowerOn"/> (no reset can come in between), so none is copied out.
    /// </summary>
    internal bool Building { get; set; }

    /// <summary>Before a change of the masks below <paramref name="end"/>: saves the power-on masks if due, and grows the masks to cover <paramref name="end"/>.</summary>
    private void MasksChanging(int end)
    {
        if (_masksArePowerOn && !Building)
        {
            if (_powerOnWmask is null || _powerOnWmask.Length != _wmask.Length)
            {
                _powerOnWmask = new byte[_wmask.Length];
                _powerOnW1c = new byte[_w1cmask.Length];
            }

            _wmask.CopyTo(_powerOnWmask, 0);
            _w1cmask.CopyTo(_powerOnW1c!, 0);
            _masksArePowerOn = false;
        }

        if (end > _wmask.Length)
        {
            int length = Math.Min(Size, (end + PciRegs.StdConfigSpaceSize - 1) & ~(PciRegs.StdConfigSpaceSize - 1));
            Array.Resize(ref _wmask, length);
            Array.Resize(ref _w1cmask, length);
        }
    }

    private void CheckAccess(int offset, int size)
    {
        if (size is not (1 or 2 or 4) || offset < 0 || offset + size > _data.Length || (offset & (size - 1)) != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(offset), $"config access of {size} bytes at 0x{offset:x} is not a naturally aligned access inside {_data.Length} bytes");
        }
    }
}
