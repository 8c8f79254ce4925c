// The typed user-space client for a vfio device fd (the device ioctls of
// drivers/vfio/vfio_main.c and vfio-pci's regions and interrupts), built only on a
// SimProcess's syscalls. Regions are reached at file offset index << 40, as vfio-pci lays them out.

using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Mm;
using Vfio.Platform.Proc;

namespace Vfio.Core.Client;

/// <summary>A device fd of one process. Every failed call throws <see cref="VfioException"/>.</summary>
public sealed class VfioDeviceFd : VfioFd
{
    // offsetof(cap_offset) in struct vfio_device_info and struct vfio_region_info.
    private const int CapOffsetOfDeviceInfo = 16;
    private const int CapOffsetOfRegionInfo = 12;

    /// <summary>Takes ownership of <paramref name="fd"/>, a device fd of <paramref name="process"/> (from VFIO_GROUP_GET_DEVICE_FD or a cdev open).</summary>
    public VfioDeviceFd(SimProcess process, int fd)
        : base(process ?? throw new ArgumentNullException(nameof(process)), fd >= 0 ? fd : throw new ArgumentOutOfRangeException(nameof(fd), fd, "a device fd is not negative"), "device")
    {
    }

    /// <summary>VFIO_DEVICE_GET_INFO: flags, region and IRQ counts, and the device capabilities.</summary>
    public VfioInfo<VfioDeviceInfo> GetInfo()
    {
        ThrowIfDisposed();
        (VfioDeviceInfo info, IReadOnlyList<VfioInfoCap> caps) = VfioInfoCall.Get(
            Process, Fd, VfioIoctl.DeviceGetInfo, Kind, new VfioDeviceInfo(), (uint)VfioDeviceFlags.Caps, CapOffsetOfDeviceInfo);
        return new VfioInfo<VfioDeviceInfo>(info, caps);
    }

