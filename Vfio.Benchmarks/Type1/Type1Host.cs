// Set-up shared by the type1 benchmarks (the NUnit Type1Rig cannot be used here): the
// default machine with the memory a benchmark needs, vfio and the real type1 backend, a
// minimal vfio bus driver for the edu device, and a root process (CAP_IPC_LOCK, so
// RLIMIT_MEMLOCK does not apply) holding container, group and device fds after SET_IOMMU.
// Everything runs in real mode on the benchmark thread, which the kernel adopts as a task
// on first use (as the KMutex and GUP benchmarks do).

using System.Runtime.InteropServices;
using Vfio.Core;
using Vfio.Core.Uapi;
using Vfio.Iommu.Type1;
using Vfio.Kernel;
using Vfio.Platform;
using Vfio.Platform.Fs;
using Vfio.Platform.Machine;
using Vfio.Platform.Mm;
using Vfio.Platform.Pci;
using Vfio.Platform.Proc;

namespace Vfio.Benchmarks.Type1;

/// <summary>A machine with type1 loaded, the edu device bound to a vfio driver and its container set up.</summary>
internal sealed class Type1Host
{
    public const string Edu = "0000:01:00.0";
    public const long GiB = 1L << 30;
    public const uint RW = VfioType1Flags.MapRead | VfioType1Flags.MapWrite;

    /// <param name="memory">The machine's memory.</param>
    /// <param name="dmaEntryLimit">dma_entry_limit, set before the container is created.</param>
    /// <param name="emulatedOps">When set, the device registers as an emulated-IOMMU device with these ops (no IOMMU domain: maps do not pin).</param>
    public Type1Host(MemoryConfig memory, uint dmaEntryLimit = VfioIommuType1.DefaultDmaEntryLimit, IVfioDeviceOps? emulatedOps = null)
    {
        Kernel = new SimKernel(new KernelConfig { Mode = SchedulerMode.Real });
        // An emulated-IOMMU device gets a software group, which a device already in an IOMMU
        // group cannot join: that machine has no IOMMU (as an mdev parent would not need one).
        MachineDescription description = MachineDescriptionReader.Default with { Memory = memory };
        Machine = MachineBuilder.Build(emulatedOps is null ? description : description with { Iommu = null }, Kernel);
        VfioCore.Load(Machine);
        Type1 = VfioIommuType1.Load(Machine);
        Type1.DmaEntryLimit = dmaEntryLimit;
        Driver = new BenchVfioDriver(emulatedOps);
        Check(Machine.Pci.RegisterDriver(Driver), "register the driver");
        User = Machine.CreateProcess("qemu", Credentials.Root);

        PciDevice dev = Machine.Pci.Find(Edu) ?? throw new InvalidOperationException("no edu device");
        if (dev.Driver is { } drv)
        {
            Positive(Machine.Sysfs.Write($"/sys/bus/pci/drivers/{drv.Name}/unbind", Edu), "unbind");
        }

        Positive(Machine.Sysfs.Write($"/sys/bus/pci/devices/{Edu}/driver_override", BenchVfioDriver.DriverName), "driver_override");
        Positive(Machine.Sysfs.Write("/sys/bus/pci/drivers_probe", Edu), "drivers_probe");
        Device = Driver.Devices.GetValueOrDefault(dev) ?? throw new InvalidOperationException($"probe failed: {Driver.ProbeError} ({ErrorReason.Current})");

        Container = User.Open("/dev/vfio/vfio");
        Group = User.Open(Device.Group!.DevPath);
        Positive(Container, "open the container");
        Positive(Group, "open the group");
        int c = Container;
        Check(User.Ioctl(Group, VfioIoctl.GroupSetContainer, MemoryMarshal.AsBytes(MemoryMarshal.CreateSpan(ref c, 1))), "SET_CONTAINER");
        Check(User.Ioctl(Container, VfioIoctl.SetIommu, VfioExtension.Type1v2), "SET_IOMMU");
        byte[] name = new byte[Edu.Length + 1];
        System.Text.Encoding.ASCII.GetBytes(Edu, name);
        DeviceFd = (int)User.Ioctl(Group, VfioIoctl.GroupGetDeviceFd, name);
        Positive(DeviceFd, "GET_DEVICE_FD");

        SimFile f = User.Files.Get(Container) ?? throw new InvalidOperationException("no container file");
        VfioContainer container = VfioContainer.FromFile(f) ?? throw new InvalidOperationException("not a container");
        Iommu = VfioIommuType1.Instance(container) ?? throw new InvalidOperationException("not type1");
    }

    public SimKernel Kernel { get; }

    public SimMachine Machine { get; }

    public VfioIommuType1 Type1 { get; }

    public BenchVfioDriver Driver { get; }

    public SimProcess User { get; }

    public VfioDevice Device { get; }

    public int Container { get; }

    public int Group { get; }

    public int DeviceFd { get; }

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

    private static void Positive(long ret, string what)
    {
        if (ret < 0)
        {
            throw new InvalidOperationException($"{what} failed: {ret} ({ErrorReason.Current})");
        }
    }
}

/// <summary>A minimal vfio bus driver: binds only by driver_override and registers one vfio_device per PCI device.</summary>
internal sealed class BenchVfioDriver(IVfioDeviceOps? emulatedOps) : PciDriver(DriverName)
{
    public const string DriverName = "vfio-bench";

    public Dictionary<PciDevice, VfioDevice> Devices { get; } = [];

    public int ProbeError { get; private set; }

    public override bool DriverManagedDma => true;

    public override int Probe(PciDevice dev, PciDeviceId id)
    {
        VfioDevice? vdev = VfioDevice.Alloc(dev, emulatedOps ?? new BenchVfioOps(), () => new BenchVfioDevice(), out int err);
        if (vdev is null)
        {
            ProbeError = err;
            return err;
        }

        err = emulatedOps is not null ? vdev.RegisterEmulatedIommuDev() : vdev.RegisterGroupDev();
        if (err != 0)
        {
            ProbeError = err;
            vdev.PutDevice();
            return err;
        }

        Devices[dev] = vdev;
        return 0;
    }

    public override void Remove(PciDevice dev)
    {
        VfioDevice vdev = Devices[dev];
        vdev.UnregisterGroupDev();
        Devices.Remove(dev);
        vdev.PutDevice();
    }

    private sealed class BenchVfioDevice : VfioDevice
    {
    }
}

/// <summary>Device ops of a plain (IOMMU-backed) bench device.</summary>
internal class BenchVfioOps : VfioDeviceOps
{
    public override string Name => BenchVfioDriver.DriverName;
}
