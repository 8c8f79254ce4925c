// What the typed-client tests stand on: the host (Vfio.Sim) with vfio, type1 and vfio-pci
// on real threads, the sample vfio bus driver as "vfio-variant", a root process, and
// look-ups from the client's fds to the kernel objects behind them.
//
// Two small stand-ins remain, both below the real core rather than in its place:
// VariantDeviceOps, a bus driver's device ops that answer what vfio-pci never does on this
// machine (a device-info capability, a sparse-mmap BAR, a config region that reads short at
// its end), and CountingIommuDriver, which passes every call to
// the real type1 backend and counts the ioctls, so a test can see how often the client asked.

using System.Collections.Concurrent;
using Vfio.Core;
using Vfio.Core.Client;
using Vfio.Core.Uapi;
using Vfio.Iommu.Type1;
using Vfio.Kernel;
using Vfio.Platform.Fs;
using Vfio.Platform.Iommu;
using Vfio.Platform.Pci;
using Vfio.Platform.Proc;
using Vfio.Sim;
using Vfio.Sim.Drivers;

namespace Vfio.Tests.Core.Client;

/// <summary>A booted host for the typed-client tests and one root process to call from.</summary>
internal sealed class ClientSim
{
    public const string Edu = "0000:01:00.0";
    public const string Nic = "0000:05:00.0";
    public const string VariantDriver = "vfio-variant";

    public ClientSim()
    {
        Sim = VfioSim.CreateBuilder()
            .UseScheduler(SchedulerMode.Real)
            .AddVfioPci()
            .AddPciDriver(_ => Variant)
            .Build();
        Process = Sim.Spawn("user");
    }

    public VfioSim Sim { get; }

    public SimProcess Process { get; }

    /// <summary>The sample vfio bus driver; set its <see cref="SampleVfioPciDriver.CustomOps"/> before binding to it.</summary>
    public SampleVfioPciDriver Variant { get; } = new(VariantDriver);

    /// <summary>Binds <paramref name="bdf"/> to <paramref name="driver"/> and opens its group fd.</summary>
    public VfioGroupFd OpenGroup(string bdf, string driver = "vfio-pci")
    {
        Sim.Bind(bdf, driver);
        return new VfioGroupFd(Process, Sim.GroupOf(bdf));
    }

    /// <summary>Opens a container and <paramref name="bdf"/>'s group (bound to <paramref name="driver"/>) in it; with <paramref name="iommu"/>, sets TYPE1v2.</summary>
    public (VfioContainerFd Container, VfioGroupFd Group) OpenContainerWithGroup(string bdf = Edu, bool iommu = true, string driver = "vfio-pci")
    {
        VfioGroupFd group = OpenGroup(bdf, driver);
        var container = new VfioContainerFd(Process);
        group.SetContainer(container);
        if (iommu)
        {
            container.SetIommu(VfioExtension.Type1v2);
        }

        return (container, group);
    }

    /// <summary>The kernel's container behind <paramref name="fd"/>.</summary>
    public VfioContainer KernelContainer(VfioFd fd)
    {
        SimFile f = Process.Files.Get(fd.Fd) ?? throw new InvalidOperationException($"fd {fd.Fd} is not open");
        try
        {
            return VfioContainer.FromFile(f) ?? throw new InvalidOperationException($"fd {fd.Fd} is not a container");
        }
        finally
        {
            f.Put();
        }
    }

    /// <summary>The type1 instance behind a container fd.</summary>
    public VfioIommu Type1Of(VfioContainerFd fd)
        => VfioIommuType1.Instance(KernelContainer(fd)) ?? throw new InvalidOperationException("the container's backend is not type1");

    /// <summary>The vfio device of <paramref name="bdf"/> (bound to vfio-pci or to <see cref="Variant"/>).</summary>
    public VfioDevice KernelDevice(string bdf)
    {
        PciDevice dev = Sim.Device(bdf);
        return dev.DriverData as VfioDevice
            ?? (Variant.Devices.TryGetValue(dev, out VfioDevice? v) ? v : throw new InvalidOperationException($"{bdf} is not bound to a vfio driver"));
    }
}

