// The builder every user starts from, in the style of the .NET host builders and Npgsql's
// data-source builder: say which kernel (profile, scheduler, seed, strategy, lockdep,
// trace), which machine (the embedded default, a JSON description, or code) and which
// modules (vfio with its design variants, type1, vfio-pci, kvm, drivers of your own), then
// Build() boots it all in one call.
//
// Boot order is the kernel's module dependency order: the machine (firmware, IOMMU, PCI
// enumeration, host drivers), then vfio, type1, vfio-pci, kvm, mdev, then the extra PCI drivers
// and modules in the order they were added. Boot runs on the calling thread before any
// scheduled run, so a scenario's schedule starts where its body starts.

using Vfio.Core;
using Vfio.Iommu.Type1;
using Vfio.Kernel;
using Vfio.Mdev;
using Vfio.Pci;
using Vfio.Platform;
using Vfio.Platform.Machine;
using Vfio.Platform.Pci;

namespace Vfio.Sim;

/// <summary>
/// Configures and boots a <see cref="VfioSim"/>. Every method returns the builder, so
/// calls chain; <see cref="Build"/> boots. A builder may build several times: each build
/// is a fresh kernel and machine.
/// </summary>
/// <example>
/// <code>
/// VfioSim sim = VfioSim.CreateBuilder()
///     .UseProfile(KernelProfile.Linux6_1)
///     .UseSeed(7)
///     .AddVfioPci()            // loads vfio and type1 first, as modprobe would
///     .Build();
/// </code>
/// </example>
public sealed partial class VfioSimBuilder
{
    private readonly List<Action<VfioSim>> _extras = [];
    private KernelConfig _kernel = new() { Mode = SchedulerMode.Controlled };
    private Func<KernelConfig, KernelConfig>? _configureKernel;
    private MachineDescription? _description;
    private string? _machineFile;
    private Func<SimKernel, SimMachine>? _machineFactory;
    private VfioOptions? _vfio;
    private VfioIommuType1Options? _type1;
    private VfioPciOptions? _vfioPci;
    private bool _kvm;
    private bool _strace;

    internal VfioSimBuilder()
    {
    }

    /// <summary>The kernel configuration <see cref="Build"/> will use (after <see cref="ConfigureKernel"/>).</summary>
    public KernelConfig KernelConfig => _configureKernel?.Invoke(_kernel) ?? _kernel;

    /// <summary>The Linux release to behave as: <see cref="KernelProfile.Linux6_12"/> (default) or <see cref="KernelProfile.Linux6_1"/>.</summary>
    public VfioSimBuilder UseProfile(KernelProfile profile)
    {
        ArgumentNullException.ThrowIfNull(profile);
        _kernel = _kernel with { Profile = profile };
        return this;
    }

    /// <summary>
    /// How tasks are scheduled: <see cref="SchedulerMode.Controlled"/> (default: one task at a
    /// time, every interleaving decided by the seed, traces that replay) or
    /// <see cref="SchedulerMode.Real"/> (real threads, as fast as .NET's own primitives).
    /// </summary>
    public VfioSimBuilder UseScheduler(SchedulerMode mode)
    {
        _kernel = _kernel with { Mode = mode };
        return this;
    }

    /// <summary>The seed of every random choice: scheduling, fault probabilities, device behaviour.</summary>
    public VfioSimBuilder UseSeed(ulong seed)
    {
        _kernel = _kernel with { Seed = seed };
        return this;
    }

    /// <summary>The controlled scheduler's strategy: <see cref="StrategySpec.Random"/> (default), PCT, round-robin.</summary>
    public VfioSimBuilder UseStrategy(StrategySpec strategy)
    {
        ArgumentNullException.ThrowIfNull(strategy);
        _kernel = _kernel with { Strategy = strategy };
        return this;
    }

