// The scope SimKernel.Unobserved() opens: host-side observation that the run does not see.

namespace Vfio.Kernel;

/// <summary>Ends an observation scope (see <see cref="SimKernel.Unobserved"/>) when disposed.</summary>
public readonly struct UnobservedScope : IDisposable, IEquatable<UnobservedScope>
{
    private readonly KTask? _task;

    internal UnobservedScope(KTask? task) => _task = task;

    /// <summary>Closes the scope: the task's primitives are scheduling points again.</summary>
    public void Dispose()
    {
        if (_task is not null)
        {
            _task.ObserverDepth--;
        }
    }

    /// <inheritdoc/>
    public bool Equals(UnobservedScope other) => ReferenceEquals(_task, other._task);

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is UnobservedScope o && Equals(o);

    /// <inheritdoc/>
    public override int GetHashCode() => _task?.GetHashCode() ?? 0;

    /// <summary>Equality.</summary>
    public static bool operator ==(UnobservedScope left, UnobservedScope right) => left.Equals(right);

    /// <summary>Inequality.</summary>
    public static bool operator !=(UnobservedScope left, UnobservedScope right) => !left.Equals(right);
}
