// `vfio-sim demo [vfio-rst|mtty]`: runs the self-tests of the kernel runtime and of the
// machine, boots a simulated kernel and machine (the embedded default, or a machine
// description given with --machine) with vfio, vfio_iommu_type1 and vfio-pci, shows the
// machine, and runs a demo scenario, printing each step as it happens: vfio-rst (the
// default) is the "VFIO Usage Example" of Documentation/driver-api/vfio.rst with an edu DMA
// through the IOMMU; mtty creates an instance of the kernel's mtty mediated device through
// sysfs, uses its UART through vfio, talks to it over a cable and removes it. Exits 0 when every
// step did what the kernel does, 1 when one misbehaved (saying what it expected and what
// it found), 2 for bad options or a machine that cannot run the demo (no edu, no IOMMU).
// --trace prints the kernel's trace events after the run, --strace the demo's syscalls.

using System.CommandLine;
using System.Globalization;
using System.Reflection;
using Spectre.Console;
using Vfio.Kernel;
using Vfio.Platform;
using Vfio.Sim;
using Vfio.Sim.Scenarios;

namespace Vfio.Cli;

/// <summary>What the demo runs with.</summary>
internal sealed record DemoOptions
{
    public KernelProfile Profile { get; init; } = KernelProfile.Linux6_12;

    /// <summary>A machine description file; null for the embedded default machine.</summary>
    public string? MachineFile { get; init; }

    /// <summary>Print the kernel's trace events after the run.</summary>
    public bool Trace { get; init; }

    /// <summary>Print the demo's syscalls after the run, as strace -f -tt would.</summary>
    public bool Strace { get; init; }

    /// <summary>With <see cref="Strace"/>: end each failed syscall's line with the kernel's reason.</summary>
    public bool StraceReasons { get; init; }

    /// <summary>The cost model's profile, or null for none; with one, the modelled time and counts are printed after the run.</summary>
    public CostProfile? CostModel { get; init; }

    /// <summary>Which demo: <c>vfio-rst</c> (default) or <c>mtty</c>.</summary>
    public string Demo { get; init; } = DemoCommand.VfioRst;
}

internal static class DemoCommand
{
    public const string VfioRst = "vfio-rst";
    public const string Mtty = "mtty";

    public static Command Create()
    {
        var which = new Argument<string>("demo")
        {
            Description = "vfio-rst (default): the vfio.rst usage example on edu; mtty: the mtty mediated device, created through sysfs and used through vfio",
            Arity = ArgumentArity.ZeroOrOne,
            DefaultValueFactory = _ => VfioRst,
        };
        which.Validators.Add(r =>
        {
            string? value = r.GetValueOrDefault<string>();
            if (value is not (VfioRst or Mtty))
            {
                r.AddError(value?.StartsWith('-') == true
                    ? $"unknown option {value} for demo"
                    : $"there is no demo called '{value}': choose {VfioRst} or {Mtty}");
            }
        });
        Option<KernelProfile> profile = CliConsole.ProfileOption();
        Option<string?> machineFile = CliConsole.MachineOption();
        var trace = new Option<bool>("--trace") { Description = "Print the kernel's trace events (vfio, kvm, ...) after the run" };
        Option<bool> strace = StraceOutput.Option();
        Option<bool> straceReasons = StraceOutput.ReasonsOption();
        Option<CostProfile?> model = CostOutput.Option();
        var command = new Command("demo", "Run a demo on a simulated machine: the vfio.rst usage example (bind edu to vfio-pci, container, group, type1, MAP_DMA, an edu DMA through the IOMMU, the fault after UNMAP_DMA), or `demo mtty` (a mediated serial card through sysfs and vfio)");
        command.Arguments.Add(which);
        command.Options.Add(profile);
        command.Options.Add(machineFile);
        command.Options.Add(trace);
        command.Options.Add(strace);
        command.Options.Add(straceReasons);
        command.Options.Add(model);
        command.SetAction(result => Run(CliConsole.Create(), Console.Error, new DemoOptions
        {
            Demo = result.GetValue(which) ?? VfioRst,
            Profile = result.GetValue(profile)!,
            MachineFile = result.GetValue(machineFile),
            Trace = result.GetValue(trace),
            Strace = result.GetValue(strace) || result.GetValue(straceReasons),
            StraceReasons = result.GetValue(straceReasons),
            CostModel = result.GetValue(model),
        }));
        return command;
    }

    internal static int Run(IAnsiConsole console, TextWriter error, DemoOptions options)
    {
        string version = typeof(DemoCommand).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0] ?? "?";
        KernelProfile profile = options.Profile;
        bool mtty = options.Demo == Mtty;
        Scenario demo = mtty ? new MttyDemo() : new VfioRstDemo();
        var scenarioOptions = new ScenarioOptions
        {
            Profile = profile,
            Trace = options.Trace,
            Strace = options.Strace,
            CostModel = options.CostModel,
            Observer = new ScenarioConsoleObserver(console),
        };
        if (!CliConsole.TryBoot(error, demo, options.MachineFile, ref scenarioOptions, out VfioSim? sim))
        {
            return 2;
        }

