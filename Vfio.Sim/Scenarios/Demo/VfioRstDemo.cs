// The "VFIO Usage Example" of Documentation/driver-api/vfio.rst, done by a user process
// through sysfs and the vfio fds on the simulated machine, then carried on with a DMA of
// QEMU's edu device through the IOMMU: the bytes arrive while the IOVA is mapped and the
// IOMMU faults once it is unmapped. Each step checks its result against what the kernel
// does and the run stops at the first step that misbehaves (closing what it opened).
// `vfio-sim demo` runs this scenario; the steps live in VfioRstDemoRun.

using Vfio.Platform.Devices;
using Vfio.Platform.Pci;

namespace Vfio.Sim.Scenarios;

/// <summary>The vfio.rst usage example with an edu DMA through the IOMMU (<c>vfio-rst-demo</c>).</summary>
internal sealed class VfioRstDemo : Scenario
{
    /// <summary>The IOVA the user buffer is mapped at (vfio.rst uses 0).</summary>
    public const ulong Iova = 0;

    /// <summary>The user buffer: 1 MiB, as in vfio.rst.</summary>
    public const ulong BufferSize = 1 << 20;

    /// <summary>Where in the buffer edu writes the bytes back (a page of its own).</summary>
    public const ulong BackOffset = 0x10000;

    /// <inheritdoc/>
    public override string Name => "vfio-rst-demo";

    /// <inheritdoc/>
    public override string Description =>
        "The VFIO usage example of Documentation/driver-api/vfio.rst on QEMU's edu device: bind it to vfio-pci, " +
        "container, group, type1, MAP_DMA, an edu DMA through the IOMMU both ways, and the IOMMU fault after UNMAP_DMA.";

    /// <inheritdoc/>
    public override ScenarioKind Kind => ScenarioKind.Demo;

    /// <inheritdoc/>
    public override string? Unmet(VfioSim sim)
    {
        ArgumentNullException.ThrowIfNull(sim);
        if (FindEdu(sim) is not { } edu)
        {
            return "the machine has no edu device (PCI id 1234:11e8): the demo drives QEMU's edu; add one to the machine description (\"type\": \"edu\")";
        }

        if (sim.Machine.Iommu is null)
        {
            return "the machine has no IOMMU: vfio needs one for a device's IOMMU group (\"iommu\" in the machine description)";
        }

        if (edu.IommuGroup is null)
        {
            return $"the edu device {edu.Name} is in no IOMMU group";
        }

        if (edu.Driver is null)
        {
            return $"the edu device {edu.Name} is bound to no host driver at boot: the demo shows why such a group is not viable and unbinds it (\"driver\": \"edu\" in the machine description)";
        }

        if (edu.Driver.Name == Vfio.Pci.VfioPciDriver.DriverName)
        {
            return $"the edu device {edu.Name} is bound to vfio-pci at boot; the demo binds it itself";
        }

        return null;
    }

    /// <inheritdoc/>
    public override void Execute(ScenarioContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        new VfioRstDemoRun(context).Run();
    }

    /// <summary>The machine's first edu function (vendor 1234, device 11e8), or null.</summary>
    internal static PciDevice? FindEdu(VfioSim sim)
        => sim.Machine.Pci.Devices.OfType<PciDevice>().FirstOrDefault(d => d.Identity.Vendor == EduDevice.VendorId && d.Identity.Device == EduDevice.DeviceId);
}
