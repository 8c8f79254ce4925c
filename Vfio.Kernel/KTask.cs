// Models include/linux/sched.h (v6.12): task_struct reduced to what the simulator needs —
// identity (comm/pid), `current`, sleep state, pending signals, the lockdep held-lock
// stack and the preempt count that spinlocks raise.
//
// Every simulated thread of execution is a KTask backed by a real .NET thread. In
// controlled mode only one of them runs at a time, on a pooled worker thread (TaskWorker);
// a task hands the CPU to the next one through the scheduler (its Gate). In real mode tasks run freely and sleep by parking on
// their own monitor. Threads that were not spawned as tasks are adopted on first use in
// real mode (and in controlled mode outside a run, for setup code).

using System.Runtime.CompilerServices;

namespace Vfio.Kernel;

/// <summary>
/// A simulated kernel thread of execution (<c>task_struct</c>): a user thread doing
/// syscalls, a kernel worker, a sysfs writer doing unbind. Create one with
/// <see cref="SimKernel.Spawn(string, Action)"/>; inside simulated code <see cref="Current"/> is the running task.
/// </summary>
public sealed partial class KTask : KernelObject
{
    /// <summary>MAX_LOCK_DEPTH: how many locks one task may hold at once.</summary>
    public const int MaxLockDepth = 48;

    [ThreadStatic]
    private static KTask? t_current;

    private readonly Action? _body;

    // Protects _joiners and the transition to Exited. Internal locks of kernel objects are
    // taken before a task's ParkLock and never two at a time, so ParkLock stays a leaf.
    private readonly Lock _exitLock = new();

    // Tasks sleeping in Join() on this task.
    private WaitList _joiners;

    internal KTask(SimKernel kernel, int id, string comm, Action? body, bool scheduled, bool adopted)
        : base(kernel, $"{comm}/{id}")
    {
        Id = id;
        Comm = comm;
        _body = body;
        IsScheduled = scheduled;
        IsAdopted = adopted;
        State = adopted ? TaskState.Running : TaskState.New;
    }

    /// <summary>The task id (the kernel's pid), unique and deterministic within a kernel.</summary>
    public int Id { get; }

    /// <summary>The task's command name (<c>comm</c>), as given to <see cref="SimKernel.Spawn(string, Action)"/>.</summary>
    public string Comm { get; }

    /// <summary><c>comm/pid</c>, as lockdep and WARN print a task (also its <see cref="KernelObject.Name"/>).</summary>
    public string DisplayName => Name;

    /// <inheritdoc/>
    public override string Kind => "task";

    // Read across threads by the real-mode watchdog and by reports.
    private volatile TaskState _state;

    /// <summary>The life-cycle state.</summary>
    public TaskState State
    {
        get => _state;
        internal set => _state = value;
    }

    /// <summary>
    /// What this task runs for. The platform layer keeps the simulated process here (the
    /// kernel's <c>current-&gt;mm</c>, <c>current-&gt;files</c>); kernel threads have none.
    /// New tasks inherit their parent's context unless given one.
    /// </summary>
    public object? Context { get; set; }

    /// <summary>The wait-queue entry whose wake function this task is running, or null (remove_wait_queue from inside it does not wait for itself).</summary>
    internal WaitQueueEntry? RunningWake { get; set; }

    /// <summary>Why this task's last failing call failed (see <see cref="ErrorReason"/>), or null.</summary>
    public string? LastErrorReason { get; internal set; }

    /// <summary>The exception that ended the task, if its body threw.</summary>
    public Exception? Failure { get; internal set; }

    /// <summary>True once the task has finished.</summary>
    public bool HasExited => State == TaskState.Exited;

    /// <summary>True for a .NET thread adopted by the kernel rather than spawned by it.</summary>
    public bool IsAdopted { get; }

    /// <summary>True for tasks the controlled scheduler runs (spawned inside a controlled run).</summary>
    internal bool IsScheduled { get; }

    internal Thread? Thread { get; set; }

    internal Action? Body => _body;

    // ---- Controlled mode: the CPU hand-off. Released by whoever schedules this task.
    internal SemaphoreSlim? Gate;

    // Controlled mode: the task runs on a pooled worker thread (TaskWorker); WorkerDone is
    // set (under ParkLock, with a pulse) once the worker has left the task for good.
    internal bool OnWorker;
    internal volatile bool WorkerDone;

    // ---- Sleeping. ParkLock protects Permit and the real-mode sleep; the wait fields are
    // written by the task itself before it parks and read by wakers and reports.
    internal readonly object ParkLock = new();
    internal bool Permit;
    internal KernelObject? WaitObject;
    internal SchedOp WaitOp;
    internal WaitKind WaitKind;
    internal long WaitDeadlineNs = long.MaxValue;
    internal WakeReason WakeReason;