    /// <summary>
    /// Replays <paramref name="trace"/> (a controlled run's trace): its seed, profile, step
    /// budget and schedule. Everything else (machine, modules, design) must be configured as
    /// it was for the recorded run.
    /// </summary>
    public VfioSimBuilder UseReplay(RunTrace trace)
    {
        ArgumentNullException.ThrowIfNull(trace);
        if (trace.Mode != SchedulerMode.Controlled)
        {
            throw new ArgumentException("only traces of controlled runs can be replayed; real-mode traces have no schedule", nameof(trace));
        }

        KernelProfile profile = KernelProfile.Presets.FirstOrDefault(p => p.Name == trace.Profile)
            ?? throw new ArgumentException($"the trace was recorded under kernel profile '{trace.Profile}', which this build does not know: use one of {string.Join(", ", KernelProfile.Presets.Select(p => p.Name))}", nameof(trace));
        _kernel = _kernel with
        {
            Mode = SchedulerMode.Controlled,
            Seed = trace.Seed,
            Strategy = StrategySpec.Replay(trace),
            StepBudget = trace.StepBudget,
            Profile = profile,
        };
        return this;
    }

    /// <summary>Lock-order validation (lockdep). On by default.</summary>
    public VfioSimBuilder EnableLockdep(bool enabled = true)
    {
        _kernel = _kernel with { Lockdep = enabled };
        return this;
    }

    /// <summary>
    /// Traces every process's syscalls from boot, as <c>strace -f</c> would (see
    /// <see cref="VfioSim.Strace"/>: <c>sim.Strace.Format()</c> prints them). Off by default;
    /// an untraced syscall costs one read of a flag.
    /// </summary>
    public VfioSimBuilder EnableStrace(bool enabled = true)
    {
        _strace = enabled;
        return this;
    }

    /// <summary>
    /// Turns on the cost model with <paramref name="profile"/> (<see cref="CostProfile.LinuxX86"/>):
    /// every modelled operation advances virtual time by its calibrated cost and is counted
    /// in <c>sim.Kernel.Cost</c>. Off by default; null turns it off.
    /// </summary>
    public VfioSimBuilder UseCostModel(CostProfile? profile)
    {
        _kernel = _kernel with { CostProfile = profile };
        return this;
    }

    /// <summary>Records the kernel's structured trace events (vfio, type1, locks, refcounts, errnos). Off by default, and free when off.</summary>
    public VfioSimBuilder EnableTrace(bool enabled = true)
    {
        _kernel = _kernel with { Trace = enabled };
        return this;
    }

    /// <summary>Records the run's timeline as well as its trace (lock holds, waits, wake-ups, counters) for <see cref="RunTrace.ToPerfetto"/>. Off by default.</summary>
    public VfioSimBuilder EnableTimeline(bool enabled = true)
    {
        _kernel = _kernel with { Timeline = enabled, Trace = enabled || _kernel.Trace };
        return this;
    }

    /// <summary>Adjusts the kernel configuration last (step budget, watchdogs, time scale, whether WARNs fail runs).</summary>
    public VfioSimBuilder ConfigureKernel(Func<KernelConfig, KernelConfig> configure)
    {
        ArgumentNullException.ThrowIfNull(configure);
        Func<KernelConfig, KernelConfig>? previous = _configureKernel;
        _configureKernel = previous is null ? configure : c => configure(previous(c));
        return this;
    }

    /// <summary>Boots the embedded default machine (the default): edu, a NIC, a multifunction pair, a bridge, an NVMe-like device, an IOMMU.</summary>
    public VfioSimBuilder UseDefaultMachine()
    {
        _description = null;
        _machineFile = null;
        _machineFactory = null;
        return this;
    }

    /// <summary>Boots the machine of <paramref name="description"/> (see <see cref="MachineDescriptionReader"/>).</summary>
    public VfioSimBuilder UseMachine(MachineDescription description)
    {
        ArgumentNullException.ThrowIfNull(description);
        UseDefaultMachine();
        _description = description;
        return this;
    }

    /// <summary>Boots the machine described by the JSON file at <paramref name="path"/>; a bad file fails <see cref="Build"/> with <see cref="MachineDescriptionException"/>.</summary>
    public VfioSimBuilder UseMachineFile(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        UseDefaultMachine();
        _machineFile = path;
        return this;
    }

    /// <summary>Boots a machine assembled in code on the new kernel.</summary>
    public VfioSimBuilder UseMachine(Func<SimKernel, SimMachine> factory)
    {
        ArgumentNullException.ThrowIfNull(factory);
        UseDefaultMachine();
        _machineFactory = factory;
        return this;
    }

    /// <summary>Loads vfio with <paramref name="options"/> (module parameters and design variants).</summary>
    public VfioSimBuilder AddVfio(VfioOptions? options = null)
    {
        _vfio = options ?? _vfio ?? new VfioOptions();
        return this;
    }

