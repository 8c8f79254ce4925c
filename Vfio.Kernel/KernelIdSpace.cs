// Per-boot object ids. A simulated kernel numbers its files, eventfds, containers and
// IOMMU instances for names and reports ("file[3].f_count", "vfio_iommu[1].lock"); those
// numbers must start afresh with every kernel, so that two runs of one scenario with one
// seed produce the same names — and the same trace, byte for byte — in one process or in
// two. A KernelIdSpace is declared once per kind of object, as a static field (the way the
// kernel declares a static counter or an IDA next to the code that uses it); each
// SimKernel keeps its own counter for it.

namespace Vfio.Kernel;

/// <summary>
/// A kind of numbered object (<c>"file"</c>, <c>"eventfd"</c>). Declare one as a static
/// field and take numbers with <see cref="SimKernel.NextId(KernelIdSpace)"/>: every kernel
/// numbers from 1.
/// </summary>
public sealed class KernelIdSpace
{
    /// <summary>How many id spaces a process may declare (each kernel keeps a counter for each).</summary>
    public const int MaxSpaces = 64;

    private static int s_declared;

    /// <summary>Declares the id space <paramref name="name"/>; declare it once, as a static field.</summary>
    public KernelIdSpace(string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        Name = name;
        Slot = Interlocked.Increment(ref s_declared) - 1;
        if (Slot >= MaxSpaces)
        {
            throw new InvalidOperationException($"more than {MaxSpaces} kernel id spaces declared ('{name}' is one too many): declare each space once, as a static field");
        }
    }

    /// <summary>What is numbered (for reports).</summary>
    public string Name { get; }

    // The index of this space's counter in every kernel's counter array. Which slot a space
    // gets depends on static-initialisation order, but the slot is never observable.
    internal int Slot { get; }

    /// <inheritdoc/>
    public override string ToString() => Name;
}
