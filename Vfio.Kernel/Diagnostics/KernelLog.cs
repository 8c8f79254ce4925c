// Models the kernel's message buffer (kernel/printk/printk.c, dmesg) (v6.12): printk
// records with a level and a virtual timestamp, read back as `dmesg` prints them. Messages
// also go to the trace as "printk" events when tracing is on.

using System.Globalization;

namespace Vfio.Kernel;

/// <summary>printk log levels (KERN_*).</summary>
public enum LogLevel
{
    Emerg = 0,
    Alert = 1,
    Crit = 2,
    Err = 3,
    Warning = 4,
    Notice = 5,
    Info = 6,
    Debug = 7,
}

/// <summary>One printk record.</summary>
/// <param name="TimeNs">Virtual time of the message.</param>
/// <param name="Level">Its level.</param>
/// <param name="Text">The text, without the trailing newline.</param>
public readonly record struct KernelMessage(long TimeNs, LogLevel Level, string Text)
{
    /// <summary>The line as dmesg prints it: <c>[    1.000000] text</c>.</summary>
    public override string ToString()
        => string.Create(CultureInfo.InvariantCulture, $"[{TimeNs / 1_000_000_000,5}.{TimeNs / 1000 % 1_000_000:D6}] {Text}");
}

/// <summary>The kernel's message ring (bounded; the oldest records fall off).</summary>
public sealed class KernelLog
{
    private readonly SimKernel _kernel;
    private readonly Lock _lock = new();
    private readonly Queue<KernelMessage> _records = new();
    private long _total;

    internal KernelLog(SimKernel kernel, int capacity = 4096)
    {
        _kernel = kernel;
        Capacity = capacity;
    }

    /// <summary>Records kept.</summary>
    public int Capacity { get; }

    /// <summary>Messages logged since boot (including those that fell off).</summary>
    public long Total => Interlocked.Read(ref _total);

    /// <summary>printk(): logs <paramref name="text"/> at <paramref name="level"/>.</summary>
    public void Printk(LogLevel level, string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var rec = new KernelMessage(_kernel.Clock.NowNs, level, text.TrimEnd('\n'));
        lock (_lock)
        {
            if (_records.Count == Capacity)
            {
                _records.Dequeue();
            }

            _records.Enqueue(rec);
            _total++;
        }

        _kernel.Trace.Event(KTask.CurrentOrNull, "printk", (string?)null, rec.Text);
    }

    /// <summary>pr_info().</summary>
    public void Info(string text) => Printk(LogLevel.Info, text);

    /// <summary>pr_warn().</summary>
    public void Warn(string text) => Printk(LogLevel.Warning, text);

    /// <summary>pr_err().</summary>
    public void Err(string text) => Printk(LogLevel.Err, text);

    /// <summary>The records kept, oldest first.</summary>
    public IReadOnlyList<KernelMessage> Messages
    {
        get
        {
            lock (_lock)
            {
                return [.. _records];
            }
        }
    }

    /// <summary>True when a kept record contains <paramref name="fragment"/>.</summary>
    public bool Contains(string fragment)
    {
        lock (_lock)
        {
            foreach (KernelMessage m in _records)
            {
                if (m.Text.Contains(fragment, StringComparison.Ordinal))
                {
                    return true;
                }
            }

            return false;
        }
    }

    /// <summary>How many kept records contain <paramref name="fragment"/>.</summary>
    public int Count(string fragment)
    {
        int n = 0;
        lock (_lock)
        {
            foreach (KernelMessage m in _records)
            {
                if (m.Text.Contains(fragment, StringComparison.Ordinal))
                {
                    n++;
                }
            }
        }

        return n;
    }

    /// <summary>The kept records as dmesg prints them.</summary>
    public string Dmesg() => string.Join('\n', Messages) + (Messages.Count > 0 ? "\n" : string.Empty);
}
