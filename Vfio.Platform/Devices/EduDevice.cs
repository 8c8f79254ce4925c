// Models QEMU's edu teaching device (QEMU hw/misc/edu.c, docs/specs/edu.rst) register for register.
//
// BAR0 (1 MiB, 32-bit memory). Below 0x80 only 4-byte accesses count, from 0x80 up 4- or
// 8-byte ones; any other access, and any offset without a register, reads all-ones and
// writes nothing:
//
//   0x00 RO  identification 0x010000ed
//   0x04 RW  liveness: reads the bitwise inverse of the last value written (0 at power-on)
//   0x08 RW  factorial: a write (ignored while computing) starts the computation; reads the operand, then the result (mod 2^32)
//   0x20 RW  status: 0x01 computing (RO), 0x80 raise interrupt 0x01 when a factorial finishes
//   0x24 RO  interrupt status
//   0x60 WO  interrupt raise: ORs the value into the interrupt status and signals
//   0x64 WO  interrupt acknowledge: clears the bits; with INTx the line drops when nothing is left
//   0x80 RW  DMA source, 0x88 RW DMA destination, 0x90 RW DMA count (64-bit; a 4-byte write
//            sets the low half and clears the high one; writes ignored while a transfer runs)
//   0x98 RW  DMA command: 0x01 start (a write without it is ignored), 0x02 direction
//            (0 RAM -> buffer, 1 buffer -> RAM), 0x04 raise interrupt 0x100 when done
//
// Interrupts go out as MSI when its enable bit is set, otherwise on INTA#, as edu_raise_irq
// does: every raise sends a message, the INTx line follows "interrupt status != 0".
//
// Time. Both engines run on the virtual clock: a factorial takes FactorialTime (edu.c uses a
// thread so that drivers must poll the status register), a transfer DmaTime (edu.c's 100 ms
// timer). Under the controlled scheduler virtual time only moves when every task sleeps, so a
// driver polls with msleep or waits for the interrupt; a loop that spins without sleeping
// never sees the device finish.
//
// DMA. The bus address (source for RAM -> buffer, destination for buffer -> RAM) is masked
// with DmaMask (28 bits unless the description's dma_mask option says otherwise), as edu.c
// clamps it; the buffer side must lie inside [0x40000, 0x41000). Where QEMU reports a guest
// error (older versions stop with hw_error), this model records a range error and moves
// nothing. Every
// transfer goes through the function's DMA (bus master enable, then the IOMMU): a failure
// (-EIO without bus mastering, -EFAULT on an IOMMU fault) is counted and kept in
// LastDmaResult/LastDmaError. Either way the command completes: the start bit clears and the
// completion interrupt is raised if it was asked for; LastDmaResult tells the outcome
// (0, -EIO, -EFAULT, or -ERANGE for a range error).
//
// Reset (FLR, PM, bus) returns every register and the buffer to power-on values and drops
// work in flight; the diagnostic counters (DmaErrors, DmaRangeErrors, MsiSent, ...) survive it. This
// is a deliberate departure from QEMU: edu.c has no reset handler, so there a reset leaves
// liveness, the interrupt status, the DMA registers and the buffer as they were. Here a
// reset means what a real function's reset means, so labs can see what vfio-pci's reset on
// open and release gives them.
//
// Lock rule: _lock (a spinlock) protects the registers, the buffer, the timers and _epoch.
// Interrupts and DMA happen after it is dropped: an interrupt handler runs in the raising
// task and may come back into the registers.

using System.Buffers.Binary;
using System.Globalization;
using Vfio.Kernel;
using Vfio.Platform.Machine;
using Vfio.Platform.Pci;

namespace Vfio.Platform.Devices;

/// <summary>QEMU's <c>edu</c> educational PCI device (1234:11e8).</summary>
[PciDeviceModel("edu")]
public sealed class EduDevice : PciDevice
{
    /// <summary>PCI_VENDOR_ID_QEMU.</summary>
    public const uint VendorId = 0x1234;

    /// <summary>The edu device id.</summary>
    public const uint DeviceId = 0x11e8;

    /// <summary>The revision edu reports.</summary>
    public const byte RevisionId = 0x10;

    /// <summary>PCI_CLASS_OTHERS.</summary>
    public const uint ClassOthers = 0x00ff00;

    /// <summary>Size of BAR0.</summary>
    public const long MmioSize = 1 << 20;

