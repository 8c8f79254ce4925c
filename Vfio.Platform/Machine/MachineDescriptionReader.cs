// Reads a machine description from JSON, checking every field: an unknown field, a value
// of the wrong kind or out of range, a duplicate or missing function is rejected with a
// MachineDescriptionException whose message starts with the field's path
// (pci[2].children[0].slot). Sizes are numbers or strings with K/M/G suffixes; ids are
// numbers or hex strings. Descriptions are written by hand (lab files), so the JSON may
// carry // and /* */ comments and trailing commas; everything else is strict JSON.

using System.Globalization;
using System.Text.Json;
using Vfio.Platform.Iommu;
using Vfio.Platform.Mm;
using Vfio.Platform.Pci;

namespace Vfio.Platform.Machine;

/// <summary>JSON to <see cref="MachineDescription"/>.</summary>
public static class MachineDescriptionReader
{
    private const string DefaultResource = "Vfio.Platform.Machine.default-machine.json";

    // Deliberately lenient about the two things people write by hand and standard JSON
    // forbids: comments (// and /* */, skipped) and a comma after the last element of an
    // object or array. docs/platform.md says so, and MachineDescriptionTests pins both.
    private static readonly JsonDocumentOptions s_jsonOptions = new()
    {
        CommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
    };

    /// <summary>The embedded default machine's JSON.</summary>
    public static string DefaultJson
    {
        get
        {
            using Stream s = typeof(MachineDescriptionReader).Assembly.GetManifestResourceStream(DefaultResource)
                ?? throw new InvalidOperationException($"embedded resource {DefaultResource} is missing");
            using var r = new StreamReader(s);
            return r.ReadToEnd();
        }
    }

    // Parsed once: a description is immutable (variants are made with `with`), and boots
    // that start from the default machine should not pay for its JSON each time.
    private static MachineDescription? s_default;

    /// <summary>The embedded default machine (parsed once and shared; derive a variant with <c>with</c>).</summary>
    public static MachineDescription Default => Volatile.Read(ref s_default) ?? Interlocked.CompareExchange(ref s_default, Parse(DefaultJson), null) ?? s_default!;

    /// <summary>Reads a description file.</summary>
    public static MachineDescription Load(string path) => Parse(File.ReadAllText(path));

