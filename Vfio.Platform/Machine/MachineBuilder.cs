// Builds a running SimMachine from a MachineDescription, the way firmware and the kernel
// bring up a host: memory, the IOMMU (before any device, so every function is grouped as
// it is added), the drivers built into the kernel (pcieport, pci-stub and the host
// stand-ins), then the PCI hierarchy depth first — bridges before what is below them, bus
// numbers assigned in that order, BARs placed naturally aligned in the 32-bit window below
// the interrupt window or above RAM for 64-bit BARs — and each function probed as it is added.

using Vfio.Kernel;
using Vfio.Platform.Iommu;
using Vfio.Platform.Pci;

namespace Vfio.Platform.Machine;

/// <summary>Turns a <see cref="MachineDescription"/> into a <see cref="SimMachine"/>.</summary>
public static class MachineBuilder
{
    /// <summary>Start of the 32-bit window firmware places BARs in.</summary>
    public const long Mmio32Start = 0xe0000000;

    /// <summary>End (exclusive) of that window: the IOAPIC and the interrupt window are above.</summary>
    public const long Mmio32End = 0xfec00000;

    /// <summary>The embedded default machine on a new real-mode kernel.</summary>
    public static SimMachine Default() => Build(MachineDescriptionReader.Default);

    /// <summary>The embedded default machine on <paramref name="kernel"/>.</summary>
    public static SimMachine Default(SimKernel kernel) => Build(MachineDescriptionReader.Default, kernel);

    /// <summary>Builds <paramref name="description"/> on a new real-mode kernel.</summary>
    public static SimMachine Build(MachineDescription description) => Build(description, new SimKernel());

    /// <summary>Builds <paramref name="description"/> on <paramref name="kernel"/>; a bad description throws <see cref="MachineDescriptionException"/>.</summary>
    public static SimMachine Build(MachineDescription description, SimKernel kernel)
    {
        ArgumentNullException.ThrowIfNull(description);
        ArgumentNullException.ThrowIfNull(kernel);
        SimMachine machine;
        try
        {
            machine = new SimMachine(kernel, new MachineConfig { Memory = description.Memory }) { Description = description };
        }
        catch (ArgumentException e) when (e.ParamName == "config")
        {
            throw new MachineDescriptionException("memory", e.Message.Split(" (Parameter", 2)[0]);
        }

        if (description.Iommu is { } io)
        {
            if (io.Problem(out string field) is { } problem)
            {
                throw new MachineDescriptionException($"iommu.{field}", problem);
            }

            _ = new IommuCore(machine, new IommuHardware(kernel, machine.Memory, io));
        }

        RegisterDrivers(machine, description);
        var state = new BuildState(machine);
        _ = AddFunctions(state, description.Pci, machine.PciRootBus, conventional: false);
        return machine;
    }

    private static void RegisterDrivers(SimMachine machine, MachineDescription d)
    {
        machine.Pci.RegisterDriver(new PcieportDriver());

        // pci-stub claims what the description says it claims (its ids= parameter).
        machine.Pci.RegisterDriver(new PciStubDriver([.. Flatten(d.Pci).Where(f => f.Driver == "pci-stub" && f.Vendor is not null).Select(f => new PciDeviceId(f.Vendor!.Value, f.Device ?? PciDeviceId.Any))]));
        var ids = new Dictionary<string, List<PciDeviceId>>(StringComparer.Ordinal);
        foreach (HostDriverDescription drv in d.Drivers)
        {
            ids[drv.Name] = [.. drv.Ids.Select(x => new PciDeviceId(x.Vendor, x.Device))];
        }

        // A function naming a driver that the description does not list gets one for its ids.
        foreach (PciFunctionDescription f in Flatten(d.Pci))
        {
            if (f.Driver is { } name && !ids.ContainsKey(name))
            {
                if (name is "pcieport" or "pci-stub")
                {
                    continue;
                }

                ids[name] = [];
            }

            if (f.Driver is { } n && ids.TryGetValue(n, out List<PciDeviceId>? own) && d.Drivers.All(x => x.Name != n) && f.Vendor is { } v)
            {
                own.Add(new PciDeviceId(v, f.Device ?? PciDeviceId.Any));
            }
        }

        foreach ((string name, List<PciDeviceId> list) in ids)
        {
            machine.Pci.RegisterDriver(new HostPciDriver(name, [.. list]));
        }
    }

    private static IEnumerable<PciFunctionDescription> Flatten(IEnumerable<PciFunctionDescription> list)
    {
        foreach (PciFunctionDescription f in list)
        {
            yield return f;
            foreach (PciFunctionDescription c in Flatten(f.Children))
            {
                yield return c;
            }
        }
    }

    private sealed class BuildState(SimMachine machine)
    {
        public SimMachine Machine { get; } = machine;

