// The VFIO uapi (include/uapi/linux/vfio.h, v6.12) as shell commands named after the
// ioctls, acting on fds the shell process holds between lines: `open`, `close`, `eventfd`,
// `mmap`/`munmap` of buffers to map for DMA, `region read|write` (pread/pwrite at a
// region's offset), `read` of an eventfd's counter, and one command per ioctl. Arguments
// are built in the uapi structs and passed by pointer, so strace decodes them; replies
// print decoded, flags by their uapi names. A refused ioctl prints the kernel's reason and
// errno: `VFIO_GROUP_SET_CONTAINER: group 4 is not viable (…) — EPERM (Operation not permitted)`.

using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.InteropServices;
using Vfio.Core.Client;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Fs;
using Vfio.Platform.Mm;

namespace Vfio.Sim.Shell;

public sealed partial class SimShell
{
    /// <summary>The VFIO_CHECK_EXTENSION / VFIO_SET_IOMMU names, by value.</summary>
    internal static readonly (string Name, uint Value)[] Extensions =
    [
        ("VFIO_TYPE1_IOMMU", VfioExtension.Type1),
        ("VFIO_SPAPR_TCE_IOMMU", VfioExtension.SpaprTce),
        ("VFIO_TYPE1v2_IOMMU", VfioExtension.Type1v2),
        ("VFIO_DMA_CC_IOMMU", VfioExtension.DmaCcIommu),
        ("VFIO_EEH", VfioExtension.Eeh),
        ("VFIO_TYPE1_NESTING_IOMMU", VfioExtension.Type1Nesting),
        ("VFIO_SPAPR_TCE_v2_IOMMU", VfioExtension.SpaprTceV2),
        ("VFIO_NOIOMMU_IOMMU", VfioExtension.NoIommu),
        ("VFIO_UNMAP_ALL", VfioExtension.UnmapAll),
        ("VFIO_UPDATE_VADDR", VfioExtension.UpdateVaddr),
    ];

    /// <summary>IRQ index names for VFIO_DEVICE_GET_IRQ_INFO / SET_IRQS.</summary>
    internal static readonly string[] IrqNames = ["INTX", "MSI", "MSIX", "ERR", "REQ"];

    /// <summary>Region index names of vfio-pci.</summary>
    internal static readonly string[] RegionNames = ["BAR0", "BAR1", "BAR2", "BAR3", "BAR4", "BAR5", "ROM", "CONFIG", "VGA"];

    /// <summary>The ioctl commands, for completion: which argument positions take an fd, an extension, an IRQ or a region.</summary>
    internal static readonly string[] IoctlCommands =
    [
        "VFIO_GET_API_VERSION", "VFIO_CHECK_EXTENSION", "VFIO_SET_IOMMU", "VFIO_IOMMU_GET_INFO", "VFIO_IOMMU_MAP_DMA", "VFIO_IOMMU_UNMAP_DMA",
        "VFIO_GROUP_GET_STATUS", "VFIO_GROUP_SET_CONTAINER", "VFIO_GROUP_UNSET_CONTAINER", "VFIO_GROUP_GET_DEVICE_FD",
        "VFIO_DEVICE_GET_INFO", "VFIO_DEVICE_GET_REGION_INFO", "VFIO_DEVICE_GET_IRQ_INFO", "VFIO_DEVICE_SET_IRQS", "VFIO_DEVICE_RESET",
    ];

    /// <summary>What each successful VFIO_GROUP_GET_STATUS returned to the shell, in order (for graders).</summary>
    internal List<VfioGroupFlags> GroupStatuses { get; } = [];

