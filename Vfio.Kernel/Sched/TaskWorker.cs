// No kernel counterpart: the .NET threads that carry the tasks of controlled runs. A
// controlled run used to start a new thread (1 MiB stack) for every task and let it end
// with the task; creating and joining a thread costs far more than a whole scheduling
// step, and exploration boots and runs thousands of short runs with three to six tasks
// each. A worker is a parked background thread that runs one task after another, for any
// kernel, and goes back to a small process-wide idle list between them.
//
// A worker's gate is the task's Gate (the controlled hand-off): Assign parks the task on an
// idle worker (or a new one) without running it; the scheduler's first release of the gate
// starts the task, exactly as the first release used to start a new thread's body. Nothing
// of a task outlives it on the worker: KTask.Current is cleared, the spawner's execution
// context (async-locals such as a test's kernel list) is restored for the body only, and a
// worker whose gate still holds a count (a hand-off nobody consumed, which would start its
// next task unscheduled) is retired instead of reused. A task whose body never unwinds
// (it swallowed the abort and spins) keeps its worker forever, as it kept its thread.
//
// Lock order: s_idleLock is a leaf; a task's ParkLock is taken alone (to signal and wait
// for the thread's end).

namespace Vfio.Kernel;

internal sealed class TaskWorker
{
    // Idle workers kept for reuse; more than this many idle at once exit.
    internal const int MaxIdle = 64;

    private static readonly Lock s_idleLock = new();
    private static readonly Stack<TaskWorker> s_idle = new();
    private static long s_created;

    private readonly SemaphoreSlim _gate = new(0);
    private KTask? _task;
    private Action<KTask>? _main;
    private ExecutionContext? _context;

    private TaskWorker()
    {
        long n = Interlocked.Increment(ref s_created);
        var thread = new Thread(Loop, maxStackSize: 1 << 20)
        {
            IsBackground = true,
            Name = $"ktask worker {n}",
        };

        // The worker belongs to no one: it must not keep the creator's execution context.
        if (ExecutionContext.IsFlowSuppressed())
        {
            thread.Start();
        }
        else
        {
            using (ExecutionContext.SuppressFlow())
            {
                thread.Start();
            }
        }
    }

    /// <summary>Worker threads created so far in this process (for tests of reuse).</summary>
    internal static long Created => Interlocked.Read(ref s_created);

    /// <summary>Workers parked in the idle list right now.</summary>
    internal static int Idle
    {
        get
        {
            lock (s_idleLock)
            {
                return s_idle.Count;
            }
        }
    }

    /// <summary>
    /// Puts <paramref name="t"/> on a worker: sets its Gate, whose first release runs
    /// <paramref name="main"/>(t) on the worker under the caller's execution context.
    /// </summary>
    internal static void Assign(KTask t, Action<KTask> main)
    {
        TaskWorker? w = null;
        lock (s_idleLock)
        {
            if (s_idle.Count > 0)
            {
                w = s_idle.Pop();
            }
        }

        w ??= new TaskWorker();
        w._task = t;
        w._main = main;
        w._context = ExecutionContext.Capture();
        t.Gate = w._gate;
        t.OnWorker = true;
    }

    /// <summary>
    /// Releases <paramref name="t"/>'s gate unless its worker has already left it (and may
    /// carry another kernel's task by now); true when released. The check and the release
    /// are atomic with the worker's leaving, so a release that lands is seen by that worker,
    /// which then retires instead of returning to the idle list.
    /// </summary>
    internal static bool ReleaseUnlessDone(KTask t)
    {
        lock (t.ParkLock)
        {
            if (t.WorkerDone)
            {
                return false;
            }

            t.Gate!.Release();
            return true;
        }
    }

    /// <summary>Waits until the worker carrying <paramref name="t"/> has left it; false on timeout.</summary>
    internal static bool Join(KTask t, TimeSpan timeout)
    {
        long deadline = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
        lock (t.ParkLock)
        {
            while (!t.WorkerDone)
            {
                long left = deadline - Environment.TickCount64;
                if (left <= 0 || !Monitor.Wait(t.ParkLock, TimeSpan.FromMilliseconds(left)))
                {
                    return t.WorkerDone;
                }
            }
        }

        return true;
    }

    private void Loop()
    {
        while (true)
        {
            _gate.Wait();
            KTask t = _task ?? throw new InvalidOperationException("a task worker was released with no task");
            ExecutionContext? context = _context;
            if (context is null)
            {
                _main!(t);
            }
            else
            {
                ExecutionContext.Run(context, static s => ((TaskWorker)s!).RunTask(), this);
            }

            _task = null;
            _main = null;
            _context = null;
            lock (t.ParkLock)
            {
                t.WorkerDone = true;
                Monitor.PulseAll(t.ParkLock);
            }

            if (_gate.CurrentCount != 0)
            {
                return; // A stray hand-off would start the next task unscheduled: retire.
            }

            lock (s_idleLock)
            {
                if (s_idle.Count >= MaxIdle)
                {
                    return;
                }

                s_idle.Push(this);
            }
        }
    }

    private void RunTask() => _main!(_task!);
}
