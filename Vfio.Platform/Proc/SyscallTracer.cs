// Models what ptrace(PTRACE_SYSCALL) gives strace (kernel/ptrace.c, v6.12): every syscall of
// a traced process, seen at its exit with its arguments and result. The record is made by
// the syscall layer itself (SimProcess.Syscalls.cs), so nothing a process does escapes it;
// the kernel modules register names and argument decoders for their ioctls when they load.
//
// Records are kept in the order the syscalls returned, with the virtual time they entered
// at, so the same seed gives the same record in the controlled scheduler.

using Vfio.Kernel;
using Vfio.Platform.Fs;
using Vfio.Platform.Mm;

namespace Vfio.Platform.Proc;

/// <summary>
/// Decodes an ioctl's argument at the syscall's exit. Without an <see cref="IoctlEntryDecoder"/>
/// it returns the whole text strace prints in the argument's place (<c>{argsz=32, flags=…}</c>);
/// with one, the fields the kernel wrote back, printed after <c> => </c> when the call
/// succeeded (null: nothing to add).
/// </summary>
/// <param name="process">The traced process (its memory holds the argument).</param>
/// <param name="arg">The argument as passed (usually a user pointer).</param>
/// <param name="ret">What the ioctl returned.</param>
/// <param name="state">What the ioctl's <see cref="IoctlEntryDecoder"/> kept for the exit (the argsz passed in, say), else 0.</param>
public delegate string? IoctlArgDecoder(SimProcess process, ulong arg, long ret, ulong state);

/// <summary>
/// Decodes an ioctl's argument at the syscall's entry, before the kernel reads it: the
/// fields the caller passed in. Null means the ioctl takes no argument (strace prints none).
/// </summary>
/// <param name="process">The traced process (its memory holds the argument).</param>
/// <param name="arg">The argument as passed (usually a user pointer).</param>
/// <param name="state">What the exit decoder needs to know of the argument as passed (the exit sees it after the kernel wrote it back).</param>
public delegate string? IoctlEntryDecoder(SimProcess process, ulong arg, out ulong state);

/// <summary>One syscall of a traced process, as strace prints it.</summary>
/// <param name="Pid">The process.</param>
/// <param name="Comm">Its command name.</param>
/// <param name="TimeNs">The virtual time the syscall entered at.</param>
/// <param name="Syscall">The syscall's name (<c>ioctl</c>, <c>openat</c>…).</param>
/// <param name="Arguments">Its arguments, decoded as strace does.</param>
/// <param name="Return">What it returned: a non-negative result or -errno.</param>
/// <param name="Request">For an ioctl, the request's name (<c>VFIO_IOMMU_MAP_DMA</c>), or its number in hex when no module knows it; else null.</param>
/// <param name="Fd">The fd the syscall acted on, or -1.</param>
/// <param name="Reason">Why the kernel refused, when it said (<see cref="ErrorReason"/>), else null.</param>
/// <param name="ReturnText">The result as strace prints it after <c>=</c>, when not the plain number (an mmap address, poll's revents).</param>
public sealed record SyscallRecord(int Pid, string Comm, long TimeNs, string Syscall, string Arguments, long Return, string? Request, int Fd, string? Reason, string? ReturnText = null)
{
    /// <summary>The errno the syscall failed with, or <see cref="Errno.None"/>.</summary>
    public Errno Error => ErrnoExtensions.FromReturn(Return);

    /// <summary>
    /// The line strace prints: <c>ioctl(4, VFIO_IOMMU_MAP_DMA, {…}) = 0</c> or
    /// <c>= -1 EPERM (Operation not permitted)</c>.
    /// </summary>
    public override string ToString() => ToString(withReason: false);

