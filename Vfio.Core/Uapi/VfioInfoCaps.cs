// Models the info-capability chain helpers of drivers/vfio/vfio_main.c (v6.12):
// vfio_info_cap_add(), vfio_info_cap_shift(), vfio_info_add_capability(), and the copy-out
// step every INFO ioctl (DEVICE_GET_INFO, GET_REGION_INFO, IOMMU_GET_INFO) repeats.
//
// Order of use in a handler: copy in the fixed struct, fill it, Add() each capability (the
// chain is built at offset 0 of a private buffer; from v6.6 each entry is rounded up to 8
// bytes and zero-padded, before it each entry took its own size — the profile feature
// VfioCoreFeatures.InfoCapsAlignedTo8 decides), then CopyOut(): when the caller's argsz
// cannot hold the fixed struct plus the chain, argsz is raised to the total and cap_offset
// is 0 (the call still succeeds); otherwise the chain is shifted so every next is an offset
// from the start of the user buffer, copied right after the fixed struct, and cap_offset =
// sizeof(fixed struct).
// Finally the handler sets its *_CAPS flag (when there are caps) and copies the fixed
// struct back. A handler that adds nothing allocates nothing; one that hands the chain a
// scratch buffer (stackalloc) big enough for its usual chain allocates nothing either: the
// chain moves to the heap only when it outgrows that buffer.

using System.Runtime.InteropServices;
using Vfio.Kernel;
using Vfio.Platform.Fs;

namespace Vfio.Core.Uapi;

