// Models struct mdev_state and its register emulation in samples/vfio-mdev/mtty.c (v6.12;
// v6.1 where MttyFeatures gate it): the 256-byte config space, the two UARTs behind BAR0
// and BAR1, interrupt delivery through eventfds, and the cable a port may have instead of
// its loopback (an extension of the simulator, off unless attached).
//
// Life cycle: created by the driver's probe (MttyDriver) or a test; Init reserves ports,
// Release gives them back. Lock order: state_mutex → reset_mutex; ops_lock → rxtx_lock;
// a migration file's lock under state_mutex. Interrupts are signalled with ops_lock held,
// as mtty_trigger_interrupt() asserts.

using System.Buffers.Binary;
using Vfio.Core;
using Vfio.Kernel;
using Vfio.Platform.Fs;

namespace Vfio.Mdev.Samples.Mtty;

/// <summary>struct mdev_state: one mtty instance's device state.</summary>
internal sealed partial class MttyDevice
{
    /// <summary>MTTY_CONFIG_SPACE_SIZE (the region size the driver reports).</summary>
    public const int ConfigSpaceSize = 0xff;

    /// <summary>MTTY_IO_BAR_SIZE.</summary>
    public const int IoBarSize = 8;

    /// <summary>MTTY_VFIO_PCI_OFFSET_SHIFT.</summary>
    public const int OffsetShift = 40;

    // Protects every register, the IRQ configuration and the config space (ops_lock).
    private readonly KMutex _opsLock;

    // Protects the FIFOs against the IIR/LSR/MSR readers (rxtx_lock), taken inside ops_lock.
    private readonly KMutex _rxtxLock;

    private readonly byte[] _vconfig = new byte[256];
    private readonly uint[] _barMask = new uint[9];
    private readonly MttyPort[] _ports = [new MttyPort(), new MttyPort()];
    private readonly MttyCable?[] _cables = new MttyCable?[2];

    // irq_index, the eventfds and intx_mask: under ops_lock.
    private int _irqIndex = -1;
    private EventFdContext? _intxEvtfd;
    private EventFdContext? _msiEvtfd;
    private bool _intxMask;

    // v6.1 only: a DATA_NONE trigger put the context but kept the pointer (stale), and a
    // replaced INTx context was never put (leaked).
    private bool _intxStale;
    private bool _msiStale;
    private readonly List<EventFdContext> _leaked = [];

    // dev_info.num_irqs as the last GET_INFO cached it.
    private uint _numIrqs;

    public MttyDevice(SimKernel kernel, MttyPortPool pool, int nrPorts, string name)
    {
        Kernel = kernel;
        Pool = pool;
        NrPorts = nrPorts;
        Name = name;
        _opsLock = new KMutex(kernel, "mtty.ops_lock");
        _rxtxLock = new KMutex(kernel, "mtty.rxtx_lock");
        _stateMutex = new KMutex(kernel, "mtty.state_mutex");
        _resetMutex = new KMutex(kernel, "mtty.reset_mutex");
        Ops = new MttyOps(this);
    }

    public SimKernel Kernel { get; }

    public MttyPortPool Pool { get; }

    /// <summary>1 for mtty-1, 2 for mtty-2.</summary>
    public int NrPorts { get; }

    /// <summary>The mdev's name (its UUID).</summary>
    public string Name { get; }

    /// <summary>The vfio_device_ops (with mig_ops and log_ops).</summary>
    public MttyOps Ops { get; }

    /// <summary>The registered vfio device (set by probe).</summary>
    public VfioDevice? VfioDevice { get; set; }

    /// <summary>The sample after "vfio/mtty: Overhaul mtty interrupt handling".</summary>
    public bool Overhauled => Kernel.Profile.Has(MttyFeatures.IrqOverhaul);

    /// <summary>The sample with migration.</summary>
    public bool Migrates => Kernel.Profile.Has(MttyFeatures.MigrationSupport);

    /// <summary>mtty_init_dev(): reserve the ports (ENOSPC), fill the config space.</summary>
    public int Init()
    {
        if (!Pool.TryReserve(NrPorts))
        {
            return ErrorReason.Fail(Errno.ENOSPC, $"mtty: {NrPorts} port(s) wanted, {Pool.Available} of {MttyPortPool.MaxPorts} left");
        }

        CreateConfigSpace();
        return 0;
    }

