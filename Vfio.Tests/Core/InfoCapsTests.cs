// Tests Vfio.Core/Uapi/VfioInfoCaps.cs: the capability chain built kernel side and the
// INFO-with-caps copy-out protocol, driven through a small test char device whose ioctl
// answers a type1-GET_INFO-shaped request from a real process.

using System.Buffers.Binary;
using NUnit.Framework;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform;
using Vfio.Platform.Fs;
using Vfio.Platform.Mm;
using Vfio.Platform.Proc;

namespace Vfio.Tests.Core;

public sealed class InfoCapsTests
{
    private const int Fixed = 24;                 // sizeof(struct vfio_iommu_type1_info)
    private const int Full = Fixed + 32 + 16;     // + migration (32) + dma_avail (12, padded to 16)
    private const ulong Pgsizes = 0x4020_1000;
    private const ulong MaxDirty = 256UL << 20;
    private const uint Avail = 65535;

    [Test]
    public void WhenTheCapsFit_TheyFollowTheFixedStruct_WithUserRelativeNexts()
    {
        using var rig = new Rig();
        byte[] buf = Filled(Full + 16, Full);

        Assert.That(rig.GetInfo(buf), Is.Zero);

        byte[] expected = new byte[Full + 16];
        expected.AsSpan(Full).Fill(0xAA);
        Span<byte> e = expected;
        BinaryPrimitives.WriteUInt32LittleEndian(e[0..], Full);                 // argsz: as given
        BinaryPrimitives.WriteUInt32LittleEndian(e[4..], VfioType1Flags.InfoPgsizes | VfioType1Flags.InfoCaps);
        BinaryPrimitives.WriteUInt64LittleEndian(e[8..], Pgsizes);
        BinaryPrimitives.WriteUInt32LittleEndian(e[16..], Fixed);               // cap_offset
        BinaryPrimitives.WriteUInt16LittleEndian(e[24..], VfioCapId.Type1Migration);
        BinaryPrimitives.WriteUInt16LittleEndian(e[26..], 1);
        BinaryPrimitives.WriteUInt32LittleEndian(e[28..], 56);                  // next: from the buffer's start
        BinaryPrimitives.WriteUInt64LittleEndian(e[40..], 4096);                // pgsize_bitmap
        BinaryPrimitives.WriteUInt64LittleEndian(e[48..], MaxDirty);
        BinaryPrimitives.WriteUInt16LittleEndian(e[56..], VfioCapId.Type1DmaAvail);
        BinaryPrimitives.WriteUInt16LittleEndian(e[58..], 1);
        BinaryPrimitives.WriteUInt32LittleEndian(e[60..], 0);                   // end of chain
        BinaryPrimitives.WriteUInt32LittleEndian(e[64..], Avail);
        Assert.That(buf, Is.EqualTo(expected), "padding inside and after each cap is zero; nothing past the chain is touched");
    }

    [Test]
    public void WhenTheCapsDoNotFit_TheCallSucceeds_RaisingArgszWithCapOffsetZero()
    {
        using var rig = new Rig();
        byte[] buf = Filled(Full, Fixed);

        Assert.That(rig.GetInfo(buf), Is.Zero, "too small is not an error");

        byte[] expected = new byte[Full];
        expected.AsSpan(Fixed).Fill(0xAA);
        BinaryPrimitives.WriteUInt32LittleEndian(expected.AsSpan(0), Full);     // the size needed
        BinaryPrimitives.WriteUInt32LittleEndian(expected.AsSpan(4), VfioType1Flags.InfoPgsizes | VfioType1Flags.InfoCaps);
        BinaryPrimitives.WriteUInt64LittleEndian(expected.AsSpan(8), Pgsizes);
        Assert.That(buf, Is.EqualTo(expected), "cap_offset 0 and not one cap byte copied");
    }

