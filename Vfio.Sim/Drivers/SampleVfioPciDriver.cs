// A minimal vfio bus driver for PCI functions, for trying designs of the vfio core without
// vfio-pci in the way (the shape every vfio bus driver has: alloc, register, unregister,
// put). It binds only through driver_override, registers one vfio_device per function —
// IOMMU-backed (vfio_register_group_dev) or, when asked, emulated-IOMMU
// (vfio_register_emulated_iommu_dev, the mdev path) — and its ops count what the core
// calls and let a caller hook open and request.
//
// Lock rules: probe and remove run under the function's device_lock (the driver core
// holds it); remove blocks in UnregisterGroupDev until user space has closed the device.

using System.Collections.Concurrent;
using Vfio.Core;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Pci;

namespace Vfio.Sim.Drivers;

/// <summary>
/// A vfio bus driver that binds only by <c>driver_override</c> and registers one
/// <see cref="VfioDevice"/> per PCI function. Add it with
/// <c>builder.AddPciDriver(_ =&gt; new SampleVfioPciDriver())</c> and bind with
/// <c>sim.Bind(bdf, SampleVfioPciDriver.DefaultName)</c>.
/// </summary>
public sealed class SampleVfioPciDriver : PciDriver
{
    /// <summary>The driver's default name.</summary>
    public const string DefaultName = "vfio-sample";

    private readonly ConcurrentDictionary<PciDevice, VfioDevice> _devices = new();
    private int _probeError;

    /// <summary>A driver called <paramref name="name"/>.</summary>
    public SampleVfioPciDriver(string name = DefaultName)
        : base(name)
    {
        Ops = new SampleVfioOps(name);
    }

    /// <inheritdoc/>
    public override bool DriverManagedDma => true;

    /// <summary>The ops of devices probed without <see cref="CustomOps"/>: they count calls and expose hooks.</summary>
    public SampleVfioOps Ops { get; }

    /// <summary>Devices probed from now on register as emulated-IOMMU devices (an mdev's path): no IOMMU group of their own, a software group from vfio.</summary>
    public bool Emulated { get; set; }

    /// <summary>Ops for devices probed from now on instead of <see cref="Ops"/> (for instance an emulated-IOMMU device with <c>dma_unmap</c>).</summary>
    public IVfioDeviceOps? CustomOps { get; set; }

    /// <summary>The vfio devices bound now, by PCI function.</summary>
    public IReadOnlyDictionary<PciDevice, VfioDevice> Devices => _devices;

    /// <summary>The errno of the last probe that failed (0 when none did).</summary>
    public int LastProbeError => Volatile.Read(ref _probeError);

    /// <summary>The vfio device of <paramref name="function"/>; throws when it is not bound here.</summary>
    public VfioDevice DeviceOf(PciDevice function)
    {
        ArgumentNullException.ThrowIfNull(function);
        return _devices.TryGetValue(function, out VfioDevice? v) ? v : throw new InvalidOperationException($"{function.Name} is not bound to {Name}");
    }

    /// <inheritdoc/>
    public override int Probe(PciDevice dev, PciDeviceId id)
    {
        VfioDevice? vdev = VfioDevice.Alloc(dev, CustomOps ?? Ops, static () => new SampleVfioDevice(), out int err);
        if (vdev is null)
        {
            Volatile.Write(ref _probeError, err);
            return err;
        }

        err = Emulated ? vdev.RegisterEmulatedIommuDev() : vdev.RegisterGroupDev();
        if (err != 0)
        {
            Volatile.Write(ref _probeError, err);
            vdev.PutDevice();
            return err;
        }

        _devices[dev] = vdev;
        return 0;
    }

    /// <inheritdoc/>
    public override void Remove(PciDevice dev)
    {
        VfioDevice vdev = _devices[dev];
        vdev.UnregisterGroupDev();
        _devices.TryRemove(dev, out _);
        vdev.PutDevice();
    }

    private sealed class SampleVfioDevice : VfioDevice
    {
    }
}

/// <summary>
/// The vfio device ops of <see cref="SampleVfioPciDriver"/>: counts open, close and release,
/// records each <c>request(count)</c>, answers VFIO_DEVICE_RESET, and lets a caller hook open
/// and request.
/// </summary>
public sealed class SampleVfioOps : VfioDeviceOps
{
    private readonly string _name;
    private int _opens;
    private int _closes;
    private int _releases;

    internal SampleVfioOps(string name) => _name = name;

    /// <inheritdoc/>
    public override string Name => _name;

    /// <summary>Successful first opens.</summary>
    public int Opens => Volatile.Read(ref _opens);

    /// <summary>Last closes.</summary>
    public int Closes => Volatile.Read(ref _closes);

    /// <summary>Releases (the last put of a device).</summary>
    public int Releases => Volatile.Read(ref _releases);

    /// <summary>The counts the core passed to request(), in order.</summary>
    public ConcurrentQueue<uint> Requests { get; } = new();

    /// <summary>Called on each request(count), after it is recorded (for instance to close the user's fds, as a cooperative user would).</summary>
    public Action<VfioDevice, uint>? OnRequest { get; set; }

    /// <summary>Decides the first open's result (0 or -errno); null opens.</summary>
    public Func<VfioDevice, int>? OnOpen { get; set; }

    /// <inheritdoc/>
    public override int OpenDevice(VfioDevice device)
    {
        int err = OnOpen?.Invoke(device) ?? 0;
        if (err == 0)
        {
            Interlocked.Increment(ref _opens);
        }

        return err;
    }

    /// <inheritdoc/>
    public override void CloseDevice(VfioDevice device) => Interlocked.Increment(ref _closes);

    /// <inheritdoc/>
    public override void Release(VfioDevice device) => Interlocked.Increment(ref _releases);

    /// <inheritdoc/>
    public override void Request(VfioDevice device, uint count)
    {
        Requests.Enqueue(count);
        OnRequest?.Invoke(device, count);
    }

    /// <inheritdoc/>
    public override long Ioctl(VfioDevice device, uint cmd, ulong arg) => cmd == VfioIoctl.DeviceReset ? 0 : Errno.ENOTTY.Negative();
}
