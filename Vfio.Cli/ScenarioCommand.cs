// `vfio-sim scenario`: the scenario catalogue from the command line.
//   list [--json]                  the scenarios, with their kind and description
//   run NAME [options]             one run: steps as they happen, the outcome, the trace file,
//                                  the processes' syscalls (--strace)
//   replay NAME FILE.json          follow a recorded run's schedule and compare the traces
// Exit codes: 0 passed (replay: reproduced byte for byte), 1 failed (replay: diverged or a
// different trace), 2 usage (unknown scenario, unreadable file, a machine that cannot run it).

using System.CommandLine;
using System.Text.Json;
using Spectre.Console;
using Vfio.Kernel;
using Vfio.Platform.Machine;
using Vfio.Sim.Scenarios;

namespace Vfio.Cli;

internal static class ScenarioCommand
{
    public static Command Create()
    {
        var command = new Command("scenario", "The scenario catalogue: list the scenarios, run one with a seed, replay a recorded run");
        command.Subcommands.Add(List());
        command.Subcommands.Add(RunCommand());
        command.Subcommands.Add(ReplayCommand());
        return command;
    }

    private static Command List()
    {
        var json = new Option<bool>("--json") { Description = "Print the catalogue as JSON (name, kind, description)" };
        var list = new Command("list", "List the scenarios") { json };
        list.SetAction(r => ListScenarios(CliConsole.Create(), r.GetValue(json), Console.Out));
        return list;
    }

    internal static int ListScenarios(IAnsiConsole console, bool json, TextWriter jsonOut)
    {
        IReadOnlyList<Scenario> all = ScenarioCatalog.Default.All;
        if (json)
        {
            jsonOut.Write(JsonSerializer.Serialize(
                all.Select(s => new Dictionary<string, string> { ["name"] = s.Name, ["kind"] = s.Kind.ToString().ToLowerInvariant(), ["description"] = s.Description }),
                new JsonSerializerOptions { WriteIndented = true }));
            jsonOut.WriteLine();
            return 0;
        }

        var table = new Table().Border(TableBorder.Rounded).AddColumn("scenario").AddColumn("kind").AddColumn("what it does");
        foreach (Scenario s in all)
        {
            table.AddRow(Markup.Escape(s.Name), s.Kind.ToString().ToLowerInvariant(), Markup.Escape(s.Description));
        }

        console.Write(table);
        return 0;
    }

    private static Command RunCommand()
    {
        var name = new Argument<string>("name") { Description = "The scenario (see `vfio-sim scenario list`)" };
        var seed = new Option<ulong>("--seed") { Description = "The seed of every random choice", DefaultValueFactory = _ => 1 };
        Option<StrategySpec> strategy = CliConsole.StrategyOption(
            StrategySpec.Random,
            "The controlled scheduler's strategy: random, pct[:DEPTH[:STEPS]] or round-robin[:QUANTUM]");
        var real = new Option<bool>("--real-threads") { Description = "Run with real threads instead of the controlled scheduler (no replayable schedule)" };
        Option<KernelProfile> profile = CliConsole.ProfileOption();
        Option<string?> machine = CliConsole.MachineOption();
        var trace = new Option<string?>("--trace") { Description = "Write the run's trace (JSON) to this file; a controlled run's trace replays with `scenario replay`" };
        Option<bool> strace = StraceOutput.Option();
        Option<bool> straceReasons = StraceOutput.ReasonsOption();
        Option<CostProfile?> model = CostOutput.Option();
        var run = new Command("run", "Run one scenario and print its steps and outcome") { name, seed, strategy, real, profile, machine, trace, strace, straceReasons, model };
        run.SetAction(r => RunScenario(CliConsole.Create(), Console.Error, r.GetValue(name)!, new ScenarioOptions
        {
            Seed = r.GetValue(seed),
            Strategy = r.GetValue(strategy)!,
            Mode = r.GetValue(real) ? SchedulerMode.Real : SchedulerMode.Controlled,
            Profile = r.GetValue(profile)!,
            Strace = r.GetValue(strace) || r.GetValue(straceReasons),
            CostModel = r.GetValue(model),
        }, r.GetValue(machine), r.GetValue(trace), r.GetValue(straceReasons)));
        return run;
    }

