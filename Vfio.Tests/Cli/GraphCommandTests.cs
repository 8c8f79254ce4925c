// Tests `vfio-sim graph` (Vfio.Cli/GraphCommand.cs): the default picture is vfio-rst-demo
// after its SET_IRQS step, --scenario/--step choose another point, the three formats come
// out on stdout or in a file, and every usage mistake is one line with exit code 2.

using System.Xml.Linq;
using NUnit.Framework;
using Vfio.Cli;

namespace Vfio.Tests.Cli;

public sealed class GraphCommandTests
{
    private static (int Exit, string Out, string Err) Run(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int exit = Program.Run(["graph", .. args], output, error);
        return (exit, output.ToString(), error.ToString());
    }

    [Test]
    public void WithoutOptions_ItPrintsTheTreeOfVfioRstDemoAfterSetIrqs()
    {
        (int exit, string output, string error) = Run();
        Assert.That(exit, Is.EqualTo(0), error);
        Assert.That(output, Does.StartWith("# vfio-rst-demo after step 15. VFIO_DEVICE_SET_IRQS"));
        Assert.That(output, Does.Contain("process vfio-demo["));
        Assert.That(output, Does.Contain("-> container 1 [refcount=2"));
        Assert.That(output, Does.Contain("msi[0] trigger -> eventfd_ctx"));
        Assert.That(output, Does.Contain("dma -> dma 0x0+0x100000"));
    }

    [Test]
    public void Reachable_DrawsOnlyWhatTheDemoProcessHolds()
    {
        (int exit, string all, _) = Run();
        (int exit2, string reach, _) = Run("--reachable");
        Assert.That((exit, exit2), Is.EqualTo((0, 0)));
        Assert.That(all, Does.Contain("iommu_group 4 ").And.Contain("process init[1]"));
        Assert.That(reach, Does.Not.Contain("iommu_group 4 ").And.Not.Contain("process init[1]"));
        Assert.That(reach, Does.Contain("vfio device vfio0 (0000:01:00.0) [refcount=2 open_count=1").And.Contain("dma 0x0+0x100000"));
        Assert.That(reach, Does.Contain(": 13 objects, 20 references"));
    }

    [Test]
    public void AScenarioWithoutStep_IsDrawnAfterItsLastStep()
    {
        (int exit, string output, _) = Run("--scenario", "vfio-rst-demo", "--format", "dot");
        Assert.That(exit, Is.EqualTo(0));
        Assert.That(output, Does.StartWith("// vfio-rst-demo after step 21. "));
        Assert.That(output, Does.Contain("digraph \"vfio-sim\" {"));
        Assert.That(output, Does.Not.Contain("\"container:"));
    }

    [Test]
    public void Output_WritesTheSvgToTheFile_AndSaysWhatItDrew()
    {
        string file = Path.Combine(Path.GetTempPath(), $"vfio-sim-graph-{Environment.ProcessId}.svg");
        try
        {
            (int exit, string output, _) = Run("--step", "9", "--format", "svg", "-o", file);
            Assert.That(exit, Is.EqualTo(0));
            Assert.That(output, Does.StartWith($"wrote {file}: vfio-rst-demo after step 9. "));
            XDocument svg = XDocument.Load(file);
            Assert.That(svg.Root!.Name.LocalName, Is.EqualTo("svg"));
            Assert.That(File.ReadAllText(file), Does.Contain("id=\"dma:1:0x0\""));
        }
        finally
        {
            File.Delete(file);
        }
    }

    [TestCase("--format", "png")]
    [TestCase("--step", "-1")]
    [TestCase("--scenario", "no-such-scenario")]
    [TestCase("--scenario", "vfio-rst-demo", "--step", "99")]
    [TestCase("--fix", "on")]
    [TestCase("--fix", "maybe")]
    [TestCase("--profile", "linux-5.4")]
    public void AUsageMistake_IsOnePlainLine_AndExitCode2(params string[] args)
    {
        (int exit, string output, string error) = Run(args);
        Assert.That(exit, Is.EqualTo(2), error);
        Assert.That(output, Is.Empty);
        Assert.That(error.TrimEnd('\n').Split('\n'), Has.Length.EqualTo(1), error);
        Assert.That(error, Does.StartWith("vfio-sim: "));
    }

    [Test]
    public void AStepThatDoesNotExist_SaysHowManyStepsThereAre()
    {
        (_, _, string error) = Run("--scenario", "vfio-rst-demo", "--step", "99");
        Assert.That(error, Does.Contain("has 21 steps, not 99"));
    }

    [Test]
    public void AScenarioWithoutNumberedSteps_IsDrawnAfterItsRun()
    {
        (int exit, string output, string error) = Run("--scenario", "unbind-request");
        Assert.That(exit, Is.EqualTo(0), error);
        Assert.That(output, Does.StartWith("# unbind-request after the run (it has no numbered steps)"));
    }
}
