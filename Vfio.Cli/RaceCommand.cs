// `vfio-sim race`: the race lab from the command line.
//   list [--json]                      the race scenarios: item, kernels, fix, fix switch, detectors
//   run NAME [options]                 one schedule; on a bug, its replay file
//   explore NAME [options]             many schedules (seeded or bounded-exhaustive), on all
//                                      cores or one shard; progress, summary, replay files
//   replay FILE.json [--perfetto F]    follow a replay file's schedule; did it show the same?
//   shrink FILE.json [--out FILE]      a smaller schedule that still fails the same way
//   merge DIR|FILE... [--out DIR]      the summaries of an exploration's shards, as one
// Exit codes: 0 nothing found (replay: the recorded outcome reproduced), 1 a bug found (its
// replay file written, and where is said), 2 usage (unknown scenario, bad --design or
// --shard, --fix on a scenario without a fix switch, an unreadable file).

using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Spectre.Console;
using Vfio.Kernel;
using Vfio.Sim.Races;
using Vfio.Sim.Scenarios;

namespace Vfio.Cli;

/// <summary>Where the race command reads scenarios from and writes to.</summary>
/// <param name="Catalog">The scenarios (the built-in catalogue; tests add their own).</param>
/// <param name="Console">The console for people (tables, progress, outcomes).</param>
/// <param name="Out">Where machine-readable output goes (<c>list --json</c>).</param>
/// <param name="Error">Where usage errors go.</param>
/// <param name="Interactive">Whether progress may be drawn as a bar (a terminal with ANSI).</param>
internal sealed record RaceCli(ScenarioCatalog Catalog, IAnsiConsole Console, TextWriter Out, TextWriter Error, bool Interactive)
{
    /// <summary>The terminal: a bar when it is interactive, plain lines when redirected or NO_COLOR is set.</summary>
    public static RaceCli Terminal()
    {
        IAnsiConsole console = CliConsole.Create();
        return new RaceCli(ScenarioCatalog.Default, console, System.Console.Out, System.Console.Error,
            console.Profile.Capabilities.Interactive && console.Profile.Capabilities.Ansi && !System.Console.IsOutputRedirected);
    }
}

/// <summary>A shard of an exploration: <c>K/N</c>, K from 0.</summary>
internal readonly record struct Shard(int Index, int Count)
{
    public static bool TryParse(string text, out Shard shard)
    {
        shard = default;
        string[] parts = text.Split('/');
        if (parts.Length != 2
            || !int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out int k)
            || !int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out int n)
            || n < 1 || k >= n)
        {
            return false;
        }

        shard = new Shard(k, n);
        return true;
    }

    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Index}/{Count}");
}

/// <summary>What `race run` and `race explore` share: the scenario and how its kernel is set up.</summary>
internal sealed record RaceTarget
{
    public required string Name { get; init; }

    public bool? Fix { get; init; }

    public IReadOnlyList<string> Designs { get; init; } = [];

    public KernelProfile Profile { get; init; } = KernelProfile.Linux6_12;

    public ulong Seed { get; init; } = 1;

    public StrategySpec Strategy { get; init; } = StrategySpec.Pct();
}

/// <summary>What `race explore` does beyond the target.</summary>
internal sealed record RaceExploreArgs
{
    public int? Schedules { get; init; }

    public bool Exhaustive { get; init; }

    public int? Preemptions { get; init; }

    public int Jobs { get; init; } = 1;

    public Shard? Shard { get; init; }

    public string? OutDir { get; init; }

    public bool Shrink { get; init; } = true;

    public bool KeepGoing { get; init; }
}

internal static class RaceCommand
{
    public static Command Create(RaceCli cli)
    {
        var command = new Command("race", "The race lab: list the race scenarios, run or explore one with its fix on or off, replay and shrink what it finds");
        command.Subcommands.Add(ListCommand(cli));
        command.Subcommands.Add(RunCommand(cli));
        command.Subcommands.Add(ExploreCommand(cli));
        command.Subcommands.Add(ReplayCommand(cli));
        command.Subcommands.Add(ShrinkCommand(cli));
        command.Subcommands.Add(MergeCommand(cli));
        return command;
    }

    // ---- Options the subcommands share.

    private static Argument<string> NameArgument() => new("name") { Description = "The race scenario (see `vfio-sim race list`)" };

    private static Option<ulong> SeedOption(string description) => new("--seed") { Description = description, DefaultValueFactory = _ => 1 };