    [Test]
    public void APreCapCaller_GetsOnlyItsSixteenBytes_WithTheNeededSizeInArgsz()
    {
        using var rig = new Rig();
        byte[] buf = Filled(Full, VfioIommuType1Info.MinSz);

        Assert.That(rig.GetInfo(buf), Is.Zero);
        Assert.That(BinaryPrimitives.ReadUInt32LittleEndian(buf), Is.EqualTo(Full));
        Assert.That(BinaryPrimitives.ReadUInt64LittleEndian(buf.AsSpan(8)), Is.EqualTo(Pgsizes));
        Assert.That(buf.AsSpan(VfioIommuType1Info.MinSz).ToArray(), Has.All.EqualTo(0xAA));
    }

    [Test]
    public void WithoutCaps_NoFlagIsSet_AndArgszIsLeftAlone()
    {
        using var rig = new Rig { CapCount = 0 };
        byte[] buf = Filled(Full, Fixed);

        Assert.That(rig.GetInfo(buf), Is.Zero);
        Assert.That(BinaryPrimitives.ReadUInt32LittleEndian(buf), Is.EqualTo(Fixed));
        Assert.That(BinaryPrimitives.ReadUInt32LittleEndian(buf.AsSpan(4)), Is.EqualTo(VfioType1Flags.InfoPgsizes));
        Assert.That(BinaryPrimitives.ReadUInt32LittleEndian(buf.AsSpan(16)), Is.Zero);
        Assert.That(buf.AsSpan(Fixed).ToArray(), Has.All.EqualTo(0xAA));
    }

    [Test]
    public void AnEmptyChain_AllocatesNothing_AndCopyOutIsANoOp()
    {
        var caps = new VfioInfoCaps();
        uint argsz = 4, capOffset = 7;
        long before = GC.GetAllocatedBytesForCurrentThread();
        int ret = caps.CopyOut(0, Fixed, ref argsz, ref capOffset);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.That(ret, Is.Zero);
        Assert.That(allocated, Is.Zero);
        Assert.That((argsz, capOffset), Is.EqualTo((4u, 7u)), "nothing to report: the fixed struct is untouched");
        Assert.That(caps.IsEmpty, Is.True);
    }

    [Test]
    public void ArgszBelowMinsz_IsEinval()
    {
        using var rig = new Rig();
        byte[] buf = Filled(Full, VfioIommuType1Info.MinSz - 1);
        byte[] before = [.. buf];

        Assert.That(rig.GetInfo(buf), Is.EqualTo(Errno.EINVAL.Negative()));
        Assert.That(buf, Is.EqualTo(before), "nothing written on failure");
    }

    [Test]
    public void Entries_AreRoundedUpToEightBytes_AndLinkedFromTheChainStartUntilShifted()
    {
        var caps = new VfioInfoCaps();
        Assert.That(caps.Add(12, 7, 1, out Span<byte> first), Is.Zero);
        first[8] = 0x11;
        Assert.That(caps.Add(20, 8, 2, out Span<byte> second), Is.Zero);
        second[19] = 0x22;
        var range = new VfioIommuType1InfoCapIovaRange { Header = new VfioInfoCapHeader { Id = VfioCapId.Type1IovaRange, Version = 1, Next = 999 }, NrIovas = 2 };
        VfioIovaRange[] ranges = [new() { Start = 0, End = 0xfedf_ffff }, new() { Start = 0xfef0_0000, End = ulong.MaxValue }];
        Assert.That(caps.Add(range, (ReadOnlySpan<VfioIovaRange>)ranges), Is.Zero);

        Assert.That(caps.Size, Is.EqualTo(16 + 24 + 48));
        byte[] chain = caps.Bytes.ToArray();
        Assert.Multiple(() =>
        {
            Assert.That(Next(chain, 0), Is.EqualTo(16), "relative to the chain before the shift");
            Assert.That(Next(chain, 16), Is.EqualTo(40));
            Assert.That(Next(chain, 40), Is.Zero, "the copied header's next is not trusted");
            Assert.That(chain[8], Is.EqualTo(0x11));
            Assert.That(chain.AsSpan(12, 4).ToArray(), Has.All.Zero, "padding is zeroed");
            Assert.That(chain[35], Is.EqualTo(0x22));
            Assert.That(BinaryPrimitives.ReadUInt16LittleEndian(chain.AsSpan(40)), Is.EqualTo(VfioCapId.Type1IovaRange));
            Assert.That(BinaryPrimitives.ReadUInt32LittleEndian(chain.AsSpan(48)), Is.EqualTo(2), "nr_iovas");
            Assert.That(BinaryPrimitives.ReadUInt64LittleEndian(chain.AsSpan(64)), Is.EqualTo(0xfedf_ffffUL), "ranges follow the fixed part");
            Assert.That(BinaryPrimitives.ReadUInt64LittleEndian(chain.AsSpan(80)), Is.EqualTo(ulong.MaxValue));
        });

        caps.Shift(32);
        chain = caps.Bytes.ToArray();
        Assert.That((Next(chain, 0), Next(chain, 16), Next(chain, 40)), Is.EqualTo((48u, 72u, 0u)));
    }

