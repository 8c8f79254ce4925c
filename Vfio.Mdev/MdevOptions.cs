// The mdev core's options and design variants (docs/design-variants.md). Defaults are the
// current kernel's.

namespace Vfio.Mdev;

/// <summary>Design variants of the mdev core. Defaults are today's kernel.</summary>
public sealed record MdevDesign
{
    /// <summary>The kernel's current design.</summary>
    public static MdevDesign Default { get; } = new();

    /// <summary>
    /// Create and remove are ordered against parent unregistration (v5.2, 5715c4dd66a3 and
    /// the two create/remove sequence fixes before it: <c>unreg_sem</c> trylock → ENODEV, the
    /// <c>active</c> flag → EAGAIN). Off: the v5.1 core, where a create or remove racing
    /// <c>mdev_unregister_device</c> uses a parent that is going away (race 15).
    /// </summary>
    public bool SynchronizeWithParentRemoval { get; init; } = true;

    /// <summary>
    /// The vendor API (docs/mdev.md, "The 2016 design"): <see cref="MdevApi.Current"/>, or
    /// <see cref="MdevApi.Series2016"/> — parent_ops, the vfio_mdev bridge and a vendor remove
    /// that may refuse (EBUSY). Set it with <c>UseMdevDesign2016()</c> on the builder, which
    /// also switches type1 to the 2016 notifier chain.
    /// </summary>
    public MdevApi Api { get; init; } = MdevApi.Current;
}

/// <summary>Options of the mdev module.</summary>
public sealed record MdevOptions
{
    /// <summary>The design variants.</summary>
    public MdevDesign Design { get; init; } = MdevDesign.Default;
}
