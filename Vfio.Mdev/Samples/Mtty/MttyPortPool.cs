// Models mdev_avail_ports of samples/vfio-mdev/mtty.c (v6.12): the module's pool of
// MAX_MTTYS serial ports, reserved by a device's init with a compare-and-swap loop and
// given back by its release.

namespace Vfio.Mdev.Samples.Mtty;

/// <summary>The 24-port pool every mtty instance draws from.</summary>
internal sealed class MttyPortPool
{
    /// <summary>MAX_MTTYS.</summary>
    public const int MaxPorts = 24;

    // atomic_t mdev_avail_ports.
    private int _available = MaxPorts;

    /// <summary>Ports not reserved now.</summary>
    public int Available => Volatile.Read(ref _available);

    /// <summary>Reserves <paramref name="n"/> ports atomically; false (ENOSPC for the caller) when fewer are left.</summary>
    public bool TryReserve(int n)
    {
        int avail = Volatile.Read(ref _available);
        while (true)
        {
            if (avail < n)
            {
                return false;
            }

            int seen = Interlocked.CompareExchange(ref _available, avail - n, avail);
            if (seen == avail)
            {
                return true;
            }

            avail = seen;
        }
    }

    /// <summary>Gives <paramref name="n"/> ports back.</summary>
    public void Return(int n) => Interlocked.Add(ref _available, n);
}
