// Stand-ins for the vfio container, group and device files, for testing the typed client
// before the vfio core exists: small misc devices at /dev/vfio/vfio and /dev/vfio/26 that
// answer the ioctls with the kernel's argument protocol (VfioArg, VfioInfoCaps) and fail
// with reasons recorded through ErrorReason, as the real kernel side will.

using System.Buffers.Binary;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform;
using Vfio.Platform.Fs;
using Vfio.Platform.Proc;

namespace Vfio.Tests.Core.Client;

/// <summary>A fresh machine with the fake vfio nodes and one process to call them from.</summary>
internal sealed class FakeVfio
{
    public const int GroupId = 26;
    public const string DeviceName = "0000:00:03.0";

    public FakeVfio()
    {
        Machine = Machines.Create();
        Require(Machine.CharDevices.RegisterMisc(196, "vfio/vfio", Container));
        Require(Machine.CharDevices.RegisterMisc(197, $"vfio/{GroupId}", Group));
        Process = Machine.CreateProcess("user");
    }

    public SimMachine Machine { get; }

    public SimProcess Process { get; }

    public FakeContainer Container { get; } = new();

    public FakeGroup Group { get; } = new();

    private static void Require(int ret)
    {
        if (ret != 0)
        {
            throw new InvalidOperationException($"misc_register failed: {ret}");
        }
    }
}

/// <summary>Counts opens and releases of a fake file.</summary>
internal abstract class CountingFops : FileOperations
{
    private int _opens;
    private int _releases;

    public int Opens => Volatile.Read(ref _opens);

    public int Releases => Volatile.Read(ref _releases);

    public override int Open(VfsNode? node, SimFile file)
    {
        Interlocked.Increment(ref _opens);
        return 0;
    }

    public override void Release(SimFile file) => Interlocked.Increment(ref _releases);
}

/// <summary>/dev/vfio/vfio: API version, extensions, SET_IOMMU, and a type1-like GET_INFO/MAP/UNMAP.</summary>
internal sealed class FakeContainer : CountingFops
{
    public const ulong Pgsizes = 0x4020_1000;

    public uint? Iommu { get; private set; }

    public int GetInfoCalls { get; private set; }

    public List<VfioIommuType1DmaMap> Maps { get; } = [];

    public override long Ioctl(SimFile file, uint cmd, ulong arg)
    {
        switch (cmd)
        {
            case VfioIoctl.GetApiVersion:
                return VfioExtension.ApiVersion;
            case VfioIoctl.CheckExtension:
                return arg is VfioExtension.Type1 or VfioExtension.Type1v2 ? 1 : 0;
            case VfioIoctl.SetIommu:
                if (arg != VfioExtension.Type1v2)
                {
                    return ErrorReason.Fail(Errno.EINVAL, $"no IOMMU driver supports type {arg}");
                }

                Iommu = (uint)arg;
                return 0;
            case VfioIoctl.IommuGetInfo:
                return GetInfo(arg);
            case VfioIoctl.IommuMapDma:
                return MapDma(arg);
            case VfioIoctl.IommuUnmapDma:
                return UnmapDma(arg);
            default:
                return Errno.ENOTTY.Negative();
        }
    }

