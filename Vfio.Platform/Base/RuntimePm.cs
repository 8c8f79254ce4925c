// Models the runtime PM core of drivers/base/power/runtime.c and include/linux/pm_runtime.h
// (v6.12): a device's usage count, its runtime status, the enable depth and the user's
// "control" choice (allow/forbid), and the suspend/resume/idle callbacks it runs.
//
// Life cycle: device_initialize() leaves runtime PM disabled (depth 1) with the device
// counted as suspended; a bus that manages power (PCI: pci_pm_init) forbids it, marks the
// device active and enables it. From then on a device runtime-suspends when it is idle:
// usage count 0, runtime PM enabled and allowed (power/control "auto"), no callback in
// progress. An idle check (rpm_idle) runs the idle callback and, if that returns 0, the
// suspend callback; a resume runs the resume callback. The callbacks are the bus type's
// (dev->bus->pm: pci_pm_runtime_*, which call the driver's), or the driver's where the bus
// has none. A callback failing with anything but -EAGAIN/-EBUSY sets runtime_error, after
// which every transition is -EINVAL; a resume while runtime PM is disabled is -EACCES
// unless the device is active.
//
// Synchronous, where the kernel is not: pm_runtime_put() and friends queue the idle check
// on pm_wq and return; here it runs at once in the caller's task, before the put returns.
// What user space sees afterwards is the same state (the kernel's merely arrives a moment
// later), the controlled scheduler needs no extra task to explore, and a seed replays the
// same order. Callbacks then run in whatever context the put was made in, so a put must
// not be made under a lock the callbacks take — which holds for every put the kernel
// makes too, since its work item could run at once on another CPU. Parents, children,
// autosuspend delays, device links and wake-up IRQs are not modelled.
//
// Lock rule: _lock (dev->power.lock, a spinlock) protects every field below but the usage
// count, which is atomic as in the kernel: taking or dropping a count that does not reach
// 0 needs no lock; the idle check that a drop to 0 starts, and every resume, take it. It
// is never held across a callback: a transition marks the status SUSPENDING or RESUMING, drops the
// lock, runs the callback and retakes it. A task that finds a transition in progress waits
// on _wait (dev->power.wait_queue) until it settles, then looks again.

using Vfio.Kernel;

namespace Vfio.Platform.Base;

/// <summary>enum rpm_status: a device's runtime PM status.</summary>
public enum RpmStatus
{
    /// <summary>RPM_ACTIVE: fully powered.</summary>
    Active = 0,

    /// <summary>RPM_RESUMING: the resume callback is running.</summary>
    Resuming = 1,

    /// <summary>RPM_SUSPENDED: in its low-power state.</summary>
    Suspended = 2,

    /// <summary>RPM_SUSPENDING: the suspend callback is running.</summary>
    Suspending = 3,
}

/// <summary>The runtime part of struct dev_pm_ops: callbacks that return 0 or -errno.</summary>
public sealed class DevPmOps
{
    /// <summary>-&gt;runtime_suspend(): put the device into a low-power state.</summary>
    public Func<SimDevice, int>? RuntimeSuspend { get; init; }

    /// <summary>-&gt;runtime_resume(): bring it back to full power.</summary>
    public Func<SimDevice, int>? RuntimeResume { get; init; }

    /// <summary>-&gt;runtime_idle(): 0 lets the core suspend an idle device, anything else keeps it up.</summary>
    public Func<SimDevice, int>? RuntimeIdle { get; init; }
}

/// <summary>The runtime PM state of a device (the runtime fields of struct dev_pm_info) and the pm_runtime_* API.</summary>
public sealed class RuntimePm
{
    private static readonly LockClass s_lockClass = LockClass.Get("dev.power.lock");

    private readonly SimDevice _dev;

    // Protects every field below but _usageCount (dev->power.lock).
    private readonly KSpinLock _lock;

    // Where tasks wait for a transition in progress to finish (dev->power.wait_queue).
    private readonly WaitQueue _wait;

