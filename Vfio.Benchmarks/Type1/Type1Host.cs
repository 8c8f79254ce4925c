// Set-up shared by the type1 benchmarks, booted through the public host (VfioSim): the
// default machine with the memory a benchmark needs, vfio and the real type1 backend
// (dma_entry_limit as a load-time parameter, read when the container is created), the
// sample vfio bus driver for the edu device, and a root process (CAP_IPC_LOCK, so
// RLIMIT_MEMLOCK does not apply) holding container, group and device fds after SET_IOMMU.
// Everything runs in real mode on the benchmark thread, which the kernel adopts as a task
// on first use (as the KMutex and GUP benchmarks do).

using System.Runtime.InteropServices;
using Vfio.Core;
using Vfio.Core.Uapi;
using Vfio.Iommu.Type1;
using Vfio.Kernel;
using Vfio.Platform.Fs;
using Vfio.Platform.Machine;
using Vfio.Platform.Mm;
using Vfio.Platform.Proc;
using Vfio.Sim;
using Vfio.Sim.Drivers;

namespace Vfio.Benchmarks.Type1;

/// <summary>A machine with type1 loaded, the edu device bound to a vfio driver and its container set up.</summary>
internal sealed class Type1Host
{
    public const string Edu = "0000:01:00.0";
    public const string DriverName = "vfio-bench";
    public const long GiB = 1L << 30;
    public const uint RW = VfioType1Flags.MapRead | VfioType1Flags.MapWrite;

    /// <param name="memory">The machine's memory.</param>
    /// <param name="dmaEntryLimit">dma_entry_limit, a type1 load-time parameter (read when the container is created).</param>
    /// <param name="emulatedOps">When set, the device registers as an emulated-IOMMU device with these ops (no IOMMU domain: maps do not pin).</param>
    public Type1Host(MemoryConfig memory, uint dmaEntryLimit = VfioIommuType1.DefaultDmaEntryLimit, IVfioDeviceOps? emulatedOps = null)
    {
        // An emulated-IOMMU device gets a software group, which a device already in an IOMMU
        // group cannot join: that machine has no IOMMU (as an mdev parent would not need one).
        MachineDescription description = MachineDescriptionReader.Default with { Memory = memory };
        SampleVfioPciDriver driver = new(DriverName) { Emulated = emulatedOps is not null, CustomOps = emulatedOps };
        Sim = VfioSim.CreateBuilder()
            .UseScheduler(SchedulerMode.Real)
            .UseMachine(emulatedOps is null ? description : description with { Iommu = null })
            .AddType1(new VfioIommuType1Options { DmaEntryLimit = dmaEntryLimit })
            .AddPciDriver(_ => driver)
            .Build();
        Sim.Bind(Edu, DriverName);
        Device = driver.DeviceOf(Sim.Device(Edu));

        User = Sim.Spawn("qemu");
        Session = Sim.Open(User, Edu);
        Container = Session.Container.Fd;

        SimFile f = User.Files.Get(Container) ?? throw new InvalidOperationException("no container file");
        VfioContainer container = VfioContainer.FromFile(f) ?? throw new InvalidOperationException("not a container");
        Iommu = VfioIommuType1.Instance(container) ?? throw new InvalidOperationException("not type1");
    }

    public VfioSim Sim { get; }

    public SimProcess User { get; }

    /// <summary>The container, group and device fds of <see cref="User"/>, kept open for the host's lifetime.</summary>
    public VfioSession Session { get; }

    public VfioDevice Device { get; }

    public int Container { get; }

    public VfioIommu Iommu { get; }

    /// <summary>Populated read-write anonymous memory (with <paramref name="extra"/> flags, e.g. hugetlb).</summary>
    public ulong Buffer(long bytes, MapFlags extra = MapFlags.None)
    {
        long a = User.Mmap(0, (ulong)bytes, Prot.PROT_READ | Prot.PROT_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_POPULATE | extra);
        if (a <= 0)
        {
            throw new InvalidOperationException($"mmap of {bytes} bytes failed: {a}");
        }

        return (ulong)a;
    }

    /// <summary>The kernel-internal map (vfio_dma_do_map), acting as the user process.</summary>
    public int Map(ulong vaddr, ulong iova, ulong size)
    {
        var m = new VfioIommuType1DmaMap { Argsz = 32, Flags = RW, Vaddr = vaddr, Iova = iova, Size = size };
        using SimProcess.SyscallScope scope = User.Enter();
        return Iommu.MapDma(in m);
    }

    /// <summary>The kernel-internal unmap (vfio_dma_do_unmap).</summary>
    public int Unmap(ulong iova, ulong size)
    {
        var u = new VfioIommuType1DmaUnmap { Argsz = 24, Iova = iova, Size = size };
        return Iommu.Unmap(ref u, default);
    }

    /// <summary>MAP_DMA through the ioctl (copy-in from the process's staging buffer).</summary>
    public long MapIoctl(ulong vaddr, ulong iova, ulong size)
    {
        var m = new VfioIommuType1DmaMap { Argsz = 32, Flags = RW, Vaddr = vaddr, Iova = iova, Size = size };
        return User.Ioctl(Container, VfioIoctl.IommuMapDma, MemoryMarshal.AsBytes(MemoryMarshal.CreateSpan(ref m, 1)));
    }

    /// <summary>UNMAP_DMA through the ioctl.</summary>
    public long UnmapIoctl(ulong iova, ulong size)
    {
        var u = new VfioIommuType1DmaUnmap { Argsz = 24, Iova = iova, Size = size };
        return User.Ioctl(Container, VfioIoctl.IommuUnmapDma, MemoryMarshal.AsBytes(MemoryMarshal.CreateSpan(ref u, 1)));
    }

    public static void Check(long ret, string what)
    {
        if (ret != 0)
        {
            throw new InvalidOperationException($"{what} failed: {ret} ({ErrorReason.Current})");
        }
    }
}
