// The user-space view of an INFO ioctl's capability chain (include/uapi/linux/vfio.h):
// each capability as it sits in the reply buffer, and the fetch-then-grow call every
// user of DEVICE_GET_INFO, GET_REGION_INFO and IOMMU_GET_INFO makes.

using System.Runtime.InteropServices;
using Vfio.Core.Uapi;
using Vfio.Platform.Proc;

namespace Vfio.Core.Client;

/// <summary>One capability of an INFO reply: its header and its bytes (header included) up to the next one or the end of the reply.</summary>
public sealed class VfioInfoCap
{
    private static readonly int s_headerSize = Marshal.SizeOf<VfioInfoCapHeader>();

    internal VfioInfoCap(ushort id, ushort version, int offset, ReadOnlyMemory<byte> data)
    {
        Id = id;
        Version = version;
        Offset = offset;
        Data = data;
    }

    /// <summary>The capability id (its meaning depends on the ioctl: <see cref="VfioCapId"/>).</summary>
    public ushort Id { get; }

    /// <summary>The capability's version.</summary>
    public ushort Version { get; }

    /// <summary>Where the capability starts, from the start of the reply buffer.</summary>
    public int Offset { get; }

    /// <summary>The capability's bytes, header first, up to the next capability or the end of the reply.</summary>
    public ReadOnlyMemory<byte> Data { get; }

    /// <summary>Reads the capability as <typeparamref name="T"/> (a struct starting with its header, such as <see cref="VfioRegionInfoCapType"/>).</summary>
    public T Read<T>()
        where T : unmanaged
    {
        int size = Marshal.SizeOf<T>();
        return Data.Length >= size
            ? MemoryMarshal.Read<T>(Data.Span)
            : throw new InvalidDataException($"capability {Id} at offset {Offset} has {Data.Length} bytes, fewer than the {size} of {typeof(T).Name}");
    }

    /// <summary>Reads the flexible array that follows a fixed capability struct <typeparamref name="TCap"/>: <paramref name="count"/> items of <typeparamref name="TItem"/>.</summary>
    public TItem[] ReadArray<TCap, TItem>(int count)
        where TCap : unmanaged
        where TItem : unmanaged
    {
        int start = Marshal.SizeOf<TCap>();
        long need = start + ((long)count * Marshal.SizeOf<TItem>());
        if (count < 0 || Data.Length < need)
        {
            throw new InvalidDataException($"capability {Id} at offset {Offset} has {Data.Length} bytes, too few for {count} {typeof(TItem).Name} after {typeof(TCap).Name}");
        }

        return MemoryMarshal.Cast<byte, TItem>(Data.Span[start..(int)need]).ToArray();
    }

    /// <summary>The sparse-mmap areas of a <see cref="VfioCapId.RegionSparseMmap"/> capability.</summary>
    public VfioRegionSparseMmapArea[] ReadSparseMmapAreas()
        => ReadArray<VfioRegionInfoCapSparseMmap, VfioRegionSparseMmapArea>((int)Read<VfioRegionInfoCapSparseMmap>().NrAreas);

    /// <summary>The ranges of a type1 <see cref="VfioCapId.Type1IovaRange"/> capability.</summary>
    public VfioIovaRange[] ReadIovaRanges()
        => ReadArray<VfioIommuType1InfoCapIovaRange, VfioIovaRange>((int)Read<VfioIommuType1InfoCapIovaRange>().NrIovas);

    /// <inheritdoc/>
    public override string ToString() => $"cap id={Id} v{Version} @{Offset} ({Data.Length} bytes)";

