// Tests `--strace` and `--strace-reasons` on `vfio-sim demo` and `vfio-sim scenario run`: the
// demo's syscalls are printed after the run in strace's format, the kernel's reasons only
// when asked, nothing without the option, and the command line parses the options.

using NUnit.Framework;
using Spectre.Console;
using Vfio.Cli;
using Vfio.Sim.Scenarios;

namespace Vfio.Tests.Cli;

public sealed class StraceOptionTests
{
    private const string Heading = "strace of the simulated processes";

    [Test]
    public void DemoWithStrace_PrintsTheDemosSyscallsAfterTheRun_DecodedAsStraceWould()
    {
        (int exit, string text) = DemoTests.RunDemo(new DemoOptions { Strace = true });

        Assert.That(exit, Is.Zero, text);
        string strace = text[text.IndexOf(Heading, StringComparison.Ordinal)..];
        Assert.That(strace, Does.Contain("00:00:00.000000 openat(AT_FDCWD, \"/dev/vfio/vfio\", O_RDWR) = 0\n"));
        Assert.That(strace, Does.Contain("ioctl(0, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) = 1\n"));
        Assert.That(strace, Does.Contain("ioctl(1, VFIO_GROUP_GET_STATUS, {argsz=8} => {flags=VFIO_GROUP_FLAGS_VIABLE|VFIO_GROUP_FLAGS_CONTAINER_SET}) = 0\n"));
        Assert.That(strace, Does.Match(@"ioctl\(0, VFIO_IOMMU_MAP_DMA, \{argsz=32, flags=VFIO_DMA_MAP_FLAG_READ\|VFIO_DMA_MAP_FLAG_WRITE, vaddr=0x[0-9a-f]+, iova=0, size=1048576\}\) = 0\n"));
        Assert.That(strace, Does.Contain("ioctl(1, VFIO_GROUP_GET_DEVICE_FD, \"0000:01:00.0\") = 2\n"));
        Assert.That(strace, Does.Contain("ioctl(0, VFIO_IOMMU_UNMAP_DMA, {argsz=24, flags=0, iova=0, size=1048576} => {size=1048576}) = 0\n"));
        Assert.That(strace, Does.Contain("index=8}) = -1 EINVAL (Invalid argument)\n"), "a refused call ends as strace's line when reasons are not asked for");
        Assert.That(strace, Does.Not.Contain("/*"));
        Assert.That(strace, Does.Not.Contain("[pid"), "one process: no pid prefix");
    }

    [Test]
    public void DemoWithStraceReasons_EndsEachRefusedCallWithTheKernelsReason()
    {
        (int exit, string text) = DemoTests.RunDemo(new DemoOptions { Strace = true, StraceReasons = true });

        Assert.That(exit, Is.Zero, text);
        Assert.That(text, Does.Contain("index=8}) = -1 EINVAL (Invalid argument) /* VFIO_DEVICE_GET_REGION_INFO: "));
    }

    [Test]
    public void DemoWithoutStrace_PrintsNoStrace()
    {
        (int exit, string text) = DemoTests.RunDemo(new DemoOptions());

        Assert.That(exit, Is.Zero, text);
        Assert.That(text, Does.Not.Contain(Heading));
        Assert.That(text, Does.Not.Contain("ioctl("));
    }

    [Test]
    public void ScenarioRunWithStrace_PrintsTheSameTextForTheSameSeed()
    {
        static string Run()
        {
            var output = new StringWriter();
            var error = new StringWriter();
            IAnsiConsole console = CliConsole.Create(output, noColor: true, AnsiSupport.No);
            int exit = ScenarioCommand.RunScenario(console, error, "vfio-rst-demo", new ScenarioOptions { Seed = 3, Strace = true }, null, null);
            Assert.That(exit, Is.Zero, output.ToString() + error);
            string text = output.ToString();
            return text[text.IndexOf(Heading, StringComparison.Ordinal)..];
        }

        string first = Run();
        Assert.That(first, Does.Contain("VFIO_IOMMU_MAP_DMA"));
        Assert.That(Run(), Is.EqualTo(first));
    }

    [TestCase("demo", "--strace", "--frobnicate")]
    [TestCase("scenario", "run", "vfio-rst-demo", "--strace", "extra")]
    public void AMisspelledCommandLineWithStrace_IsAUsageError(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        Assert.That(Program.Run(args, output, error), Is.EqualTo(2));
        Assert.That(error.ToString(), Does.StartWith("vfio-sim: "));
    }
}