/// <summary>
/// Passes every call to the real type1 backend and counts ioctls by command. Registered
/// after type1, it is the backend VFIO_SET_IOMMU picks (the core searches the most recent
/// first); the instance it hands out is type1's own.
/// </summary>
internal sealed class CountingIommuDriver(IVfioIommuDriver inner) : IVfioIommuDriver
{
    private readonly ConcurrentDictionary<uint, int> _ioctls = new();

    public string Name => "type1-counted";

    public bool HasDeviceRegistration => inner.HasDeviceRegistration;

    /// <summary>How many times <paramref name="cmd"/> reached the backend.</summary>
    public int Calls(uint cmd) => _ioctls.GetValueOrDefault(cmd);

    public int Open(ulong arg, out object? iommuData) => inner.Open(arg, out iommuData);

    public void Release(object? iommuData) => inner.Release(iommuData);

    public long Ioctl(object? iommuData, uint cmd, ulong arg)
    {
        if (iommuData is not null)
        {
            _ioctls.AddOrUpdate(cmd, 1, static (_, n) => n + 1);
        }

        return inner.Ioctl(iommuData, cmd, arg);
    }

    public int AttachGroup(object? iommuData, IommuGroup group, VfioGroupType type) => inner.AttachGroup(iommuData, group, type);

    public void DetachGroup(object? iommuData, IommuGroup group) => inner.DetachGroup(iommuData, group);

    public int PinPages(object? iommuData, IommuGroup group, ulong iova, int prot, Span<ulong> pfns) => inner.PinPages(iommuData, group, iova, prot, pfns);

    public void UnpinPages(object? iommuData, ulong iova, int npage) => inner.UnpinPages(iommuData, iova, npage);

    public void RegisterDevice(object? iommuData, VfioDevice device) => inner.RegisterDevice(iommuData, device);

    public void UnregisterDevice(object? iommuData, VfioDevice device) => inner.UnregisterDevice(iommuData, device);

    public int DmaRw(object? iommuData, ulong iova, Span<byte> data, bool write) => inner.DmaRw(iommuData, iova, data, write);
}

/// <summary>
/// Device ops of a vfio bus driver that answers what vfio-pci never does on this machine: a
/// device-info capability (PCI atomic completion), BAR0 with sparse-mmap and MSIX_MAPPABLE
/// capabilities, and a 256-byte config region that reads and writes short at its end.
/// </summary>
internal sealed class VariantDeviceOps : VfioDeviceOps
{
    public override string Name => ClientSim.VariantDriver;

    public byte[] Config { get; } = new byte[256];

    public override long Ioctl(VfioDevice device, uint cmd, ulong arg)
        => cmd switch
        {
            VfioIoctl.DeviceGetInfo => GetInfo(arg),
            VfioIoctl.DeviceGetRegionInfo => GetRegionInfo(arg),
            VfioIoctl.DeviceReset => 0,
            _ => Errno.ENOTTY.Negative(),
        };