    /// <summary>VFIO_DEVICE_GET_REGION_INFO for region <paramref name="index"/>, with its capabilities (sparse mmap, type, MSI-X mappable).</summary>
    public VfioInfo<VfioRegionInfo> GetRegionInfo(int index)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ThrowIfDisposed();
        (VfioRegionInfo info, IReadOnlyList<VfioInfoCap> caps) = VfioInfoCall.Get(
            Process, Fd, VfioIoctl.DeviceGetRegionInfo, Kind, new VfioRegionInfo { Index = (uint)index }, (uint)VfioRegionFlags.Caps, CapOffsetOfRegionInfo);
        return new VfioInfo<VfioRegionInfo>(info, caps);
    }

    /// <summary>VFIO_DEVICE_GET_IRQ_INFO for IRQ index <paramref name="index"/>.</summary>
    public VfioIrqInfo GetIrqInfo(int index)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ThrowIfDisposed();
        var info = new VfioIrqInfo { Argsz = (uint)VfioArg.SizeOf<VfioIrqInfo>(), Index = (uint)index };
        VfioSyscalls.Ioctl(Process, Fd, VfioIoctl.DeviceGetIrqInfo, Kind, ref info);
        return info;
    }

    /// <summary>VFIO_DEVICE_SET_IRQS: <paramref name="flags"/> (one DATA_* and one ACTION_*) on subindexes [<paramref name="start"/>, +<paramref name="count"/>) of <paramref name="index"/>, with <paramref name="data"/> (bools or s32 eventfds) after the header.</summary>
    public void SetIrqs(int index, uint start, uint count, VfioIrqSetFlags flags, ReadOnlySpan<byte> data = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ThrowIfDisposed();
        // Small requests (every INTx and ERR/REQ call, MSI with up to 59 eventfds) stay on the stack.
        int header = VfioArg.SizeOf<VfioIrqSet>();
        int total = header + data.Length;
        Span<byte> arg = total <= 256 ? stackalloc byte[total] : new byte[total];
        var set = new VfioIrqSet { Argsz = (uint)total, Flags = flags, Index = (uint)index, Start = start, Count = count };
        VfioSyscalls.Bytes(in set).CopyTo(arg);
        data.CopyTo(arg[header..]);
        VfioSyscalls.Ioctl(Process, Fd, VfioIoctl.DeviceSetIrqs, Kind, arg);
    }

    /// <summary>Signals <paramref name="eventfds"/> for subindexes <paramref name="start"/>… of <paramref name="index"/> (DATA_EVENTFD | ACTION_TRIGGER); -1 de-assigns one.</summary>
    public void SetIrqEventfds(int index, uint start, ReadOnlySpan<int> eventfds)
        => SetIrqs(index, start, (uint)eventfds.Length, VfioIrqSetFlags.DataEventfd | VfioIrqSetFlags.ActionTrigger, MemoryMarshal.AsBytes(eventfds));

    /// <summary>Signals <paramref name="eventfd"/> for subindex <paramref name="subindex"/> of <paramref name="index"/>.</summary>
    public void SetIrqEventfd(int index, int eventfd, uint subindex = 0)
        => SetIrqEventfds(index, subindex, [eventfd]);

    /// <summary>Disables every interrupt of <paramref name="index"/> (DATA_NONE | ACTION_TRIGGER with count 0).</summary>
    public void DisableIrqs(int index) => SetIrqs(index, 0, 0, VfioIrqSetFlags.DataNone | VfioIrqSetFlags.ActionTrigger);

    /// <summary>Fires subindex <paramref name="subindex"/> of <paramref name="index"/> from user space (DATA_NONE | ACTION_TRIGGER, the loopback test).</summary>
    public void TriggerIrq(int index, uint subindex = 0) => SetIrqs(index, subindex, 1, VfioIrqSetFlags.DataNone | VfioIrqSetFlags.ActionTrigger);

    /// <summary>Masks subindex <paramref name="subindex"/> of <paramref name="index"/> (DATA_NONE | ACTION_MASK).</summary>
    public void MaskIrq(int index, uint subindex = 0) => SetIrqs(index, subindex, 1, VfioIrqSetFlags.DataNone | VfioIrqSetFlags.ActionMask);

    /// <summary>Unmasks subindex <paramref name="subindex"/> of <paramref name="index"/> (DATA_NONE | ACTION_UNMASK).</summary>
    public void UnmaskIrq(int index, uint subindex = 0) => SetIrqs(index, subindex, 1, VfioIrqSetFlags.DataNone | VfioIrqSetFlags.ActionUnmask);

    /// <summary>
    /// Registers <paramref name="eventfd"/> as the unmask eventfd of subindex
    /// <paramref name="subindex"/> of <paramref name="index"/> (DATA_EVENTFD | ACTION_UNMASK; INTx
    /// only): every write to it unmasks, as KVM's irqfd resampler does. -1 unregisters it.
    /// </summary>
    public void SetIrqUnmaskEventfd(int index, int eventfd, uint subindex = 0)
        => SetIrqs(index, subindex, 1, VfioIrqSetFlags.DataEventfd | VfioIrqSetFlags.ActionUnmask, MemoryMarshal.AsBytes(new ReadOnlySpan<int>(in eventfd)));

    /// <summary>
    /// VFIO_DEVICE_IOEVENTFD: every signal of <paramref name="eventfd"/> writes the low
    /// <paramref name="size"/> bytes (1, 2, 4 or 8) of <paramref name="data"/> at
    /// <paramref name="offset"/> of BAR <paramref name="index"/>; eventfd -1 removes the entry
    /// with the same BAR, offset, size and data.
    /// </summary>
    public void SetIoeventfd(int index, long offset, int size, ulong data, int eventfd)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ThrowIfDisposed();
        var req = new VfioDeviceIoeventfd
        {
            Argsz = (uint)VfioArg.SizeOf<VfioDeviceIoeventfd>(),
            Flags = (uint)size,
            Offset = (ulong)VfioPciIndex.IndexToOffset(index) + (ulong)offset,
            Data = data,
            Fd = eventfd,
        };
        VfioSyscalls.Ioctl(Process, Fd, VfioIoctl.DeviceIoeventfd, Kind, ref req);
    }

    /// <summary>VFIO_DEVICE_RESET.</summary>
    public void Reset() => Ioctl(VfioIoctl.DeviceReset);

    /// <summary>
    /// VFIO_DEVICE_GET_PCI_HOT_RESET_INFO: the functions a hot reset of this device would
    /// also reset, with their groups (asks once for the count, then for the entries).
    /// </summary>
    /// <exception cref="VfioException">ENODEV when neither a slot nor a bus reset is possible; EPERM when an affected function has no IOMMU group.</exception>
    public IReadOnlyList<VfioPciDependentDevice> GetPciHotResetInfo()
    {
        ThrowIfDisposed();
        int header = VfioPciHotResetInfo.MinSz;
        int entry = VfioArg.SizeOf<VfioPciDependentDevice>();
        for (uint count = 1; ; )
        {
            byte[] arg = new byte[header + (count * entry)];
            BinaryPrimitives.WriteUInt32LittleEndian(arg, (uint)arg.Length);
            long ret = Process.Ioctl(Fd, VfioIoctl.DeviceGetPciHotResetInfo, arg);
            uint needed = BinaryPrimitives.ReadUInt32LittleEndian(arg.AsSpan(8));
            if (ret == Errno.ENOSPC.Negative() && needed > count)
            {
                count = needed;
                continue;
            }

            VfioSyscalls.Check(ret, $"{Kind} ioctl {VfioIoctl.Name(VfioIoctl.DeviceGetPciHotResetInfo)}");
            return MemoryMarshal.Cast<byte, VfioPciDependentDevice>(arg.AsSpan(header, (int)needed * entry)).ToArray();
        }
    }

    /// <summary>
    /// VFIO_DEVICE_PCI_HOT_RESET: resets every function <see cref="GetPciHotResetInfo"/> lists.
    /// The caller proves it owns them by passing the group fd of every affected group.
    /// </summary>
    /// <exception cref="VfioException">EINVAL when a group is missing or a function is not a vfio-pci device of the set; EBUSY when a device's memory is in use; EBADF for a bad fd.</exception>
    public void PciHotReset(params ReadOnlySpan<VfioGroupFd> groups)
    {
        Span<int> fds = groups.Length <= 16 ? stackalloc int[groups.Length] : new int[groups.Length];
        for (int i = 0; i < groups.Length; i++)
        {
            fds[i] = groups[i].Fd;
        }

        PciHotReset(fds);
    }

    /// <summary>VFIO_DEVICE_PCI_HOT_RESET with raw group fds.</summary>
    public void PciHotReset(ReadOnlySpan<int> groupFds)
    {
        ThrowIfDisposed();
        int header = VfioPciHotReset.MinSz;
        byte[] arg = new byte[header + (groupFds.Length * sizeof(int))];
        var hdr = new VfioPciHotReset { Argsz = (uint)arg.Length, Count = (uint)groupFds.Length };
        VfioSyscalls.Bytes(in hdr).CopyTo(arg);
        MemoryMarshal.AsBytes(groupFds).CopyTo(arg.AsSpan(header));
        VfioSyscalls.Ioctl(Process, Fd, VfioIoctl.DevicePciHotReset, Kind, arg);
    }

    /// <summary>
    /// VFIO_DEVICE_FEATURE: feature <paramref name="feature"/> with <paramref name="flags"/>
    /// (VfioFeature.Get, Set, Probe) and <paramref name="data"/> after the 8-byte header; the
    /// ioctl's result.
    /// </summary>
    public long Feature(uint feature, uint flags, ReadOnlySpan<byte> data = default)
    {
        ThrowIfDisposed();
        int header = VfioArg.SizeOf<VfioDeviceFeature>();
        Span<byte> arg = new byte[header + data.Length];

        var hdr = new VfioDeviceFeature { Argsz = (uint)arg.Length, Flags = feature | flags };
        VfioSyscalls.Bytes(in hdr).CopyTo(arg);
        data.CopyTo(arg[header..]);
        return VfioSyscalls.Ioctl(Process, Fd, VfioIoctl.DeviceFeature, Kind, arg);
    }

    /// <summary>VFIO_DEVICE_FEATURE with PROBE | <paramref name="flags"/>: whether the device supports <paramref name="feature"/> that way.</summary>
    public bool ProbeFeature(uint feature, uint flags = VfioFeature.Set)
    {
        ThrowIfDisposed();
        var hdr = new VfioDeviceFeature { Argsz = (uint)VfioArg.SizeOf<VfioDeviceFeature>(), Flags = feature | flags | VfioFeature.Probe };
        return Process.Ioctl(Fd, VfioIoctl.DeviceFeature, MemoryMarshal.AsBytes(new Span<VfioDeviceFeature>(ref hdr))) == 0;
    }

    /// <summary>
    /// VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY: put the device in runtime low power (D3hot where it
    /// can); BAR mappings fault SIGBUS until <see cref="LowPowerExit"/>, while ioctls and
    /// read/write wake it for their duration.
    /// </summary>
    public void LowPowerEntry() => Feature(VfioFeature.LowPowerEntry, VfioFeature.Set);

    /// <summary>
    /// VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP: as <see cref="LowPowerEntry"/>, but the
    /// first thing that wakes the device signals <paramref name="wakeupEventfd"/> once and
    /// ends low power.
    /// </summary>
    public void LowPowerEntryWithWakeup(int wakeupEventfd)
    {
        var entry = new VfioDeviceLowPowerEntryWithWakeup { WakeupEventfd = wakeupEventfd };
        Feature(VfioFeature.LowPowerEntryWithWakeup, VfioFeature.Set, VfioSyscalls.Bytes(in entry));
    }

    /// <summary>VFIO_DEVICE_FEATURE_LOW_POWER_EXIT: leave low power (a no-op when not in it).</summary>
    public void LowPowerExit() => Feature(VfioFeature.LowPowerExit, VfioFeature.Set);

    /// <summary>VFIO_DEVICE_FEATURE_PCI_VF_TOKEN (a physical function): sets the token the VFs' users must present (<c>vf_token=</c> in the device name).</summary>
    public void SetVfToken(Guid token)
    {
        Span<byte> uuid = stackalloc byte[16];
        token.TryWriteBytes(uuid, bigEndian: true, out _);
        Feature(VfioFeature.PciVfToken, VfioFeature.Set, uuid);
    }

    /// <summary>pread() of region <paramref name="index"/> at <paramref name="offset"/> into <paramref name="buffer"/>; the bytes read.</summary>
    public long Read(int index, long offset, Span<byte> buffer)
    {
        ThrowIfDisposed();
        return VfioSyscalls.Check(Process.Pread(Fd, buffer, RegionOffset(index, offset)), "pread");
    }

    /// <summary>pwrite() of <paramref name="data"/> to region <paramref name="index"/> at <paramref name="offset"/>; the bytes written.</summary>
    public long Write(int index, long offset, ReadOnlySpan<byte> data)
    {
        ThrowIfDisposed();
        return VfioSyscalls.Check(Process.Pwrite(Fd, data, RegionOffset(index, offset)), "pwrite");
    }

    /// <summary>Reads the config-space byte at <paramref name="offset"/>.</summary>
    public byte ReadConfig8(int offset)
    {
        Span<byte> b = stackalloc byte[1];
        ReadExactly(VfioPciIndex.Config, offset, b);
        return b[0];
    }

    /// <summary>Reads the little-endian config-space word at <paramref name="offset"/>.</summary>
    public ushort ReadConfig16(int offset)
    {
        Span<byte> b = stackalloc byte[2];
        ReadExactly(VfioPciIndex.Config, offset, b);
        return BinaryPrimitives.ReadUInt16LittleEndian(b);
    }

    /// <summary>Reads the little-endian config-space dword at <paramref name="offset"/>.</summary>
    public uint ReadConfig32(int offset) => ReadRegion32(VfioPciIndex.Config, offset);

    /// <summary>Writes the config-space byte at <paramref name="offset"/>.</summary>
    public void WriteConfig8(int offset, byte value) => WriteExactly(VfioPciIndex.Config, offset, [value]);

    /// <summary>Writes the little-endian config-space word at <paramref name="offset"/>.</summary>
    public void WriteConfig16(int offset, ushort value)
    {
        Span<byte> b = stackalloc byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(b, value);
        WriteExactly(VfioPciIndex.Config, offset, b);
    }

    /// <summary>Writes the little-endian config-space dword at <paramref name="offset"/>.</summary>
    public void WriteConfig32(int offset, uint value) => WriteRegion32(VfioPciIndex.Config, offset, value);

    /// <summary>A 4-byte little-endian pread() of region <paramref name="index"/> (a BAR register, say) at <paramref name="offset"/>; a short read throws.</summary>
    public uint ReadRegion32(int index, long offset)
    {
        Span<byte> b = stackalloc byte[4];
        ReadExactly(index, offset, b);
        return BinaryPrimitives.ReadUInt32LittleEndian(b);
    }

    /// <summary>An 8-byte little-endian pread() of region <paramref name="index"/> at <paramref name="offset"/>; a short read throws.</summary>
    public ulong ReadRegion64(int index, long offset)
    {
        Span<byte> b = stackalloc byte[8];
        ReadExactly(index, offset, b);
        return BinaryPrimitives.ReadUInt64LittleEndian(b);
    }

    /// <summary>A 4-byte little-endian pwrite() to region <paramref name="index"/> at <paramref name="offset"/>; a short write throws.</summary>
    public void WriteRegion32(int index, long offset, uint value)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, value);
        WriteExactly(index, offset, b);
    }

    /// <summary>An 8-byte little-endian pwrite() to region <paramref name="index"/> at <paramref name="offset"/>; a short write throws.</summary>
    public void WriteRegion64(int index, long offset, ulong value)
    {
        Span<byte> b = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(b, value);
        WriteExactly(index, offset, b);
    }

    /// <summary>
    /// mmap(MAP_SHARED) of [<paramref name="offset"/>, +<paramref name="length"/>) of region
    /// <paramref name="index"/> (a BAR flagged VFIO_REGION_INFO_FLAG_MMAP); at
    /// <paramref name="address"/> with MAP_FIXED when it is not 0. Pages are faulted in on
    /// first access. Load and store through the returned mapping; dispose it to unmap.
    /// </summary>
    /// <exception cref="VfioException">mmap failed (EINVAL for a region that cannot be mapped or a window past it, EBUSY for a reserved region).</exception>
    public VfioRegionMapping MmapRegion(int index, long offset, long length, ulong address = 0, Prot prot = Prot.PROT_READ | Prot.PROT_WRITE)
    {
        ThrowIfDisposed();
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(length);
        MapFlags flags = MapFlags.MAP_SHARED | (address != 0 ? MapFlags.MAP_FIXED : 0);
        long ret = Process.Mmap(address, (ulong)length, prot, flags, Fd, RegionOffset(index, offset));
        if (ret < 0)
        {
            throw VfioException.FromReturn(ret, "mmap");
        }

        return new VfioRegionMapping(Process, index, offset, (ulong)ret, (ulong)length);
    }

    private static long RegionOffset(int index, long offset)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        if (offset < 0 || offset > VfioPciIndex.OffsetMask)
        {
            throw new ArgumentOutOfRangeException(nameof(offset), offset, $"a region offset is below 2^{VfioPciIndex.OffsetShift}");
        }

        return VfioPciIndex.IndexToOffset(index) + offset;
    }

    private void ReadExactly(int index, long offset, Span<byte> buffer)
    {
        long n = Read(index, offset, buffer);
        if (n != buffer.Length)
        {
            throw new InvalidOperationException($"{RegionName(index)} read of {buffer.Length} bytes at 0x{offset:x} returned {n}");
        }
    }

    private void WriteExactly(int index, long offset, ReadOnlySpan<byte> data)
    {
        long n = Write(index, offset, data);
        if (n != data.Length)
        {
            throw new InvalidOperationException($"{RegionName(index)} write of {data.Length} bytes at 0x{offset:x} wrote {n}");
        }
    }

    private static string RegionName(int index) => index == VfioPciIndex.Config ? "config" : $"region {index}";
}