    // usage_count (atomic_t).
    private int _usageCount;
    private int _disableDepth = 1;
    private bool _runtimeAuto = true;
    private int _runtimeError;
    private bool _idleNotification;
    private volatile RpmStatus _status = RpmStatus.Suspended;
    private long _suspends;
    private long _resumes;

    internal RuntimePm(SimDevice dev)
    {
        _dev = dev;
        _lock = new KSpinLock(dev.Machine.Kernel, $"device[{dev.Name}].power.lock", s_lockClass);
        _wait = new WaitQueue(dev.Machine.Kernel, $"device[{dev.Name}].power.wait_queue");
    }

    /// <summary>runtime_status (a snapshot).</summary>
    public RpmStatus Status => _status;

    /// <summary>usage_count (a snapshot; <c>power/runtime_usage</c>).</summary>
    public int UsageCount => Volatile.Read(ref _usageCount);

    /// <summary>disable_depth == 0: runtime PM is enabled.</summary>
    public bool IsEnabled => Volatile.Read(ref _disableDepth) == 0;

    /// <summary>runtime_auto: user space allows runtime PM (<c>power/control</c> is "auto"; false is "on").</summary>
    public bool IsAllowed => Volatile.Read(ref _runtimeAuto);

    /// <summary>runtime_error: the -errno of the callback that failed, 0 when none did.</summary>
    public int RuntimeError => Volatile.Read(ref _runtimeError);

    /// <summary>How many suspend callbacks completed successfully.</summary>
    public long SuspendCount => Interlocked.Read(ref _suspends);

    /// <summary>How many resume callbacks completed successfully.</summary>
    public long ResumeCount => Interlocked.Read(ref _resumes);

    private SimKernel Kernel => _dev.Machine.Kernel;

    // ---- Usage count.

    /// <summary>pm_runtime_get_noresume(): count a user without resuming the device.</summary>
    public void GetNoresume() => Interlocked.Increment(ref _usageCount);

    /// <summary>pm_runtime_put_noidle(): drop a user without the idle check; at 0 it does nothing (atomic_add_unless), silently.</summary>
    public void PutNoidle()
    {
        int seen = Volatile.Read(ref _usageCount);
        while (seen != 0)
        {
            int was = Interlocked.CompareExchange(ref _usageCount, seen - 1, seen);
            if (was == seen)
            {
                return;
            }

            seen = was;
        }
    }

    /// <summary>
    /// pm_runtime_get_sync(): count a user and resume the device. 1 when it was already active,
    /// 0 when it was resumed, or -errno — the count stays taken either way.
    /// </summary>
    public int GetSync()
    {
        Interlocked.Increment(ref _usageCount);
        _lock.Lock();
        try
        {
            return RpmResumeLocked();
        }
        finally
        {
            _lock.Unlock();
        }
    }

    /// <summary>pm_runtime_resume_and_get(): as <see cref="GetSync"/>, but 0 or -errno, and a failure drops the count again.</summary>
    public int ResumeAndGet()
    {
        Interlocked.Increment(ref _usageCount);
        int ret;
        _lock.Lock();
        try
        {
            ret = RpmResumeLocked();
        }
        finally
        {
            _lock.Unlock();
        }

        if (ret < 0)
        {
            DropUsageCount();
            return ret;
        }

        return 0;
    }

    /// <summary>
    /// pm_runtime_put(): drop a user; the last one runs the idle check. The kernel queues that
    /// check on pm_wq; here it runs before the call returns (see the file header).
    /// </summary>
    public int Put() => PutCore();

    /// <summary>pm_runtime_put_sync(): drop a user; the last one runs the idle check in the caller's task.</summary>
    public int PutSync() => PutCore();

    private int PutCore()
    {
        int left = DropUsageCount();
        if (left != 0)
        {
            return left < 0 ? left : 0;
        }

        _lock.Lock();
        try
        {
            return RpmIdleLocked();
        }
        finally
        {
            _lock.Unlock();
        }
    }

