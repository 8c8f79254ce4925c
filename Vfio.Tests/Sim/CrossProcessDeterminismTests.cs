// A seed gives the same trace in a fresh process too: the vfio-sim command, started as a
// child process, runs a scenario and writes its trace; this process runs the same scenario
// with the same seed and must produce the same bytes, and the child replays this process's
// trace to the same bytes (exit code 0).

using System.Diagnostics;
using NUnit.Framework;
using Vfio.Kernel;
using Vfio.Sim.Scenarios;

namespace Vfio.Tests.Sim;

public sealed class CrossProcessDeterminismTests
{
    private static (int Exit, string Output) VfioSim(params string[] args)
    {
        string dll = Path.Combine(AppContext.BaseDirectory, "vfio-sim.dll");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(dll);
        foreach (string a in args)
        {
            psi.ArgumentList.Add(a);
        }

        psi.Environment["NO_COLOR"] = "1";
        using Process p = Process.Start(psi)!;
        string output = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, output);
    }

    [TestCase("set-container-vs-unset", 5UL)]
    [TestCase("unbind-request", 3UL)]
    public void ARunInAnotherProcess_WritesTheSameTrace_AndReplaysThisProcesssTrace(string name, ulong seed)
    {
        string dir = Path.Combine(TestContext.CurrentContext.WorkDirectory, $"xproc-{name}-{seed}");
        Directory.CreateDirectory(dir);
        string childTrace = Path.Combine(dir, "child.json");
        string ourTrace = Path.Combine(dir, "ours.json");

        (int exit, string output) = VfioSim("scenario", "run", name, "--seed", seed.ToString(System.Globalization.CultureInfo.InvariantCulture), "--strategy", "pct:3:2000", "--trace", childTrace);
        Assert.That(exit, Is.Zero, output);

        ScenarioResult ours = ScenarioCatalog.Default.Get(name).Run(new ScenarioOptions { Seed = seed, Strategy = StrategySpec.Pct(3, 2000) });
        File.WriteAllText(ourTrace, ours.Trace!.ToJson());
        Assert.That(File.ReadAllText(childTrace), Is.EqualTo(File.ReadAllText(ourTrace)), "the same seed in a fresh process gives the same trace, byte for byte");

        (exit, output) = VfioSim("scenario", "replay", name, ourTrace);
        Assert.That(exit, Is.Zero, output);
        Assert.That(output, Does.Contain("the same trace byte for byte"));
    }
}
