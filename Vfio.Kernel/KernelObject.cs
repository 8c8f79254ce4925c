// Base of every named object of the simulated kernel runtime: locks, completions, wait
// queues, refcounts and tasks. The name is stable across runs so traces and reports
// compare byte for byte.

namespace Vfio.Kernel;

/// <summary>
/// A named object of the simulated kernel that tasks can operate on or wait for
/// (<c>"vfio_group[26].group_lock"</c>). Names are chosen by the code that creates the
/// object and must be deterministic: they appear in traces, wait-for graphs and lockdep
/// reports.
/// </summary>
public abstract class KernelObject
{
    private protected KernelObject(SimKernel kernel, string name)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        ArgumentException.ThrowIfNullOrEmpty(name);
        Kernel = kernel;
        Name = name;
    }

    /// <summary>The kernel instance this object belongs to.</summary>
    public SimKernel Kernel { get; }

    /// <summary>The stable name used in traces and reports.</summary>
    public string Name { get; }

    /// <summary>What kind of object this is, as the kernel would say it (<c>mutex</c>, <c>completion</c>).</summary>
    public abstract string Kind { get; }

    /// <summary>
    /// Adds the tasks that currently hold this object (a mutex owner, rwsem readers) to
    /// <paramref name="holders"/>; objects nobody holds (completions, wait queues) add nothing.
    /// Used for wait-for graphs.
    /// </summary>
    internal virtual void CollectHolders(List<KTask> holders)
    {
    }

    /// <summary>Timeline: the running task wakes <paramref name="wakee"/>, asleep on this object (one flag test when the timeline is off).</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private protected void WakeTimeline(KTask wakee)
    {
        if (Kernel.TimelineActive)
        {
            Kernel.Trace.Wake(Name, wakee);
        }
    }

    /// <summary>What a task blocked on this object needs to happen, for reports ("needs complete()").</summary>
    internal virtual string WakeHint => "a wake-up";

    /// <inheritdoc/>
    public override string ToString() => $"{Kind} {Name}";
}