    private void RegisterVfioCommands()
    {
        Add("open", "open PATH [ro|wo|rw]", "open a file (/dev/vfio/vfio, /dev/vfio/N): prints its fd", OpenCmd);
        Add("close", "close FD...", "close fds", CloseCmd);
        Add("eventfd", "eventfd [INITVAL]", "a new eventfd: prints its fd", EventfdCmd);
        Add("read", "read FD", "read an eventfd's counter (8 bytes)", ReadCmd);
        Add("mmap", "mmap SIZE", "anonymous read-write memory to map for DMA: prints bufN and its address", MmapCmd);
        Add("munmap", "munmap BUF", "unmap a buffer made by mmap", MunmapCmd);
        Add("region", "region read FD INDEX OFFSET [SIZE] | region write FD INDEX OFFSET VALUE [SIZE]", "pread/pwrite a device region (BARn, CONFIG, …) at its offset", RegionCmd);
        Add("VFIO_GET_API_VERSION", "VFIO_GET_API_VERSION FD", "the container's API version (0)", ctx => IntIoctl(ctx, VfioIoctl.GetApiVersion, 1));
        Add("VFIO_CHECK_EXTENSION", "VFIO_CHECK_EXTENSION FD EXTENSION", "whether the container supports an IOMMU type or extension (1/0)", ctx => IntIoctl(ctx, VfioIoctl.CheckExtension, 2));
        Add("VFIO_SET_IOMMU", "VFIO_SET_IOMMU FD TYPE", "choose the container's IOMMU backend (VFIO_TYPE1v2_IOMMU)", ctx => IntIoctl(ctx, VfioIoctl.SetIommu, 2));
        Add("VFIO_IOMMU_GET_INFO", "VFIO_IOMMU_GET_INFO FD", "page sizes, IOVA ranges and DMA mappings left", IommuGetInfo);
        Add("VFIO_IOMMU_MAP_DMA", "VFIO_IOMMU_MAP_DMA FD BUF[+OFF]|VADDR iova=IOVA size=SIZE [r|w|rw]", "map a buffer for device DMA at an IOVA", MapDma);
        Add("VFIO_IOMMU_UNMAP_DMA", "VFIO_IOMMU_UNMAP_DMA FD iova=IOVA size=SIZE [all]", "unmap an IOVA range: prints the size unmapped", UnmapDma);
        Add("VFIO_GROUP_GET_STATUS", "VFIO_GROUP_GET_STATUS FD", "the group's flags: VIABLE, CONTAINER_SET", GroupGetStatus);
        Add("VFIO_GROUP_SET_CONTAINER", "VFIO_GROUP_SET_CONTAINER GROUP_FD CONTAINER_FD", "attach the group to a container", SetContainer);
        Add("VFIO_GROUP_UNSET_CONTAINER", "VFIO_GROUP_UNSET_CONTAINER GROUP_FD", "detach the group from its container", ctx => IntIoctl(ctx, VfioIoctl.GroupUnsetContainer, 1));
        Add("VFIO_GROUP_GET_DEVICE_FD", "VFIO_GROUP_GET_DEVICE_FD GROUP_FD DEVICE", "a device fd for a device of the group (0000:01:00.0): prints its fd", GetDeviceFd);
        Add("VFIO_DEVICE_GET_INFO", "VFIO_DEVICE_GET_INFO FD", "the device's flags, regions and IRQs", DeviceGetInfo);
        Add("VFIO_DEVICE_GET_REGION_INFO", "VFIO_DEVICE_GET_REGION_INFO FD INDEX", "a region's flags, size and offset", RegionInfoCmd);
        Add("VFIO_DEVICE_GET_IRQ_INFO", "VFIO_DEVICE_GET_IRQ_INFO FD INDEX", "an IRQ index's flags and count", IrqInfoCmd);
        Add("VFIO_DEVICE_SET_IRQS", "VFIO_DEVICE_SET_IRQS FD INDEX START COUNT eventfd=FD[,FD…]|trigger|mask|unmask|disable", "wire interrupts to eventfds, trigger, mask or unmask them", SetIrqs);
        Add("VFIO_DEVICE_RESET", "VFIO_DEVICE_RESET FD", "reset the device", ctx => IntIoctl(ctx, VfioIoctl.DeviceReset, 1));
    }

    // ---- Plain syscalls.

    private int OpenCmd(CommandContext ctx)
    {
        if (ctx.Args.Length is < 1 or > 2)
        {
            throw new UsageException("open PATH [ro|wo|rw]");
        }

        OpenFlags flags = ctx.Args.Length == 2
            ? ctx.Args[1] switch
            {
                "ro" => OpenFlags.O_RDONLY,
                "wo" => OpenFlags.O_WRONLY,
                "rw" => OpenFlags.O_RDWR,
                _ => throw new UsageException($"'{ctx.Args[1]}' is not ro, wo or rw"),
            }
            : OpenFlags.O_RDWR;
        int fd = Process.Open(FullPath(ctx.Args[0]), flags);
        if (fd < 0)
        {
            return SyscallFailed(ctx, $"open {ctx.Args[0]}", fd);
        }

        ctx.Out.WriteLine($"fd {fd}");
        return 0;
    }

    private int CloseCmd(CommandContext ctx)
    {
        if (ctx.Args.Length == 0)
        {
            throw new UsageException("close FD...");
        }

        int status = 0;
        foreach (string a in ctx.Args)
        {
            int r = Process.Close(Fd(a));
            if (r < 0)
            {
                status = SyscallFailed(ctx, $"close {a}", r);
            }
        }

        return status;
    }