    /// <summary>
    /// The line strace prints; with <paramref name="withReason"/>, a failed call ends with the
    /// kernel's reason as a comment: <c>= -1 EPERM (Operation not permitted) /* … */</c>.
    /// </summary>
    public string ToString(bool withReason)
    {
        if (Return >= 0)
        {
            return $"{Syscall}({Arguments}) = {ReturnText ?? Return.ToString(System.Globalization.CultureInfo.InvariantCulture)}";
        }

        string line = $"{Syscall}({Arguments}) = -1 {Error.Describe()}";
        return withReason && !string.IsNullOrEmpty(Reason)
            ? $"{line} /* {Reason.Replace("*/", "* /", StringComparison.Ordinal)} */"
            : line;
    }
}

/// <summary>How <see cref="SyscallTracer.Format(IEnumerable{SyscallRecord}, StraceFormat?)"/> prints records (strace's <c>-f -tt</c> by default).</summary>
public sealed record StraceFormat
{
    /// <summary>The default: a <c>[pid   N]</c> prefix when more than one process made the records, the virtual time since boot, no reasons.</summary>
    public static StraceFormat Default { get; } = new();

    /// <summary>Prefix each line with <c>[pid   N]</c> (strace -f): true always, false never, null (default) when the records come from more than one process.</summary>
    public bool? PidPrefix { get; init; }

    /// <summary>Print the virtual time since boot at which each syscall entered, as strace -tt does (<c>00:00:01.000123</c>). Default: on.</summary>
    public bool Timestamps { get; init; } = true;

    /// <summary>End a failed syscall's line with the kernel's reason as a comment (<c>/* VFIO_…: … */</c>). Default: off, so the line is strace's.</summary>
    public bool Reasons { get; init; }
}

/// <summary>
/// The names and argument decoders of the ioctls the loaded modules define. Ioctl numbers
/// are only unique per file type (VFIO_IOMMU_GET_INFO and VFIO_DEVICE_GET_PCI_HOT_RESET_INFO
/// share one), so an entry may name the <see cref="FileOperations"/> type it belongs to.
/// </summary>
public sealed class IoctlDecoderTable
{
    // Modules register while processes may be tracing. A concurrent map rather than a kernel
    // lock: strace must not add scheduling points or trace events to the run it watches.
    private readonly System.Collections.Concurrent.ConcurrentDictionary<(Type? Ops, uint Cmd), IoctlDecoding> _byCmd = new();

    internal IoctlDecoderTable()
    {
    }

    /// <summary>
    /// Registers <paramref name="cmd"/> as <paramref name="name"/> for files whose operations
    /// are of type <paramref name="fileOps"/> (null: any file without an entry of its own).
    /// <paramref name="entry"/> prints the argument as passed (null: the argument is printed
    /// by <paramref name="decoder"/> at exit, or as a number when that is null too);
    /// <paramref name="decoder"/> prints the argument at exit, or with an entry decoder the
    /// fields written back.
    /// </summary>
    public void Register(uint cmd, string name, IoctlArgDecoder? decoder = null, Type? fileOps = null, IoctlEntryDecoder? entry = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        _byCmd[(fileOps, cmd)] = new IoctlDecoding(name, entry, decoder);
    }

    /// <summary>The name and exit decoder registered for <paramref name="cmd"/> on a file with operations of type <paramref name="fileOps"/>.</summary>
    public bool TryGet(Type? fileOps, uint cmd, out string name, out IoctlArgDecoder? decoder)
    {
        IoctlDecoding d = Find(fileOps, cmd);
        name = d.Name ?? "";
        decoder = d.Exit;
        return d.Name is not null;
    }

    /// <summary>The entry for <paramref name="cmd"/> on <paramref name="fileOps"/>, or one with a null name.</summary>
    internal IoctlDecoding Find(Type? fileOps, uint cmd)
    {
        return (fileOps is not null && _byCmd.TryGetValue((fileOps, cmd), out IoctlDecoding e))
            || _byCmd.TryGetValue((null, cmd), out e)
            ? e
            : default;
    }
}

/// <summary>What the table holds for one ioctl: its name and its decoders.</summary>
internal readonly record struct IoctlDecoding(string? Name, IoctlEntryDecoder? Entry, IoctlArgDecoder? Exit);