    [Test]
    public void OnLinux61_EntriesAreChainedAtTheirOwnSizes_WithoutPadding()
    {
        var caps = new VfioInfoCaps(KernelProfile.Linux6_1);
        Assert.That(caps.AlignsEntries, Is.False);
        Assert.That(caps.Add(12, 7, 1, out Span<byte> first), Is.Zero);
        first[8] = 0x11;
        Assert.That(caps.Add(20, 8, 2, out Span<byte> second), Is.Zero);
        second[19] = 0x22;
        var range = new VfioIommuType1InfoCapIovaRange { Header = new VfioInfoCapHeader { Id = VfioCapId.Type1IovaRange, Version = 1 }, NrIovas = 1 };
        VfioIovaRange[] ranges = [new() { Start = 0x1000, End = 0xfedf_ffff }];
        Assert.That(caps.Add(range, (ReadOnlySpan<VfioIovaRange>)ranges), Is.Zero);

        Assert.That(caps.Size, Is.EqualTo(12 + 20 + 32), "no entry is rounded up");
        byte[] chain = caps.Bytes.ToArray();
        Assert.Multiple(() =>
        {
            Assert.That((Next(chain, 0), Next(chain, 12), Next(chain, 32)), Is.EqualTo((12u, 32u, 0u)), "each entry starts where the last ended");
            Assert.That(chain[8], Is.EqualTo(0x11));
            Assert.That(chain[31], Is.EqualTo(0x22));
            Assert.That(BinaryPrimitives.ReadUInt64LittleEndian(chain.AsSpan(48)), Is.EqualTo(0x1000UL), "the range follows its 16-byte head");
        });

        caps.Shift(20);   // a v6.1 vfio_device_info is 20 bytes: an unaligned start is normal there
        chain = caps.Bytes.ToArray();
        Assert.That((Next(chain, 0), Next(chain, 12)), Is.EqualTo((32u, 52u)));
    }

    [Test]
    public void OnLinux612_AndByDefault_EntriesAreRoundedUpToEight()
    {
        Assert.That(new VfioInfoCaps(KernelProfile.Linux6_12).AlignsEntries, Is.True);
        Assert.That(default(VfioInfoCaps).AlignsEntries, Is.True);
        var caps = new VfioInfoCaps(KernelProfile.Linux6_12);
        Assert.That(caps.Add(12, 7, 1, out _), Is.Zero);
        Assert.That(caps.Add(12, 8, 1, out _), Is.Zero);
        Assert.That(caps.Size, Is.EqualTo(32));
        Assert.That(Next(caps.Bytes.ToArray(), 0), Is.EqualTo(16u));
    }

