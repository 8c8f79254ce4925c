// Models a small NIC-like PCI Express function (no real hardware; register layout in the spirit of e1000e) for interrupt, MMIO and DMA labs.
//
// BARs: BAR0 128 KiB registers (32-bit); BAR2+3 1 MiB on-board memory (64-bit prefetchable,
// plain memory the CPU reads and writes); BAR4 16 KiB holding the MSI-X table at 0 and the
// PBA at 0x2000, 5 vectors. Capabilities: PM, PCI Express (FLR per the description), MSI (one
// vector, 64-bit, maskable) as the fallback, MSI-X.
//
// BAR0 registers (32-bit, 4-byte aligned accesses only; other accesses read all-ones, writes are dropped):
//
//   0x000 CTRL    RW    0x1 ENABLE (link up, rings run), 0x2 LOOPBACK (TX frames go to the RX ring),
//                       0x80000000 RESET (write 1: device reset as by FLR, configuration space excepted; reads 0)
//   0x004 STATUS  RO    0x1 LINK_UP, 0x2 TX_STOPPED, 0x4 RX_STOPPED (a DMA fault stopped the ring;
//                       cleared when ENABLE goes from 0 to 1)
//   0x010 ICR     R/W1C interrupt cause: 0x1 RX, 0x2 TX, 0x4 LSC (link change), 0x8 DMAERR, 0x10 SW.
//                       Write-1-to-clear (reads never clear)
//   0x014 ICS     WO    sets cause bits, which signal as a device event would
//   0x018 IMS     RW    enabled causes; a write sets the 1 bits (a pending cause signals when enabled)
//   0x01C IMC     WO    clears the 1 bits of IMS
//   0x100 TDBAL   RW    TX ring base, low half (16-byte aligned: bits 3:0 read 0)
//   0x104 TDBAH   RW    TX ring base, high half
//   0x108 TDLEN   RW    TX ring size in descriptors (0..4096; other values are dropped)
//   0x110 TDH     RW    TX head, the next descriptor the device takes (writable while ENABLE is clear)
//   0x118 TDT     RW    TX tail, one past the last descriptor queued; writing it starts transmission
//   0x200..0x218  RDBAL RDBAH RDLEN RDH RDT: the RX ring, [RDH, RDT) are buffers the device may fill
//   0x400 TXPKTS  RO    0x404 TXBYTES, 0x408 RXPKTS, 0x40C RXBYTES, 0x410 RXMISSED (no buffer, or too
//                       small), 0x414 DMAERRS: counters (low 32 bits), cleared by reset
//
// Descriptors are 16 bytes: u64 buffer address, u16 length, u16 flags, u32 reserved. TX: the
// device reads the descriptor and length bytes of payload, sends the frame (to the RX ring
// in loopback mode, otherwise to the wire, where TakeTransmitted picks it up), and writes
// flags DD (0x1), plus ERR (0x4) when the length was 0 or over 16384. RX: the length field
// is the buffer's capacity; the device writes the frame, then length and flags DD|EOP (0x3).
// A frame with no free RX descriptor or too big for it is dropped and counted in RXMISSED.
//
// Interrupts. With MSI-X each cause bit i that is enabled in IMS signals vector i (0 RX,
// 1 TX, 2 LSC, 3 DMAERR, 4 SW); otherwise one MSI message per event, or INTA# held while
// ICR & IMS is not zero. TX and RX are signalled once per batch of descriptors.
//
// DMA runs in a kernel task ("nic-dma"), started by a TDT write or by ENABLE and running
// until the TX ring is empty, so a doorbell write returns at once and interrupt handlers run
// in that task. A failed DMA (-EIO without bus mastering, -EFAULT from the IOMMU) stops the
// ring it belongs to at the faulting descriptor, counts in DMAERRS/DmaErrors, is kept in
// LastDmaResult/LastDmaError, and raises DMAERR. A reset or ENABLE going to 0 drops the
// work in flight at its next step.
//
// Lock rule: _lock (a spinlock) protects every register, the on-board memory, the wire
// capture and the engine state. DMA, task creation and interrupts happen after it is dropped.

using System.Buffers.Binary;
using System.Globalization;
using Vfio.Kernel;
using Vfio.Platform.Machine;
using Vfio.Platform.Pci;

namespace Vfio.Platform.Devices;