/// <summary>An ioctl seen at entry: its decoding, the argument as passed, and what the entry decoder kept for the exit.</summary>
internal readonly record struct IoctlBegun(IoctlDecoding Decoding, string? EntryText, ulong State);

/// <summary>
/// The machine's strace: which processes are traced and what their syscalls did. Off until
/// <see cref="Start"/>; tracing costs nothing to an untraced process.
/// </summary>
public sealed class SyscallTracer
{
    // No kernel primitive guards the tracer's state: a spinlock here would be a scheduling
    // point and a trace event in every traced syscall, so a run with strace on would
    // interleave (and trace) differently from the same seed with it off. Concurrent
    // collections keep both runs identical; in the controlled scheduler only one task runs
    // at a time, so the record order is the syscalls' return order.
    private readonly SimMachine _machine;
    private readonly System.Collections.Concurrent.ConcurrentQueue<SyscallRecord> _records = new();
    private readonly System.Collections.Concurrent.ConcurrentDictionary<int, bool> _pids = new();
    private volatile bool _all;
    private volatile bool _active;

    internal SyscallTracer(SimMachine machine)
    {
        _machine = machine;
        Ioctls = new IoctlDecoderTable();

        // The generic ioctls do_vfs_ioctl() handles for every file (include/uapi/asm-generic/ioctls.h).
        Ioctls.Register(SimProcess.FIOCLEX, "FIOCLEX", entry: NoArgument);
        Ioctls.Register(SimProcess.FIONCLEX, "FIONCLEX", entry: NoArgument);
        Ioctls.Register(SimProcess.FIONBIO, "FIONBIO", static (p, arg, _, _) => IntPointer(p, arg));
    }

    /// <summary>The ioctl names and decoders (the loaded modules register theirs).</summary>
    public IoctlDecoderTable Ioctls { get; }

    /// <summary>True while some process is traced.</summary>
    public bool IsActive => _active;

    /// <summary>Starts tracing <paramref name="process"/>, or every process (present and future) when null.</summary>
    public void Start(SimProcess? process = null)
    {
        if (process is null)
        {
            _all = true;
        }
        else
        {
            _pids[process.Pid] = true;
        }

        _active = true;
    }

    /// <summary>Stops tracing <paramref name="process"/>, or every process when null. The records stay.</summary>
    public void Stop(SimProcess? process = null)
    {
        if (process is null)
        {
            _all = false;
            _pids.Clear();
        }
        else
        {
            _pids.TryRemove(process.Pid, out _);
        }

        _active = _all || !_pids.IsEmpty;
    }

    /// <summary>Whether <paramref name="process"/> is traced now.</summary>
    public bool IsTraced(SimProcess process)
    {
        ArgumentNullException.ThrowIfNull(process);
        if (!_active)
        {
            return false;
        }

        return _all || _pids.ContainsKey(process.Pid);
    }

    /// <summary>Every record so far, in the order the syscalls returned.</summary>
    public IReadOnlyList<SyscallRecord> Records
    {
        get => [.. _records];
    }

    /// <summary>The records of <paramref name="process"/> so far.</summary>
    public IReadOnlyList<SyscallRecord> RecordsOf(SimProcess process)
    {
        ArgumentNullException.ThrowIfNull(process);
        return [.. _records.Where(r => r.Pid == process.Pid)];
    }

    /// <summary>Every record so far printed as strace would (see <see cref="Format(IEnumerable{SyscallRecord}, StraceFormat?)"/>).</summary>
    public string Format(StraceFormat? format = null) => Format(Records, format);