    [Test]
    public void AFailedCapsCopy_IsEfault()
    {
        using var rig = new Rig();
        SimProcess p = rig.Process;
        ulong two = (ulong)p.Mmap(0, 2 * PhysMem.PageSize, Prot.PROT_READ | Prot.PROT_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS);
        Assert.That(p.Munmap(two + PhysMem.PageSize, PhysMem.PageSize), Is.Zero);
        ulong arg = two + PhysMem.PageSize - Fixed;   // the fixed struct fits, the caps run off the mapping
        byte[] head = new byte[Fixed];
        BinaryPrimitives.WriteUInt32LittleEndian(head, Full);
        Assert.That(p.Mm.WriteUser(arg, head), Is.Zero);

        Assert.That(p.Ioctl(rig.Fd, VfioIoctl.IommuGetInfo, arg), Is.EqualTo(Errno.EFAULT.Negative()));
    }

    [Test]
    public void AnAllocationFailure_IsEnomem()
    {
        using var rig = new Rig();
        byte[] buf = Filled(Full, Full);
        rig.Machine.Kernel.Faults.FailNth(2, VfioInfoCaps.AllocFaultSite);

        byte[] before = [.. buf];

        Assert.That(rig.GetInfo(buf), Is.EqualTo(Errno.ENOMEM.Negative()), "the second vfio_info_cap_add fails");
        Assert.That(rig.Machine.Kernel.Faults.Consumed, Is.True);
        Assert.That(buf, Is.EqualTo(before), "nothing written on failure");
    }

    [Test]
    public void CG_25_EveryArgszFromPreCapToFull_WritesNothingPastArgsz_AndAnyChainInsideIsWellFormed()
    {
        using var rig = new Rig();
        const int slack = 32;

        // The pre-cap ABI (argsz = offsetof(cap_offset)), then every size up to the full one.
        for (int argsz = VfioIommuType1Info.MinSz; argsz <= Full + slack; argsz++)
        {
            byte[] buf = Filled(Full + slack, argsz);
            Assert.That(rig.GetInfo(buf), Is.Zero, $"argsz {argsz}");
            Assert.That(buf.AsSpan(argsz).ToArray(), Has.All.EqualTo(0xAA), $"argsz {argsz}: a byte past argsz was written");

            uint flags = BinaryPrimitives.ReadUInt32LittleEndian(buf.AsSpan(4));
            Assert.That(flags & VfioType1Flags.InfoCaps, Is.Not.Zero, $"argsz {argsz}: CAPS is always reported");
            uint reported = BinaryPrimitives.ReadUInt32LittleEndian(buf);
            Assert.That(reported, Is.EqualTo(Math.Max(argsz, Full)), $"argsz {argsz}: argsz is raised only when too small");

            uint capOffset = argsz >= Fixed ? BinaryPrimitives.ReadUInt32LittleEndian(buf.AsSpan(16)) : 0;
            Assert.That(capOffset, Is.EqualTo(argsz >= Full ? Fixed : 0), $"argsz {argsz}: cap_offset");
            if (capOffset != 0)
            {
                AssertChainWellFormed(buf.AsSpan(0, argsz), capOffset, $"argsz {argsz}");
            }
        }
    }

    // Walks a chain as a user would: every header inside the buffer, past the fixed struct,
    // 8-byte aligned, strictly forward (so it ends), ending with next = 0.
    private static void AssertChainWellFormed(ReadOnlySpan<byte> buf, uint capOffset, string what)
    {
        var ids = new List<ushort>();
        uint at = capOffset;
        while (true)
        {
            Assert.That(at, Is.GreaterThanOrEqualTo((uint)Fixed), $"{what}: cap at {at} overlaps the fixed struct");
            Assert.That(at % 8, Is.Zero, $"{what}: cap at {at} is not 8-byte aligned");
            Assert.That(at + 8, Is.LessThanOrEqualTo((uint)buf.Length), $"{what}: cap header at {at} runs past argsz");
            ids.Add(BinaryPrimitives.ReadUInt16LittleEndian(buf[(int)at..]));
            uint next = BinaryPrimitives.ReadUInt32LittleEndian(buf[((int)at + 4)..]);
            if (next == 0)
            {
                break;
            }

            Assert.That(next, Is.GreaterThan(at), $"{what}: next {next} does not move forward");
            at = next;
        }

        Assert.That(ids, Is.EqualTo(new[] { VfioCapId.Type1Migration, VfioCapId.Type1DmaAvail }), what);
    }