    /// <summary>rpm_drop_usage_count(): the count left, or -EINVAL (with a warning, the count kept at 0) when it was already 0.</summary>
    private int DropUsageCount()
    {
        int left = Interlocked.Decrement(ref _usageCount);
        if (left >= 0)
        {
            return left;
        }

        Interlocked.Increment(ref _usageCount);
        Warn.On(Kernel, true, $"{_dev.Name}: Runtime PM usage count underflow!");
        return Errno.EINVAL.Negative();
    }

    // ---- Transitions without a count.

    /// <summary>pm_runtime_resume(): resume the device; 1 if it was active, 0 or -errno.</summary>
    public int Resume()
    {
        _lock.Lock();
        try
        {
            return RpmResumeLocked();
        }
        finally
        {
            _lock.Unlock();
        }
    }

    /// <summary>pm_runtime_suspend(): suspend the device if nothing keeps it up; 1 if it was suspended, 0 or -errno.</summary>
    public int Suspend()
    {
        _lock.Lock();
        try
        {
            return RpmSuspendLocked();
        }
        finally
        {
            _lock.Unlock();
        }
    }

    /// <summary>pm_runtime_idle(): run the idle check now.</summary>
    public int Idle()
    {
        _lock.Lock();
        try
        {
            return RpmIdleLocked();
        }
        finally
        {
            _lock.Unlock();
        }
    }

    // ---- Policy: allow/forbid (power/control), enable/disable, status.

    /// <summary>pm_runtime_allow(): user space lets the device suspend when idle (drops the count forbid took).</summary>
    public void Allow()
    {
        _lock.Lock();
        try
        {
            if (_runtimeAuto)
            {
                return;
            }

            _runtimeAuto = true;
            if (DropUsageCount() == 0)
            {
                RpmIdleLocked();
            }
        }
        finally
        {
            _lock.Unlock();
        }
    }

    /// <summary>pm_runtime_forbid(): keep the device at full power (takes a count and resumes it).</summary>
    public void Forbid()
    {
        _lock.Lock();
        try
        {
            if (!_runtimeAuto)
            {
                return;
            }

            _runtimeAuto = false;
            Interlocked.Increment(ref _usageCount);
            RpmResumeLocked();
        }
        finally
        {
            _lock.Unlock();
        }
    }

    /// <summary>pm_runtime_enable(): one disable undone; at depth 0 the device can change state again.</summary>
    public void Enable()
    {
        _lock.Lock();
        if (!Warn.On(Kernel, _disableDepth == 0, $"{_dev.Name}: Unbalanced pm_runtime_enable!"))
        {
            _disableDepth--;
        }

        _lock.Unlock();
    }

    /// <summary>
    /// pm_runtime_disable(): no more transitions until enabled again; the first disable waits
    /// for a transition in progress. A suspended device then cannot be resumed (-EACCES).
    /// </summary>
    public void Disable()
    {
        _lock.Lock();
        try
        {
            if (_disableDepth++ == 0)
            {
                WaitForTransitionLocked();
            }
        }
        finally
        {
            _lock.Unlock();
        }
    }

    /// <summary>pm_runtime_set_active(): only while disabled (-EAGAIN otherwise); clears runtime_error.</summary>
    public int SetActive() => SetStatus(RpmStatus.Active);

    /// <summary>pm_runtime_set_suspended(): only while disabled (-EAGAIN otherwise); clears runtime_error.</summary>
    public int SetSuspended() => SetStatus(RpmStatus.Suspended);

    private int SetStatus(RpmStatus status)
    {
        _lock.Lock();
        try
        {
            if (_runtimeError == 0 && _disableDepth == 0)
            {
                return Errno.EAGAIN.Negative();
            }

            _runtimeError = 0;
            _status = status;
            return 0;
        }
        finally
        {
            _lock.Unlock();
        }
    }

