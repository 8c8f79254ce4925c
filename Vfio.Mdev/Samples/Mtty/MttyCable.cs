// The mtty cable (an extension of the simulator; the kernel's sample only loops back): a
// port's far end as a duplex System.IO.Pipelines pipe. THR writes go out to the far end's
// reader; what the far end writes comes into the 16-byte receive FIFO with the loopback's
// interrupt rules. Nothing runs in the background: bytes move into the FIFO when the guest
// touches the port, when the far end calls Send or Deliver, and at attach.
//
// Backpressure, never an unbounded buffer: each direction's pipe pauses its writer at
// PipeCapacity unread bytes. Receive: the FIFO takes bytes only while it has room short of
// its 16th slot (the sample reads a full ring as empty), the rest waits in the pipe, and a
// far-end writer past PipeCapacity is paused (Send accepts only what fits). Transmit: while
// the far end has PipeCapacity bytes unread the line is busy: LSR shows neither THRE nor
// TEMT, and a THR write is dropped (counted in TxDropped), as a 16550 without FIFO space
// loses the byte.
//
// Lock rules: the kernel side (TransmitLocked, ReceiveLocked, AdjustLsrLocked) runs under
// the device's ops_lock; the far-end side is one writer and one reader at a time, as a
// Pipe requires. Pipes use the inline scheduler, so no continuation leaves the caller's
// thread: same seed, same trace.

using System.Buffers;
using System.IO.Pipelines;

namespace Vfio.Mdev.Samples.Mtty;

/// <summary>
/// A cable on one mtty port: <see cref="FarEnd"/> is the other end of the serial line.
/// Attach with <see cref="MttyModule.Attach"/>; <see cref="Dispose"/> (or
/// <see cref="MttyModule.Detach"/>) restores the loopback.
/// </summary>
public sealed class MttyCable : IDisposable
{
    /// <summary>Unread bytes at which each direction's writer is paused.</summary>
    public const int PipeCapacity = 64;

    private static readonly PipeOptions s_options = new(
        pauseWriterThreshold: PipeCapacity,
        resumeWriterThreshold: PipeCapacity / 2,
        readerScheduler: PipeScheduler.Inline,
        writerScheduler: PipeScheduler.Inline,
        useSynchronizationContext: false);

    private readonly Pipe _tx = new(s_options);
    private readonly Pipe _rx = new(s_options);
    private readonly MttyDevice _dev;
    private readonly FarEndReader _farIn;
    private readonly FarEndWriter _farOut;
    private ValueTask<FlushResult> _txFlush;

    // The far end's last flush that the pipe paused (null when none is pending).
    private Task<FlushResult>? _rxPaused;
    private int _txQueued;
    private int _rxQueued;
    private long _txDropped;
    private int _detached;

    internal MttyCable(MttyDevice dev, Guid uuid, int port)
    {
        _dev = dev;
        Uuid = uuid;
        Port = port;
        _farIn = new FarEndReader(this, _tx.Reader);
        _farOut = new FarEndWriter(this, _rx.Writer);
        FarEnd = new Duplex(_farIn, _farOut);
    }

    /// <summary>The mdev the cable is plugged into.</summary>
    public Guid Uuid { get; }

    /// <summary>The port (0 for BAR0, 1 for BAR1).</summary>
    public int Port { get; }

    /// <summary>
    /// The far end: <c>Input</c> yields what the guest transmitted, <c>Output</c> carries bytes
    /// to the guest (call <see cref="Deliver"/> after flushing it, or the bytes move in when the
    /// guest next touches the port). Both count what passes, so the line's state (LSR, the
    /// bounds) stays right however the far end uses them; one reader and one writer at a time.
    /// </summary>
    public IDuplexPipe FarEnd { get; }

    /// <summary>THR writes lost because the far end did not drain the line.</summary>
    public long TxDropped => Interlocked.Read(ref _txDropped);

    /// <summary>Bytes the far end sent that wait in the pipe (not yet in the FIFO).</summary>
    public int Pending => Volatile.Read(ref _rxQueued);

