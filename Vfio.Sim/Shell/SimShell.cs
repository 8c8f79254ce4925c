// A shell on a booted simulation: the commands a student types on a real machine to look
// around /sys and /dev (ls, cat, echo > for sysfs writes, readlink, tree, lspci, dmesg,
// ps, lsof) and the VFIO ioctls by their uapi names, run as one shell process whose
// syscalls strace sees. Errors print as the kernel returned them, with the reason.
//
// Every simple command runs as its own task of the kernel (VfioSim.Run("sh", …)): a syscall
// needs a task, and a command that hangs or trips the kernel is reported and ends there,
// leaving the shell usable. File access goes through the shell process's syscalls (open,
// read, write, ioctl, close), so `strace on` shows what each command did; directory listings
// and readlink use the VFS directly, as there is no getdents here. Argument structs are
// staged in one private anonymous page range of the shell, mapped on first use, the way a
// C program's stack would hold them.

using System.Runtime.InteropServices;
using Vfio.Kernel;
using Vfio.Platform.Mm;
using Vfio.Platform.Proc;

namespace Vfio.Sim.Shell;

/// <summary>
/// A shell process on <see cref="Sim"/>. <see cref="Execute(string, TextWriter)"/> runs one line
/// (<c>cmd; cmd</c>), writing what the commands print.
/// </summary>
public sealed partial class SimShell
{
    // The staging area for syscall arguments (struct vfio_*, read/write buffers).
    private const ulong StageSize = 64 << 10;

    private readonly Dictionary<string, Command> _commands;
    private readonly SortedDictionary<string, (ulong Addr, ulong Size)> _buffers = new(StringComparer.Ordinal);
    private ulong _stage;
    private int _nextBuffer;
    private int _status;
    private int _straceSeen = -1;
    private string _cwd = "/";

    /// <summary>A shell on <paramref name="sim"/>, as a new root process named <c>sh</c>.</summary>
    public SimShell(VfioSim sim)
        : this(sim, (sim ?? throw new ArgumentNullException(nameof(sim))).Spawn("sh"))
    {
    }

    /// <summary>A shell on <paramref name="sim"/> running as <paramref name="process"/> (for instance a lab's traced student process).</summary>
    public SimShell(VfioSim sim, SimProcess process)
    {
        ArgumentNullException.ThrowIfNull(sim);
        ArgumentNullException.ThrowIfNull(process);
        Sim = sim;
        Process = process;
        _commands = new Dictionary<string, Command>(StringComparer.Ordinal);
        RegisterFileCommands();
        RegisterPciCommands();
        RegisterVfioCommands();
        RegisterShellCommands();
        Commands = [.. _commands.Keys.Order(StringComparer.Ordinal)];
        RunResult boot = sim.Run("sh", () =>
        {
            InstallTty();
            EnsureStage();
        });
        if (!boot.Passed)
        {
            throw new InvalidOperationException($"the shell could not start on {sim}: {boot.Describe()}");
        }
    }

    /// <summary>The simulation.</summary>
    public VfioSim Sim { get; }

    /// <summary>The shell's process: every fd it opens and syscall it makes are its.</summary>
    public SimProcess Process { get; }

    /// <summary>The commands the shell knows, sorted.</summary>
    public IReadOnlyList<string> Commands { get; }

    /// <summary>True once <c>exit</c> ran: an interactive loop stops reading.</summary>
    internal bool ExitRequested { get; private set; }

    /// <summary>The exit status of the last command.</summary>
    internal int LastStatus => _status;

    /// <summary>
    /// Runs <paramref name="line"/> (commands separated by <c>;</c> or new lines, <c>#</c>
    /// comments), writing their output to <paramref name="output"/>. Returns the exit status
    /// of the last command: 0 for success, 1 for a failed command (the error printed as
    /// <c>cmd: reason — EPERM (Operation not permitted)</c>), 2 for a usage error.
    /// </summary>
    public int Execute(string line, TextWriter output) => Execute(line, output, output);

    /// <summary>As <see cref="Execute(string, TextWriter)"/>, with error messages (and strace lines) on <paramref name="error"/>.</summary>
    internal int Execute(string line, TextWriter output, TextWriter error)
    {
        ArgumentNullException.ThrowIfNull(line);
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(error);
        if (!ShellParser.TryParse(line, out List<SimpleCommand> commands, out string? syntax))
        {
            error.WriteLine($"sh: syntax error: {syntax}");
            return _status = 2;
        }

        Connector previous = Connector.Sequence;
        foreach (SimpleCommand c in commands)
        {
            if (ExitRequested)
            {
                break;
            }

            bool skip = (previous == Connector.And && _status != 0) || (previous == Connector.Or && _status == 0);
            previous = c.Next;
            if (!skip)
            {
                _status = RunOne(c, output, error);
            }
        }

        return _status;
    }