    /// <summary>
    /// pci_pm_init()'s forbid, set_active and enable on a device nobody can reach yet (no lock
    /// is needed, and none can be taken by the thread building the machine): active, enabled,
    /// forbidden (usage count 1) until a driver allows runtime PM.
    /// </summary>
    internal void InitActiveForbidden()
    {
        _runtimeAuto = false;
        _usageCount = 1;
        _status = RpmStatus.Active;
        _runtimeError = 0;
        _disableDepth = 0;
    }

    // ---- The core (rpm_idle, rpm_suspend, rpm_resume).

    /// <summary>rpm_check_suspend_allowed(): 0 may suspend, 1 already suspended, or why not (-errno).</summary>
    private int CheckSuspendAllowedLocked()
    {
        _lock.AssertHeld();
        if (_runtimeError != 0)
        {
            return Errno.EINVAL.Negative();
        }

        if (_disableDepth > 0)
        {
            return Errno.EACCES.Negative();
        }

        if (Volatile.Read(ref _usageCount) != 0)
        {
            return Errno.EAGAIN.Negative();
        }

        return _status == RpmStatus.Suspended ? 1 : 0;
    }

    /// <summary>
    /// rpm_idle(): an active, idle device runs its idle callback (-EINPROGRESS while another
    /// runs; the callback may overlap a suspend or resume, as in the kernel), then, if that
    /// says 0, suspends.
    /// </summary>
    private int RpmIdleLocked()
    {
        _lock.AssertHeld();
        int ret = CheckSuspendAllowedLocked();
        if (ret < 0)
        {
            return ret;
        }

        if (_status != RpmStatus.Active)
        {
            return Errno.EAGAIN.Negative();
        }

        // One idle notification at a time (the kernel acts as though RPM_NOWAIT were set).
        if (_idleNotification)
        {
            return Errno.EINPROGRESS.Negative();
        }

        if (PickCallback(static ops => ops.RuntimeIdle) is { } idle)
        {
            _idleNotification = true;
            _lock.Unlock();
            try
            {
                ret = idle(_dev);
            }
            finally
            {
                _lock.Lock();
                _idleNotification = false;
                _wait.WakeUp();
            }

            if (ret != 0)
            {
                return ret;
            }
        }

        return RpmSuspendLocked();
    }

    /// <summary>
    /// rpm_suspend(): 1 if suspended already; -EAGAIN while resuming; waits out a suspend in
    /// progress and looks again; otherwise runs the suspend callback (SUSPENDING meanwhile).
    /// A failed callback leaves the device active.
    /// </summary>
    private int RpmSuspendLocked()
    {
        _lock.AssertHeld();
        while (true)
        {
            int ret = CheckSuspendAllowedLocked();
            if (ret != 0)
            {
                return ret;
            }

            if (_status == RpmStatus.Resuming)
            {
                return Errno.EAGAIN.Negative();
            }

            if (_status == RpmStatus.Suspending)
            {
                WaitForTransitionLocked();
                continue;
            }

            break;
        }

        _status = RpmStatus.Suspending;
        int rc = RunCallbackLocked(static ops => ops.RuntimeSuspend, "rpm_suspend");
        if (rc != 0)
        {
            _status = RpmStatus.Active;
            _wait.WakeUp();
            return rc;
        }

        _status = RpmStatus.Suspended;
        _suspends++;
        _wait.WakeUp();
        return 0;
    }

