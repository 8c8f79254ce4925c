// Tests Vfio.Cli/ShellCommand.cs: `vfio-sim shell -c`, a script file and piped standard
// input run on the booted default machine and exit with the last command's status; bad
// options and unreadable files are usage errors (exit 2).

using NUnit.Framework;
using Vfio.Cli;

namespace Vfio.Tests.Cli;

public sealed class ShellCommandTests
{
    private static (int Exit, string Out, string Err) Run(ShellOptions options, string stdin = "")
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int exit = ShellCommand.Run(options, new StringReader(stdin), output, error, interactive: false);
        return (exit, output.ToString(), error.ToString());
    }

    [Test]
    public void DashC_RunsTheCommands_AndExitsWithTheLastOnesStatus()
    {
        (int exit, string output, string error) = Run(new ShellOptions { Command = "cat /sys/bus/pci/devices/0000:01:00.0/vendor; ls /dev/vfio" });
        Assert.That((exit, output, error), Is.EqualTo((0, "0x1234\nvfio\n", "")));
        Assert.That(Run(new ShellOptions { Command = "cat /sys/nope" }), Is.EqualTo((1, "", "cat: /sys/nope: No such file or directory\n")));
    }

    [Test]
    public void SriovNumvfs_IsRefusedAsTheKernelRefusesIt_UntilEnableSriovLoadsVfioPciWithIt()
    {
        const string Bind = "echo vfio-pci > /sys/bus/pci/devices/0000:09:00.0/driver_override; echo 0000:09:00.0 > /sys/bus/pci/drivers_probe; ";
        const string Enable = "echo 2 > /sys/bus/pci/devices/0000:09:00.0/sriov_numvfs";
        (int exit, string output, string error) = Run(new ShellOptions { Command = Bind + Enable + "; lspci -s 09:" });
        Assert.That(error, Does.Contain("No such file or directory").And.Contain("enable_sriov"));
        Assert.That(output.Trim().Split('\n'), Has.Length.EqualTo(1), output);

        (exit, output, error) = Run(new ShellOptions { EnableSriov = true, Command = Bind + Enable + "; lspci -s 09:" });
        Assert.That((exit, error), Is.EqualTo((0, "")));
        Assert.That(output, Does.Contain("09:00.1 ").And.Contain("09:00.2 ").And.Contain("Virtual Function"));
    }

    [Test]
    public void AScriptFile_RunsLineByLine()
    {
        string path = Path.GetTempFileName();
        try
        {
            File.WriteAllText(path, "# bind edu\necho vfio-pci > /sys/bus/pci/devices/0000:01:00.0/driver_override\n"
                + "echo 0000:01:00.0 > /sys/bus/pci/devices/0000:01:00.0/driver/unbind\necho 0000:01:00.0 > /sys/bus/pci/drivers_probe\n"
                + "readlink /sys/bus/pci/devices/0000:01:00.0/driver\nopen /dev/vfio/2\n");
            Assert.That(Run(new ShellOptions { Script = path }), Is.EqualTo((0, "../../../../bus/pci/drivers/vfio-pci\nfd 3\n", "")));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Test]
    public void PipedStandardInput_IsReadWithoutAPrompt_UntilExit()
    {
        (int exit, string output, _) = Run(new ShellOptions(), "echo one\nexit 3\necho never\n");
        Assert.That((exit, output), Is.EqualTo((3, "one\n")));
    }

    [Test]
    public void TheLinux61Profile_BootsToo()
        => Assert.That(Run(new ShellOptions { Profile = Vfio.Kernel.KernelProfile.Linux6_1, Command = "lspci -s 01:00.0" }).Exit, Is.Zero);

    [Test]
    public void AScriptThatCannotBeRead_OrAnUnknownOption_IsAUsageError()
    {
        (int exit, string output, string error) = Run(new ShellOptions { Script = "/nonexistent/script.sh" });
        Assert.That((exit, output), Is.EqualTo((2, "")));
        Assert.That(error, Does.StartWith("vfio-sim: cannot read the script /nonexistent/script.sh"));
        var err = new StringWriter();
        Assert.That(Program.Run(["shell", "--frobnicate"], new StringWriter(), err), Is.EqualTo(2));
        Assert.That(err.ToString(), Does.StartWith("vfio-sim: "));
    }
}
