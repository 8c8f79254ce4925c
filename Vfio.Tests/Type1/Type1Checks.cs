// Shared checks for the type1 conformance tests: a snapshot of everything a rejected
// MAP/UNMAP must leave alone (mappings, dma_avail, locked_vm, pinned pages, invariants),
// raw GET_INFO and CHECK_EXTENSION calls, and a walker for the GET_INFO capability chain.

using System.Runtime.InteropServices;
using NUnit.Framework;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Mm;

namespace Vfio.Tests.Type1;


/// <summary>One capability of the GET_INFO chain: its id, version and offset in the buffer.</summary>
internal readonly record struct InfoCap(ushort Id, ushort Version, int Offset);

internal static class Type1Checks
{
    /// <summary>What a rejected call must not change (the container's state as <see cref="Type1Kit.State"/> sees it).</summary>
    public static Type1State Snapshot(this Type1Rig rig, int c) => rig.State(c);

    /// <summary>Asserts the container is exactly as <paramref name="before"/> and its invariants hold.</summary>
    public static void AssertUnchanged(this Type1Rig rig, int c, Type1State before)
    {
        Assert.That(rig.State(c), Is.EqualTo(before), "mappings, dma_avail, locked_vm, pinned pages, tracking and domains are unchanged");
        rig.AssertInvariants(c);
    }

    /// <summary>Runs <paramref name="call"/>, asserts it failed with <paramref name="errno"/> and changed nothing.</summary>
    public static void AssertRejected(this Type1Rig rig, int c, Errno errno, Func<long> call, string what = "")
    {
        Type1State before = rig.State(c);
        long r = call();
        Assert.That(r, Is.EqualTo((long)errno.Negative()), () => $"{what} expected {errno}; kernel reason: {ErrorReason.Current}");
        rig.AssertUnchanged(c, before);
    }

    public static long CheckExtension(this Type1Rig rig, int c, ulong ext) => rig.User.Ioctl(c, VfioIoctl.CheckExtension, ext);

    /// <summary>GET_INFO into <paramref name="buf"/> with <paramref name="argsz"/> written into its first word.</summary>
    public static long GetInfo(this Type1Rig rig, int c, byte[] buf, uint argsz)
    {
        MemoryMarshal.Write(buf, in argsz);
        return rig.User.Ioctl(c, VfioIoctl.IommuGetInfo, buf);
    }

    /// <summary>GET_INFO with a buffer big enough for every capability; returns the buffer.</summary>
    public static byte[] GetFullInfo(this Type1Rig rig, int c)
    {
        byte[] head = new byte[24];
        Assert.That(rig.GetInfo(c, head, 24), Is.Zero, ErrorReason.Current);
        uint need = MemoryMarshal.Read<uint>(head);
        byte[] buf = new byte[need];
        Assert.That(rig.GetInfo(c, buf, need), Is.Zero, ErrorReason.Current);
        return buf;
    }

    /// <summary>Walks the capability chain of a GET_INFO reply, asserting every header lies inside <paramref name="argsz"/>.</summary>
    public static List<InfoCap> Caps(byte[] buf, uint argsz)
    {
        var caps = new List<InfoCap>();
        VfioIommuType1Info info = MemoryMarshal.Read<VfioIommuType1Info>(buf);
        int off = (int)info.CapOffset;
        while (off != 0)
        {
            Assert.That(off, Is.GreaterThanOrEqualTo(24).And.LessThanOrEqualTo((int)argsz - 8), "a capability header lies inside argsz");
            Assert.That(caps, Has.Count.LessThan(16), "the chain ends");
            VfioInfoCapHeader h = MemoryMarshal.Read<VfioInfoCapHeader>(buf.AsSpan(off));
            caps.Add(new InfoCap(h.Id, h.Version, off));
            Assert.That(h.Next == 0 || h.Next > off, Is.True, "the chain moves forward");
            off = (int)h.Next;
        }

        return caps;
    }

    /// <summary>The IOVA ranges of the IOVA_RANGE capability (inclusive ends).</summary>
    public static List<(ulong Start, ulong End)> IovaRanges(byte[] buf)
    {
        InfoCap cap = Caps(buf, (uint)buf.Length).Single(x => x.Id == VfioCapId.Type1IovaRange);
        uint n = MemoryMarshal.Read<uint>(buf.AsSpan(cap.Offset + 8));
        var list = new List<(ulong, ulong)>();
        for (int i = 0; i < n; i++)
        {
            int o = cap.Offset + 16 + (i * 16);
            list.Add((MemoryMarshal.Read<ulong>(buf.AsSpan(o)), MemoryMarshal.Read<ulong>(buf.AsSpan(o + 8))));
        }

        return list;
    }

    /// <summary>The avail field of the DMA_AVAIL capability.</summary>
    public static uint DmaAvailCap(byte[] buf)
    {
        InfoCap cap = Caps(buf, (uint)buf.Length).Single(x => x.Id == VfioCapId.Type1DmaAvail);
        return MemoryMarshal.Read<uint>(buf.AsSpan(cap.Offset + 8));
    }

    /// <summary>2 MiB or 1 GiB of hugetlb memory, populated.</summary>
    public static ulong HugeBuffer(this Type1Rig rig, ulong bytes, bool gig = false)
        => rig.Buffer(bytes, extra: MapFlags.MAP_POPULATE | MapFlags.MAP_HUGETLB | (gig ? MapFlags.MAP_HUGE_1GB : MapFlags.MAP_HUGE_2MB));

    /// <summary>The leaf level mapping <paramref name="iova"/> in the container's first domain (1 = 4K, 2 = 2M, 3 = 1G), 0 when unmapped.</summary>
    public static int LeafLevel(this Type1Rig rig, int c, ulong iova)
        => rig.Iommu(c).Domains[0].PageTable!.Walk(iova, out _, out _, out int level) ? level : 0;
}
