// Models struct serial_port and the 16550A register file of samples/vfio-mdev/mtty.c
// (v6.1 and v6.12 agree here): the loopback FIFO is a 16-byte ring whose "empty" test is
// head == tail, so a ring holding 16 bytes reads as empty — LSR shows no data and RBR
// returns nothing — as the real sample does (checked on 6.1.192 and 6.12.118).
//
// Lock rules: every member is touched under the device's ops_lock; the FIFO parts also
// under rxtx_lock, as the sample does (MttyDevice).

using System.Buffers.Binary;

namespace Vfio.Mdev.Samples.Mtty;

/// <summary>struct serial_port: one UART's registers and loopback FIFO.</summary>
internal sealed class MttyPort
{
    /// <summary>MAX_FIFO_SIZE.</summary>
    public const int MaxFifoSize = 16;

    /// <summary>sizeof(struct serial_port): the bytes a port takes in the migration stream.</summary>
    public const int StreamSize = 36;

    // serial_reg.h register numbers and bits.
    public const int Rx = 0, Ier = 1, Iir = 2, Fcr = 2, Lcr = 3, Mcr = 4, Lsr = 5, Msr = 6, Scr = 7;
    public const byte IerRdi = 0x01, IerThri = 0x02, IerRlsi = 0x04, IerMsi = 0x08;
    public const byte IirNoInt = 0x01, IirMsi = 0x00, IirThri = 0x02, IirRdi = 0x04, IirRlsi = 0x06;
    public const byte FcrEnableFifo = 0x01, FcrClearRcvr = 0x02, FcrClearXmit = 0x04;
    public const byte LcrDlab = 0x80;
    public const byte McrDtr = 0x01, McrRts = 0x02, McrOut2 = 0x08, McrAfe = 0x20;
    public const byte LsrDr = 0x01, LsrOe = 0x02, LsrThre = 0x20, LsrTemt = 0x40;
    public const byte MsrDcts = 0x01, MsrDdsr = 0x02, MsrCts = 0x10, MsrDsr = 0x20, MsrDcd = 0x80;

    public byte[] UartReg { get; } = new byte[8];

    public byte[] Fifo { get; } = new byte[MaxFifoSize];

    public byte Head { get; set; }

    public byte Tail { get; set; }

    public byte Count { get; set; }

    public bool Dlab { get; set; }

    public bool Overrun { get; set; }

    public ushort Divisor { get; set; }

    public byte FcrValue { get; set; }

    public byte MaxFifo { get; set; } = MaxFifoSize;

    public byte TriggerLevel { get; set; }

    /// <summary>head == tail: the sample's "FIFO empty" (also true of a full ring).</summary>
    public bool LooksEmpty => Head == Tail;

    /// <summary>Puts <paramref name="b"/> at the head (the caller checked Count &lt; MaxFifo).</summary>
    public void Push(byte b)
    {
        Fifo[Head] = b;
        Count++;
        Head = (byte)((Head + 1) & (MaxFifoSize - 1));
    }

    /// <summary>Takes the byte at the tail (the caller checked !LooksEmpty).</summary>
    public byte Pop()
    {
        byte b = Fifo[Tail];
        Count--;
        Tail = (byte)((Tail + 1) & (MaxFifoSize - 1));
        return b;
    }

    /// <summary>The IIR value the sample computes: every pending cause OR-ed, NO_INT when none, with 0xC0.</summary>
    public byte ComputeIir()
    {
        byte ier = UartReg[Ier];
        byte v = 0;
        if ((ier & IerRlsi) != 0 && Overrun)
        {
            v |= IirRlsi;
        }

        if ((ier & IerRdi) != 0 && Count >= TriggerLevel)
        {
            v |= IirRdi;
        }

        if ((ier & IerThri) != 0 && LooksEmpty)
        {
            v |= IirThri;
        }

        if ((ier & IerMsi) != 0 && (UartReg[Mcr] & (McrRts | McrDtr)) != 0)
        {
            v |= IirMsi;
        }

        if (v == 0)
        {
            v = IirNoInt;
        }

        return (byte)(v | 0xC0);
    }

    /// <summary>The loopback LSR: DR, OE, THRE|TEMT from the FIFO.</summary>
    public byte ComputeLsr()
    {
        byte lsr = 0;
        if (!LooksEmpty)
        {
            lsr |= LsrDr;
        }

        if (Overrun)
        {
            lsr |= LsrOe;
        }

        if (LooksEmpty)
        {
            lsr |= LsrTemt | LsrThre;
        }

        return lsr;
    }

    /// <summary>MSR: DSR|DDSR|DCD, plus CTS|DCTS unless auto flow control is on and the FIFO is full.</summary>
    public byte ComputeMsr()
    {
        byte msr = MsrDsr | MsrDdsr | MsrDcd;
        if ((UartReg[Mcr] & McrAfe) == 0 || Count < MaxFifo)
        {
            msr |= MsrCts | MsrDcts;
        }

        return msr;
    }

    /// <summary>The port as struct serial_port's 36 little-endian bytes (padding zero).</summary>
    public void Save(Span<byte> to)
    {
        to[..StreamSize].Clear();
        UartReg.CopyTo(to);
        Fifo.CopyTo(to[8..]);
        to[24] = Head;
        to[25] = Tail;
        to[26] = Count;
        to[27] = Dlab ? (byte)1 : (byte)0;
        to[28] = Overrun ? (byte)1 : (byte)0;
        BinaryPrimitives.WriteUInt16LittleEndian(to[30..], Divisor);
        to[32] = FcrValue;
        to[33] = MaxFifo;
        to[34] = TriggerLevel;
    }

    /// <summary>Loads struct serial_port's bytes as the sample's memcpy does (indices masked into the ring, as the ring arithmetic would).</summary>
    public void Load(ReadOnlySpan<byte> from)
    {
        from[..8].CopyTo(UartReg);
        from.Slice(8, MaxFifoSize).CopyTo(Fifo);
        Head = (byte)(from[24] & (MaxFifoSize - 1));
        Tail = (byte)(from[25] & (MaxFifoSize - 1));
        Count = from[26];
        Dlab = from[27] != 0;
        Overrun = from[28] != 0;
        Divisor = BinaryPrimitives.ReadUInt16LittleEndian(from[30..]);
        FcrValue = from[32];
        MaxFifo = from[33];
        TriggerLevel = from[34];
    }
}