    /// <summary>The value of the identification register (version 1.0).</summary>
    public const uint Identification = 0x010000ed;

    public const int RegIdentification = 0x00;
    public const int RegLiveness = 0x04;
    public const int RegFactorial = 0x08;
    public const int RegStatus = 0x20;
    public const int RegIrqStatus = 0x24;
    public const int RegIrqRaise = 0x60;
    public const int RegIrqAck = 0x64;
    public const int RegDmaSource = 0x80;
    public const int RegDmaDestination = 0x88;
    public const int RegDmaCount = 0x90;
    public const int RegDmaCommand = 0x98;

    /// <summary>Status: a factorial is being computed (read-only).</summary>
    public const uint StatusComputing = 0x01;

    /// <summary>Status: raise interrupt <see cref="IrqFactorial"/> when a factorial finishes.</summary>
    public const uint StatusIrqFactorial = 0x80;

    /// <summary>Interrupt status bit of a finished factorial.</summary>
    public const uint IrqFactorial = 0x001;

    /// <summary>Interrupt status bit of a finished DMA.</summary>
    public const uint IrqDma = 0x100;

    /// <summary>DMA command: start (reads as set while the transfer runs).</summary>
    public const ulong DmaCmdStart = 0x1;

    /// <summary>DMA command: direction buffer -> RAM (clear: RAM -> buffer).</summary>
    public const ulong DmaCmdToRam = 0x2;

    /// <summary>DMA command: raise <see cref="IrqDma"/> when done.</summary>
    public const ulong DmaCmdIrq = 0x4;

    /// <summary>Device address of the DMA buffer.</summary>
    public const ulong DmaBufferStart = 0x40000;

    /// <summary>Size of the DMA buffer.</summary>
    public const int DmaBufferSize = 4096;

    /// <summary>The DMA mask edu starts with: 28 bits (256 MiB).</summary>
    public const ulong DefaultDmaMask = (1UL << 28) - 1;

    /// <summary>Virtual time a factorial takes.</summary>
    public static readonly TimeSpan FactorialTime = TimeSpan.FromMilliseconds(1);

    /// <summary>Virtual time a DMA transfer takes (edu.c's timer).</summary>
    public static readonly TimeSpan DmaTime = TimeSpan.FromMilliseconds(100);

    // Protects the registers below, the buffer, the timers and _epoch.
    private readonly KSpinLock _lock;
    private readonly byte[] _buffer = new byte[DmaBufferSize];
    private uint _liveness;
    private uint _fact;
    private uint _status;
    private uint _irqStatus;
    private ulong _dmaSrc;
    private ulong _dmaDst;
    private ulong _dmaCount;
    private ulong _dmaCmd;
    private ITimer? _factTimer;
    private ITimer? _dmaTimer;

    // Bumped by every reset: work armed before it finds a different value and is dropped.
    private long _epoch;

    private long _factorials;
    private long _dmaTransfers;
    private long _dmaErrors;
    private long _dmaRangeErrors;
    private long _dmaClamped;
    private long _msiSent;
    private long _msiWithoutBusMaster;
    private long _intxRaises;
    private int _lastDmaResult;
    private string? _lastDmaError;

    /// <summary>
    /// Builds edu at <paramref name="address"/>. The identity, BAR, interrupt pin and MSI
    /// capability are edu's whatever the description says; it is conventional PCI (256-byte
    /// configuration space) unless the description asks for PCI Express, which adds an
    /// Express endpoint capability (with FLR when listed in its resets). The <c>dma_mask</c>
    /// option sets <see cref="DmaMask"/>, as QEMU's <c>-device edu,dma_mask=</c> does.
    /// </summary>
    public EduDevice(SimMachine machine, PciAddress address, PciFunctionDescription description)
        : base(machine, address, Conventional(description), new PciIdentity(VendorId, DeviceId, 0x1af4, 0x1100, ClassOthers, RevisionId))
    {
        _lock = new KSpinLock(machine.Kernel, $"edu[{Name}].regs");
        DmaMask = ParseDmaMask(description);
        SetInterruptPin(1);
        AddBar(0, MmioSize, PciBarKind.Memory32);
        if (ConfigSize == PciRegs.ConfigSpaceSize)
        {
            AddExpCapability(PciRegs.ExpTypeEndpoint, flr: description.Resets.Contains(PciResetMethod.Flr));
        }

        AddMsiCapability(1, is64Bit: true, perVectorMask: false);
    }

