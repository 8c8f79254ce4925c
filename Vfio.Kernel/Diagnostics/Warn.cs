// Models include/asm-generic/bug.h (v6.12): WARN_ON()/WARN() record a warning and carry on;
// BUG_ON() stops the machine. WARN stays on in release builds because race exploration
// runs in release.

using System.Runtime.CompilerServices;

namespace Vfio.Kernel;

/// <summary>
/// The message of a WARN or BUG written as an interpolated string: it is formatted only when
/// the condition holds, so a check on a hot path costs no allocation while it passes.
/// </summary>
[InterpolatedStringHandler]
public ref struct WarnMessageHandler
{
    private DefaultInterpolatedStringHandler _inner;

    /// <summary>Called by the compiler: formatting goes ahead only when <paramref name="condition"/> is true.</summary>
    public WarnMessageHandler(int literalLength, int formattedCount, bool condition, out bool shouldAppend)
    {
        shouldAppend = condition;
        _inner = condition ? new DefaultInterpolatedStringHandler(literalLength, formattedCount, System.Globalization.CultureInfo.InvariantCulture) : default;
    }

    /// <summary>Appends literal text.</summary>
    public void AppendLiteral(string value) => _inner.AppendLiteral(value);

    /// <summary>Appends a value.</summary>
    public void AppendFormatted<T>(T value) => _inner.AppendFormatted(value);

    /// <summary>Appends a value with a format.</summary>
    public void AppendFormatted<T>(T value, string? format) => _inner.AppendFormatted(value, format);

    /// <summary>Appends a value with an alignment.</summary>
    public void AppendFormatted<T>(T value, int alignment) => _inner.AppendFormatted(value, alignment);

    /// <summary>Appends a string.</summary>
    public void AppendFormatted(string? value) => _inner.AppendFormatted(value);

    /// <summary>The formatted message (empty when the condition was false).</summary>
    public string ToStringAndClear() => _inner.ToStringAndClear();
}

/// <summary>WARN_ON for simulated kernel code: records a warning and returns the condition.</summary>
public static class Warn
{
    /// <summary>
    /// WARN_ON(<paramref name="condition"/>): when true, records a kernel warning naming
    /// the caller and <paramref name="message"/>, then returns true so the caller can bail
    /// out as kernel code does (<c>if (Warn.On(...)) return;</c>). The warning fails the run
    /// unless the test declared it expected.
    /// </summary>
    public static bool On(
        bool condition,
        string message,
        [CallerMemberName] string member = "",
        [CallerFilePath] string file = "",
        [CallerLineNumber] int line = 0)
        => condition && Fire(KTask.Current, once: false, message, member, file, line);

    /// <summary>As <see cref="On(bool, string, string, string, int)"/>; the interpolated message is formatted only when the warning fires.</summary>
    public static bool On(
        bool condition,
        [InterpolatedStringHandlerArgument(nameof(condition))] ref WarnMessageHandler message,
        [CallerMemberName] string member = "",
        [CallerFilePath] string file = "",
        [CallerLineNumber] int line = 0)
        => condition && Fire(KTask.Current, once: false, message.ToStringAndClear(), member, file, line);

