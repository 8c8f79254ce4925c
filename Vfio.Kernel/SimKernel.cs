// One instance of the simulated kernel runtime: scheduler, virtual clock, lockdep, fault
// injection, trace, seeded randomness and the WARN log. Every kernel object belongs to
// exactly one Kernel; tests create a fresh one per run so runs share nothing.

using System.Runtime.CompilerServices;

namespace Vfio.Kernel;

/// <summary>
/// The simulated kernel runtime. Create one per simulated machine (or per explored
/// seed); create primitives against it; run concurrent scenarios with <see cref="Run(string, Action)"/>.
/// </summary>
public sealed class SimKernel
{
    // Fast-path flags read by every primitive: when all are clear a primitive runs with no
    // extra work beyond its own atomic operation.
    internal const int FlagControlled = 1;
    internal const int FlagLockdep = 2;
    internal const int FlagAborted = 4;
    internal const int FlagTrace = 8;
    internal const int FlagTimeline = 16;

    private int _flags;
    private int _nextTaskId;

    // Per-boot id counters, one per KernelIdSpace slot (fixed capacity, so a counter is
    // never moved while another task increments it).
    private readonly long[] _ids = new long[KernelIdSpace.MaxSpaces];

    // Protects _adopted.
    private readonly Lock _adoptLock = new();
    private readonly Dictionary<int, KTask> _adopted = [];

    // Protects _warnings and _expectations.
    private readonly Lock _warnLock = new();
    private readonly List<KernelWarning> _warnings = [];
    private readonly List<WarningExpectation> _expectations = [];
    private readonly HashSet<string> _warnedOnce = new(StringComparer.Ordinal);

    /// <summary>Creates a real-mode kernel with default options.</summary>
    public SimKernel()
        : this(new KernelConfig())
    {
    }

    /// <summary>Creates a kernel with <paramref name="config"/>.</summary>
    public SimKernel(KernelConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (config.Mode == SchedulerMode.Real && config.Strategy.Kind == StrategyKind.Replay)
        {
            throw new ArgumentException("replay needs the controlled scheduler: set Mode = SchedulerMode.Controlled", nameof(config));
        }

        Config = config;
        Seed = config.Strategy.ReplayTrace?.Seed ?? config.Seed;
        Random = new KRandom(Seed, stream: 2);
        Clock = new SimClock(this);
        Cost = new CostModel(this, config.CostProfile);
        Trace = new TraceLog(this, config.Trace || config.Timeline);
        Log = new KernelLog(this);
        Lockdep = new Lockdep(this);
        Faults = new FaultInjector(this);
        Kasan = new Kasan(this);
        Scheduler = config.Mode == SchedulerMode.Controlled ? new ControlledScheduler(this) : new RealScheduler(this);
        _flags = (config.Mode == SchedulerMode.Controlled ? FlagControlled : 0) | (config.Lockdep ? FlagLockdep : 0) | (config.Trace || config.Timeline ? FlagTrace : 0)
            | (config.Timeline ? FlagTimeline : 0);
        Created?.Invoke(this);
    }

    /// <summary>
    /// Called with every kernel at the end of its constructor, on the creating thread. The
    /// tests set it once, before any kernel exists, to find every kernel a test made and
    /// check afterwards that none reported an unexpected warning.
    /// </summary>
    internal static Action<SimKernel>? Created { get; set; }

    /// <summary>The options this kernel was created with.</summary>
    public KernelConfig Config { get; }

    /// <summary>Real or controlled scheduling.</summary>
    public SchedulerMode Mode => Config.Mode;

    /// <summary>Which Linux release this kernel behaves as.</summary>
    public KernelProfile Profile => Config.Profile;

    /// <summary>The seed of this kernel's randomness (the trace's seed when replaying).</summary>
    public ulong Seed { get; }

    /// <summary>Seeded randomness for simulated kernel code (allocator policies, device behaviour).</summary>
    public KRandom Random { get; }

    /// <summary>The virtual clock (<c>jiffies</c>, timers, <see cref="TimeProvider"/>).</summary>
    public SimClock Clock { get; }

    /// <summary>The cost model: modelled time and operation counts (off unless <see cref="KernelConfig.CostProfile"/> is set).</summary>
    public CostModel Cost { get; }

    /// <summary>The lock validator.</summary>
    public Lockdep Lockdep { get; }

    /// <summary>Named fault-injection sites (fail-nth and seeded probabilities).</summary>
    public FaultInjector Faults { get; }

    /// <summary>Structured trace events (off unless enabled) and, in controlled mode, the schedule.</summary>
    public TraceLog Trace { get; }

    /// <summary>Use-after-free detection: freed objects are poisoned and a later dereference is a kernel BUG.</summary>
    public Kasan Kasan { get; }

    /// <summary>The kernel's message buffer (printk / dmesg).</summary>
    public KernelLog Log { get; }

    private long _taint;

    /// <summary>TAINT_USER: user space asked for something unsafe (vfio noiommu).</summary>
    public const int TaintUser = 6;

    /// <summary>The kernel's taint mask (/proc/sys/kernel/tainted).</summary>
    public long Tainted => Interlocked.Read(ref _taint);

    /// <summary>add_taint().</summary>
    public void AddTaint(int flag) => Interlocked.Or(ref _taint, 1L << flag);

    internal Scheduler Scheduler { get; }