    /// <summary>Runs a script (a file's text): every line, in order, as <see cref="Execute(string, TextWriter)"/>.</summary>
    public int ExecuteScript(string script, TextWriter output) => Execute(script ?? throw new ArgumentNullException(nameof(script)), output, output);

    // ---- One command, as a task of the kernel.

    private int RunOne(SimpleCommand c, TextWriter output, TextWriter error)
    {
        string[] words = [.. c.Words
            .Select(w => w.Replace(ShellParser.LastStatusMarker, _status.ToString(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal))
            .SelectMany(Glob)];
        if (words.Length == 0)
        {
            return _status;
        }

        if (!_commands.TryGetValue(words[0], out Command? command))
        {
            error.WriteLine($"sh: {words[0]}: not found");
            return 127;
        }

        int status = 1;
        int warningsBefore = Sim.Warnings.Count;
        RunResult run = Sim.Run("sh", () =>
        {
            EnsureStage();
            StringWriter? captured = c.Redirect is null ? null : new StringWriter();
            var ctx = new CommandContext(this, words, captured ?? output, error);
            try
            {
                status = command.Run(ctx);
            }
            catch (UsageException e)
            {
                error.WriteLine($"{words[0]}: {e.Message}");
                status = 2;
            }

            if (captured is not null)
            {
                status = WriteRedirect(words[0], c.Redirect!, c.Append, captured.ToString(), error) is { } failed ? failed : status;
            }

            PrintStrace(error);
        });
        if (!run.Passed)
        {
            error.WriteLine($"sh: {words[0]}: the simulated kernel stopped the command ({run.Outcome}): {run.Exception?.Message ?? run.Report ?? run.Describe()}");
            status = 1;
        }

        IReadOnlyList<KernelWarning> warnings = Sim.Warnings;
        for (int i = warningsBefore; i < warnings.Count; i++)
        {
            error.WriteLine($"sh: the kernel logged {warnings[i].Kind}: {warnings[i].Title}");
        }

        return status;
    }

    // `cmd > file`: one open and one write of what the command printed, as the shell's
    // redirection and a builtin echo do (sysfs takes a store in one write).
    private int? WriteRedirect(string cmd, string path, bool append, string text, TextWriter error)
    {
        string full = FullPath(path);
        Vfio.Platform.Fs.OpenFlags flags = Vfio.Platform.Fs.OpenFlags.O_WRONLY | Vfio.Platform.Fs.OpenFlags.O_CREAT
            | (append ? Vfio.Platform.Fs.OpenFlags.O_APPEND : Vfio.Platform.Fs.OpenFlags.O_TRUNC);
        int fd = Process.Open(full, flags);
        if (fd < 0)
        {
            error.WriteLine($"sh: {path}: {ErrOf(fd).Message()}{Because()}");
            return 1;
        }

        byte[] bytes = System.Text.Encoding.UTF8.GetBytes(text);
        int? result = null;
        int done = 0;
        while (done < bytes.Length || (bytes.Length == 0 && done == 0))
        {
            int n = Math.Min(bytes.Length - done, (int)StageSize);
            StageWrite(bytes.AsSpan(done, n));
            long w = Process.Write(fd, _stage, n);
            if (w < 0)
            {
                error.WriteLine($"sh: {cmd}: write error: {ErrOf(w).Message()}{Because()}");
                result = 1;
                break;
            }

            done += (int)w;
            if (n == 0)
            {
                break;
            }
        }

        Process.Close(fd);
        return result;
    }

    // `strace on`: after each command, the records of its syscalls, as strace prints them on stderr.
    private void PrintStrace(TextWriter error)
    {
        if (_straceSeen < 0)
        {
            return;
        }

        IReadOnlyList<SyscallRecord> records = Sim.Strace.Records;
        for (int i = _straceSeen; i < records.Count; i++)
        {
            if (records[i].Pid == Process.Pid)
            {
                error.WriteLine(records[i].ToString());
            }
        }

        _straceSeen = records.Count;
    }

    // ---- Helpers the commands share.

    private void EnsureStage()
    {
        if (_stage != 0)
        {
            return;
        }

        long addr = Process.Mm.Mmap(0, StageSize, Prot.PROT_READ | Prot.PROT_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS, null, 0, Process);
        if (addr < 0)
        {
            throw new InvalidOperationException($"the shell cannot map its {StageSize}-byte argument area: {ErrOf(addr).Describe()}");
        }

        _stage = (ulong)addr;
    }

    private void StageWrite(ReadOnlySpan<byte> bytes)
    {
        if (Process.Mm.WriteUser(_stage, bytes) != 0)
        {
            throw new InvalidOperationException("the shell's argument area is not writable");
        }
    }

    private void StageRead(Span<byte> bytes)
    {
        if (Process.Mm.ReadUser(_stage, bytes) != 0)
        {
            throw new InvalidOperationException("the shell's argument area is not readable");
        }
    }

    /// <summary>ioctl() with <paramref name="value"/> staged in the shell's memory and copied back.</summary>
    private long IoctlStruct<T>(int fd, uint cmd, ref T value)
        where T : unmanaged
    {
        Span<byte> bytes = MemoryMarshal.AsBytes(MemoryMarshal.CreateSpan(ref value, 1));
        StageWrite(bytes);
        long r = Process.Ioctl(fd, cmd, _stage);
        StageRead(bytes);
        return r;
    }

    private static Errno ErrOf(long ret) => ErrnoExtensions.FromReturn(ret);

    /// <summary>" — the kernel's reason" when the last failed syscall gave one.</summary>
    private static string Because() => ErrorReason.Current is { Length: > 0 } r ? $" — {r}" : "";

    /// <summary>
    /// Pathname expansion of one word (sh's globbing, without brackets): each component
    /// with an unquoted <c>*</c> or <c>?</c> matches the names of its directory, sorted as
    /// the C locale sorts, hidden names only by a leading dot. A word that matches nothing
    /// stays as it was typed, as sh leaves it.
    /// </summary>
    private IEnumerable<string> Glob(string word)
    {
        string literal = word.Replace(ShellParser.GlobStar, '*').Replace(ShellParser.GlobOne, '?');
        if (word.IndexOfAny([ShellParser.GlobStar, ShellParser.GlobOne]) < 0)
        {
            return [literal];
        }

        bool absolute = word.StartsWith('/');
        List<string> found = [absolute ? "/" : ""];
        foreach (string part in word.Split('/', StringSplitOptions.RemoveEmptyEntries))
        {
            var next = new List<string>();
            foreach (string prefix in found)
            {
                if (part.IndexOfAny([ShellParser.GlobStar, ShellParser.GlobOne]) < 0)
                {
                    next.Add(Join(prefix, part));
                    continue;
                }

                string dir = FullPath(prefix.Length == 0 ? "." : prefix);
                IReadOnlyList<string>? names = Sim.Machine.Vfs.List(dir);
                foreach (string name in (names ?? []).Order(StringComparer.Ordinal))
                {
                    if ((name.StartsWith('.') && !part.StartsWith('.')) || !GlobMatch(part, name))
                    {
                        continue;
                    }

                    next.Add(Join(prefix, name));
                }
            }

            found = next;
            if (found.Count == 0)
            {
                return [literal];
            }
        }

        return found;

        static string Join(string prefix, string name) => prefix.Length == 0 ? name : prefix.EndsWith('/') ? prefix + name : prefix + "/" + name;
    }

    private static bool GlobMatch(ReadOnlySpan<char> pattern, ReadOnlySpan<char> name)
    {
        while (pattern.Length > 0)
        {
            char p = pattern[0];
            if (p == ShellParser.GlobStar)
            {
                for (int skip = 0; skip <= name.Length; skip++)
                {
                    if (GlobMatch(pattern[1..], name[skip..]))
                    {
                        return true;
                    }
                }

                return false;
            }

            if (name.Length == 0 || (p != ShellParser.GlobOne && p != name[0]))
            {
                return false;
            }

            pattern = pattern[1..];
            name = name[1..];
        }

        return name.Length == 0;
    }

    /// <summary>An absolute path for <paramref name="path"/> relative to the working directory, with . and .. folded.</summary>
    internal string FullPath(string path)
    {
        string joined = path.StartsWith('/') ? path : (_cwd == "/" ? "/" : _cwd + "/") + path;
        var parts = new List<string>();
        foreach (string p in joined.Split('/', StringSplitOptions.RemoveEmptyEntries))
        {
            if (p == ".")
            {
                continue;
            }

            if (p == "..")
            {
                if (parts.Count > 0)
                {
                    parts.RemoveAt(parts.Count - 1);
                }

                continue;
            }

            parts.Add(p);
        }

        return "/" + string.Join('/', parts);
    }

    // ---- The command table.

    private delegate int CommandBody(CommandContext ctx);

    private sealed record Command(string Name, string Usage, string Help, CommandBody Run);

    private void Add(string name, string usage, string help, CommandBody body) => _commands[name] = new Command(name, usage, help, body);

    /// <summary>What a command runs with: its words, where its output and errors go.</summary>
    private sealed class CommandContext(SimShell shell, string[] words, TextWriter output, TextWriter error)
    {
        public SimShell Shell { get; } = shell;

        public string Name => Words[0];

        public string[] Words { get; } = words;

        /// <summary>The arguments (the words after the command name).</summary>
        public ReadOnlySpan<string> Args => Words.AsSpan(1);

        public TextWriter Out { get; } = output;

        public TextWriter Err { get; } = error;

        /// <summary>Prints <paramref name="message"/> as <c>cmd: message</c> and returns 1.</summary>
        public int Fail(string message)
        {
            Err.WriteLine($"{Name}: {message}");
            return 1;
        }
    }

    /// <summary>A command used wrongly: printed as <c>cmd: message</c>, exit status 2.</summary>
    private sealed class UsageException(string message) : Exception(message);
}
