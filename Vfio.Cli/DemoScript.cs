// The steps of `vfio-sim demo`: the "VFIO Usage Example" of
// Documentation/driver-api/vfio.rst on a simulated machine, done by a user process through
// sysfs and the vfio fds, then carried on with a DMA of QEMU's edu device through the IOMMU:
// the bytes arrive while the IOVA is mapped and the IOMMU faults once it is unmapped. Each
// step checks its result against what the kernel does and the script stops at the first
// step that misbehaves.

using System.Globalization;
using Spectre.Console;
using Vfio.Core.Client;
using Vfio.Kernel;
using Vfio.Platform;
using Vfio.Platform.Pci;
using Vfio.Platform.Proc;

namespace Vfio.Cli;

/// <summary>One run of the vfio.rst flow; build and <see cref="Run"/> it inside a kernel task.</summary>
internal sealed partial class DemoScript(IAnsiConsole console, SimMachine machine)
{
    /// <summary>The IOVA the user buffer is mapped at (vfio.rst uses 0).</summary>
    public const ulong Iova = 0;

    /// <summary>The user buffer: 1 MiB, as in vfio.rst.</summary>
    public const ulong BufferSize = 1 << 20;

    /// <summary>Where in the buffer edu writes the bytes back (a page of its own).</summary>
    public const ulong BackOffset = 0x10000;

    private const string Greeting = "Hello from edu, through the IOMMU! ";

    private readonly SimProcess _p = machine.CreateProcess("vfio-demo", Credentials.Root);
    private int _step;
    private PciDevice? _edu;
    private int _groupId;
    private string? _hostDriver;
    private VfioContainerFd? _container;
    private VfioGroupFd? _group;
    private VfioDeviceFd? _device;
    private ulong _va;

    /// <summary>The title of the step that misbehaved, or null when every step did what the kernel does.</summary>
    public string? FailedStep { get; private set; }

    /// <summary>Runs the steps in order; false (and <see cref="FailedStep"/> set) at the first that misbehaves.</summary>
    public bool Run()
    {
        bool ok = Step("Find the edu device and its IOMMU group", FindEdu)
            && Step("Is the group viable?", GroupViability)
            && Step("Unbind edu from its host driver and bind it to vfio-pci", BindToVfioPci)
            && Step("Open the container /dev/vfio/vfio", OpenContainer)
            && Step("Open the group and ask VFIO_GROUP_GET_STATUS", OpenGroup)
            && Step("VFIO_GROUP_SET_CONTAINER", SetContainer)
            && Step("VFIO_SET_IOMMU(VFIO_TYPE1v2_IOMMU)", SetIommu)
            && Step("VFIO_IOMMU_GET_INFO", IommuInfo)
            && Step($"mmap {BufferSize >> 20} MiB and VFIO_IOMMU_MAP_DMA it at IOVA 0x{Iova:x}", MapBuffer)
            && Step("VFIO_GROUP_GET_DEVICE_FD and VFIO_DEVICE_GET_INFO", GetDevice)
            && Step("VFIO_DEVICE_GET_REGION_INFO for every region", Regions)
            && Step("VFIO_DEVICE_GET_IRQ_INFO for every IRQ index", Irqs)
            && Step("VFIO_DEVICE_RESET, then enable bus mastering", ResetDevice)
            && Step("edu DMA, RAM -> device: the user buffer into edu's buffer at 0x40000", DmaIn)
            && Step("edu DMA, device -> RAM: edu's buffer back to the user buffer", DmaOut)
            && Step($"VFIO_IOMMU_UNMAP_DMA of IOVA 0x{Iova:x}", Unmap)
            && Step("The same DMA again, now that the IOVA is unmapped", DmaFaults)
            && Step("Close the device, group and container fds", CloseFds)
            && Step("Unbind edu from vfio-pci and give it back to its host driver", Unbind);
        if (!ok)
        {
            CloseQuietly();
        }

        return ok;
    }

    private bool Step(string title, Func<string> body)
    {
        _step++;
        console.MarkupLine($"[bold]{_step,2}. {Markup.Escape(title)}[/]");
        string result;
        try
        {
            result = body();
        }
        catch (Exception e) when (e is DemoCheckException or VfioException or InvalidOperationException)
        {
            console.MarkupLine($"    [red]FAIL[/] {Markup.Escape(e.Message)}");
            FailedStep = $"{_step}. {title}";
            return false;
        }

        foreach (string line in result.Split('\n'))
        {
            console.MarkupLine($"    {Markup.Escape(line)}");
        }

        console.MarkupLine("    [green]ok[/]");
        return true;
    }

    private static void Check(bool condition, string expected)
    {
        if (!condition)
        {
            throw new DemoCheckException(expected);
        }
    }

    private static string Hex(ulong v) => string.Create(CultureInfo.InvariantCulture, $"0x{v:x}");

    private string Sysfs(string path) => machine.Sysfs.Read(path, out int err, _p)?.Trim() ?? throw new DemoCheckException($"reading {path} failed: {ErrnoExtensions.FromReturn(err).Describe()}");

    private void SysfsWrite(string path, string value)
    {
        long rc = machine.Sysfs.Write(path, value, _p);
        Check(rc >= 0, $"echo {value} > {path}: {(rc < 0 ? ErrnoExtensions.FromReturn(rc).Describe() : "")} {ErrorReason.Current}");
    }

    private string? DriverOf(string bdf) => machine.Sysfs.ReadLink($"/sys/bus/pci/devices/{bdf}/driver") is { } link ? link[(link.LastIndexOf('/') + 1)..] : null;

    private sealed class DemoCheckException(string message) : Exception(message);
}
