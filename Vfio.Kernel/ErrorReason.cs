// The reason behind a failed call. The kernel returns a bare errno; the simulator also
// records, per task, which rule produced it, so user-space tools (the typed vfio client,
// the shell, the demo) can say why without reaching into kernel objects. Recording is
// free of scheduling points and allocates only the message of the failure itself.

namespace Vfio.Kernel;

/// <summary>Records why the current task's call failed (the rule and the values), next to the errno it returns.</summary>
public static class ErrorReason
{
    /// <summary>Records <paramref name="reason"/> for the current task and returns <c>-errno</c>.</summary>
    public static int Fail(Errno errno, string reason)
    {
        if (KTask.CurrentOrNull is { } t)
        {
            t.LastErrorReason = reason;
            t.Kernel.Trace.Event(t, "errno", errno.Name(), reason);
        }

        return errno.Negative();
    }

    /// <summary>The reason recorded by the current task's last failing call since <see cref="Clear"/>, or null.</summary>
    public static string? Current => KTask.CurrentOrNull?.LastErrorReason;

    /// <summary>Forgets the current task's reason (at syscall entry).</summary>
    public static void Clear()
    {
        if (KTask.CurrentOrNull is { } t)
        {
            t.LastErrorReason = null;
        }
    }
}
