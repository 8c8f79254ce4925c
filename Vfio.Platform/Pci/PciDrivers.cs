// Drivers the machine binds to its devices: stand-ins for the host's own drivers (a
// device starts bound to one, as on a real host), pci-stub (drivers/pci/pci-stub.c) and
// pcieport (drivers/pci/pcie/portdrv.c). pci-stub and pcieport set driver_managed_dma:
// binding them does not claim a group for kernel DMA, which is what makes a group with a
// bridge or a stubbed function viable for vfio.

using Vfio.Kernel;

namespace Vfio.Platform.Pci;

/// <summary>A stand-in for a host kernel driver (e1000e, nvme…): binds by id and uses the DMA API.</summary>
public sealed class HostPciDriver : PciDriver
{
    /// <summary>A driver named <paramref name="name"/> for the listed ids.</summary>
    public HostPciDriver(string name, params PciDeviceId[] ids)
        : base(name, ids)
    {
    }

    /// <summary>Optional probe behaviour for tests (default: take the device).</summary>
    public Func<PciDevice, int>? OnProbe { get; set; }

    /// <summary>Optional remove behaviour for tests (it runs under device_lock and may block).</summary>
    public Action<PciDevice>? OnRemove { get; set; }

    /// <summary>
    /// Optional -&gt;sriov_configure for tests (null: the driver has none, so sriov_numvfs is
    /// -ENOENT); <see cref="PciDevice.SriovConfigureSimple"/> is what simple PF drivers do.
    /// </summary>
    public Func<PciDevice, int, int>? OnSriovConfigure { get; set; }

    /// <inheritdoc/>
    public override bool HasSriovConfigure => OnSriovConfigure is not null;

    /// <inheritdoc/>
    public override int SriovConfigure(PciDevice dev, int numVfs) => OnSriovConfigure?.Invoke(dev, numVfs) ?? Errno.ENOENT.Negative();

    /// <summary>Probes so far.</summary>
    public int ProbeCount { get; private set; }

    /// <summary>Removes so far.</summary>
    public int RemoveCount { get; private set; }

    /// <inheritdoc/>
    public override int Probe(PciDevice dev, PciDeviceId id)
    {
        ProbeCount++;
        return OnProbe?.Invoke(dev) ?? 0;
    }

    /// <inheritdoc/>
    public override void Remove(PciDevice dev)
    {
        RemoveCount++;
        OnRemove?.Invoke(dev);
    }
}

/// <summary>pci-stub: claims devices listed in its ids, through new_id, or by driver_override, and does nothing with them.</summary>
public sealed class PciStubDriver : PciDriver
{
    /// <summary>pci-stub with the <c>ids=</c> module parameter.</summary>
    public PciStubDriver(params PciDeviceId[] ids)
        : base("pci-stub", ids)
    {
    }

    /// <inheritdoc/>
    public override bool DriverManagedDma => true;

    /// <inheritdoc/>
    public override int Probe(PciDevice dev, PciDeviceId id) => 0;
}

/// <summary>pcieport: binds PCI Express root and switch ports (class 0x0604).</summary>
public sealed class PcieportDriver : PciDriver
{
    /// <summary>The port driver.</summary>
    public PcieportDriver()
        : base("pcieport", [PciDeviceId.ForClass(0x060400, 0xffffff), PciDeviceId.ForClass(0x060401, 0xffffff)])
    {
    }

    /// <inheritdoc/>
    public override bool DriverManagedDma => true;

    /// <inheritdoc/>
    public override int Probe(PciDevice dev, PciDeviceId id)
        => dev.IsPcieport ? 0 : Errno.ENODEV.Negative();
}
