// `vfio-sim graph`: the object graph (processes, fds, files, vfio groups, containers,
// devices, IOMMU groups, domains, DMA mappings, PCI functions and mdevs, with their
// reference counts and owners) at a point of a scenario, as a text tree, DOT or SVG.
//   graph                                  vfio-rst-demo after step 15: the edu device open,
//                                          1 MiB mapped for DMA, an eventfd on its MSI
//   graph --scenario NAME [--step N]       NAME after step N (default: its last step, or the
//                                          end of the run for a scenario without steps;
//                                          0: the booted machine before the first step)
//   --format tree|dot|svg, -o FILE, --seed, --profile, --machine, --fix on|off, --reachable
// Exit codes: 0 drawn; 1 the scenario stopped (a step misbehaved) before step N;
// 2 usage (unknown scenario, a step it does not have, a machine that cannot run it).

using System.CommandLine;
using Vfio.Kernel;
using Vfio.Sim;
using Vfio.Sim.Graphs;
using Vfio.Sim.Scenarios;

namespace Vfio.Cli;

/// <summary>What <c>vfio-sim graph</c> draws and how.</summary>
internal sealed record GraphOptions
{
    /// <summary>The scenario; null for the default picture (vfio-rst-demo after <see cref="GraphCommand.DefaultStep"/>).</summary>
    public string? Scenario { get; init; }

    /// <summary>The step after which to draw; null: the default.</summary>
    public int? Step { get; init; }

    /// <summary>Only what a process reaches (<see cref="ObjectGraph.ReachableFromProcesses"/>).</summary>
    public bool Reachable { get; init; }

    /// <summary>tree, dot or svg.</summary>
    public string Format { get; init; } = "tree";

    /// <summary>Where to write it; null for standard output.</summary>
    public string? OutputFile { get; init; }

    public ulong Seed { get; init; } = 1;

    public KernelProfile Profile { get; init; } = KernelProfile.Linux6_12;

    public string? MachineFile { get; init; }

    public bool? Fix { get; init; }
}

internal static class GraphCommand
{
    /// <summary>The scenario drawn without --scenario.</summary>
    public const string DefaultScenario = "vfio-rst-demo";

    /// <summary>
    /// The step of vfio-rst-demo drawn without --scenario and --step: "VFIO_DEVICE_SET_IRQS:
    /// an eventfd for edu's MSI", when every kind of object of a vfio.rst session is alive.
    /// </summary>
    public const int DefaultStep = 15;

    private static readonly string[] s_formats = ["tree", "dot", "svg"];

