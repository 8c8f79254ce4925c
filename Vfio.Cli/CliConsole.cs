// The console the commands write to, and the options they share. NO_COLOR (https://no-color.org)
// turns off every ANSI attribute, bold included, not only colour: Spectre.Console alone
// drops colours but keeps bold, so with NO_COLOR set the console is made without ANSI.

using System.CommandLine;
using Spectre.Console;
using Vfio.Platform.Machine;
using Vfio.Sim.Scenarios;
using Vfio.Kernel;

namespace Vfio.Cli;

internal static class CliConsole
{
    /// <summary>
    /// The terminal console, honouring NO_COLOR. When the output is not a terminal (a pipe,
    /// a file) it is plain text and lines are not wrapped, so what a script reads is one line
    /// per line written.
    /// </summary>
    public static IAnsiConsole Create()
        => Create(null, !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("NO_COLOR")), Console.IsOutputRedirected ? AnsiSupport.No : AnsiSupport.Detect);

    /// <summary>A console on <paramref name="output"/> (the terminal when null); <paramref name="noColor"/> removes every ANSI attribute.</summary>
    internal static IAnsiConsole Create(TextWriter? output, bool noColor, AnsiSupport ansi)
    {
        IAnsiConsole console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Ansi = noColor ? AnsiSupport.No : ansi,
            ColorSystem = noColor ? ColorSystemSupport.NoColors : ColorSystemSupport.Detect,
            Out = output is null ? null : new AnsiConsoleOutput(output),
        });
        if (output is not null || Console.IsOutputRedirected)
        {
            console.Profile.Width = UnwrappedWidth;
        }

        return console;
    }

    // Wide enough that no line the commands print is wrapped.
    private const int UnwrappedWidth = 4096;

    /// <summary>
    /// A usage error found after parsing (a file that cannot be read, a machine that cannot
    /// run what was asked): one plain line on <paramref name="error"/>, as a parse error is,
    /// and exit code 2.
    /// </summary>
    public static int Usage(TextWriter error, string message)
    {
        error.WriteLine($"vfio-sim: {message}");
        return 2;
    }

    /// <summary><c>--profile</c>: a kernel profile by name; an unknown name is a parse error (exit 2).</summary>
    public static Option<KernelProfile> ProfileOption() => new("--profile")
    {
        Description = $"Kernel profile to run as: {string.Join(" or ", KernelProfile.Presets.Select(p => p.Name))} (default {KernelProfile.Linux6_12.Name})",
        DefaultValueFactory = _ => KernelProfile.Linux6_12,
        CustomParser = r =>
        {
            string text = r.Tokens.Count > 0 ? r.Tokens[0].Value : "";
            if (KernelProfile.TryParse(text, out KernelProfile? p))
            {
                return p;
            }

            r.AddError(KernelProfile.UnknownMessage(text));
            return null;
        },
    };

    /// <summary><c>--strategy</c>: a controlled-scheduler strategy (<c>random</c>, <c>pct[:D[:K]]</c>, <c>rr[:Q]</c>); a bad one is a parse error (exit 2).</summary>
    public static Option<StrategySpec> StrategyOption(StrategySpec defaultStrategy, string description) => new("--strategy")
    {
        Description = description,
        DefaultValueFactory = _ => defaultStrategy,
        CustomParser = r =>
        {
            try
            {
                return StrategySpec.Parse(r.Tokens[0].Value);
            }
            catch (FormatException e)
            {
                r.AddError(e.Message);
                return null;
            }
        },
    };

    /// <summary><c>--machine</c>: a machine description file.</summary>
    public static Option<string?> MachineOption() => new("--machine") { Description = "A machine description (JSON) to run on instead of the embedded default machine" };

    /// <summary>Puts the machine description in <paramref name="file"/> (when given) into <paramref name="options"/>; false after a one-line usage error when it cannot be read.</summary>
    internal static bool TryLoadMachine(TextWriter error, string? file, ref ScenarioOptions options)
    {
        if (file is null)
        {
            return true;
        }

        try
        {
            options = options with { Machine = MachineDescriptionReader.Load(file) };
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or MachineDescriptionException)
        {
            CliConsole.Usage(error, $"cannot load the machine description {file}: {e.Message}");
            return false;
        }
    }

    /// <summary>
    /// Loads <paramref name="file"/> (when given) into <paramref name="options"/> and boots
    /// <paramref name="scenario"/> on it; false, with the reason on <paramref name="error"/>,
    /// when the description cannot be read or the machine cannot be built from it.
    /// </summary>
    internal static bool TryBoot(TextWriter error, Scenario scenario, string? file, ref ScenarioOptions options, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out Vfio.Sim.VfioSim? sim)
    {
        sim = null;
        if (!TryLoadMachine(error, file, ref options))
        {
            return false;
        }

        try
        {
            sim = scenario.Boot(options);
            return true;
        }
        catch (Exception e) when (e is MachineDescriptionException or ArgumentException)
        {
            CliConsole.Usage(error, $"cannot load the machine description {file}: {e.Message}");
            return false;
        }
    }
}