/// <summary>A NIC-like PCI Express function with descriptor rings, loopback, MSI-X, MSI and INTx.</summary>
[PciDeviceModel("nic")]
public sealed class NicDevice : PciDevice
{
    /// <summary>Size of BAR0 (registers).</summary>
    public const long RegistersSize = 128 << 10;

    /// <summary>Size of BAR2 (on-board memory).</summary>
    public const long OnboardMemorySize = 1 << 20;

    /// <summary>Size of BAR4 (MSI-X table and PBA).</summary>
    public const long MsixBarSize = 16 << 10;

    /// <summary>Offset of the MSI-X table in BAR4.</summary>
    public const long MsixTableOffset = 0;

    /// <summary>Offset of the MSI-X PBA in BAR4.</summary>
    public const long MsixPbaOffset = 0x2000;

    /// <summary>MSI-X vectors: one per cause bit.</summary>
    public const int Vectors = 5;

    public const int VectorRx = 0;
    public const int VectorTx = 1;
    public const int VectorLink = 2;
    public const int VectorError = 3;
    public const int VectorSoftware = 4;

    public const int RegCtrl = 0x000;
    public const int RegStatus = 0x004;
    public const int RegIcr = 0x010;
    public const int RegIcs = 0x014;
    public const int RegIms = 0x018;
    public const int RegImc = 0x01c;
    public const int RegTdbal = 0x100;
    public const int RegTdbah = 0x104;
    public const int RegTdlen = 0x108;
    public const int RegTdh = 0x110;
    public const int RegTdt = 0x118;
    public const int RegRdbal = 0x200;
    public const int RegRdbah = 0x204;
    public const int RegRdlen = 0x208;
    public const int RegRdh = 0x210;
    public const int RegRdt = 0x218;
    public const int RegTxPackets = 0x400;
    public const int RegTxBytes = 0x404;
    public const int RegRxPackets = 0x408;
    public const int RegRxBytes = 0x40c;
    public const int RegRxMissed = 0x410;
    public const int RegDmaErrors = 0x414;

    public const uint CtrlEnable = 0x1;
    public const uint CtrlLoopback = 0x2;
    public const uint CtrlReset = 0x80000000;

    public const uint StatusLinkUp = 0x1;
    public const uint StatusTxStopped = 0x2;
    public const uint StatusRxStopped = 0x4;

    public const uint CauseRx = 1u << VectorRx;
    public const uint CauseTx = 1u << VectorTx;
    public const uint CauseLink = 1u << VectorLink;
    public const uint CauseDmaError = 1u << VectorError;
    public const uint CauseSoftware = 1u << VectorSoftware;
    public const uint CauseAll = 0x1f;

    /// <summary>Descriptor size in bytes.</summary>
    public const int DescriptorSize = 16;

    /// <summary>Descriptor flag: done, written by the device.</summary>
    public const ushort DescDone = 0x1;

    /// <summary>Descriptor flag: end of packet (RX).</summary>
    public const ushort DescEop = 0x2;

    /// <summary>Descriptor flag: the TX descriptor was malformed (length 0 or too long); nothing was sent.</summary>
    public const ushort DescError = 0x4;

    /// <summary>Largest frame the device sends.</summary>
    public const int MaxFrame = 16384;

    /// <summary>Largest ring, in descriptors.</summary>
    public const int MaxRingDescriptors = 4096;

    /// <summary>Frames kept for <see cref="TakeTransmitted"/>; older ones are dropped.</summary>
    public const int WireCapacity = 64;

    // Protects everything below except the engine's scratch buffer (owned by the one engine task).
    private readonly KSpinLock _lock;
    private readonly Ring _tx = new();
    private readonly Ring _rx = new();
    private readonly Queue<byte[]> _wire = new();
    private byte[]? _frame; // the engine's scratch buffer, allocated at its first transmit
    private byte[]? _onboard;
    private uint _ctrl;
    private uint _icr;
    private uint _ims;
    private uint _txPackets;
    private uint _txBytes;
    private uint _rxPackets;
    private uint _rxBytes;
    private uint _rxMissed;
    private uint _dmaErrorsReg;
    private bool _engineRunning;

    // Bumped by resets and by ENABLE going to 0: work started before finds a different value and stops.
    private long _epoch;

    private long _dmaErrors;
    private int _lastDmaResult;
    private string? _lastDmaError;

