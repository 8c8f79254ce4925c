// The operations at which a task meets the scheduler. In controlled mode every one of
// them is a scheduling point; their kernel names are what traces and replays show.

namespace Vfio.Kernel;

/// <summary>A primitive operation that is a scheduling point in controlled mode.</summary>
public enum SchedOp : byte
{
    /// <summary>Task start (first time it runs).</summary>
    Start,
    /// <summary>A blocked task gives up the CPU.</summary>
    Block,
    /// <summary>Task exit.</summary>
    Exit,
    /// <summary>kthread_run: a new task was created.</summary>
    Spawn,
    /// <summary>Waiting for another task to exit (kthread_stop-like join).</summary>
    Join,
    /// <summary>cond_resched / schedule(): an explicit yield.</summary>
    Yield,
    /// <summary>msleep: sleeping on the virtual clock.</summary>
    Msleep,
    /// <summary>send_sig.</summary>
    Signal,
    /// <summary>Virtual time moved forward (all tasks were idle, or someone advanced the clock).</summary>
    ClockAdvance,
    MutexLock,
    MutexTrylock,
    MutexUnlock,
    SpinLock,
    SpinTrylock,
    SpinUnlock,
    DownRead,
    DownReadTrylock,
    UpRead,
    DownWrite,
    DownWriteTrylock,
    UpWrite,
    DowngradeWrite,
    WaitForCompletion,
    TryWaitForCompletion,
    Complete,
    CompleteAll,
    ReinitCompletion,
    WaitEvent,
    WakeUp,
    SleepOn,
    RefcountRead,
    RefcountSet,
    RefcountInc,
    RefcountAdd,
    RefcountIncNotZero,
    RefcountDec,
    RefcountDecAndTest,
    RefcountDecNotOne,
    RefcountSub,
    /// <summary>A fault-injection site was evaluated.</summary>
    FaultSite,
}

/// <summary>Kernel names of <see cref="SchedOp"/> values.</summary>
public static class SchedOpNames
{
    private static readonly string[] s_names = Build();

    private static string[] Build()
    {
        var names = new string[(int)SchedOp.FaultSite + 1];
        names[(int)SchedOp.Start] = "start";
        names[(int)SchedOp.Block] = "block";
        names[(int)SchedOp.Exit] = "exit";
        names[(int)SchedOp.Spawn] = "kthread_run";
        names[(int)SchedOp.Join] = "kthread_join";
        names[(int)SchedOp.Yield] = "cond_resched";
        names[(int)SchedOp.Msleep] = "msleep";
        names[(int)SchedOp.Signal] = "send_sig";
        names[(int)SchedOp.ClockAdvance] = "clock_advance";
        names[(int)SchedOp.MutexLock] = "mutex_lock";
        names[(int)SchedOp.MutexTrylock] = "mutex_trylock";
        names[(int)SchedOp.MutexUnlock] = "mutex_unlock";
        names[(int)SchedOp.SpinLock] = "spin_lock";
        names[(int)SchedOp.SpinTrylock] = "spin_trylock";
        names[(int)SchedOp.SpinUnlock] = "spin_unlock";
        names[(int)SchedOp.DownRead] = "down_read";
        names[(int)SchedOp.DownReadTrylock] = "down_read_trylock";
        names[(int)SchedOp.UpRead] = "up_read";
        names[(int)SchedOp.DownWrite] = "down_write";
        names[(int)SchedOp.DownWriteTrylock] = "down_write_trylock";
        names[(int)SchedOp.UpWrite] = "up_write";
        names[(int)SchedOp.DowngradeWrite] = "downgrade_write";
        names[(int)SchedOp.WaitForCompletion] = "wait_for_completion";
        names[(int)SchedOp.TryWaitForCompletion] = "try_wait_for_completion";
        names[(int)SchedOp.Complete] = "complete";
        names[(int)SchedOp.CompleteAll] = "complete_all";
        names[(int)SchedOp.ReinitCompletion] = "reinit_completion";
        names[(int)SchedOp.WaitEvent] = "wait_event";
        names[(int)SchedOp.WakeUp] = "wake_up";
        names[(int)SchedOp.SleepOn] = "sleep_on";
        names[(int)SchedOp.RefcountRead] = "refcount_read";
        names[(int)SchedOp.RefcountSet] = "refcount_set";
        names[(int)SchedOp.RefcountInc] = "refcount_inc";
        names[(int)SchedOp.RefcountAdd] = "refcount_add";
        names[(int)SchedOp.RefcountIncNotZero] = "refcount_inc_not_zero";
        names[(int)SchedOp.RefcountDec] = "refcount_dec";
        names[(int)SchedOp.RefcountDecAndTest] = "refcount_dec_and_test";
        names[(int)SchedOp.RefcountDecNotOne] = "refcount_dec_not_one";
        names[(int)SchedOp.RefcountSub] = "refcount_sub_and_test";
        names[(int)SchedOp.FaultSite] = "should_fail";
        return names;
    }

    /// <summary>The kernel function name of <paramref name="op"/> (<c>mutex_lock</c>).</summary>
    public static string KernelName(this SchedOp op) => s_names[(int)op];

    /// <summary>Parses a kernel function name back to a <see cref="SchedOp"/>.</summary>
    public static bool TryParse(string name, out SchedOp op)
    {
        for (int i = 0; i < s_names.Length; i++)
        {
            if (string.Equals(s_names[i], name, StringComparison.Ordinal))
            {
                op = (SchedOp)i;
                return true;
            }
        }

        op = default;
        return false;
    }
}
