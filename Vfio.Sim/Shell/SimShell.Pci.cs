// lspci as pciutils (v3.x, ls-tree.c and lspci.c) prints it: one line per function, `-n`
// and `-nn` for the ids, `-k` for the driver in use and the modules that could drive it,
// `-t` (with `-v`) for the bus tree, `-s` to pick functions. Names come from a small
// built-in excerpt of pci.ids: a class the excerpt knows prints by name, an unknown
// vendor as `Device 1234:11e8`, as lspci does for ids it cannot look up.

using System.Globalization;
using Vfio.Platform.Pci;

namespace Vfio.Sim.Shell;

public sealed partial class SimShell
{
    // Base classes (the class code's top byte) and subclasses (its top two bytes) of pci.ids.
    private static readonly Dictionary<uint, string> s_baseClassNames = new()
    {
        [0x00] = "Unclassified device", [0x01] = "Mass storage controller", [0x02] = "Network controller", [0x03] = "Display controller",
        [0x04] = "Multimedia controller", [0x05] = "Memory controller", [0x06] = "Bridge", [0x07] = "Communication controller",
        [0x0c] = "Serial bus controller", [0xff] = "Unassigned class",
    };

    private static readonly Dictionary<uint, string> s_classNames = new()
    {
        [0x0000] = "Non-VGA unclassified device", [0x0001] = "VGA compatible unclassified device",
        [0x0100] = "SCSI storage controller", [0x0101] = "IDE interface", [0x0106] = "SATA controller", [0x0108] = "Non-Volatile memory controller",
        [0x0200] = "Ethernet controller", [0x0280] = "Network controller",
        [0x0300] = "VGA compatible controller", [0x0302] = "3D controller", [0x0380] = "Display controller",
        [0x0403] = "Audio device", [0x0500] = "RAM memory",
        [0x0600] = "Host bridge", [0x0601] = "ISA bridge", [0x0604] = "PCI bridge", [0x0680] = "Bridge",
        [0x0700] = "Serial controller", [0x0c03] = "USB controller", [0x0c05] = "SMBus",
    };

    private static readonly Dictionary<uint, string> s_vendorNames = new()
    {
        [0x8086] = "Intel Corporation",
        [0x1af4] = "Red Hat, Inc.",
        [0x1b36] = "Red Hat, Inc.",
    };

    private static readonly Dictionary<uint, string> s_deviceNames = new()
    {
        [0x808629c0] = "82G33/G31/P35/P31 Express DRAM Controller",
        [0x808610d3] = "82574L Gigabit Network Connection",
        [0x80861521] = "I350 Gigabit Network Connection",
        [0x808610fb] = "82599ES 10-Gigabit SFI/SFP+ Network Connection",
        [0x808610c9] = "82576 Gigabit Network Connection",
        [0x808610ca] = "82576 Virtual Function",
        [0x80867020] = "82371SB PIIX3 USB [Natoma/Triton II]",
        [0x1af41000] = "Virtio network device",
    };

    private void RegisterPciCommands()
        => Add("lspci", "lspci [-n|-nn] [-k] [-t [-v]] [-D] [-s [[DOMAIN:]BUS:]SLOT[.FUNC]]", "the PCI functions, their ids, drivers and the bus tree", Lspci);

