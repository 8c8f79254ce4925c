// Models include/linux/cred.h and include/uapi/linux/capability.h (v6.12), reduced to what
// vfio and the memory code check: the uid and a capability set.

namespace Vfio.Platform.Proc;

/// <summary>Capability numbers (include/uapi/linux/capability.h).</summary>
public static class Capabilities
{
    /// <summary>CAP_DAC_OVERRIDE: bypass file permission checks.</summary>
    public const int CAP_DAC_OVERRIDE = 1;
    /// <summary>CAP_IPC_LOCK: lock memory beyond RLIMIT_MEMLOCK.</summary>
    public const int CAP_IPC_LOCK = 14;
    /// <summary>CAP_SYS_RAWIO: raw I/O, required by vfio noiommu.</summary>
    public const int CAP_SYS_RAWIO = 17;
    /// <summary>CAP_SYS_ADMIN.</summary>
    public const int CAP_SYS_ADMIN = 21;
    /// <summary>CAP_SYS_RESOURCE: raise resource limits.</summary>
    public const int CAP_SYS_RESOURCE = 24;

    /// <summary>Every capability, as root has.</summary>
    public const ulong All = ~0UL;
}

/// <summary>A process's credentials: uid, gid and effective capabilities.</summary>
/// <param name="Uid">The user id; 0 is root.</param>
/// <param name="Gid">The group id.</param>
/// <param name="CapEffective">Effective capabilities, one bit per CAP_* number.</param>
public sealed record Credentials(int Uid, int Gid, ulong CapEffective)
{
    /// <summary>root with every capability.</summary>
    public static Credentials Root { get; } = new(0, 0, Capabilities.All);

    /// <summary>An unprivileged user (uid 1000) with no capabilities.</summary>
    public static Credentials User { get; } = new(1000, 1000, 0);

    /// <summary>capable(): true when capability <paramref name="cap"/> is effective.</summary>
    public bool Capable(int cap) => (CapEffective & (1UL << cap)) != 0;

    /// <summary>These credentials plus capability <paramref name="cap"/>.</summary>
    public Credentials With(int cap) => this with { CapEffective = CapEffective | (1UL << cap) };

    /// <summary>These credentials without capability <paramref name="cap"/>.</summary>
    public Credentials Without(int cap) => this with { CapEffective = CapEffective & ~(1UL << cap) };
}

/// <summary>Resource limits the simulated kernel enforces.</summary>
public sealed record ResourceLimits
{
    /// <summary>RLIM_INFINITY.</summary>
    public const long Infinity = long.MaxValue;

    /// <summary>RLIMIT_MEMLOCK in bytes (soft limit). Default 8 MiB, as on current distributions.</summary>
    public long MemlockBytes { get; init; } = 8L << 20;

    /// <summary>RLIMIT_NOFILE (soft limit). Default 1024.</summary>
    public int NoFile { get; init; } = 1024;

    /// <summary>RLIMIT_MEMLOCK in pages.</summary>
    public long MemlockPages => MemlockBytes == Infinity ? long.MaxValue : MemlockBytes >> 12;
}
