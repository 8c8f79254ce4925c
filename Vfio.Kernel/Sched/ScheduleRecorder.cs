// Simulator-only (no kernel counterpart): what the controlled scheduler remembers about the
// steps of one run for the bounded search, the shrinker and the interleaving count.
//
// Model: a step is the stretch a task runs after the scheduler picked it, up to its next
// scheduling point. It starts with the task's pending operation — the primitive it stopped
// in front of (op + object), Block on its wait object when it went to sleep, or Start on the
// task itself for a new task (a start touches no shared kernel object until the task's first
// scheduling point, so it conflicts only with operations on that task, such as a join). Two
// steps are independent when both pending operations name kernel objects and the objects
// differ; an operation without an object (exit, yield, msleep) and kthread_run, send_sig and
// spin_lock (the task then runs with preemption off through operations that are no
// scheduling points) are dependent with everything.
//
// The happens-before hash of a run sums a 64-bit mix of every step: a step on an object
// contributes (task, its step index, op, the object's canonical id, the step's position in
// that object's sequence); a step without an object contributes (task, its step index, op,
// how many steps each other task had run before it). An object's canonical id is the first
// step that touched it, which is the same in every run that orders dependent steps the
// same way, so two runs that differ only by swapping independent steps hash equal.
//
// Per-step cost: array reads and writes and one dictionary lookup; the arrays and the
// dictionary grow by doubling, so a run allocates only while they grow.
//
// Threading: only the running task of a controlled run calls in (the scheduler's gates
// order memory between tasks), and the controller reads the result after the run.

namespace Vfio.Kernel;

/// <summary>A runnable task at a decision point and the operation it would perform next.</summary>
/// <param name="Task">The task id.</param>
/// <param name="Op">Its pending operation.</param>
/// <param name="Object">The run-local number of the object it names (numbered by first appearance), or -1.</param>
internal readonly record struct PendingOp(int Task, SchedOp Op, int Object);

/// <summary>One step of a run: the task that ran, the operation it started with and what else it touched.</summary>
/// <param name="Task">The task that ran.</param>
/// <param name="Op">The operation it started with.</param>
/// <param name="Object">The run-local object number, or -1.</param>
/// <param name="Decision">The index of this step's decision point, or -1 when only one task could run.</param>
/// <param name="Exited">The run-local number of the task's own object when the step ended with the task's exit (which wakes its joiners), else -1.</param>
/// <param name="Spawned">The step created a task (which orders it against every other step).</param>
internal readonly record struct RecordedStep(int Task, SchedOp Op, int Object, int Decision, int Exited = -1, bool Spawned = false)
{
    /// <summary>Whether this step and <paramref name="other"/> commute: no kernel object in common, neither ordered against everything.</summary>
    public bool IndependentOf(RecordedStep other)
        => Object >= 0 && other.Object >= 0 && !Spawned && !other.Spawned
            && !ScheduleRecorder.IsGlobal(Op) && !ScheduleRecorder.IsGlobal(other.Op)
            && Object != other.Object && Object != other.Exited && (Exited < 0 || (Exited != other.Object && Exited != other.Exited));
}

/// <summary>A scheduling point at which more than one task could run.</summary>
/// <param name="Current">The task at its scheduling point.</param>
/// <param name="Point">Its point number, counted from 1 per task.</param>
/// <param name="CurrentCanRun">Whether the current task could go on (switching away is then a preemption).</param>
/// <param name="Default">The guided default: the current task if it can go on, else the lowest-id runnable task.</param>
/// <param name="Chosen">The task that ran.</param>
/// <param name="RunnableStart">First index of the runnable tasks in <see cref="ScheduleRecord.Runnable"/>.</param>
/// <param name="RunnableCount">How many tasks could run.</param>
/// <param name="Step">The index of the step in <see cref="ScheduleRecord.Steps"/>.</param>
internal readonly record struct RecordedDecision(int Current, int Point, bool CurrentCanRun, int Default, int Chosen, int RunnableStart, int RunnableCount, int Step);

/// <summary>The steps and decision points of one run, for the bounded search and the shrinker.</summary>
internal sealed class ScheduleRecord
{
    public List<RecordedStep> Steps { get; } = new(256);

    public List<RecordedDecision> Decisions { get; } = new(64);

    public List<PendingOp> Runnable { get; } = new(256);

    /// <summary>Decision points at which a task that could go on was switched away from.</summary>
    public int Preemptions { get; set; }

    /// <summary>The deviations from the guided default this run took (its schedule, minimally).</summary>
    public List<ScheduleDeviation> Deviations()
    {
        var devs = new List<ScheduleDeviation>();
        foreach (RecordedDecision d in Decisions)
        {
            if (d.Chosen != d.Default)
            {
                devs.Add(new ScheduleDeviation(d.Current, d.Point, d.Chosen));
            }
        }

        return devs;
    }
}

internal sealed class ScheduleRecorder
{
    private const ulong Golden = 0x9E3779B97F4A7C15UL;

    private readonly Dictionary<KernelObject, int> _slots = new(64);
    private readonly ScheduleRecord? _record;

    // Per task id.
    private SchedOp[] _pendingOp = new SchedOp[16];
    private KernelObject?[] _pendingObj = new KernelObject?[16];
    private int[] _points = new int[16];
    private int[] _steps = new int[16];
    private int _maxTask;

    // Per object slot.
    private long[] _canon = new long[64];
    private int[] _touches = new int[64];

    private ulong _sum;
    private long _count;

    public ScheduleRecorder(bool recordDecisions)
    {
        _record = recordDecisions ? new ScheduleRecord() : null;
    }

