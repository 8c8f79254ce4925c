// Models drivers/vfio/pci/vfio_pci.c (v6.12): the "vfio-pci" PCI driver — an id table that
// matches only through driver_override, the ids= dynamic ids, the built-in denylist, probe
// (denylist, then vfio_pci_core_register_device), remove (SR-IOV off, the unregister wait,
// then the last put), sriov_configure behind enable_sriov, and module load.
//
// Lock rules: probe and remove run under the PCI device's device_lock (the driver core
// holds it); remove blocks in VfioDevice.UnregisterGroupDev until every fd is closed.

using System.Globalization;
using Vfio.Core;
using Vfio.Kernel;
using Vfio.Platform;
using Vfio.Platform.Base;
using Vfio.Platform.Pci;

namespace Vfio.Pci;

/// <summary>The vfio-pci driver (struct pci_driver vfio_pci_driver).</summary>
public sealed class VfioPciDriver : PciDriver
{
    /// <summary>The driver's name, and the driver_override value that selects it.</summary>
    public const string DriverName = "vfio-pci";

    private const ushort IntelVendor = 0x8086;

    // The Intel QAT PFs and VFs whose PF driver must own them (vfio_pci_dev_in_denylist).
    private static readonly ushort[] s_denylistedIntel = [0x19e2, 0x19e3, 0x37c8, 0x37c9, 0x0435, 0x0443];

    private VfioPciDriver(SimMachine machine, VfioPciOptions options)
        : base(DriverName, [PciDeviceId.AnyDevice with { OverrideOnly = true }])
    {
        Machine = machine;
        Options = options;
        Core = VfioCore.Of(machine);
        Ops = new VfioPciOps(this);
        SriovPfs = new VfioPciSriovPfs(machine.Kernel);
    }

    /// <summary>The machine the driver is loaded on.</summary>
    public SimMachine Machine { get; }

    /// <summary>The module parameters.</summary>
    public VfioPciOptions Options { get; }

    /// <summary>The vfio core the devices register with.</summary>
    public VfioCore Core { get; }

    internal VfioPciOps Ops { get; }

    // vfio_pci_sriov_pfs (VfioPciCoreDevice.Sriov.cs).
    internal VfioPciSriovPfs SriovPfs { get; }

    /// <summary>dev-&gt;driver-&gt;pm = &amp;vfio_pci_core_pm_ops, as each registration sets it.</summary>
    internal void UsePmOps(DevPmOps ops) => Pm = ops;

    /// <inheritdoc/>
    public override bool DriverManagedDma => true;

    /// <summary>
    /// Loads vfio-pci on <paramref name="machine"/> (vfio_pci_init): registers the driver on
    /// the PCI bus, then adds the <c>ids=</c> dynamic ids (binding unbound matching devices).
    /// vfio must be loaded first; loading twice is a programming error.
    /// </summary>
    public static VfioPciDriver Load(SimMachine machine, VfioPciOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(machine);
        var drv = new VfioPciDriver(machine, options ?? new VfioPciOptions());
        if (!machine.AddModule(drv))
        {
            throw new InvalidOperationException("vfio-pci is already loaded on this machine");
        }

        int err = machine.Pci.RegisterDriver(drv);
        if (err != 0)
        {
            throw new InvalidOperationException($"vfio-pci: cannot register the PCI driver: {ErrnoExtensions.FromReturn(err).Describe()}");
        }

        drv.FillIds();
        if (drv.Options.DisableDenylist)
        {
            machine.Kernel.Log.Warn("vfio_pci: device denylist disabled.");
        }

        return drv;
    }

    /// <summary>The vfio-pci driver loaded on <paramref name="machine"/>, or null.</summary>
    public static VfioPciDriver? Of(SimMachine machine) => machine.GetModule<VfioPciDriver>();

    /// <summary>vfio_pci_fill_ids(): each <c>ids=</c> entry becomes a dynamic id; bad entries are logged and skipped.</summary>
    private void FillIds()
    {
        if (string.IsNullOrEmpty(Options.Ids))
        {
            return;
        }

        KernelLog log = Machine.Kernel.Log;
        foreach (string entry in Options.Ids.Split(','))
        {
            if (entry.Length == 0)
            {
                continue;
            }

            if (!TryParseId(entry, out PciDeviceId? id))
            {
                log.Warn($"vfio_pci: invalid id string \"{entry}\"");
                continue;
            }

            int rc = Machine.Pci.AddDynamicId(this, id!);
            string text = string.Create(CultureInfo.InvariantCulture, $"[{id!.Vendor & 0xffff:x4}:{id.Device & 0xffff:x4}[{id.SubVendor & 0xffff:x4}:{id.SubDevice & 0xffff:x4}]] class {id.Class:x6}/{id.ClassMask:x8}");
            if (rc < 0)
            {
                log.Warn($"vfio_pci: failed to add dynamic id {text} ({rc})");
            }
            else
            {
                log.Info($"vfio_pci: add {text}");
            }
        }
    }

