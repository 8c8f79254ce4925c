// Deterministic pseudo-random numbers for the simulated kernel: xoshiro256** seeded by
// SplitMix64. Independent of System.Random so a seed means the same thing on every .NET
// version; separate streams keep scheduling choices and kernel-code randomness apart so
// that a replay (which takes scheduling from the trace) still sees the same kernel draws.

namespace Vfio.Kernel;

/// <summary>A seeded, reproducible random source. Not thread-safe: one per stream.</summary>
public sealed class KRandom
{
    private ulong _s0, _s1, _s2, _s3;

    /// <summary>Creates stream <paramref name="stream"/> of seed <paramref name="seed"/>.</summary>
    public KRandom(ulong seed, ulong stream = 0)
    {
        ulong x = seed ^ (stream * 0xD1B54A32D192ED03UL);
        _s0 = SplitMix(ref x);
        _s1 = SplitMix(ref x);
        _s2 = SplitMix(ref x);
        _s3 = SplitMix(ref x);
    }

    private static ulong SplitMix(ref ulong x)
    {
        ulong z = x += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>The next 64 random bits.</summary>
    public ulong NextU64()
    {
        ulong result = ulong.RotateLeft(_s1 * 5, 7) * 9;
        ulong t = _s1 << 17;
        _s2 ^= _s0;
        _s3 ^= _s1;
        _s1 ^= _s2;
        _s0 ^= _s3;
        _s2 ^= t;
        _s3 = ulong.RotateLeft(_s3, 45);
        return result;
    }

    /// <summary>A uniform integer in [0, <paramref name="maxExclusive"/>).</summary>
    public int Next(int maxExclusive)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxExclusive);
        // Lemire's multiply-shift with rejection: unbiased and branch-light.
        ulong m = (NextU64() >> 32) * (ulong)maxExclusive;
        uint low = (uint)m;
        if (low < (uint)maxExclusive)
        {
            uint threshold = (uint)(-maxExclusive) % (uint)maxExclusive;
            while (low < threshold)
            {
                m = (NextU64() >> 32) * (ulong)maxExclusive;
                low = (uint)m;
            }
        }

        return (int)(m >> 32);
    }

    /// <summary>A uniform integer in [<paramref name="minInclusive"/>, <paramref name="maxExclusive"/>).</summary>
    public long NextInRange(long minInclusive, long maxExclusive)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(maxExclusive, minInclusive);
        ulong range = (ulong)(maxExclusive - minInclusive);
        return minInclusive + (long)(NextU64() % range);
    }

    /// <summary>A uniform double in [0, 1).</summary>
    public double NextDouble() => (NextU64() >> 11) * (1.0 / (1UL << 53));

    /// <summary>True with probability <paramref name="p"/>.</summary>
    public bool Chance(double p) => p > 0 && (p >= 1 || NextDouble() < p);
}