    /// <summary>
    /// <paramref name="records"/> as strace <c>-f -tt</c> prints them, one line each:
    /// <c>[pid   101] 00:00:00.000123 ioctl(4, VFIO_GROUP_GET_STATUS, …) = 0</c>. The time
    /// is virtual time since boot, so the same seed gives the same text byte for byte.
    /// </summary>
    public static string Format(IEnumerable<SyscallRecord> records, StraceFormat? format = null)
    {
        ArgumentNullException.ThrowIfNull(records);
        format ??= StraceFormat.Default;
        IReadOnlyList<SyscallRecord> list = records as IReadOnlyList<SyscallRecord> ?? [.. records];
        bool prefix = format.PidPrefix ?? HasSeveralPids(list);
        var sb = new System.Text.StringBuilder();
        foreach (SyscallRecord r in list)
        {
            if (prefix)
            {
                sb.Append(System.Globalization.CultureInfo.InvariantCulture, $"[pid {r.Pid,5}] ");
            }

            if (format.Timestamps)
            {
                sb.Append(TimeText(r.TimeNs)).Append(' ');
            }

            sb.Append(r.ToString(format.Reasons)).Append('\n');
        }

        return sb.ToString();
    }

    /// <summary>Virtual nanoseconds since boot as strace -tt prints a time of day: <c>HH:MM:SS.uuuuuu</c>.</summary>
    public static string TimeText(long timeNs)
    {
        long us = Math.Max(timeNs, 0) / 1000;
        long s = us / 1_000_000;
        return string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{s / 3600:00}:{s / 60 % 60:00}:{s % 60:00}.{us % 1_000_000:000000}");
    }

