// Tests `vfio-sim demo`: the vfio.rst flow on the default machine passes every step, the
// edu DMA's bytes arrive while the IOVA is mapped and fault once it is unmapped, --trace
// lists vfio's events, and a machine description that cannot be read or lacks edu is an error.

using NUnit.Framework;
using Spectre.Console;
using Vfio.Cli;
using Vfio.Kernel;
using Vfio.Platform.Machine;

namespace Vfio.Tests.Cli;

public sealed class DemoTests
{
    // The console's text, then what went to stderr (usage errors), one after the other.
    internal static (int Exit, string Text) RunDemo(DemoOptions options)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        IAnsiConsole console = CliConsole.Create(output, noColor: true, AnsiSupport.No);
        int exit = DemoCommand.Run(console, error, options);
        return (exit, output.ToString() + error.ToString());
    }

    private static string TempMachine(string json)
    {
        string path = Path.Combine(TestContext.CurrentContext.WorkDirectory, $"demo-machine-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, json);
        return path;
    }

    [Test]
    public void Demo_RunsTheVfioRstFlow_TheBytesArrive_AndTheDmaFaultsAfterUnmap([Values("linux-6.12", "linux-6.1")] string profile)
    {
        KernelProfile p = KernelProfile.Parse(profile);
        (int exit, string text) = RunDemo(new DemoOptions { Profile = p });

        Assert.That(exit, Is.Zero, text);
        Assert.That(text, Does.Contain($"simulated Linux {p.Release} (profile {profile}"));
        Assert.That(text, Does.Contain("Self-test of the kernel runtime: 7 of 7 checks passed"));
        Assert.That(text, Does.Contain("Self-test of the machine: 6 of 6 checks passed"));
        Assert.That(text, Does.Contain("0000:01:00.0 [1234:11e8] EduDevice"));
        Assert.That(text, Does.Contain("readlink /sys/bus/pci/devices/0000:01:00.0/iommu_group = ../../../../kernel/iommu_groups/2: group 2"));
        Assert.That(text, Does.Contain("/sys/kernel/iommu_groups/2/devices/0000:01:00.0: bound to edu"));
        Assert.That(text, Does.Contain("driver -> vfio-pci; /dev/vfio/2 appeared"));
        Assert.That(text, Does.Contain("VFIO_GET_API_VERSION = 0; VFIO_CHECK_EXTENSION(VFIO_TYPE1v2_IOMMU) = 1"));
        Assert.That(text, Does.Contain("/dev/vfio/2: fd 1; status Viable"));
        Assert.That(text, Does.Contain("status Viable, ContainerSet"));
        Assert.That(text, Does.Contain("iova_pgsizes 0x40201000 (4 KiB, 2 MiB, 1 GiB)"));
        Assert.That(text, Does.Contain("dma_avail 65535 -> 65534"));
        Assert.That(text, Does.Contain("pinned and charged to the process's locked_vm: +256 pages"));
        Assert.That(text, Does.Contain("0 BAR0   size 0x100000"));
        Assert.That(text, Does.Contain("0 INTX count 1"));
        Assert.That(text, Does.Contain("BAR0 identification register (pread of region 0 at 0x0) = 0x010000ed"));
        Assert.That(text, Does.Contain("bytes arrived: 4096 bytes at user va"));
        Assert.That(text, Does.Contain("\"Hello from edu, through the IOMMU!\""));
        Assert.That(text, Does.Contain("unmapped 1 MiB at IOVA 0x0; unpinned, locked_vm -256 pages"));
        Assert.That(text, Does.Contain("DMA write of 0x1000 bytes at bus address 0x10000 failed: EFAULT"));
        Assert.That(text, Does.Contain("IOMMU fault log, new entry: device 0000:01:00.0, iova 0x10000, Write, reason NotPresent"));
        Assert.That(text, Does.Contain("0000:01:00.0 is bound to edu again"));
        Assert.That(text, Does.Contain("Every step did what the kernel does."));
        Assert.That(text, Does.Not.Contain("FAIL"));
        Assert.That(text, Does.Not.Contain("Kernel trace events"));
    }

    [Test]
    public void Demo_WithTrace_ListsVfiosEvents()
    {
        (int exit, string text) = RunDemo(new DemoOptions { Trace = true });

        Assert.That(exit, Is.Zero, text);
        Assert.That(text, Does.Contain("Kernel trace events"));
        Assert.That(text, Does.Contain("vfio_group_create 2 iommu_group 2"));
        Assert.That(text, Does.Contain("vfio_dma_map"));
        Assert.That(text, Does.Contain("vfio_dma_unmap"));
        Assert.That(text, Does.Contain("vfio_group_release 2"));
    }

    [Test]
    public void Demo_OnAMachineFile_RunsOnIt()
    {
        string path = TempMachine(MachineDescriptionReader.DefaultJson);
        try
        {
            (int exit, string text) = RunDemo(new DemoOptions { MachineFile = path });
            Assert.That(exit, Is.Zero, text);
            Assert.That(text, Does.Contain($"The machine: {path}"));
            Assert.That(text, Does.Contain("bytes arrived"));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Test]
    public void Demo_WithAMissingMachineFile_ExitsNonZero()
    {
        (int exit, string text) = RunDemo(new DemoOptions { MachineFile = "/nonexistent/machine.json" });

        Assert.That(exit, Is.EqualTo(2), text);
        Assert.That(text, Does.StartWith("vfio-sim: cannot load the machine description /nonexistent/machine.json: "), "one plain line on stderr, nothing on stdout");
        Assert.That(text.TrimEnd('\n').Split('\n'), Has.Length.EqualTo(1));
        Assert.That(text, Does.Not.Contain("Every step"));
    }

    [Test]
    public void Demo_OnAMachineWithoutEdu_IsAUsageError_ThatSaysWhatTheMachineLacks()
    {
        string path = TempMachine("""
            {
              "name": "no-edu",
              "memory": { "ram": "1G" },
              "iommu": { "pgsizes": ["4K"] },
              "pci": [ { "slot": 0, "type": "generic", "vendor": "0x8086", "device": "0x29c0", "class": "0x060000", "intx": "none", "resets": [] } ]
            }
            """);
        try
        {
            (int exit, string text) = RunDemo(new DemoOptions { MachineFile = path });
            Assert.That(exit, Is.EqualTo(2), text);
            Assert.That(text, Does.StartWith("vfio-sim: this machine cannot run the demo: the machine has no edu device (PCI id 1234:11e8)"));
            Assert.That(text, Does.Not.Contain("did not do what the kernel does"));
            Assert.That(text, Does.Not.Contain("Self-test"), "nothing runs on a machine that cannot run the demo");
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Test]
    public void ADemoStepThatMisbehaves_SaysWhatItExpectedAndWhatItFound_AndExitsOne()
    {
        // edu behind a PCIe-to-PCI bridge with a NIC that stays on its host driver: one group,
        // which vfio-pci's edu cannot make viable. The kernel does what it should (the group is
        // not viable); the demo's step expected a viable group and says what it found instead.
        string path = TempMachine("""
            {
              "name": "edu-shares-a-group",
              "memory": { "ram": "1G" },
              "iommu": { "pgsizes": ["4K"] },
              "pci": [ { "slot": 1, "type": "root-port", "acs": true, "children": [
                { "slot": 0, "type": "pcie-to-pci-bridge", "children": [
                  { "slot": 1, "type": "edu", "driver": "edu" },
                  { "slot": 2, "type": "nic", "driver": "e1000e" } ] } ] } ]
            }
            """);
        try
        {
            (int exit, string text) = RunDemo(new DemoOptions { MachineFile = path });
            Assert.That(exit, Is.EqualTo(1), text);
            Assert.That(text, Does.Contain("FAIL expected: the group status (VIABLE, no CONTAINER_SET yet) = Viable"));
            Assert.That(text, Does.Contain("found:    the group status (VIABLE, no CONTAINER_SET yet) = None"));
            Assert.That(text, Does.Contain("Step 5. Open the group and ask VFIO_GROUP_GET_STATUS did not do what the kernel does: expected the group status (VIABLE, no CONTAINER_SET yet) = Viable; found the group status (VIABLE, no CONTAINER_SET yet) = None"));
            Assert.That(text, Does.Not.Contain(" 6. "), "the demo stops at the step that misbehaved");
        }
        finally
        {
            File.Delete(path);
        }
    }
}