    // Links of the wait list the task sleeps on (see WaitList); owned by that list's lock.
    internal KTask? WaitNext;
    internal KTask? WaitPrev;
    internal object? WaitListOwner;

    // Per-wait scratch for primitives that hand a lock over to the woken task (rwsem).
    internal int WaitMode;
    internal bool Granted;

    // ---- Lockdep: the held-lock stack (current->held_locks) and preempt count.
    internal readonly HeldLock[] Held = new HeldLock[MaxLockDepth];
    internal int HeldCount;
    internal int PreemptCount;

    // Nonzero while the task observes the machine for the host (SimKernel.Unobserved): its
    // primitives do not yield and leave no trace records.
    internal int ObserverDepth;

    // Nonzero while the task evaluates a wait_event condition (it must not sleep there).
    internal int InWaitCondition;

    // ---- Controlled mode: where the task last met the scheduler (for liveness reports).
    internal SchedOp LastOp;
    internal KernelObject? LastObject;

    // ---- PCT priority, owned by the strategy.
    internal int Priority;

    /// <summary>The task running on this thread. Throws when the thread is not a kernel task.</summary>
    public static KTask Current => t_current
        ?? throw new InvalidOperationException(
            "This thread is not a kernel task: run simulated code inside kernel.Run(...) or a task from kernel.Spawn(...), " +
            "or touch a kernel object first so the thread is adopted (real mode only).");

    /// <summary>The task running on this thread, or null on a thread no kernel knows.</summary>
    public static KTask? CurrentOrNull => t_current;

    /// <summary>The current task of <paramref name="kernel"/> on this thread, adopting the thread if needed.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static KTask CurrentFor(SimKernel kernel)
    {
        KTask? t = t_current;
        if (t is not null && ReferenceEquals(t.Kernel, kernel))
        {
            return t;
        }

        return kernel.AdoptCurrentThread();
    }

    internal static void SetCurrent(KTask? t) => t_current = t;

    /// <summary>
    /// Waits until this task has exited. A scheduling point; the wait shows in wait-for
    /// graphs as waiting for this task.
    /// </summary>
    public void Join()
    {
        KTask me = CurrentFor(Kernel);
        if (ReferenceEquals(me, this))
        {
            throw new InvalidOperationException($"task {DisplayName} cannot join itself");
        }

        Kernel.BeforeOp(me, SchedOp.Join, this);
        while (true)
        {
            lock (_exitLock)
            {
                if (State == TaskState.Exited)
                {
                    return;
                }

                me.BeginWait(this, SchedOp.Join, WaitKind.Uninterruptible, long.MaxValue);
                _joiners.Add(me, this);
            }

            Kernel.Scheduler.Park(me);
            lock (_exitLock)
            {
                _joiners.Remove(me, this);
            }

            me.EndWait();
        }
    }

    /// <summary>Marks the task exited and wakes its joiners. Called on the task's own thread.</summary>
    internal void MarkExited()
    {
        lock (_exitLock)
        {
            State = TaskState.Exited;
            while (_joiners.RemoveFirst(this) is { } joiner)
            {
                WakeTimeline(joiner);
                Kernel.Scheduler.Unpark(joiner);
            }
        }
    }

    internal override void CollectHolders(List<KTask> holders)
    {
        if (State != TaskState.Exited)
        {
            holders.Add(this);
        }
    }

    internal override string WakeHint => $"{DisplayName} to exit";

    // ---- Sleep bookkeeping used by every primitive.

    /// <summary>Records what this task is about to sleep on. Call under the object's lock, before enqueueing.</summary>
    internal void BeginWait(KernelObject? obj, SchedOp op, WaitKind kind, long deadlineNs)
    {
        if (InWaitCondition > 0)
        {
            throw new InvalidOperationException(
                $"do not call blocking ops when !TASK_RUNNING: {DisplayName} tried to sleep in {op.KernelName()}({obj?.Name}) " +
                "while evaluating a wait_event condition; a condition may only look at state");
        }

        lock (ParkLock)
        {
            Permit = false;
            WakeReason = WakeReason.None;
        }

        WaitObject = obj;
        WaitOp = op;
        WaitKind = kind;
        WaitDeadlineNs = deadlineNs;
        if (Kernel.TimelineActive)
        {
            Kernel.Trace.Block(this, op, obj);
        }
    }

    internal void EndWait()
    {
        if (Kernel.TimelineActive)
        {
            Kernel.Trace.Unblock(this);
        }

        WaitObject = null;
        WaitDeadlineNs = long.MaxValue;
    }

    /// <summary>True when a signal this kind of sleep honours is pending.</summary>
    internal bool SignalInterrupts(WaitKind kind) => kind switch
    {
        WaitKind.Interruptible => SignalPending,
        WaitKind.Killable => FatalSignalPending,
        _ => false,
    };

    /// <inheritdoc/>
    public override string ToString() => $"task {DisplayName}";
}
