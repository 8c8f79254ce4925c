// Models the host's interrupt side as PCI devices see it (arch/x86/kernel/apic/msi.c,
// kernel/irq/manage.c request_irq/free_irq/disable_irq/enable_irq/synchronize_irq,
// kernel/irq/resend.c) (v6.12): MSI/MSI-X messages are writes into the interrupt window
// 0xfee00000-0xfeefffff whose data carries the vector; vectors 32-255 are allocated to
// handlers; INTx lines are routed per function to a requested handler. Handlers run in the
// task of the function that raised the interrupt, with no lock held.
//
// An INTx line is level-triggered: while it is disabled (disable_irq, or requested with
// IRQF_NO_AUTOEN) an assertion is held pending, and enable_irq() replays it when the line is
// still asserted, from a task of its own ("irq/N-resend"), as the kernel's resend does once
// the caller has interrupts on again. A request that auto-enables a line the function
// already drives delivers at once, in the requesting task. free_irq() and free of a vector
// wait for handlers of that line or vector still running (synchronize_irq).
//
// Lock rule: _lock protects the vector table, the INTx lines and their disable depth,
// pending flags and in-flight counts. Handlers run without it.

using Vfio.Kernel;

namespace Vfio.Platform.Pci;

/// <summary>The machine's interrupt controller: MSI vectors and INTx routing.</summary>
public sealed class InterruptController
{
    /// <summary>First address of the x86 MSI window.</summary>
    public const ulong MsiWindowStart = 0xfee00000;

    /// <summary>Last address (inclusive) of the x86 MSI window.</summary>
    public const ulong MsiWindowEnd = 0xfeefffff;

    /// <summary>The first vector device interrupts may use (FIRST_EXTERNAL_VECTOR).</summary>
    public const int FirstVector = 32;

    /// <summary>One past the last vector.</summary>
    public const int VectorCount = 256;

    private readonly SimKernel _kernel;
    private readonly KSpinLock _lock;
    private readonly WaitQueue _sync;
    private readonly Action<int>?[] _vectors = new Action<int>?[VectorCount];
    private readonly string?[] _vectorNames = new string?[VectorCount];
    private readonly long[] _vectorCounts = new long[VectorCount];
    private readonly int[] _vectorInFlight = new int[VectorCount];
    private readonly Dictionary<PciDevice, IntxLine> _intx = [];
    private long _spurious;
    private long _delivered;

    internal InterruptController(SimKernel kernel)
    {
        _kernel = kernel;
        _lock = new KSpinLock(kernel, "irq.desc_lock");
        _sync = new WaitQueue(kernel, "irq.synchronize");
    }

    /// <summary>True for an address inside the MSI window.</summary>
    public static bool IsInMsiWindow(ulong address) => address is >= MsiWindowStart and <= MsiWindowEnd;

    /// <summary>The message (address, data) that makes a function signal <paramref name="vector"/> (to CPU 0, fixed delivery, edge).</summary>
    public static (ulong Address, uint Data) ComposeMsiMessage(int vector) => (MsiWindowStart, (uint)vector);

    /// <summary>Messages that reached a handler.</summary>
    public long Delivered => Interlocked.Read(ref _delivered);

    /// <summary>Messages and INTx assertions with no handler.</summary>
    public long Spurious => Interlocked.Read(ref _spurious);

    /// <summary>Vectors allocated now.</summary>
    public int AllocatedVectors
    {
        get
        {
            _lock.Lock();
            try
            {
                int n = 0;
                for (int v = FirstVector; v < VectorCount; v++)
                {
                    n += _vectors[v] is null ? 0 : 1;
                }

                return n;
            }
            finally
            {
                _lock.Unlock();
            }
        }
    }

    /// <summary>Messages delivered on <paramref name="vector"/>.</summary>
    public long Count(int vector) => vector is >= 0 and < VectorCount ? Interlocked.Read(ref _vectorCounts[vector]) : 0;

    /// <summary>The name a vector was allocated under, or null.</summary>
    public string? VectorName(int vector)
    {
        _lock.Lock();
        try
        {
            return vector is >= 0 and < VectorCount ? _vectorNames[vector] : null;
        }
        finally
        {
            _lock.Unlock();
        }
    }