    private int EventfdCmd(CommandContext ctx)
    {
        uint init = ctx.Args.Length > 0 ? (uint)Number(ctx.Args[0]) : 0;
        int fd = Process.Eventfd(init);
        if (fd < 0)
        {
            return SyscallFailed(ctx, "eventfd", fd);
        }

        ctx.Out.WriteLine($"fd {fd}");
        return 0;
    }

    private int ReadCmd(CommandContext ctx)
    {
        if (ctx.Args.Length != 1)
        {
            throw new UsageException("read FD");
        }

        long n = Process.Read(Fd(ctx.Args[0]), _stage, 8);
        if (n < 0)
        {
            return SyscallFailed(ctx, "read", n);
        }

        Span<byte> value = stackalloc byte[8];
        StageRead(value);
        ctx.Out.WriteLine(n == 8 ? BinaryPrimitives.ReadUInt64LittleEndian(value).ToString(CultureInfo.InvariantCulture) : $"{n} bytes");
        return 0;
    }

    private int MmapCmd(CommandContext ctx)
    {
        if (ctx.Args.Length != 1)
        {
            throw new UsageException("mmap SIZE (4096, 64K, 1M, 2M…)");
        }

        ulong size = Number(ctx.Args[0]);
        long va = Process.Mmap(0, size, Prot.PROT_READ | Prot.PROT_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS);
        if (va < 0)
        {
            return SyscallFailed(ctx, "mmap", va);
        }

        string name = $"buf{_nextBuffer++}";
        _buffers[name] = ((ulong)va, size);
        ctx.Out.WriteLine($"{name} at 0x{va:x} ({size} bytes)");
        return 0;
    }

    private int MunmapCmd(CommandContext ctx)
    {
        if (ctx.Args.Length != 1 || !_buffers.TryGetValue(ctx.Args[0], out (ulong Addr, ulong Size) b))
        {
            throw new UsageException($"munmap BUF (buffers: {(_buffers.Count == 0 ? "none" : string.Join(", ", _buffers.Keys))})");
        }

        int r = Process.Munmap(b.Addr, b.Size);
        if (r < 0)
        {
            return SyscallFailed(ctx, "munmap", r);
        }

        _buffers.Remove(ctx.Args[0]);
        return 0;
    }

    // region read FD INDEX OFFSET [SIZE] / region write FD INDEX OFFSET VALUE [SIZE]: the
    // region's offset comes from VFIO_DEVICE_GET_REGION_INFO, as a program finds it.
    private int RegionCmd(CommandContext ctx)
    {
        ReadOnlySpan<string> a = ctx.Args;
        bool write = a.Length > 0 && a[0] == "write";
        if (a.Length < 4 || (a[0] is not ("read" or "write")) || (write && a.Length is < 5 or > 6) || (!write && a.Length > 5))
        {
            throw new UsageException("region read FD INDEX OFFSET [SIZE] | region write FD INDEX OFFSET VALUE [SIZE]");
        }

        int fd = Fd(a[1]);
        uint index = Index(a[2], RegionNames);
        ulong offset = Number(a[3]);
        var info = new VfioRegionInfo { Argsz = (uint)VfioArg.SizeOf<VfioRegionInfo>(), Index = index };
        long r = IoctlStruct(fd, VfioIoctl.DeviceGetRegionInfo, ref info);
        if (r < 0)
        {
            return IoctlFailed(ctx, "VFIO_DEVICE_GET_REGION_INFO", r);
        }

        if (write)
        {
            ulong value = Number(a[4]);
            int size = a.Length == 6 ? (int)Number(a[5]) : 4;
            if (size is not (1 or 2 or 4 or 8))
            {
                throw new UsageException("a region write is 1, 2, 4 or 8 bytes");
            }

            Span<byte> bytes = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(bytes, value);
            StageWrite(bytes[..size]);
            long w = Process.Pwrite(fd, _stage, size, (long)(info.Offset + offset));
            return w < 0 ? SyscallFailed(ctx, "pwrite64", w) : 0;
        }

        int count = a.Length == 5 ? (int)Number(a[4]) : 4;
        if (count is < 1 or > 4096)
        {
            throw new UsageException("a region read is 1 to 4096 bytes");
        }

        long n = Process.Pread(fd, _stage, count, (long)(info.Offset + offset));
        if (n < 0)
        {
            return SyscallFailed(ctx, "pread64", n);
        }

        byte[] data = new byte[n];
        StageRead(data);
        if (n is 1 or 2 or 4 or 8)
        {
            ulong v = 0;
            for (int i = (int)n - 1; i >= 0; i--)
            {
                v = (v << 8) | data[i];
            }

            ctx.Out.WriteLine($"0x{v.ToString("x" + (n * 2), CultureInfo.InvariantCulture)}");
        }
        else
        {
            HexDump(ctx.Out, data, offset);
        }

        return 0;
    }