    /// <summary>The mask applied to bus addresses of DMA transfers.</summary>
    public ulong DmaMask { get; }

    /// <summary>Status bit 0x01: a factorial is being computed.</summary>
    public bool FactorialComputing => (Read32(ref _status) & StatusComputing) != 0;

    /// <summary>The status register.</summary>
    public uint Status => Read32(ref _status);

    /// <summary>The interrupt status register.</summary>
    public uint InterruptStatus => Read32(ref _irqStatus);

    /// <summary>True while a DMA transfer is programmed and not finished (command bit 0x01).</summary>
    public bool DmaBusy
    {
        get
        {
            _lock.Lock();
            bool busy = (_dmaCmd & DmaCmdStart) != 0;
            _lock.Unlock();
            return busy;
        }
    }

    /// <summary>Factorials computed since the device was created.</summary>
    public long FactorialsComputed => Interlocked.Read(ref _factorials);

    /// <summary>DMA commands that moved their data.</summary>
    public long DmaTransfers => Interlocked.Read(ref _dmaTransfers);

    /// <summary>DMA commands whose memory access failed (-EIO without bus mastering, -EFAULT from the IOMMU).</summary>
    public long DmaErrors => Interlocked.Read(ref _dmaErrors);

    /// <summary>DMA commands whose buffer side lay outside [0x40000, 0x41000): nothing was moved.</summary>
    public long DmaRangeErrors => Interlocked.Read(ref _dmaRangeErrors);

    /// <summary>DMA commands whose bus address had bits outside <see cref="DmaMask"/> (clamped, as edu.c does).</summary>
    public long DmaAddressesClamped => Interlocked.Read(ref _dmaClamped);

    /// <summary>Interrupts edu sent as an MSI message.</summary>
    public long MsiSent => Interlocked.Read(ref _msiSent);

    /// <summary>Interrupts edu could not send as MSI because bus mastering was off (an MSI is a memory write by the function).</summary>
    public long MsiWithoutBusMaster => Interlocked.Read(ref _msiWithoutBusMaster);

    /// <summary>Interrupts edu raised on INTA# because MSI was not enabled.</summary>
    public long IntxRaises => Interlocked.Read(ref _intxRaises);

    /// <summary>Outcome of the last finished DMA command: 0, -EIO, -EFAULT, or -ERANGE for a range error.</summary>
    public int LastDmaResult => Volatile.Read(ref _lastDmaResult);

    /// <summary>What went wrong with the last failed DMA command, or null when none failed.</summary>
    public string? LastDmaError => Volatile.Read(ref _lastDmaError);

    /// <summary>A copy of the 4 KiB DMA buffer.</summary>
    public byte[] CopyBuffer()
    {
        _lock.Lock();
        byte[] copy = (byte[])_buffer.Clone();
        _lock.Unlock();
        return copy;
    }

    // ---- CPU accesses to BAR0.

