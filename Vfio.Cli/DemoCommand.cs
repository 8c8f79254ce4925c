// `vfio-sim demo`: runs the self-tests of the kernel runtime and of the machine, boots a
// simulated kernel and machine (the embedded default, or a machine description given with
// --machine), loads vfio, vfio_iommu_type1 and vfio-pci, shows the machine, and runs the
// "VFIO Usage Example" of Documentation/driver-api/vfio.rst with an edu DMA through the
// IOMMU (DemoScript) in a kernel task. Exits 0 when every step did what the kernel does,
// 1 when one misbehaved, 2 for bad options.

using System.CommandLine;
using System.Globalization;
using System.Reflection;
using Spectre.Console;
using Vfio.Core;
using Vfio.Iommu.Type1;
using Vfio.Kernel;
using Vfio.Pci;
using Vfio.Platform;
using Vfio.Platform.Machine;

namespace Vfio.Cli;

/// <summary>What the demo runs with.</summary>
internal sealed record DemoOptions
{
    public KernelProfile Profile { get; init; } = KernelProfile.Linux6_12;

    /// <summary>A machine description file; null for the embedded default machine.</summary>
    public string? MachineFile { get; init; }

    /// <summary>Print the kernel's trace events after the run.</summary>
    public bool Trace { get; init; }
}

internal static class DemoCommand
{
    public static Command Create()
    {
        var profile = new Option<string>("--profile")
        {
            Description = "Kernel profile to run as: linux-6.12 (default) or linux-6.1",
            DefaultValueFactory = _ => KernelProfile.Linux6_12.Name,
        };
        var machineFile = new Option<string?>("--machine") { Description = "A machine description (JSON) to run on instead of the embedded default machine" };
        var trace = new Option<bool>("--trace") { Description = "Print the kernel's trace events (vfio, kvm, ...) after the run" };
        var command = new Command("demo", "Run the vfio.rst usage example on a simulated machine: bind edu to vfio-pci, container, group, type1, MAP_DMA, an edu DMA through the IOMMU, the fault after UNMAP_DMA");
        command.Options.Add(profile);
        command.Options.Add(machineFile);
        command.Options.Add(trace);
        command.SetAction(result =>
        {
            KernelProfile p;
            try
            {
                p = KernelProfile.Parse(result.GetValue(profile)!);
            }
            catch (ArgumentException e)
            {
                AnsiConsole.MarkupLine($"[red]{Markup.Escape(e.Message)}[/]");
                return 2;
            }

            return Run(AnsiConsole.Console, new DemoOptions { Profile = p, MachineFile = result.GetValue(machineFile), Trace = result.GetValue(trace) });
        });
        return command;
    }

    internal static int Run(IAnsiConsole console, DemoOptions options)
    {
        string version = typeof(DemoCommand).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0] ?? "?";
        KernelProfile profile = options.Profile;
        MachineDescription description;
        try
        {
            description = options.MachineFile is null ? MachineDescriptionReader.Default : MachineDescriptionReader.Load(options.MachineFile);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or MachineDescriptionException or ArgumentException)
        {
            console.MarkupLine($"[red]cannot load the machine description {Markup.Escape(options.MachineFile ?? "")}:[/] {Markup.Escape(e.Message)}");
            return 2;
        }

        var kernel = new SimKernel(new KernelConfig { Profile = profile, Mode = SchedulerMode.Controlled, Trace = options.Trace });
        SimMachine machine;
        try
        {
            machine = MachineBuilder.Build(description, kernel);
        }
        catch (MachineDescriptionException e)
        {
            console.MarkupLine($"[red]cannot build the machine:[/] {Markup.Escape(e.Message)}");
            return 2;
        }

        console.MarkupLine($"[bold]vfio-sim {Markup.Escape(version)}[/]: simulated Linux [bold]{Markup.Escape(profile.Release)}[/] (profile {Markup.Escape(profile.Name)}, HZ={SimClock.HZ})");
        int selfTestFailures = SelfTests(console, "kernel runtime", SelfTest.RunAll(profile)) + SelfTests(console, "machine", PlatformSelfTest.RunAll(profile));
        console.MarkupLine($"[bold]The machine:[/] {Markup.Escape(options.MachineFile ?? "the embedded default machine")} (`lspci -tv` with drivers and groups)");
        console.Write(MachineView.PciTree(machine));
        console.WriteLine();
        console.MarkupLine("[bold]The VFIO usage example[/] (Documentation/driver-api/vfio.rst), then an edu DMA through the IOMMU");

        DemoScript? script = null;
        RunResult run = kernel.Run("vfio-demo", () =>
        {
            VfioCore.Load(machine);
            VfioIommuType1.Load(machine);
            VfioPciDriver.Load(machine);
            script = new DemoScript(console, machine);
            script.Run();
        });

        if (options.Trace)
        {
            PrintTrace(console, kernel);
        }

        console.WriteLine();
        if (!run.Passed)
        {
            console.MarkupLine($"[red]The simulated kernel failed the run ({run.Outcome}):[/] {Markup.Escape(run.Report ?? run.Exception?.Message ?? "")}");
            return 1;
        }

        if (selfTestFailures != 0)
        {
            console.MarkupLine($"[red]{selfTestFailures} self-test checks failed.[/]");
            return 1;
        }

        if (script?.FailedStep is { } failed)
        {
            console.MarkupLine($"[red]Step {Markup.Escape(failed)} did not do what the kernel does.[/]");
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