    /// <summary>
    /// rpm_resume(): -EINVAL after a callback error; while disabled 1 if active, else -EACCES;
    /// 1 if active; waits out a transition in progress and looks again; otherwise runs the
    /// resume callback (RESUMING meanwhile) — a failure leaves it suspended — and then the
    /// idle check, as the kernel queues one after every resume.
    /// </summary>
    private int RpmResumeLocked()
    {
        _lock.AssertHeld();
        while (true)
        {
            if (_runtimeError != 0)
            {
                return Errno.EINVAL.Negative();
            }

            if (_disableDepth > 0)
            {
                return _status == RpmStatus.Active ? 1 : Errno.EACCES.Negative();
            }

            if (_status == RpmStatus.Active)
            {
                return 1;
            }

            if (_status is RpmStatus.Resuming or RpmStatus.Suspending)
            {
                WaitForTransitionLocked();
                continue;
            }

            break;
        }

        _status = RpmStatus.Resuming;
        int rc = RunCallbackLocked(static ops => ops.RuntimeResume, "rpm_resume");
        if (rc != 0)
        {
            _status = RpmStatus.Suspended;
            _wait.WakeUp();
            return rc;
        }

        _status = RpmStatus.Active;
        _resumes++;
        _wait.WakeUp();
        RpmIdleLocked();
        return 0;
    }

    /// <summary>
    /// rpm_callback(): the callback runs with the lock dropped; a missing one is -ENOSYS; a
    /// failure other than -EAGAIN/-EBUSY (-EACCES counts as -EAGAIN) becomes runtime_error.
    /// </summary>
    private int RunCallbackLocked(Func<DevPmOps, Func<SimDevice, int>?> which, string what)
    {
        _lock.AssertHeld();
        if (PickCallback(which) is not { } cb)
        {
            return Errno.ENOSYS.Negative();
        }

        int rc;
        _lock.Unlock();
        try
        {
            Kernel.Trace.Event(KTask.CurrentOrNull, what, _dev.Name);
            rc = cb(_dev);
        }
        finally
        {
            _lock.Lock();
        }

        if (rc == Errno.EACCES.Negative())
        {
            rc = Errno.EAGAIN.Negative();
        }

        if (rc != 0 && rc != Errno.EAGAIN.Negative() && rc != Errno.EBUSY.Negative())
        {
            _runtimeError = rc;
        }

        return rc;
    }

    /// <summary>RPM_GET_CALLBACK(): the bus type's callback where it has runtime PM ops, else the driver's.</summary>
    private Func<SimDevice, int>? PickCallback(Func<DevPmOps, Func<SimDevice, int>?> which)
    {
        if (_dev.Bus?.Pm is { } busOps)
        {
            return which(busOps);
        }

        return _dev.Driver?.Pm is { } drvOps ? which(drvOps) : null;
    }

    /// <summary>Drops the lock, waits until no suspend or resume is in progress, retakes it.</summary>
    private void WaitForTransitionLocked()
    {
        _lock.AssertHeld();
        if (_status is not (RpmStatus.Suspending or RpmStatus.Resuming))
        {
            return;
        }

        _lock.Unlock();
        try
        {
            _wait.WaitEvent(() => Status is not (RpmStatus.Suspending or RpmStatus.Resuming));
        }
        finally
        {
            _lock.Lock();
        }
    }

    // ---- sysfs (drivers/base/power/sysfs.c).

    /// <summary>runtime_status_show(): error, unsupported (disabled), or the status.</summary>
    internal string RuntimeStatusShow()
    {
        if (RuntimeError != 0)
        {
            return "error\n";
        }

        if (!IsEnabled)
        {
            return "unsupported\n";
        }

        return Status switch
        {
            RpmStatus.Suspended => "suspended\n",
            RpmStatus.Suspending => "suspending\n",
            RpmStatus.Resuming => "resuming\n",
            _ => "active\n",
        };
    }

    /// <summary>control_show(): "auto" when allowed, "on" when forbidden.</summary>
    internal string ControlShow() => IsAllowed ? "auto\n" : "on\n";

    /// <summary>control_store(): "on" forbids, "auto" allows (a trailing newline is fine), anything else -EINVAL.</summary>
    internal long ControlStore(string buf)
    {
        string s = BusType.StripNewline(buf);
        if (s == "on")
        {
            Forbid();
        }
        else if (s == "auto")
        {
            Allow();
        }
        else
        {
            return Errno.EINVAL.Negative();
        }

        return buf.Length;
    }
}