    /// <summary>Builds the NIC at <paramref name="address"/>; ids from the description, default 8086:10d3 class 0x020000.</summary>
    public NicDevice(SimMachine machine, PciAddress address, PciFunctionDescription description)
        : base(machine, address, description, IdentityOf(description))
    {
        _lock = new KSpinLock(machine.Kernel, $"nic[{Name}].regs");
        AddBar(0, RegistersSize, PciBarKind.Memory32);
        AddBar(2, OnboardMemorySize, PciBarKind.Memory64, prefetchable: true);
        AddBar(4, MsixBarSize, PciBarKind.Memory32);
        AddStandardCapabilities(description);
        AddMsiCapability(1, is64Bit: true, perVectorMask: true);
        AddMsixCapability(Vectors, 4, MsixTableOffset, 4, MsixPbaOffset);
    }

    /// <summary>Frames transmitted (to the wire, or looped back).</summary>
    public long TxPackets => ReadUnderLock(() => _txPackets);

    /// <summary>Frames delivered into the RX ring.</summary>
    public long RxPackets => ReadUnderLock(() => _rxPackets);

    /// <summary>Frames dropped for want of an RX buffer (or one big enough).</summary>
    public long RxMissed => ReadUnderLock(() => _rxMissed);

    /// <summary>The TX head register.</summary>
    public int TxHead => ReadUnderLock(() => _tx.Head);

    /// <summary>The RX head register.</summary>
    public int RxHead => ReadUnderLock(() => _rx.Head);

    /// <summary>The status register.</summary>
    public uint Status => ReadUnderLock(StatusLocked);

    /// <summary>The interrupt cause register.</summary>
    public uint InterruptCause => ReadUnderLock(() => _icr);

    /// <summary>DMA accesses that failed since the device was created (not cleared by reset).</summary>
    public long DmaErrors => Interlocked.Read(ref _dmaErrors);

    /// <summary>The result of the last failed DMA access (-EIO, -EFAULT), 0 if none failed.</summary>
    public int LastDmaResult => Volatile.Read(ref _lastDmaResult);

    /// <summary>What the last failed DMA access was, or null.</summary>
    public string? LastDmaError => Volatile.Read(ref _lastDmaError);

    /// <summary>Removes and returns the frames sent on the wire so far (at most the last <see cref="WireCapacity"/>).</summary>
    public IReadOnlyList<byte[]> TakeTransmitted()
    {
        _lock.Lock();
        byte[][] frames = [.. _wire];
        _wire.Clear();
        _lock.Unlock();
        return frames;
    }

    private static PciIdentity IdentityOf(PciFunctionDescription d)
    {
        ArgumentNullException.ThrowIfNull(d);
        uint vendor = d.Vendor ?? 0x8086;
        return new(vendor, d.Device ?? 0x10d3, d.SubsystemVendor ?? vendor, d.SubsystemDevice ?? 0xa01f, d.Class ?? 0x020000, d.Revision ?? 0);
    }

    // ---- CPU accesses.

    /// <inheritdoc/>
    protected override void BarRead(int bar, long offset, Span<byte> data)
    {
        if (bar == 2)
        {
            _lock.Lock();
            if (_onboard is null)
            {
                data.Clear();
            }
            else
            {
                _onboard.AsSpan((int)offset, data.Length).CopyTo(data);
            }

            _lock.Unlock();
            return;
        }

        if (bar != 0)
        {
            data.Clear();
            return;
        }

        if (data.Length != 4 || (offset & 3) != 0)
        {
            data.Fill(0xff);
            return;
        }

        _lock.Lock();
        uint val = offset switch
        {
            RegCtrl => _ctrl,
            RegStatus => StatusLocked(),
            RegIcr => _icr,
            RegIms => _ims,
            RegTdbal => (uint)_tx.Base,
            RegTdbah => (uint)(_tx.Base >> 32),
            RegTdlen => (uint)_tx.Length,
            RegTdh => (uint)_tx.Head,
            RegTdt => (uint)_tx.Tail,
            RegRdbal => (uint)_rx.Base,
            RegRdbah => (uint)(_rx.Base >> 32),
            RegRdlen => (uint)_rx.Length,
            RegRdh => (uint)_rx.Head,
            RegRdt => (uint)_rx.Tail,
            RegTxPackets => _txPackets,
            RegTxBytes => _txBytes,
            RegRxPackets => _rxPackets,
            RegRxBytes => _rxBytes,
            RegRxMissed => _rxMissed,
            RegDmaErrors => _dmaErrorsReg,
            _ => 0,
        };
        _lock.Unlock();
        BinaryPrimitives.WriteUInt32LittleEndian(data, val);
    }