    /// <summary>Allocates a vector for <paramref name="handler"/>: the vector, or -ENOSPC when all are taken.</summary>
    public int AllocVector(string name, Action<int> handler)
    {
        ArgumentNullException.ThrowIfNull(handler);
        _lock.Lock();
        try
        {
            for (int v = FirstVector; v < VectorCount; v++)
            {
                if (_vectors[v] is null)
                {
                    _vectors[v] = handler;
                    _vectorNames[v] = name;
                    return v;
                }
            }

            return Errno.ENOSPC.Negative();
        }
        finally
        {
            _lock.Unlock();
        }
    }

    /// <summary>
    /// Allocates <paramref name="count"/> (a power of two) consecutive vectors aligned to
    /// <paramref name="count"/>, as multiple-message MSI needs: the first vector, or -ENOSPC.
    /// </summary>
    public int AllocVectorBlock(string name, int count, Action<int> handler)
    {
        ArgumentNullException.ThrowIfNull(handler);
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        _lock.Lock();
        try
        {
            for (int first = FirstVector; first + count <= VectorCount; first += count)
            {
                bool free = true;
                for (int v = first; v < first + count && free; v++)
                {
                    free = _vectors[v] is null;
                }

                if (free)
                {
                    for (int v = first; v < first + count; v++)
                    {
                        _vectors[v] = handler;
                        _vectorNames[v] = name;
                    }

                    return first;
                }
            }

            return Errno.ENOSPC.Negative();
        }
        finally
        {
            _lock.Unlock();
        }
    }

    /// <summary>Vectors not allocated.</summary>
    public int FreeVectors => VectorCount - FirstVector - AllocatedVectors;

    /// <summary>Frees a vector, after any handler still running on it returns; later messages on it are spurious.</summary>
    public void FreeVector(int vector)
    {
        _lock.Lock();
        if (vector is >= FirstVector and < VectorCount)
        {
            _vectors[vector] = null;
            _vectorNames[vector] = null;
        }

        _lock.Unlock();
        if (vector is >= FirstVector and < VectorCount)
        {
            SynchronizeVector(vector);
        }
    }

    /// <summary>synchronize_irq() for an MSI vector: returns once no handler of <paramref name="vector"/> runs.</summary>
    public void SynchronizeVector(int vector)
    {
        if (Volatile.Read(ref _vectorInFlight[vector]) != 0)
        {
            _sync.WaitEvent(() => Volatile.Read(ref _vectorInFlight[vector]) == 0);
        }
    }

    /// <summary>
    /// request_irq() for a function's INTx: 0, or -EBUSY when a handler is already installed.
    /// With <paramref name="noAutoEnable"/> (IRQF_NO_AUTOEN) the line starts disabled (depth 1);
    /// otherwise a line the function already drives is delivered at once.
    /// </summary>
    public int RequestIntx(PciDevice device, string name, Action<PciDevice> handler, bool noAutoEnable = false)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(handler);
        _lock.Lock();
        try
        {
            if (!_intx.TryAdd(device, new IntxLine(name, handler) { Depth = noAutoEnable ? 1 : 0 }))
            {
                return Errno.EBUSY.Negative();
            }
        }
        finally
        {
            _lock.Unlock();
        }

        if (!noAutoEnable && device.IntxLineActive)
        {
            IntxRaised(device);
        }