    /// <summary>The decision record, when asked for.</summary>
    public ScheduleRecord? Record => _record;

    /// <summary>The happens-before hash of the steps so far.</summary>
    public ulong Hash => Mix(_sum ^ ((ulong)_count * Golden));

    /// <summary>How many scheduling points <paramref name="t"/> has reached in this run (the current one included).</summary>
    public int PointOf(KTask t) => t.Id < _points.Length ? _points[t.Id] : 0;

    /// <summary><paramref name="current"/> reached a scheduling point in front of <paramref name="op"/>.</summary>
    public void AtPoint(KTask current, SchedOp op, KernelObject? obj)
    {
        int id = current.Id;
        EnsureTask(id);
        if (op is SchedOp.Exit or SchedOp.Spawn)
        {
            EndedWith(current, op);
        }

        _pendingOp[id] = op;
        _pendingObj[id] = obj;
        _points[id]++;
    }

    /// <summary>The strategy picked <paramref name="next"/> from <paramref name="runnable"/>: it runs its pending operation.</summary>
    public void Chosen(KTask current, List<KTask> runnable, KTask next)
    {
        int n = next.Id;
        EnsureTask(n);
        SchedOp op = _pendingOp[n];
        KernelObject? obj = _pendingObj[n] ?? (op == SchedOp.Start ? next : null);
        int slot = obj is null ? -1 : SlotOf(obj);
        HashStep(n, op, slot, slot < 0 || IsGlobal(op));
        if (_record is null)
        {
            return;
        }

        int decision = -1;
        if (runnable.Count > 1)
        {
            bool canRun = false;
            int start = _record.Runnable.Count;
            foreach (KTask t in runnable)
            {
                int id = t.Id;
                EnsureTask(id);
                canRun |= ReferenceEquals(t, current);
                KernelObject? o = _pendingObj[id] ?? (_pendingOp[id] == SchedOp.Start ? t : null);
                _record.Runnable.Add(new PendingOp(id, _pendingOp[id], o is null ? -1 : SlotOf(o)));
            }

            int def = canRun ? current.Id : runnable[0].Id;
            decision = _record.Decisions.Count;
            _record.Decisions.Add(new RecordedDecision(current.Id, _points[current.Id], canRun, def, n, start, runnable.Count, _record.Steps.Count));
            if (canRun && n != current.Id)
            {
                _record.Preemptions++;
            }
        }

        _record.Steps.Add(new RecordedStep(n, op, slot, decision));
    }

    /// <summary>
    /// The step <paramref name="current"/> just ran ended in an exit (its joiners wake: an
    /// operation on the task itself) or created a task (ordered against everything, as task
    /// ids follow creation order): both are part of that step, which began with another label.
    /// </summary>
    private void EndedWith(KTask current, SchedOp op)
    {
        int id = current.Id;
        int slot = op == SchedOp.Exit ? SlotOf(current) : -1;
        HashStep(id, op, slot, global: op != SchedOp.Exit);
        if (_record is not null && _record.Steps.Count > 0 && _record.Steps[^1].Task == id)
        {
            RecordedStep last = _record.Steps[^1];
            _record.Steps[^1] = op == SchedOp.Exit ? last with { Exited = slot } : last with { Spawned = true };
        }
    }

    /// <summary>True when <paramref name="op"/> orders against every other step whatever object it names.</summary>
    public static bool IsGlobal(SchedOp op) => op is SchedOp.Exit or SchedOp.Spawn or SchedOp.Yield
        or SchedOp.Msleep or SchedOp.Signal or SchedOp.ClockAdvance or SchedOp.SpinLock or SchedOp.SpinTrylock or SchedOp.FaultSite;

    private void HashStep(int task, SchedOp op, int slot, bool global)
    {
        int index = ++_steps[task];
        _count++;
        ulong h;
        if (global)
        {
            // Ordered against everything: say how far every other task had got.
            ulong cut = Golden;
            for (int t = 1; t <= _maxTask; t++)
            {
                int s = _steps[t];
                if (s != 0 && t != task)
                {
                    cut = Mix(cut ^ (((ulong)(uint)t << 32) | (uint)s));
                }
            }

            h = Mix(Mix(((ulong)(uint)task << 32) | (uint)index) ^ ((ulong)op << 56) ^ 0x5555UL) ^ cut;
        }
        else
        {
            if (_canon[slot] == 0)
            {
                _canon[slot] = ((long)task << 32) | (uint)index;
            }

            int pos = ++_touches[slot];
            h = Mix(Mix(((ulong)(uint)task << 32) | (uint)index) ^ ((ulong)op << 56) ^ (uint)pos) ^ Mix((ulong)_canon[slot] + Golden);
        }

        _sum += Mix(h);
    }

    private int SlotOf(KernelObject obj)
    {
        if (_slots.TryGetValue(obj, out int slot))
        {
            return slot;
        }

        slot = _slots.Count;
        _slots.Add(obj, slot);
        if (slot >= _canon.Length)
        {
            Array.Resize(ref _canon, _canon.Length * 2);
            Array.Resize(ref _touches, _touches.Length * 2);
        }

        return slot;
    }

    private void EnsureTask(int id)
    {
        if (id >= _points.Length)
        {
            int size = _points.Length;
            while (size <= id)
            {
                size *= 2;
            }

            Array.Resize(ref _pendingOp, size);
            Array.Resize(ref _pendingObj, size);
            Array.Resize(ref _points, size);
            Array.Resize(ref _steps, size);
        }

        if (id > _maxTask)
        {
            _maxTask = id;
        }
    }

    /// <summary>SplitMix64's finalizer.</summary>
    internal static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
