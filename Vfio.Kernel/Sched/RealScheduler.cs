// The real scheduler: tasks are real threads running in parallel; scheduling points cost
// nothing. A task sleeps by waiting on its own ParkLock monitor until a waker sets its
// permit, its (scaled) deadline passes or a signal it honours arrives.
//
// Run() waits for every task of the run, watching for two failures: a deadlock (every
// live task asleep with no deadline, no permit and no pending timer, unchanged across two
// polls) and the wall-clock watchdog. On failure it aborts: sleepers are woken and throw
// KTaskAbortedException, as do tasks at their next primitive operation.

using System.Diagnostics;

namespace Vfio.Kernel;

internal sealed class RealScheduler : Scheduler
{
    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(20);

    // StateLock protects Tasks and _live as well as the failure record.
    private readonly ManualResetEventSlim _allExited = new(false);
    private int _live;
    private bool _running;

    // Bumped by every wake-up: the deadlock detector needs two polls with no progress.
    private long _wakeups;

    public RealScheduler(SimKernel kernel)
        : base(kernel)
    {
    }

    public override long Steps => 0;

    public override bool IsRunning => _running;

    public override void CheckAdoptionAllowed()
    {
    }

    public override void Point(KTask t, SchedOp op, KernelObject? obj)
    {
        if ((Kernel.Flags & SimKernel.FlagAborted) != 0 && !t.IsAdopted)
        {
            throw new KTaskAbortedException();
        }
    }

    public override WakeReason Park(KTask t)
    {
        lock (t.ParkLock)
        {
            while (true)
            {
                if (t.Permit)
                {
                    t.Permit = false;
                    return WakeReason.Woken;
                }

                if ((Kernel.Flags & SimKernel.FlagAborted) != 0 && !t.IsAdopted)
                {
                    throw new KTaskAbortedException();
                }

                if (t.SignalInterrupts(t.WaitKind))
                {
                    return WakeReason.Signaled;
                }

                long deadline = t.WaitDeadlineNs;
                int waitMs = Timeout.Infinite;
                if (deadline != long.MaxValue)
                {
                    long remaining = deadline - Kernel.Clock.NowNs;
                    if (remaining <= 0)
                    {
                        return WakeReason.TimedOut;
                    }

                    waitMs = Kernel.Clock.RealMillisecondsFor(remaining);
                }

                t.State = TaskState.Blocked;
                Monitor.Wait(t.ParkLock, waitMs);
                t.State = TaskState.Running;
            }
        }
    }

    public override void Unpark(KTask t)
    {
        lock (t.ParkLock)
        {
            t.Permit = true;
            Monitor.Pulse(t.ParkLock);
        }

        Interlocked.Increment(ref _wakeups);
    }

    public override void WakeForSignal(KTask t)
    {
        lock (t.ParkLock)
        {
            Monitor.Pulse(t.ParkLock);
        }

        Interlocked.Increment(ref _wakeups);
    }

    public override void Yield(KTask t) => Thread.Yield();

    public override void OnClockAdvanced(KTask? by)
    {
        KTask[] tasks;
        lock (StateLock)
        {
            tasks = [.. Tasks];
        }

        foreach (KTask t in tasks)
        {
            if (t.WaitDeadlineNs != long.MaxValue)
            {
                lock (t.ParkLock)
                {
                    Monitor.Pulse(t.ParkLock);
                }
            }
        }
    }

    public override KTask Spawn(KTask parent, string name, Action body, object? context)
    {
        var t = new KTask(Kernel, Kernel.NextTaskId(), name, body, scheduled: false, adopted: false) { Context = context };
        Start(t);
        Kernel.Trace.TaskSpawn(parent, t);
        return t;
    }

    public override void SpawnTimerTask(string name, Action body)
    {
        var t = new KTask(Kernel, Kernel.NextTaskId(), name, body, scheduled: false, adopted: false);
        Start(t);
    }

