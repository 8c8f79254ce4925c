// Tests Vfio.Sim/Shell/SimShell*.cs on the default machine: each command prints what the
// real tool prints, sysfs writes take effect, refused calls print the errno and the kernel's
// reason and change nothing, the vfio.rst flow typed in the shell ends with a DMA map and
// unmap and nothing pinned or open, strace shows the shell's syscalls, and completion
// offers commands, paths and uapi names.

using NUnit.Framework;
using Vfio.Sim;
using Vfio.Sim.Shell;

namespace Vfio.Tests.Sim;

public sealed class SimShellTests
{
    private VfioSim _sim = null!;
    private SimShell _sh = null!;

    [SetUp]
    public void Boot()
    {
        _sim = VfioSim.CreateBuilder().UseSeed(1).AddVfioPci().AddMtty().Build();
        _sh = new SimShell(_sim);
    }

    private (int Status, string Out) Sh(string line)
    {
        var w = new StringWriter();
        int status = _sh.Execute(line, w);
        return (status, w.ToString());
    }

    private const string BindEdu = """
        echo vfio-pci > /sys/bus/pci/devices/0000:01:00.0/driver_override
        echo 0000:01:00.0 > /sys/bus/pci/devices/0000:01:00.0/driver/unbind
        echo 0000:01:00.0 > /sys/bus/pci/drivers_probe
        """;

    [Test]
    public void Lspci_PrintsOneLinePerFunction_WithClassNamesAndIds_AsPciutilsDoes()
    {
        (int status, string output) = Sh("lspci");
        Assert.That(status, Is.Zero);
        Assert.That(output, Does.Contain("01:00.0 Unclassified device [00ff]: Device 1234:11e8 (rev 10)\n"));
        Assert.That(output, Does.Contain("02:00.1 Ethernet controller: Intel Corporation I350 Gigabit Network Connection\n"));
        Assert.That(output, Does.StartWith("00:00.0 Host bridge: "));
    }

    [Test]
    public void LspciNnWithASlot_ShowsOnlyThoseFunctions_WithClassAndIdsInBrackets()
    {
        (_, string output) = Sh("lspci -nn -s 02:00");
        Assert.That(output, Is.EqualTo(
            "02:00.0 Ethernet controller [0200]: Intel Corporation I350 Gigabit Network Connection [8086:1521]\n"
            + "02:00.1 Ethernet controller [0200]: Intel Corporation I350 Gigabit Network Connection [8086:1521]\n"));
    }

    [Test]
    public void LspciK_ShowsTheDriverInUseAndTheModulesThatMatch()
    {
        (_, string output) = Sh("lspci -k -s 01:00.0");
        Assert.That(output, Does.Contain("\tKernel driver in use: edu\n"));
        Assert.That(output, Does.Contain("\tKernel modules: edu\n"));
    }

    [Test]
    public void LspciTv_DrawsTheBusTree_WithBridgesBusRangesAndBars()
    {
        (_, string output) = Sh("lspci -tv");
        Assert.That(output, Does.StartWith("-[0000:00]-+-00.0  Intel Corporation"));
        Assert.That(output, Does.Contain("           +-01.0-[01]----00.0  Device 1234:11e8\n"));
        Assert.That(output, Does.Contain("           +-02.0-[02]--+-00.0  Intel Corporation I350 Gigabit Network Connection\n"));
        Assert.That(output, Does.Contain("           |            \\-00.1  Intel Corporation I350 Gigabit Network Connection\n"));
        Assert.That(output, Does.Contain("+-03.0-[03-04]----00.0-[04]--+-01.0"));
        Assert.That(output, Does.Contain("           \\-09.0-[0a]----00.0"));
    }

    [Test]
    public void Cat_ReadsSysfsThroughTheShellsSyscalls_AndAMissingFileIsEnoent()
    {
        _sim.Strace.Start(_sh.Process);
        Assert.That(Sh("cat /sys/bus/pci/devices/0000:01:00.0/vendor"), Is.EqualTo((0, "0x1234\n")));
        Assert.That(_sim.Strace.Records.Select(r => r.Syscall), Is.EqualTo(new[] { "openat", "read", "read", "close" }));
        Assert.That(Sh("cat /sys/nope"), Is.EqualTo((1, "cat: /sys/nope: No such file or directory\n")));
    }

