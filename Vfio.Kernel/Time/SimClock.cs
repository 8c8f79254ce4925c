// Models the kernel's notion of time (include/linux/jiffies.h, kernel/time/timer.c)
// over a virtual clock. Controlled mode: time stands still while any task can run and
// jumps to the next timer or timed sleep when none can, so a 10 s kernel timeout costs no
// wall time. Real mode: virtual time is wall time multiplied by RealTimeScale (1000 by
// default), so the same 10 s wait takes 10 ms. Jiffies count from 0 at boot at HZ=250.

using System.Diagnostics;
using System.Globalization;

namespace Vfio.Kernel;

/// <summary>The simulated kernel's clock: jiffies, timers, and a <see cref="TimeProvider"/> for .NET code.</summary>
public sealed class SimClock : TimeProvider
{
    /// <summary>CONFIG_HZ.</summary>
    public const int HZ = 250;

    /// <summary>Nanoseconds per jiffy (TICK_NSEC).</summary>
    public const long NsPerJiffy = 1_000_000_000L / HZ;

    /// <summary>What <see cref="GetUtcNow"/> returns at boot: a fixed instant, so runs are reproducible.</summary>
    public static readonly DateTimeOffset BootTime = new(2024, 1, 1, 0, 0, 0, TimeSpan.Zero);

    private readonly SimKernel _kernel;
    private readonly bool _real;
    private readonly long _scale;
    private readonly long _startTimestamp;
    private long _virtualNs;

    // Protects _timers.
    private readonly Lock _timerLock = new();
    private readonly List<SimTimer> _timers = [];
    private int _timerSeq;

    internal SimClock(SimKernel kernel)
    {
        _kernel = kernel;
        _real = kernel.Config.Mode == SchedulerMode.Real;
        _scale = Math.Max(1, kernel.Config.RealTimeScale);
        _startTimestamp = Stopwatch.GetTimestamp();
    }

    /// <summary>Virtual nanoseconds since boot.</summary>
    public long NowNs => _real
        ? Volatile.Read(ref _virtualNs) + (Stopwatch.GetElapsedTime(_startTimestamp).Ticks * 100 * _scale)
        : Volatile.Read(ref _virtualNs);

    /// <summary>Virtual time since boot.</summary>
    public TimeSpan Uptime => TimeSpan.FromTicks(NowNs / 100);

    /// <summary><c>jiffies</c>.</summary>
    public long Jiffies => NowNs / NsPerJiffy;

    /// <inheritdoc/>
    public override DateTimeOffset GetUtcNow() => BootTime + TimeSpan.FromTicks(NowNs / 100);

    /// <inheritdoc/>
    public override long TimestampFrequency => 1_000_000_000L;

    /// <inheritdoc/>
    public override long GetTimestamp() => NowNs;

    /// <summary>msecs_to_jiffies(): rounds up, as the kernel does.</summary>
    public static long MsecsToJiffies(long ms) => ms <= 0 ? 0 : ((ms * 1_000_000L) + NsPerJiffy - 1) / NsPerJiffy;

    /// <summary>usecs_to_jiffies(): rounds up.</summary>
    public static long UsecsToJiffies(long us) => us <= 0 ? 0 : ((us * 1_000L) + NsPerJiffy - 1) / NsPerJiffy;

    /// <summary><c>n * HZ</c>: seconds to jiffies.</summary>
    public static long SecondsToJiffies(long seconds) => seconds * HZ;

    /// <summary>jiffies_to_msecs().</summary>
    public static long JiffiesToMsecs(long jiffies) => jiffies * NsPerJiffy / 1_000_000L;

    /// <summary>Formats virtual nanoseconds as seconds with 9 decimals (<c>10.004000000</c>).</summary>
    public static string FormatNs(long ns)
        => string.Create(CultureInfo.InvariantCulture, $"{ns / 1_000_000_000L}.{ns % 1_000_000_000L:D9}");

