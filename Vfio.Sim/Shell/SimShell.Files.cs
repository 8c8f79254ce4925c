// The shell's file and process commands, as coreutils, util-linux, procps and lsof print
// them: ls, cat, echo, readlink, tree, cd, pwd, dmesg, ps, lsof. Files are read with the
// shell process's open/read/close; directories are listed from the VFS (no getdents).

using System.Globalization;
using System.Text;
using Vfio.Kernel;
using Vfio.Platform.Fs;
using Vfio.Platform.Proc;
using Vfio.Platform.Sysfs;

namespace Vfio.Sim.Shell;

public sealed partial class SimShell
{
    private void RegisterFileCommands()
    {
        Add("ls", "ls [-l] [PATH...]", "list a directory (-l: modes and symlink targets)", Ls);
        Add("cat", "cat FILE...", "print files (sysfs attributes, …) through open/read/close", Cat);
        Add("echo", "echo [-n] [WORD...] [> FILE]", "print words; with > or >> a sysfs write (unbind, driver_override, drivers_probe, …)", Echo);
        Add("readlink", "readlink [-f] PATH", "print a symlink's target (-f: the canonical path)", Readlink);
        Add("tree", "tree [-L DEPTH] [DIR]", "a directory tree (symlinks shown, not followed)", Tree);
        Add("cd", "cd [DIR]", "change the working directory", Cd);
        Add("pwd", "pwd", "print the working directory", ctx =>
        {
            ctx.Out.WriteLine(_cwd);
            return 0;
        });
        Add("dmesg", "dmesg", "the kernel's message buffer", ctx =>
        {
            ctx.Out.Write(Sim.Dmesg());
            return 0;
        });
        Add("ps", "ps", "the machine's processes (PID TTY TIME CMD)", Ps);
        Add("lsof", "lsof [-p PID]", "open files per process: /dev/vfio/N, anon_inode:[vfio-device], anon_inode:[eventfd]", Lsof);
    }

    // ---- ls

    private int Ls(CommandContext ctx)
    {
        bool longFormat = false;
        var paths = new List<string>();
        foreach (string a in ctx.Args)
        {
            if (a.StartsWith('-') && a.Length > 1)
            {
                foreach (char f in a.AsSpan(1))
                {
                    if (f is 'l')
                    {
                        longFormat = true;
                    }
                    else if (f is not ('1' or 'a'))
                    {
                        throw new UsageException($"invalid option -- '{f}' (ls [-l] [PATH...])");
                    }
                }
            }
            else
            {
                paths.Add(a);
            }
        }

        if (paths.Count == 0)
        {
            paths.Add(".");
        }

        int status = 0;
        bool headers = paths.Count > 1;
        for (int i = 0; i < paths.Count; i++)
        {
            string full = FullPath(paths[i]);
            int err = Sim.Machine.Vfs.Lookup(full, out VfsNode? node, followLast: !longFormat);
            if (err < 0 || node is null)
            {
                ctx.Err.WriteLine($"ls: cannot access '{paths[i]}': {ErrOf(err).Message()}");
                status = 2;
                continue;
            }

            if (longFormat && node is VfsSymlink && Sim.Machine.Vfs.Lookup(full, out VfsNode? target) == 0 && target is VfsDir && paths[i].EndsWith('/'))
            {
                node = target;
            }

            if (node is not VfsDir)
            {
                ctx.Out.WriteLine(longFormat ? LongLine(node, paths[i], full) : paths[i]);
                continue;
            }

            if (headers)
            {
                ctx.Out.WriteLine($"{(i > 0 ? "\n" : "")}{paths[i]}:");
            }

            IReadOnlyList<string> names = Sim.Machine.Vfs.List(full) ?? [];
            if (longFormat)
            {
                ctx.Out.WriteLine($"total {names.Count}");
            }

            foreach (string name in names.Order(StringComparer.Ordinal))
            {
                string child = full == "/" ? "/" + name : full + "/" + name;
                if (!longFormat)
                {
                    ctx.Out.WriteLine(name);
                }
                else if (Sim.Machine.Vfs.Lookup(child, out VfsNode? c, followLast: false) == 0 && c is not null)
                {
                    ctx.Out.WriteLine(LongLine(c, name, child));
                }
            }
        }

        return status;
    }

