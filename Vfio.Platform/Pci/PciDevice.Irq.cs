// Models a function's interrupt hardware (PCI Local Bus 3.0 §6.8, PCIe 6.0 §6.1): the
// INTx pin with the command register's disable bit and the status register's interrupt
// bit; MSI with 32/64-bit messages, multiple-message enable and optional per-vector masks;
// MSI-X with its table and PBA inside a BAR, the function mask and per-entry masks. A
// masked vector sets its pending bit and fires when unmasked. Messages are memory writes
// by the function: those that hit the interrupt window go to the interrupt controller.
// Without bus mastering a function sends no MSI/MSI-X, as the PCI specification requires.

using System.Buffers.Binary;

namespace Vfio.Platform.Pci;

public partial class PciDevice
{
    private int _msiCap;
    private int _msixCap;
    private int _msixVectors;
    private int _msixTableBar = -1;
    private long _msixTableOffset;
    private int _msixPbaBar = -1;
    private long _msixPbaOffset;
    private byte[] _msixTable = [];
    private ulong[] _msixPending = [];
    private bool _intxAsserted;
    private long _msiSent;
    private long _intxRaised;

    /// <summary>dev-&gt;irq: the host interrupt line firmware routed the pin to (0 without a pin).</summary>
    public int Irq { get; internal set; }

    /// <summary>The interrupt pin (0 none, 1 INTA# … 4 INTD#).</summary>
    public int InterruptPin => Config.GetByte(PciRegs.InterruptPin);

    /// <summary>Offset of the MSI capability, 0 if none.</summary>
    public int MsiCap => _msiCap;

    /// <summary>Offset of the MSI-X capability, 0 if none.</summary>
    public int MsixCap => _msixCap;

    /// <summary>Number of MSI-X vectors (table size), 0 if none.</summary>
    public int MsixVectors => _msixVectors;

    /// <summary>The BAR holding the MSI-X table, and its offset in it (-1 when there is no MSI-X).</summary>
    public (int Bar, long Offset) MsixTableLocation => (_msixTableBar, _msixTableOffset);

    /// <summary>The BAR holding the MSI-X PBA, and its offset in it.</summary>
    public (int Bar, long Offset) MsixPbaLocation => (_msixPbaBar, _msixPbaOffset);

    /// <summary>True while the device drives its INTx line.</summary>
    public bool IntxAsserted => _intxAsserted;

    /// <summary>MSI and MSI-X messages sent so far.</summary>
    public long MessagesSent => Interlocked.Read(ref _msiSent);

    /// <summary>INTx assertions that reached the interrupt controller.</summary>
    public long IntxRaisedCount => Interlocked.Read(ref _intxRaised);

    // ---- Construction.

    /// <summary>Sets the interrupt pin (1 = INTA#).</summary>
    protected void SetInterruptPin(int pin)
    {
        CheckBuilding();
        ArgumentOutOfRangeException.ThrowIfNegative(pin);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(pin, 4);
        Config.SetByte(PciRegs.InterruptPin, (byte)pin);
        RecapturePowerOn();
    }

    /// <summary>Adds an MSI capability for <paramref name="vectors"/> (1, 2, 4 … 32) vectors.</summary>
    protected int AddMsiCapability(int vectors, bool is64Bit = true, bool perVectorMask = false)
    {
        CheckBuilding();
        if (vectors is < 1 or > 32 || (vectors & (vectors - 1)) != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(vectors), vectors, "MSI supports 1, 2, 4, 8, 16 or 32 vectors");
        }

        int len = 10 + (is64Bit ? 4 : 0) + (perVectorMask ? 10 : 0);
        int cap = Config.AddCapability(PciRegs.CapIdMsi, len);
        ushort flags = (ushort)(System.Numerics.BitOperations.Log2((uint)vectors) << 1);
        flags |= is64Bit ? PciRegs.MsiFlags64Bit : (ushort)0;
        flags |= perVectorMask ? PciRegs.MsiFlagsMaskBit : (ushort)0;
        Config.SetWord(cap + PciRegs.MsiFlags, flags);
        Config.SetWritableWord(cap + PciRegs.MsiFlags, PciRegs.MsiFlagsEnable | PciRegs.MsiFlagsQsize);
        Config.SetWritableDword(cap + PciRegs.MsiAddressLo, 0xfffffffc);
        if (is64Bit)
        {
            Config.SetWritableDword(cap + 8, 0xffffffff);
        }

