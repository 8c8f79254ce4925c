// Tests `vfio-sim demo mtty`: the mediated-device flow on both profiles passes every step
// (create through sysfs, vfio open, loopback, MSI, the cable both ways, removal with nothing
// left) and a step that finds something else fails the demo. (Every catalogue scenario's
// trace replays byte for byte: Vfio.Tests/Sim/ScenarioTests.cs.)

using NUnit.Framework;
using Vfio.Cli;
using Vfio.Kernel;
using Vfio.Sim;
using Vfio.Sim.Scenarios;

namespace Vfio.Tests.Cli;

public sealed class MttyDemoTests
{
    [Test]
    public void DemoMtty_CreatesUsesTalksOverTheCableAndRemoves([Values("linux-6.12", "linux-6.1")] string profile)
    {
        (int exit, string text) = DemoTests.RunDemo(new DemoOptions { Profile = KernelProfile.Parse(profile), Demo = DemoCommand.Mtty });

        Assert.That(exit, Is.Zero, text);
        Assert.That(text, Does.Contain("mtty-1: name \"Single port serial\", device_api vfio-pci, available_instances 24"));
        Assert.That(text, Does.Contain("mtty-2: name \"Dual port serial\", device_api vfio-pci, available_instances 12"));
        Assert.That(text, Does.Contain("echo 83b8f4f2-509f-382f-3c1e-e6bfe0fa1001 > /sys/class/mdev_bus/mtty/mdev_supported_types/mtty-2/create"));
        Assert.That(text, Does.Contain("available_instances: mtty-2 12 -> 11, mtty-1 24 -> 22"));
        Assert.That(text, Does.Contain("VFIO_DEVICE_GET_INFO: flags 0x2 (PCI), 9 regions, 5 irqs"));
        Assert.That(text, Does.Contain("config: 4348:3253, class 070002"));
        Assert.That(text, Does.Contain("RBR -> \"Hello\""));
        Assert.That(text, Does.Contain("read(eventfd) = 1: the MSI fired"));
        Assert.That(text, Does.Contain("the far end reads \"ping\""));
        Assert.That(text, Does.Contain("RBR -> \"pong\""));
        Assert.That(text, Does.Contain("available_instances back to 12 (mtty-2) and 24 (mtty-1); no pins, no leaks"));
        Assert.That(text, Does.Contain("11. Remove the instance: nothing is left"));
        Assert.That(text, Does.Contain("Every step did what the kernel does."));
    }

    [Test]
    public void MttyDemo_StepsFailWhenTheDeviceMisbehaves()
    {
        // A machine where the pool is already short: another instance holds two ports, so the
        // demo's first check of available_instances finds 22 single-port instances, not 24.
        Scenario demo = ScenarioCatalog.Default.Get("mtty-demo");
        var options = new ScenarioOptions();
        VfioSim sim = demo.Boot(options);
        sim.CreateMdev("mtty", "mtty-2");
        ScenarioResult result = demo.Run(sim, options);

        Assert.That(result.Passed, Is.False);
        Assert.That(result.FailedStep!.Number, Is.EqualTo(1));
        Assert.That(result.FailedStep.Found, Does.EndWith("= 22"));
    }
}