    internal int Flags
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => Volatile.Read(ref _flags);
    }

    internal bool LockdepActive => (Volatile.Read(ref _flags) & FlagLockdep) != 0;

    internal bool TimelineActive
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => (Volatile.Read(ref _flags) & FlagTimeline) != 0;
    }

    internal void ClearFlag(int flag) => Interlocked.And(ref _flags, ~flag);

    internal void SetFlag(int flag) => Interlocked.Or(ref _flags, flag);

    /// <summary>The task running on this thread, adopting the thread in real mode.</summary>
    public KTask CurrentTask => KTask.CurrentFor(this);

    internal int NextTaskId() => Interlocked.Increment(ref _nextTaskId);

    /// <summary>The next id of <paramref name="space"/> in this kernel: 1, 2, 3… from every boot.</summary>
    public long NextId(KernelIdSpace space)
    {
        ArgumentNullException.ThrowIfNull(space);
        return Interlocked.Increment(ref _ids[space.Slot]);
    }

    /// <summary>
    /// kthread_run(): creates a task that runs <paramref name="body"/>. In controlled mode
    /// only inside <see cref="Run(string, Action)"/>; the new task runs when the strategy picks it.
    /// </summary>
    public KTask Spawn(string name, Action body)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(body);
        KTask parent = KTask.CurrentFor(this);
        return Scheduler.Spawn(parent, name, body, parent.Context);
    }

    /// <summary>As <see cref="Spawn(string, Action)"/>, running for <paramref name="context"/> (a process) instead of the parent's.</summary>
    public KTask Spawn(string name, Action body, object? context)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(body);
        KTask parent = KTask.CurrentFor(this);
        return Scheduler.Spawn(parent, name, body, context);
    }

    /// <summary>
    /// Runs <paramref name="body"/> as the task <paramref name="name"/> and waits until it
    /// and every task it spawned have exited, or the run fails (exception, kernel BUG,
    /// deadlock, step budget, replay divergence, unexpected WARN). Never throws for a
    /// failure of the simulated code: the outcome, report and trace are in the result.
    /// </summary>
    public RunResult Run(string name, Action body)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(body);
        return Scheduler.Run(name, body);
    }

    /// <summary>Runs <paramref name="body"/> as task <c>main</c>; see <see cref="Run(string, Action)"/>.</summary>
    public RunResult Run(Action body) => Run("main", body);

    /// <summary>
    /// Opens a scope in which the current task observes the machine for the host (strace
    /// decoding a syscall's argument, say) without taking part in the run: its primitives
    /// are no scheduling points and leave no trace records, so a run with the observer gives
    /// the same schedule and trace as the run without it. Locks are still taken (real
    /// threads need them); a wait that must block still blocks.
    /// </summary>
    public UnobservedScope Unobserved()
    {
        KTask? t = KTask.CurrentOrNull;
        if (t is not null)
        {
            t.ObserverDepth++;
        }

        return new UnobservedScope(t);
    }

    /// <summary>
    /// The scheduling point every primitive passes before it acts: aborts a failed run and,
    /// in controlled mode, lets the strategy switch tasks.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void BeforeOp(KTask t, SchedOp op, KernelObject? obj)
    {
        if ((Volatile.Read(ref _flags) & (FlagControlled | FlagAborted)) != 0)
        {
            Scheduler.Point(t, op, obj);
        }
    }

    internal KTask AdoptCurrentThread()
    {
        Scheduler.CheckAdoptionAllowed();
        int tid = Environment.CurrentManagedThreadId;
        KTask t;
        lock (_adoptLock)
        {
            if (!_adopted.TryGetValue(tid, out t!))
            {
                string name = Thread.CurrentThread.Name is { Length: > 0 } n ? n : $"thread-{tid}";
                t = new KTask(this, NextTaskId(), name, body: null, scheduled: false, adopted: true);
                _adopted.Add(tid, t);
            }
        }

        KTask.SetCurrent(t);
        return t;
    }

    // ---- WARN log.

    /// <summary>Every WARN, lockdep splat and refcount warning so far, in order.</summary>
    public IReadOnlyList<KernelWarning> Warnings
    {
        get
        {
            lock (_warnLock)
            {
                return [.. _warnings];
            }
        }
    }

    /// <summary>Warnings that no <see cref="ExpectWarning"/> declared.</summary>
    public IReadOnlyList<KernelWarning> UnexpectedWarnings
    {
        get
        {
            lock (_warnLock)
            {
                return [.. _warnings.Where(w => !w.Expected)];
            }
        }
    }

    /// <summary>
    /// Declares that up to <paramref name="count"/> warnings whose title or text contains
    /// <paramref name="contains"/> are expected: they are still recorded, but do not fail
    /// the run.
    /// </summary>
    public void ExpectWarning(string contains, int count = 1)
    {
        ArgumentException.ThrowIfNullOrEmpty(contains);
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        lock (_warnLock)
        {
            _expectations.Add(new WarningExpectation(contains, count));
        }
    }

    /// <summary>WARN_ONCE bookkeeping: true the first time <paramref name="site"/> asks, false after.</summary>
    internal bool FirstWarning(string site)
    {
        lock (_warnLock)
        {
            return _warnedOnce.Add(site);
        }
    }

    internal void ReportWarning(KTask? task, WarningKind kind, string title, string text)
    {
        KernelWarning w;
        lock (_warnLock)
        {
            bool expected = false;
            foreach (WarningExpectation e in _expectations)
            {
                if (e.Remaining > 0 && (title.Contains(e.Contains, StringComparison.Ordinal) || text.Contains(e.Contains, StringComparison.Ordinal)))
                {
                    e.Remaining--;
                    expected = true;
                    break;
                }
            }

            w = new KernelWarning(kind, title, text, task?.DisplayName ?? "?", Scheduler.Steps, Clock.NowNs, expected);
            _warnings.Add(w);
        }

        Trace.Warning(task, w);
    }

    private sealed class WarningExpectation(string contains, int count)
    {
        public string Contains { get; } = contains;

        public int Remaining { get; set; } = count;
    }
}
