// `vfio-sim demo`. Until vfio itself exists, the demo shows the simulated kernel's version
// and profile, runs the self-tests of the kernel runtime and the machine, shows the
// embedded default machine (its PCI tree and IOMMU groups), and says plainly which layers
// are not built yet.

using System.CommandLine;
using System.Reflection;
using Spectre.Console;
using Vfio.Kernel;
using Vfio.Platform;
using Vfio.Platform.Machine;

namespace Vfio.Cli;

internal static class DemoCommand
{
    internal static readonly string[] NotBuiltYet =
    [
        "the type1 IOMMU backend (MAP_DMA/UNMAP_DMA, pinning)",
        "vfio-pci's mmap and INTx/MSI/MSI-X, and mdev",
    ];

    public static Command Create()
    {
        var profile = new Option<string>("--profile")
        {
            Description = "Kernel profile to run as: linux-6.12 (default) or linux-6.1",
            DefaultValueFactory = _ => KernelProfile.Linux6_12.Name,
        };
        var command = new Command("demo", "Run the demo on the embedded default machine: self-tests, the PCI tree and the IOMMU groups");
        command.Options.Add(profile);
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

            return Run(AnsiConsole.Console, p);
        });
        return command;
    }

    internal static int Run(IAnsiConsole console, KernelProfile profile)
    {
        string version = typeof(DemoCommand).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0] ?? "?";
        console.MarkupLine($"[bold]vfio-sim {Markup.Escape(version)}[/]: simulated Linux [bold]{Markup.Escape(profile.Release)}[/] (profile {Markup.Escape(profile.Name)}, HZ={SimClock.HZ})");
        console.WriteLine();
        int failed = Section(console, "Kernel runtime self-test", SelfTest.RunAll(profile));
        failed += Section(console, "Machine self-test (memory, processes, files, sysfs, driver model, PCI, IOMMU)", PlatformSelfTest.RunAll(profile));
        console.WriteLine();

        SimMachine machine = MachineBuilder.Default(new SimKernel(new KernelConfig { Profile = profile }));
        console.MarkupLine("[bold]The embedded default machine[/] (vfio-sim's machine description; `lspci -tv` with drivers and groups)");
        console.Write(MachineView.PciTree(machine));
        console.MarkupLine("[bold]IOMMU groups[/] (/sys/kernel/iommu_groups)");
        console.Write(MachineView.GroupTable(machine));
        console.WriteLine();

        console.MarkupLine("[yellow]Not built yet.[/] The demo will run the flow of Documentation/driver-api/");
        console.MarkupLine("vfio.rst on the embedded default machine (unbind the host driver, bind vfio-pci,");
        console.MarkupLine("open group and container, SET_IOMMU, MAP_DMA, an edu DMA through the IOMMU)");
        console.MarkupLine("once these layers exist:");
        foreach (string layer in NotBuiltYet)
        {
            console.MarkupLine($"  - {Markup.Escape(layer)}");
        }

        return failed == 0 ? 0 : 1;
    }

    private static int Section(IAnsiConsole console, string title, IReadOnlyList<SelfTestResult> results)
    {
        console.MarkupLine($"[bold]{Markup.Escape(title)}[/]");
        var table = new Table().Border(TableBorder.Rounded).AddColumn("").AddColumn("check").AddColumn("observed");
        foreach (SelfTestResult r in results)
        {
            table.AddRow(r.Passed ? "[green]ok[/]" : "[red]FAIL[/]", Markup.Escape(r.Name), Markup.Escape(r.Detail));
        }

        console.Write(table);
        int passed = results.Count(r => r.Passed);
        console.MarkupLine(passed == results.Count
            ? $"[green]{passed} of {results.Count} checks passed.[/]"
            : $"[red]{results.Count - passed} of {results.Count} checks failed.[/]");
        return results.Count - passed;
    }
}
