// Models the host's interrupt side as PCI devices see it (arch/x86/kernel/apic/msi.c,
// kernel/irq/manage.c request_irq/free_irq) (v6.12): MSI/MSI-X messages are writes into the
// interrupt window 0xfee00000-0xfeefffff whose data carries the vector; vectors 32-255 are
// allocated to handlers; INTx lines are routed per function to a requested handler.
// Handlers run in the task of the function that raised the interrupt, with no lock held.
//
// Lock rule: _lock protects the vector table, the INTx handlers and the counters' arrays.

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

    private readonly KSpinLock _lock;
    private readonly Action<int>?[] _vectors = new Action<int>?[VectorCount];
    private readonly string?[] _vectorNames = new string?[VectorCount];
    private readonly long[] _vectorCounts = new long[VectorCount];
    private readonly Dictionary<PciDevice, (string Name, Action<PciDevice> Handler)> _intx = [];
    private long _spurious;
    private long _delivered;

    internal InterruptController(SimKernel kernel)
    {
        _lock = new KSpinLock(kernel, "irq.desc_lock");
    }

    /// <summary>True for an address inside the MSI window.</summary>
    public static bool IsInMsiWindow(ulong address) => address is >= MsiWindowStart and <= MsiWindowEnd;

    /// <summary>The message (address, data) that makes a function signal <paramref name="vector"/> (to CPU 0, fixed delivery, edge).</summary>
    public static (ulong Address, uint Data) ComposeMsiMessage(int vector) => (MsiWindowStart, (uint)vector);

    /// <summary>Messages that reached a handler.</summary>
    public long Delivered => Interlocked.Read(ref _delivered);

    /// <summary>Messages and INTx assertions with no handler.</summary>
    public long Spurious => Interlocked.Read(ref _spurious);

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

    /// <summary>Frees a vector; later messages on it are spurious.</summary>
    public void FreeVector(int vector)
    {
        _lock.Lock();
        if (vector is >= FirstVector and < VectorCount)
        {
            _vectors[vector] = null;
            _vectorNames[vector] = null;
        }

        _lock.Unlock();
    }

    /// <summary>request_irq() for a function's INTx: 0, or -EBUSY when a handler is already installed.</summary>
    public int RequestIntx(PciDevice device, string name, Action<PciDevice> handler)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(handler);
        _lock.Lock();
        try
        {
            return _intx.TryAdd(device, (name, handler)) ? 0 : Errno.EBUSY.Negative();
        }
        finally
        {
            _lock.Unlock();
        }
    }

    /// <summary>free_irq() of a function's INTx handler.</summary>
    public void FreeIntx(PciDevice device)
    {
        _lock.Lock();
        _intx.Remove(device);
        _lock.Unlock();
    }

    /// <summary>A message write into the window: its data carries the vector.</summary>
    internal void DeliverMsi(uint data)
    {
        int vector = (int)(data & 0xff);
        Action<int>? handler;
        _lock.Lock();
        handler = vector >= FirstVector ? _vectors[vector] : null;
        _lock.Unlock();
        if (handler is null)
        {
            Interlocked.Increment(ref _spurious);
            return;
        }

        Interlocked.Increment(ref _vectorCounts[vector]);
        Interlocked.Increment(ref _delivered);
        handler(vector);
    }

    /// <summary>A function's INTx line went active (or became visible again).</summary>
    internal void IntxRaised(PciDevice device)
    {
        Action<PciDevice>? handler;
        _lock.Lock();
        handler = _intx.TryGetValue(device, out var h) ? h.Handler : null;
        _lock.Unlock();
        if (handler is null)
        {
            Interlocked.Increment(ref _spurious);
            return;
        }

        Interlocked.Increment(ref _delivered);
        handler(device);
    }
}