    private static bool HasSeveralPids(IReadOnlyList<SyscallRecord> records)
    {
        for (int i = 1; i < records.Count; i++)
        {
            if (records[i].Pid != records[0].Pid)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>Forgets the records (tracing goes on).</summary>
    public void Clear()
    {
        _records.Clear();
    }

    /// <summary>The virtual time a syscall of <paramref name="process"/> enters at, or -1 when it is not traced (then nothing is recorded).</summary>
    internal long Begin(SimProcess process) => IsTraced(process) ? _machine.Kernel.Clock.NowNs : -1;

    /// <summary>Records a finished syscall.</summary>
    internal void Add(SimProcess process, long timeNs, string syscall, string arguments, long ret, int fd = -1, string? request = null, string? returnText = null)
    {
        string? reason = ret < 0 ? ErrorReason.Current : null;
        var r = new SyscallRecord(process.Pid, process.Comm, timeNs, syscall, arguments, ret, request, fd, reason, returnText);
        _records.Enqueue(r);
    }

    // ---- Argument formatting shared by the syscalls.

    /// <summary>
    /// An ioctl's entry: the request's entry in the table for the file's type, and the
    /// argument as passed when the request has an entry decoder (read before the kernel
    /// writes the struct back).
    /// </summary>
    internal IoctlBegun BeginIoctl(SimProcess process, Type? fileOps, uint cmd, ulong arg)
    {
        IoctlDecoding d = Ioctls.Find(fileOps, cmd);
        ulong state = 0;
        string? text = d.Entry is { } entry ? entry(process, arg, out state) : null;
        return new IoctlBegun(d, text, state);
    }

    /// <summary>
    /// An ioctl's record: the request by name when a module registered it, else its number;
    /// the argument as passed, then <c> => {…}</c> with what the kernel wrote back when it
    /// succeeded (strace's form for a struct that is read and written).
    /// </summary>
    internal void AddIoctl(SimProcess process, long timeNs, int fd, IoctlBegun begun, uint cmd, ulong arg, long ret)
    {
        IoctlDecoding d = begun.Decoding;
        string request = d.Name ?? Hex(cmd);
        string? argText;
        if (d.Name is null)
        {
            argText = Number(arg);
        }
        else if (d.Entry is not null)
        {
            argText = begun.EntryText;
            if (ret >= 0 && argText is not null && d.Exit?.Invoke(process, arg, ret, begun.State) is { } outText)
            {
                argText = $"{argText} => {outText}";
            }
        }
        else
        {
            argText = d.Exit is null ? Number(arg) : d.Exit(process, arg, ret, 0);
        }

        Add(process, timeNs, "ioctl", argText is null ? $"{fd}, {request}" : $"{fd}, {request}, {argText}", ret, fd, request);
    }

    /// <summary>
    /// Reads a <typeparamref name="T"/> (or its first <paramref name="size"/> bytes, the rest
    /// zero) from <paramref name="process"/>'s memory at <paramref name="addr"/>, for a
    /// decoder; false when the memory cannot be read.
    /// </summary>
    public static bool TryRead<T>(SimProcess process, ulong addr, out T value, int size = -1)
        where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(process);
        value = default;
        Span<byte> bytes = System.Runtime.InteropServices.MemoryMarshal.AsBytes(System.Runtime.InteropServices.MemoryMarshal.CreateSpan(ref value, 1));
        int n = size < 0 ? bytes.Length : Math.Min(size, bytes.Length);
        return addr != 0 && process.Mm.PeekUser(addr, bytes[..n]) == 0;
    }

    /// <summary>A pointer to an int as strace prints it: <c>[5]</c>, or the address when it cannot be read.</summary>
    public static string IntPointer(SimProcess process, ulong addr)
        => TryRead(process, addr, out int v) ? $"[{v}]" : Hex(addr);

    /// <summary>A NUL-terminated user string as strace prints it (quoted, at most 32 bytes then <c>...</c>), or the address.</summary>
    public static string UserString(SimProcess process, ulong addr)
    {
        ArgumentNullException.ThrowIfNull(process);
        Span<byte> bytes = stackalloc byte[33];
        int n = 0;
        while (n < bytes.Length && process.Mm.PeekUser(addr + (ulong)n, bytes.Slice(n, 1)) == 0 && bytes[n] != 0)
        {
            n++;
        }

        if (n == 0 && (addr == 0 || process.Mm.PeekUser(addr, bytes[..1]) != 0))
        {
            return Hex(addr);
        }

        string text = QuoteUser(process, addr, Math.Min(n, 32));
        return n > 32 ? text + "..." : text;
    }

    /// <summary>The entry decoder of an ioctl that takes no argument: strace prints none.</summary>
    public static string? NoArgument(SimProcess process, ulong arg, out ulong state)
    {
        state = 0;
        return null;
    }

    /// <summary>An eventfd's 8-byte counter at <paramref name="addr"/>: <c>[1]</c>, or the address.</summary>
    internal static string CounterText(SimProcess process, ulong addr)
        => TryRead(process, addr, out ulong v) ? $"[{v}]" : Hex(addr);

    /// <summary>Flags by name from a table of (bit, name), joined with <c>|</c>; bits with no name left as hex; 0 as <paramref name="zero"/>.</summary>
    public static string Flags(ulong value, ReadOnlySpan<(ulong Bit, string Name)> names, string zero = "0")
    {
        if (value == 0)
        {
            return zero;
        }

        var sb = new System.Text.StringBuilder();
        foreach ((ulong bit, string name) in names)
        {
            if (bit != 0 && (value & bit) == bit)
            {
                sb.Append(sb.Length == 0 ? "" : "|").Append(name);
                value &= ~bit;
            }
        }

        if (value != 0)
        {
            sb.Append(sb.Length == 0 ? "" : "|").Append(System.Globalization.CultureInfo.InvariantCulture, $"0x{value:x}");
        }

        return sb.ToString();
    }

    /// <summary>A user buffer as strace prints it: a quoted string with C escapes, at most 32 bytes then <c>...</c>; an unreadable one as its address.</summary>
    internal static string QuoteUser(SimProcess process, ulong addr, long count)
    {
        if (count <= 0)
        {
            return "\"\"";
        }

        int n = (int)Math.Min(count, 32);
        Span<byte> bytes = stackalloc byte[32];
        if (process.Mm.PeekUser(addr, bytes[..n]) != 0)
        {
            return Hex(addr);
        }

        var sb = new System.Text.StringBuilder(n + 8);
        sb.Append('"');
        foreach (byte b in bytes[..n])
        {
            switch (b)
            {
                case (byte)'\n': sb.Append("\\n"); break;
                case (byte)'\t': sb.Append("\\t"); break;
                case (byte)'"': sb.Append("\\\""); break;
                case (byte)'\\': sb.Append("\\\\"); break;
                default:
                    if (b is >= 0x20 and < 0x7f)
                    {
                        sb.Append((char)b);
                    }
                    else
                    {
                        sb.Append(System.Globalization.CultureInfo.InvariantCulture, $"\\{System.Convert.ToString(b, 8)}");
                    }

                    break;
            }
        }

        sb.Append('"');
        if (count > n)
        {
            sb.Append("...");
        }

        return sb.ToString();
    }

    /// <summary>A pointer as strace prints it: 0x-prefixed lower-case hex, or NULL.</summary>
    public static string Hex(ulong value) => value == 0 ? "NULL" : $"0x{value:x}";

    /// <summary>A number as strace prints one in hex (<c>%#x</c>): 0x-prefixed, or 0.</summary>
    public static string Number(ulong value) => value == 0 ? "0" : $"0x{value:x}";

    /// <summary>Flags by name joined with <c>|</c> (strace's style); bits with no name left as hex.</summary>
    public static string Flags<TEnum>(TEnum value, string zero = "0")
        where TEnum : struct, Enum
    {
        ulong v = Convert.ToUInt64(value, System.Globalization.CultureInfo.InvariantCulture);
        if (v == 0)
        {
            return zero;
        }

        var parts = new List<string>();
        foreach (TEnum f in Enum.GetValues<TEnum>())
        {
            ulong bit = Convert.ToUInt64(f, System.Globalization.CultureInfo.InvariantCulture);
            if (bit != 0 && System.Numerics.BitOperations.IsPow2(bit) && (v & bit) == bit)
            {
                parts.Add(f.ToString());
                v &= ~bit;
            }
        }

        if (v != 0)
        {
            parts.Add($"0x{v:x}");
        }

        return string.Join('|', parts);
    }

    internal static string OpenFlagsText(OpenFlags flags)
    {
        OpenFlags acc = flags & (OpenFlags)3;
        string mode = acc switch { OpenFlags.O_WRONLY => "O_WRONLY", OpenFlags.O_RDWR => "O_RDWR", _ => "O_RDONLY" };
        OpenFlags rest = flags & ~(OpenFlags)3;
        return rest == 0 ? mode : $"{mode}|{Flags(rest)}";
    }

    internal static string ProtText(Prot prot) => Flags(prot, "PROT_NONE");

    internal static string PollFdsText(ReadOnlySpan<PollFd> fds, bool revents)
    {
        var sb = new System.Text.StringBuilder("[");
        bool first = true;
        foreach (PollFd f in fds)
        {
            if (revents && f.REvents == PollEvents.None)
            {
                continue;
            }

            sb.Append(first ? "" : ", ");
            first = false;
            sb.Append(System.Globalization.CultureInfo.InvariantCulture, $"{{fd={f.Fd}, {(revents ? "revents" : "events")}={Flags(revents ? f.REvents : f.Events)}}}");
        }

        return sb.Append(']').ToString();
    }

    internal static string EventFdFlagsText(int flags)
    {
        if (flags == 0)
        {
            return "0";
        }

        var parts = new List<string>();
        if ((flags & EventFdContext.EFD_SEMAPHORE) != 0)
        {
            parts.Add("EFD_SEMAPHORE");
        }

        if ((flags & EventFdContext.EFD_CLOEXEC) != 0)
        {
            parts.Add("EFD_CLOEXEC");
        }

        if ((flags & EventFdContext.EFD_NONBLOCK) != 0)
        {
            parts.Add("EFD_NONBLOCK");
        }

        int rest = flags & ~(EventFdContext.EFD_SEMAPHORE | EventFdContext.EFD_CLOEXEC | EventFdContext.EFD_NONBLOCK);
        if (rest != 0)
        {
            parts.Add($"0x{rest:x}");
        }

        return string.Join('|', parts);
    }
}