    /// <inheritdoc/>
    protected override void BarWrite(int bar, long offset, ReadOnlySpan<byte> data)
    {
        if (bar == 2)
        {
            _lock.Lock();
            data.CopyTo((_onboard ??= new byte[OnboardMemorySize]).AsSpan((int)offset));
            _lock.Unlock();
            return;
        }

        if (bar != 0 || data.Length != 4 || (offset & 3) != 0)
        {
            return;
        }

        uint val = BinaryPrimitives.ReadUInt32LittleEndian(data);
        switch (offset)
        {
            case RegCtrl:
                WriteCtrl(val);
                return;
            case RegIcr:
                _lock.Lock();
                _icr &= ~val;
                _lock.Unlock();
                FollowIntx();
                return;
            case RegIcs:
                SetCause(val & CauseAll);
                return;
            case RegIms:
                _lock.Lock();
                uint fire = val & ~_ims & _icr;
                _ims |= val & CauseAll;
                _lock.Unlock();
                Signal(fire);
                return;
            case RegImc:
                _lock.Lock();
                _ims &= ~val;
                _lock.Unlock();
                FollowIntx();
                return;
            case RegTdt:
                if (SetTail(_tx, val))
                {
                    Kick();
                }

                return;
            case RegRdt:
                SetTail(_rx, val);
                return;
        }

        _lock.Lock();
        switch (offset)
        {
            case RegTdbal: _tx.Base = (_tx.Base & 0xffffffff00000000) | (val & ~0xfu); break;
            case RegTdbah: _tx.Base = (_tx.Base & 0xffffffff) | ((ulong)val << 32); break;
            case RegTdlen: _tx.SetLength(val); break;
            case RegTdh: SetHeadLocked(_tx, val); break;
            case RegRdbal: _rx.Base = (_rx.Base & 0xffffffff00000000) | (val & ~0xfu); break;
            case RegRdbah: _rx.Base = (_rx.Base & 0xffffffff) | ((ulong)val << 32); break;
            case RegRdlen: _rx.SetLength(val); break;
            case RegRdh: SetHeadLocked(_rx, val); break;
        }

        _lock.Unlock();
    }

    private void WriteCtrl(uint val)
    {
        if ((val & CtrlReset) != 0)
        {
            ResetDevice();
            return;
        }

        uint old;
        _lock.Lock();
        old = _ctrl;
        _ctrl = val & (CtrlEnable | CtrlLoopback);
        if ((old & CtrlEnable) == 0 && (val & CtrlEnable) != 0)
        {
            _tx.Stopped = _rx.Stopped = false;
        }
        else if ((old & CtrlEnable) != 0 && (val & CtrlEnable) == 0)
        {
            _epoch++;
        }

        _lock.Unlock();
        if (((old ^ val) & CtrlEnable) != 0)
        {
            SetCause(CauseLink);
        }

        if ((val & CtrlEnable) != 0)
        {
            Kick();
        }
    }

    private bool SetTail(Ring ring, uint val)
    {
        _lock.Lock();
        bool ok = val < (uint)Math.Max(ring.Length, 1);
        if (ok)
        {
            ring.Tail = (int)val;
        }

        _lock.Unlock();
        return ok;
    }

    private void SetHeadLocked(Ring ring, uint val)
    {
        _lock.AssertHeld();
        if ((_ctrl & CtrlEnable) == 0 && val < (uint)Math.Max(ring.Length, 1))
        {
            ring.Head = (int)val;
        }
    }

    private uint StatusLocked()
    {
        _lock.AssertHeld();
        return ((_ctrl & CtrlEnable) != 0 ? StatusLinkUp : 0) | (_tx.Stopped ? StatusTxStopped : 0) | (_rx.Stopped ? StatusRxStopped : 0);
    }

    // ---- Interrupts.

    private void SetCause(uint bits)
    {
        _lock.Lock();
        _icr |= bits;
        uint fire = bits & _ims;
        _lock.Unlock();
        Signal(fire);
    }