    /// <summary>
    /// Writes as many of <paramref name="bytes"/> as the line takes now (at most
    /// <see cref="PipeCapacity"/> unread), moves what fits into the FIFO (raising the
    /// guest's interrupts), and returns how many were accepted.
    /// </summary>
    public int Send(ReadOnlySpan<byte> bytes)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _detached) != 0, this);
        int room = PipeCapacity - Volatile.Read(ref _rxQueued);
        int n = Math.Min(room, bytes.Length);
        if (n > 0 && _rxPaused is { IsCompleted: false })
        {
            n = 0;
        }

        if (n > 0)
        {
            _farOut.Write(bytes[..n]);
            _ = _farOut.FlushAsync();
        }

        Deliver();
        return n;
    }

    /// <summary>Moves what the far end wrote into the port's FIFO now (with its interrupts).</summary>
    public void Deliver() => _dev.DeliverFromCable(Port);

    /// <summary>Everything the guest transmitted that the far end has not read yet.</summary>
    public byte[] ReadAvailable()
    {
        if (!_farIn.TryRead(out ReadResult r))
        {
            return [];
        }

        byte[] bytes = r.Buffer.ToArray();
        _farIn.AdvanceTo(r.Buffer.End);
        return bytes;
    }

    /// <summary>Detaches the cable: the port loops back again.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _detached, 1) != 0)
        {
            return;
        }

        _dev.DetachCable(Port, this);
        _tx.Writer.Complete();
        _rx.Reader.Complete();
    }

    /// <summary>A THR write: to the far end, or dropped while the line is busy.</summary>
    internal void TransmitLocked(byte data)
    {
        _dev.AssertOpsLockHeld();
        if (LineBusy())
        {
            Interlocked.Increment(ref _txDropped);
            return;
        }

        Span<byte> one = [data];
        _tx.Writer.Write(one);
        Interlocked.Increment(ref _txQueued);
        _txFlush = _tx.Writer.FlushAsync();
    }

    /// <summary>LSR with a cable: THRE and TEMT follow the line, not the loopback FIFO.</summary>
    internal byte AdjustLsrLocked(byte lsr)
    {
        _dev.AssertOpsLockHeld();
        lsr = (byte)(lsr & ~(MttyPort.LsrThre | MttyPort.LsrTemt));
        if (!LineBusy())
        {
            lsr |= MttyPort.LsrThre;
        }

        if (Volatile.Read(ref _txQueued) <= 0)
        {
            lsr |= MttyPort.LsrTemt;
        }

        return lsr;
    }

    /// <summary>Moves far-end bytes into the FIFO while it has room short of its 16th slot.</summary>
    internal void ReceiveLocked(MttyPort s)
    {
        _dev.AssertOpsLockHeld();
        int room = Math.Min((int)s.MaxFifo, MttyPort.MaxFifoSize - 1) - s.Count;
        if (room <= 0 || !_rx.Reader.TryRead(out ReadResult r))
        {
            return;
        }

        ReadOnlySequence<byte> buf = r.Buffer;
        int take = (int)Math.Min(room, buf.Length);
        Span<byte> chunk = stackalloc byte[MttyPort.MaxFifoSize];
        buf.Slice(0, take).CopyTo(chunk);
        _rx.Reader.AdvanceTo(buf.GetPosition(take));
        Interlocked.Add(ref _rxQueued, -take);
        for (int i = 0; i < take; i++)
        {
            _dev.PushFromCableLocked(s, chunk[i]);
        }
    }

    private bool LineBusy()
    {
        if (Volatile.Read(ref _txQueued) >= PipeCapacity)
        {
            return true;
        }

        if (!_txFlush.IsCompleted)
        {
            return true;
        }

        _ = _txFlush.Result;
        _txFlush = default;
        return false;
    }

    // The far end's reader: what it consumes leaves the line (TEMT, the busy bound).
    private sealed class FarEndReader(MttyCable cable, PipeReader inner) : PipeReader
    {
        private ReadOnlySequence<byte> _last;

        public override bool TryRead(out ReadResult result)
        {
            bool ok = inner.TryRead(out result);
            _last = ok ? result.Buffer : default;
            return ok;
        }

        public override ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default)
        {
            ValueTask<ReadResult> read = inner.ReadAsync(cancellationToken);
            if (read.IsCompletedSuccessfully)
            {
                ReadResult r = read.Result;
                _last = r.Buffer;
                return new ValueTask<ReadResult>(r);
            }

            return Remember(read);
        }

        public override void AdvanceTo(SequencePosition consumed) => AdvanceTo(consumed, consumed);

        public override void AdvanceTo(SequencePosition consumed, SequencePosition examined)
        {
            long n = _last.Slice(_last.Start, consumed).Length;
            inner.AdvanceTo(consumed, examined);
            _last = default;
            Interlocked.Add(ref cable._txQueued, -(int)n);
        }

        public override void CancelPendingRead() => inner.CancelPendingRead();

        public override void Complete(Exception? exception = null) => inner.Complete(exception);

        private async ValueTask<ReadResult> Remember(ValueTask<ReadResult> read)
        {
            ReadResult r = await read.ConfigureAwait(false);
            _last = r.Buffer;
            return r;
        }
    }

    // The far end's writer: what it commits waits for the FIFO (Pending, the bound); a flush
    // the pipe pauses is remembered so Send does not write under it.
    private sealed class FarEndWriter(MttyCable cable, PipeWriter inner) : PipeWriter
    {
        public override void Advance(int bytes)
        {
            inner.Advance(bytes);
            Interlocked.Add(ref cable._rxQueued, bytes);
        }

        public override Memory<byte> GetMemory(int sizeHint = 0) => inner.GetMemory(sizeHint);

        public override Span<byte> GetSpan(int sizeHint = 0) => inner.GetSpan(sizeHint);

        public override ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default)
        {
            ValueTask<FlushResult> flush = inner.FlushAsync(cancellationToken);
            if (flush.IsCompleted)
            {
                cable._rxPaused = null;
                return flush;
            }

            Task<FlushResult> paused = flush.AsTask();
            cable._rxPaused = paused;
            return new ValueTask<FlushResult>(paused);
        }

        public override void CancelPendingFlush() => inner.CancelPendingFlush();

        public override void Complete(Exception? exception = null) => inner.Complete(exception);
    }

    private sealed class Duplex(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;

        public PipeWriter Output { get; } = output;
    }
}
