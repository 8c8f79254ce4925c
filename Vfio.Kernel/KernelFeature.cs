// Named, version-dependent kernel behaviour, in the spirit of IS_ENABLED(CONFIG_…): code
// asks `kernel.Profile.Has(PlatformFeatures.LongTermGupUnsharesZeroPage)`, never
// "is this kernel at least 6.2", so every gate names the behaviour it switches, the
// release it appeared in (and went away in, if it did) and the upstream commit(s) that
// made the change.
//
// Features are declared next to the layer that gates on them, as Kconfig symbols sit next
// to their code: PlatformFeatures in Vfio.Platform (mm, PCI core), VfioCoreFeatures in
// Vfio.Core, Type1Features in Vfio.Iommu.Type1. Vfio.Kernel holds only the type, because
// references point one way (Kernel ← Platform ← Core ← backends) and a catalogue here would
// have to know about group ioctls and type1 errnos. A feature's value is a pure function of
// the profile (KernelProfile.Has): no state, nothing to lock.
//
// docs/kernel-versions.md lists every declared feature with its value under each preset;
// a test keeps that table, and the rule that every feature is on in one preset and off in
// another, true.

namespace Vfio.Kernel;

/// <summary>
/// An upstream commit, as a <c>Fixes:</c> tag names it: the 12-hex-digit short id and the
/// subject line.
/// </summary>
public readonly record struct KernelCommit
{
    /// <summary>A commit of torvalds/linux.</summary>
    /// <exception cref="ArgumentException"><paramref name="id"/> is not 12 lower-case hex digits, or <paramref name="subject"/> is empty.</exception>
    public KernelCommit(string id, string subject)
    {
        ArgumentNullException.ThrowIfNull(id);
        ArgumentException.ThrowIfNullOrWhiteSpace(subject);
        if (id.Length != 12 || !id.All(c => char.IsAsciiDigit(c) || c is >= 'a' and <= 'f'))
        {
            throw new ArgumentException($"commit id '{id}' must be the 12-digit lower-case short id (git log --abbrev=12)", nameof(id));
        }

        Id = id;
        Subject = subject;
    }

    /// <summary>The short id, 12 hex digits.</summary>
    public string Id { get; }

    /// <summary>The subject line.</summary>
    public string Subject { get; }

    /// <summary><c>7e89efc6e9e4 ("PCI: Lock upstream bridge for pci_reset_function()")</c>.</summary>
    public override string ToString() => $"{Id} (\"{Subject}\")";
}

/// <summary>
/// A kernel behaviour that depends on the release: the simulated kernel has it when
/// <see cref="KernelProfile.Has"/> says so. Declare one per gate, as a static property of the
/// layer's feature class, and gate on it instead of on a version number.
/// </summary>
public sealed class KernelFeature
{
    /// <summary>The identifier, the same as the static property that declares the feature.</summary>
    public required string Name { get; init; }

    /// <summary>One line: what the kernel does when the feature is on, and what it did before.</summary>
    public required string Description { get; init; }

    /// <summary>The mainline release the behaviour first shipped in.</summary>
    public required KernelVersion Since { get; init; }

    /// <summary>The mainline release the behaviour went away in, or null while mainline still has it.</summary>
    public KernelVersion? RemovedIn { get; init; }

    /// <summary>The upstream commit(s) that made the change, oldest first.</summary>
    public IReadOnlyList<KernelCommit> Commits { get; init; } = [];

    /// <summary>
    /// When <see cref="Commits"/> is empty: why no commit is named (it could not be
    /// established), so the gap is stated rather than filled in.
    /// </summary>
    public string? CommitNotEstablished { get; init; }

    /// <summary><c>LongTermGupUnsharesZeroPage (6.2, 84209e87c696)</c>.</summary>
    public override string ToString()
    {
        string origin = Commits.Count != 0 ? string.Join(", ", Commits.Select(c => c.Id)) : "commit not established";
        string removed = RemovedIn is { } r ? $"–{r}" : "";
        return $"{Name} ({Since}{removed}, {origin})";
    }
}
