// `vfio-sim shell [--machine F] [--profile P] [--enable-sriov] [-c "CMD; CMD"] [SCRIPT]`: boots a simulated
// machine (the embedded default, or a machine description) with vfio, vfio_iommu_type1,
// vfio-pci, the mdev core and the mtty sample, and runs a shell on it (Vfio.Sim.Shell.SimShell):
// the commands of -c, or a script file, or standard input. On a terminal, lines are edited
// with history and tab completion of commands, paths, uapi names and fds (RadLine); piped
// input is read line by line with no prompt. The exit status is the last command's; bad
// options or a machine description that cannot be loaded exit 2.

using System.CommandLine;
using RadLine;
using Spectre.Console;
using Vfio.Kernel;
using Vfio.Platform.Machine;
using Vfio.Sim;
using Vfio.Sim.Shell;

namespace Vfio.Cli;

/// <summary>What the shell runs with.</summary>
internal sealed record ShellOptions
{
    public KernelProfile Profile { get; init; } = KernelProfile.Linux6_12;

    /// <summary>A machine description file; null for the embedded default machine.</summary>
    public string? MachineFile { get; init; }

    /// <summary>Commands to run (<c>-c</c>), instead of reading a script or standard input.</summary>
    public string? Command { get; init; }

    /// <summary>A script file to run.</summary>
    public string? Script { get; init; }

    /// <summary>vfio-pci's enable_sriov module parameter: writes to a PF's sriov_numvfs create VFs.</summary>
    public bool EnableSriov { get; init; }
}

internal static class ShellCommand
{
    private const string Prompt = "vfio-sim# ";

    public static Command Create()
    {
        Option<KernelProfile> profile = CliConsole.ProfileOption();
        Option<string?> machineFile = CliConsole.MachineOption();
        var sriov = new Option<bool>("--enable-sriov") { Description = "Load vfio-pci with enable_sriov=1, so that sriov_numvfs of a PF bound to vfio-pci creates VFs" };
        var command = new Option<string?>("-c") { Description = "Run these commands (separated by ; or new lines) and exit with the last one's status" };
        var script = new Argument<string?>("script") { Description = "A script file of shell commands to run", Arity = ArgumentArity.ZeroOrOne };
        script.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<string?>() is { } value && value.StartsWith('-'))
            {
                r.AddError($"unknown option {value} for shell");
            }
        });
        var shell = new Command("shell", "A shell on a booted simulated machine: ls, cat, echo > (sysfs writes), readlink, tree, lspci, dmesg, ps, lsof, strace, graph, and the VFIO ioctls by their uapi names (type help)");
        shell.Options.Add(profile);
        shell.Options.Add(machineFile);
        shell.Options.Add(sriov);
        shell.Options.Add(command);
        shell.Arguments.Add(script);
        shell.SetAction(result => Run(
            new ShellOptions
            {
                Profile = result.GetValue(profile)!,
                MachineFile = result.GetValue(machineFile),
                Command = result.GetValue(command),
                Script = result.GetValue(script),
                EnableSriov = result.GetValue(sriov),
            },
            Console.In,
            Console.Out,
            Console.Error,
            interactive: !Console.IsInputRedirected));
        return shell;
    }

    /// <summary>The machine the shell runs on: vfio, type1, vfio-pci, mdev and mtty on the profile's kernel.</summary>
    internal static VfioSim Boot(ShellOptions options)
    {
        VfioSimBuilder builder = VfioSim.CreateBuilder().UseProfile(options.Profile).AddVfioPci(new Vfio.Pci.VfioPciOptions { EnableSriov = options.EnableSriov }).AddMtty();
        if (options.MachineFile is not null)
        {
            builder.UseMachine(MachineDescriptionReader.Load(options.MachineFile));
        }

        return builder.Build();
    }

    /// <summary>Runs the shell: -c, else the script, else <paramref name="input"/> (with line editing when <paramref name="interactive"/>).</summary>
    internal static int Run(ShellOptions options, TextReader input, TextWriter output, TextWriter error, bool interactive)
    {
        string? script = null;
        VfioSim sim;
        try
        {
            if (options.Command is null && options.Script is not null)
            {
                script = File.ReadAllText(options.Script);
            }

            sim = Boot(options);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or MachineDescriptionException or ArgumentException)
        {
            return CliConsole.Usage(error, options.Command is null && options.Script is not null && script is null
                ? $"cannot read the script {options.Script}: {e.Message}"
                : $"cannot load the machine description {options.MachineFile}: {e.Message}");
        }

        var shell = new SimShell(sim);
        if (options.Command is not null)
        {
            return shell.Execute(options.Command, output, error);
        }

        if (script is not null)
        {
            return shell.Execute(script, output, error);
        }

        return interactive ? Interactive(shell, output, error) : Piped(shell, input, output, error);
    }

    // Standard input that is not a terminal: one line at a time, no prompt, until end of file or `exit`.
    private static int Piped(SimShell shell, TextReader input, TextWriter output, TextWriter error)
    {
        int status = 0;
        while (!shell.ExitRequested && input.ReadLine() is { } line)
        {
            status = shell.Execute(line, output, error);
        }

        return status;
    }

    private static int Interactive(SimShell shell, TextWriter output, TextWriter error)
    {
        IAnsiConsole console = CliConsole.Create();
        output.WriteLine($"vfio-sim shell on {shell.Sim.Profile.Release} ({shell.Sim.Profile.Name}), as {shell.Process}: type help for the commands, exit or Ctrl-D to leave.");
        if (!LineEditor.IsSupported(console))
        {
            return PromptedPlain(shell, output, error);
        }

        var editor = new LineEditor(console, null, null)
        {
            Prompt = new LineEditorPrompt(Prompt.TrimEnd(), ">"), // the editor puts one space after it
            Completion = new Completion(shell),
        };
        int status = 0;
        while (!shell.ExitRequested)
        {
            string? line = editor.ReadLine(CancellationToken.None).GetAwaiter().GetResult();
            if (line is null)
            {
                break;
            }

            if (!string.IsNullOrWhiteSpace(line))
            {
                editor.History.Add(line);
            }

            status = shell.Execute(line, output, error);
        }

        return status;
    }

    // A terminal the line editor cannot drive (no ANSI): a plain prompt.
    private static int PromptedPlain(SimShell shell, TextWriter output, TextWriter error)
    {
        int status = 0;
        while (!shell.ExitRequested)
        {
            output.Write(Prompt);
            output.Flush();
            if (Console.ReadLine() is not { } line)
            {
                break;
            }

            status = shell.Execute(line, output, error);
        }

        return status;
    }

    /// <summary>RadLine's completion: the word at the cursor completed by the shell.</summary>
    private sealed class Completion(SimShell shell) : ITextCompletion
    {
        public IEnumerable<string> GetCompletions(string prefix, string word, string suffix)
            => shell.Complete(prefix + word, prefix.Length + word.Length);
    }
}