    private static void HexDump(TextWriter output, byte[] data, ulong start)
    {
        for (int i = 0; i < data.Length; i += 16)
        {
            int n = Math.Min(16, data.Length - i);
            output.WriteLine($"{start + (ulong)i:x8}  {string.Join(' ', data.Skip(i).Take(n).Select(b => b.ToString("x2", CultureInfo.InvariantCulture)))}");
        }
    }

    // ---- ioctls.

    // An ioctl whose argument is an integer (or none) and whose result is the return value.
    private int IntIoctl(CommandContext ctx, uint cmd, int argc)
    {
        if (ctx.Args.Length != argc)
        {
            throw new UsageException(_commands[ctx.Name].Usage);
        }

        ulong arg = argc == 2
            ? (ctx.Name is "VFIO_CHECK_EXTENSION" or "VFIO_SET_IOMMU" ? Extension(ctx.Args[1]) : Number(ctx.Args[1]))
            : 0;
        long r = Process.Ioctl(Fd(ctx.Args[0]), cmd, arg);
        if (r < 0)
        {
            return IoctlFailed(ctx, ctx.Name, r);
        }

        if (ctx.Name is "VFIO_GET_API_VERSION" or "VFIO_CHECK_EXTENSION")
        {
            ctx.Out.WriteLine(r.ToString(CultureInfo.InvariantCulture));
        }

        return 0;
    }

    private int GroupGetStatus(CommandContext ctx)
    {
        if (ctx.Args.Length != 1)
        {
            throw new UsageException("VFIO_GROUP_GET_STATUS FD");
        }

        var status = new VfioGroupStatus { Argsz = (uint)VfioArg.SizeOf<VfioGroupStatus>() };
        long r = IoctlStruct(Fd(ctx.Args[0]), VfioIoctl.GroupGetStatus, ref status);
        if (r < 0)
        {
            return IoctlFailed(ctx, ctx.Name, r);
        }

        GroupStatuses.Add(status.Flags);
        ctx.Out.WriteLine($"flags={GroupFlags(status.Flags)}");
        return 0;
    }

    internal static string GroupFlags(VfioGroupFlags flags)
    {
        var names = new List<string>();
        if ((flags & VfioGroupFlags.Viable) != 0)
        {
            names.Add("VFIO_GROUP_FLAGS_VIABLE");
        }

        if ((flags & VfioGroupFlags.ContainerSet) != 0)
        {
            names.Add("VFIO_GROUP_FLAGS_CONTAINER_SET");
        }

        return names.Count == 0 ? "0" : string.Join('|', names);
    }

    private int SetContainer(CommandContext ctx)
    {
        if (ctx.Args.Length != 2)
        {
            throw new UsageException("VFIO_GROUP_SET_CONTAINER GROUP_FD CONTAINER_FD");
        }

        // The argument is a pointer to the container fd (an int in user memory).
        Span<byte> bytes = stackalloc byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(bytes, Fd(ctx.Args[1]));
        StageWrite(bytes);
        long r = Process.Ioctl(Fd(ctx.Args[0]), VfioIoctl.GroupSetContainer, _stage);
        return r < 0 ? IoctlFailed(ctx, ctx.Name, r) : 0;
    }

    private int GetDeviceFd(CommandContext ctx)
    {
        if (ctx.Args.Length < 2)
        {
            throw new UsageException("VFIO_GROUP_GET_DEVICE_FD GROUP_FD DEVICE");
        }

        // The argument is a NUL-terminated string (vfio-pci options may follow the name).
        string name = string.Join(' ', ctx.Args[1..].ToArray());
        byte[] bytes = [.. System.Text.Encoding.ASCII.GetBytes(name), 0];
        StageWrite(bytes);
        long fd = Process.Ioctl(Fd(ctx.Args[0]), VfioIoctl.GroupGetDeviceFd, _stage);
        if (fd < 0)
        {
            return IoctlFailed(ctx, ctx.Name, fd);
        }

        ctx.Out.WriteLine($"fd {fd}");
        return 0;
    }

