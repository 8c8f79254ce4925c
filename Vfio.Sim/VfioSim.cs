// The public host: one booted simulated kernel and machine with the modules the builder
// loaded, and what a user does next in a call or two — spawn a process, bind a device to
// a driver through sysfs, open container, group and device through the typed client,
// allocate user memory, run a body under the scheduler, and look at what happened (the
// trace, dmesg, the IOMMU fault log, the invariant checkers).
//
// The host adds no behaviour of its own: every call goes through the same sysfs writes,
// syscalls and ioctls a user-space program would make, so what a lab, a design experiment
// or a race regression sees is what the kernel layers do.

using Vfio.Core;
using Vfio.Iommu.Type1;
using Vfio.Kernel;
using Vfio.Pci;
using Vfio.Platform;
using Vfio.Platform.Iommu;
using Vfio.Platform.Mm;
using Vfio.Platform.Proc;

namespace Vfio.Sim;

/// <summary>
/// A booted simulation: <see cref="Kernel"/>, <see cref="Machine"/> and the loaded modules.
/// Create one with <see cref="CreateBuilder"/> (or <see cref="CreateDefault"/>).
/// </summary>
public sealed partial class VfioSim
{
    private RunResult? _lastRun;

    internal VfioSim(SimMachine machine)
    {
        Machine = machine;
        Kernel = machine.Kernel;
    }

    /// <summary>A builder: kernel, machine and modules, then <see cref="VfioSimBuilder.Build"/>.</summary>
    public static VfioSimBuilder CreateBuilder() => new();

    /// <summary>
    /// The embedded default machine with vfio, type1 and vfio-pci loaded, on a controlled
    /// kernel (Linux 6.12) with seed <paramref name="seed"/>.
    /// </summary>
    public static VfioSim CreateDefault(ulong seed = 1) => CreateBuilder().UseSeed(seed).AddVfioPci().Build();

    /// <summary>The simulated kernel: scheduler, clock, lockdep, fault injection, trace, log.</summary>
    public SimKernel Kernel { get; }

    /// <summary>The simulated machine: memory, processes, /dev and /sys, the PCI bus, the IOMMU.</summary>
    public SimMachine Machine { get; }

    /// <summary>The Linux release the kernel behaves as.</summary>
    public KernelProfile Profile => Kernel.Profile;

    /// <summary>The vfio core; throws when the builder did not load vfio.</summary>
    public VfioCore Vfio
    {
        get => VfioOrNull ?? throw new InvalidOperationException("vfio is not loaded: call AddVfio() (or AddType1/AddVfioPci) on the builder");
        internal set => VfioOrNull = value;
    }

    /// <summary>The vfio core, or null when it is not loaded.</summary>
    public VfioCore? VfioOrNull { get; private set; }

    /// <summary>The type1 IOMMU backend, or null when it is not loaded.</summary>
    public VfioIommuType1? Type1 { get; internal set; }

    /// <summary>The vfio-pci driver, or null when it is not loaded.</summary>
    public VfioPciDriver? VfioPci { get; internal set; }

    /// <summary>KVM, or null when it is not loaded.</summary>
    public Vfio.Core.Kvm.Kvm? Kvm { get; internal set; }

    // ---- Running.

    /// <summary>
    /// Runs <paramref name="body"/> as the task <c>main</c> (with the controlled scheduler,
    /// every task it spawns is interleaved by the seed) and waits for it and every task it
    /// spawned. Never throws for a failure of the simulated code: see the result's
    /// <see cref="RunResult.Outcome"/>, report and trace.
    /// </summary>
    public RunResult Run(Action body) => Run("main", body);

    /// <summary>As <see cref="Run(Action)"/>, naming the main task <paramref name="taskName"/>.</summary>
    public RunResult Run(string taskName, Action body)
    {
        RunResult r = Kernel.Run(taskName, body);
        _lastRun = r;
        return r;
    }

    /// <summary>
    /// strace for the machine's processes (<see cref="SyscallTracer.Start"/> one or all):
    /// every syscall with its decoded arguments, result and virtual time.
    /// </summary>
    public SyscallTracer Strace => Machine.Strace;

    /// <summary>The object graph now: processes, files, groups, containers, devices, domains and mappings with their reference counts.</summary>
    public Graphs.ObjectGraph Graph() => Graphs.ObjectGraph.Capture(this);

    /// <summary>The result of the last <see cref="Run(Action)"/>, or null.</summary>
    public RunResult? LastRun => _lastRun;

    // ---- Looking at what happened.

    /// <summary>The kernel's message buffer, as <c>dmesg</c> prints it.</summary>
    public string Dmesg() => Kernel.Log.Dmesg();

    /// <summary>Every WARN, BUG, lockdep and refcount report so far.</summary>
    public IReadOnlyList<KernelWarning> Warnings => Kernel.Warnings;

    /// <summary>The reports no one declared as expected (with <see cref="SimKernel.ExpectWarning"/>).</summary>
    public IReadOnlyList<KernelWarning> UnexpectedWarnings => Kernel.UnexpectedWarnings;

    /// <summary>The IOMMU's fault log, oldest first (empty on a machine without an IOMMU).</summary>
    public IReadOnlyList<IommuFault> IommuFaults => Machine.Iommu?.Hardware.Faults.Snapshot() ?? [];

    /// <summary>
    /// Runs the invariant checkers and returns what they found (empty when everything
    /// holds): physical memory (every frame's refcount is its mappings plus its pins) and,
    /// with type1 loaded, every live type1 container (the mapping tree, <c>dma_avail</c>,
    /// page tables against mappings, pins, <c>locked_vm</c>, dirty bitmaps).
    /// </summary>
    public IReadOnlyList<string> CheckInvariants()
    {
        var problems = new List<string>(MemoryInvariants.Check(Machine));
        if (Type1 is not null && VfioOrNull is { } core)
        {
            // A type1 instance lives as long as its container has a group, so the groups'
            // containers reach every one of them.
            var seen = new HashSet<object>(ReferenceEqualityComparer.Instance);
            foreach (VfioGroup g in core.Groups)
            {
                if (g.Container is { } c && VfioIommuType1.Instance(c) is { } iommu && seen.Add(iommu)
                    && iommu.CheckInvariants(iommu.EntryLimit) is { } problem)
                {
                    problems.Add($"type1 container {c.Id}: {problem}");
                }
            }
        }

        return problems;
    }

    /// <summary>Pages pinned in physical memory right now (long-term GUP and driver pins).</summary>
    public long PinnedPages => Machine.Memory.PinnedPages;

    /// <inheritdoc/>
    public override string ToString()
        => $"vfio-sim on {Profile.Name}, {Kernel.Mode} scheduler, seed {Kernel.Seed}, machine {Machine.Description?.Name ?? "(built in code)"}";
}