    [Test]
    public void ReadlinkLsAndTree_ShowTheGroupOfTheDualFunctionCard()
    {
        Assert.That(Sh("readlink /sys/bus/pci/devices/0000:02:00.1/iommu_group").Out, Is.EqualTo("../../../../kernel/iommu_groups/4\n"));
        Assert.That(Sh("readlink -f /sys/bus/pci/devices/0000:02:00.1/iommu_group").Out, Is.EqualTo("/sys/kernel/iommu_groups/4\n"));
        Assert.That(Sh("ls /sys/kernel/iommu_groups/4/devices").Out, Is.EqualTo("0000:02:00.0\n0000:02:00.1\n"));
        Assert.That(Sh("ls -l /sys/bus/pci/devices/0000:02:00.0/driver").Out, Does.StartWith("lrwxrwxrwx 1 root root 0 ").And.EndWith(" -> ../../../../bus/pci/drivers/igb\n"));
        string tree = Sh("tree -L 2 /sys/kernel/iommu_groups/4").Out;
        Assert.That(tree, Does.Contain("├── devices\n│   ├── 0000:02:00.0 -> ../../../../devices/pci0000:00/0000:00:02.0/0000:02:00.0\n"));
        Assert.That(tree, Does.EndWith("\n1 directory, 4 files\n"));
    }

    [Test]
    public void SysfsWrites_BindEduToVfioPci_AndItsGroupNodeAppears()
    {
        Assert.That(Sh(BindEdu).Status, Is.Zero);
        Assert.That(_sim.DriverOf("0000:01:00.0"), Is.EqualTo("vfio-pci"));
        Assert.That(Sh("ls /dev/vfio").Out, Is.EqualTo("2\nvfio\n"));
    }

    [Test]
    public void AWriteToVfioPcisBindWithoutDriverOverride_IsEnodev_AndLeavesTheDeviceOnEdu()
    {
        (int status, string output) = Sh("echo 0000:01:00.0 > /sys/bus/pci/drivers/vfio-pci/bind");
        Assert.That(status, Is.EqualTo(1));
        Assert.That(output, Does.StartWith("sh: echo: write error: No such device"));
        Assert.That(_sim.DriverOf("0000:01:00.0"), Is.EqualTo("edu"));
        Assert.That(_sh.Process.Files.Open.Select(f => f.Fd), Is.EqualTo(new[] { 0, 1, 2 }), "the redirection's fd is closed");
    }

