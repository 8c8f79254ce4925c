// What the simulated kernel printed as a warning: WARN_ON, lockdep splats, refcount_t
// saturation, sleeping in atomic context.

namespace Vfio.Kernel;

/// <summary>What raised a <see cref="KernelWarning"/>.</summary>
public enum WarningKind
{
    /// <summary>WARN_ON / WARN.</summary>
    Warn,
    /// <summary>A lockdep report (circular dependency, recursive locking, bad unlock balance, locks held at exit).</summary>
    Lockdep,
    /// <summary>refcount_t saturation (addition on 0, underflow, leak).</summary>
    Refcount,
    /// <summary>A sleeping function called from atomic context (with a spinlock held).</summary>
    SleepInAtomic,
}

/// <summary>One warning printed by the simulated kernel.</summary>
/// <param name="Kind">What raised it.</param>
/// <param name="Title">The first line (<c>WARNING: possible circular locking dependency detected</c>).</param>
/// <param name="Text">The whole report as the kernel would print it.</param>
/// <param name="Task">The task that hit it (<c>comm/pid</c>).</param>
/// <param name="Step">The scheduling step (controlled mode; 0 in real mode).</param>
/// <param name="TimeNs">Virtual time.</param>
/// <param name="Expected">True when a test declared it with <see cref="SimKernel.ExpectWarning"/>.</param>
public sealed record KernelWarning(WarningKind Kind, string Title, string Text, string Task, long Step, long TimeNs, bool Expected)
{
    /// <inheritdoc/>
    public override string ToString() => Text;
}