    public override long Read(VfioDevice device, ulong buf, long count, ref long pos)
    {
        if (VfioPciIndex.OffsetToIndex(pos) != VfioPciIndex.Config)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"region {VfioPciIndex.OffsetToIndex(pos)} cannot be read");
        }

        int off = (int)Math.Min(pos & VfioPciIndex.OffsetMask, Config.Length);
        int n = (int)Math.Min(count, Config.Length - off);
        if (UserMemory.CopyToUser(buf, Config.AsSpan(off, n)) != 0)
        {
            return Errno.EFAULT.Negative();
        }

        pos += n;
        return n;
    }

    public override long Write(VfioDevice device, ulong buf, long count, ref long pos)
    {
        if (VfioPciIndex.OffsetToIndex(pos) != VfioPciIndex.Config)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"region {VfioPciIndex.OffsetToIndex(pos)} cannot be written");
        }

        int off = (int)Math.Min(pos & VfioPciIndex.OffsetMask, Config.Length);
        int n = (int)Math.Min(count, Config.Length - off);
        if (UserMemory.CopyFromUser(Config.AsSpan(off, n), buf) != 0)
        {
            return Errno.EFAULT.Negative();
        }

        pos += n;
        return n;
    }

    private static int GetInfo(ulong arg)
    {
        int ret = VfioArg.CopyIn(arg, VfioDeviceInfo.MinSz, out VfioDeviceInfo info, "VFIO_DEVICE_GET_INFO");
        if (ret != 0)
        {
            return ret;
        }

        int copyBack = info.Argsz >= VfioDeviceInfo.MinSz + sizeof(uint) ? VfioDeviceInfo.MinSz + sizeof(uint) : VfioDeviceInfo.MinSz;
        info.Flags = VfioDeviceFlags.Pci | VfioDeviceFlags.Reset;
        info.NumRegions = VfioPciIndex.NumRegions;
        info.NumIrqs = VfioPciIndex.NumIrqs;

        var caps = new VfioInfoCaps();
        ret = caps.Add(new VfioDeviceInfoCapPciAtomicComp
        {
            Header = new VfioInfoCapHeader { Id = VfioCapId.DevicePciAtomicComp, Version = 1 },
            Flags = VfioPciFlags.AtomicComp32 | VfioPciFlags.AtomicComp64,
        });
        if (ret != 0)
        {
            return ret;
        }

        info.Flags |= VfioDeviceFlags.Caps;
        ret = caps.CopyOut(arg, VfioArg.SizeOf<VfioDeviceInfo>(), ref info.Argsz, ref info.CapOffset);
        return ret != 0 ? ret : VfioArg.CopyOut(arg, info, copyBack);
    }

    private static int GetRegionInfo(ulong arg)
    {
        int ret = VfioArg.CopyIn(arg, VfioRegionInfo.MinSz, out VfioRegionInfo info, "VFIO_DEVICE_GET_REGION_INFO");
        if (ret != 0)
        {
            return ret;
        }

        if (info.Index >= VfioPciIndex.NumRegions)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"region index {info.Index} is not below {VfioPciIndex.NumRegions}");
        }

        info.Offset = (ulong)VfioPciIndex.IndexToOffset((int)info.Index);
        var caps = new VfioInfoCaps();
        if (info.Index == VfioPciIndex.Config)
        {
            info.Size = 256;
            info.Flags = VfioRegionFlags.Read | VfioRegionFlags.Write;
        }
        else if (info.Index == VfioPciIndex.Bar0)
        {
            info.Size = 0x4000;
            info.Flags = VfioRegionFlags.Read | VfioRegionFlags.Write | VfioRegionFlags.Mmap;
            VfioRegionSparseMmapArea[] areas = [new() { Offset = 0, Size = 0x2000 }, new() { Offset = 0x3000, Size = 0x1000 }];
            ret = caps.Add(
                new VfioRegionInfoCapSparseMmap { Header = new VfioInfoCapHeader { Id = VfioCapId.RegionSparseMmap, Version = 1 }, NrAreas = 2 },
                (ReadOnlySpan<VfioRegionSparseMmapArea>)areas);
            ret = ret != 0 ? ret : caps.Add(new VfioInfoCapHeader { Id = VfioCapId.RegionMsixMappable, Version = 1 });
            if (ret != 0)
            {
                return ret;
            }
        }

        if (!caps.IsEmpty)
        {
            info.Flags |= VfioRegionFlags.Caps;
        }

        ret = caps.CopyOut(arg, VfioRegionInfo.MinSz, ref info.Argsz, ref info.CapOffset);
        return ret != 0 ? ret : VfioArg.CopyOut(arg, info, VfioRegionInfo.MinSz);
    }

    // Records the whole request (header and data) as the driver copied it in.
}
