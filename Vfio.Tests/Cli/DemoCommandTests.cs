using NUnit.Framework;
using Spectre.Console;
using Vfio.Cli;
using Vfio.Kernel;

namespace Vfio.Tests.Cli;

public sealed class DemoCommandTests
{
    [Test]
    public void Demo_PrintsTheKernelReleaseAndTheSelfTest_AndSaysWhatIsNotBuilt()
    {
        var output = new StringWriter();
        IAnsiConsole console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Ansi = AnsiSupport.No,
            ColorSystem = ColorSystemSupport.NoColors,
            Out = new AnsiConsoleOutput(output),
        });
        console.Profile.Width = 160;

        int exit = DemoCommand.Run(console, KernelProfile.Linux6_1);

        string text = output.ToString();
        Assert.That(exit, Is.Zero, text);
        Assert.That(text, Does.Contain("simulated Linux 6.1.0-vfio-sim (profile linux-6.1, HZ=250)"));
        Assert.That(text, Does.Contain("7 of 7 checks passed."));
        Assert.That(text, Does.Contain("Machine self-test"));
        Assert.That(text, Does.Contain("6 of 6 checks passed."));
        Assert.That(text, Does.Contain("The embedded default machine"));
        Assert.That(text, Does.Contain("0000:01:00.0 [1234:11e8] EduDevice"));
        Assert.That(text, Does.Contain("0000:02:00.0 is bound to igb"));
        Assert.That(text, Does.Contain("Not built yet."));
        foreach (string layer in DemoCommand.NotBuiltYet)
        {
            Assert.That(text, Does.Contain(layer));
        }
    }
}
