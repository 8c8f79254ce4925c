// The kernel version a simulation runs as. Later layers key version-dependent behaviour
// (errnos that changed, features that appeared) off the profile; docs/kernel-versions.md
// lists what differs between versions.

namespace Vfio.Kernel;

/// <summary>
/// Which Linux release the simulator behaves as. <see cref="Linux6_12"/> is the default;
/// <see cref="Linux6_1"/> is Debian 12's kernel.
/// </summary>
public sealed record KernelProfile(string Name, int Major, int Minor)
{
    /// <summary>Mainline v6.12, the default: split vfio core, device cdev, DMA-ownership viability.</summary>
    public static KernelProfile Linux6_12 { get; } = new("linux-6.12", 6, 12);

    /// <summary>v6.1 (Debian 12): differs from v6.12 in a few errnos and in the unregister order (docs/kernel-versions.md).</summary>
    public static KernelProfile Linux6_1 { get; } = new("linux-6.1", 6, 1);

    /// <summary>All presets, by name.</summary>
    public static IReadOnlyList<KernelProfile> Presets { get; } = [Linux6_12, Linux6_1];

    /// <summary>What <c>uname -r</c> would print.</summary>
    public string Release => $"{Major}.{Minor}.0-vfio-sim";

    /// <summary>True when this profile is at least version <paramref name="major"/>.<paramref name="minor"/>.</summary>
    public bool AtLeast(int major, int minor) => Major > major || (Major == major && Minor >= minor);

    /// <summary>Finds a preset by name (<c>linux-6.1</c>, <c>6.1</c>).</summary>
    public static KernelProfile Parse(string text)
    {
        foreach (KernelProfile p in Presets)
        {
            if (string.Equals(p.Name, text, StringComparison.OrdinalIgnoreCase)
                || string.Equals($"{p.Major}.{p.Minor}", text, StringComparison.Ordinal))
            {
                return p;
            }
        }

        throw new ArgumentException($"unknown kernel profile '{text}': use one of {string.Join(", ", Presets.Select(p => p.Name))}", nameof(text));
    }

    /// <inheritdoc/>
    public override string ToString() => $"{Name} ({Release})";
}
