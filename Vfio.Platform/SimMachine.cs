// The simulated machine: the kernel runtime, physical memory, the file tree (/dev, /sys),
// the PCI bus, the I/O port space, the VGA arbiter and the processes. Later layers (PCI
// topology, IOMMU, vfio) hang off it.

using Vfio.Kernel;
using Vfio.Platform.Base;
using Vfio.Platform.Fs;
using Vfio.Platform.Mm;
using Vfio.Platform.Pci;
using Vfio.Platform.Proc;
using Vfio.Platform.Sysfs;

namespace Vfio.Platform;

/// <summary>What a machine is made of (beyond its devices).</summary>
public sealed record MachineConfig
{
    /// <summary>RAM, hugetlb pools and the page placement policy.</summary>
    public MemoryConfig Memory { get; init; } = new();
}

/// <summary>A simulated host: kernel, memory, processes, /dev and /sys, the PCI bus.</summary>
public sealed class SimMachine
{
    // Protects _processes. _nextPid is only advanced with Interlocked.
    private readonly KSpinLock _procLock;
    private readonly SortedDictionary<int, SimProcess> _processes = [];
    private int _nextPid;

    /// <summary>A machine with its own real-mode kernel.</summary>
    public SimMachine(MachineConfig? config = null)
        : this(new SimKernel(), config)
    {
    }

    /// <summary>A machine on <paramref name="kernel"/> (for instance a controlled-mode kernel of a race test).</summary>
    public SimMachine(SimKernel kernel, MachineConfig? config = null)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        Kernel = kernel;
        Config = config ?? new MachineConfig();
        _procLock = new KSpinLock(kernel, "tasklist_lock");
        Memory = new PhysMem(kernel, Config.Memory);
        Vfs = new Vfs(kernel);
        Sysfs = new SysfsTree(Vfs, () => Init!);
        Init = CreateProcess("init", Credentials.Root, new ResourceLimits { MemlockBytes = ResourceLimits.Infinity });
        PciRoot = new SimDevice(this, "pci0000:00");
        PciRoot.SysfsDir = Sysfs.CreateDir(Sysfs.Devices, PciRoot.Name);
        PciRoot.IsRegistered = true;
        Pci = new PciBus(this);
        Interrupts = new InterruptController(kernel);
        IoPorts = new IoPortSpace(kernel);
        Vgaarb = new VgaArbiter(this);
        DmaTranslator = new DirectDma(this);
        Uevents = new UeventLog(kernel);
        Strace = new SyscallTracer(this);
        PciRootBus = new PciBusSegment(this, 0, 0, null, null);
    }

    /// <summary>The kernel runtime.</summary>
    public SimKernel Kernel { get; }

    /// <summary>strace for the machine's processes: off until started.</summary>
    public SyscallTracer Strace { get; }

    /// <summary>The uevents the kernel sent (kobject_uevent), in order.</summary>
    public UeventLog Uevents { get; }

    /// <summary>The description the machine was built from (null for a machine assembled in code).</summary>
    public Machine.MachineDescription? Description { get; init; }

    /// <summary>The configuration the machine was built from.</summary>
    public MachineConfig Config { get; }

    /// <summary>Physical memory.</summary>
    public PhysMem Memory { get; }

    /// <summary>The file tree.</summary>
    public Vfs Vfs { get; }

    /// <summary>/sys.</summary>
    public SysfsTree Sysfs { get; }

    /// <summary>Character devices and misc devices.</summary>
    public CharDevices CharDevices => Vfs.CharDevices;

    /// <summary>pid 1, root with every capability: the default caller of <see cref="SysfsTree"/> conveniences.</summary>
    public SimProcess Init { get; }

    /// <summary>The PCI host bridge device (pci0000:00), parent of the root bus's functions.</summary>
    public SimDevice PciRoot { get; }

    /// <summary>The PCI bus type.</summary>
    public PciBus Pci { get; }

    /// <summary>The root bus (0000:00) of the PCI hierarchy.</summary>
    public PciBusSegment PciRootBus { get; }

    /// <summary>The IOMMU subsystem, or null on a machine without an IOMMU.</summary>
    public Iommu.IommuCore? Iommu { get; internal set; }

    // The groups-only IOMMU core of a machine without an IOMMU (IommuCore.ForSoftwareGroups).
    internal Iommu.IommuCore? SoftwareIommuField;

    // Subsystems loaded on this machine (vfio, kvm), by type.
    private readonly System.Collections.Concurrent.ConcurrentDictionary<Type, object> _modules = new();

    /// <summary>The loaded subsystem of type <typeparamref name="T"/>, or null.</summary>
    public T? GetModule<T>()
        where T : class
        => _modules.TryGetValue(typeof(T), out object? m) ? (T)m : null;

    /// <summary>Registers a loaded subsystem; false if one of that type is already loaded.</summary>
    internal bool AddModule<T>(T module)
        where T : class
        => _modules.TryAdd(typeof(T), module);

    /// <summary>MSI vectors and INTx routing.</summary>
    public InterruptController Interrupts { get; }

    /// <summary>The I/O port space that PCI I/O BARs decode.</summary>
    public IoPortSpace IoPorts { get; }

    /// <summary>The VGA arbiter (drivers/pci/vgaarb.c): who decodes the legacy VGA ranges.</summary>
    public VgaArbiter Vgaarb { get; }

    /// <summary>Where device DMA goes: the IOMMU once one is installed, physical memory otherwise.</summary>
    public IDmaTranslator DmaTranslator { get; internal set; }

    /// <summary>Live processes by pid, read without tasklist_lock: only when no task runs (the object graph's snapshot).</summary>
    internal IReadOnlyList<SimProcess> ProcessesUnlocked => [.. _processes.Values];

    /// <summary>Live processes, by pid.</summary>
    public IReadOnlyList<SimProcess> Processes
    {
        get
        {
            _procLock.Lock();
            try
            {
                return [.. _processes.Values];
            }
            finally
            {
                _procLock.Unlock();
            }
        }
    }

    /// <summary>A new process with a fresh address space and no open files (what exec of a new program gives).</summary>
    public SimProcess CreateProcess(string comm, Credentials? credentials = null, ResourceLimits? limits = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(comm);
        int pid = AllocPid();
        var p = new SimProcess(
            this,
            pid,
            comm,
            credentials ?? Credentials.Root,
            limits ?? new ResourceLimits(),
            new MmStruct(Memory, Kernel, pid),
            new FdTable(Kernel, pid),
            pid == 1 ? null : Init);
        AddProcess(p);
        return p;
    }

    /// <summary>The live process with <paramref name="pid"/>, or null.</summary>
    public SimProcess? FindProcess(int pid)
    {
        _procLock.Lock();
        try
        {
            return _processes.GetValueOrDefault(pid);
        }
        finally
        {
            _procLock.Unlock();
        }
    }

    internal int AllocPid() => Interlocked.Increment(ref _nextPid);

    internal void AddProcess(SimProcess p)
    {
        _procLock.Lock();
        _processes[p.Pid] = p;
        _procLock.Unlock();
    }

    internal void RemoveProcess(SimProcess p)
    {
        _procLock.Lock();
        _processes.Remove(p.Pid);
        _procLock.Unlock();
    }
}