    internal static int RunScenario(IAnsiConsole console, TextWriter error, string name, ScenarioOptions options, string? machineFile, string? traceFile, bool straceReasons = false)
    {
        if (!TryFind(error, name, out Scenario? scenario) || !CliConsole.TryLoadMachine(error, machineFile, ref options))
        {
            return 2;
        }

        ScenarioResult result;
        try
        {
            result = scenario.Run(options with { Observer = new ScenarioConsoleObserver(console) });
        }
        catch (MachineDescriptionException e)
        {
            return CliConsole.Usage(error, $"cannot build the machine {machineFile}: {e.Message}");
        }

        if (result.Outcome == ScenarioOutcome.Unmet)
        {
            return CliConsole.Usage(error, $"this machine cannot run {name}: {result.UnmetReason}");
        }

        if (traceFile is not null)
        {
            File.WriteAllText(traceFile, result.Trace!.ToJson());
        }

        if (options.Strace)
        {
            StraceOutput.Print(console, result.Sim.Strace, straceReasons);
        }

        if (options.CostModel is { } costProfile)
        {
            CostOutput.Print(console, result.Cost, costProfile);
        }

        console.MarkupLine(result.Passed
            ? $"[green]{Markup.Escape(name)} passed[/] (seed {options.Seed}, {Markup.Escape(options.Profile.Name)}, {result.Run!.Steps} scheduling steps)"
            : $"[red]{Markup.Escape(result.Describe().TrimEnd())}[/]");
        return result.Passed ? 0 : 1;
    }

    private static Command ReplayCommand()
    {
        var name = new Argument<string>("name") { Description = "The scenario the trace was recorded from" };
        var file = new Argument<string>("trace") { Description = "A trace file written by `scenario run --trace`" };
        Option<string?> machine = CliConsole.MachineOption();
        var replay = new Command("replay", "Follow a recorded run's schedule and check the new trace is the same, byte for byte") { name, file, machine };
        replay.SetAction(r => ReplayScenario(CliConsole.Create(), Console.Error, r.GetValue(name)!, r.GetValue(file)!, r.GetValue(machine)));
        return replay;
    }

    internal static int ReplayScenario(IAnsiConsole console, TextWriter error, string name, string traceFile, string? machineFile)
    {
        var options = new ScenarioOptions();
        if (!TryFind(error, name, out Scenario? scenario) || !CliConsole.TryLoadMachine(error, machineFile, ref options))
        {
            return 2;
        }

        string recorded;
        RunTrace trace;
        try
        {
            recorded = File.ReadAllText(traceFile);
            trace = RunTrace.Parse(recorded);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or JsonException or ArgumentException)
        {
            return CliConsole.Usage(error, $"cannot read the trace {traceFile}: {e.Message}");
        }

        ScenarioResult result;
        try
        {
            result = scenario.Replay(trace, options);
        }
        catch (Exception e) when (e is ArgumentException or MachineDescriptionException)
        {
            return CliConsole.Usage(error, $"cannot replay {traceFile}: {e.Message}");
        }

        string again = result.Trace?.ToJson() ?? "";
        bool same = string.Equals(again, recorded, StringComparison.Ordinal);
        console.MarkupLine(same
            ? $"[green]replayed {Markup.Escape(name)}: {result.Run!.Outcome}, {result.Run.Steps} steps, the same trace byte for byte[/]"
            : $"[red]the replay of {Markup.Escape(name)} differs from {Markup.Escape(traceFile)}: {result.Run?.Outcome} (recorded {trace.Outcome})[/]\n{Markup.Escape(result.Run?.Report ?? "")}");
        return same ? 0 : 1;
    }

    private static bool TryFind(TextWriter error, string name, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out Scenario? scenario)
    {
        if (ScenarioCatalog.Default.TryFind(name, out scenario))
        {
            return true;
        }

        CliConsole.Usage(error, $"no scenario is called {name}: the catalogue has {string.Join(", ", ScenarioCatalog.Default.All.Select(s => s.Name))}");
        return false;
    }
}
