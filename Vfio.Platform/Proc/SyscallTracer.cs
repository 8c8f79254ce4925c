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

/// <summary>Decodes an ioctl's argument at the syscall's exit: the text strace prints in its place (<c>{argsz=32, flags=…}</c>).</summary>
/// <param name="process">The traced process (its memory holds the argument).</param>
/// <param name="arg">The argument as passed (usually a user pointer).</param>
/// <param name="ret">What the ioctl returned.</param>
public delegate string IoctlArgDecoder(SimProcess process, ulong arg, long ret);

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
    public override string ToString()
        => Return < 0
            ? $"{Syscall}({Arguments}) = -1 {Error.Describe()}"
            : $"{Syscall}({Arguments}) = {ReturnText ?? Return.ToString(System.Globalization.CultureInfo.InvariantCulture)}";
}

/// <summary>
/// The names and argument decoders of the ioctls the loaded modules define. Ioctl numbers
/// are only unique per file type (VFIO_IOMMU_GET_INFO and VFIO_DEVICE_GET_PCI_HOT_RESET_INFO
/// share one), so an entry may name the <see cref="FileOperations"/> type it belongs to.
/// </summary>
public sealed class IoctlDecoderTable
{
    private readonly Dictionary<(Type? Ops, uint Cmd), (string Name, IoctlArgDecoder? Decoder)> _byCmd = [];
    private readonly KSpinLock _lock;

    internal IoctlDecoderTable(SimKernel kernel) => _lock = new KSpinLock(kernel, "strace.ioctls");

    /// <summary>
    /// Registers <paramref name="cmd"/> as <paramref name="name"/>, with a decoder for its
    /// argument (null: printed as a number), for files whose operations are of type
    /// <paramref name="fileOps"/> (null: any file without an entry of its own).
    /// </summary>
    public void Register(uint cmd, string name, IoctlArgDecoder? decoder = null, Type? fileOps = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        _lock.Lock();
        _byCmd[(fileOps, cmd)] = (name, decoder);
        _lock.Unlock();
    }

    /// <summary>The name and decoder registered for <paramref name="cmd"/> on a file with operations of type <paramref name="fileOps"/>.</summary>
    public bool TryGet(Type? fileOps, uint cmd, out string name, out IoctlArgDecoder? decoder)
    {
        _lock.Lock();
        try
        {
            if ((fileOps is not null && _byCmd.TryGetValue((fileOps, cmd), out (string Name, IoctlArgDecoder? Decoder) e))
                || _byCmd.TryGetValue((null, cmd), out e))
            {
                name = e.Name;
                decoder = e.Decoder;
                return true;
            }
        }
        finally
        {
            _lock.Unlock();
        }

        name = "";
        decoder = null;
        return false;
    }
}

/// <summary>
/// The machine's strace: which processes are traced and what their syscalls did. Off until
/// <see cref="Start"/>; tracing costs nothing to an untraced process.
/// </summary>
public sealed class SyscallTracer
{
    private readonly SimMachine _machine;
    private readonly KSpinLock _lock;
    private readonly List<SyscallRecord> _records = [];
    private readonly HashSet<int> _pids = [];
    private bool _all;
    private volatile bool _active;

    internal SyscallTracer(SimMachine machine)
    {
        _machine = machine;
        _lock = new KSpinLock(machine.Kernel, "strace.lock");
        Ioctls = new IoctlDecoderTable(machine.Kernel);
    }

    /// <summary>The ioctl names and decoders (the loaded modules register theirs).</summary>
    public IoctlDecoderTable Ioctls { get; }

    /// <summary>True while some process is traced.</summary>
    public bool IsActive => _active;

    /// <summary>Starts tracing <paramref name="process"/>, or every process (present and future) when null.</summary>
    public void Start(SimProcess? process = null)
    {
        _lock.Lock();
        if (process is null)
        {
            _all = true;
        }
        else
        {
            _pids.Add(process.Pid);
        }

        _active = true;
        _lock.Unlock();
    }

    /// <summary>Stops tracing <paramref name="process"/>, or every process when null. The records stay.</summary>
    public void Stop(SimProcess? process = null)
    {
        _lock.Lock();
        if (process is null)
        {
            _all = false;
            _pids.Clear();
        }
        else
        {
            _pids.Remove(process.Pid);
        }

        _active = _all || _pids.Count > 0;
        _lock.Unlock();
    }

    /// <summary>Whether <paramref name="process"/> is traced now.</summary>
    public bool IsTraced(SimProcess process)
    {
        ArgumentNullException.ThrowIfNull(process);
        if (!_active)
        {
            return false;
        }

        _lock.Lock();
        try
        {
            return _all || _pids.Contains(process.Pid);
        }
        finally
        {
            _lock.Unlock();
        }
    }

    /// <summary>Every record so far, in the order the syscalls returned.</summary>
    public IReadOnlyList<SyscallRecord> Records
    {
        get
        {
            _lock.Lock();
            try
            {
                return [.. _records];
            }
            finally
            {
                _lock.Unlock();
            }
        }
    }

    /// <summary>Forgets the records (tracing goes on).</summary>
    public void Clear()
    {
        _lock.Lock();
        _records.Clear();
        _lock.Unlock();
    }

    /// <summary>The virtual time a syscall of <paramref name="process"/> enters at, or -1 when it is not traced (then nothing is recorded).</summary>
    internal long Begin(SimProcess process) => IsTraced(process) ? _machine.Kernel.Clock.NowNs : -1;

    /// <summary>Records a finished syscall.</summary>
    internal void Add(SimProcess process, long timeNs, string syscall, string arguments, long ret, int fd = -1, string? request = null, string? returnText = null)
    {
        string? reason = ret < 0 ? ErrorReason.Current : null;
        var r = new SyscallRecord(process.Pid, process.Comm, timeNs, syscall, arguments, ret, request, fd, reason, returnText);
        _lock.Lock();
        _records.Add(r);
        _lock.Unlock();
    }

    // ---- Argument formatting shared by the syscalls.

    /// <summary>An ioctl's record: the request by name when a module registered it, the argument decoded when it has a decoder.</summary>
    internal void AddIoctl(SimProcess process, long timeNs, int fd, Type? fileOps, uint cmd, ulong arg, long ret)
    {
        string request;
        string argText;
        if (Ioctls.TryGet(fileOps, cmd, out string name, out IoctlArgDecoder? decoder))
        {
            request = name;
            argText = decoder is null ? Hex(arg) : decoder(process, arg, ret);
        }
        else
        {
            request = Hex(cmd);
            argText = Hex(arg);
        }

        Add(process, timeNs, "ioctl", $"{fd}, {request}, {argText}", ret, fd, request);
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
        if (process.Mm.ReadUser(addr, bytes[..n]) != 0)
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

    /// <summary>0x-prefixed lower-case hex, as strace prints pointers and unknown numbers.</summary>
    public static string Hex(ulong value) => value == 0 ? "NULL" : $"0x{value:x}";

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