        return 0;
    }

    /// <summary>free_irq() of a function's INTx handler: removes it, then waits for a handler still running.</summary>
    public void FreeIntx(PciDevice device)
    {
        IntxLine? line;
        _lock.Lock();
        _intx.Remove(device, out line);
        _lock.Unlock();
        if (line is not null && Volatile.Read(ref line.InFlight) != 0)
        {
            WaitIntxIdle(line);
        }
    }

    /// <summary>True while a handler is installed for <paramref name="device"/>'s INTx.</summary>
    public bool HasIntxHandler(PciDevice device)
    {
        _lock.Lock();
        try
        {
            return _intx.ContainsKey(device);
        }
        finally
        {
            _lock.Unlock();
        }
    }

    /// <summary>The disable depth of <paramref name="device"/>'s INTx line (0: enabled), or -1 without a handler.</summary>
    public int IntxDisableDepth(PciDevice device)
    {
        _lock.Lock();
        try
        {
            return _intx.TryGetValue(device, out IntxLine? line) ? line.Depth : -1;
        }
        finally
        {
            _lock.Unlock();
        }
    }

    /// <summary>disable_irq_nosync(): one more disable on the line; assertions are held pending.</summary>
    public void DisableIntxNosync(PciDevice device)
    {
        _lock.Lock();
        if (_intx.TryGetValue(device, out IntxLine? line))
        {
            line.Depth++;
        }

        _lock.Unlock();
    }

    /// <summary>
    /// enable_irq(): one disable less; when the depth reaches 0 and the line was asserted while
    /// disabled (or still is), the interrupt is replayed from a task of its own. An enable
    /// of a line that is not disabled WARNs, as the kernel's "Unbalanced enable" does.
    /// </summary>
    public void EnableIntx(PciDevice device)
    {
        bool enabled = false;
        bool pending = false;
        _lock.Lock();
        try
        {
            if (!_intx.TryGetValue(device, out IntxLine? line))
            {
                return;
            }

            if (Warn.On(line.Depth == 0, $"Unbalanced enable for IRQ {device.Irq} ({line.Name})"))
            {
                return;
            }

            if (--line.Depth == 0)
            {
                enabled = true;
                pending = line.Pending;
                line.Pending = false;
            }
        }
        finally
        {
            _lock.Unlock();
        }

        if (enabled && (pending || device.IntxLineActive))
        {
            _kernel.Spawn($"irq/{device.Irq}-resend", () =>
            {
                if (device.IntxLineActive)
                {
                    IntxRaised(device);
                }
            });
        }
    }

    /// <summary>synchronize_irq() for a function's INTx line: returns once no handler of it runs.</summary>
    public void SynchronizeIntx(PciDevice device)
    {
        IntxLine? line;
        _lock.Lock();
        _intx.TryGetValue(device, out line);
        _lock.Unlock();
        if (line is not null && Volatile.Read(ref line.InFlight) != 0)
        {
            WaitIntxIdle(line);
        }
    }

    // Apart from its callers so that the condition's closure is made only when a handler runs.
    private void WaitIntxIdle(IntxLine line) => _sync.WaitEvent(() => Volatile.Read(ref line.InFlight) == 0);

    /// <summary>A message write into the window: its data carries the vector.</summary>
    internal void DeliverMsi(uint data)
    {
        int vector = (int)(data & 0xff);
        Action<int>? handler;
        _lock.Lock();
        handler = vector >= FirstVector ? _vectors[vector] : null;
        if (handler is not null)
        {
            Interlocked.Increment(ref _vectorInFlight[vector]);
        }

        _lock.Unlock();
        if (handler is null)
        {
            Interlocked.Increment(ref _spurious);
            return;
        }

        Interlocked.Increment(ref _vectorCounts[vector]);
        Interlocked.Increment(ref _delivered);
        _kernel.Cost.Charge(CostOp.InterruptDelivery);
        try
        {
            handler(vector);
        }
        finally
        {
            Interlocked.Decrement(ref _vectorInFlight[vector]);
            if (_sync.HasSleepers)
            {
                _sync.WakeUp();
            }
        }
    }

    /// <summary>A function's INTx line went active (or became visible again).</summary>
    internal void IntxRaised(PciDevice device)
    {
        IntxLine? line;
        _lock.Lock();
        if (_intx.TryGetValue(device, out line))
        {
            if (line.Depth > 0)
            {
                line.Pending = true;
                line = null;
                _lock.Unlock();
                return;
            }

            Interlocked.Increment(ref line.InFlight);
        }

        _lock.Unlock();
        if (line is null)
        {
            Interlocked.Increment(ref _spurious);
            return;
        }

        Interlocked.Increment(ref _delivered);
        _kernel.Cost.Charge(CostOp.InterruptDelivery);
        try
        {
            line.Handler(device);
        }
        finally
        {
            Interlocked.Decrement(ref line.InFlight);
            if (_sync.HasSleepers)
            {
                _sync.WakeUp();
            }
        }
    }

    /// <summary>An INTx line: its handler, disable depth, an assertion held while disabled, handlers running.</summary>
    private sealed class IntxLine(string name, Action<PciDevice> handler)
    {
        public string Name { get; } = name;

        public Action<PciDevice> Handler { get; } = handler;

        public int Depth { get; set; }

        public bool Pending { get; set; }

        public int InFlight;
    }
}