    private static Option<StrategySpec> StrategyOption() => CliConsole.StrategyOption(
        StrategySpec.Pct(),
        "The controlled scheduler's strategy: random, pct[:DEPTH[:STEPS]] (default pct:3) or rr[:QUANTUM]");

    // --fix on|off: a string option (a bool? one would be a flag that takes no value).
    // The scenario and how to run it, as run and explore read them from their command lines.
    private static RaceTarget TargetOf(
        ParseResult r, Argument<string> name, Option<ulong> seed, Option<StrategySpec> strategy, Option<string?> fix, Option<string[]> design, Option<KernelProfile> profile)
        => new()
        {
            Name = r.GetValue(name)!,
            Seed = r.GetValue(seed),
            Strategy = r.GetValue(strategy)!,
            Fix = ParseFix(r.GetValue(fix)),
            Designs = r.GetValue(design) ?? [],
            Profile = r.GetValue(profile)!,
        };

    private static Option<string?> FixOption()
    {
        var fix = new Option<string?>("--fix")
        {
            Description = "on: today's fixed kernel; off: the design or profile that had the bug (only scenarios with a fix switch)",
        };
        fix.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<string?>() is { } text && ParseFix(text) is null)
            {
                r.AddError($"--fix takes on or off, not '{text}'");
            }
        });
        return fix;
    }

    private static bool? ParseFix(string? text) => text?.ToLowerInvariant() switch
    {
        "on" => true,
        "off" => false,
        _ => null,
    };

    private static Option<string[]> DesignOption()
    {
        var design = new Option<string[]>("--design")
        {
            Description = "A design variant KEY=VALUE (Unbind=SilentBlock, Mdev.SynchronizeWithParentRemoval=false); repeat for more",
            DefaultValueFactory = _ => [],
        };
        design.Validators.Add(r =>
        {
            foreach (string setting in r.GetValueOrDefault<string[]>() ?? [])
            {
                if (DesignSettings.Validate(setting) is { } why)
                {
                    r.AddError(why);
                    return;
                }
            }
        });
        return design;
    }

    // ---- list

    private static Command ListCommand(RaceCli cli)
    {
        var json = new Option<bool>("--json") { Description = "Print the race scenarios as JSON (name, description, item, kernels, fixCommits, fixSwitch, detectors)" };
        var list = new Command("list", "List the race scenarios") { json };
        list.SetAction(r => List(cli, r.GetValue(json)));
        return list;
    }

    internal static int List(RaceCli cli, bool json)
    {
        List<Scenario> races = [.. cli.Catalog.All.Where(s => s.Kind == ScenarioKind.Race)];
        if (json)
        {
            var buffer = new System.Buffers.ArrayBufferWriter<byte>();
            using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
            {
                w.WriteStartArray();
                foreach (Scenario s in races)
                {
                    RaceInfo? info = s.Race;
                    w.WriteStartObject();
                    w.WriteString("name", s.Name);
                    w.WriteString("description", s.Description);
                    w.WriteString("item", info?.Item);
                    w.WriteString("kernels", info?.Kernels);
                    w.WriteString("fixCommits", info?.FixCommits);
                    w.WriteBoolean("fixSwitch", info?.FixSwitch is not null);
                    w.WriteStartArray("detectors");
                    foreach (RaceDetector d in info?.Detectors ?? [])
                    {
                        w.WriteStringValue(d.ToString());
                    }

                    w.WriteEndArray();
                    w.WriteEndObject();
                }

                w.WriteEndArray();
            }

            cli.Out.WriteLine(System.Text.Encoding.UTF8.GetString(buffer.WrittenSpan));
            return 0;
        }

        var table = new Table().Border(TableBorder.Rounded)
            .AddColumn("race").AddColumn("item").AddColumn("kernels").AddColumn("--fix off switches to").AddColumn("detectors");
        foreach (Scenario s in races)
        {
            RaceInfo? info = s.Race;
            table.AddRow(
                Markup.Escape(s.Name),
                Markup.Escape(info?.Item ?? "-"),
                Markup.Escape(info?.Kernels ?? "-"),
                Markup.Escape(info?.FixSwitch ?? "(no fix switch)"),
                Markup.Escape(info is null ? "-" : string.Join(", ", info.Detectors)));
        }

        cli.Console.Write(table);
        cli.Console.MarkupLine("The fix commits: [bold]vfio-sim race list --json[/], or docs/races.md.");
        return 0;
    }

    // ---- run

    private static Command RunCommand(RaceCli cli)
    {
        Argument<string> name = NameArgument();
        Option<ulong> seed = SeedOption("The seed of every random choice (default 1)");
        Option<StrategySpec> strategy = StrategyOption();
        Option<string?> fix = FixOption();
        Option<string[]> design = DesignOption();
        Option<KernelProfile> profile = CliConsole.ProfileOption();
        var trace = new Option<string?>("--trace") { Description = "Write the run's trace (JSON) to this file; a bug's replay file goes beside it" };
        var perfetto = new Option<string?>("--perfetto") { Description = "Write the run's timeline for ui.perfetto.dev to this file" };
        var run = new Command("run", "Run one schedule of a race scenario and say what its detector found") { name, seed, strategy, fix, design, profile, trace, perfetto };
        run.SetAction(r => Run(
            cli,
            TargetOf(r, name, seed, strategy, fix, design, profile),
            r.GetValue(trace),
            r.GetValue(perfetto)));
        return run;
    }

    internal static int Run(RaceCli cli, RaceTarget target, string? traceFile, string? perfettoFile)
    {
        if (Find(cli, target) is not { } scenario)
        {
            return 2;
        }

        ScenarioOptions options = OptionsOf(target) with { Timeline = perfettoFile is not null, Observer = new ScenarioConsoleObserver(cli.Console) };
        ScenarioResult result = scenario.Run(options);
        if (result.Outcome == ScenarioOutcome.Unmet)
        {
            return CliConsole.Usage(cli.Error, $"this machine cannot run {target.Name}: {result.UnmetReason}");
        }

        RaceFinding? finding = RaceFinding.Of(result);
        try
        {
            if (traceFile is not null)
            {
                File.WriteAllText(traceFile, result.Trace!.ToJson());
            }

            if (perfettoFile is not null)
            {
                File.WriteAllText(perfettoFile, result.Trace!.ToPerfetto(finding?.ToString()));
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return CliConsole.Usage(cli.Error, $"cannot write the trace: {e.Message}");
        }

        string how = $"seed {target.Seed}, {target.Strategy}, {result.Run!.Trace.Profile}{FixText(target.Fix)}";
        if (finding is null)
        {
            cli.Console.MarkupLine($"[green]{Markup.Escape(target.Name)}: nothing found[/] ({Markup.Escape(how)}, {result.Run.Steps} scheduling steps)");
            return 0;
        }

        var schedule = new RaceSchedule(target.Name, target.Fix, target.Designs, result.Trace!, finding);
        string dir = traceFile is null ? "." : Path.GetDirectoryName(Path.GetFullPath(traceFile))!;
        string file = Path.Combine(dir, $"{target.Name}-seed{target.Seed.ToString(CultureInfo.InvariantCulture)}.race.json");
        if (!TryWrite(cli, file, schedule.ToJson()))
        {
            return 2;
        }

        cli.Console.MarkupLine($"[red]{Markup.Escape(target.Name)}: {Markup.Escape(finding.Detector.ToString())} found a bug[/] ({Markup.Escape(how)}): {Markup.Escape(finding.Summary)}");
        cli.Console.WriteLine(result.Describe().TrimEnd());
        cli.Console.MarkupLine($"replay file: {Markup.Escape(file)} (vfio-sim race replay {Markup.Escape(file)})");
        return 1;
    }

    // ---- explore

    private static Command ExploreCommand(RaceCli cli)
    {
        Argument<string> name = NameArgument();
        var schedules = new Option<int?>("--schedules") { Description = "Schedules to run, one seed each (default 100); with --exhaustive, a cap" };
        var exhaustive = new Option<bool>("--exhaustive") { Description = "Every schedule with at most --preemptions preemptions, equivalent interleavings once" };
        var preemptions = new Option<int?>("--preemptions") { Description = "With --exhaustive: the preemption bound (default 2)" };
        Option<ulong> seed = SeedOption("The first seed (default 1)");
        Option<StrategySpec> strategy = StrategyOption();
        Option<string?> fix = FixOption();
        Option<string[]> design = DesignOption();
        Option<KernelProfile> profile = CliConsole.ProfileOption();
        var jobs = new Option<int>("--jobs") { Description = "Worker threads, each with its own kernels (default 1; 0: one per core)", DefaultValueFactory = _ => 1 };
        var shard = new Option<Shard?>("--shard")
        {
            Description = "Run shard K of N (K from 0) of the exploration, for a CI matrix; `race merge` joins the shards' outputs",
            CustomParser = r =>
            {
                if (r.Tokens.Count == 0)
                {
                    return null;
                }

                if (Shard.TryParse(r.Tokens[0].Value, out Shard s))
                {
                    return s;
                }

                r.AddError($"--shard takes K/N with 0 <= K < N, not '{r.Tokens[0].Value}'");
                return null;
            },
        };
        var outDir = new Option<string?>("--out") { Description = "Write summary.json and one replay file per bug here (default on a bug: ./race-NAME/)" };
        var noShrink = new Option<bool>("--no-shrink") { Description = "Report bugs' schedules as found, without shrinking them" };
        var keepGoing = new Option<bool>("--keep-going") { Description = "Explore on after the first bug and report every distinct one" };
        var explore = new Command("explore", "Explore a race scenario over many schedules and report what its detectors find")
        {
            name, schedules, exhaustive, preemptions, seed, strategy, fix, design, profile, jobs, shard, outDir, noShrink, keepGoing,
        };
        explore.Validators.Add(r =>
        {
            if (r.GetValue(preemptions) is not null && !r.GetValue(exhaustive))
            {
                r.AddError("--preemptions needs --exhaustive");
            }
            else if (r.GetValue(preemptions) is < 0)
            {
                r.AddError("--preemptions must not be negative");
            }
            else if (r.GetValue(schedules) is < 0)
            {
                r.AddError("--schedules must not be negative");
            }
            else if (r.GetValue(jobs) < 0)
            {
                r.AddError("--jobs must not be negative");
            }
        });
        explore.SetAction(r => Explore(
            cli,
            TargetOf(r, name, seed, strategy, fix, design, profile),
            new RaceExploreArgs
            {
                Schedules = r.GetValue(schedules),
                Exhaustive = r.GetValue(exhaustive),
                Preemptions = r.GetValue(preemptions),
                Jobs = r.GetValue(jobs) == 0 ? Environment.ProcessorCount : r.GetValue(jobs),
                Shard = r.GetValue(shard),
                OutDir = r.GetValue(outDir),
                Shrink = !r.GetValue(noShrink),
                KeepGoing = r.GetValue(keepGoing),
            }));
        return explore;
    }

    internal static int Explore(RaceCli cli, RaceTarget target, RaceExploreArgs args)
    {
        if (Find(cli, target) is not { } scenario)
        {
            return 2;
        }

        var explore = new RaceExploreOptions
        {
            Schedules = args.Schedules ?? (args.Exhaustive ? int.MaxValue : 100),
            FirstSeed = target.Seed,
            Strategy = target.Strategy,
            Exhaustive = args.Exhaustive,
            Preemptions = args.Preemptions ?? 2,
            Jobs = args.Jobs,
            ShardIndex = args.Shard?.Index ?? 0,
            ShardCount = args.Shard?.Count ?? 1,
            StopAtFirstBug = !args.KeepGoing,
            Shrink = args.Shrink,
        };
        string what = args.Exhaustive
            ? $"exhaustive, at most {explore.Preemptions} preemptions{(args.Schedules is { } cap ? $", at most {cap} schedules" : "")}"
            : $"{explore.Schedules} schedules from seed {target.Seed}, {target.Strategy}";
        string shardText = args.Shard is { } sh ? $", shard {sh}" : "";
        cli.Console.MarkupLine($"exploring {Markup.Escape(target.Name)} ({Markup.Escape(what)}{Markup.Escape(shardText)}, {explore.Jobs} job(s), {Markup.Escape(target.Profile.Name)}{Markup.Escape(FixText(target.Fix))})");

        RaceExploration result;
        try
        {
            result = cli.Interactive
                ? WithBar(cli, scenario, explore, OptionsOf(target))
                : WithLines(cli, scenario, explore, OptionsOf(target));
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException)
        {
            return CliConsole.Usage(cli.Error, $"cannot explore {target.Name}: {e.Message}");
        }

        cli.Console.MarkupLine(result.Passed ? $"[green]{Markup.Escape(Summary(result))}[/]" : $"[red]{Markup.Escape(Summary(result))}[/]");
        string? dir = args.OutDir ?? (result.Passed ? null : Path.Combine(".", $"race-{target.Name}"));
        if (dir is not null && !WriteExploration(cli, result, dir, args.Shard))
        {
            return 2;
        }

        return result.Passed ? 0 : 1;
    }

    private static RaceExploration WithLines(RaceCli cli, Scenario scenario, RaceExploreOptions explore, ScenarioOptions options)
    {
        var lines = new ProgressLines(cli.Console, scenario.Name);
        return RaceLab.Explore(scenario, explore with { Progress = lines }, options);
    }

    private static RaceExploration WithBar(RaceCli cli, Scenario scenario, RaceExploreOptions explore, ScenarioOptions options)
    {
        RaceExploration? result = null;
        int perShard = explore.Exhaustive || explore.Schedules == int.MaxValue ? 0 : (explore.Schedules + explore.ShardCount - 1) / explore.ShardCount;
        cli.Console.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new SpinnerColumn())
            .Start(ctx =>
            {
                ProgressTask task = ctx.AddTask(Markup.Escape(scenario.Name), maxValue: Math.Max(1, perShard));
                task.IsIndeterminate = perShard == 0;
                long start = LabClock.Timestamp();
                var bar = new Progress(p =>
                {
                    double seconds = LabClock.Since(start).TotalSeconds;
                    task.Value = Math.Min(p.Schedules, Math.Max(1, perShard));
                    task.Description = Markup.Escape(ProgressText(scenario.Name, p, seconds));
                });
                result = RaceLab.Explore(scenario, explore with { Progress = bar }, options);
                task.Value = task.MaxValue;
                task.StopTask();
            });
        return result!;
    }

    private static string ProgressText(string name, SearchProgress p, double seconds)
        => string.Create(CultureInfo.InvariantCulture, $"{name}: {p.Schedules} schedules ({(seconds > 0 ? p.Schedules / seconds : 0):0}/s), {p.DistinctInterleavings} distinct interleavings, {p.Failures} failing");

    private static string Summary(RaceExploration r)
    {
        string text = string.Create(CultureInfo.InvariantCulture,
            $"{r.Scenario}: {r.Schedules} schedules ({r.SchedulesPerSecond:0}/s), {r.DistinctInterleavings} distinct interleavings, {(r.Passed ? "nothing found" : $"{r.Bugs.Count} bug(s) in {r.FailingSchedules} failing schedule(s)")}");
        if (r.Exhausted is { } ex)
        {
            text += ex ? "; the bounded space was exhausted" : "; the bounded space was not exhausted (cap reached or search stopped at a bug)";
        }

        foreach (RaceBug b in r.Bugs)
        {
            text += $"\n  seed {b.Seed.ToString(CultureInfo.InvariantCulture)}: {b.Finding}";
            if (b.Original is { } o)
            {
                text += string.Create(CultureInfo.InvariantCulture, $" (shrunk from {o.Trace.StepCount} to {b.Schedule.Trace.StepCount} steps)");
            }
        }

        return text;
    }

    private static bool WriteExploration(RaceCli cli, RaceExploration r, string dir, Shard? shard)
    {
        try
        {
            Directory.CreateDirectory(dir);
            string summary = Path.Combine(dir, shard is { } s ? $"summary-shard{s.Index}-of-{s.Count}.json" : "summary.json");
            File.WriteAllText(summary, r.ToJson());
            cli.Console.MarkupLine($"summary: {Markup.Escape(summary)}");
            for (int i = 0; i < r.Bugs.Count; i++)
            {
                RaceBug b = r.Bugs[i];
                string file = Path.Combine(dir, BugFileName(r, b, i));
                File.WriteAllText(file, b.Schedule.ToJson());
                cli.Console.MarkupLine($"replay file: {Markup.Escape(file)} (vfio-sim race replay {Markup.Escape(file)})");
            }

            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            CliConsole.Usage(cli.Error, $"cannot write to {dir}: {e.Message}");
            return false;
        }
    }

    // Seeded bugs are named by seed (one bug per seed); exhaustive ones share the seed.
    private static string BugFileName(RaceExploration r, RaceBug b, int index)
        => r.Exhausted is null
            ? string.Create(CultureInfo.InvariantCulture, $"{r.Scenario}-seed{b.Seed}.race.json")
            : string.Create(CultureInfo.InvariantCulture, $"{r.Scenario}-bug{index + 1}.race.json");

    // ---- replay

    private static Command ReplayCommand(RaceCli cli)
    {
        var file = new Argument<string>("file") { Description = "A replay file written by `race run`, `race explore` or `race shrink`" };
        var perfetto = new Option<string?>("--perfetto") { Description = "Write the replayed run's timeline for ui.perfetto.dev to this file" };
        var replay = new Command("replay", "Follow a replay file's schedule and check the run shows what the file recorded") { file, perfetto };
        replay.SetAction(r => Replay(cli, r.GetValue(file)!, r.GetValue(perfetto)));
        return replay;
    }

    internal static int Replay(RaceCli cli, string file, string? perfettoFile = null)
    {
        if (Read(cli, file) is not { } schedule)
        {
            return 2;
        }

        ScenarioResult result;
        try
        {
            result = perfettoFile is null
                ? RaceLab.Replay(schedule, cli.Catalog)
                : cli.Catalog.Get(schedule.Scenario).Run(RaceLab.OptionsOf(schedule) with { Replay = schedule.Trace, Trace = true, Timeline = true });
        }
        catch (ArgumentException e)
        {
            return CliConsole.Usage(cli.Error, $"cannot replay {file}: {e.Message}");
        }

        RaceFinding? found = RaceFinding.Of(result);
        if (perfettoFile is not null && (result.Trace is null || !TryWrite(cli, perfettoFile, result.Trace.ToPerfetto(found?.ToString()))))
        {
            return 2;
        }

        string recorded = schedule.Finding?.ToString() ?? "nothing found";
        if (schedule.IsReproducedBy(result))
        {
            cli.Console.MarkupLine($"[green]reproduced[/] {Markup.Escape(schedule.Scenario)} seed {schedule.Trace.Seed}: {Markup.Escape(recorded)} ({result.Run!.Steps} steps)");
            return 0;
        }

        cli.Console.MarkupLine($"[red]not reproduced[/]: {Markup.Escape(file)} recorded {Markup.Escape(recorded)}; the replay shows {Markup.Escape(found?.ToString() ?? "nothing found")}");
        cli.Console.WriteLine(result.Describe().TrimEnd());
        return 1;
    }

    // ---- shrink

    private static Command ShrinkCommand(RaceCli cli)
    {
        var file = new Argument<string>("file") { Description = "A failing schedule's replay file" };
        var output = new Option<string?>("--out") { Description = "Where to write the shrunk replay file (default FILE with .shrunk before .race.json)" };
        var shrink = new Command("shrink", "Reduce a failing schedule (fewer preemptions, fewer steps) while it still fails the same way") { file, output };
        shrink.SetAction(r => Shrink(cli, r.GetValue(file)!, r.GetValue(output)));
        return shrink;
    }

    internal static int Shrink(RaceCli cli, string file, string? outFile)
    {
        if (Read(cli, file) is not { } schedule)
        {
            return 2;
        }

        if (schedule.Finding is null)
        {
            return CliConsole.Usage(cli.Error, $"{file} records a passing run: only a failing schedule can be shrunk");
        }

        RaceSchedule shrunk;
        try
        {
            shrunk = RaceLab.Shrink(schedule, cli.Catalog);
        }
        catch (ArgumentException e)
        {
            return CliConsole.Usage(cli.Error, $"cannot shrink {file}: {e.Message}");
        }

        string target = outFile ?? ShrunkName(file);
        if (!TryWrite(cli, target, shrunk.ToJson()))
        {
            return 2;
        }

        cli.Console.MarkupLine(ReferenceEquals(shrunk, schedule)
            ? $"could not shrink {Markup.Escape(file)}: {Markup.Escape(shrunk.Finding!.ToString())}"
            : $"shrunk {Markup.Escape(file)} from {schedule.Trace.StepCount} to {shrunk.Trace.StepCount} steps; still {Markup.Escape(shrunk.Finding!.ToString())}");
        cli.Console.MarkupLine($"replay file: {Markup.Escape(target)} (vfio-sim race replay {Markup.Escape(target)})");
        return 1;
    }

    internal static string ShrunkName(string file)
        => file.EndsWith(".race.json", StringComparison.Ordinal) ? file[..^".race.json".Length] + ".shrunk.race.json"
            : file.EndsWith(".json", StringComparison.Ordinal) ? file[..^".json".Length] + ".shrunk.json"
            : file + ".shrunk";

    // ---- merge

    private static Command MergeCommand(RaceCli cli)
    {
        var inputs = new Argument<string[]>("dirs") { Description = "Directories holding the shards' summary files (or the files)", Arity = ArgumentArity.OneOrMore };
        var outDir = new Option<string?>("--out") { Description = "Write the merged summary.json and the bugs' replay files here" };
        var merge = new Command("merge", "Join the outputs of an exploration's shards (`race explore --shard K/N --out DIR`)") { inputs, outDir };
        merge.SetAction(r => Merge(cli, r.GetValue(inputs) ?? [], r.GetValue(outDir)));
        return merge;
    }

    internal static int Merge(RaceCli cli, IReadOnlyList<string> inputs, string? outDir)
    {
        var parts = new List<RaceExploration>();
        foreach (string input in inputs)
        {
            string[] files = Directory.Exists(input)
                ? [.. Directory.GetFiles(input, "summary*.json").Order(StringComparer.Ordinal)]
                : [input];
            if (files.Length == 0)
            {
                return CliConsole.Usage(cli.Error, $"{input} holds no summary*.json");
            }

            foreach (string f in files)
            {
                try
                {
                    parts.Add(RaceExploration.Parse(File.ReadAllText(f)));
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
                {
                    return CliConsole.Usage(cli.Error, $"cannot read the summary {f}: {e.Message}");
                }
            }
        }

        RaceExploration merged;
        try
        {
            merged = RaceExploration.Merge(parts);
        }
        catch (ArgumentException e)
        {
            return CliConsole.Usage(cli.Error, e.Message);
        }

        cli.Console.MarkupLine(merged.Passed ? $"[green]{Markup.Escape(Summary(merged))}[/]" : $"[red]{Markup.Escape(Summary(merged))}[/]");
        if (outDir is not null && !WriteExploration(cli, merged, outDir, shard: null))
        {
            return 2;
        }

        return merged.Passed ? 0 : 1;
    }

    // ---- Helpers.

    private static Scenario? Find(RaceCli cli, RaceTarget target)
    {
        if (!cli.Catalog.TryFind(target.Name, out Scenario? scenario) || scenario.Kind != ScenarioKind.Race)
        {
            CliConsole.Usage(cli.Error, $"no race scenario is called {target.Name}: the catalogue has {string.Join(", ", cli.Catalog.All.Where(s => s.Kind == ScenarioKind.Race).Select(s => s.Name))}");
            return null;
        }

        if (target.Fix is not null && scenario.Race?.FixSwitch is null)
        {
            CliConsole.Usage(cli.Error, $"{target.Name} has no fix switch: run it without --fix");
            return null;
        }

        return scenario;
    }

    private static ScenarioOptions OptionsOf(RaceTarget target) => new()
    {
        Seed = target.Seed,
        Strategy = target.Strategy,
        Profile = target.Profile,
        Fix = target.Fix,
        Designs = target.Designs,
    };

    private static string FixText(bool? fix) => fix is null ? "" : fix.Value ? ", fix on" : ", fix off";

    private static RaceSchedule? Read(RaceCli cli, string file)
    {
        try
        {
            return RaceSchedule.Parse(File.ReadAllText(file));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
        {
            CliConsole.Usage(cli.Error, $"cannot read the replay file {file}: {e.Message}");
            return null;
        }
    }

    private static bool TryWrite(RaceCli cli, string file, string text)
    {
        try
        {
            File.WriteAllText(file, text);
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            CliConsole.Usage(cli.Error, $"cannot write {file}: {e.Message}");
            return false;
        }
    }

    // IProgress that calls back on the reporting thread (System.Progress posts to a context).
    private sealed class Progress(Action<SearchProgress> report) : IProgress<SearchProgress>
    {
        public void Report(SearchProgress value) => report(value);
    }

    // Plain progress lines, at most one a second: for redirected output and NO_COLOR.
    private sealed class ProgressLines(IAnsiConsole console, string name) : IProgress<SearchProgress>
    {
        private static readonly long Interval = TimeSpan.FromSeconds(1).Ticks;
        private readonly long _start = LabClock.Timestamp();
        private long _last;

        public void Report(SearchProgress value)
        {
            TimeSpan now = LabClock.Since(_start);
            long last = Interlocked.Read(ref _last);
            if (now.Ticks - last < Interval || Interlocked.CompareExchange(ref _last, now.Ticks, last) != last)
            {
                return;
            }

            console.WriteLine(ProgressText(name, value, now.TotalSeconds));
        }
    }
}