    [Test]
    public void TheVfioRstFlow_TypedInTheShell_MapsAndUnmapsDma_AndLeavesNothingPinnedOrOpen()
    {
        Sh(BindEdu);
        Assert.That(Sh("open /dev/vfio/vfio"), Is.EqualTo((0, "fd 3\n")));
        Assert.That(Sh("VFIO_GET_API_VERSION 3"), Is.EqualTo((0, "0\n")));
        Assert.That(Sh("VFIO_CHECK_EXTENSION 3 VFIO_TYPE1v2_IOMMU"), Is.EqualTo((0, "1\n")));
        Assert.That(Sh("open /dev/vfio/2"), Is.EqualTo((0, "fd 4\n")));
        Assert.That(Sh("VFIO_GROUP_GET_STATUS 4"), Is.EqualTo((0, "flags=VFIO_GROUP_FLAGS_VIABLE\n")));
        Assert.That(Sh("VFIO_GROUP_SET_CONTAINER 4 3").Status, Is.Zero);
        Assert.That(Sh("VFIO_SET_IOMMU 3 VFIO_TYPE1v2_IOMMU").Status, Is.Zero);
        Assert.That(Sh("VFIO_GROUP_GET_STATUS 4").Out, Is.EqualTo("flags=VFIO_GROUP_FLAGS_VIABLE|VFIO_GROUP_FLAGS_CONTAINER_SET\n"));
        Assert.That(Sh("VFIO_IOMMU_GET_INFO 3").Out, Does.StartWith("flags=VFIO_IOMMU_INFO_PGSIZES|VFIO_IOMMU_INFO_CAPS iova_pgsizes=").And.Contain("iova ranges: [0x0-"));
        Assert.That(Sh("mmap 1M").Out, Does.Match("^buf0 at 0x[0-9a-f]+ \\(1048576 bytes\\)\n$"));
        Assert.That(Sh("VFIO_IOMMU_MAP_DMA 3 buf0 iova=0 size=1M rw").Status, Is.Zero);
        Assert.That(_sim.PinnedPages, Is.EqualTo(256));
        Assert.That(Sh("VFIO_GROUP_GET_DEVICE_FD 4 0000:01:00.0"), Is.EqualTo((0, "fd 5\n")));
        Assert.That(Sh("VFIO_DEVICE_GET_INFO 5").Out, Does.StartWith("flags=VFIO_DEVICE_FLAGS_RESET|VFIO_DEVICE_FLAGS_PCI"));
        Assert.That(Sh("VFIO_DEVICE_GET_REGION_INFO 5 0").Out, Does.StartWith("index=0 (BAR0) flags=VFIO_REGION_INFO_FLAG_READ|VFIO_REGION_INFO_FLAG_WRITE|VFIO_REGION_INFO_FLAG_MMAP"));
        Assert.That(Sh("region read 5 BAR0 0x0 4").Out, Does.Match("^0x[0-9a-f]{8}\n$"), "edu's identification register");
        Assert.That(Sh("region read 5 CONFIG 0 2"), Is.EqualTo((0, "0x1234\n")), "the vendor id in config space");
        Assert.That(Sh("eventfd"), Is.EqualTo((0, "fd 6\n")));
        Assert.That(Sh("VFIO_DEVICE_SET_IRQS 5 MSI 0 1 eventfd=6").Status, Is.Zero);
        Assert.That(Sh("VFIO_DEVICE_SET_IRQS 5 MSI 0 1 trigger").Status, Is.Zero);
        Assert.That(Sh("read 6"), Is.EqualTo((0, "1\n")), "the triggered MSI signalled the eventfd");
        Assert.That(Sh("lsof -p " + _sh.Process.Pid).Out, Does.Contain("/dev/vfio/vfio").And.Contain("/dev/vfio/2").And.Contain("anon_inode:[eventfd]"));
        Assert.That(Sh("VFIO_IOMMU_UNMAP_DMA 3 iova=0 size=1M"), Is.EqualTo((0, "unmapped 1048576 bytes\n")));
        Assert.That(_sim.PinnedPages, Is.Zero);
        Assert.That(Sh("VFIO_DEVICE_SET_IRQS 5 MSI 0 0 disable; close 6 5 4 3; munmap buf0").Status, Is.Zero);
        Assert.That(_sh.Process.Files.Open.Select(f => f.Fd), Is.EqualTo(new[] { 0, 1, 2 }));
    }

    [Test]
    public void SetContainerOnAGroupThatIsNotViable_PrintsTheKernelsReasonAndEperm_AndChangesNothing()
    {
        Sh("echo 0000:02:00.1 > /sys/bus/pci/devices/0000:02:00.1/driver/unbind; echo vfio-pci > /sys/bus/pci/devices/0000:02:00.1/driver_override; echo 0000:02:00.1 > /sys/bus/pci/drivers_probe");
        Sh("open /dev/vfio/vfio; open /dev/vfio/4");
        Assert.That(Sh("VFIO_GROUP_GET_STATUS 4").Out, Is.EqualTo("flags=0\n"));
        (int status, string output) = Sh("VFIO_GROUP_SET_CONTAINER 4 3");
        Assert.That(status, Is.EqualTo(1));
        Assert.That(output, Does.StartWith("VFIO_GROUP_SET_CONTAINER: ").And.EndWith(" — EPERM (Operation not permitted)\n"));
        Assert.That(output, Does.Contain("viable"));
        Assert.That(Sh("VFIO_GROUP_GET_STATUS 4").Out, Is.EqualTo("flags=0\n"), "no container was set");
        Assert.That(Sh("VFIO_SET_IOMMU 3 VFIO_TYPE1v2_IOMMU").Out, Does.StartWith("VFIO_SET_IOMMU: ").And.Contain("EINVAL"), "the container still has no group");
    }

    [Test]
    public void StraceOn_PrintsEachCommandsSyscalls_WithTheIoctlsByName_UntilOff()
    {
        Sh(BindEdu);
        Sh("open /dev/vfio/vfio");
        Assert.That(Sh("strace on; VFIO_GET_API_VERSION 3").Out, Is.EqualTo("0\nioctl(3, VFIO_GET_API_VERSION) = 0\n"));
        Assert.That(Sh("VFIO_SET_IOMMU 3 VFIO_TYPE1v2_IOMMU").Out, Does.Contain("ioctl(3, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) = -1 EINVAL (Invalid argument)"));
        Assert.That(Sh("strace off; VFIO_GET_API_VERSION 3").Out, Is.EqualTo("0\n"));
    }

