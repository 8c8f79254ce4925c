// Tests `--model` on `vfio-sim demo` and `vfio-sim scenario run`: with a profile the run's
// modelled time and operation counts are printed after it, nothing without one, and an
// unknown profile is a usage error naming the presets.

using NUnit.Framework;
using Spectre.Console;
using Vfio.Cli;
using Vfio.Kernel;
using Vfio.Sim.Scenarios;

namespace Vfio.Tests.Cli;

public sealed class CostModelOptionTests
{
    private const string Heading = "cost model linux-x86: what the run did and its modelled time (not wall time)";

    [Test]
    public void DemoWithAModel_PrintsTheModelledTimeAndTheCounts_AfterTheRun()
    {
        (int exit, string text) = DemoTests.RunDemo(new DemoOptions { CostModel = CostProfile.LinuxX86 });

        Assert.That(exit, Is.Zero, text);
        Assert.That(text, Does.Contain(Heading));
        string cost = text[text.IndexOf(Heading, StringComparison.Ordinal)..];
        Assert.That(cost, Does.Match(@"modelled time [0-9.]+ µs \(linux-x86\)\n"));
        Assert.That(cost, Does.Match(@"  SyscallEntry +[0-9,]+ x +90 ns = +[0-9.]+ µs\n"));
        Assert.That(cost, Does.Contain("  GupPage "));
    }

    [Test]
    public void DemoWithoutAModel_PrintsNoCosts()
    {
        (int exit, string text) = DemoTests.RunDemo(new DemoOptions());
        Assert.That(exit, Is.Zero, text);
        Assert.That(text, Does.Not.Contain("modelled time"));
    }

    [Test]
    public void ScenarioRunWithAModel_PrintsTheSameCountsAsTheScenarioResult()
    {
        var output = new StringWriter();
        IAnsiConsole console = CliConsole.Create(output, noColor: true, AnsiSupport.No);
        var options = new ScenarioOptions { CostModel = CostProfile.LinuxX86 };
        int exit = ScenarioCommand.RunScenario(console, TextWriter.Null, "vfio-rst-demo", options, null, null);

        Assert.That(exit, Is.Zero, output.ToString());
        Assert.That(ScenarioCatalog.Default.TryFind("vfio-rst-demo", out Scenario? demo), Is.True);
        string expected = demo!.Run(options).Cost.Format(CostProfile.LinuxX86);
        Assert.That(output.ToString(), Does.Contain(Heading + "\n" + expected));
    }

    [Test]
    public void AnUnknownModel_IsAUsageError_NamingThePresets()
    {
        var error = new StringWriter();
        int exit = Program.Run(["scenario", "run", "vfio-rst-demo", "--model", "linux-arm"], TextWriter.Null, error);
        Assert.That(exit, Is.EqualTo(2));
        Assert.That(error.ToString(), Does.StartWith("vfio-sim: no cost profile is called 'linux-arm': the presets are linux-x86"));
    }
}