    private int Lspci(CommandContext ctx)
    {
        bool tree = false, verbose = false, kernel = false, domains = false;
        int numeric = 0;
        string? select = null;
        ReadOnlySpan<string> args = ctx.Args;
        for (int i = 0; i < args.Length; i++)
        {
            string a = args[i];
            if (a == "-s")
            {
                select = i + 1 < args.Length ? args[++i] : throw new UsageException("-s takes [[domain:]bus:]slot[.func]");
                continue;
            }

            if (!a.StartsWith('-') || a.Length < 2)
            {
                throw new UsageException($"unexpected argument '{a}'");
            }

            foreach (char f in a.AsSpan(1))
            {
                switch (f)
                {
                    case 't': tree = true; break;
                    case 'v': verbose = true; break;
                    case 'k': kernel = true; break;
                    case 'n': numeric++; break;
                    case 'D': domains = true; break;
                    default: throw new UsageException($"invalid option -- '{f}'");
                }
            }
        }

        if (tree)
        {
            LspciTree(ctx.Out, verbose, numeric);
            return 0;
        }

        foreach (PciDevice d in AllFunctions())
        {
            if (select is not null && !SlotMatches(d, select))
            {
                continue;
            }

            string slot = domains || d.Domain != 0 ? d.Name : d.Name[5..];
            ctx.Out.WriteLine($"{slot} {ClassText(d, numeric)}: {DeviceText(d, numeric)}{Rev(d)}");
            if (kernel)
            {
                PciIdentity id = d.Identity;
                if (id.SubsystemVendor is not (0 or 0xffff))
                {
                    ctx.Out.WriteLine($"\tSubsystem: {Names(id.SubsystemVendor, id.SubsystemDevice, numeric)}");
                }

                if (d.Driver is { } drv)
                {
                    ctx.Out.WriteLine($"\tKernel driver in use: {drv.Name}");
                }

                string[] modules = [.. Sim.Machine.Pci.Drivers.OfType<PciDriver>()
                    .Where(m => m.IdTable.Any(i => !i.OverrideOnly && i.Matches(id)))
                    .Select(m => m.Name)];
                if (modules.Length > 0)
                {
                    ctx.Out.WriteLine($"\tKernel modules: {string.Join(", ", modules)}");
                }
            }
        }

        return 0;
    }

    private IEnumerable<PciDevice> AllFunctions()
    {
        var all = new List<PciDevice>();
        void Walk(PciBusSegment bus)
        {
            foreach (PciDevice d in bus.Devices)
            {
                all.Add(d);
                if (d.Subordinate is { } sub)
                {
                    Walk(sub);
                }
            }
        }

        Walk(Sim.Machine.PciRootBus);
        return all.OrderBy(d => d.Domain).ThenBy(d => d.BusNumber).ThenBy(d => d.DevFn);
    }

    // -s [[domain:]bus:]slot[.func]: a missing part matches anything.
    private static bool SlotMatches(PciDevice d, string select)
    {
        string[] parts = select.Split(':');
        string slotFunc = parts[^1];
        string? bus = parts.Length >= 2 ? parts[^2] : null;
        string? domain = parts.Length >= 3 ? parts[^3] : null;
        string[] sf = slotFunc.Split('.');
        return Hex(domain, d.Domain) && Hex(bus, d.BusNumber) && Hex(sf[0], d.Slot) && Hex(sf.Length > 1 ? sf[1] : null, d.Function);

        static bool Hex(string? text, int value)
            => string.IsNullOrEmpty(text) || text == "*"
            || (int.TryParse(text, NumberStyles.HexNumber, CultureInfo.InvariantCulture, out int v) && v == value);
    }

    private static string Rev(PciDevice d) => d.Identity.Revision != 0 ? $" (rev {d.Identity.Revision:x2})" : "";

    // `Ethernet controller`, `Ethernet controller [0200]` (-nn), `0200` (-n); an unknown
    // subclass of a known class prints the class and the number, an unknown class `Class xxxx`.
    private static string ClassText(PciDevice d, int numeric)
    {
        uint cls = d.Identity.Class >> 8;
        if (numeric == 1)
        {
            return $"{cls:x4}";
        }

        string? name = s_classNames.GetValueOrDefault(cls);
        if (name is null)
        {
            return s_baseClassNames.TryGetValue(cls >> 8, out string? baseName) ? $"{baseName} [{cls:x4}]" : numeric >= 2 ? $"Class [{cls:x4}]" : $"Class {cls:x4}";
        }

        return numeric >= 2 ? $"{name} [{cls:x4}]" : name;
    }

