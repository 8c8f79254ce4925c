// Checks for scenarios and simulated code that must hold whatever the interleaving. A
// violation throws an ordinary exception, so under Kernel.Run it fails the run with the
// trace attached (test-framework assertions would also mark the enclosing test failed
// even when the test expects the run to fail).

namespace Vfio.Kernel;

/// <summary>A scenario invariant did not hold.</summary>
public sealed class InvariantViolationException : Exception
{
    /// <summary>Creates the exception.</summary>
    public InvariantViolationException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception.</summary>
    public InvariantViolationException()
    {
    }

    /// <summary>Creates the exception.</summary>
    public InvariantViolationException(string message, Exception inner)
        : base(message, inner)
    {
    }
}

/// <summary>Invariant checks usable inside runs.</summary>
public static class Invariant
{
    /// <summary>Throws <see cref="InvariantViolationException"/> with <paramref name="message"/> unless <paramref name="condition"/> holds.</summary>
    public static void Check(bool condition, string message)
    {
        if (!condition)
        {
            throw new InvariantViolationException(message);
        }
    }

    /// <summary>Throws unless <paramref name="actual"/> equals <paramref name="expected"/>.</summary>
    public static void Equal<T>(T expected, T actual, string what)
    {
        if (!EqualityComparer<T>.Default.Equals(expected, actual))
        {
            throw new InvariantViolationException($"{what}: expected {expected}, got {actual}");
        }
    }
}