        Config.SetWritableWord(MsiDataOffset(cap, flags), 0xffff);
        if (perVectorMask)
        {
            Config.SetWritableDword(MsiDataOffset(cap, flags) + 4, vectors == 32 ? 0xffffffff : (1u << vectors) - 1);
        }

        _msiCap = cap;
        RecapturePowerOn();
        return cap;
    }

    /// <summary>Adds an MSI-X capability: <paramref name="vectors"/> entries, table and PBA in BARs of this function.</summary>
    protected int AddMsixCapability(int vectors, int tableBar, long tableOffset, int pbaBar, long pbaOffset)
    {
        CheckBuilding();
        ArgumentOutOfRangeException.ThrowIfLessThan(vectors, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(vectors, 2048);
        PciBar tb = _bars[tableBar] ?? throw new InvalidOperationException($"{Name}: MSI-X table BAR {tableBar} is not implemented");
        PciBar pb = _bars[pbaBar] ?? throw new InvalidOperationException($"{Name}: MSI-X PBA BAR {pbaBar} is not implemented");
        long pbaBytes = ((vectors + 63) / 64) * 8;
        if ((tableOffset & 7) != 0 || (pbaOffset & 7) != 0 || tableOffset + (vectors * 16L) > tb.Size || pbaOffset + pbaBytes > pb.Size)
        {
            throw new ArgumentOutOfRangeException(nameof(tableOffset), "the MSI-X table and PBA must be 8-byte aligned and inside their BARs");
        }

        int cap = Config.AddCapability(PciRegs.CapIdMsix, PciRegs.MsixCapSizeof);
        Config.SetWord(cap + PciRegs.MsixFlags, (ushort)(vectors - 1));
        Config.SetWritableWord(cap + PciRegs.MsixFlags, PciRegs.MsixFlagsEnable | PciRegs.MsixFlagsMaskAll);
        Config.SetDword(cap + PciRegs.MsixTable, (uint)tableOffset | (uint)tableBar);
        Config.SetDword(cap + PciRegs.MsixPba, (uint)pbaOffset | (uint)pbaBar);
        _msixCap = cap;
        _msixVectors = vectors;
        _msixTableBar = tableBar;
        _msixTableOffset = tableOffset;
        _msixPbaBar = pbaBar;
        _msixPbaOffset = pbaOffset;
        _msixTable = new byte[vectors * PciRegs.MsixEntrySize];
        _msixPending = new ulong[(vectors + 63) / 64];
        ResetMsixTable();
        RecapturePowerOn();
        return cap;
    }

    private static int MsiDataOffset(int cap, ushort flags) => cap + ((flags & PciRegs.MsiFlags64Bit) != 0 ? 12 : 8);

    private void ResetMsixTable()
    {
        Array.Clear(_msixTable);
        Array.Clear(_msixPending);
        for (int v = 0; v < _msixVectors; v++)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(_msixTable.AsSpan((v * PciRegs.MsixEntrySize) + 12), PciRegs.MsixEntryCtrlMaskBit);
        }
    }

    // ---- Device side: raising interrupts.

    /// <summary>
    /// The device drives INTx# (level): the status bit sets, and unless INTx is disabled the
    /// controller sees it. True when the assertion reached the controller (false: no pin,
    /// already asserted, or INTx disabled).
    /// </summary>
    protected bool AssertIntx()
    {
        bool deliver;
        ConfigLock.Lock();
        try
        {
            if (InterruptPin == 0)
            {
                return false;
            }

            deliver = !_intxAsserted && (Config.GetWord(PciRegs.Command) & PciRegs.CommandIntxDisable) == 0;
            _intxAsserted = true;
            Config.SetWord(PciRegs.Status, (ushort)(Config.GetWord(PciRegs.Status) | PciRegs.StatusInterrupt));
        }
        finally
        {
            ConfigLock.Unlock();
        }

        if (deliver)
        {
            Interlocked.Increment(ref _intxRaised);
            Machine.Interrupts.IntxRaised(this);
        }

        return deliver;
    }

    /// <summary>
    /// True while the function drives INTx# to the interrupt controller: asserted, DisINTx
    /// clear, and neither MSI nor MSI-X enabled.
    /// </summary>
    public bool IntxLineActive
    {
        get
        {
            ConfigLock.Lock();
            try
            {
                return _intxAsserted && (Config.GetWord(PciRegs.Command) & PciRegs.CommandIntxDisable) == 0 && !MsiEnabled && !MsixEnabled;
            }
            finally
            {
                ConfigLock.Unlock();
            }
        }
    }

    /// <summary>
    /// pci_check_and_mask_intx(): when the status register shows an interrupt, sets DisINTx
    /// and returns true; otherwise changes nothing. Atomic against the device raising.
    /// </summary>
    public bool CheckAndMaskIntx()
    {
        ConfigLock.Lock();
        try
        {
            if ((Config.GetWord(PciRegs.Status) & PciRegs.StatusInterrupt) == 0)
            {
                return false;
            }

            Config.SetWord(PciRegs.Command, (ushort)(Config.GetWord(PciRegs.Command) | PciRegs.CommandIntxDisable));
            return true;
        }
        finally
        {
            ConfigLock.Unlock();
        }
    }

    /// <summary>
    /// pci_check_and_unmask_intx(): when the status register shows no interrupt, clears
    /// DisINTx and returns true; while the device still asserts, leaves it masked and returns
    /// false. Atomic against the device raising.
    /// </summary>
    public bool CheckAndUnmaskIntx()
    {
        ConfigLock.Lock();
        try
        {
            if ((Config.GetWord(PciRegs.Status) & PciRegs.StatusInterrupt) != 0)
            {
                return false;
            }

            Config.SetWord(PciRegs.Command, (ushort)(Config.GetWord(PciRegs.Command) & ~PciRegs.CommandIntxDisable));
            return true;
        }
        finally
        {
            ConfigLock.Unlock();
        }
    }

    /// <summary>The device releases INTx#.</summary>
    protected void DeassertIntx()
    {
        ConfigLock.Lock();
        _intxAsserted = false;
        Config.SetWord(PciRegs.Status, (ushort)(Config.GetWord(PciRegs.Status) & ~PciRegs.StatusInterrupt));
        ConfigLock.Unlock();
    }

    /// <summary>
    /// The level the device wants on INTx# (e.g. "interrupt status != 0"); read by
    /// <see cref="SyncIntx"/>. Default: never asserted.
    /// </summary>
    protected virtual bool IntxLevel() => false;

    /// <summary>
    /// Drives INTx# to follow <see cref="IntxLevel"/>. A handler runs in this task and may
    /// change the device's registers (acknowledge), so the level is evaluated again until
    /// line and level agree. Nothing happens without an interrupt pin.
    /// </summary>
    protected void SyncIntx()
    {
        while (InterruptPin != 0)
        {
            bool want = IntxLevel();
            if (want == IntxAsserted)
            {
                return;
            }

            if (want)
            {
                AssertIntx();
            }
            else
            {
                DeassertIntx();
            }
        }
    }

    /// <summary>
    /// Signals interrupt <paramref name="vector"/> the way the function is configured: MSI-X
    /// if enabled, else MSI if enabled, else INTx (for vector 0). Returns true if a message or
    /// an INTx assertion went out (false: masked and left pending, disabled, or no bus master).
    /// </summary>
    protected bool RaiseInterrupt(int vector = 0)
    {
        if (MsixEnabled)
        {
            return RaiseMsix(vector);
        }

        if (MsiEnabled)
        {
            return RaiseMsi(vector);
        }

        return vector == 0 && AssertIntx();
    }

    /// <summary>MSI enable bit.</summary>
    public bool MsiEnabled => _msiCap != 0 && (Config.GetWord(_msiCap + PciRegs.MsiFlags) & PciRegs.MsiFlagsEnable) != 0;

    /// <summary>MSI-X enable bit.</summary>
    public bool MsixEnabled => _msixCap != 0 && (Config.GetWord(_msixCap + PciRegs.MsixFlags) & PciRegs.MsixFlagsEnable) != 0;

    /// <summary>Sends MSI vector <paramref name="vector"/>, or sets its pending bit when masked.</summary>
    protected bool RaiseMsi(int vector)
    {
        ulong address;
        uint data;
        ConfigLock.Lock();
        try
        {
            if (!MsiEnabled || !BusMaster || vector < 0 || vector >= MsiEnabledVectorsLocked())
            {
                return false;
            }

            int dataOff = MsiDataOffset(_msiCap, Config.GetWord(_msiCap + PciRegs.MsiFlags));
            if (MsiPerVectorMaskLocked() && (Config.GetDword(dataOff + 4) & (1u << vector)) != 0)
            {
                Config.SetDword(dataOff + 8, Config.GetDword(dataOff + 8) | (1u << vector));
                return false;
            }

            (address, data) = MsiMessageLocked(vector);
        }
        finally
        {
            ConfigLock.Unlock();
        }

        SendMessage(address, data);
        return true;
    }

    /// <summary>Multiple Message Enable, as a vector count (a value above Multiple Message Capable acts as the capable count).</summary>
    private int MsiEnabledVectorsLocked()
    {
        ConfigLock.AssertHeld();
        ushort flags = Config.GetWord(_msiCap + PciRegs.MsiFlags);
        return 1 << Math.Min((flags & PciRegs.MsiFlagsQsize) >> 4, (flags & PciRegs.MsiFlagsQmask) >> 1);
    }

    private bool MsiPerVectorMaskLocked()
    {
        ConfigLock.AssertHeld();
        return (Config.GetWord(_msiCap + PciRegs.MsiFlags) & PciRegs.MsiFlagsMaskBit) != 0;
    }

    /// <summary>The MSI message for <paramref name="vector"/>: multiple-message MSI varies the low bits of the data.</summary>
    private (ulong Address, uint Data) MsiMessageLocked(int vector)
    {
        ConfigLock.AssertHeld();
        ushort flags = Config.GetWord(_msiCap + PciRegs.MsiFlags);
        ulong address = Config.GetDword(_msiCap + PciRegs.MsiAddressLo);
        if ((flags & PciRegs.MsiFlags64Bit) != 0)
        {
            address |= (ulong)Config.GetDword(_msiCap + 8) << 32;
        }

        uint baseData = Config.GetWord(MsiDataOffset(_msiCap, flags));
        return (address, (baseData & ~(uint)(MsiEnabledVectorsLocked() - 1)) | (uint)vector);
    }

    /// <summary>Sends MSI-X entry <paramref name="vector"/>, or sets its PBA bit when masked.</summary>
    protected bool RaiseMsix(int vector)
    {
        ulong address;
        uint data;
        ConfigLock.Lock();
        try
        {
            if (!MsixEnabled || vector < 0 || vector >= _msixVectors || !BusMaster)
            {
                return false;
            }

            if (MsixMaskedLocked(vector))
            {
                _msixPending[vector >> 6] |= 1UL << (vector & 63);
                return false;
            }

            (address, data) = MsixEntryLocked(vector);
        }
        finally
        {
            ConfigLock.Unlock();
        }

        SendMessage(address, data);
        return true;
    }

    private bool MsixMaskedLocked(int vector)
    {
        ConfigLock.AssertHeld();
        return (Config.GetWord(_msixCap + PciRegs.MsixFlags) & PciRegs.MsixFlagsMaskAll) != 0
            || (BinaryPrimitives.ReadUInt32LittleEndian(_msixTable.AsSpan((vector * 16) + 12)) & PciRegs.MsixEntryCtrlMaskBit) != 0;
    }

    private (ulong Address, uint Data) MsixEntryLocked(int vector)
    {
        ConfigLock.AssertHeld();
        ReadOnlySpan<byte> e = _msixTable.AsSpan(vector * 16, 16);
        return (BinaryPrimitives.ReadUInt64LittleEndian(e), BinaryPrimitives.ReadUInt32LittleEndian(e[8..]));
    }

    private void SendMessage(ulong address, uint data)
    {
        Interlocked.Increment(ref _msiSent);
        if (InterruptController.IsInMsiWindow(address))
        {
            Machine.Interrupts.DeliverMsi(data);
            return;
        }

        // Outside the interrupt window a message is an ordinary DMA write of its data.
        Span<byte> bytes = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(bytes, data);
        DmaWrite(address, bytes);
    }

    /// <summary>
    /// Sends the MSI vectors that are pending and no longer masked, clearing their pending
    /// bits; nothing while MSI or bus mastering is off (they stay pending).
    /// </summary>
    private void DeliverPendingMsi()
    {
        Span<(ulong Address, uint Data)> batch = stackalloc (ulong, uint)[32];
        int n = 0;
        ConfigLock.Lock();
        try
        {
            if (!MsiEnabled || !BusMaster || !MsiPerVectorMaskLocked())
            {
                return;
            }

            int dataOff = MsiDataOffset(_msiCap, Config.GetWord(_msiCap + PciRegs.MsiFlags));
            uint pend = Config.GetDword(dataOff + 8);
            uint ready = pend & ~Config.GetDword(dataOff + 4) & (uint)((1UL << MsiEnabledVectorsLocked()) - 1);
            Config.SetDword(dataOff + 8, pend & ~ready);
            for (; ready != 0; ready &= ready - 1)
            {
                batch[n++] = MsiMessageLocked(System.Numerics.BitOperations.TrailingZeroCount(ready));
            }
        }
        finally
        {
            ConfigLock.Unlock();
        }

        Send(batch[..n]);
    }

    /// <summary>
    /// Sends the MSI-X vectors in [<paramref name="first"/>, <paramref name="last"/>] that are
    /// pending and no longer masked, clearing their PBA bits; messages are read under the lock
    /// and sent after it. Nothing while MSI-X or bus mastering is off.
    /// </summary>
    private void DeliverPendingMsix(int first = 0, int last = int.MaxValue)
    {
        Span<(ulong Address, uint Data)> batch = stackalloc (ulong, uint)[16];
        last = Math.Min(last, _msixVectors - 1);
        for (int v = first; v <= last;)
        {
            int n = 0;
            ConfigLock.Lock();
            try
            {
                if (!MsixEnabled || !BusMaster)
                {
                    return;
                }

                for (; v <= last && n < batch.Length; v++)
                {
                    ulong word = _msixPending[v >> 6];
                    if (word == 0)
                    {
                        v |= 63;
                        continue;
                    }

                    ulong bit = 1UL << (v & 63);
                    if ((word & bit) != 0 && !MsixMaskedLocked(v))
                    {
                        _msixPending[v >> 6] = word & ~bit;
                        batch[n++] = MsixEntryLocked(v);
                    }
                }
            }
            finally
            {
                ConfigLock.Unlock();
            }

            Send(batch[..n]);
        }
    }

    private void Send(ReadOnlySpan<(ulong Address, uint Data)> messages)
    {
        foreach ((ulong address, uint data) in messages)
        {
            SendMessage(address, data);
        }
    }

    /// <summary>True when MSI-X entry <paramref name="vector"/> is pending (its PBA bit).</summary>
    public bool MsixPending(int vector)
    {
        ConfigLock.Lock();
        try
        {
            return vector >= 0 && vector < _msixVectors && (_msixPending[vector >> 6] & (1UL << (vector & 63))) != 0;
        }
        finally
        {
            ConfigLock.Unlock();
        }
    }

    // ---- MSI-X structures in the BAR.

    private bool MsixClaimsRead(int bar, long offset, Span<byte> data)
    {
        if (_msixCap == 0)
        {
            return false;
        }

        long tableLen = _msixVectors * 16L;
        if (bar == _msixTableBar && offset >= _msixTableOffset && offset + data.Length <= _msixTableOffset + tableLen)
        {
            ConfigLock.Lock();
            _msixTable.AsSpan((int)(offset - _msixTableOffset), data.Length).CopyTo(data);
            ConfigLock.Unlock();
            return true;
        }

        long pbaLen = _msixPending.Length * 8L;
        if (bar == _msixPbaBar && offset >= _msixPbaOffset && offset + data.Length <= _msixPbaOffset + pbaLen)
        {
            Span<byte> pba = stackalloc byte[(int)pbaLen];
            ConfigLock.Lock();
            for (int i = 0; i < _msixPending.Length; i++)
            {
                BinaryPrimitives.WriteUInt64LittleEndian(pba[(i * 8)..], _msixPending[i]);
            }

            ConfigLock.Unlock();
            pba.Slice((int)(offset - _msixPbaOffset), data.Length).CopyTo(data);
            return true;
        }

        return false;
    }

    private bool MsixClaimsWrite(int bar, long offset, ReadOnlySpan<byte> data)
    {
        if (_msixCap == 0)
        {
            return false;
        }

        if (bar == _msixTableBar && offset >= _msixTableOffset && offset + data.Length <= _msixTableOffset + (_msixVectors * 16L))
        {
            ConfigLock.Lock();
            int at = (int)(offset - _msixTableOffset);
            data.CopyTo(_msixTable.AsSpan(at));

            // Only the mask bit of Vector Control is writable.
            for (int v = at / 16; v <= (at + data.Length - 1) / 16; v++)
            {
                Span<byte> ctrl = _msixTable.AsSpan((v * 16) + 12, 4);
                BinaryPrimitives.WriteUInt32LittleEndian(ctrl, BinaryPrimitives.ReadUInt32LittleEndian(ctrl) & PciRegs.MsixEntryCtrlMaskBit);
            }

            ConfigLock.Unlock();
            DeliverPendingMsix(at / 16, (at + data.Length - 1) / 16);
            return true;
        }

        // The PBA is read-only: writes are dropped.
        return bar == _msixPbaBar && offset >= _msixPbaOffset && offset + data.Length <= _msixPbaOffset + (_msixPending.Length * 8L);
    }

    // ---- Register side effects (config writes).

    private void CommandChangedLocked(ushort oldCommand, ref PendingEffects fx)
    {
        ConfigLock.AssertHeld();
        ushort cmd = Config.GetWord(PciRegs.Command);
        if (((oldCommand ^ cmd) & (PciRegs.CommandMemory | PciRegs.CommandIo)) != 0)
        {
            UpdateBarRoutingLocked();
        }

        // Re-enabling INTx while the line is still driven presents the level again.
        if ((oldCommand & PciRegs.CommandIntxDisable) != 0 && (cmd & PciRegs.CommandIntxDisable) == 0 && _intxAsserted && !MsiEnabled && !MsixEnabled)
        {
            fx.IntxEdge = true;
            Interlocked.Increment(ref _intxRaised);
        }

        // Bus mastering back on: messages left pending may go now.
        if ((oldCommand & PciRegs.CommandMaster) == 0 && (cmd & PciRegs.CommandMaster) != 0)
        {
            fx.DeliverMsiPending |= MsiEnabled;
            fx.MsixRescan |= MsixEnabled;
        }
    }

    private void InterruptCapabilityWrittenLocked(int offset, int size, bool msiWas, bool msixWas, ref PendingEffects fx)
    {
        ConfigLock.AssertHeld();
        // A function signalling with MSI or MSI-X does not use its INTx pin (PCI 3.0 §6.8.1.3).
        if ((!msiWas && MsiEnabled) || (!msixWas && MsixEnabled))
        {
            _intxAsserted = false;
            Config.SetWord(PciRegs.Status, (ushort)(Config.GetWord(PciRegs.Status) & ~PciRegs.StatusInterrupt));
        }

        if (_msiCap != 0 && Overlaps(offset, size, _msiCap, 24))
        {
            fx.DeliverMsiPending |= MsiEnabled;
        }

        if (_msixCap != 0 && Overlaps(offset, size, _msixCap + PciRegs.MsixFlags, 2))
        {
            fx.MsixRescan |= MsixEnabled;
        }
    }
}