    // `crw------- 1 root root 10, 196 vfio`, `lrwxrwxrwx 1 root root 0 driver -> ../../…`.
    private string LongLine(VfsNode node, string name, string full)
    {
        (char type, int mode) = node switch
        {
            VfsDir => ('d', node.Mode),
            VfsSymlink => ('l', 0x1ff),
            VfsCharDevice => ('c', node.Mode),
            _ => ('-', node.Mode),
        };
        var sb = new StringBuilder();
        sb.Append(type);
        for (int shift = 6; shift >= 0; shift -= 3)
        {
            int bits = (mode >> shift) & 7;
            sb.Append((bits & 4) != 0 ? 'r' : '-').Append((bits & 2) != 0 ? 'w' : '-').Append((bits & 1) != 0 ? 'x' : '-');
        }

        string size = node switch
        {
            VfsCharDevice cd => $"{cd.Major}, {cd.Minor}",
            SysfsAttribute { IsBinary: true } a => a.Size.ToString(CultureInfo.InvariantCulture),
            SysfsAttribute => "4096",
            VfsDir => "0",
            _ => "0",
        };
        sb.Append(CultureInfo.InvariantCulture, $" 1 {UserName(node.Uid)} {UserName(node.Gid)} {size} {name}");
        if (node is VfsSymlink)
        {
            sb.Append(" -> ").Append(Sim.Machine.Vfs.ReadLink(full) ?? "(dangling)");
        }

        return sb.ToString();
    }

    private static string UserName(int id) => id == 0 ? "root" : id.ToString(CultureInfo.InvariantCulture);

    // ---- cat

    private int Cat(CommandContext ctx)
    {
        if (ctx.Args.Length == 0)
        {
            throw new UsageException("no file to print (cat FILE...)");
        }

        int status = 0;
        foreach (string path in ctx.Args)
        {
            if (ReadWholeFile(path, out string text, out string? error))
            {
                ctx.Out.Write(text);
            }
            else
            {
                ctx.Err.WriteLine($"cat: {path}: {error}");
                status = 1;
            }
        }

        return status;
    }

    /// <summary>open, read until end of file, close: the file's text, or the error as cat prints it.</summary>
    private bool ReadWholeFile(string path, out string text, out string? error)
    {
        text = "";
        int fd = Process.Open(FullPath(path), OpenFlags.O_RDONLY);
        if (fd < 0)
        {
            error = ErrOf(fd).Message() + Because();
            return false;
        }

        var bytes = new List<byte>();
        byte[] chunk = new byte[4096];
        error = null;
        while (true)
        {
            long n = Process.Read(fd, _stage, chunk.Length);
            if (n < 0)
            {
                error = ErrOf(n).Message() + Because();
                break;
            }

            if (n == 0)
            {
                break;
            }

            StageRead(chunk.AsSpan(0, (int)n));
            bytes.AddRange(chunk.AsSpan(0, (int)n));
        }

        Process.Close(fd);
        text = Encoding.Latin1.GetString([.. bytes]);
        return error is null;
    }

    // ---- echo (a builtin: its output, redirected, is one write)

    private static int Echo(CommandContext ctx)
    {
        ReadOnlySpan<string> args = ctx.Args;
        bool newline = true;
        if (args.Length > 0 && args[0] == "-n")
        {
            newline = false;
            args = args[1..];
        }

        ctx.Out.Write(string.Join(' ', args.ToArray()) + (newline ? "\n" : ""));
        return 0;
    }

    // ---- readlink

    private int Readlink(CommandContext ctx)
    {
        bool canonical = false;
        var paths = new List<string>();
        foreach (string a in ctx.Args)
        {
            if (a is "-f" or "-e" or "-m")
            {
                canonical = true;
            }
            else
            {
                paths.Add(a);
            }
        }

        if (paths.Count == 0)
        {
            throw new UsageException("missing operand (readlink [-f] PATH...)");
        }

        // Like coreutils: one line per operand that resolves, status 1 if any did not.
        int status = 0;
        foreach (string path in paths)
        {
            string full = FullPath(path);
            if (canonical)
            {
                if (Sim.Machine.Vfs.Lookup(full, out VfsNode? node) < 0 || node is null)
                {
                    status = 1;
                    continue;
                }

                ctx.Out.WriteLine(node.FullPath);
            }
            else if (Sim.Machine.Vfs.ReadLink(full) is { } target)
            {
                ctx.Out.WriteLine(target);
            }
            else
            {
                status = 1;
            }
        }

        return status;
    }

    // ---- tree