    /// <summary>Signals the newly raised and enabled causes <paramref name="fire"/> in the configured mode.</summary>
    private void Signal(uint fire)
    {
        if (MsixEnabled)
        {
            for (int v = 0; v < Vectors; v++)
            {
                if ((fire & (1u << v)) != 0)
                {
                    RaiseMsix(v);
                }
            }
        }
        else if (MsiEnabled)
        {
            if (fire != 0)
            {
                RaiseMsi(0);
            }
        }
        else
        {
            SyncIntx();
        }
    }

    /// <summary>After a change that can lower ICR &amp; IMS: INTA# follows it unless messages are in use.</summary>
    private void FollowIntx()
    {
        if (!MsixEnabled && !MsiEnabled)
        {
            SyncIntx();
        }
    }

    /// <summary>INTA# follows "ICR &amp; IMS != 0".</summary>
    protected override bool IntxLevel()
    {
        _lock.Lock();
        bool want = (_icr & _ims) != 0;
        _lock.Unlock();
        return want;
    }

    // ---- The DMA engine.

    private void Kick()
    {
        _lock.Lock();
        bool start = !_engineRunning && TxWorkLocked();
        _engineRunning |= start;
        _lock.Unlock();
        if (start)
        {
            Machine.Kernel.Spawn("nic-dma", Engine);
        }
    }

    private bool TxWorkLocked()
    {
        _lock.AssertHeld();
        return (_ctrl & CtrlEnable) != 0 && !_tx.Stopped && _tx.Length > 0 && _tx.Head != _tx.Tail;
    }

    private void Engine()
    {
        while (true)
        {
            _lock.Lock();
            if (!TxWorkLocked())
            {
                // Checked under the lock that TDT writes take, so a doorbell is never lost.
                _engineRunning = false;
                _lock.Unlock();
                return;
            }

            _lock.Unlock();
            SetCause(TransmitBatch());
        }
    }

    /// <summary>Sends descriptors until the ring is empty, stopped or disabled; returns the causes to raise.</summary>
    private uint TransmitBatch()
    {
        uint causes = 0;
        Span<byte> desc = stackalloc byte[DescriptorSize];
        Span<byte> flags = stackalloc byte[2];
        while (true)
        {
            _lock.Lock();
            if (!TxWorkLocked())
            {
                _lock.Unlock();
                return causes;
            }

            long epoch = _epoch;
            ulong at = _tx.Base + ((ulong)_tx.Head * DescriptorSize);
            bool loopback = (_ctrl & CtrlLoopback) != 0;
            _lock.Unlock();

            if (!Dma(_tx, epoch, "TX descriptor read", at, DmaRead(at, desc), ref causes))
            {
                return causes;
            }

            ulong buffer = BinaryPrimitives.ReadUInt64LittleEndian(desc);
            int length = BinaryPrimitives.ReadUInt16LittleEndian(desc[8..]);
            ushort done = DescDone;
            if (length is 0 or > MaxFrame)
            {
                done |= DescError;
            }
            else
            {
                Span<byte> frame = (_frame ??= new byte[MaxFrame]).AsSpan(0, length);
                if (!Dma(_tx, epoch, "TX payload read", buffer, DmaRead(buffer, frame), ref causes))
                {
                    return causes;
                }

                if (loopback)
                {
                    Receive(frame, ref causes);
                }
                else
                {
                    Capture(frame);
                }
            }

            BinaryPrimitives.WriteUInt16LittleEndian(flags, done);
            if (!Dma(_tx, epoch, "TX status write-back", at + 10, DmaWrite(at + 10, flags), ref causes))
            {
                return causes;
            }

            _lock.Lock();
            if (epoch != _epoch)
            {
                _lock.Unlock();
                return causes;
            }

            _tx.Head = (_tx.Head + 1) % _tx.Length;
            if ((done & DescError) == 0)
            {
                _txPackets++;
                _txBytes += (uint)length;
            }

            _lock.Unlock();
            causes |= CauseTx;
        }
    }