    /// <summary>
    /// Moves virtual time forward by <paramref name="by"/>: due timers fire and timed
    /// sleepers whose deadline passed wake. In real mode this adds to the scaled wall time.
    /// </summary>
    public void Advance(TimeSpan by)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(by, TimeSpan.Zero);
        Interlocked.Add(ref _virtualNs, by.Ticks * 100);
        KTask? t = KTask.CurrentOrNull is { } c && ReferenceEquals(c.Kernel, _kernel) ? c : null;
        FireDueTimers();
        _kernel.Scheduler.OnClockAdvanced(t);
    }

    /// <summary>
    /// The cost model's charge: moves virtual time forward by <paramref name="ns"/> without
    /// firing timers here (they fire at the next scheduling point that checks the clock).
    /// </summary>
    internal void AddModelledNs(long ns) => Interlocked.Add(ref _virtualNs, ns);

    /// <summary>Controlled mode: jump to <paramref name="ns"/> because no task can run.</summary>
    internal void AdvanceToIdle(long ns)
    {
        if (ns > Volatile.Read(ref _virtualNs))
        {
            Volatile.Write(ref _virtualNs, ns);
        }

        FireDueTimers();
    }

    /// <summary>The virtual deadline (ns) of a timeout that expires at jiffy <paramref name="expire"/>.</summary>
    internal long JiffiesToDeadlineNs(long expire) => expire >= long.MaxValue / NsPerJiffy ? long.MaxValue : expire * NsPerJiffy;

    /// <summary>Real mode: wall milliseconds to wait for <paramref name="virtualNs"/> of virtual time (at least 1).</summary>
    internal int RealMillisecondsFor(long virtualNs)
    {
        long ms = ((virtualNs / _scale) + 999_999) / 1_000_000;
        return (int)Math.Clamp(ms, 1, int.MaxValue - 1);
    }

    /// <summary>The virtual time the next armed timer fires, or long.MaxValue.</summary>
    internal long NextTimerDueNs
    {
        get
        {
            lock (_timerLock)
            {
                long min = long.MaxValue;
                foreach (SimTimer t in _timers)
                {
                    if (t.DueNs < min)
                    {
                        min = t.DueNs;
                    }
                }

                return min;
            }
        }
    }

    /// <inheritdoc/>
    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
    {
        ArgumentNullException.ThrowIfNull(callback);
        var timer = new SimTimer(this, Interlocked.Increment(ref _timerSeq), callback, state);
        timer.Change(dueTime, period);
        return timer;
    }

    private void FireDueTimers()
    {
        if (_real)
        {
            return;
        }

        while (true)
        {
            SimTimer? due = null;
            long now = Volatile.Read(ref _virtualNs);
            lock (_timerLock)
            {
                foreach (SimTimer t in _timers)
                {
                    if (t.DueNs <= now && (due is null || t.DueNs < due.DueNs || (t.DueNs == due.DueNs && t.Id < due.Id)))
                    {
                        due = t;
                    }
                }

                if (due is null)
                {
                    return;
                }

                _timers.Remove(due);
                if (due.PeriodNs > 0)
                {
                    due.DueNs += due.PeriodNs;
                    _timers.Add(due);
                }
            }

            Fire(due);
        }
    }

    private void Fire(SimTimer timer)
    {
        string name = $"timer{timer.Id}";
        if (_kernel.Scheduler.IsRunning)
        {
            _kernel.Scheduler.SpawnTimerTask(name, timer.Invoke);
        }
        else
        {
            // Setup code outside a run is single-threaded: run the callback right here.
            timer.Invoke();
        }
    }

    private void FireReal(SimTimer timer)
    {
        lock (_timerLock)
        {
            if (!_timers.Remove(timer))
            {
                return; // Disarmed after the .NET timer was already due.
            }

            if (timer.PeriodNs > 0)
            {
                timer.DueNs += timer.PeriodNs;
                _timers.Add(timer);
            }
        }

        Fire(timer);
    }

    private void Arm(SimTimer timer, long dueNs, long periodNs)
    {
        lock (_timerLock)
        {
            _timers.Remove(timer);
            timer.DueNs = dueNs;
            timer.PeriodNs = periodNs;
            if (dueNs != long.MaxValue)
            {
                _timers.Add(timer);
            }
        }
    }

    private static long ToNs(TimeSpan t) => t == Timeout.InfiniteTimeSpan ? long.MaxValue : t.Ticks * 100;

    /// <summary>A timer on the virtual clock. Controlled mode fires it from the scheduler; real mode from a scaled .NET timer.</summary>
    private sealed class SimTimer(SimClock clock, int id, TimerCallback callback, object? state) : ITimer
    {
        private Timer? _realTimer;
        private bool _disposed;

        public int Id { get; } = id;

        public long DueNs { get; set; } = long.MaxValue;

        public long PeriodNs { get; set; }

        public void Invoke() => callback(state);

        public bool Change(TimeSpan dueTime, TimeSpan period)
        {
            if (_disposed)
            {
                return false;
            }

            long due = ToNs(dueTime);
            long per = period == Timeout.InfiniteTimeSpan ? 0 : ToNs(period);
            clock.Arm(this, due == long.MaxValue ? long.MaxValue : clock.NowNs + due, per);
            if (clock._real)
            {
                _realTimer ??= new Timer(_ => clock.FireReal(this));
                _realTimer.Change(
                    due == long.MaxValue ? Timeout.InfiniteTimeSpan : TimeSpan.FromTicks(Math.Max(1, due / 100 / clock._scale)),
                    per == 0 ? Timeout.InfiniteTimeSpan : TimeSpan.FromTicks(Math.Max(1, per / 100 / clock._scale)));
            }

            return true;
        }

        public void Dispose()
        {
            _disposed = true;
            clock.Arm(this, long.MaxValue, 0);
            _realTimer?.Dispose();
        }

        public ValueTask DisposeAsync()
        {
            Dispose();
            return ValueTask.CompletedTask;
        }
    }
}
