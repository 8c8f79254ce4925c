// Models the ID allocator of lib/idr.c (v6.12): ida_alloc_min() hands out the lowest free
// id at or above a minimum, ida_free() returns one. IOMMU group ids and IOMMU domain ids
// come from one each.
//
// Lock rule: _lock (a spinlock, as the IDA's xa_lock) protects the bitmap.

namespace Vfio.Kernel;

/// <summary>struct ida: lowest-free id allocation.</summary>
public sealed class Ida
{
    private readonly SimKernel _kernel;
    private readonly KSpinLock _lock;
    private ulong[] _bits = new ulong[1];

    /// <summary>An empty allocator named <paramref name="name"/> (the name of its lock).</summary>
    public Ida(SimKernel kernel, string name)
    {
        _kernel = kernel;
        _lock = new KSpinLock(kernel, name);
    }

    /// <summary>ida_alloc_min(): the lowest free id that is at least <paramref name="min"/>.</summary>
    public int Alloc(int min = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(min);
        _lock.Lock();
        try
        {
            for (int w = min >> 6; ; w++)
            {
                if (w == _bits.Length)
                {
                    Array.Resize(ref _bits, _bits.Length * 2);
                }

                ulong taken = _bits[w];
                if (w == min >> 6)
                {
                    taken |= (1UL << (min & 63)) - 1;
                }

                if (taken != ulong.MaxValue)
                {
                    int bit = System.Numerics.BitOperations.TrailingZeroCount(~taken);
                    _bits[w] |= 1UL << bit;
                    return (w << 6) | bit;
                }
            }
        }
        finally
        {
            _lock.Unlock();
        }
    }

    /// <summary>ida_free(): <paramref name="id"/> may be handed out again. Freeing an id that is not allocated WARNs.</summary>
    public void Free(int id)
    {
        _lock.Lock();
        try
        {
            int w = id >> 6;
            ulong bit = 1UL << (id & 63);
            if (Warn.On(_kernel, id < 0 || w >= _bits.Length || (_bits[w] & bit) == 0, $"ida_free called for id={id} which is not allocated."))
            {
                return;
            }

            _bits[w] &= ~bit;
        }
        finally
        {
            _lock.Unlock();
        }
    }

    /// <summary>True when <paramref name="id"/> is allocated.</summary>
    public bool IsAllocated(int id)
    {
        _lock.Lock();
        try
        {
            int w = id >> 6;
            return id >= 0 && w < _bits.Length && (_bits[w] & (1UL << (id & 63))) != 0;
        }
        finally
        {
            _lock.Unlock();
        }
    }
}