    /// <inheritdoc/>
    protected override void BarRead(int bar, long offset, Span<byte> data)
    {
        ulong val = ulong.MaxValue;
        if (bar == 0 && SizeAllowed(offset, data.Length))
        {
            _lock.Lock();
            val = offset switch
            {
                RegIdentification => Identification,
                RegLiveness => _liveness,
                RegFactorial => _fact,
                RegStatus => _status,
                RegIrqStatus => _irqStatus,
                RegDmaSource => _dmaSrc,
                RegDmaDestination => _dmaDst,
                RegDmaCount => _dmaCount,
                RegDmaCommand => _dmaCmd,
                _ => ulong.MaxValue,
            };
            _lock.Unlock();
        }

        if (data.Length == 8)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(data, val);
        }
        else if (data.Length == 4)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(data, (uint)val);
        }
        else
        {
            data.Fill(0xff);
        }
    }

    /// <inheritdoc/>
    protected override void BarWrite(int bar, long offset, ReadOnlySpan<byte> data)
    {
        if (bar != 0 || !SizeAllowed(offset, data.Length))
        {
            return;
        }

        ulong val = data.Length == 8 ? BinaryPrimitives.ReadUInt64LittleEndian(data) : BinaryPrimitives.ReadUInt32LittleEndian(data);
        switch (offset)
        {
            case RegLiveness:
                _lock.Lock();
                _liveness = ~(uint)val;
                _lock.Unlock();
                break;
            case RegFactorial:
                StartFactorial((uint)val);
                break;
            case RegStatus:
                _lock.Lock();
                _status = (_status & ~StatusIrqFactorial) | ((uint)val & StatusIrqFactorial);
                _lock.Unlock();
                break;
            case RegIrqRaise:
                RaiseIrq((uint)val);
                break;
            case RegIrqAck:
                LowerIrq((uint)val);
                break;
            case RegDmaSource:
                SetDmaRegister(ref _dmaSrc, val);
                break;
            case RegDmaDestination:
                SetDmaRegister(ref _dmaDst, val);
                break;
            case RegDmaCount:
                SetDmaRegister(ref _dmaCount, val);
                break;
            case RegDmaCommand:
                StartDma(val);
                break;
        }
    }

    private static bool SizeAllowed(long offset, int size) => offset < 0x80 ? size == 4 : size is 4 or 8;

    // ---- Factorial.

    private void StartFactorial(uint operand)
    {
        _lock.Lock();
        try
        {
            if ((_status & StatusComputing) != 0)
            {
                return;
            }

            _fact = operand;
            _status |= StatusComputing;
            _factTimer = Machine.Kernel.Clock.CreateTimer(FactorialDone, _epoch, FactorialTime, Timeout.InfiniteTimeSpan);
        }
        finally
        {
            _lock.Unlock();
        }
    }

    private void FactorialDone(object? state)
    {
        bool raise;
        _lock.Lock();
        try
        {
            if ((long)state! != _epoch || (_status & StatusComputing) == 0)
            {
                return;
            }

            _fact = Factorial(_fact);
            _status &= ~StatusComputing;
            raise = (_status & StatusIrqFactorial) != 0;
            _factTimer?.Dispose();
            _factTimer = null;
            Interlocked.Increment(ref _factorials);
        }
        finally
        {
            _lock.Unlock();
        }

        if (raise)
        {
            RaiseIrq(IrqFactorial);
        }
    }

    /// <summary>n! modulo 2^32: from 34! on the product holds at least 32 factors of two, so it is 0.</summary>
    private static uint Factorial(uint n)
    {
        if (n >= 34)
        {
            return 0;
        }

        uint r = 1;
        for (uint i = 2; i <= n; i++)
        {
            r *= i;
        }

        return r;
    }

    // ---- Interrupts (edu_raise_irq / edu_lower_irq).

    private void RaiseIrq(uint bits)
    {
        _lock.Lock();
        _irqStatus |= bits;
        bool pending = _irqStatus != 0;
        _lock.Unlock();
        if (!pending)
        {
            return;
        }

        if (MsiEnabled)
        {
            if (RaiseMsi(0))
            {
                Interlocked.Increment(ref _msiSent);
            }
            else if (!BusMaster)
            {
                Interlocked.Increment(ref _msiWithoutBusMaster);
            }
        }
        else
        {
            Interlocked.Increment(ref _intxRaises);
            SyncIntx();
        }
    }

    private void LowerIrq(uint bits)
    {
        _lock.Lock();
        _irqStatus &= ~bits;
        _lock.Unlock();
        if (!MsiEnabled)
        {
            SyncIntx();
        }
    }

    /// <summary>INTA# follows "interrupt status != 0".</summary>
    protected override bool IntxLevel() => InterruptStatus != 0;

    // ---- DMA.

    private void SetDmaRegister(ref ulong register, ulong val)
    {
        _lock.Lock();
        if ((_dmaCmd & DmaCmdStart) == 0)
        {
            register = val;
        }

        _lock.Unlock();
    }

    private void StartDma(ulong cmd)
    {
        if ((cmd & DmaCmdStart) == 0)
        {
            return;
        }

        _lock.Lock();
        try
        {
            if ((_dmaCmd & DmaCmdStart) != 0)
            {
                return;
            }

            _dmaCmd = cmd;
            _dmaTimer = Machine.Kernel.Clock.CreateTimer(DmaDone, _epoch, DmaTime, Timeout.InfiniteTimeSpan);
        }
        finally
        {
            _lock.Unlock();
        }
    }

    private void DmaDone(object? state)
    {
        long epoch = (long)state!;
        ulong src, dst, count, cmd;
        byte[]? outgoing = null;
        _lock.Lock();
        try
        {
            if (epoch != _epoch || (_dmaCmd & DmaCmdStart) == 0)
            {
                return;
            }

            (src, dst, count, cmd) = (_dmaSrc, _dmaDst, _dmaCount, _dmaCmd);
            if ((cmd & DmaCmdToRam) != 0 && InBuffer(src, count))
            {
                outgoing = _buffer.AsSpan((int)(src - DmaBufferStart), (int)count).ToArray();
            }
        }
        finally
        {
            _lock.Unlock();
        }

        bool toRam = (cmd & DmaCmdToRam) != 0;
        ulong device = toRam ? src : dst;
        ulong bus = toRam ? dst : src;
        ulong clamped = bus & DmaMask;
        if (clamped != bus)
        {
            Interlocked.Increment(ref _dmaClamped);
        }

        int rc;
        byte[]? incoming = null;
        string? error = null;
        if (!InBuffer(device, count))
        {
            rc = Errno.ERANGE.Negative();
            error = string.Create(CultureInfo.InvariantCulture, $"edu {Name}: DMA range 0x{device:x}+0x{count:x} is outside the buffer [0x{DmaBufferStart:x}, 0x{DmaBufferStart + DmaBufferSize:x}): nothing transferred");
        }
        else if (toRam)
        {
            rc = DmaWrite(clamped, outgoing);
        }
        else
        {
            incoming = new byte[count];
            rc = DmaRead(clamped, incoming);
        }

        if (rc != 0 && error is null)
        {
            error = string.Create(CultureInfo.InvariantCulture, $"edu {Name}: DMA {(toRam ? "write" : "read")} of 0x{count:x} bytes at bus address 0x{clamped:x} failed: {ErrnoExtensions.FromReturn(rc).Describe()}");
        }

        // Recorded before the start bit clears, so a driver that saw it clear sees the outcome.
        RecordDma(rc, error);
        bool raise;
        _lock.Lock();
        try
        {
            if (epoch != _epoch)
            {
                return; // Reset while the transfer was on the bus: its result is dropped.
            }

            if (rc == 0 && incoming is not null)
            {
                incoming.CopyTo(_buffer, (int)(dst - DmaBufferStart));
            }

            _dmaCmd &= ~DmaCmdStart;
            raise = (_dmaCmd & DmaCmdIrq) != 0;
            _dmaTimer?.Dispose();
            _dmaTimer = null;
        }
        finally
        {
            _lock.Unlock();
        }

        if (raise)
        {
            RaiseIrq(IrqDma);
        }
    }

    private static bool InBuffer(ulong start, ulong count)
    {
        ulong end = start + count;
        return end >= start && start >= DmaBufferStart && end <= DmaBufferStart + DmaBufferSize;
    }

    private void RecordDma(int rc, string? error)
    {
        Volatile.Write(ref _lastDmaResult, rc);
        if (rc == 0)
        {
            Interlocked.Increment(ref _dmaTransfers);
            return;
        }

        if (rc == Errno.ERANGE.Negative())
        {
            Interlocked.Increment(ref _dmaRangeErrors);
        }
        else
        {
            Interlocked.Increment(ref _dmaErrors);
        }

        Volatile.Write(ref _lastDmaError, error);
    }

    // ---- Reset.

    /// <inheritdoc/>
    protected override void OnReset(PciResetKind kind)
    {
        _lock.Lock();
        _epoch++;
        _factTimer?.Dispose();
        _dmaTimer?.Dispose();
        _factTimer = null;
        _dmaTimer = null;
        _liveness = _fact = _status = _irqStatus = 0;
        _dmaSrc = _dmaDst = _dmaCount = _dmaCmd = 0;
        Array.Clear(_buffer);
        _lock.Unlock();
    }

    private uint Read32(ref uint field)
    {
        _lock.Lock();
        uint v = field;
        _lock.Unlock();
        return v;
    }

    private static PciFunctionDescription Conventional(PciFunctionDescription description)
    {
        ArgumentNullException.ThrowIfNull(description);
        return description.Pcie is null ? description with { Pcie = false } : description;
    }

    private static ulong ParseDmaMask(PciFunctionDescription description)
    {
        if (!description.Options.TryGetValue("dma_mask", out string? text))
        {
            return DefaultDmaMask;
        }

        return Kstrtox.Kstrtoul(text.Trim().Trim('"'), out ulong mask) ? mask : throw new MachineDescriptionException($"{description.Path}.options.dma_mask", $"\"{text}\" is not a number (write 0xfffffff or 268435455)");
    }
}
