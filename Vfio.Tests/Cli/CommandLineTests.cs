// Tests the vfio-sim command line as a user meets it: a command line that does not parse
// (an unknown subcommand or option, an unknown profile) is one plain line and exit code 2;
// NO_COLOR removes every ANSI attribute, bold included; the scenario subcommands list, run
// and replay the catalogue with the documented exit codes.

using NUnit.Framework;
using Spectre.Console;
using Vfio.Cli;
using Vfio.Sim.Scenarios;

namespace Vfio.Tests.Cli;

public sealed class CommandLineTests
{
    private static (int Exit, string Out, string Err) Run(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int exit = Program.Run(args, output, error);
        return (exit, output.ToString(), error.ToString());
    }

    [TestCase("frobnicate")]
    [TestCase("demo", "--frobnicate")]
    [TestCase("demo", "--profile", "linux-5.4")]
    [TestCase("demo", "mdpy")]
    [TestCase("demo", "--profile")]
    [TestCase("scenario", "run")]
    [TestCase("scenario", "run", "vfio-rst-demo", "--strategy", "zigzag")]
    [TestCase("scenario", "run", "vfio-rst-demo", "--seed", "minus-one")]
    public void ACommandLineThatDoesNotParse_IsOnePlainLine_AndExitCode2(params string[] args)
    {
        (int exit, string output, string error) = Run(args);
        Assert.That(exit, Is.EqualTo(2));
        Assert.That(output, Is.Empty);
        Assert.That(error.TrimEnd('\n').Split('\n'), Has.Length.EqualTo(1), error);
        Assert.That(error, Does.StartWith("vfio-sim: "));
        Assert.That(error, Does.Not.Contain("Parameter"));
        Assert.That(error, Does.Not.Contain("Exception"));
    }

    [Test]
    public void AnUnknownProfile_NamesTheProfilesThereAre()
    {
        (_, _, string error) = Run("demo", "--profile", "linux-5.4");
        Assert.That(error, Is.EqualTo("vfio-sim: unknown kernel profile 'linux-5.4': use one of linux-6.12, linux-6.1 (see vfio-sim --help)\n"));
    }

    [Test]
    public void NoColor_RemovesBoldAsWellAsColour()
    {
        string Render(bool noColor)
        {
            var w = new StringWriter();
            IAnsiConsole c = CliConsole.Create(w, noColor, AnsiSupport.Yes);
            c.MarkupLine("[bold]step[/] [green]ok[/]");
            return w.ToString();
        }

        Assert.That(Render(noColor: false), Does.Contain("\u001b[1m"), "a terminal gets bold");
        Assert.That(Render(noColor: true), Is.EqualTo("step ok\n"));
    }

    // The console's text followed by what went to stderr.
    private static (int Exit, string Text) WithConsole(Func<IAnsiConsole, TextWriter, int> body)
    {
        var w = new StringWriter();
        var error = new StringWriter();
        int exit = body(CliConsole.Create(w, noColor: true, AnsiSupport.No), error);
        return (exit, w.ToString() + error.ToString());
    }

    [Test]
    public void ScenarioList_ShowsEveryScenario_AndAsJson()
    {
        (int exit, string text) = WithConsole((c, _) => ScenarioCommand.ListScenarios(c, json: false, TextWriter.Null));
        Assert.That(exit, Is.Zero);
        foreach (Scenario s in ScenarioCatalog.Default.All)
        {
            Assert.That(text, Does.Contain(s.Name));
        }

        var json = new StringWriter();
        Assert.That(ScenarioCommand.ListScenarios(AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(TextWriter.Null) }), json: true, json), Is.Zero);
        using var doc = System.Text.Json.JsonDocument.Parse(json.ToString());
        Assert.That(doc.RootElement.EnumerateArray().Select(e => e.GetProperty("name").GetString()), Is.EqualTo(ScenarioCatalog.Default.All.Select(s => s.Name)));
        Assert.That(doc.RootElement[0].GetProperty("kind").GetString(), Is.EqualTo("demo"));
    }

    [Test]
    public void ScenarioRun_PrintsTheSteps_AndExitsZero_AndAnUnknownScenarioIsAUsageError()
    {
        (int exit, string text) = WithConsole((c, e) => ScenarioCommand.RunScenario(c, e, "vfio-rst-demo", new ScenarioOptions { Seed = 2 }, null, null));
        Assert.That(exit, Is.Zero, text);
        Assert.That(text, Does.Contain(" 1. Find the edu device and its IOMMU group"));
        Assert.That(text, Does.Contain("vfio-rst-demo passed (seed 2, linux-6.12"));

        (exit, text) = WithConsole((c, e) => ScenarioCommand.RunScenario(c, e, "no-such-thing", new ScenarioOptions(), null, null));
        Assert.That(exit, Is.EqualTo(2));
        Assert.That(text, Does.StartWith("vfio-sim: no scenario is called no-such-thing: the catalogue has vfio-rst-demo, mtty-demo, unbind-request, "));
        Assert.That(text, Is.EqualTo($"vfio-sim: no scenario is called no-such-thing: the catalogue has {string.Join(", ", ScenarioCatalog.Default.All.Select(s => s.Name))}\n"));
    }

    [Test]
    public void ScenarioReplay_OfADifferentScenariosTrace_Differs_AndExitsOne()
    {
        string dir = Path.Combine(TestContext.CurrentContext.WorkDirectory, "replay-mismatch");
        Directory.CreateDirectory(dir);
        string file = Path.Combine(dir, "trace.json");
        (int exit, string text) = WithConsole((c, e) => ScenarioCommand.RunScenario(c, e, "group-open-vs-removal", new ScenarioOptions { Seed = 4 }, null, file));
        Assert.That(exit, Is.Zero, text);

        (exit, text) = WithConsole((c, e) => ScenarioCommand.ReplayScenario(c, e, "group-open-vs-removal", file, null));
        Assert.That(exit, Is.Zero, text);

        (exit, text) = WithConsole((c, e) => ScenarioCommand.ReplayScenario(c, e, "set-container-vs-unset", file, null));
        Assert.That(exit, Is.EqualTo(1), text);
        Assert.That(text, Does.Contain("differs from"));

        (exit, text) = WithConsole((c, e) => ScenarioCommand.ReplayScenario(c, e, "group-open-vs-removal", Path.Combine(dir, "missing.json"), null));
        Assert.That(exit, Is.EqualTo(2), text);
    }

    [Test]
    public void ScenarioRun_OnAMachineThatCannotRunIt_IsAUsageError()
    {
        string file = Path.Combine(TestContext.CurrentContext.WorkDirectory, "no-iommu-machine.json");
        File.WriteAllText(file, System.Text.RegularExpressions.Regex.Replace(Vfio.Platform.Machine.MachineDescriptionReader.DefaultJson, "\"iommu\": \\{[^}]*\\}", "\"iommu\": null"));
        (int exit, string text) = WithConsole((c, e) => ScenarioCommand.RunScenario(c, e, "getfd-vs-unregister", new ScenarioOptions(), file, null));
        Assert.That(exit, Is.EqualTo(2), text);
        Assert.That(text, Does.StartWith("vfio-sim: this machine cannot run getfd-vs-unregister: 0000:01:00.0 is in no IOMMU group (the machine has no IOMMU)"));
    }
}