    private int IommuGetInfo(CommandContext ctx)
    {
        if (ctx.Args.Length != 1)
        {
            throw new UsageException("VFIO_IOMMU_GET_INFO FD");
        }

        int fd = Fd(ctx.Args[0]);
        var info = new VfioIommuType1Info { Argsz = (uint)VfioArg.SizeOf<VfioIommuType1Info>() };
        long r = IoctlStruct(fd, VfioIoctl.IommuGetInfo, ref info);
        if (r < 0)
        {
            return IoctlFailed(ctx, ctx.Name, r);
        }

        IReadOnlyList<VfioInfoCap> caps = [];
        if ((info.Flags & VfioType1Flags.InfoCaps) != 0 && info.Argsz > (uint)VfioArg.SizeOf<VfioIommuType1Info>())
        {
            if (WithCaps(fd, VfioIoctl.IommuGetInfo, info.Argsz, out byte[] reply) is long err and < 0)
            {
                return IoctlFailed(ctx, ctx.Name, err);
            }

            info = MemoryMarshal.Read<VfioIommuType1Info>(reply);
            caps = info.CapOffset != 0 ? VfioInfoCap.ParseChain(reply, info.CapOffset, VfioArg.SizeOf<VfioIommuType1Info>()) : [];
        }

        var flags = new List<string>();
        if ((info.Flags & VfioType1Flags.InfoPgsizes) != 0)
        {
            flags.Add("VFIO_IOMMU_INFO_PGSIZES");
        }

        if ((info.Flags & VfioType1Flags.InfoCaps) != 0)
        {
            flags.Add("VFIO_IOMMU_INFO_CAPS");
        }

        ctx.Out.WriteLine($"flags={(flags.Count == 0 ? "0" : string.Join('|', flags))} iova_pgsizes=0x{info.IovaPgsizes:x} ({PageSizes(info.IovaPgsizes)})");
        VfioIommuInfo decoded = VfioIommuInfo.From(info, caps);
        if (decoded.IovaRanges.Count > 0)
        {
            ctx.Out.WriteLine($"iova ranges: {string.Join(' ', decoded.IovaRanges.Select(x => $"[0x{x.Start:x}-0x{x.End:x}]"))}");
        }

        if (decoded.DmaAvail is { } avail)
        {
            ctx.Out.WriteLine($"dma_avail={avail}");
        }

        if (decoded.Migration is { } m)
        {
            ctx.Out.WriteLine($"migration: pgsize_bitmap=0x{m.PgsizeBitmap:x} max_dirty_bitmap_size={m.MaxDirtyBitmapSize}");
        }

        return 0;
    }

    private static string PageSizes(ulong bitmap)
    {
        var sizes = new List<string>();
        for (int bit = 0; bit < 64; bit++)
        {
            if ((bitmap & (1UL << bit)) != 0)
            {
                sizes.Add(SizeText(1UL << bit));
            }
        }

        return string.Join(' ', sizes);
    }

    private static string SizeText(ulong size)
        => size >= 1UL << 30 && size % (1UL << 30) == 0 ? $"{size >> 30}G"
        : size >= 1UL << 20 && size % (1UL << 20) == 0 ? $"{size >> 20}M"
        : size >= 1UL << 10 && size % (1UL << 10) == 0 ? $"{size >> 10}K"
        : size.ToString(CultureInfo.InvariantCulture);

    // An INFO ioctl again with argsz grown to what the kernel asked for, so the
    // capability chain fits; the reply is read back whole.
    private long WithCaps(int fd, uint cmd, uint argsz, out byte[] reply)
    {
        if (argsz > StageSize)
        {
            throw new InvalidOperationException($"the kernel asked for a {argsz}-byte reply, more than the shell's argument area");
        }

        reply = new byte[argsz];
        // The first call's reply is still staged: keep its fixed part, grow argsz.
        StageRead(reply.AsSpan(0, Math.Min(reply.Length, 32)));
        BinaryPrimitives.WriteUInt32LittleEndian(reply, argsz);
        StageWrite(reply);
        long r = Process.Ioctl(fd, cmd, _stage);
        StageRead(reply);
        return r;
    }

