// The shell's own commands: help, strace on|off, graph, true, false, exit.

using System.Globalization;

namespace Vfio.Sim.Shell;

public sealed partial class SimShell
{
    private void RegisterShellCommands()
    {
        Add("help", "help [COMMAND]", "list the commands, or show one command's usage", Help);
        Add("strace", "strace on|off", "trace the shell's syscalls: after each command, its syscalls as strace prints them", Strace);
        Add("graph", "graph [tree|dot|svg FILE]", "the object graph now: processes, fds, files, groups, containers, devices, mappings", Graph);
        Add("true", "true", "succeed", _ => 0);
        Add("false", "false", "fail", _ => 1);
        Add("exit", "exit [STATUS]", "leave the shell", ctx =>
        {
            ExitRequested = true;
            return ctx.Args.Length > 0 && int.TryParse(ctx.Args[0], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int s) ? s & 0xff : _status;
        });
    }

    private int Help(CommandContext ctx)
    {
        if (ctx.Args.Length > 0)
        {
            if (!_commands.TryGetValue(ctx.Args[0], out Command? c))
            {
                return ctx.Fail($"no help for '{ctx.Args[0]}': it is not a command");
            }

            ctx.Out.WriteLine($"usage: {c.Usage}");
            ctx.Out.WriteLine($"  {c.Help}");
            return 0;
        }

        ctx.Out.WriteLine("Commands (help COMMAND for its usage; fds stay open between lines; cmd > FILE writes to sysfs):");
        int width = Commands.Max(n => n.Length);
        foreach (string name in Commands)
        {
            ctx.Out.WriteLine($"  {name.PadRight(width)}  {_commands[name].Help}");
        }

        return 0;
    }

    private int Strace(CommandContext ctx)
    {
        switch (ctx.Args.Length == 1 ? ctx.Args[0] : null)
        {
            case "on":
                Sim.Strace.Start(Process);
                // The records of this command (none yet) are the first printed.
                _straceSeen = Sim.Strace.Records.Count;
                return 0;
            case "off":
                Sim.Strace.Stop(Process);
                _straceSeen = -1;
                return 0;
            default:
                throw new UsageException("strace on|off");
        }
    }

    private int Graph(CommandContext ctx)
    {
        Graphs.ObjectGraph graph = Sim.Graph();
        ReadOnlySpan<string> a = ctx.Args;
        switch (a.Length == 0 ? "tree" : a[0])
        {
            case "tree" when a.Length <= 1:
                ctx.Out.Write(graph.ToTree());
                return 0;
            case "dot" when a.Length <= 2:
                return WriteOrPrint(ctx, graph.ToDot(), a.Length == 2 ? a[1] : null);
            case "svg" when a.Length == 2:
                return WriteOrPrint(ctx, graph.ToSvg(), a[1]);
            default:
                throw new UsageException("graph [tree|dot [FILE]|svg FILE]");
        }
    }

    // A picture goes to a file of the host (where a viewer can open it), not of the simulated machine.
    private static int WriteOrPrint(CommandContext ctx, string text, string? hostFile)
    {
        if (hostFile is null)
        {
            ctx.Out.Write(text);
            return 0;
        }

        try
        {
            File.WriteAllText(hostFile, text);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return ctx.Fail($"cannot write {hostFile}: {e.Message}");
        }

        ctx.Out.WriteLine($"wrote {hostFile}");
        return 0;
    }
}
