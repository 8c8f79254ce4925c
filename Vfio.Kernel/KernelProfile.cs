// The kernel version a simulation runs as. Later layers gate version-dependent behaviour
// (errnos that changed, orders that were fixed) on named features — Has(feature) — never on
// a bare version number; see KernelFeature and docs/kernel-versions.md.

namespace Vfio.Kernel;

/// <summary>
/// Which Linux release the simulator behaves as. <see cref="Linux6_12"/> is the default;
/// <see cref="Linux6_1"/> is Debian 12's kernel.
/// </summary>
public sealed record KernelProfile(string Name, int Major, int Minor)
{
    /// <summary>Mainline v6.12, the default: split vfio core (vfio_main.c, group.c, container.c), DMA-ownership viability.</summary>
    public static KernelProfile Linux6_12 { get; } = new("linux-6.12", 6, 12);

    /// <summary>v6.1 (Debian 12's kernel, the one the real-kernel oracle boots): the features that arrived after 6.1 are off.</summary>
    public static KernelProfile Linux6_1 { get; } = new("linux-6.1", 6, 1);

    /// <summary>All presets, by name.</summary>
    public static IReadOnlyList<KernelProfile> Presets { get; } = [Linux6_12, Linux6_1];

    /// <summary>What <c>uname -r</c> would print.</summary>
    public string Release => $"{Major}.{Minor}.0-vfio-sim";

    /// <summary>The mainline release this profile runs as.</summary>
    public KernelVersion Version => new(Major, Minor);

    /// <summary>
    /// IS_ENABLED for a profile feature: true when this release has <paramref name="feature"/> —
    /// it is at least <see cref="KernelFeature.Since"/> and older than <see cref="KernelFeature.RemovedIn"/>.
    /// </summary>
    public bool Has(KernelFeature feature)
    {
        ArgumentNullException.ThrowIfNull(feature);
        KernelVersion version = Version;
        if (feature.RemovedIn is { } removed && version >= removed)
        {
            return false;
        }

        return version >= feature.Since;
    }

    /// <summary>Finds a preset by name (<c>linux-6.1</c>, <c>6.1</c>); throws <see cref="ArgumentException"/> naming the presets.</summary>
    public static KernelProfile Parse(string text)
        => TryParse(text, out KernelProfile? p) ? p : throw new ArgumentException(UnknownMessage(text), nameof(text));

    /// <summary>Finds a preset by name (<c>linux-6.1</c>, <c>6.1</c>).</summary>
    public static bool TryParse(string? text, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out KernelProfile? profile)
    {
        foreach (KernelProfile p in Presets)
        {
            if (string.Equals(p.Name, text, StringComparison.OrdinalIgnoreCase)
                || string.Equals($"{p.Major}.{p.Minor}", text, StringComparison.Ordinal))
            {
                profile = p;
                return true;
            }
        }

        profile = null;
        return false;
    }

    /// <summary>What to tell a user who named a profile that does not exist.</summary>
    public static string UnknownMessage(string? text) => $"unknown kernel profile '{text}': use one of {string.Join(", ", Presets.Select(p => p.Name))}";

    /// <inheritdoc/>
    public override string ToString() => $"{Name} ({Release})";
}
