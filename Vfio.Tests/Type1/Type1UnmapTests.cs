// Conformance of VFIO_IOMMU_UNMAP_DMA in the type1 backend against the peer cases
// (docs/conformance.md) T1-04, T1-13, T1-14, T1-16, T1-17, T1-22, BI-05 and BI-16:
// UNMAP_ALL, empty ranges, v1 whole-mapping removal versus v2 bisect rejection, bad argsz
// and flag combinations, and strict decoding of the struct layout.

using System.Runtime.InteropServices;
using NUnit.Framework;
using Vfio.Core.Uapi;
using Vfio.Kernel;

namespace Vfio.Tests.Type1;

[TestFixture]
public sealed class Type1UnmapTests
{
    private const ulong Page = Type1Rig.Page;
    private const ulong MiB = 1UL << 20;

    [Test]
    public void T1_04_UnmapAllWithZeroIovaAndSize_RemovesTheSinglePage([Values(VfioExtension.Type1, VfioExtension.Type1v2)] uint type)
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            long pinned0 = rig.Memory.PinnedPages;
            (int c, _, _) = rig.OpenEdu(type);
            ulong va = rig.Buffer(Page);
            Assert.That(rig.Map(c, va, 0x100000, Page), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Unmap(c, 0, 0, out ulong unmapped, VfioType1Flags.UnmapAll), Is.Zero, ErrorReason.Current);
            Assert.That(unmapped, Is.EqualTo(Page));
            Assert.That(rig.Iommu(c).Mappings, Is.Empty);
            Assert.That(rig.Memory.PinnedPages, Is.EqualTo(pinned0));
            Assert.That(rig.User.Mm.LockedVm, Is.Zero);
            rig.AssertInvariants(c);
        });
    }

    [Test]
    public void T1_16_UnmapAllWithNonZeroIovaOrSize_IsEinval_AndWithZerosRemovesEverything([Values(VfioExtension.Type1, VfioExtension.Type1v2)] uint type)
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _, _) = rig.OpenEdu(type);
            ulong va = rig.Buffer(16 * Page);
            Assert.That(rig.Map(c, va, 0x100000, 4 * Page), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Map(c, va + (4 * Page), 0x200000, 8 * Page), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Map(c, va + (12 * Page), 1UL << 40, 4 * Page), Is.Zero, ErrorReason.Current);
            rig.AssertRejected(c, Errno.EINVAL, () => rig.Unmap(c, 0x100000, 0, out _, VfioType1Flags.UnmapAll));
            rig.AssertRejected(c, Errno.EINVAL, () => rig.Unmap(c, 0, 4 * Page, out _, VfioType1Flags.UnmapAll));
            rig.AssertRejected(c, Errno.EINVAL, () => rig.Unmap(c, 0x100000, 4 * Page, out _, VfioType1Flags.UnmapAll));
            Assert.That(rig.Unmap(c, 0, 0, out ulong unmapped, VfioType1Flags.UnmapAll), Is.Zero, ErrorReason.Current);
            Assert.That(unmapped, Is.EqualTo(16 * Page));
            Assert.That(rig.Iommu(c).Mappings, Is.Empty);
            Assert.That(rig.Iommu(c).DmaAvail, Is.EqualTo(rig.Iommu(c).EntryLimit));
            Assert.That(rig.User.Mm.LockedVm, Is.Zero);
            rig.AssertInvariants(c);
        });
    }

    [Test]
    public void T1_13_UnmapOfARangeWithNoMappings_SucceedsWithSizeZero([Values(VfioExtension.Type1, VfioExtension.Type1v2)] uint type)
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _, _) = rig.OpenEdu(type);
            Assert.That(rig.Unmap(c, 0x100000, 4 * Page, out ulong unmapped), Is.Zero, ErrorReason.Current);
            Assert.That(unmapped, Is.Zero);
            ulong va = rig.Buffer(Page);
            Assert.That(rig.Map(c, va, 0x100000, Page), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Unmap(c, 0x100000, Page, out unmapped), Is.Zero, ErrorReason.Current);
            Assert.That(unmapped, Is.EqualTo(Page));
            Type1State before = rig.Snapshot(c);
            Assert.That(rig.Unmap(c, 0x100000, Page, out unmapped), Is.Zero, "re-unmap: " + ErrorReason.Current);
            Assert.That(unmapped, Is.Zero);
            rig.AssertUnchanged(c, before);
        });
    }

    [Test]
    public void T1_14_V1_UnmapIn4KPiecesBackwards_OnlyThePieceAtTheStartRemovesTheWhole2MiB([Values] bool hugetlb)
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            long pinned0 = rig.Memory.PinnedPages;
            (int c, _, _) = rig.OpenEdu(VfioExtension.Type1);
            const ulong size = 2 * MiB, iova = 0x40000000;
            ulong va = hugetlb ? rig.HugeBuffer(size) : rig.Buffer(size);
            Assert.That(rig.Map(c, va, iova, size), Is.Zero, ErrorReason.Current);
            ulong total = 0;
            for (ulong off = size - Page; ; off -= Page)
            {
                Assert.That(rig.Unmap(c, iova + off, Page, out ulong unmapped), Is.Zero, $"piece +0x{off:x}: {ErrorReason.Current}");
                total += unmapped;
                if (off != 0)
                {
                    Assert.That(unmapped, Is.Zero, $"piece +0x{off:x} starts inside the mapping");
                    Assert.That(rig.Iommu(c).Mappings.Single().Size, Is.EqualTo(size), "the mapping is untouched");
                }
                else
                {
                    Assert.That(unmapped, Is.EqualTo(size), "the piece covering the first IOVA removes the whole mapping");
                    break;
                }
            }

            Assert.That(total, Is.EqualTo(size));
            Assert.That(rig.Iommu(c).Mappings, Is.Empty);
            Assert.That(rig.Iommu(c).Domains[0].IovaToPhys(iova + size - Page), Is.Zero);
            Assert.That(rig.Memory.PinnedPages, Is.EqualTo(pinned0));
            Assert.That(rig.User.Mm.LockedVm, Is.Zero);
            rig.AssertInvariants(c);
        });
    }

    [Test]
    public void T1_14_V1_UnmapStartingInsideAMapping_ReturnsZero_AndOneCoveringItsStart_RemovesItBeyondTheRange()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _, _) = rig.OpenEdu(VfioExtension.Type1);
            ulong va = rig.Buffer(16 * Page);
            Assert.That(rig.Map(c, va, 0x100000, 8 * Page), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Map(c, va + (8 * Page), 0x108000, 8 * Page), Is.Zero, ErrorReason.Current);
            Type1State before = rig.Snapshot(c);
            Assert.That(rig.Unmap(c, 0x101000, 16 * Page, out ulong unmapped), Is.Zero, ErrorReason.Current);
            Assert.That(unmapped, Is.Zero, "v1 stops at a mapping that starts before the iova");
            rig.AssertUnchanged(c, before);
            Assert.That(rig.Unmap(c, 0x100000, 9 * Page, out unmapped), Is.Zero, ErrorReason.Current);
            Assert.That(unmapped, Is.EqualTo(16 * Page), "every mapping starting inside the range goes entirely");
            Assert.That(rig.Iommu(c).Mappings, Is.Empty);
            rig.AssertInvariants(c);
        });
    }

    [Test]
    public void T1_14_V2_UnmapThatBisectsAMapping_IsEinval_AndNothingIsUnmapped()
    {
        // The iommufd-compat v2 answer is ENOENT; type1 v2 says EINVAL.
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _, _) = rig.OpenEdu(VfioExtension.Type1v2);
            const ulong size = 2 * MiB, iova = 0x40000000;
            ulong va = rig.HugeBuffer(size);
            Assert.That(rig.Map(c, va, iova, size), Is.Zero, ErrorReason.Current);
            for (ulong off = size - Page; off >= Page && off < size; off -= 64 * Page)
            {
                rig.AssertRejected(c, Errno.EINVAL, () => rig.Unmap(c, iova + off, Page, out _), $"piece +0x{off:x}:");
            }

            rig.AssertRejected(c, Errno.EINVAL, () => rig.Unmap(c, iova, Page, out _), "first page:");
            rig.AssertRejected(c, Errno.EINVAL, () => rig.Unmap(c, iova - Page, 2 * Page, out _), "across the start:");
            rig.AssertRejected(c, Errno.EINVAL, () => rig.Unmap(c, iova + size - Page, 2 * Page, out _), "across the end:");
            Assert.That(rig.Unmap(c, iova - Page, size + (2 * Page), out ulong unmapped), Is.Zero, ErrorReason.Current);
            Assert.That(unmapped, Is.EqualTo(size), "a range covering the whole mapping removes it");
        });
    }

    [Test]
    public void T1_05_UnmapWhoseRangeWraps_IsEinvalOnBothProfiles([Values(VfioExtension.Type1, VfioExtension.Type1v2)] uint type, [Values("6.12", "6.1")] string kernel)
    {
        var rig = new Type1Rig(profile: kernel == "6.1" ? KernelProfile.Linux6_1 : KernelProfile.Linux6_12);
        rig.Run(() =>
        {
            (int c, _, _) = rig.OpenEdu(type);
            ulong va = rig.Buffer(Page);
            Assert.That(rig.Map(c, va, 0x100000, Page), Is.Zero, ErrorReason.Current);
            const Errno expected = Errno.EINVAL;     // 6.1 and 6.12.118 alike; EOVERFLOW came in v6.18
            rig.AssertRejected(c, expected, () => rig.Unmap(c, 0xFFFF_FFFF_FFFF_F000, 2 * Page, out _));
            rig.AssertRejected(c, expected, () => rig.Unmap(c, 0x100000, 0xFFFF_FFFF_FFF0_1000, out _));
        });
    }

    [Test]
    public void UnmapWithUnalignedIovaOrSize_OrSizeZero_IsEinval([Values(VfioExtension.Type1, VfioExtension.Type1v2)] uint type)
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _, _) = rig.OpenEdu(type);
            ulong va = rig.Buffer(4 * Page);
            Assert.That(rig.Map(c, va, 0x100000, 4 * Page), Is.Zero, ErrorReason.Current);
            rig.AssertRejected(c, Errno.EINVAL, () => rig.Unmap(c, 0x100800, 4 * Page, out _));
            rig.AssertRejected(c, Errno.EINVAL, () => rig.Unmap(c, 0x100000, (4 * Page) - 1, out _));
            rig.AssertRejected(c, Errno.EINVAL, () => rig.Unmap(c, 0x100000, 0, out _));
        });
    }

    [Test]
    public void T1_17_UnmapWithShortArgszUnknownFlagOrDirtyBitmapCombinedWithAllOrVaddr_IsEinval([Values(VfioExtension.Type1, VfioExtension.Type1v2)] uint type)
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _, _) = rig.OpenEdu(type);
            ulong va = rig.Buffer(Page);
            Assert.That(rig.Map(c, va, 0x100000, Page), Is.Zero, ErrorReason.Current);
            rig.AssertRejected(c, Errno.EINVAL, () => rig.Unmap(c, 0x100000, Page, out _, argsz: 1));
            rig.AssertRejected(c, Errno.EINVAL, () => rig.Unmap(c, 0x100000, Page, out _, flags: 1u << 31));
            rig.AssertRejected(c, Errno.EINVAL, () => rig.Unmap(c, 0, 0, out _, flags: VfioType1Flags.UnmapGetDirtyBitmap | VfioType1Flags.UnmapAll, argsz: 48));
            rig.AssertRejected(c, Errno.EINVAL, () => rig.Unmap(c, 0x100000, Page, out _, flags: VfioType1Flags.UnmapGetDirtyBitmap | VfioType1Flags.UnmapVaddr, argsz: 48));
        });
    }

    [Test]
    public void BI_05_UnmapWithArgszOneBelowMinsz_IsEinval()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _, _) = rig.OpenEdu();
            ulong va = rig.Buffer(Page);
            Assert.That(rig.Map(c, va, 0x100000, Page), Is.Zero, ErrorReason.Current);
            rig.AssertRejected(c, Errno.EINVAL, () => rig.Unmap(c, 0x100000, Page, out _, argsz: VfioIommuType1DmaUnmap.MinSz - 1));
            Assert.That(rig.Unmap(c, 0x100000, Page, out ulong unmapped, argsz: VfioIommuType1DmaUnmap.MinSz), Is.Zero, ErrorReason.Current);
            Assert.That(unmapped, Is.EqualTo(Page));
        });
    }

    [Test]
    public void BI_16_UnmapIsDecodedStrictlyByLayout_AFuzzersExtraVaddrFieldBecomesIova_AndTrailingBytesAreIgnored()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _, _) = rig.OpenEdu();
            ulong va = rig.Buffer(16 * Page);
            Assert.That(rig.Map(c, va, 0x100000, 4 * Page), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Map(c, va + (4 * Page), 0x200000, 4 * Page), Is.Zero, ErrorReason.Current);

            // {argsz=32, flags, "vaddr", "iova", "size"}: the kernel reads iova from "vaddr" and size from "iova".
            byte[] buf = new byte[32];
            MemoryMarshal.Write(buf.AsSpan(0), 32u);
            MemoryMarshal.Write(buf.AsSpan(4), 0u);
            MemoryMarshal.Write(buf.AsSpan(8), 0x200000UL);
            MemoryMarshal.Write(buf.AsSpan(16), 4 * Page);
            MemoryMarshal.Write(buf.AsSpan(24), 0x100000UL);
            Assert.That(rig.User.Ioctl(c, VfioIoctl.IommuUnmapDma, buf), Is.Zero, ErrorReason.Current);
            Assert.That(MemoryMarshal.Read<ulong>(buf.AsSpan(16)), Is.EqualTo(4 * Page), "unmapped size written back into the layout's size field");
            Assert.That(MemoryMarshal.Read<ulong>(buf.AsSpan(24)), Is.EqualTo(0x100000UL), "the trailing bytes are not touched");
            Assert.That(rig.Iommu(c).Mappings.Select(m => m.Iova), Is.EqualTo(new[] { 0x100000UL }), "the mapping at the fuzzer's 'vaddr' went; the one at its 'iova' stays");
            rig.AssertInvariants(c);
        });
    }

    [Test]
    public void T1_22_MapAndUnmapPageChunksInCycles_ThenUnmapTheWholeRangeAtOnce([Values(VfioExtension.Type1, VfioExtension.Type1v2)] uint type)
    {
        // Type1 analogue of the iommufd FIXED_IOVA test.
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            long pinned0 = rig.Memory.PinnedPages;
            (int c, _, _) = rig.OpenEdu(type);
            const int chunks = 32;
            const ulong base_ = 0x1000000;
            ulong va = rig.Buffer(chunks * Page);
            for (int cycle = 0; cycle < 5; cycle++)
            {
                for (ulong i = 0; i < chunks; i++)
                {
                    Assert.That(rig.Map(c, va + (i * Page), base_ + (i * Page), Page), Is.Zero, ErrorReason.Current);
                }

                for (ulong i = 0; i < chunks; i++)
                {
                    Assert.That(rig.Unmap(c, base_ + (i * Page), Page, out ulong u), Is.Zero, ErrorReason.Current);
                    Assert.That(u, Is.EqualTo(Page));
                }

                Assert.That(rig.Iommu(c).Mappings, Is.Empty);
            }

            for (ulong i = 0; i < chunks; i++)
            {
                Assert.That(rig.Map(c, va + (i * Page), base_ + (i * Page), Page), Is.Zero, ErrorReason.Current);
            }

            Assert.That(rig.Unmap(c, base_, chunks * Page, out ulong all), Is.Zero, ErrorReason.Current);
            Assert.That(all, Is.EqualTo(chunks * Page));
            Assert.That(rig.Memory.PinnedPages, Is.EqualTo(pinned0));
            Assert.That(rig.User.Mm.LockedVm, Is.Zero);
            rig.AssertInvariants(c);
        });
    }
}