    [Test]
    public void UnquotedStarsAndQuestionMarks_ExpandToSortedPaths_QuotedOnesAndNonMatchesStayLiteral()
    {
        Assert.That(Sh("echo /sys/kernel/iommu_groups/4/devices/*").Out, Is.EqualTo("/sys/kernel/iommu_groups/4/devices/0000:02:00.0 /sys/kernel/iommu_groups/4/devices/0000:02:00.1\n"));
        Assert.That(Sh("readlink /sys/bus/pci/devices/0000:02:00.?/iommu_group").Out, Is.EqualTo("../../../../kernel/iommu_groups/4\n../../../../kernel/iommu_groups/4\n"));
        Assert.That(Sh("echo '/sys/kernel/iommu_groups/4/devices/*' \"a?b\"").Out, Is.EqualTo("/sys/kernel/iommu_groups/4/devices/* a?b\n"));
        Assert.That(Sh("echo /nonexistent/*").Out, Is.EqualTo("/nonexistent/*\n"));
    }

    [Test]
    public void TheShellsTerminal_IsOnFds0To2_AndPsAndLsofShowIt()
    {
        Assert.That(Sh("ps").Out, Does.StartWith("    PID TTY          TIME CMD\n").And.Contain($"pts/0    00:00:00 sh\n"));
        string lsof = Sh("lsof -p " + _sh.Process.Pid).Out;
        Assert.That(lsof.Split('\n').Count(l => l.EndsWith("/dev/pts/0", StringComparison.Ordinal)), Is.EqualTo(3), lsof);
    }

    [Test]
    public void TheGrammar_HasQuotesCommentsAndOrAndLastStatus()
    {
        Assert.That(Sh("echo 'a  b' \"c $?\" d\\ e # comment").Out, Is.EqualTo("a  b c 0 d e\n"));
        Assert.That(Sh("false && echo no; echo $?").Out, Is.EqualTo("1\n"));
        Assert.That(Sh("false || echo yes").Out, Is.EqualTo("yes\n"));
        Assert.That(Sh("frobnicate"), Is.EqualTo((127, "sh: frobnicate: not found\n")));
        Assert.That(Sh("echo 'open"), Is.EqualTo((2, "sh: syntax error: unterminated quoted string\n")));
        Assert.That(Sh("VFIO_GET_API_VERSION three").Status, Is.EqualTo(2), "a usage error");
    }

    [Test]
    public void Complete_OffersCommandsThenPathsThenUapiNames()
    {
        Assert.That(_sh.Complete("VFIO_GROUP_G", 12), Is.EqualTo(new[] { "VFIO_GROUP_GET_DEVICE_FD", "VFIO_GROUP_GET_STATUS" }));
        Assert.That(_sh.Complete("cat /sys/bus/pci/dev", 20), Is.EqualTo(new[] { "/sys/bus/pci/devices/" }));
        Assert.That(_sh.Complete("echo 1 > /sys/bus/pci/drivers_pr", 32), Is.EqualTo(new[] { "/sys/bus/pci/drivers_probe" }));
        Assert.That(_sh.Complete("VFIO_SET_IOMMU 3 VFIO_TYPE1", 27), Is.EqualTo(new[] { "VFIO_TYPE1_IOMMU", "VFIO_TYPE1_NESTING_IOMMU", "VFIO_TYPE1v2_IOMMU" }));
        Assert.That(_sh.Complete("VFIO_DEVICE_SET_IRQS 5 M", 24), Is.EqualTo(new[] { "MSI", "MSIX" }));
        Assert.That(_sh.Complete("ls; lsp", 7), Is.EqualTo(new[] { "lspci" }));
    }

    [Test]
    public void Help_ListsEveryCommandWithOneLine()
    {
        string help = Sh("help").Out;
        foreach (string c in _sh.Commands)
        {
            Assert.That(help, Does.Contain($"  {c} "), c);
        }

        Assert.That(Sh("help VFIO_IOMMU_MAP_DMA").Out, Does.StartWith("usage: VFIO_IOMMU_MAP_DMA FD BUF"));
    }
}