        if (demo.Unmet(sim) is { } unmet)
        {
            return CliConsole.Usage(error, $"this machine cannot run the demo: {unmet}");
        }

        console.MarkupLine($"[bold]vfio-sim {Markup.Escape(version)}[/]: simulated Linux [bold]{Markup.Escape(profile.Release)}[/] (profile {Markup.Escape(profile.Name)}, HZ={SimClock.HZ})");
        int selfTestFailures = SelfTests(console, "kernel runtime", SelfTest.RunAll(profile)) + SelfTests(console, "machine", PlatformSelfTest.RunAll(profile));
        console.MarkupLine($"[bold]The machine:[/] {Markup.Escape(options.MachineFile ?? "the embedded default machine")} (`lspci -tv` with drivers and groups)");
        console.Write(MachineView.PciTree(sim.Machine));
        console.WriteLine();
        console.MarkupLine(mtty
            ? "[bold]The mtty mediated device[/] (samples/vfio-mdev/mtty.c on the mdev core), used as Documentation/driver-api/vfio-mediated-device.rst shows, then over a cable"
            : "[bold]The VFIO usage example[/] (Documentation/driver-api/vfio.rst), then an edu DMA through the IOMMU");

        ScenarioResult result = demo.Run(sim, scenarioOptions);
        if (options.Trace)
        {
            PrintTrace(console, sim.Kernel);
        }

        if (options.Strace)
        {
            StraceOutput.Print(console, sim.Strace, options.StraceReasons);
        }

        if (options.CostModel is { } costProfile)
        {
            CostOutput.Print(console, result.Cost, costProfile);
        }

        console.WriteLine();
        if (result.FailedStep is { } failed)
        {
            console.MarkupLine($"[red]Step {failed.Number}. {Markup.Escape(failed.Title)} did not do what the kernel does:[/] expected {Markup.Escape(failed.Expected!)}; found {Markup.Escape(failed.Found ?? "")}");
            return 1;
        }

        if (!result.Run!.Passed)
        {
            console.MarkupLine($"[red]The simulated kernel failed the run ({result.Run.Outcome}):[/] {Markup.Escape(result.Run.Report ?? result.Run.Exception?.Message ?? "")}");
            return 1;
        }

        if (selfTestFailures != 0)
        {
            console.MarkupLine($"[red]{selfTestFailures} self-test checks failed.[/]");
            return 1;
        }

        console.MarkupLine("[green]Every step did what the kernel does.[/]");
        return 0;
    }

    /// <summary>One line per self-test suite, plus a line per failed check; returns the failures.</summary>
    private static int SelfTests(IAnsiConsole console, string suite, IReadOnlyList<SelfTestResult> results)
    {
        int passed = results.Count(r => r.Passed);
        console.MarkupLine(passed == results.Count
            ? $"Self-test of the {suite}: [green]{passed} of {results.Count} checks passed[/]"
            : $"Self-test of the {suite}: [red]{results.Count - passed} of {results.Count} checks failed[/]");
        foreach (SelfTestResult r in results.Where(r => !r.Passed))
        {
            console.MarkupLine($"    [red]FAIL[/] {Markup.Escape(r.Name)}: {Markup.Escape(r.Detail)}");
        }

        return results.Count - passed;
    }

    // Lock, refcount and scheduling events are counted, not listed: the rest is what vfio did.
    private static readonly string[] s_summarized = ["lock_", "refcount_", "task_", "complete"];

    private static void PrintTrace(IAnsiConsole console, SimKernel kernel)
    {
        console.WriteLine();
        console.MarkupLine("[bold]Kernel trace events[/] (lock, refcount and scheduling events counted at the end)");
        var counted = new SortedDictionary<string, int>(StringComparer.Ordinal);
        foreach (TraceRecord r in kernel.Trace.Records.Where(r => r.Kind is TraceRecordKind.Event or TraceRecordKind.Warning))
        {
            if (s_summarized.Any(p => r.Op.StartsWith(p, StringComparison.Ordinal)))
            {
                counted[r.Op] = counted.GetValueOrDefault(r.Op) + 1;
                continue;
            }

            string line = string.Create(CultureInfo.InvariantCulture, $"[{r.TimeNs / 1e9,12:0.000000000}] {r.Task,-12} {r.Op} {r.Object} {r.Detail}");
            console.MarkupLine(Markup.Escape(line.TrimEnd()));
        }

        console.MarkupLine(Markup.Escape(string.Join(", ", counted.Select(kv => $"{kv.Value} {kv.Key}"))));
    }
}
