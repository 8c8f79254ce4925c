// Tests Vfio.Cli/LabCommand.cs: `vfio-sim lab list`, `show N` and `check` with the reference
// or a student's built assembly, with the documented exit codes (0 every check passed, 1
// some failed, 2 usage) and the score table as the output.

using NUnit.Framework;
using Spectre.Console;
using Vfio.Cli;

namespace Vfio.Tests.Cli;

public sealed class LabCommandTests
{
    private static (int Exit, string Out, string Err) Run(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int exit = Program.Run(args, output, error);
        return (exit, output.ToString(), error.ToString());
    }

    [Test]
    public void List_ShowsEveryLab_WithItsKindAndStory()
    {
        var w = new StringWriter();
        int exit = LabCommand.ListLabs(CliConsole.Create(w, noColor: true, AnsiSupport.No));
        Assert.That(exit, Is.Zero);
        Assert.That(w.ToString(), Does.Contain("dma-mapping").And.Contain("code").And.Contain("seed 2"));
    }

    [Test]
    public void Show_PrintsTheHandout()
    {
        (int exit, string output, _) = Run("lab", "show", "2");
        Assert.That(exit, Is.Zero);
        Assert.That(output, Does.StartWith("# Lab 2: "));
    }

    [Test]
    public void CheckOfTheReference_PrintsTheScoreTable_AndExits0()
    {
        (int exit, string output, string error) = Run("lab", "check", "2", "--reference");
        Assert.That(exit, Is.Zero, error);
        Assert.That(output, Does.Contain("lab 2 MAP_DMA maps and pins the buffer: OK (15/15)\n"));
        Assert.That(output, Does.EndWith("Score: 100/100\n"));
    }

    [TestCase("lab", "show", "99")]
    [TestCase("lab", "check", "2")]
    [TestCase("lab", "check", "--reference")]
    [TestCase("lab", "check", "2", "--all", "--reference")]
    [TestCase("lab", "check", "2", "--reference", "--solution", ".")]
    [TestCase("lab", "check", "99", "--reference")]
    [TestCase("lab", "check", "2", "--solution", "/no/such/folder")]
    public void AUsageError_IsOneLine_AndExitCode2(params string[] args)
    {
        (int exit, string output, string error) = Run(args);
        Assert.That(exit, Is.EqualTo(2));
        Assert.That(output, Is.Empty);
        Assert.That(error, Does.StartWith("vfio-sim: "));
        Assert.That(error.TrimEnd('\n').Split('\n'), Has.Length.EqualTo(1), error);
    }

    [Test]
    public void CheckOfAProjectThatIsNotBuilt_SaysBuildItFirst()
    {
        string dir = Directory.CreateTempSubdirectory("labfw").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "MyLabs.csproj"), "<Project Sdk=\"Microsoft.NET.Sdk\" />");
            (int exit, _, string error) = Run("lab", "check", "2", "--solution", dir);
            Assert.That(exit, Is.EqualTo(2));
            Assert.That(error, Does.Contain($"build it first: dotnet build {dir}"));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Test]
    public void CheckOfABuiltAssembly_LoadsIt_AndGradesWhatItFinds()
    {
        // This test assembly holds several lab 2 solutions (the flawed ones of the lab's
        // tests): loaded as a student's, it is graded and told to keep one.
        string dll = typeof(LabCommandTests).Assembly.Location;
        (int exit, string output, _) = Run("lab", "check", "2", "--solution", dll);
        Assert.That(exit, Is.EqualTo(1));
        Assert.That(output, Does.Contain("lab 2 a solution exists: FAIL (0/100)").And.Contain("keep one"));
        Assert.That(output, Does.EndWith("Score: 0/100\n"));
    }
}