    /// <summary>As <see cref="On(SimKernel, bool, string, string, string, int)"/>; the interpolated message is formatted only when the warning fires.</summary>
    public static bool On(
        SimKernel kernel,
        bool condition,
        [InterpolatedStringHandlerArgument(nameof(condition))] ref WarnMessageHandler message,
        [CallerMemberName] string member = "",
        [CallerFilePath] string file = "",
        [CallerLineNumber] int line = 0)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        return condition && Fire(KTask.CurrentFor(kernel), once: false, message.ToStringAndClear(), member, file, line);
    }

    /// <summary>WARN_ON for code that has the kernel but may run on a thread that is not yet a task.</summary>
    public static bool On(
        SimKernel kernel,
        bool condition,
        string message,
        [CallerMemberName] string member = "",
        [CallerFilePath] string file = "",
        [CallerLineNumber] int line = 0)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        return condition && Fire(KTask.CurrentFor(kernel), once: false, message, member, file, line);
    }

    /// <summary>
    /// WARN_ON_ONCE(<paramref name="condition"/>): as <see cref="On(bool, string, string, string, int)"/>,
    /// but a call site reports only the first time per kernel; returns the condition every time.
    /// </summary>
    public static bool OnOnce(
        bool condition,
        string message,
        [CallerMemberName] string member = "",
        [CallerFilePath] string file = "",
        [CallerLineNumber] int line = 0)
        => condition && Fire(KTask.Current, once: true, message, member, file, line);

    /// <summary>As <see cref="OnOnce(bool, string, string, string, int)"/>; the interpolated message is formatted only when the condition holds.</summary>
    public static bool OnOnce(
        bool condition,
        [InterpolatedStringHandlerArgument(nameof(condition))] ref WarnMessageHandler message,
        [CallerMemberName] string member = "",
        [CallerFilePath] string file = "",
        [CallerLineNumber] int line = 0)
        => condition && Fire(KTask.Current, once: true, message.ToStringAndClear(), member, file, line);

    private static bool Fire(KTask t, bool once, string message, string member, string file, int line)
    {
        if (!once || t.Kernel.FirstWarning($"{file}:{line}"))
        {
            Report(t.Kernel, t, WarningKind.Warn, message, member, file, line);
        }

        return true;
    }

    internal static void Report(SimKernel kernel, KTask? task, WarningKind kind, string message, string member, string file, int line)
    {
        string where = $"{Path.GetFileName(file)}:{line} {member}";
        string title = $"WARNING: {message}";
        string text =
            $"------------[ cut here ]------------\n" +
            $"WARNING: task {task?.DisplayName ?? "?"} at {where}\n" +
            $"{message}\n" +
            $"Kernel: {kernel.Profile.Release} #1 vfio-sim\n" +
            $"---[ end trace ]---";
        kernel.ReportWarning(task, kind, title, text);
    }
}

/// <summary>BUG_ON for simulated kernel code: a kernel panic that ends the run.</summary>
public static class Bug
{
    /// <summary>BUG_ON(<paramref name="condition"/>): when true, throws <see cref="KernelPanicException"/>.</summary>
    public static void On(
        bool condition,
        string message,
        [CallerMemberName] string member = "",
        [CallerFilePath] string file = "",
        [CallerLineNumber] int line = 0)
    {
        if (condition)
        {
            string text = $"kernel BUG at {Path.GetFileName(file)}:{line} ({member}): {message}";
            if (KTask.CurrentOrNull is { } t && t.Kernel.TimelineActive)
            {
                t.Kernel.Trace.Bug(t, text);
            }

            throw new KernelPanicException(text);
        }
    }

    /// <summary>As <see cref="On(bool, string, string, string, int)"/>; the interpolated message is formatted only when the condition holds.</summary>
    public static void On(
        bool condition,
        [InterpolatedStringHandlerArgument(nameof(condition))] ref WarnMessageHandler message,
        [CallerMemberName] string member = "",
        [CallerFilePath] string file = "",
        [CallerLineNumber] int line = 0)
    {
        if (condition)
        {
            On(true, message.ToStringAndClear(), member, file, line);
        }
    }
}

/// <summary>
/// The simulated kernel hit BUG_ON or another fatal condition. Ends the run with outcome
/// <see cref="RunOutcome.Panic"/>; outside a run it propagates to the caller.
/// </summary>
public sealed class KernelPanicException : Exception
{
    /// <summary>Creates a panic with the kernel's message.</summary>
    public KernelPanicException(string message)
        : base(message)
    {
    }

    /// <summary>Creates a panic.</summary>
    public KernelPanicException()
    {
    }

    /// <summary>Creates a panic wrapping another failure.</summary>
    public KernelPanicException(string message, Exception inner)
        : base(message, inner)
    {
    }
}

/// <summary>
/// Thrown inside tasks of a run that has already failed, to unwind them. Simulated code
/// must not catch it; if it does, the next primitive operation throws it again.
/// </summary>
public sealed class KTaskAbortedException : Exception
{
    /// <summary>Creates the exception.</summary>
    public KTaskAbortedException()
        : base("the run was aborted (another task failed, deadlocked or exceeded the step budget)")
    {
    }

    /// <summary>Creates the exception with a message.</summary>
    public KTaskAbortedException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with a message and cause.</summary>
    public KTaskAbortedException(string message, Exception inner)
        : base(message, inner)
    {
    }
}