    private static uint Next(byte[] chain, int at) => BinaryPrimitives.ReadUInt32LittleEndian(chain.AsSpan(at + 4));

    // A buffer whose first argsz bytes are a zeroed request carrying argsz, the rest 0xAA.
    private static byte[] Filled(int length, int argsz)
    {
        byte[] buf = new byte[length];
        buf.AsSpan(argsz).Fill(0xAA);
        BinaryPrimitives.WriteUInt32LittleEndian(buf, (uint)argsz);
        return buf;
    }

    /// <summary>A machine, a process, and an open test device answering VFIO_IOMMU_GET_INFO.</summary>
    private sealed class Rig : IDisposable
    {
        private const int Minor = 231;
        private const string Node = "vfio-test-info";
        private readonly InfoDevice _dev = new();

        public Rig()
        {
            Machine = Machines.Create();
            Assert.That(Machine.CharDevices.RegisterMisc(Minor, Node, _dev), Is.Zero);
            Process = Machine.CreateProcess("caps");
            Fd = Process.Open("/dev/" + Node);
            Assert.That(Fd, Is.GreaterThanOrEqualTo(0));
        }

        public SimMachine Machine { get; }

        public SimProcess Process { get; }

        public int Fd { get; }

        public int CapCount
        {
            get => _dev.CapCount;
            init => _dev.CapCount = value;
        }

        public long GetInfo(Span<byte> buf) => Process.Ioctl(Fd, VfioIoctl.IommuGetInfo, buf);

        public void Dispose()
        {
            Process.Close(Fd);
            Machine.CharDevices.DeregisterMisc(Minor, Node);
        }
    }

    // The shape of type1's GET_INFO handler: minsz copy-in, the fixed part, the chain, then
    // min(argsz, sizeof) bytes of the fixed struct copied back.
    private sealed class InfoDevice : FileOperations
    {
        public int CapCount { get; set; } = 2;

        public override long Ioctl(SimFile file, uint cmd, ulong arg)
        {
            if (cmd != VfioIoctl.IommuGetInfo)
            {
                return Errno.ENOTTY.Negative();
            }

            int ret = VfioArg.CopyIn(arg, VfioIommuType1Info.MinSz, out VfioIommuType1Info info, "VFIO_IOMMU_GET_INFO");
            if (ret != 0)
            {
                return ret;
            }

            int copyBack = (int)Math.Min(info.Argsz, (uint)Fixed);
            info.Flags = VfioType1Flags.InfoPgsizes;
            info.IovaPgsizes = Pgsizes;

            var caps = new VfioInfoCaps();
            if (CapCount > 0)
            {
                var mig = new VfioIommuType1InfoCapMigration
                {
                    Header = new VfioInfoCapHeader { Id = VfioCapId.Type1Migration, Version = 1 },
                    PgsizeBitmap = 4096,
                    MaxDirtyBitmapSize = MaxDirty,
                };
                ret = caps.Add(mig);
            }

            if (ret == 0 && CapCount > 1)
            {
                var avail = new VfioIommuType1InfoDmaAvail { Header = new VfioInfoCapHeader { Id = VfioCapId.Type1DmaAvail, Version = 1 }, Avail = Avail };
                ret = caps.Add(avail);
            }

            if (ret != 0)
            {
                return ret;
            }

            if (!caps.IsEmpty)
            {
                info.Flags |= VfioType1Flags.InfoCaps;
            }

            ret = caps.CopyOut(arg, Fixed, ref info.Argsz, ref info.CapOffset);
            return ret != 0 ? ret : VfioArg.CopyOut(arg, info, copyBack);
        }
    }
}
