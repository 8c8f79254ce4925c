// Models the primary fault recording of drivers/iommu/intel/dmar.c (v6.12, dmar_fault and
// the fault recording registers): a bounded log of DMA faults. Hardware has a handful of
// recording registers and overwrites on overflow; the simulator keeps a ring of the most
// recent faults and counts every fault ever recorded.
//
// Locking: _lock (iommu.fault_lock) protects the ring, _next, _count and _total. Faults
// are recorded from the DMA path, which holds no other lock.

using Vfio.Kernel;

namespace Vfio.Platform.Iommu;

/// <summary>The fault log of an emulated IOMMU: the last <see cref="Capacity"/> faults and a total count.</summary>
public sealed class IommuFaultLog
{
    // Protects _ring, _next, _count, _total.
    private readonly KSpinLock _lock;
    private readonly IommuFault[] _ring;
    private int _next;
    private int _count;
    private long _total;

    /// <summary>A log keeping the last <paramref name="capacity"/> faults.</summary>
    public IommuFaultLog(SimKernel kernel, int capacity = 256)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(capacity);
        _lock = new KSpinLock(kernel, "iommu.fault_lock");
        _ring = new IommuFault[capacity];
    }

    /// <summary>How many faults the ring keeps.</summary>
    public int Capacity => _ring.Length;

    /// <summary>Faults recorded since boot (or the last <see cref="Clear"/>), including those the ring no longer holds.</summary>
    public long Total => Volatile.Read(ref _total);

    /// <summary>Records <paramref name="fault"/>, overwriting the oldest when the ring is full.</summary>
    public void Record(IommuFault fault)
    {
        ArgumentNullException.ThrowIfNull(fault);
        _lock.Lock();
        try
        {
            _ring[_next] = fault;
            _next = (_next + 1) % _ring.Length;
            if (_count < _ring.Length)
            {
                _count++;
            }

            Volatile.Write(ref _total, _total + 1);
        }
        finally
        {
            _lock.Unlock();
        }
    }

    /// <summary>The faults the ring holds, oldest first.</summary>
    public IReadOnlyList<IommuFault> Snapshot()
    {
        _lock.Lock();
        try
        {
            var list = new IommuFault[_count];
            int first = (_next - _count + _ring.Length) % _ring.Length;
            for (int i = 0; i < _count; i++)
            {
                list[i] = _ring[(first + i) % _ring.Length];
            }

            return list;
        }
        finally
        {
            _lock.Unlock();
        }
    }

    /// <summary>Empties the ring and resets <see cref="Total"/>.</summary>
    public void Clear()
    {
        _lock.Lock();
        try
        {
            Array.Clear(_ring);
            _next = 0;
            _count = 0;
            Volatile.Write(ref _total, 0);
        }
        finally
        {
            _lock.Unlock();
        }
    }
}
