// The catalogue: scenarios found by name. The default catalogue holds the built-in ones
// (the vfio.rst demo, the lifecycle scenarios); a user's catalogue adds their own.

using System.Diagnostics.CodeAnalysis;
using Vfio.Sim.Scenarios.Lifecycle;
using Vfio.Sim.Scenarios.Pci;

namespace Vfio.Sim.Scenarios;

/// <summary>Scenarios by name.</summary>
public sealed class ScenarioCatalog
{
    private readonly Dictionary<string, Scenario> _byName = new(StringComparer.Ordinal);
    private readonly List<Scenario> _all = [];

    /// <summary>A catalogue of <paramref name="scenarios"/>; two with one name is a programming error.</summary>
    public ScenarioCatalog(IEnumerable<Scenario> scenarios)
    {
        ArgumentNullException.ThrowIfNull(scenarios);
        foreach (Scenario s in scenarios)
        {
            if (!_byName.TryAdd(s.Name, s))
            {
                throw new ArgumentException($"two scenarios are called '{s.Name}'", nameof(scenarios));
            }

            _all.Add(s);
        }
    }

    /// <summary>The built-in scenarios.</summary>
    public static ScenarioCatalog Default { get; } = new(
    [
        new VfioRstDemo(),
        new MttyDemo(),
        new UnbindWithRequest(),
        new SetContainerVsUnset(),

        // The races, in the order of docs/races.md.
        new DriverBindIntoLiveGroup(),
        new UnbindVsViability(),
        new GroupOpenVsLastRemoval(),
        new GetDeviceFdVsUnregister(),
        new Kvm.KvmVfioLockOrder(),
        new ErrReqVsRelease(),
        new IntxTriggerSwap(),
        new IntxUnmaskVsDisable(),
        new IntxExclusiveAutoEnable(),
        new Pci.BarAccessVsMemoryDisable(),
        new Pci.IoeventfdVsReset(),
        new Pci.ConcurrentBarFaults(),
        new Type1.ReplayUnwind(),
        new Type1.LockedVmAcrossExec(),
        new Mdev.MdevCreateRemoveVsUnregister(),
        new UnbindGroupLifetime(),
        new TeardownVsDeviceSetWalk(),
        new KvmGroupVsContainerChange(),
        new UnbindNoWait(),
    ]);

    /// <summary>Every scenario, in catalogue order.</summary>
    public IReadOnlyList<Scenario> All => _all;

    /// <summary>The scenario called <paramref name="name"/>, if any.</summary>
    public bool TryFind(string name, [NotNullWhen(true)] out Scenario? scenario) => _byName.TryGetValue(name, out scenario);

    /// <summary>The scenario called <paramref name="name"/>; throws naming the ones there are.</summary>
    public Scenario Get(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return _byName.TryGetValue(name, out Scenario? s)
            ? s
            : throw new ArgumentException($"no scenario is called '{name}': the catalogue has {string.Join(", ", _all.Select(x => x.Name))}", nameof(name));
    }

    /// <summary>This catalogue plus <paramref name="more"/>.</summary>
    public ScenarioCatalog With(params Scenario[] more) => new([.. _all, .. more]);
}
