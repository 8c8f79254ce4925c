namespace Vfio.Kernel;

/// <summary>How a sleeping task reacts to signals (TASK_UNINTERRUPTIBLE, TASK_INTERRUPTIBLE, TASK_KILLABLE).</summary>
public enum WaitKind : byte
{
    /// <summary>Only the awaited event (or a timeout) ends the sleep.</summary>
    Uninterruptible,
    /// <summary>Any pending signal ends the sleep with -ERESTARTSYS (or -EINTR for mutexes).</summary>
    Interruptible,
    /// <summary>Only a fatal signal (SIGKILL) ends the sleep.</summary>
    Killable,
}

/// <summary>Why a parked task resumed.</summary>
public enum WakeReason : byte
{
    /// <summary>Not woken yet.</summary>
    None,
    /// <summary>Another task woke it.</summary>
    Woken,
    /// <summary>Its deadline passed on the virtual clock.</summary>
    TimedOut,
    /// <summary>A signal it honours became pending.</summary>
    Signaled,
}

/// <summary>Life-cycle state of a <see cref="KTask"/>.</summary>
public enum TaskState : byte
{
    /// <summary>Created, waiting for its first turn.</summary>
    New,
    /// <summary>Can run (in controlled mode: waiting for the scheduler to pick it).</summary>
    Runnable,
    /// <summary>Running on the (single, in controlled mode) CPU.</summary>
    Running,
    /// <summary>Sleeping on a kernel object.</summary>
    Blocked,
    /// <summary>Finished.</summary>
    Exited,
}