    private int MapDma(CommandContext ctx)
    {
        ReadOnlySpan<string> a = ctx.Args;
        if (a.Length < 4)
        {
            throw new UsageException(_commands[ctx.Name].Usage);
        }

        int fd = Fd(a[0]);
        ulong vaddr = Address(a[1]);
        ulong? iova = null, size = null;
        uint flags = 0;
        foreach (string w in a[2..])
        {
            if (w.StartsWith("iova=", StringComparison.Ordinal))
            {
                iova = Number(w[5..]);
            }
            else if (w.StartsWith("size=", StringComparison.Ordinal))
            {
                size = Number(w[5..]);
            }
            else if (w is "r" or "w" or "rw")
            {
                flags = (w.Contains('r', StringComparison.Ordinal) ? VfioType1Flags.MapRead : 0) | (w.Contains('w', StringComparison.Ordinal) ? VfioType1Flags.MapWrite : 0);
            }
            else
            {
                throw new UsageException($"'{w}': expected iova=, size= or r|w|rw");
            }
        }

        if (iova is null || size is null)
        {
            throw new UsageException("iova= and size= are required");
        }

        var map = new VfioIommuType1DmaMap
        {
            Argsz = (uint)VfioArg.SizeOf<VfioIommuType1DmaMap>(),
            Flags = flags == 0 ? VfioType1Flags.MapRead | VfioType1Flags.MapWrite : flags,
            Vaddr = vaddr,
            Iova = iova.Value,
            Size = size.Value,
        };
        long r = IoctlStruct(fd, VfioIoctl.IommuMapDma, ref map);
        return r < 0 ? IoctlFailed(ctx, ctx.Name, r) : 0;
    }

    private int UnmapDma(CommandContext ctx)
    {
        ReadOnlySpan<string> a = ctx.Args;
        if (a.Length < 2)
        {
            throw new UsageException(_commands[ctx.Name].Usage);
        }

        var unmap = new VfioIommuType1DmaUnmap { Argsz = (uint)VfioArg.SizeOf<VfioIommuType1DmaUnmap>() };
        foreach (string w in a[1..])
        {
            if (w.StartsWith("iova=", StringComparison.Ordinal))
            {
                unmap.Iova = Number(w[5..]);
            }
            else if (w.StartsWith("size=", StringComparison.Ordinal))
            {
                unmap.Size = Number(w[5..]);
            }
            else if (w == "all")
            {
                unmap.Flags |= VfioType1Flags.UnmapAll;
            }
            else
            {
                throw new UsageException($"'{w}': expected iova=, size= or all");
            }
        }

        long r = IoctlStruct(Fd(a[0]), VfioIoctl.IommuUnmapDma, ref unmap);
        if (r < 0)
        {
            return IoctlFailed(ctx, ctx.Name, r);
        }

        ctx.Out.WriteLine($"unmapped {unmap.Size} bytes");
        return 0;
    }

    private int DeviceGetInfo(CommandContext ctx)
    {
        if (ctx.Args.Length != 1)
        {
            throw new UsageException("VFIO_DEVICE_GET_INFO FD");
        }

        var info = new VfioDeviceInfo { Argsz = (uint)VfioArg.SizeOf<VfioDeviceInfo>() };
        long r = IoctlStruct(Fd(ctx.Args[0]), VfioIoctl.DeviceGetInfo, ref info);
        if (r < 0)
        {
            return IoctlFailed(ctx, ctx.Name, r);
        }

        ctx.Out.WriteLine($"flags={EnumFlags(info.Flags, "VFIO_DEVICE_FLAGS_")} num_regions={info.NumRegions} num_irqs={info.NumIrqs}");
        return 0;
    }

    private int RegionInfoCmd(CommandContext ctx)
    {
        if (ctx.Args.Length != 2)
        {
            throw new UsageException("VFIO_DEVICE_GET_REGION_INFO FD INDEX");
        }

        int fd = Fd(ctx.Args[0]);
        uint index = Index(ctx.Args[1], RegionNames);
        var info = new VfioRegionInfo { Argsz = (uint)VfioArg.SizeOf<VfioRegionInfo>(), Index = index };
        long r = IoctlStruct(fd, VfioIoctl.DeviceGetRegionInfo, ref info);
        if (r < 0)
        {
            return IoctlFailed(ctx, ctx.Name, r);
        }

        IReadOnlyList<VfioInfoCap> caps = [];
        if ((info.Flags & VfioRegionFlags.Caps) != 0 && info.Argsz > (uint)VfioArg.SizeOf<VfioRegionInfo>())
        {
            if (WithCaps(fd, VfioIoctl.DeviceGetRegionInfo, info.Argsz, out byte[] reply) is long err and < 0)
            {
                return IoctlFailed(ctx, ctx.Name, err);
            }

            info = MemoryMarshal.Read<VfioRegionInfo>(reply);
            caps = info.CapOffset != 0 ? VfioInfoCap.ParseChain(reply, info.CapOffset, VfioArg.SizeOf<VfioRegionInfo>()) : [];
        }

        string name = index < RegionNames.Length ? $" ({RegionNames[index]})" : "";
        ctx.Out.WriteLine($"index={index}{name} flags={EnumFlags(info.Flags, "VFIO_REGION_INFO_FLAG_")} size=0x{info.Size:x} offset=0x{info.Offset:x}");
        foreach (VfioInfoCap c in caps)
        {
            string what = c.Id switch
            {
                VfioCapId.RegionSparseMmap => "sparse mmap: " + string.Join(' ', c.ReadSparseMmapAreas().Select(x => $"[0x{x.Offset:x}+0x{x.Size:x}]")),
                VfioCapId.RegionType => $"type: {c.Read<VfioRegionInfoCapType>().Type}/{c.Read<VfioRegionInfoCapType>().Subtype}",
                VfioCapId.RegionMsixMappable => "MSI-X table mappable",
                _ => $"capability {c.Id}",
            };
            ctx.Out.WriteLine($"  cap {what}");
        }

        return 0;
    }