    /// <summary>Puts <paramref name="frame"/> into the next RX buffer, or counts it missed.</summary>
    private void Receive(ReadOnlySpan<byte> frame, ref uint causes)
    {
        _lock.Lock();
        if ((_ctrl & CtrlEnable) == 0 || _rx.Stopped || _rx.Length == 0 || _rx.Head == _rx.Tail)
        {
            _rxMissed++;
            _lock.Unlock();
            return;
        }

        long epoch = _epoch;
        ulong at = _rx.Base + ((ulong)_rx.Head * DescriptorSize);
        _lock.Unlock();

        Span<byte> desc = stackalloc byte[DescriptorSize];
        if (!Dma(_rx, epoch, "RX descriptor read", at, DmaRead(at, desc), ref causes))
        {
            return;
        }

        ulong buffer = BinaryPrimitives.ReadUInt64LittleEndian(desc);
        int capacity = BinaryPrimitives.ReadUInt16LittleEndian(desc[8..]);
        if (frame.Length > capacity)
        {
            _lock.Lock();
            _rxMissed++;
            _lock.Unlock();
            return;
        }

        if (!Dma(_rx, epoch, "RX payload write", buffer, DmaWrite(buffer, frame), ref causes))
        {
            return;
        }

        Span<byte> writeBack = stackalloc byte[4];
        BinaryPrimitives.WriteUInt16LittleEndian(writeBack, (ushort)frame.Length);
        BinaryPrimitives.WriteUInt16LittleEndian(writeBack[2..], DescDone | DescEop);
        if (!Dma(_rx, epoch, "RX status write-back", at + 8, DmaWrite(at + 8, writeBack), ref causes))
        {
            return;
        }

        _lock.Lock();
        if (epoch == _epoch)
        {
            _rx.Head = (_rx.Head + 1) % _rx.Length;
            _rxPackets++;
            _rxBytes += (uint)frame.Length;
            causes |= CauseRx;
        }

        _lock.Unlock();
    }

    private void Capture(ReadOnlySpan<byte> frame)
    {
        byte[] copy = frame.ToArray();
        _lock.Lock();
        if (_wire.Count == WireCapacity)
        {
            _wire.Dequeue();
        }

        _wire.Enqueue(copy);
        _lock.Unlock();
    }

    /// <summary>Checks a DMA result: on failure stops <paramref name="ring"/>, records the error and adds DMAERR. False when the step failed.</summary>
    private bool Dma(Ring ring, long epoch, string what, ulong iova, int rc, ref uint causes)
    {
        if (rc == 0)
        {
            return true;
        }

        string error = string.Create(CultureInfo.InvariantCulture, $"nic {Name}: {what} at bus address 0x{iova:x} failed: {ErrnoExtensions.FromReturn(rc).Describe()}; {(ring == _tx ? "TX" : "RX")} ring stopped");
        Interlocked.Increment(ref _dmaErrors);
        Volatile.Write(ref _lastDmaResult, rc);
        Volatile.Write(ref _lastDmaError, error);
        _lock.Lock();
        if (epoch == _epoch)
        {
            ring.Stopped = true;
            _dmaErrorsReg++;
            causes |= CauseDmaError;
        }

        _lock.Unlock();
        return false;
    }

    // ---- Reset.

    /// <inheritdoc/>
    protected override void OnReset(PciResetKind kind) => ResetDevice();

    private void ResetDevice()
    {
        _lock.Lock();
        _epoch++;
        _ctrl = _icr = _ims = 0;
        _tx.Clear();
        _rx.Clear();
        _txPackets = _txBytes = _rxPackets = _rxBytes = _rxMissed = _dmaErrorsReg = 0;
        _onboard = null;
        _lock.Unlock();
        FollowIntx();
    }

    // One register read under _lock, for the public properties.
    private T ReadUnderLock<T>(Func<T> read)
    {
        _lock.Lock();
        try
        {
            return read();
        }
        finally
        {
            _lock.Unlock();
        }
    }

    /// <summary>A descriptor ring's registers (under the device lock).</summary>
    private sealed class Ring
    {
        public ulong Base;
        public int Length;
        public int Head;
        public int Tail;
        public bool Stopped;

        public void SetLength(uint val)
        {
            if (val <= MaxRingDescriptors)
            {
                Length = (int)val;
                Head = Math.Min(Head, Math.Max(Length - 1, 0));
                Tail = Math.Min(Tail, Math.Max(Length - 1, 0));
            }
        }

        public void Clear()
        {
            Base = 0;
            Length = Head = Tail = 0;
            Stopped = false;
        }
    }
}