    private int Tree(CommandContext ctx)
    {
        int depth = int.MaxValue;
        string path = ".";
        ReadOnlySpan<string> args = ctx.Args;
        for (int i = 0; i < args.Length; i++)
        {
            if (args[i] == "-L")
            {
                if (i + 1 >= args.Length || !int.TryParse(args[i + 1], NumberStyles.None, CultureInfo.InvariantCulture, out depth) || depth < 1)
                {
                    throw new UsageException("-L takes a depth of 1 or more (tree [-L DEPTH] [DIR])");
                }

                i++;
            }
            else
            {
                path = args[i];
            }
        }

        string full = FullPath(path);
        if (Sim.Machine.Vfs.List(full) is null)
        {
            ctx.Out.WriteLine($"{path}  [error opening dir]");
            ctx.Out.WriteLine();
            ctx.Out.WriteLine("0 directories, 0 files");
            return 2;
        }

        ctx.Out.WriteLine(path);
        int dirs = 0, files = 0;
        TreeLevel(ctx.Out, full, "", 1, depth, ref dirs, ref files);
        ctx.Out.WriteLine();
        ctx.Out.WriteLine($"{dirs} director{(dirs == 1 ? "y" : "ies")}, {files} file{(files == 1 ? "" : "s")}");
        return 0;
    }

    private void TreeLevel(TextWriter output, string dir, string indent, int level, int maxDepth, ref int dirs, ref int files)
    {
        string[] names = [.. (Sim.Machine.Vfs.List(dir) ?? []).Order(StringComparer.Ordinal)];
        for (int i = 0; i < names.Length; i++)
        {
            bool last = i == names.Length - 1;
            string child = dir == "/" ? "/" + names[i] : dir + "/" + names[i];
            string branch = last ? "└── " : "├── ";
            if (Sim.Machine.Vfs.ReadLink(child) is { } target)
            {
                output.WriteLine($"{indent}{branch}{names[i]} -> {target}");
                files++;
                continue;
            }

            output.WriteLine($"{indent}{branch}{names[i]}");
            if (Sim.Machine.Vfs.Lookup(child, out VfsNode? node, followLast: false) == 0 && node is VfsDir)
            {
                dirs++;
                if (level < maxDepth)
                {
                    TreeLevel(output, child, indent + (last ? "    " : "│   "), level + 1, maxDepth, ref dirs, ref files);
                }
            }
            else
            {
                files++;
            }
        }
    }

    // ---- cd

    private int Cd(CommandContext ctx)
    {
        string target = ctx.Args.Length == 0 ? "/" : ctx.Args[0];
        string full = FullPath(target);
        int err = Sim.Machine.Vfs.Lookup(full, out VfsNode? node);
        if (err < 0 || node is null)
        {
            return ctx.Fail($"{target}: {ErrOf(err).Message()}");
        }

        if (node is not VfsDir)
        {
            return ctx.Fail($"{target}: Not a directory");
        }

        _cwd = full;
        return 0;
    }

    // ---- ps, lsof

    private int Ps(CommandContext ctx)
    {
        ctx.Out.WriteLine("    PID TTY          TIME CMD");
        foreach (SimProcess p in Sim.Machine.Processes.OrderBy(p => p.Pid))
        {
            string tty = ReferenceEquals(p, Process) ? "pts/0" : "?";
            ctx.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{p.Pid,7} {tty,-8} 00:00:00 {p.Comm}"));
        }

        return 0;
    }

    private int Lsof(CommandContext ctx)
    {
        int? only = null;
        ReadOnlySpan<string> args = ctx.Args;
        if (args.Length == 2 && args[0] == "-p" && int.TryParse(args[1], NumberStyles.None, CultureInfo.InvariantCulture, out int pid))
        {
            only = pid;
        }
        else if (args.Length != 0)
        {
            throw new UsageException("lsof [-p PID]");
        }

        ctx.Out.WriteLine("COMMAND     PID USER   FD   TYPE NAME");
        bool any = false;
        foreach (SimProcess p in Sim.Machine.Processes.OrderBy(p => p.Pid))
        {
            if (only is { } o && p.Pid != o)
            {
                continue;
            }

            any = true;
            foreach ((int fd, SimFile file) in p.Files.Open.OrderBy(f => f.Fd))
            {
                string mode = file.CanRead && file.CanWrite ? "u" : file.CanWrite ? "w" : "r";
                string type = file.Node switch
                {
                    VfsCharDevice => "CHR",
                    VfsDir => "DIR",
                    null => "a_inode",
                    _ => "REG",
                };
                ctx.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{p.Comm,-9} {p.Pid,5} {UserName(p.Credentials.Uid),-4} {fd,4}{mode} {type,-7} {file.Path}"));
            }
        }

        return any ? 0 : 1;
    }
}
