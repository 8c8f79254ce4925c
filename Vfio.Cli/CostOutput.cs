// `--model PROFILE` on `demo` and `scenario run`: run with the cost model and print the
// modelled time and the operation counts of the run (boot excluded) after it.

using System.CommandLine;
using Spectre.Console;
using Vfio.Kernel;

namespace Vfio.Cli;

internal static class CostOutput
{
    /// <summary><c>--model</c>: a cost profile by name; an unknown one is a parse error (exit 2).</summary>
    public static Option<CostProfile?> Option() => new("--model")
    {
        Description = $"Charge modelled operations at the calibrated costs of this profile ({string.Join(", ", CostProfile.Presets.Select(p => p.Name))}) and print the modelled time and the counts after the run",
        CustomParser = r =>
        {
            string text = r.Tokens.Count > 0 ? r.Tokens[0].Value : "";
            if (CostProfile.Find(text) is { } p)
            {
                return p;
            }

            r.AddError($"no cost profile is called '{text}': the presets are {string.Join(", ", CostProfile.Presets.Select(p => p.Name))}");
            return null;
        },
    };

    /// <summary>A heading, then the counters as plain text (no markup, no wrapping when redirected).</summary>
    public static void Print(IAnsiConsole console, CostCounters cost, CostProfile profile)
    {
        console.WriteLine();
        console.MarkupLine($"[bold]cost model[/] {Markup.Escape(profile.Name)}: what the run did and its modelled time (not wall time)");
        foreach (string line in cost.Format(profile).Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            console.Profile.Out.Writer.WriteLine(line);
        }
    }
}