    private int GetInfo(ulong arg)
    {
        GetInfoCalls++;
        int ret = VfioArg.CopyIn(arg, VfioIommuType1Info.MinSz, out VfioIommuType1Info info, "VFIO_IOMMU_GET_INFO");
        if (ret != 0)
        {
            return ret;
        }

        int copyBack = (int)Math.Min(info.Argsz, (uint)VfioArg.SizeOf<VfioIommuType1Info>());
        info.Flags = VfioType1Flags.InfoPgsizes;
        info.IovaPgsizes = Pgsizes;

        // Type1's order: MIGRATION, DMA_AVAIL, IOVA_RANGE.
        var caps = new VfioInfoCaps();
        ret = caps.Add(new VfioIommuType1InfoCapMigration
        {
            Header = new VfioInfoCapHeader { Id = VfioCapId.Type1Migration, Version = 1 },
            PgsizeBitmap = 4096,
            MaxDirtyBitmapSize = 256UL << 20,
        });
        ret = ret != 0 ? ret : caps.Add(new VfioIommuType1InfoDmaAvail
        {
            Header = new VfioInfoCapHeader { Id = VfioCapId.Type1DmaAvail, Version = 1 },
            Avail = (uint)(65535 - Maps.Count),
        });
        VfioIovaRange[] ranges = [new() { Start = 0, End = 0xfedf_ffff }, new() { Start = 0xfef0_0000, End = (1UL << 48) - 1 }];
        ret = ret != 0 ? ret : caps.Add(
            new VfioIommuType1InfoCapIovaRange { Header = new VfioInfoCapHeader { Id = VfioCapId.Type1IovaRange, Version = 1 }, NrIovas = 2 },
            (ReadOnlySpan<VfioIovaRange>)ranges);
        if (ret != 0)
        {
            return ret;
        }

        info.Flags |= VfioType1Flags.InfoCaps;
        ret = caps.CopyOut(arg, VfioArg.SizeOf<VfioIommuType1Info>(), ref info.Argsz, ref info.CapOffset);
        return ret != 0 ? ret : VfioArg.CopyOut(arg, info, copyBack);
    }

    private int MapDma(ulong arg)
    {
        int ret = VfioArg.CopyIn(arg, VfioIommuType1DmaMap.MinSz, out VfioIommuType1DmaMap map, "VFIO_IOMMU_MAP_DMA");
        if (ret != 0)
        {
            return ret;
        }

        foreach (VfioIommuType1DmaMap m in Maps)
        {
            if (map.Iova < m.Iova + m.Size && m.Iova < map.Iova + map.Size)
            {
                return ErrorReason.Fail(Errno.EEXIST, $"iova 0x{map.Iova:x} overlaps existing mapping [0x{m.Iova:x}, 0x{m.Iova + m.Size:x})");
            }
        }

        Maps.Add(map);
        return 0;
    }

    private int UnmapDma(ulong arg)
    {
        int ret = VfioArg.CopyIn(arg, VfioIommuType1DmaUnmap.MinSz, out VfioIommuType1DmaUnmap unmap, "VFIO_IOMMU_UNMAP_DMA");
        if (ret != 0)
        {
            return ret;
        }

        ulong unmapped = 0;
        for (int i = Maps.Count - 1; i >= 0; i--)
        {
            if (Maps[i].Iova >= unmap.Iova && Maps[i].Iova + Maps[i].Size <= unmap.Iova + unmap.Size)
            {
                unmapped += Maps[i].Size;
                Maps.RemoveAt(i);
            }
        }

        unmap.Size = unmapped;
        return VfioArg.CopyOut(arg, unmap, VfioIommuType1DmaUnmap.MinSz);
    }
}

/// <summary>/dev/vfio/26: status, container attach and detach, and one device.</summary>
internal sealed class FakeGroup : CountingFops
{
    public int? ContainerFd { get; private set; }

    public bool DeviceOpen => Device.Opens > Device.Releases;

    public FakeDevice Device { get; } = new();

    public override long Ioctl(SimFile file, uint cmd, ulong arg)
    {
        switch (cmd)
        {
            case VfioIoctl.GroupGetStatus:
            {
                int ret = VfioArg.CopyIn(arg, VfioGroupStatus.MinSz, out VfioGroupStatus status, "VFIO_GROUP_GET_STATUS");
                if (ret != 0)
                {
                    return ret;
                }

                status.Flags = VfioGroupFlags.Viable | (ContainerFd is null ? 0 : VfioGroupFlags.ContainerSet);
                return VfioArg.CopyOut(arg, status, VfioGroupStatus.MinSz);
            }

            case VfioIoctl.GroupSetContainer:
            {
                int ret = UserMemory.Get(arg, out int fd);
                if (ret != 0)
                {
                    return ret;
                }

                if (ContainerFd is not null)
                {
                    return ErrorReason.Fail(Errno.EINVAL, $"group {FakeVfio.GroupId} already has a container");
                }

                ContainerFd = fd;
                return 0;
            }

            case VfioIoctl.GroupUnsetContainer:
                if (DeviceOpen)
                {
                    return ErrorReason.Fail(Errno.EBUSY, $"group {FakeVfio.GroupId} still has an open device fd");
                }

                ContainerFd = null;
                return 0;
            case VfioIoctl.GroupGetDeviceFd:
                return GetDeviceFd(arg);
            default:
                return Errno.ENOTTY.Negative();
        }
    }