    private int IrqInfoCmd(CommandContext ctx)
    {
        if (ctx.Args.Length != 2)
        {
            throw new UsageException("VFIO_DEVICE_GET_IRQ_INFO FD INDEX");
        }

        uint index = Index(ctx.Args[1], IrqNames);
        var info = new VfioIrqInfo { Argsz = (uint)VfioArg.SizeOf<VfioIrqInfo>(), Index = index };
        long r = IoctlStruct(Fd(ctx.Args[0]), VfioIoctl.DeviceGetIrqInfo, ref info);
        if (r < 0)
        {
            return IoctlFailed(ctx, ctx.Name, r);
        }

        string name = index < IrqNames.Length ? $" ({IrqNames[index]})" : "";
        ctx.Out.WriteLine($"index={index}{name} flags={EnumFlags(info.Flags, "VFIO_IRQ_INFO_")} count={info.Count}");
        return 0;
    }

    // VFIO_DEVICE_SET_IRQS FD INDEX START COUNT ACTION, ACTION one of eventfd=FD[,FD…]
    // (TRIGGER with DATA_EVENTFD; -1 unwires one vector), trigger (TRIGGER|DATA_NONE),
    // mask, unmask (DATA_NONE), disable (TRIGGER|DATA_NONE with count 0).
    private int SetIrqs(CommandContext ctx)
    {
        ReadOnlySpan<string> a = ctx.Args;
        if (a.Length != 5)
        {
            throw new UsageException(_commands[ctx.Name].Usage);
        }

        int fd = Fd(a[0]);
        uint index = Index(a[1], IrqNames);
        uint start = (uint)Number(a[2]);
        uint count = (uint)Number(a[3]);
        string action = a[4];
        VfioIrqSetFlags flags;
        byte[] data = [];
        if (action.StartsWith("eventfd=", StringComparison.Ordinal))
        {
            int[] fds = [.. action[8..].Split(',').Select(s => s == "-1" ? -1 : Fd(s))];
            flags = VfioIrqSetFlags.DataEventfd | VfioIrqSetFlags.ActionTrigger;
            data = new byte[fds.Length * 4];
            for (int i = 0; i < fds.Length; i++)
            {
                BinaryPrimitives.WriteInt32LittleEndian(data.AsSpan(i * 4), fds[i]);
            }
        }
        else
        {
            flags = action switch
            {
                "trigger" or "disable" => VfioIrqSetFlags.DataNone | VfioIrqSetFlags.ActionTrigger,
                "mask" => VfioIrqSetFlags.DataNone | VfioIrqSetFlags.ActionMask,
                "unmask" => VfioIrqSetFlags.DataNone | VfioIrqSetFlags.ActionUnmask,
                _ => throw new UsageException($"'{action}': expected eventfd=FD[,FD…], trigger, mask, unmask or disable"),
            };
            if (action == "disable")
            {
                count = 0;
            }
        }

        var set = new VfioIrqSet
        {
            Argsz = (uint)(VfioArg.SizeOf<VfioIrqSet>() + data.Length),
            Flags = flags,
            Index = index,
            Start = start,
            Count = count,
        };
        byte[] bytes = [.. MemoryMarshal.AsBytes(MemoryMarshal.CreateReadOnlySpan(in set, 1)), .. data];
        StageWrite(bytes);
        long r = Process.Ioctl(fd, VfioIoctl.DeviceSetIrqs, _stage);
        return r < 0 ? IoctlFailed(ctx, ctx.Name, r) : 0;
    }

    // ---- Arguments and errors.

    /// <summary>A refused ioctl: the kernel's reason (it names the ioctl) and the errno.</summary>
    private static int IoctlFailed(CommandContext ctx, string ioctl, long ret)
    {
        Errno e = ErrOf(ret);
        string? reason = ErrorReason.Current;
        string text = reason is null
            ? $"{ioctl}: {e.Describe()}"
            : reason.StartsWith(ioctl, StringComparison.Ordinal) || reason.StartsWith("VFIO_", StringComparison.Ordinal) ? $"{reason} — {e.Describe()}" : $"{ioctl}: {reason} — {e.Describe()}";
        ctx.Err.WriteLine(text);
        return 1;
    }