    /// <summary>mtty_release_dev(): the ports go back to the pool.</summary>
    public void Release()
    {
        // The v6.1 sample never puts its eventfds (no close_device); the simulator drops them
        // with the device so that its own leak checks stay meaningful.
        if (!_intxStale)
        {
            _intxEvtfd?.Put();
        }

        if (!_msiStale)
        {
            _msiEvtfd?.Put();
        }

        foreach (EventFdContext ctx in _leaked)
        {
            ctx.Put();
        }

        _leaked.Clear();
        _intxEvtfd = null;
        _msiEvtfd = null;
        Pool.Return(NrPorts);
    }

    private void CreateConfigSpace()
    {
        Span<byte> c = _vconfig;
        BinaryPrimitives.WriteUInt32LittleEndian(c, 0x32534348);
        BinaryPrimitives.WriteUInt16LittleEndian(c[0x4..], 0x0001);
        BinaryPrimitives.WriteUInt16LittleEndian(c[0x6..], 0x0200);
        c[0x8] = 0x10;
        c[0x9] = 0x02;
        c[0xa] = 0x00;
        c[0xb] = 0x07;
        BinaryPrimitives.WriteUInt32LittleEndian(c[0x10..], 0x1);
        _barMask[0] = unchecked(~(uint)IoBarSize + 1);
        if (NrPorts == 2)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(c[0x14..], 0x1);
            _barMask[1] = unchecked(~(uint)IoBarSize + 1);
        }