    /// <summary>Loads vfio with the design variants <paramref name="design"/> applies to today's kernel's.</summary>
    public VfioSimBuilder UseDesign(Func<VfioDesign, VfioDesign> design)
    {
        ArgumentNullException.ThrowIfNull(design);
        VfioOptions options = _vfio ?? new VfioOptions();
        _vfio = options with { Design = design(options.Design) };
        return this;
    }

    /// <summary>Loads vfio_iommu_type1 (and vfio) with <paramref name="options"/>.</summary>
    public VfioSimBuilder AddType1(VfioIommuType1Options? options = null)
    {
        AddVfio();
        _type1 = options ?? _type1 ?? new VfioIommuType1Options();
        return this;
    }

    /// <summary>Loads vfio-pci (and vfio and type1) with <paramref name="options"/> (<c>ids=</c>, <c>disable_denylist</c>, <c>nointxmask</c>).</summary>
    public VfioSimBuilder AddVfioPci(VfioPciOptions? options = null)
    {
        AddType1();
        _vfioPci = options ?? _vfioPci ?? new VfioPciOptions();
        return this;
    }

    /// <summary>Loads KVM: <c>/dev/kvm</c> and the kvm-vfio device.</summary>
    public VfioSimBuilder AddKvm()
    {
        _kvm = true;
        return this;
    }

    /// <summary>
    /// Registers a PCI driver of your own after the modules (for instance a
    /// <see cref="Drivers.SampleVfioPciDriver"/> to try vfio core designs without vfio-pci).
    /// <paramref name="factory"/> runs at boot, once per build.
    /// </summary>
    public VfioSimBuilder AddPciDriver(Func<VfioSim, PciDriver> factory)
    {
        ArgumentNullException.ThrowIfNull(factory);
        _extras.Add(sim =>
        {
            PciDriver driver = factory(sim);
            int err = sim.Machine.Pci.RegisterDriver(driver);
            if (err != 0)
            {
                throw new InvalidOperationException($"cannot register the PCI driver {driver.Name}: {ErrnoExtensions.FromReturn(err).Describe()}");
            }
        });
        return this;
    }

    /// <summary>Runs <paramref name="load"/> at boot after the modules and drivers added before it (an IOMMU backend of your own, a device, a tweak).</summary>
    public VfioSimBuilder AddModule(Action<VfioSim> load)
    {
        ArgumentNullException.ThrowIfNull(load);
        _extras.Add(load);
        return this;
    }

    /// <summary>
    /// Boots: a new kernel, the machine, then the modules in dependency order. A machine
    /// description that cannot be read or built throws <see cref="MachineDescriptionException"/>
    /// (or the file error); a module that cannot load throws <see cref="InvalidOperationException"/>.
    /// </summary>
    public VfioSim Build()
    {
        var kernel = new SimKernel(KernelConfig);
        SimMachine machine;
        if (_machineFactory is not null)
        {
            machine = _machineFactory(kernel);
            if (!ReferenceEquals(machine.Kernel, kernel))
            {
                throw new InvalidOperationException("the machine factory must build its machine on the kernel it is given");
            }
        }
        else
        {
            MachineDescription description = _description
                ?? (_machineFile is not null ? MachineDescriptionReader.Load(_machineFile) : MachineDescriptionReader.Default);
            machine = MachineBuilder.Build(description, kernel);
        }

        if (_strace)
        {
            machine.Strace.Start();
        }

        var sim = new VfioSim(machine);
        if (_vfio is not null)
        {
            sim.Vfio = VfioCore.Load(machine, _vfio);
        }

        if (_type1 is not null)
        {
            sim.Type1 = VfioIommuType1.Load(machine, _type1);
        }

        if (_vfioPci is not null)
        {
            sim.VfioPci = VfioPciDriver.Load(machine, _vfioPci);
        }

        if (_kvm)
        {
            sim.Kvm = Vfio.Core.Kvm.Kvm.Load(machine);
        }

        if (_mdev is not null)
        {
            sim.Mdev = MdevCore.Load(machine, _mdev);
        }

        foreach (Action<VfioSim> extra in _extras)
        {
            extra(sim);
        }

        return sim;
    }
}