        public int NextBus { get; set; } = 1;

        public long Next32 { get; set; } = Mmio32Start;

        public long Next64 { get; set; } = machine.Memory.Mmio64Base;

        public HashSet<int> UsedBuses { get; } = [0];
    }

    /// <summary>Adds <paramref name="functions"/> on <paramref name="bus"/> and everything below them; returns the highest bus number used.</summary>
    private static int AddFunctions(BuildState st, IReadOnlyList<PciFunctionDescription> functions, PciBusSegment bus, bool conventional)
    {
        int highest = bus.Number;
        // Function 0 of each slot first, as enumeration does.
        foreach (PciFunctionDescription f in functions.OrderBy(x => x.Slot).ThenBy(x => x.Function))
        {
            var address = new PciAddress(bus.Domain, bus.Number, f.Slot, f.Function);
            PciDevice dev;
            if (f.IsBridge)
            {
                int secondary = f.SecondaryBus ?? st.NextBus;
                if (secondary <= bus.Number)
                {
                    throw new MachineDescriptionException($"{f.Path}.secondaryBus", $"bus {secondary:x2} is not below bus {bus.Number:x2}");
                }

                if (!st.UsedBuses.Add(secondary))
                {
                    throw new MachineDescriptionException($"{f.Path}.secondaryBus", $"bus {secondary:x2} is already in use");
                }

                st.NextBus = Math.Max(st.NextBus, secondary + 1);
                PciBridgeKind kind = PciBridgeKinds.Parse(f.Type)!.Value;
                PciIdentity? id = f.Vendor is { } v ? new PciIdentity(v, f.Device ?? 0, 0, 0, f.Class ?? 0x060400, f.Revision ?? 0) : null;
                var bridge = new PciBridge(st.Machine, bus.Domain, bus.Number, f.Slot, f.Function, kind, secondary, id, f.Acs, f.Multifunction);
                bridge.Subordinate = new PciBusSegment(st.Machine, bus.Domain, secondary, bridge, bus);
                dev = bridge;
            }
            else
            {
                // Behind a PCIe-to-PCI or PCI bridge a function is conventional; elsewhere the model decides.
                dev = PciDeviceModels.Create(st.Machine, address, conventional && f.Pcie is null ? f with { Pcie = false } : f);
            }

            dev.OnBus = bus;
            dev.Irq = dev.InterruptPin == 0 ? 0 : 16 + ((f.Slot + dev.InterruptPin - 1) & 7);
            dev.Config.SetByte(PciRegs.InterruptLine, (byte)dev.Irq);
            AssignBars(st, dev, f.Path);
            int ret = st.Machine.Pci.Add(dev);
            if (ret != 0)
            {
                throw new MachineDescriptionException(f.Path, $"adding {dev.Name} failed: {((Errno)(-ret)).Describe()}");
            }

            if (f.Driver is { } want && dev.Driver?.Name != want)
            {
                throw new MachineDescriptionException($"{f.Path}.driver", $"{dev.Name} did not bind to \"{want}\" (bound: {dev.Driver?.Name ?? "nothing"})");
            }

            if (dev is PciBridge b)
            {
                int last = AddFunctions(st, f.Children, b.Subordinate!, conventional || b.Kind.HasConventionalBus());
                b.SetSubordinateNumber(last);
                highest = Math.Max(highest, last);
            }
        }

        return highest;
    }

    private static void AssignBars(BuildState st, PciDevice dev, string path)
    {
        // Largest first, so that natural alignment wastes little, as firmware sorts resources.
        foreach (PciBar bar in dev.Bars.Where(b => b is not null).Select(b => b!).OrderByDescending(b => b.Size))
        {
            if (bar.Kind == PciBarKind.Io)
            {
                continue;
            }

            long addr;
            if (bar.Kind == PciBarKind.Memory64 && bar.Size >= 1L << 28)
            {
                addr = AlignUp(st.Next64, bar.Size);
                st.Next64 = addr + bar.Size;
            }
            else
            {
                addr = AlignUp(st.Next32, bar.Size);
                if (addr + bar.Size > Mmio32End)
                {
                    if (bar.Kind != PciBarKind.Memory64)
                    {
                        throw new MachineDescriptionException($"{path}.bars", $"BAR {bar.Index} of {dev.Name} ({bar.Size} bytes) does not fit in the 32-bit MMIO window");
                    }

                    addr = AlignUp(st.Next64, bar.Size);
                    st.Next64 = addr + bar.Size;
                }
                else
                {
                    st.Next32 = addr + bar.Size;
                }
            }

            dev.AssignBar(bar.Index, addr);
        }
    }

    private static long AlignUp(long v, long a) => (v + a - 1) & ~(a - 1);
}
