// A mainline release number (major.minor), as LINUX_VERSION_CODE orders releases without
// the sublevel: what kernel profiles run as and what profile features appeared or went
// away in.

namespace Vfio.Kernel;

/// <summary>A mainline Linux release, <c>6.12</c>; ordered as the kernel orders <c>KERNEL_VERSION(major, minor, 0)</c>.</summary>
public readonly record struct KernelVersion(int Major, int Minor) : IComparable<KernelVersion>
{
    /// <inheritdoc/>
    public int CompareTo(KernelVersion other) => Major != other.Major ? Major.CompareTo(other.Major) : Minor.CompareTo(other.Minor);

    /// <summary>True when <paramref name="left"/> is an older release than <paramref name="right"/>.</summary>
    public static bool operator <(KernelVersion left, KernelVersion right) => left.CompareTo(right) < 0;

    /// <summary>True when <paramref name="left"/> is a newer release than <paramref name="right"/>.</summary>
    public static bool operator >(KernelVersion left, KernelVersion right) => left.CompareTo(right) > 0;

    /// <summary>True when <paramref name="left"/> is <paramref name="right"/> or older.</summary>
    public static bool operator <=(KernelVersion left, KernelVersion right) => left.CompareTo(right) <= 0;

    /// <summary>True when <paramref name="left"/> is <paramref name="right"/> or newer.</summary>
    public static bool operator >=(KernelVersion left, KernelVersion right) => left.CompareTo(right) >= 0;

    /// <summary><c>6.12</c>.</summary>
    public override string ToString() => $"{Major}.{Minor}";
}