    public static Command Create()
    {
        var scenario = new Option<string?>("--scenario") { Description = $"The scenario to run (see `vfio-sim scenario list`); default {DefaultScenario} after step {DefaultStep}" };
        var step = new Option<int?>("--step") { Description = "Draw after this step (0: the booted machine before the first step); default the scenario's last step" };
        step.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<int?>() is < 0)
            {
                r.AddError("--step takes a step number, 0 or more");
            }
        });
        var format = new Option<string>("--format") { Description = "tree (default), dot (Graphviz) or svg (laid out in-process)", DefaultValueFactory = _ => "tree" };
        format.Validators.Add(r =>
        {
            string? f = r.GetValueOrDefault<string>();
            if (Array.IndexOf(s_formats, f) < 0)
            {
                r.AddError($"--format takes tree, dot or svg, not '{f}'");
            }
        });
        var output = new Option<string?>("--output", "-o") { Description = "Write the picture to this file instead of standard output" };
        var seed = new Option<ulong>("--seed") { Description = "The seed of every random choice", DefaultValueFactory = _ => 1 };
        Option<KernelProfile> profile = CliConsole.ProfileOption();
        Option<string?> machine = CliConsole.MachineOption();
        var reachable = new Option<bool>("--reachable") { Description = "Draw only what a process reaches (leaves out idle IOMMU groups and devices on their host drivers)" };
        var fix = new Option<string?>("--fix") { Description = "on: today's fixed kernel; off: the design or profile that had the bug (race scenarios with a fix switch)" };
        fix.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<string?>() is { } text && ParseFix(text) is null)
            {
                r.AddError($"--fix takes on or off, not '{text}'");
            }
        });
        var command = new Command("graph", "Draw the object graph (processes, fds, files, vfio groups, containers, devices, IOMMU groups, domains, DMA mappings, with their reference counts) at a step of a scenario, as a tree, DOT or SVG")
        {
            scenario, step, format, output, seed, profile, machine, fix, reachable,
        };
        command.SetAction(r => Run(r.InvocationConfiguration.Output, r.InvocationConfiguration.Error, new GraphOptions
        {
            Scenario = r.GetValue(scenario),
            Step = r.GetValue(step),
            Format = r.GetValue(format) ?? "tree",
            OutputFile = r.GetValue(output),
            Seed = r.GetValue(seed),
            Profile = r.GetValue(profile)!,
            MachineFile = r.GetValue(machine),
            Fix = ParseFix(r.GetValue(fix)),
            Reachable = r.GetValue(reachable),
        }));
        return command;
    }

    private static bool? ParseFix(string? text) => text?.ToLowerInvariant() switch
    {
        "on" => true,
        "off" => false,
        _ => null,
    };

    internal static int Run(TextWriter output, TextWriter error, GraphOptions options)
    {
        string name = options.Scenario ?? DefaultScenario;
        int? stepNumber = options.Step ?? (options.Scenario is null ? DefaultStep : null);
        if (!ScenarioCatalog.Default.TryFind(name, out Scenario? scenario))
        {
            return CliConsole.Usage(error, $"no scenario is called {name}: the catalogue has {string.Join(", ", ScenarioCatalog.Default.All.Select(s => s.Name))}");
        }

        if (options.Fix is not null && scenario.Race?.FixSwitch is null)
        {
            return CliConsole.Usage(error, $"{name} has no fix switch: --fix is for race scenarios that have one (see `vfio-sim race list`)");
        }

        var scenarioOptions = new ScenarioOptions { Seed = options.Seed, Profile = options.Profile, Fix = options.Fix, Trace = false };
        if (!CliConsole.TryBoot(error, scenario, options.MachineFile, ref scenarioOptions, out VfioSim? sim))
        {
            return 2;
        }

        var observer = new GraphObserver(sim, stepNumber);
        ScenarioResult result = scenario.Run(sim, scenarioOptions with { Observer = observer });
        if (result.UnmetReason is { } unmet)
        {
            return CliConsole.Usage(error, $"this machine cannot run {name}: {unmet}");
        }

        // A scenario without numbered steps (most races) is drawn when its run is over.
        ObjectGraph? graph = observer.Graph;
        if (graph is null && stepNumber is null && observer.StepsSeen == 0 && result.Run is not null)
        {
            graph = ObjectGraph.Capture(sim);
        }

        if (graph is null)
        {
            if (result.FailedStep is { } failed)
            {
                error.WriteLine($"vfio-sim: {name} stopped at step {failed.Number}. {failed.Title} before step {stepNumber}: expected {failed.Expected}; found {failed.Found}");
                return 1;
            }

            return CliConsole.Usage(error, observer.StepsSeen == 0
                ? $"{name} ran no step to draw after"
                : $"{name} has {observer.StepsSeen} steps, not {stepNumber} (--step 0 draws the booted machine before the first)");
        }

        if (options.Reachable)
        {
            graph = graph.ReachableFromProcesses();
        }

        string where = observer.Step is { } s ? $"after step {s.Number}. {s.Title}" : observer.Graph is null ? "after the run (it has no numbered steps)" : "before the first step";
        string header = $"{name} {where} (seed {options.Seed}, {options.Profile.Name}): {graph.Nodes.Count} objects, {graph.Edges.Count} references";
        string text = options.Format switch
        {
            "dot" => "// " + header + "\n" + graph.ToDot(),
            "svg" => graph.ToSvg(),
            _ => "# " + header + "\n" + graph.ToTree(),
        };
        if (options.OutputFile is { } file)
        {
            try
            {
                File.WriteAllText(file, text);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                return CliConsole.Usage(error, $"cannot write {file}: {e.Message}");
            }

            output.WriteLine($"wrote {file}: {header}");
        }
        else
        {
            output.Write(text);
        }

        return 0;
    }
}