    /// <summary>
    /// Walks the chain of <paramref name="reply"/> from <paramref name="capOffset"/>: each
    /// header past the <paramref name="fixedSize"/>-byte struct, inside the reply, and each
    /// next strictly forward. A malformed chain is a simulator defect and throws.
    /// </summary>
    internal static IReadOnlyList<VfioInfoCap> ParseChain(byte[] reply, uint capOffset, int fixedSize)
    {
        var caps = new List<VfioInfoCap>();
        uint at = capOffset;
        while (at != 0)
        {
            if (at < fixedSize || at + (ulong)s_headerSize > (ulong)reply.Length || (caps.Count > 0 && at <= caps[^1].Offset))
            {
                throw new InvalidDataException($"malformed capability chain: a capability at offset {at} in a {reply.Length}-byte reply whose fixed part is {fixedSize} bytes");
            }

            VfioInfoCapHeader h = MemoryMarshal.Read<VfioInfoCapHeader>(reply.AsSpan((int)at));
            int end = h.Next != 0 && h.Next > at && h.Next <= reply.Length ? (int)h.Next : reply.Length;
            caps.Add(new VfioInfoCap(h.Id, h.Version, (int)at, reply.AsMemory((int)at, end - (int)at)));
            at = h.Next;
        }

        return caps;
    }
}

/// <summary>The reply of an INFO ioctl: its fixed struct and its capabilities.</summary>
/// <typeparam name="T">The fixed struct: <see cref="VfioDeviceInfo"/> or <see cref="VfioRegionInfo"/>.</typeparam>
public sealed class VfioInfo<T>
    where T : unmanaged
{
    internal VfioInfo(T info, IReadOnlyList<VfioInfoCap> caps)
    {
        Info = info;
        Caps = caps;
    }

    /// <summary>The fixed struct as the kernel returned it (its argsz is the size the full reply needed).</summary>
    public T Info { get; }

    /// <summary>The capabilities in chain order; empty when the reply had none.</summary>
    public IReadOnlyList<VfioInfoCap> Caps { get; }

    /// <summary>The first capability with <paramref name="id"/>, or null.</summary>
    public VfioInfoCap? Find(ushort id)
    {
        foreach (VfioInfoCap c in Caps)
        {
            if (c.Id == id)
            {
                return c;
            }
        }

        return null;
    }
}

/// <summary>The INFO call: ask with the fixed size, and when the kernel reports caps that did not fit, ask again with the size it asked for.</summary>
internal static class VfioInfoCall
{
    // A chain may grow between the two calls (a group attached meanwhile); a few retries
    // cover that, an endless growth is a simulator defect.
    private const int MaxAttempts = 4;

    // request: the fixed struct with its input fields set (argsz is set here); capsFlag:
    // the struct's *_CAPS bit; capOffsetAt: offsetof(cap_offset) in the struct.
    public static (T Info, IReadOnlyList<VfioInfoCap> Caps) Get<T>(SimProcess process, int fd, uint cmd, string kind, T request, uint capsFlag, int capOffsetAt)
        where T : unmanaged
    {
        int fixedSize = Marshal.SizeOf<T>();
        byte[] reply = new byte[fixedSize];
        for (int attempt = 1; ; attempt++)
        {
            VfioSyscalls.Bytes(in request).CopyTo(reply);
            MemoryMarshal.Write(reply, (uint)reply.Length);
            VfioSyscalls.Ioctl(process, fd, cmd, kind, reply);

            uint argsz = MemoryMarshal.Read<uint>(reply);
            uint flags = MemoryMarshal.Read<uint>(reply.AsSpan(sizeof(uint)));
            T info = MemoryMarshal.Read<T>(reply);
            if ((flags & capsFlag) == 0)
            {
                return (info, []);
            }

            if (argsz <= reply.Length)
            {
                uint capOffset = MemoryMarshal.Read<uint>(reply.AsSpan(capOffsetAt));
                return (info, VfioInfoCap.ParseChain(reply, capOffset, fixedSize));
            }

            if (attempt == MaxAttempts)
            {
                throw new InvalidOperationException($"{VfioIoctl.Name(cmd, kind)}: the reply kept growing ({argsz} bytes asked after {attempt} calls)");
            }

            reply = new byte[argsz];
        }
    }
}