    private int GetDeviceFd(ulong arg)
    {
        int ret = UserMemory.StrndupUser(arg, 4096, out string name);
        if (ret != 0)
        {
            return ret;
        }

        if (name != FakeVfio.DeviceName)
        {
            return ErrorReason.Fail(Errno.ENODEV, $"no device named \"{name}\" in group {FakeVfio.GroupId}");
        }

        SimProcess p = SimProcess.Current!;
        int fd = p.GetUnusedFd(cloexec: true);
        if (fd < 0)
        {
            return fd;
        }

        SimFile f = AnonInodes.GetFile(p.Kernel, "[vfio-device]", Device, null, OpenFlags.O_RDWR);
        Device.Open(null, f);
        p.FdInstall(fd, f);
        return fd;
    }
}

/// <summary>A device fd: info with a capability, regions (config at index 7, BAR0 with sparse mmap), IRQs, reset.</summary>
internal sealed class FakeDevice : CountingFops
{
    public byte[] Config { get; } = new byte[256];

    public int Resets { get; private set; }

    public List<byte[]> IrqSets { get; } = [];

    public override bool CanRead => true;

    public override bool CanWrite => true;

    public override long Ioctl(SimFile file, uint cmd, ulong arg)
        => cmd switch
        {
            VfioIoctl.DeviceGetInfo => GetInfo(arg),
            VfioIoctl.DeviceGetRegionInfo => GetRegionInfo(arg),
            VfioIoctl.DeviceGetIrqInfo => GetIrqInfo(arg),
            VfioIoctl.DeviceSetIrqs => SetIrqs(arg),
            VfioIoctl.DeviceReset => Reset(),
            _ => Errno.ENOTTY.Negative(),
        };

    public override long Read(SimFile file, ulong buf, long count, ref long pos)
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

    public override long Write(SimFile file, ulong buf, long count, ref long pos)
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

    private int Reset()
    {
        Resets++;
        return 0;
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

    private static int GetIrqInfo(ulong arg)
    {
        int ret = VfioArg.CopyIn(arg, VfioIrqInfo.MinSz, out VfioIrqInfo info, "VFIO_DEVICE_GET_IRQ_INFO");
        if (ret != 0)
        {
            return ret;
        }

        info.Flags = VfioIrqInfoFlags.Eventfd | (info.Index == VfioPciIndex.IrqIntx ? VfioIrqInfoFlags.Maskable | VfioIrqInfoFlags.Automasked : VfioIrqInfoFlags.NoResize);
        info.Count = info.Index == VfioPciIndex.IrqMsix ? 8u : 1u;
        return VfioArg.CopyOut(arg, info, VfioIrqInfo.MinSz);
    }

    // Records the whole request (header and data) as the kernel would copy it in.
    private int SetIrqs(ulong arg)
    {
        int ret = VfioArg.CopyIn(arg, VfioIrqSet.MinSz, out VfioIrqSet set, "VFIO_DEVICE_SET_IRQS");
        if (ret != 0)
        {
            return ret;
        }

        byte[] all = new byte[set.Argsz];
        if (UserMemory.CopyFromUser(all, arg) != 0)
        {
            return Errno.EFAULT.Negative();
        }

        IrqSets.Add(all);
        return 0;
    }

    /// <summary>The s32 data items of a recorded SET_IRQS request.</summary>
    public static int[] Eventfds(byte[] request)
    {
        int n = (request.Length - VfioIrqSet.MinSz) / sizeof(int);
        int[] fds = new int[n];
        for (int i = 0; i < n; i++)
        {
            fds[i] = BinaryPrimitives.ReadInt32LittleEndian(request.AsSpan(VfioIrqSet.MinSz + (i * sizeof(int))));
        }

        return fds;
    }
}