    /// <summary>
    /// Parses <paramref name="json"/>; throws <see cref="MachineDescriptionException"/> naming the
    /// offending field. Comments and trailing commas are accepted.
    /// </summary>
    public static MachineDescription Parse(string json)
    {
        ArgumentNullException.ThrowIfNull(json);
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json, s_jsonOptions);
        }
        catch (JsonException e)
        {
            throw new MachineDescriptionException("$", $"not valid JSON: {e.Message}");
        }

        using (doc)
        {
            JsonElement root = doc.RootElement;
            Obj(root, "$", "name", "memory", "iommu", "pci", "drivers", "comment");
            var d = new MachineDescription
            {
                Name = Str(root, "$", "name") ?? "machine",
                Memory = ReadMemory(root, "memory"),
                Iommu = ReadIommu(root, "iommu"),
                Drivers = ReadDrivers(root, "drivers"),
            };
            IReadOnlyList<PciFunctionDescription> pci = root.TryGetProperty("pci", out JsonElement p) ? ReadFunctions(p, "pci", conventionalBus: false) : [];
            return d with { Pci = pci };
        }
    }

    private static MemoryConfig ReadMemory(JsonElement root, string path)
    {
        if (!root.TryGetProperty("memory", out JsonElement m))
        {
            return new MemoryConfig { RamBytes = 4L << 30 };
        }

        Obj(m, path, "ram", "hugePages2M", "hugePages1G", "placement", "comment");
        long ram = Size(m, path, "ram") ?? (4L << 30);
        if (ram < 64L << 20 || (ram & 0xfff) != 0)
        {
            throw new MachineDescriptionException($"{path}.ram", $"{ram} is not a page-aligned size of at least 64M");
        }

        AllocationPolicy policy = Str(m, path, "placement") switch
        {
            null or "scattered" => AllocationPolicy.Scattered,
            "contiguous" => AllocationPolicy.Contiguous,
            string other => throw new MachineDescriptionException($"{path}.placement", $"\"{other}\" is not scattered or contiguous"),
        };
        int h2 = Int(m, path, "hugePages2M", 0, int.MaxValue) ?? 0;
        int h1 = Int(m, path, "hugePages1G", 0, int.MaxValue) ?? 0;
        if ((h2 * (2L << 20)) + (h1 * (1L << 30)) > ram / 2)
        {
            throw new MachineDescriptionException($"{path}.hugePages2M", $"the hugetlb pools ({h2} x 2M + {h1} x 1G) take more than half of {ram >> 20}M of RAM");
        }

        return new MemoryConfig { RamBytes = ram, HugePages2M = h2, HugePages1G = h1, Policy = policy };
    }

    private static IommuHardwareConfig? ReadIommu(JsonElement root, string path)
    {
        var defaults = new IommuHardwareConfig();
        if (!root.TryGetProperty("iommu", out JsonElement m))
        {
            return defaults;
        }

        if (m.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        Obj(m, path, "pgsizes", "addressWidth", "iotlbEntries", "cacheCoherent", "snoopControl", "interruptRemapping", "faultLog", "comment");
        ulong bitmap = defaults.PgsizeBitmap;
        if (m.TryGetProperty("pgsizes", out JsonElement sizes))
        {
            if (sizes.ValueKind != JsonValueKind.Array)
            {
                throw new MachineDescriptionException($"{path}.pgsizes", "expected an array of page sizes (\"4K\", \"2M\", \"1G\")");
            }

            bitmap = 0;
            int i = 0;
            foreach (JsonElement e in sizes.EnumerateArray())
            {
                bitmap |= (ulong)ParseSize(e, $"{path}.pgsizes[{i}]");
                i++;
            }
        }

        var config = new IommuHardwareConfig
        {
            PgsizeBitmap = bitmap,
            AddressWidth = Int(m, path, "addressWidth", 0, 64) ?? defaults.AddressWidth,
            IotlbEntries = Int(m, path, "iotlbEntries", 0, int.MaxValue) ?? defaults.IotlbEntries,
            CacheCoherent = Bool(m, path, "cacheCoherent") ?? defaults.CacheCoherent,
            SnoopControl = Bool(m, path, "snoopControl") ?? defaults.SnoopControl,
            InterruptRemapping = Bool(m, path, "interruptRemapping") ?? defaults.InterruptRemapping,
            FaultLogCapacity = Int(m, path, "faultLog", 0, int.MaxValue) ?? defaults.FaultLogCapacity,
        };

        // The hardware's own rule decides what is valid; the message names the JSON field.
        if (config.Problem(out string field) is { } problem)
        {
            string json = field switch
            {
                nameof(IommuHardwareConfig.PgsizeBitmap) => "pgsizes",
                nameof(IommuHardwareConfig.AddressWidth) => "addressWidth",
                nameof(IommuHardwareConfig.IotlbEntries) => "iotlbEntries",
                _ => "faultLog",
            };
            throw new MachineDescriptionException($"{path}.{json}", problem);
        }

        return config;
    }

    private static IReadOnlyList<HostDriverDescription> ReadDrivers(JsonElement root, string path)
    {
        if (!root.TryGetProperty("drivers", out JsonElement arr))
        {
            return [];
        }

        if (arr.ValueKind != JsonValueKind.Array)
        {
            throw new MachineDescriptionException(path, "expected an array of drivers");
        }

        var list = new List<HostDriverDescription>();
        int i = 0;
        foreach (JsonElement e in arr.EnumerateArray())
        {
            string p = $"{path}[{i}]";
            Obj(e, p, "name", "ids", "comment");
            string name = Str(e, p, "name") ?? throw new MachineDescriptionException($"{p}.name", "a driver needs a name");
            if (name is "vfio-pci" or "pci-stub" or "pcieport" || list.Any(x => x.Name == name))
            {
                throw new MachineDescriptionException($"{p}.name", $"\"{name}\" is registered already");
            }

            var ids = new List<(uint, uint)>();
            if (e.TryGetProperty("ids", out JsonElement idArr))
            {
                if (idArr.ValueKind != JsonValueKind.Array)
                {
                    throw new MachineDescriptionException($"{p}.ids", "expected an array of \"vendor:device\" strings");
                }

                int j = 0;
                foreach (JsonElement id in idArr.EnumerateArray())
                {
                    string s = id.ValueKind == JsonValueKind.String ? id.GetString()! : string.Empty;
                    string[] parts = s.Split(':');
                    if (parts.Length != 2 || !uint.TryParse(parts[0], NumberStyles.HexNumber, CultureInfo.InvariantCulture, out uint v)
                        || !uint.TryParse(parts[1], NumberStyles.HexNumber, CultureInfo.InvariantCulture, out uint dv) || v > 0xffff || dv > 0xffff)
                    {
                        throw new MachineDescriptionException($"{p}.ids[{j}]", $"\"{s}\" is not a vendor:device pair such as \"8086:10d3\"");
                    }

                    ids.Add((v, dv));
                    j++;
                }
            }

            list.Add(new HostDriverDescription(name, ids));
            i++;
        }

        return list;
    }

    private static readonly string[] s_functionFields =
    [
        "slot", "function", "type", "vendor", "device", "subsystemVendor", "subsystemDevice", "class", "revision", "pcie",
        "multifunction", "acs", "acsQuirk", "resets", "bars", "rom", "romImages", "msi", "msix", "capabilities", "intx", "dmaAliases", "secondaryBus",
        "children", "driver", "options", "comment", "sriov",
    ];

    private static List<PciFunctionDescription> ReadFunctions(JsonElement arr, string path, bool conventionalBus)
    {
        if (arr.ValueKind != JsonValueKind.Array)
        {
            throw new MachineDescriptionException(path, "expected an array of PCI functions");
        }

        var list = new List<PciFunctionDescription>();
        int i = 0;
        foreach (JsonElement e in arr.EnumerateArray())
        {
            list.Add(ReadFunction(e, $"{path}[{i}]", conventionalBus));
            i++;
        }

        // Each devfn once; functions other than 0 need a multifunction function 0 in the slot.
        for (int a = 0; a < list.Count; a++)
        {
            PciFunctionDescription f = list[a];
            for (int b = 0; b < a; b++)
            {
                if (list[b].Slot == f.Slot && list[b].Function == f.Function)
                {
                    throw new MachineDescriptionException($"{f.Path}.function", $"{f.Slot:x2}.{f.Function} is already used by {list[b].Path}");
                }
            }

            if (f.Function != 0)
            {
                PciFunctionDescription? f0 = list.Find(x => x.Slot == f.Slot && x.Function == 0);
                if (f0 is null || !f0.Multifunction)
                {
                    throw new MachineDescriptionException($"{f.Path}.function", $"function {f.Function} of slot {f.Slot} needs a function 0 marked \"multifunction\": true (enumeration starts at function 0)");
                }
            }
        }

        return list;
    }

    private static PciFunctionDescription ReadFunction(JsonElement e, string path, bool conventionalBus)
    {
        Obj(e, path, s_functionFields);
        string type = Str(e, path, "type") ?? throw new MachineDescriptionException($"{path}.type", "every function needs a type (a device model or a bridge kind)");
        PciBridgeKind? bridgeKind = PciBridgeKinds.Parse(type);
        bool isBridge = bridgeKind is not null;
        if (!isBridge && !PciDeviceModels.Contains(type))
        {
            throw new MachineDescriptionException($"{path}.type", $"unknown type \"{type}\" (device models: {string.Join(", ", PciDeviceModels.Names)}; bridges: root-port, switch-upstream, switch-downstream, pcie-to-pci-bridge, pci-bridge)");
        }

        bool? pcie = Bool(e, path, "pcie");
        if (conventionalBus && pcie == true)
        {
            throw new MachineDescriptionException($"{path}.pcie", "a function on a conventional PCI bus (behind a PCIe-to-PCI bridge) cannot be PCI Express");
        }

        if (conventionalBus && bridgeKind?.IsExpress() == true)
        {
            throw new MachineDescriptionException($"{path}.type", $"a {type} cannot sit on a conventional PCI bus");
        }

        string? driver = Str(e, path, "driver");
        if (driver is "vfio-pci")
        {
            throw new MachineDescriptionException($"{path}.driver", "vfio-pci is not a host driver: bind it after boot through sysfs, as an administrator does");
        }
        ushort? acs = null;
        if (e.TryGetProperty("acs", out JsonElement acsEl))
        {
            acs = acsEl.ValueKind switch
            {
                JsonValueKind.True => PciRegs.ReqAcsFlags,
                JsonValueKind.False => 0,
                JsonValueKind.Null => null,
                _ => (ushort)ParseNumber(acsEl, $"{path}.acs", 0, 0x7f),
            };
        }

        ushort? acsQuirk = e.TryGetProperty("acsQuirk", out JsonElement q) && q.ValueKind != JsonValueKind.Null
            ? q.ValueKind == JsonValueKind.True ? PciRegs.ReqAcsFlags : (ushort)ParseNumber(q, $"{path}.acsQuirk", 0, 0x7f)
            : null;
        bool multifunction = Bool(e, path, "multifunction") ?? false;
        if (acs is not null && !isBridge && (!multifunction || pcie == false || conventionalBus))
        {
            throw new MachineDescriptionException($"{path}.acs", "only ports and multifunction PCI Express functions carry an ACS capability");
        }

        if (acs is not null && bridgeKind?.HasConventionalBus() == true)
        {
            throw new MachineDescriptionException($"{path}.acs", $"a {type} has no ACS capability (PCIe 6.12.1)");
        }

        var d = new PciFunctionDescription
        {
            Path = path,
            Slot = Int(e, path, "slot", 0, 31) ?? throw new MachineDescriptionException($"{path}.slot", "every function needs a slot (0..31)"),
            Function = Int(e, path, "function", 0, 7) ?? 0,
            Type = type,
            Vendor = Id(e, path, "vendor", 0xffff),
            Device = Id(e, path, "device", 0xffff),
            SubsystemVendor = Id(e, path, "subsystemVendor", 0xffff),
            SubsystemDevice = Id(e, path, "subsystemDevice", 0xffff),
            Class = Id(e, path, "class", 0xffffff),
            Revision = (byte?)Id(e, path, "revision", 0xff),
            Pcie = pcie,
            Multifunction = multifunction,
            Acs = acs,
            AcsQuirk = acsQuirk,
            Resets = ReadResets(e, path),
            Bars = ReadBars(e, path),
            RomSize = Size(e, path, "rom") ?? 0,
            RomImages = Int(e, path, "romImages", 0, 8) ?? 1,
            MsiVectors = Int(e, path, "msi", 0, 32) ?? 0,
            Msix = ReadMsix(e, path),
            Capabilities = ReadCapabilities(e, path),
            InterruptPin = ReadIntx(e, path),
            DmaAliases = ReadIntList(e, path, "dmaAliases", 0, 255),
            SecondaryBus = Int(e, path, "secondaryBus", 1, 255),
            Driver = driver,
            Options = ReadOptions(e, path),
            Sriov = ReadSriov(e, path, type),
        };

        if (d.MsiVectors != 0 && (d.MsiVectors & (d.MsiVectors - 1)) != 0)
        {
            throw new MachineDescriptionException($"{path}.msi", $"{d.MsiVectors} is not 1, 2, 4, 8, 16 or 32");
        }

        if (d.RomSize != 0 && (d.RomSize < 2048 || (d.RomSize & (d.RomSize - 1)) != 0))
        {
            throw new MachineDescriptionException($"{path}.rom", $"{d.RomSize} is not a power of two of at least 2K");
        }

        if (e.TryGetProperty("romImages", out _) && (d.RomSize == 0 || d.RomImages * 1024L > d.RomSize))
        {
            throw new MachineDescriptionException($"{path}.romImages", d.RomSize == 0 ? "needs a \"rom\" size" : $"{d.RomImages} images do not fit half of a {d.RomSize}-byte ROM in 512-byte blocks");
        }

        if (d.Msix is { } msix && type == "generic")
        {
            CheckMsixPlacement(msix, d.Bars, $"{path}.msix");
        }

        if (e.TryGetProperty("children", out JsonElement children))
        {
            if (!isBridge)
            {
                throw new MachineDescriptionException($"{path}.children", $"a {type} is not a bridge and has no bus below it");
            }

            d = d with { Children = ReadFunctions(children, $"{path}.children", conventionalBus: bridgeKind?.HasConventionalBus() == true || conventionalBus) };
        }

        if (bridgeKind == PciBridgeKind.RootPort && path.Contains(".children", StringComparison.Ordinal))
        {
            throw new MachineDescriptionException($"{path}.type", "root ports sit on the root bus");
        }

        return d;
    }

    /// <summary>
    /// "sriov": { "totalVfs", "vfDevice", "offset" (default 1), "stride" (default 1), "bars"
    /// (each VF's BARs: memory, at least 4K), "msix" (in the VF's BARs) } — generic PCI
    /// Express endpoints only; every VF must stay on the PF's bus (devfn + offset +
    /// stride × (totalVfs − 1) ≤ 255), since the machine gives each root port's bus one number.
    /// </summary>
    private static SriovDescription? ReadSriov(JsonElement e, string path, string type)
    {
        if (!e.TryGetProperty("sriov", out JsonElement o) || o.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        string p = $"{path}.sriov";
        if (type != "generic")
        {
            throw new MachineDescriptionException(p, $"only the generic model has an SR-IOV capability (this is a {type})");
        }

        if (Bool(e, path, "pcie") == false || (Bool(e, path, "multifunction") ?? false))
        {
            throw new MachineDescriptionException(p, "an SR-IOV PF here is a single-function PCI Express endpoint");
        }

        Obj(o, p, "totalVfs", "vfDevice", "offset", "stride", "bars", "msix", "comment");
        int total = Int(o, p, "totalVfs", 1, 255) ?? throw new MachineDescriptionException($"{p}.totalVfs", "an SR-IOV capability needs totalVfs (1..255)");
        uint vfDevice = Id(o, p, "vfDevice", 0xffff) ?? throw new MachineDescriptionException($"{p}.vfDevice", "an SR-IOV capability needs the VF device id");
        int offset = Int(o, p, "offset", 1, 255) ?? 1;
        int stride = Int(o, p, "stride", 1, 255) ?? 1;
        int slot = Int(e, path, "slot", 0, 31) ?? 0;
        int function = Int(e, path, "function", 0, 7) ?? 0;
        int last = (slot << 3) + function + offset + (stride * (total - 1));
        if (last > 255)
        {
            throw new MachineDescriptionException($"{p}.totalVfs", string.Create(CultureInfo.InvariantCulture, $"VF {total - 1} would take devfn 0x{last:x}, beyond the PF's bus (devfn + offset + stride x (totalVfs - 1) must stay <= 255)"));
        }

        List<BarDescription> bars = ReadBars(o, p);
        foreach (BarDescription b in bars)
        {
            if (b.Kind == PciBarKind.Io || b.Size < 4096)
            {
                throw new MachineDescriptionException($"{p}.bars", $"VF BAR {b.Index} must be memory of at least 4K (sriov_init refuses smaller VF BARs)");
            }
        }

        MsixDescription? msix = ReadMsix(o, p);
        if (msix is not null)
        {
            CheckMsixPlacement(msix, bars, $"{p}.msix");
        }

        return new SriovDescription(total, vfDevice, offset, stride, bars, msix);
    }

    private static List<PciResetMethod> ReadResets(JsonElement e, string path)
    {
        if (!e.TryGetProperty("resets", out JsonElement arr))
        {
            return [PciResetMethod.Flr, PciResetMethod.Pm, PciResetMethod.Bus];
        }

        if (arr.ValueKind != JsonValueKind.Array)
        {
            throw new MachineDescriptionException($"{path}.resets", "expected an array of reset methods (\"flr\", \"pm\", \"bus\")");
        }

        var list = new List<PciResetMethod>();
        int i = 0;
        foreach (JsonElement m in arr.EnumerateArray())
        {
            PciResetMethod method = (m.ValueKind == JsonValueKind.String ? m.GetString() : null) switch
            {
                "flr" => PciResetMethod.Flr,
                "pm" => PciResetMethod.Pm,
                "bus" => PciResetMethod.Bus,
                _ => throw new MachineDescriptionException($"{path}.resets[{i}]", $"{m.GetRawText()} is not a reset method (\"flr\", \"pm\", \"bus\")"),
            };
            if (list.Contains(method))
            {
                throw new MachineDescriptionException($"{path}.resets[{i}]", $"{m.GetRawText()} is listed twice");
            }

            list.Add(method);
            i++;
        }

        return list;
    }

    private static List<BarDescription> ReadBars(JsonElement e, string path)
    {
        if (!e.TryGetProperty("bars", out JsonElement arr))
        {
            return [];
        }

        if (arr.ValueKind != JsonValueKind.Array)
        {
            throw new MachineDescriptionException($"{path}.bars", "expected an array of BARs");
        }

        var list = new List<BarDescription>();
        int i = 0;
        foreach (JsonElement b in arr.EnumerateArray())
        {
            string p = $"{path}.bars[{i}]";
            Obj(b, p, "index", "size", "type", "prefetch", "comment");
            int index = Int(b, p, "index", 0, 5) ?? throw new MachineDescriptionException($"{p}.index", "a BAR needs an index (0..5)");
            long size = Size(b, p, "size") ?? throw new MachineDescriptionException($"{p}.size", "a BAR needs a size");
            PciBarKind kind = Str(b, p, "type") switch
            {
                null or "mem32" => PciBarKind.Memory32,
                "mem64" => PciBarKind.Memory64,
                "io" => PciBarKind.Io,
                string other => throw new MachineDescriptionException($"{p}.type", $"\"{other}\" is not mem32, mem64 or io"),
            };
            long min = kind == PciBarKind.Io ? 4 : 16;
            if (size < min || (size & (size - 1)) != 0 || (kind != PciBarKind.Memory64 && size > 1L << 31))
            {
                throw new MachineDescriptionException($"{p}.size", $"{size} is not a power of two between {min} and {(kind == PciBarKind.Memory64 ? "2^52" : "2G")}");
            }

            foreach (BarDescription other in list)
            {
                if (other.Index == index || (other.Kind == PciBarKind.Memory64 && other.Index + 1 == index) || (kind == PciBarKind.Memory64 && index + 1 == other.Index))
                {
                    throw new MachineDescriptionException($"{p}.index", $"BAR {index} overlaps BAR {other.Index} (a 64-bit BAR takes two registers)");
                }
            }

            if (kind == PciBarKind.Memory64 && index == 5)
            {
                throw new MachineDescriptionException($"{p}.index", "a 64-bit BAR cannot start at index 5");
            }

            list.Add(new BarDescription(index, size, kind, Bool(b, p, "prefetch") ?? false));
            i++;
        }

        return list;
    }

    private static readonly string[] s_capabilityTypes = ["vpd", "vendor", "pcix", "af", "aer", "power-budget", "vendor-ext", "dvsec", "raw", "raw-ext"];

    private static List<CapabilityDescription> ReadCapabilities(JsonElement e, string path)
    {
        if (!e.TryGetProperty("capabilities", out JsonElement arr))
        {
            return [];
        }

        if (arr.ValueKind != JsonValueKind.Array)
        {
            throw new MachineDescriptionException($"{path}.capabilities", "expected an array of capabilities");
        }

        var list = new List<CapabilityDescription>();
        int i = 0;
        foreach (JsonElement c in arr.EnumerateArray())
        {
            string p = $"{path}.capabilities[{i}]";
            Obj(c, p, "type", "id", "vendor", "payload", "text", "writable", "size", "flr", "comment");
            string type = Str(c, p, "type") ?? throw new MachineDescriptionException($"{p}.type", $"a capability needs a type ({string.Join(", ", s_capabilityTypes)})");
            if (Array.IndexOf(s_capabilityTypes, type) < 0)
            {
                throw new MachineDescriptionException($"{p}.type", $"\"{type}\" is not one of {string.Join(", ", s_capabilityTypes)}");
            }

            byte[] payload = ReadPayload(c, p);
            int? id = type switch
            {
                "raw" => Int(c, p, "id", 0, 0xff) ?? throw new MachineDescriptionException($"{p}.id", "a raw capability needs its id (0..0xff)"),
                "raw-ext" => Int(c, p, "id", 0, 0xffff) ?? throw new MachineDescriptionException($"{p}.id", "a raw-ext capability needs its id (0..0xffff)"),
                _ => Int(c, p, "id", 0, 0xffff),
            };
            int? size = Int(c, p, "size", 4, PciDevice.VpdMaxSize);
            if (type is "raw" or "raw-ext" && payload.Length == 0 && size is null)
            {
                throw new MachineDescriptionException($"{p}.size", "a raw capability needs a payload or a size");
            }

            list.Add(new CapabilityDescription
            {
                Type = type,
                Id = id,
                Vendor = Int(c, p, "vendor", 0, 0xffff),
                Payload = payload,
                Writable = Bool(c, p, "writable"),
                Size = size,
                Flr = Bool(c, p, "flr"),
            });
            i++;
        }

        return list;
    }

    /// <summary>"payload": hex bytes ("61 62 63" or "616263"), or "text": ASCII.</summary>
    private static byte[] ReadPayload(JsonElement c, string path)
    {
        if (Str(c, path, "text") is { } text)
        {
            return System.Text.Encoding.ASCII.GetBytes(text);
        }

        if (Str(c, path, "payload") is not { } hex)
        {
            return [];
        }

        string digits = hex.Replace(" ", string.Empty, StringComparison.Ordinal);
        try
        {
            return Convert.FromHexString(digits);
        }
        catch (FormatException)
        {
            throw new MachineDescriptionException($"{path}.payload", $"\"{hex}\" is not hex bytes");
        }
    }

    private static MsixDescription? ReadMsix(JsonElement e, string path)
    {
        if (!e.TryGetProperty("msix", out JsonElement m) || m.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        string p = $"{path}.msix";
        Obj(m, p, "vectors", "tableBar", "tableOffset", "pbaBar", "pbaOffset", "comment");
        return new MsixDescription(
            Int(m, p, "vectors", 1, 2048) ?? throw new MachineDescriptionException($"{p}.vectors", "MSI-X needs a vector count (1..2048)"),
            Int(m, p, "tableBar", 0, 5) ?? throw new MachineDescriptionException($"{p}.tableBar", "MSI-X needs the table's BAR"),
            Size(m, p, "tableOffset") ?? 0,
            Int(m, p, "pbaBar", 0, 5) ?? throw new MachineDescriptionException($"{p}.pbaBar", "MSI-X needs the PBA's BAR"),
            Size(m, p, "pbaOffset") ?? throw new MachineDescriptionException($"{p}.pbaOffset", "MSI-X needs the PBA's offset"));
    }

    /// <summary>The MSI-X table and PBA of a generic function live in its described memory BARs, 8-byte aligned (PCIe 6.0 §7.7.2).</summary>
    private static void CheckMsixPlacement(MsixDescription msix, IReadOnlyList<BarDescription> bars, string path)
    {
        long tableBytes = msix.Vectors * (long)PciRegs.MsixEntrySize;
        long pbaBytes = (msix.Vectors + 63) / 64 * 8L;
        foreach ((string field, int bar, long offset, long bytes) in new[] { ("table", msix.TableBar, msix.TableOffset, tableBytes), ("pba", msix.PbaBar, msix.PbaOffset, pbaBytes) })
        {
            BarDescription? b = bars.FirstOrDefault(x => x.Index == bar);
            if (b is null || b.Kind == PciBarKind.Io)
            {
                throw new MachineDescriptionException($"{path}.{field}Bar", $"BAR {bar} is not one of the function's memory BARs");
            }

            if ((offset & 7) != 0 || offset + bytes > b.Size)
            {
                throw new MachineDescriptionException($"{path}.{field}Offset", $"0x{offset:x} + {bytes} bytes is not 8-byte aligned inside BAR {bar} ({b.Size} bytes)");
            }
        }
    }

    private static int ReadIntx(JsonElement e, string path)
    {
        if (!e.TryGetProperty("intx", out JsonElement v))
        {
            return 1;
        }

        return (v.ValueKind == JsonValueKind.String ? v.GetString() : v.ValueKind == JsonValueKind.Null ? "none" : null) switch
        {
            "none" => 0,
            "A" => 1,
            "B" => 2,
            "C" => 3,
            "D" => 4,
            _ => throw new MachineDescriptionException($"{path}.intx", $"{v.GetRawText()} is not \"A\", \"B\", \"C\", \"D\" or \"none\""),
        };
    }

    private static Dictionary<string, string> ReadOptions(JsonElement e, string path)
    {
        var d = new Dictionary<string, string>(StringComparer.Ordinal);
        if (e.TryGetProperty("options", out JsonElement o))
        {
            if (o.ValueKind != JsonValueKind.Object)
            {
                throw new MachineDescriptionException($"{path}.options", "expected an object of model options");
            }

            foreach (JsonProperty p in o.EnumerateObject())
            {
                d[p.Name] = p.Value.GetRawText();
            }
        }

        return d;
    }

    // ---- Field helpers: each names the field in its message.

    private static void Obj(JsonElement e, string path, params string[] allowed)
    {
        if (e.ValueKind != JsonValueKind.Object)
        {
            throw new MachineDescriptionException(path, $"expected an object, found {e.ValueKind.ToString().ToLowerInvariant()}");
        }

        foreach (JsonProperty p in e.EnumerateObject())
        {
            if (Array.IndexOf(allowed, p.Name) < 0)
            {
                throw new MachineDescriptionException($"{path}.{p.Name}", $"unknown field (allowed here: {string.Join(", ", allowed.Where(a => a != "comment"))})");
            }
        }
    }

    private static string? Str(JsonElement e, string path, string name)
    {
        if (!e.TryGetProperty(name, out JsonElement v) || v.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        return v.ValueKind == JsonValueKind.String && v.GetString()!.Length > 0
            ? v.GetString()
            : throw new MachineDescriptionException($"{path}.{name}", $"expected a non-empty string, found {v.GetRawText()}");
    }

    private static bool? Bool(JsonElement e, string path, string name)
    {
        if (!e.TryGetProperty(name, out JsonElement v) || v.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        return v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw new MachineDescriptionException($"{path}.{name}", $"expected true or false, found {v.GetRawText()}"),
        };
    }

    private static int? Int(JsonElement e, string path, string name, int min, int max)
        => e.TryGetProperty(name, out JsonElement v) && v.ValueKind != JsonValueKind.Null ? (int)ParseNumber(v, $"{path}.{name}", min, max) : null;

    private static uint? Id(JsonElement e, string path, string name, long max)
        => e.TryGetProperty(name, out JsonElement v) && v.ValueKind != JsonValueKind.Null ? (uint)ParseNumber(v, $"{path}.{name}", 0, max) : null;

    private static long? Size(JsonElement e, string path, string name)
        => e.TryGetProperty(name, out JsonElement v) && v.ValueKind != JsonValueKind.Null ? ParseSize(v, $"{path}.{name}") : null;

    private static List<int> ReadIntList(JsonElement e, string path, string name, int min, int max)
    {
        var list = new List<int>();
        if (!e.TryGetProperty(name, out JsonElement arr))
        {
            return list;
        }

        if (arr.ValueKind != JsonValueKind.Array)
        {
            throw new MachineDescriptionException($"{path}.{name}", "expected an array of numbers");
        }

        int i = 0;
        foreach (JsonElement v in arr.EnumerateArray())
        {
            list.Add((int)ParseNumber(v, $"{path}.{name}[{i}]", min, max));
            i++;
        }

        return list;
    }

    private static long ParseNumber(JsonElement v, string field, long min, long max)
    {
        long n;
        if (v.ValueKind == JsonValueKind.Number && v.TryGetInt64(out long x))
        {
            n = x;
        }
        else if (v.ValueKind == JsonValueKind.String && v.GetString() is { } s && s.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
            && long.TryParse(s.AsSpan(2), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out long h))
        {
            n = h;
        }
        else
        {
            throw new MachineDescriptionException(field, $"expected a number (or a \"0x…\" string), found {v.GetRawText()}");
        }

        return n < min || n > max
            ? throw new MachineDescriptionException(field, string.Create(CultureInfo.InvariantCulture, $"{n} is out of range {min}..{max}"))
            : n;
    }

    private static long ParseSize(JsonElement v, string field)
    {
        if (v.ValueKind == JsonValueKind.Number)
        {
            return v.TryGetInt64(out long n) && n >= 0 ? n : throw new MachineDescriptionException(field, $"{v.GetRawText()} is not a size");
        }

        string s = v.ValueKind == JsonValueKind.String ? v.GetString()!.Trim() : string.Empty;
        if (s.StartsWith("0x", StringComparison.OrdinalIgnoreCase))
        {
            return long.TryParse(s.AsSpan(2), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out long h) ? h : throw new MachineDescriptionException(field, $"\"{s}\" is not a size");
        }

        int shift = s.Length > 0 ? char.ToUpperInvariant(s[^1]) switch { 'K' => 10, 'M' => 20, 'G' => 30, 'T' => 40, _ => 0 } : 0;
        string digits = shift > 0 ? s[..^1] : s;
        return long.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out long b) && b <= (long.MaxValue >> shift)
            ? b << shift
            : throw new MachineDescriptionException(field, $"{v.GetRawText()} is not a size (a number, or a string such as \"4K\", \"16M\", \"2G\")");
    }
}
