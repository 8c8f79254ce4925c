// Tests `vfio-sim bench map` (Vfio.Cli/BenchCommand.cs) end to end in-process: the table,
// the CSV and SVG files, progress on stderr, and exit code 2 with the reason for a request
// that cannot run.

using System.Xml.Linq;
using NUnit.Framework;
using Vfio.Cli;
using Vfio.Sim.Bench;

namespace Vfio.Tests.Cli;

public sealed class BenchCommandTests
{
    private static (int Exit, string Out, string Err) Run(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int exit = Program.Run(["bench", "map", "--warmup", "0", "--repeat", "1", .. args], output, error);
        return (exit, output.ToString(), error.ToString());
    }

    [Test]
    public void ASweep_PrintsATableWithModelledTime_AndWritesCsvAndSvg()
    {
        string csv = Path.Combine(Path.GetTempPath(), $"vfio-sim-bench-{Environment.ProcessId}.csv");
        string svg = Path.ChangeExtension(csv, ".svg");
        try
        {
            (int exit, string output, string error) = Run("--size", "4K..8K,2M", "--page", "4K,2M", "--model", "linux-x86", "--csv", csv, "--svg", svg);
            Assert.That(exit, Is.EqualTo(0), error);
            Assert.That(output, Does.Contain("modelled map").And.Contain("4K scattered").And.Contain("2M hugetlb"));
            Assert.That(output, Does.Contain("modelled time: linux-x86"));
            Assert.That(output, Does.Contain("note: 2M pages: 4K, 8K skipped"));
            Assert.That(error, Does.Contain("bench map: 4K scattered: booting a machine").And.Contain($"wrote {csv}"));
            string[] lines = File.ReadAllLines(csv);
            Assert.That((lines.Length, lines[0]), Is.EqualTo((1 + 4, MapBench.CsvHeader)));
            Assert.That(XDocument.Load(svg).Root!.Name.LocalName, Is.EqualTo("svg"));
        }
        finally
        {
            File.Delete(csv);
            File.Delete(svg);
        }
    }

    [Test]
    public void WithoutAModel_TheTableHasNoModelledColumns()
    {
        (int exit, string output, _) = Run("--size", "4K", "--placement", "contiguous");
        Assert.That(exit, Is.EqualTo(0));
        Assert.That(output, Does.Contain("4K contiguous").And.Not.Contain("modelled"));
    }

    [TestCase(new[] { "--size", "3K" }, "--size: '3K': 3072 bytes is not a whole number of 4 KiB pages")]
    [TestCase(new[] { "--page", "64K" }, "not a page size of the machine")]
    [TestCase(new[] { "--placement", "random" }, "not a placement")]
    [TestCase(new[] { "--model", "riscv" }, "--model takes linux-x86, not 'riscv'")]
    [TestCase(new[] { "--design", "Nope=1" }, "no design variant is called 'Nope'")]
    [TestCase(new[] { "--size", "4K", "--page", "2M" }, "no point of the sweep can run")]
    public void ARequestThatCannotRun_IsOneLineAndExitCode2(string[] args, string why)
    {
        (int exit, string output, string error) = Run(args);
        Assert.That(exit, Is.EqualTo(2));
        Assert.That(error, Does.StartWith("vfio-sim: ").And.Contains(why));
        Assert.That(output, Is.Empty);
    }
}
