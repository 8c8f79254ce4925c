// Prints a scenario's steps as they happen: the title in bold, what the step showed
// indented below it, then "ok" or "FAIL" with what the kernel does and what happened.

using Spectre.Console;
using Vfio.Sim.Scenarios;

namespace Vfio.Cli;

internal sealed class ScenarioConsoleObserver(IAnsiConsole console) : IScenarioObserver
{
    public void StepStarted(int number, string title) => console.MarkupLine($"[bold]{number,2}. {Markup.Escape(title)}[/]");

    public void StepFinished(ScenarioStep step)
    {
        if (!step.Passed)
        {
            console.MarkupLine($"    [red]FAIL[/] expected: {Markup.Escape(step.Expected!)}");
            console.MarkupLine($"         found:    {Markup.Escape(step.Found ?? "")}");
            return;
        }

        foreach (string line in step.Output.Split('\n'))
        {
            console.MarkupLine($"    {Markup.Escape(line)}");
        }

        console.MarkupLine("    [green]ok[/]");
    }
}