    private static string DeviceText(PciDevice d, int numeric) => Names(d.Identity.Vendor, d.Identity.Device, numeric);

    // `Intel Corporation I350 Gigabit Network Connection`, `Intel Corporation Device 10fb`,
    // `Device 1234:11e8`; with -nn the ids follow in brackets, with -n they stand alone.
    private static string Names(uint vendor, uint device, int numeric)
    {
        if (numeric == 1)
        {
            return $"{vendor:x4}:{device:x4}";
        }

        string text = s_vendorNames.TryGetValue(vendor, out string? v)
            ? $"{v} {s_deviceNames.GetValueOrDefault((vendor << 16) | device) ?? $"Device {device:x4}"}"
            : numeric >= 2 ? "Device" : $"Device {vendor:x4}:{device:x4}";
        return numeric >= 2 ? $"{text} [{vendor:x4}:{device:x4}]" : text;
    }

    // ---- lspci -t: pciutils' ls-tree.c layout, drawn in one line buffer whose already
    // printed prefix turns into the vertical bars (`|`) and spaces of the next line.

    private void LspciTree(TextWriter output, bool verbose, int numeric)
    {
        char[] line = new char[1024];
        int p = 0;
        PciBusSegment root = Sim.Machine.PciRootBus;
        line[p++] = '-';
        p += Put(line, p, $"[{root.Domain:x4}:{root.Number:x2}]-");
        TreeBus(output, line, p, root, verbose, numeric);
    }

    private void TreeBus(TextWriter output, char[] line, int p, PciBusSegment bus, bool verbose, int numeric)
    {
        PciDevice[] devs = [.. bus.Devices.OrderBy(d => d.DevFn)];
        if (devs.Length == 0)
        {
            PrintTreeLine(output, line, p);
        }
        else if (devs.Length == 1)
        {
            line[p] = '-';
            line[p + 1] = '-';
            TreeDev(output, line, p + 2, devs[0], verbose, numeric);
        }
        else
        {
            for (int i = 0; i < devs.Length; i++)
            {
                line[p] = i == devs.Length - 1 ? '\\' : '+';
                line[p + 1] = '-';
                TreeDev(output, line, p + 2, devs[i], verbose, numeric);
            }
        }
    }

    private void TreeDev(TextWriter output, char[] line, int p, PciDevice d, bool verbose, int numeric)
    {
        p += Put(line, p, $"{d.Slot:x2}.{d.Function:x}");
        if (d.Subordinate is { } sub)
        {
            int last = MaxBus(sub);
            p += Put(line, p, last != sub.Number ? $"-[{sub.Number:x2}-{last:x2}]-" : $"-[{sub.Number:x2}]-");
            line[p++] = '-';
            TreeBus(output, line, p, sub, verbose, numeric);
            return;
        }

        if (verbose)
        {
            p += Put(line, p, "  " + DeviceText(d, numeric));
        }

        PrintTreeLine(output, line, p);
    }

    private static int MaxBus(PciBusSegment bus)
    {
        int max = bus.Number;
        foreach (PciBusSegment child in bus.Children)
        {
            max = Math.Max(max, MaxBus(child));
        }

        return max;
    }

    private static int Put(char[] line, int at, string text)
    {
        text.CopyTo(0, line, at, text.Length);
        return text.Length;
    }

    private static void PrintTreeLine(TextWriter output, char[] line, int p)
    {
        output.WriteLine(new string(line, 0, p));
        for (int i = 0; i < p; i++)
        {
            line[i] = line[i] is '+' or '|' ? '|' : ' ';
        }
    }

    /// <summary>The PCI function <paramref name="name"/> (<c>0000:02:00.1</c>), or null.</summary>
    private PciDevice? FindPci(string name) => AllFunctions().FirstOrDefault(d => d.Name == name);
}