/// <summary>
/// struct vfio_info_cap: a capability chain under construction, kernel side. A mutable
/// stack-only value: declare it as a local for the running kernel's profile
/// (<c>var caps = new VfioInfoCaps(kernel.Profile);</c>) and pass it by <c>ref</c> to helpers
/// that add capabilities. The default value lays the chain out as v6.6+ does, every entry
/// on an 8-byte boundary.
/// </summary>
public ref struct VfioInfoCaps
{
    /// <summary>The fault-injection site of the chain buffer's (re)allocation.</summary>
    public const string AllocFaultSite = "krealloc:vfio_info_cap";

    /// <summary>Capabilities are laid out on 8-byte boundaries (sizeof(u64)) when the profile aligns them.</summary>
    public const int Alignment = sizeof(ulong);

    // sizeof(struct vfio_info_cap_header) and offsetof(next); UapiTests pins both.
    private const int HeaderSize = 8;
    private const int NextOffset = 4;

    private Span<byte> _buf;
    private int _size;
    private int _last;
    private bool _shifted;

    // Before v6.6 (no InfoCapsAlignedTo8) entries are chained at their own sizes.
    private readonly bool _packed;

    /// <summary>
    /// An empty chain laid out as <paramref name="profile"/>'s kernel lays it out: entries
    /// rounded up to 8 bytes when it has <see cref="VfioCoreFeatures.InfoCapsAlignedTo8"/>,
    /// back to back at their own sizes before.
    /// </summary>
    public VfioInfoCaps(KernelProfile profile)
    {
        ArgumentNullException.ThrowIfNull(profile);
        _packed = !profile.Has(VfioCoreFeatures.InfoCapsAlignedTo8);
    }

    /// <summary>
    /// An empty chain laid out as <paramref name="profile"/>'s kernel lays it out, built in
    /// <paramref name="scratch"/> (typically <c>stackalloc byte[256]</c>) until it outgrows it,
    /// so a handler whose chain fits allocates nothing.
    /// </summary>
    public VfioInfoCaps(KernelProfile profile, Span<byte> scratch)
        : this(profile)
    {
        _buf = scratch;
    }

    /// <summary>True when entries are rounded up to 8 bytes (v6.6+); false when they are chained at their own sizes.</summary>
    public readonly bool AlignsEntries => !_packed;

    /// <summary>caps-&gt;size: the bytes of the chain so far (every entry rounded up to 8 when <see cref="AlignsEntries"/>).</summary>
    public readonly int Size => _size;

    /// <summary>True when no capability was added (the handler leaves *_CAPS clear).</summary>
    public readonly bool IsEmpty => _size == 0;

    /// <summary>The chain as it would be copied to user space (for tests and reports).</summary>
    public readonly ReadOnlySpan<byte> Bytes => _buf[.._size];

    /// <summary>
    /// vfio_info_cap_add(): appends a zeroed capability of <paramref name="size"/> bytes
    /// (header included, rounded up to 8 when <see cref="AlignsEntries"/>) with <paramref name="id"/> and
    /// <paramref name="version"/> set, linked after the last one. <paramref name="cap"/> spans
    /// the new entry, header first, for the caller to fill in after the header. Returns 0,
    /// or -ENOMEM, in which case the whole chain is dropped as the kernel does.
    /// </summary>
    public int Add(int size, ushort id, ushort version, out Span<byte> cap)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(size, HeaderSize);
        if (_shifted)
        {
            throw new InvalidOperationException("vfio_info_cap_add after vfio_info_cap_shift: the chain's offsets are already user-relative");
        }

        int aligned = _packed ? size : (size + Alignment - 1) & ~(Alignment - 1);
        if (KTask.CurrentOrNull is { } t && t.Kernel.Faults.ShouldFail(AllocFaultSite))
        {
            _buf = default;
            _size = 0;
            _last = 0;
            cap = default;
            return Errno.ENOMEM.Negative();
        }

        int at = _size;
        if (_buf.Length < at + aligned)
        {
            byte[] grown = new byte[Math.Max(at + aligned, Math.Max(64, _buf.Length * 2))];
            _buf[..at].CopyTo(grown);
            _buf = grown;
        }

        cap = _buf.Slice(at, aligned);
        cap.Clear();
        var header = new VfioInfoCapHeader { Id = id, Version = version, Next = 0 };
        MemoryMarshal.Write(cap, in header);
        if (at != 0)
        {
            // The previous tail points here; offsets are from the chain's start until Shift().
            SetNext(_last, (uint)at);
        }

        _last = at;
        _size = at + aligned;
        return 0;
    }

    /// <summary>
    /// vfio_info_add_capability(): appends a copy of <paramref name="cap"/>, a capability
    /// struct that starts with its <see cref="VfioInfoCapHeader"/> (its id and version are
    /// used, its next is ignored). 0 or -ENOMEM.
    /// </summary>
    public int Add<T>(in T cap)
        where T : unmanaged
        => Add(in cap, ReadOnlySpan<byte>.Empty);

    /// <summary>
    /// vfio_info_add_capability() for a capability with a flexible array: <paramref name="cap"/>
    /// followed by <paramref name="items"/> (sparse-mmap areas, IOVA ranges). 0 or -ENOMEM.
    /// </summary>
    public int Add<T, TItem>(in T cap, ReadOnlySpan<TItem> items)
        where T : unmanaged
        where TItem : unmanaged
    {
        ReadOnlySpan<byte> fixedPart = MemoryMarshal.AsBytes(new ReadOnlySpan<T>(in cap));
        if (fixedPart.Length < HeaderSize)
        {
            throw new ArgumentException($"{typeof(T).Name} is smaller than a capability header", nameof(cap));
        }

        ReadOnlySpan<byte> tail = MemoryMarshal.AsBytes(items);
        VfioInfoCapHeader h = MemoryMarshal.Read<VfioInfoCapHeader>(fixedPart);
        int ret = Add(fixedPart.Length + tail.Length, h.Id, h.Version, out Span<byte> dst);
        if (ret != 0)
        {
            return ret;
        }

        fixedPart[HeaderSize..].CopyTo(dst[HeaderSize..]);
        tail.CopyTo(dst[fixedPart.Length..]);
        return 0;
    }

    /// <summary>
    /// vfio_info_cap_shift(): turns every non-zero next into an offset from the start of the
    /// user buffer, where the chain will sit <paramref name="offset"/> bytes in. Once only;
    /// <see cref="CopyOut"/> does it for handlers that use the usual protocol.
    /// </summary>
    public void Shift(int offset)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        if (_shifted)
        {
            throw new InvalidOperationException("vfio_info_cap_shift called twice on one chain");
        }

        // v6.6 added the WARN with the padding; before, an unaligned start was normal.
        Warn.On(!_packed && offset % Alignment != 0, $"capability chain placed at unaligned offset {offset}");
        _shifted = true;
        if (_size == 0)
        {
            return;
        }

        int at = 0;
        while (GetNext(at) is var next and not 0)
        {
            SetNext(at, next + (uint)offset);
            at = (int)next;
        }
    }

    /// <summary>
    /// The copy-out step of an INFO ioctl with caps, after the chain is built. With no caps
    /// it does nothing. When <paramref name="argsz"/> (the caller's buffer) is smaller than
    /// <paramref name="fixedSize"/> + <see cref="Size"/>, it raises argsz to that total, sets
    /// <paramref name="capOffset"/> to 0 and copies nothing (the ioctl still succeeds).
    /// Otherwise it shifts the chain, copies it to <c>arg + fixedSize</c> and sets capOffset to
    /// fixedSize. Returns 0, or -EFAULT when the copy fails. The caller then sets its *_CAPS
    /// flag (when <see cref="IsEmpty"/> is false) and copies its fixed struct back.
    /// </summary>
    public int CopyOut(ulong arg, int fixedSize, ref uint argsz, ref uint capOffset)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(fixedSize);
        if (_size == 0)
        {
            return 0;
        }

        ulong total = (ulong)fixedSize + (ulong)_size;
        if (argsz < total)
        {
            argsz = (uint)total;
            capOffset = 0;
            return 0;
        }

        Shift(fixedSize);
        if (UserMemory.CopyToUser(arg + (ulong)fixedSize, Bytes) != 0)
        {
            return Errno.EFAULT.Negative();
        }

        capOffset = (uint)fixedSize;
        return 0;
    }

    private readonly uint GetNext(int at) => MemoryMarshal.Read<uint>(_buf[(at + NextOffset)..]);

    private readonly void SetNext(int at, uint next) => MemoryMarshal.Write(_buf[(at + NextOffset)..], in next);
}