        BinaryPrimitives.WriteUInt32LittleEndian(c[0x2c..], 0x32534348);
        c[0x34] = 0x00;
        c[0x3d] = 0x01;
        c[0x40] = 0x23;
        c[0x43] = 0x80;
        c[0x44] = 0x23;
        c[0x48] = 0x23;
        c[0x4c] = 0x23;
        "PCI Serial/UART"u8.CopyTo(c[0x60..]);
    }

    /// <summary>
    /// mdev_access(): one access of <paramref name="buf"/>.Length (1, 2 or 4) bytes at file
    /// offset <paramref name="pos"/>. The count, or -1 for a region index the sample does not
    /// serve (the caller turns any failure into EFAULT).
    /// </summary>
    public int Access(Span<byte> buf, long pos, bool write)
    {
        int index = (int)((ulong)pos >> OffsetShift);
        int offset = (int)(pos & ((1L << OffsetShift) - 1));
        _opsLock.Lock();
        try
        {
            switch (index)
            {
                case 7:
                    if (write)
                    {
                        ConfigWriteLocked(offset, buf);
                    }
                    else
                    {
                        // The sample copies from its 0xff-byte buffer at any offset; beyond
                        // 256 bytes it would read past its allocation, the simulator reads 0.
                        for (int i = 0; i < buf.Length; i++)
                        {
                            buf[i] = offset + i < _vconfig.Length ? _vconfig[offset + i] : (byte)0;
                        }
                    }

                    return buf.Length;
                case >= 0 and <= 5:
                    if (index >= _ports.Length || offset >= 8)
                    {
                        // The sample indexes past its two ports here (s[index], uart_reg[offset]);
                        // the simulator answers as an absent register: reads 0, writes dropped.
                        if (!write)
                        {
                            buf.Clear();
                        }

                        return buf.Length;
                    }

                    if (write)
                    {
                        BarWriteLocked(index, offset, buf[0]);
                    }
                    else
                    {
                        buf[0] = BarReadLocked(index, offset);
                    }

                    return buf.Length;
                default:
                    return -1;
            }
        }
        finally
        {
            _opsLock.Unlock();
        }
    }

    private void ConfigWriteLocked(int offset, ReadOnlySpan<byte> buf)
    {
        _opsLock.AssertHeld();
        switch (offset)
        {
            case 0x04:
            case 0x06:
            case 0x3d:
                break;
            case 0x3c:
                _vconfig[0x3c] = buf[0];
                break;
            case 0x10:
            case 0x14:
                int bar = offset == 0x10 ? 0 : 1;
                if (NrPorts == 1 && bar == 1)
                {
                    BinaryPrimitives.WriteUInt32LittleEndian(_vconfig.AsSpan(offset), 0);
                    break;
                }

                // The sample reads a u32 whatever the access size; a shorter write takes the
                // caller's following bytes, modelled here as zero.
                Span<byte> word = stackalloc byte[4];
                buf[..Math.Min(4, buf.Length)].CopyTo(word);
                uint addr = BinaryPrimitives.ReadUInt32LittleEndian(word);
                if (addr == 0xffffffff)
                {
                    addr &= _barMask[bar];
                }

                addr |= (uint)(_vconfig[offset] & 0x3);
                BinaryPrimitives.WriteUInt32LittleEndian(_vconfig.AsSpan(offset), addr);
                break;
            case 0x18:
            case 0x1c:
            case 0x20:
                BinaryPrimitives.WriteUInt32LittleEndian(_vconfig.AsSpan(offset), 0);
                break;
            default:
                Kernel.Log.Info($"PCI config write @0x{offset:x} of {buf.Length} bytes not handled");
                break;
        }
    }

    private void BarWriteLocked(int index, int offset, byte data)
    {
        _opsLock.AssertHeld();
        MttyPort s = _ports[index];
        switch (offset)
        {
            case MttyPort.Rx:
                if (s.Dlab)
                {
                    s.Divisor |= data;
                    break;
                }

                if (_cables[index] is { } cable)
                {
                    cable.TransmitLocked(data);
                    break;
                }

                _rxtxLock.Lock();
                if (s.Count < s.MaxFifo)
                {
                    s.Push(data);
                    s.Overrun = false;
                    if ((s.UartReg[MttyPort.Ier] & MttyPort.IerRdi) != 0 && s.Count == s.TriggerLevel)
                    {
                        TriggerInterruptLocked();
                    }
                }
                else
                {
                    s.Overrun = true;
                    if ((s.UartReg[MttyPort.Ier] & MttyPort.IerRlsi) != 0)
                    {
                        TriggerInterruptLocked();
                    }
                }

                _rxtxLock.Unlock();
                break;
            case MttyPort.Ier:
                if (s.Dlab)
                {
                    s.Divisor |= (ushort)(data << 8);
                    break;
                }

                s.UartReg[MttyPort.Ier] = data;
                _rxtxLock.Lock();
                if ((data & MttyPort.IerThri) != 0 && s.LooksEmpty)
                {
                    TriggerInterruptLocked();
                }

                _rxtxLock.Unlock();
                break;
            case MttyPort.Fcr:
                s.FcrValue = data;
                _rxtxLock.Lock();
                if ((data & (MttyPort.FcrClearRcvr | MttyPort.FcrClearXmit)) != 0)
                {
                    s.Count = 0;
                    s.Head = 0;
                    s.Tail = 0;
                }

                _rxtxLock.Unlock();

                // The sample parses the trigger bits (1/4/8/14) and then forces level 1: it has
                // no character timeout to deliver a partial FIFO with.
                s.TriggerLevel = 1;
                s.MaxFifo = (data & MttyPort.FcrEnableFifo) != 0 ? (byte)MttyPort.MaxFifoSize : (byte)1;
                break;
            case MttyPort.Lcr:
                if ((data & MttyPort.LcrDlab) != 0)
                {
                    s.Dlab = true;
                    s.Divisor = 0;
                }
                else
                {
                    s.Dlab = false;
                }

                s.UartReg[MttyPort.Lcr] = data;
                break;
            case MttyPort.Mcr:
                s.UartReg[MttyPort.Mcr] = data;
                if ((s.UartReg[MttyPort.Ier] & MttyPort.IerMsi) != 0 && (data & MttyPort.McrOut2) != 0)
                {
                    TriggerInterruptLocked();
                }

                if ((s.UartReg[MttyPort.Ier] & MttyPort.IerMsi) != 0 && (data & (MttyPort.McrRts | MttyPort.McrDtr)) != 0)
                {
                    TriggerInterruptLocked();
                }

                break;
            case MttyPort.Scr:
                s.UartReg[MttyPort.Scr] = data;
                break;
            default:
                break; // LSR, MSR: read-only
        }
    }

    private byte BarReadLocked(int index, int offset)
    {
        _opsLock.AssertHeld();
        MttyPort s = _ports[index];
        _cables[index]?.ReceiveLocked(s);
        byte v = 0;
        switch (offset)
        {
            case MttyPort.Rx:
                if (s.Dlab)
                {
                    return (byte)s.Divisor;
                }

                _rxtxLock.Lock();
                if (!s.LooksEmpty)
                {
                    v = s.Pop();
                }

                if (s.LooksEmpty && (s.UartReg[MttyPort.Ier] & MttyPort.IerThri) != 0)
                {
                    TriggerInterruptLocked();
                }

                _rxtxLock.Unlock();

                // A byte left the FIFO: the cable may have more waiting.
                _cables[index]?.ReceiveLocked(s);
                return v;
            case MttyPort.Ier:
                return s.Dlab ? (byte)(s.Divisor >> 8) : (byte)(s.UartReg[MttyPort.Ier] & 0x0f);
            case MttyPort.Iir:
                _rxtxLock.Lock();
                v = s.ComputeIir();
                _rxtxLock.Unlock();
                return v;
            case MttyPort.Lcr:
            case MttyPort.Mcr:
            case MttyPort.Scr:
                return s.UartReg[offset];
            case MttyPort.Lsr:
                _rxtxLock.Lock();
                v = s.ComputeLsr();
                _rxtxLock.Unlock();
                return _cables[index] is { } cable ? cable.AdjustLsrLocked(v) : v;
            default:
                _rxtxLock.Lock();
                v = s.ComputeMsr();
                _rxtxLock.Unlock();
                return v;
        }
    }

    /// <summary>mtty_trigger_interrupt(): MSI eventfd if MSI is active, else INTx (automasked on the overhauled sample).</summary>
    private void TriggerInterruptLocked()
    {
        _opsLock.AssertHeld();
        if (Overhauled)
        {
            if (_irqIndex == VfioPciIrq.Msi)
            {
                _msiEvtfd?.Signal();
            }
            else if (_irqIndex == VfioPciIrq.Intx && _intxEvtfd is not null && !_intxMask)
            {
                _intxEvtfd.Signal();
                _intxMask = true;
            }

            return;
        }

        // v6.1: a missing eventfd of the active index is skipped; with no index ever set up
        // the sample signals its NULL INTx eventfd.
        if ((_irqIndex == VfioPciIrq.Msi && _msiEvtfd is null) || (_irqIndex == VfioPciIrq.Intx && _intxEvtfd is null))
        {
            return;
        }

        EventFdContext? target = _irqIndex == VfioPciIrq.Msi ? _msiEvtfd : _intxEvtfd;
        Bug.On(target is null, "BUG: kernel NULL pointer dereference in eventfd_signal() from mtty_trigger_interrupt(): an interrupt was raised before SET_IRQS set up INTx or MSI (the v6.1 sample oopses here)");
        target!.Signal();
    }

    /// <summary>The cable of <paramref name="port"/>, or null while it loops back.</summary>
    public MttyCable? CableOf(int port) => _cables[port];

    /// <summary>Attaches a cable to <paramref name="port"/> (under ops_lock); false if one is attached.</summary>
    public bool AttachCable(int port, MttyCable cable)
    {
        _opsLock.Lock();
        try
        {
            if (_cables[port] is not null)
            {
                return false;
            }

            _cables[port] = cable;
            return true;
        }
        finally
        {
            _opsLock.Unlock();
        }
    }

    /// <summary>Detaches <paramref name="cable"/>; the port loops back again.</summary>
    public void DetachCable(int port, MttyCable cable)
    {
        _opsLock.Lock();
        try
        {
            if (ReferenceEquals(_cables[port], cable))
            {
                _cables[port] = null;
            }
        }
        finally
        {
            _opsLock.Unlock();
        }
    }

    /// <summary>Moves what the far end sent into <paramref name="port"/>'s FIFO (with its interrupts).</summary>
    public void DeliverFromCable(int port)
    {
        _opsLock.Lock();
        try
        {
            _cables[port]?.ReceiveLocked(_ports[port]);
        }
        finally
        {
            _opsLock.Unlock();
        }
    }

    /// <summary>
    /// One byte from the cable into the FIFO, under ops_lock: the loopback's push with its
    /// RDI rule. The cable calls it only while the FIFO has room short of the 16th slot.
    /// </summary>
    public void PushFromCableLocked(MttyPort s, byte data)
    {
        _opsLock.AssertHeld();
        _rxtxLock.Lock();
        s.Push(data);
        s.Overrun = false;
        if ((s.UartReg[MttyPort.Ier] & MttyPort.IerRdi) != 0 && s.Count == s.TriggerLevel)
        {
            TriggerInterruptLocked();
        }

        _rxtxLock.Unlock();
    }

    /// <summary>lockdep_assert_held(&amp;ops_lock), for the cable's kernel side.</summary>
    public void AssertOpsLockHeld() => _opsLock.AssertHeld();

    /// <summary>For tests: the port's register state.</summary>
    internal MttyPort Port(int i) => _ports[i];
}

/// <summary>VFIO_PCI_*_IRQ_INDEX.</summary>
internal static class VfioPciIrq
{
    public const int Intx = 0, Msi = 1, Msix = 2, Err = 3, Req = 4, Num = 5;
}
