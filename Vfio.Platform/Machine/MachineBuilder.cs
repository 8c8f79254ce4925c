// Builds a running SimMachine from a MachineDescription, the way firmware and the kernel
// bring up a host: memory, the IOMMU (before any device, so every function is grouped as
// it is added), then the PCI hierarchy in two passes. The first pass creates every function
// depth first — bridges before what is below them, bus numbers assigned in that order, BARs
// placed naturally aligned in the 32-bit window below the interrupt window or above RAM for
// 64-bit BARs — without putting anything on a bus, so that each function's real identity
// (the description's ids or the model's own) is known. Then the drivers built into the
// kernel are registered (pcieport, pci-stub and the host stand-ins, whose id tables are
// taken from those identities), and the second pass adds the functions in the same order,
// each probed as it is added.

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

        var state = new BuildState(machine);
        List<PlannedFunction> plan = CreateFunctions(state, description.Pci, machine.PciRootBus, conventional: false, out _);
        RegisterDrivers(machine, description, plan);
        AddFunctions(machine, plan);
        return machine;
    }

    /// <summary>
    /// Registers pcieport, pci-stub and the host stand-in drivers. A driver listed in the
    /// description's <c>drivers</c> takes exactly the ids listed there. A driver that a
    /// function names but <c>drivers</c> does not list is created for the functions that
    /// name it, with the vendor:device id each of them really has: the description's
    /// <c>vendor</c>/<c>device</c> when given, the model's own otherwise (edu is always
    /// 1234:11e8). pci-stub takes the ids of the functions that name it the same way (its
    /// <c>ids=</c> parameter).
    /// </summary>
    private static void RegisterDrivers(SimMachine machine, MachineDescription d, List<PlannedFunction> plan)
    {
        machine.Pci.RegisterDriver(new PcieportDriver());

        var stub = new List<PciDeviceId>();
        var ids = new Dictionary<string, List<PciDeviceId>>(StringComparer.Ordinal);
        foreach (HostDriverDescription drv in d.Drivers)
        {
            ids[drv.Name] = [.. drv.Ids.Select(x => new PciDeviceId(x.Vendor, x.Device))];
        }

        foreach (PlannedFunction p in Flatten(plan))
        {
            if (p.Description.Driver is not { } name || name == "pcieport")
            {
                continue;
            }

            List<PciDeviceId>? own;
            if (name == "pci-stub")
            {
                own = stub;
            }
            else if (d.Drivers.Any(x => x.Name == name))
            {
                continue; // listed: its ids are the description's, and the build checks that it binds
            }
            else if (!ids.TryGetValue(name, out own))
            {
                own = [];
                ids[name] = own;
            }

            var id = new PciDeviceId(p.Device.Identity.Vendor, p.Device.Identity.Device);
            if (!own.Contains(id))
            {
                own.Add(id);
            }
        }

        machine.Pci.RegisterDriver(new PciStubDriver([.. stub]));
        foreach ((string name, List<PciDeviceId> list) in ids)
        {
            machine.Pci.RegisterDriver(new HostPciDriver(name, [.. list]));
        }
    }

    private static IEnumerable<PlannedFunction> Flatten(IEnumerable<PlannedFunction> list)
    {
        foreach (PlannedFunction p in list)
        {
            yield return p;
            foreach (PlannedFunction c in Flatten(p.Children))
            {
                yield return c;
            }
        }
    }

    /// <summary>A function created from its description but not yet on its bus, with the functions below it (a bridge's) and the highest bus number below it.</summary>
    private sealed record PlannedFunction(PciFunctionDescription Description, PciDevice Device, List<PlannedFunction> Children, int Subordinate);

    private sealed class BuildState(SimMachine machine)
    {
        public SimMachine Machine { get; } = machine;

        public int NextBus { get; set; } = 1;

        public long Next32 { get; set; } = Mmio32Start;

        public long Next64 { get; set; } = machine.Memory.Mmio64Base;

        public long NextIo { get; set; } = IoPortSpace.PciStart;

        public HashSet<int> UsedBuses { get; } = [0];
    }

    /// <summary>
    /// First pass: creates <paramref name="functions"/> on <paramref name="bus"/> and
    /// everything below them, numbering buses and placing BARs, without adding any to the
    /// bus; <paramref name="highest"/> is the highest bus number used.
    /// </summary>
    private static List<PlannedFunction> CreateFunctions(BuildState st, IReadOnlyList<PciFunctionDescription> functions, PciBusSegment bus, bool conventional, out int highest)
    {
        highest = bus.Number;
        var planned = new List<PlannedFunction>(functions.Count);
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

            List<PlannedFunction> children = [];
            int last = 0;
            if (dev is PciBridge b)
            {
                children = CreateFunctions(st, f.Children, b.Subordinate!, conventional || b.Kind.HasConventionalBus(), out last);
                highest = Math.Max(highest, last);
            }

            planned.Add(new PlannedFunction(f, dev, children, last));
        }

        return planned;
    }

    /// <summary>Second pass: adds the created functions to their buses in creation order (a bridge before what is below it), each probed as it is added.</summary>
    private static void AddFunctions(SimMachine machine, List<PlannedFunction> planned)
    {
        foreach (PlannedFunction p in planned)
        {
            PciFunctionDescription f = p.Description;
            PciDevice dev = p.Device;
            int ret = machine.Pci.Add(dev);
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
                AddFunctions(machine, p.Children);
                b.SetSubordinateNumber(p.Subordinate);
            }
        }
    }

    private static void AssignBars(BuildState st, PciDevice dev, string path)
    {
        // Largest first, so that natural alignment wastes little, as firmware sorts resources.
        foreach (PciBar bar in dev.Bars.Where(b => b is not null).Select(b => b!).OrderByDescending(b => b.Size))
        {
            long addr;
            if (bar.Kind == PciBarKind.Io)
            {
                addr = AlignUp(st.NextIo, bar.Size);
                if (addr + bar.Size > IoPortSpace.Size)
                {
                    throw new MachineDescriptionException($"{path}.bars", $"I/O BAR {bar.Index} of {dev.Name} ({bar.Size} bytes) does not fit in the I/O port space");
                }

                st.NextIo = addr + bar.Size;
                dev.AssignBar(bar.Index, addr);
                continue;
            }

            if (bar.Kind == PciBarKind.Memory64 && bar.Size >= 1L << 28)
            {
                addr = AlignUp(st.Next64, bar.Size);
                st.Next64 = addr + bar.Size;
            }
            else
            {
                addr = PlaceMmio(st, bar.Size, bar.Size, bar.Kind == PciBarKind.Memory64, $"{path}.bars", $"BAR {bar.Index} of {dev.Name} ({bar.Size} bytes)");
            }

            dev.AssignBar(bar.Index, addr);
        }

        AssignIovBars(st, dev, path);
    }

    /// <summary>
    /// An SR-IOV PF's IOV windows (each VF BAR × TotalVFs, aligned to the VF BAR's size),
    /// placed after the function's own BARs: in the 32-bit window, or above RAM for a 64-bit
    /// VF BAR that does not fit there.
    /// </summary>
    private static void AssignIovBars(BuildState st, PciDevice dev, string path)
    {
        foreach (SriovBar? w in dev.SriovBars)
        {
            if (w is null)
            {
                continue;
            }

            long addr = PlaceMmio(st, w.WindowSize, w.VfSize, w.Kind == PciBarKind.Memory64, $"{path}.sriov.bars", $"the IOV window of VF BAR {w.Index} of {dev.Name} ({w.WindowSize} bytes)");
            dev.AssignIovBar(w.Index, addr);
        }
    }

    /// <summary>
    /// Places <paramref name="size"/> bytes aligned to <paramref name="align"/> in the 32-bit
    /// MMIO window, or above RAM when it does not fit there and <paramref name="is64"/>.
    /// </summary>
    private static long PlaceMmio(BuildState st, long size, long align, bool is64, string path, string what)
    {
        long addr = AlignUp(st.Next32, align);
        if (addr + size <= Mmio32End)
        {
            st.Next32 = addr + size;
            return addr;
        }

        if (!is64)
        {
            throw new MachineDescriptionException(path, $"{what} does not fit in the 32-bit MMIO window");
        }

        addr = AlignUp(st.Next64, align);
        st.Next64 = addr + size;
        return addr;
    }

    private static long AlignUp(long v, long a) => (v + a - 1) & ~(a - 1);
}
