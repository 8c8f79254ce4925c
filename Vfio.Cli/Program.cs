// The vfio-sim command: demo (the vfio.rst flow), scenario (the scenario catalogue) and race
// (the race lab: run, explore, replay, shrink and merge race explorations), lab, shell,
// graph and bench (measured sweeps: bench map).
// A command line that does not parse — an unknown subcommand or option, a bad value — is a
// usage error: one plain line on stderr and exit code 2, never a stack of help text.

using System.CommandLine;

namespace Vfio.Cli;

internal static class Program
{
    private static int Main(string[] args) => Run(args, Console.Out, Console.Error);

    /// <summary>Parses and runs <paramref name="args"/>; parse errors go to <paramref name="error"/> as one line, exit 2.</summary>
    internal static int Run(string[] args, TextWriter output, TextWriter error) => Run(args, output, error, race: null);

    /// <summary>As <see cref="Run(string[], TextWriter, TextWriter)"/>, with the race command on <paramref name="race"/> (null: the terminal).</summary>
    internal static int Run(string[] args, TextWriter output, TextWriter error, RaceCli? race)
    {
        var root = new RootCommand("vfio-sim: an in-process simulator of the Linux VFIO subsystem");
        root.Subcommands.Add(DemoCommand.Create());
        root.Subcommands.Add(ScenarioCommand.Create());
        root.Subcommands.Add(RaceCommand.Create(race ?? RaceCli.Terminal()));
        root.Subcommands.Add(LabCommand.Create());
        root.Subcommands.Add(ShellCommand.Create());
        root.Subcommands.Add(GraphCommand.Create());
        root.Subcommands.Add(BenchCommand.Create());
        ParseResult parsed = root.Parse(args);
        if (parsed.Errors.Count > 0)
        {
            error.WriteLine($"vfio-sim: {parsed.Errors[0].Message} (see vfio-sim --help)");
            return 2;
        }

        return parsed.Invoke(new InvocationConfiguration { Output = output, Error = error });
    }
}