    /// <summary>A refused syscall: <c>open /dev/vfio/4: No such file or directory</c>, with the reason when there is one.</summary>
    private static int SyscallFailed(CommandContext ctx, string what, long ret)
    {
        ctx.Err.WriteLine($"{what}: {ErrOf(ret).Message()} ({ErrOf(ret).Name()}){Because()}");
        return 1;
    }

    private static int Fd(string text)
        => int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out int fd)
            ? fd
            : throw new UsageException($"'{text}' is not an fd (a number that open, eventfd or VFIO_GROUP_GET_DEVICE_FD printed)");

    /// <summary>A number: decimal, 0x hex, or with a K/M/G suffix (1M = 1048576).</summary>
    internal static ulong Number(string text)
    {
        if (TryNumber(text, out ulong v))
        {
            return v;
        }

        throw new UsageException($"'{text}' is not a number (42, 0x1000, 4K, 1M, 2G)");
    }

    private static bool TryNumber(string text, out ulong value)
    {
        value = 0;
        if (string.IsNullOrEmpty(text))
        {
            return false;
        }

        int shift = char.ToUpperInvariant(text[^1]) switch { 'K' => 10, 'M' => 20, 'G' => 30, _ => 0 };
        string digits = shift == 0 ? text : text[..^1];
        bool ok = digits.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
            ? ulong.TryParse(digits.AsSpan(2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out value)
            : ulong.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out value);
        if (ok && shift != 0)
        {
            if (value > ulong.MaxValue >> shift)
            {
                return false;
            }

            value <<= shift;
        }

        return ok;
    }

    /// <summary>A user address: <c>buf0</c>, <c>buf0+0x1000</c>, or a number.</summary>
    private ulong Address(string text)
    {
        int plus = text.IndexOf('+', StringComparison.Ordinal);
        string name = plus < 0 ? text : text[..plus];
        if (_buffers.TryGetValue(name, out (ulong Addr, ulong Size) b))
        {
            return b.Addr + (plus < 0 ? 0 : Number(text[(plus + 1)..]));
        }

        return TryNumber(text, out ulong v) ? v : throw new UsageException($"'{text}' is neither a buffer (mmap makes buf0, buf1…) nor an address");
    }

    private static uint Extension(string text)
    {
        foreach ((string name, uint value) in Extensions)
        {
            if (string.Equals(name, text, StringComparison.OrdinalIgnoreCase))
            {
                return value;
            }
        }

        return (uint)Number(text);
    }

    private static uint Index(string text, string[] names)
    {
        for (int i = 0; i < names.Length; i++)
        {
            if (string.Equals(names[i], text, StringComparison.OrdinalIgnoreCase)
                || text.EndsWith("_" + names[i] + "_IRQ_INDEX", StringComparison.OrdinalIgnoreCase)
                || text.EndsWith("_" + names[i] + "_REGION_INDEX", StringComparison.OrdinalIgnoreCase))
            {
                return (uint)i;
            }
        }

        return (uint)Number(text);
    }

    // Flags of a uapi enum by their header names: Read → VFIO_REGION_INFO_FLAG_READ.
    private static string EnumFlags<TEnum>(TEnum value, string prefix)
        where TEnum : struct, Enum
    {
        ulong v = Convert.ToUInt64(value, CultureInfo.InvariantCulture);
        var names = new List<string>();
        foreach (TEnum f in Enum.GetValues<TEnum>())
        {
            ulong bit = Convert.ToUInt64(f, CultureInfo.InvariantCulture);
            if (bit != 0 && System.Numerics.BitOperations.IsPow2(bit) && (v & bit) == bit)
            {
                names.Add(prefix + UpperSnake(f.ToString()));
                v &= ~bit;
            }
        }

        if (v != 0)
        {
            names.Add($"0x{v:x}");
        }

        return names.Count == 0 ? "0" : string.Join('|', names);
    }

    private static string UpperSnake(string name)
    {
        var sb = new System.Text.StringBuilder();
        for (int i = 0; i < name.Length; i++)
        {
            if (i > 0 && char.IsUpper(name[i]) && !char.IsUpper(name[i - 1]))
            {
                sb.Append('_');
            }

            sb.Append(char.ToUpperInvariant(name[i]));
        }

        return sb.ToString().Replace("NO_RESIZE", "NORESIZE", StringComparison.Ordinal);
    }
}
