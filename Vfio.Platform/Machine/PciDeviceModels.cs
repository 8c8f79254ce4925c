// The registry of PCI device models a machine description can name. A model is a
// PciDevice subclass marked [PciDeviceModel("name")] with a constructor
// (SimMachine, PciAddress, PciFunctionDescription); adding a device is adding that one file.

using System.Diagnostics.CodeAnalysis;
using System.Reflection;
using Vfio.Platform.Pci;

namespace Vfio.Platform.Machine;

/// <summary>Names a PciDevice subclass as a device model for machine descriptions.</summary>
/// <param name="name">The <c>type</c> value that selects it.</param>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = false, Inherited = false)]
public sealed class PciDeviceModelAttribute(string name) : Attribute
{
    /// <summary>The model's name.</summary>
    public string Name { get; } = name;
}

/// <summary>Creates a function from its description.</summary>
public delegate PciDevice PciDeviceFactory(SimMachine machine, PciAddress address, PciFunctionDescription description);

/// <summary>Device models by name: the ones in this assembly and any registered at run time.</summary>
/// <remarks>Process-wide and copy-on-write: readers see an immutable snapshot, writers swap it atomically.</remarks>
public static class PciDeviceModels
{
    private static Dictionary<string, PciDeviceFactory>? s_models;

    /// <summary>The registered model names, sorted.</summary>
    public static IReadOnlyList<string> Names
    {
        get
        {
            List<string> names = [.. Models.Keys];
            names.Sort(StringComparer.Ordinal);
            return names;
        }
    }

    /// <summary>Registers (or replaces) a model, for devices defined outside this assembly.</summary>
    public static void Register(string name, PciDeviceFactory factory)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(factory);
        Update(d => d[name] = factory);
    }

    /// <summary>Registers every [PciDeviceModel] class of <paramref name="assembly"/>.</summary>
    [RequiresUnreferencedCode("Scans the assembly for device models.")]
    public static void RegisterAssembly(Assembly assembly)
    {
        ArgumentNullException.ThrowIfNull(assembly);
        Update(d => Scan(assembly, d));
    }

    /// <summary>True when <paramref name="name"/> is a known model.</summary>
    public static bool Contains(string name) => Models.ContainsKey(name);

    /// <summary>Builds the function named by <paramref name="description"/>.Type.</summary>
    public static PciDevice Create(SimMachine machine, PciAddress address, PciFunctionDescription description)
    {
        ArgumentNullException.ThrowIfNull(description);
        return Models.TryGetValue(description.Type, out PciDeviceFactory? f)
            ? f(machine, address, description)
            : throw new MachineDescriptionException($"{description.Path}.type", $"unknown device model \"{description.Type}\" (known: {string.Join(", ", Names)})");
    }

    private static Dictionary<string, PciDeviceFactory> Models
    {
        get
        {
            Dictionary<string, PciDeviceFactory>? m = Volatile.Read(ref s_models);
            if (m is null)
            {
                var d = new Dictionary<string, PciDeviceFactory>(StringComparer.Ordinal);
                Scan(typeof(PciDeviceModels).Assembly, d);
                m = Interlocked.CompareExchange(ref s_models, d, null) ?? d;
            }

            return m;
        }
    }

    private static void Update(Action<Dictionary<string, PciDeviceFactory>> change)
    {
        while (true)
        {
            Dictionary<string, PciDeviceFactory> old = Models;
            var copy = new Dictionary<string, PciDeviceFactory>(old, StringComparer.Ordinal);
            change(copy);
            if (Interlocked.CompareExchange(ref s_models, copy, old) == old)
            {
                return;
            }
        }
    }

    [UnconditionalSuppressMessage("Trimming", "IL2026", Justification = "Device models are kept by their attribute.")]
    private static void Scan(Assembly assembly, Dictionary<string, PciDeviceFactory> into)
    {
        foreach (Type t in assembly.GetTypes())
        {
            if (t.GetCustomAttribute<PciDeviceModelAttribute>() is not { } attr || !typeof(PciDevice).IsAssignableFrom(t))
            {
                continue;
            }

            ConstructorInfo ctor = t.GetConstructor([typeof(SimMachine), typeof(PciAddress), typeof(PciFunctionDescription)])
                ?? throw new InvalidOperationException($"device model {t.Name} needs a constructor (SimMachine, PciAddress, PciFunctionDescription)");
            into[attr.Name] = (m, a, d) => (PciDevice)ctor.Invoke([m, a, d]);
        }
    }
}

/// <summary>A machine description that cannot be built; the message names the field.</summary>
public sealed class MachineDescriptionException : Exception
{
    /// <summary>An error at <paramref name="field"/>.</summary>
    public MachineDescriptionException(string field, string message)
        : base($"{field}: {message}")
    {
        Field = field;
    }

    /// <summary>An empty error (for serializers).</summary>
    public MachineDescriptionException()
    {
        Field = string.Empty;
    }

    /// <summary>An error with a message.</summary>
    public MachineDescriptionException(string message)
        : base(message)
    {
        Field = string.Empty;
    }

    /// <summary>An error with a cause.</summary>
    public MachineDescriptionException(string message, Exception inner)
        : base(message, inner)
    {
        Field = string.Empty;
    }

    /// <summary>The JSON path of the offending field (<c>pci[2].children[0].slot</c>).</summary>
    public string Field { get; }
}