    private void Start(KTask t)
    {
        lock (StateLock)
        {
            Tasks.Add(t);
            _live++;
            _allExited.Reset();
        }

        t.State = TaskState.Runnable;
        var thread = new Thread(() => ThreadMain(t), maxStackSize: 1 << 20)
        {
            IsBackground = true,
            Name = $"ktask {t.DisplayName}",
        };
        t.Thread = thread;
        thread.Start();
    }

    private void ThreadMain(KTask t)
    {
        KTask.SetCurrent(t);
        t.State = TaskState.Running;
        try
        {
            RunBody(t);
        }
        finally
        {
            t.MarkExited();
            Interlocked.Increment(ref _wakeups);
            lock (StateLock)
            {
                if (--_live == 0)
                {
                    _allExited.Set();
                }
            }

            KTask.SetCurrent(null);
        }
    }

    public override RunResult Run(string name, Action body)
    {
        lock (StateLock)
        {
            if (_running)
            {
                throw new InvalidOperationException("a run is already in progress on this kernel; Run is not reentrant");
            }

            _running = true;
        }

        BeginRun();
        try
        {
            KTask main = new(Kernel, Kernel.NextTaskId(), name, body, scheduled: false, adopted: false);
            Start(main);
            Watch();
            if (Failed)
            {
                AbortAndJoin();
            }

            return FinishRun();
        }
        finally
        {
            _running = false;
        }
    }

    private void Watch()
    {
        long startTs = Stopwatch.GetTimestamp();
        long quietSince = -1;
        long lastWakeups = -1;
        while (!_allExited.Wait(PollInterval))
        {
            if (Failed)
            {
                return;
            }

            long wakeups = Interlocked.Read(ref _wakeups);
            if (AllAsleepForever())
            {
                if (wakeups == lastWakeups && quietSince >= 0)
                {
                    // Two polls apart with every task asleep on an event nobody can send.
                    Fail(RunOutcome.Deadlock, "DEADLOCK: every task of the run sleeps with no deadline and no timer is pending", null, null, captureGraph: true);
                    return;
                }

                quietSince = wakeups;
            }
            else
            {
                quietSince = -1;
            }

            lastWakeups = wakeups;
            if (Stopwatch.GetElapsedTime(startTs) > Kernel.Config.RealWatchdog)
            {
                Fail(RunOutcome.Liveness, $"LIVENESS: the run did not finish within the real-mode watchdog of {Kernel.Config.RealWatchdog.TotalSeconds:0} s of wall time; tasks still waiting or spinning:", null, null, captureGraph: true);
                return;
            }
        }
    }

    private bool AllAsleepForever()
    {
        if (Kernel.Clock.NextTimerDueNs != long.MaxValue)
        {
            return false;
        }

        lock (StateLock)
        {
            bool any = false;
            foreach (KTask t in Tasks)
            {
                if (t.State == TaskState.Exited)
                {
                    continue;
                }

                any = true;
                lock (t.ParkLock)
                {
                    if (t.State != TaskState.Blocked || t.Permit || t.WaitDeadlineNs != long.MaxValue || t.SignalInterrupts(t.WaitKind))
                    {
                        return false;
                    }
                }
            }

            return any;
        }
    }

    private void AbortAndJoin()
    {
        Kernel.SetFlag(SimKernel.FlagAborted);
        KTask[] tasks;
        lock (StateLock)
        {
            tasks = [.. Tasks];
        }

        foreach (KTask t in tasks)
        {
            lock (t.ParkLock)
            {
                Monitor.PulseAll(t.ParkLock);
            }
        }

        foreach (KTask t in tasks)
        {
            if (t.Thread is { } th && !th.Join(TimeSpan.FromSeconds(10)))
            {
                t.Failure ??= new KTaskAbortedException($"task {t.DisplayName} did not unwind after the run was aborted");
            }
        }
    }

    protected override void OnFailed() => _allExited.Set();
}
