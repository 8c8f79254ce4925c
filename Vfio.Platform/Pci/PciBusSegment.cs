// Models struct pci_bus (include/linux/pci.h) (v6.12): a bus segment with its number, the
// bridge above it (self; null for the root bus), the functions on it and the buses below.
// The topology is fixed when the machine is built; hot-unplug removes functions from it.

using Vfio.Kernel;

namespace Vfio.Platform.Pci;

/// <summary>struct pci_bus: one bus of the PCI hierarchy.</summary>
public sealed class PciBusSegment
{
    // Protects _devices, _devicesSnapshot and _children (pci_bus_sem).
    private readonly KSpinLock _lock;
    private readonly List<PciDevice> _devices = [];

    // The functions as a read-only snapshot, made at the first read after a change (functions
    // come and go rarely; a reset walks them on every VFIO_DEVICE_RESET). Null when stale.
    private System.Collections.ObjectModel.ReadOnlyCollection<PciDevice>? _devicesSnapshot;
    private readonly List<PciBusSegment> _children = [];

    internal PciBusSegment(SimMachine machine, int domain, int number, PciDevice? self, PciBusSegment? parent)
    {
        Domain = domain;
        Number = number;
        Self = self;
        Parent = parent;
        _lock = new KSpinLock(machine.Kernel, $"pci_bus[{domain:x4}:{number:x2}]");
        parent?.AddChild(this);
    }

    /// <summary>The PCI domain.</summary>
    public int Domain { get; }

    /// <summary>The bus number.</summary>
    public int Number { get; }

    /// <summary>bus-&gt;self: the bridge leading to this bus; null for a root bus.</summary>
    public PciDevice? Self { get; }

    /// <summary>bus-&gt;parent.</summary>
    public PciBusSegment? Parent { get; }

    /// <summary>pci_is_root_bus().</summary>
    public bool IsRoot => Parent is null;

    /// <summary>The functions on this bus, a snapshot.</summary>
    public IReadOnlyList<PciDevice> Devices
    {
        get
        {
            _lock.Lock();
            try
            {
                return _devicesSnapshot ??= new([.. _devices]);
            }
            finally
            {
                _lock.Unlock();
            }
        }
    }

    /// <summary>
    /// Whether any function other than <paramref name="dev"/> is on this bus (the
    /// <c>list_for_each_entry(bus-&gt;devices)</c> test of pci_parent_bus_reset), without a snapshot.
    /// </summary>
    internal bool HasOtherDevice(PciDevice dev)
    {
        _lock.Lock();
        try
        {
            for (int i = 0; i < _devices.Count; i++)
            {
                if (_devices[i] != dev)
                {
                    return true;
                }
            }

            return false;
        }
        finally
        {
            _lock.Unlock();
        }
    }

    /// <summary>The buses directly below, a snapshot.</summary>
    public IReadOnlyList<PciBusSegment> Children
    {
        get
        {
            _lock.Lock();
            try
            {
                return [.. _children];
            }
            finally
            {
                _lock.Unlock();
            }
        }
    }

    internal void AddDevice(PciDevice dev)
    {
        _lock.Lock();
        _devices.Add(dev);
        _devicesSnapshot = null;
        _lock.Unlock();
    }

    internal void RemoveDevice(PciDevice dev)
    {
        _lock.Lock();
        _devices.Remove(dev);
        _devicesSnapshot = null;
        _lock.Unlock();
    }

    private void AddChild(PciBusSegment child)
    {
        _lock.Lock();
        _children.Add(child);
        _lock.Unlock();
    }

    /// <summary>What a Secondary Bus Reset on <see cref="Self"/> does: every function below goes through a reset.</summary>
    internal void ResetBelow()
    {
        IReadOnlyList<PciDevice> devices = Devices;
        for (int i = 0; i < devices.Count; i++)
        {
            PciDevice d = devices[i];
            d.HardwareReset(PciResetKind.Bus);
            d.Subordinate?.ResetBelow();
        }
    }

    /// <summary>Every function on this bus and below, depth first.</summary>
    public IEnumerable<PciDevice> AllDevicesBelow()
    {
        foreach (PciDevice d in Devices)
        {
            yield return d;
            if (d.Subordinate is { } sub)
            {
                foreach (PciDevice x in sub.AllDevicesBelow())
                {
                    yield return x;
                }
            }
        }
    }

    /// <inheritdoc/>
    public override string ToString() => $"{Domain:x4}:{Number:x2}";
}