    /// <summary>sscanf(id, "%x:%x:%x:%x:%x:%x"): at least vendor and device; missing subsystem ids are PCI_ANY_ID.</summary>
    internal static bool TryParseId(string entry, out PciDeviceId? id)
    {
        id = null;
        string[] parts = entry.Trim().Split(':');
        var values = new uint[] { PciDeviceId.Any, PciDeviceId.Any, PciDeviceId.Any, PciDeviceId.Any, 0, 0 };
        int fields = 0;
        foreach (string part in parts)
        {
            if (fields == values.Length || !uint.TryParse(part.StartsWith("0x", StringComparison.OrdinalIgnoreCase) ? part[2..] : part, NumberStyles.HexNumber, CultureInfo.InvariantCulture, out uint v))
            {
                break;
            }

            values[fields++] = v;
        }

        if (fields < 2)
        {
            return false;
        }

        id = new PciDeviceId(values[0], values[1], values[2], values[3], values[4], values[5]);
        return true;
    }

    /// <summary>vfio_pci_is_denylisted(): true refuses the probe; with disable_denylist it warns and allows.</summary>
    private bool IsDenylisted(PciDevice pdev)
    {
        PciIdentity ident = pdev.Identity;
        if (ident.Vendor != IntelVendor || Array.IndexOf(s_denylistedIntel, (ushort)ident.Device) < 0)
        {
            return false;
        }

        string ids = string.Create(CultureInfo.InvariantCulture, $"{ident.Vendor:x4}:{ident.Device:x4}");
        if (Options.DisableDenylist)
        {
            Machine.Kernel.Log.Warn($"{DriverName} {pdev.Name}: device denylist disabled - allowing device {ids}.");
            return false;
        }

        Machine.Kernel.Log.Warn($"{DriverName} {pdev.Name}: {ids} exists in vfio-pci device denylist, driver probing disallowed.");
        return true;
    }

    /// <summary>
    /// vfio_pci_probe(): the denylist, then a vfio_pci_core_device is allocated and
    /// registered (vfio_pci_core_register_device); a failed registration drops it again.
    /// </summary>
    public override int Probe(PciDevice dev, PciDeviceId id)
    {
        ArgumentNullException.ThrowIfNull(dev);
        if (IsDenylisted(dev))
        {
            return ErrorReason.Fail(Errno.EINVAL, $"vfio-pci probe: {dev.Name} ({dev.Identity.Vendor:x4}:{dev.Identity.Device:x4}) is on the vfio-pci denylist (load with disable_denylist to allow it)");
        }

        VfioPciCoreDevice? vdev = VfioDevice.Alloc(dev, Ops, () => new VfioPciCoreDevice(), out int err);
        if (vdev is null)
        {
            return err;
        }

        dev.DriverData = vdev;
        int ret = vdev.RegisterDevice(this);
        if (ret != 0)
        {
            dev.DriverData = null;
            vdev.PutDevice();
            return ret;
        }

        return 0;
    }

    /// <inheritdoc/>
    public override bool HasSriovConfigure => true;

    /// <summary>vfio_pci_sriov_configure(): -ENOENT unless loaded with enable_sriov, else vfio_pci_core_sriov_configure.</summary>
    public override int SriovConfigure(PciDevice dev, int numVfs)
    {
        ArgumentNullException.ThrowIfNull(dev);
        if (!Options.EnableSriov)
        {
            return ErrorReason.Fail(Errno.ENOENT, $"sriov_numvfs: vfio-pci was loaded without enable_sriov, so it does not enable VFs of {dev.Name}");
        }

        return ((VfioPciCoreDevice)dev.DriverData!).SriovConfigure(numVfs);
    }

    /// <summary>vfio_pci_remove(): waits until user space released the device (the kernel's unbind wait), then drops it.</summary>
    public override void Remove(PciDevice dev)
    {
        ArgumentNullException.ThrowIfNull(dev);
        if (dev.DriverData is not VfioPciCoreDevice vdev)
        {
            Warn.On(Machine.Kernel, true, $"vfio-pci remove: {dev.Name} has no vfio-pci device");
            return;
        }

        vdev.UnregisterDevice();
        dev.DriverData = null;
        vdev.PutDevice();
    }
}
