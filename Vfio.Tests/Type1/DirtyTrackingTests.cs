// Dirty-page tracking of the type1 backend (VFIO_IOMMU_DIRTY_PAGES and UNMAP_DMA with
// GET_DIRTY_BITMAP): the DT-* peer cases (docs/conformance.md), vfio_iommu_type1_dirty_pages,
// and the bitmap checks of vfio_iommu_type1_unmap_dma (argsz room for struct vfio_bitmap,
// verify_bitmap_size, tracking on and bitmap.pgsize equal to the minimum page size).
//
// Not ported (no type1 analogue):
// DT-10 — iommufd HWPT dirty tracking with mock IOPTE dirtying and sub-page bitmaps; type1 has no HWPT and reports only at the minimum IOMMU page size.
// DT-11 — iommufd GET_DIRTY_BITMAP NO_CLEAR flag; type1's GET_BITMAP always clears (checked in DT_16).
// DT-13 — iommufd SET_DIRTY_TRACKING and the HW-info DIRTY_TRACKING capability; type1 has no per-domain dirty ops.
// DT-14 — VFIO_DEVICE_FEATURE DMA_LOGGING_* is device (vfio-pci variant driver) logging in vfio_main, not the type1 backend.
// DT-19 — libvfio-user "device without DMA support"; a type1 container always has a dma tree, START with no mappings just succeeds.

using NUnit.Framework;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using static Vfio.Tests.Type1.Type1Kit;

namespace Vfio.Tests.Type1;

[TestFixture]
public sealed class DirtyTrackingTests
{
    private const ulong A = 0x100000;

    [Test]
    public void MappingsTooLargeForABitmap_AreEinval_WhenTrackingStartsOrWhileItRuns()
    {
        // An emulated-only container maps without pinning, so a mapping of more than
        // DIRTY_BITMAP_PAGES_MAX (INT_MAX) pages costs nothing until dirty tracking needs a
        // bitmap for it (vfio_dma_bitmap_alloc, called by vfio_dma_do_map while tracking runs
        // and by DIRTY_PAGES START for every mapping).
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _, _, _) = rig.OpenEmulatedEdu();
            ulong huge = ((ulong)int.MaxValue + 1) * P;
            ulong va = rig.Buffer(P);
            Assert.That(rig.Map(c, va, A, huge), Is.Zero, ErrorReason.Current);
            Type1State before = rig.State(c);
            rig.AssertRejected(c, rig.DirtyPages(c, VfioType1Flags.DirtyStart), Errno.EINVAL, before);
            Assert.That(rig.Iommu(c).DirtyTracking, Is.False);

            Assert.That(rig.Unmap(c, A, huge, out _), Is.Zero, ErrorReason.Current);
            Assert.That(rig.DirtyPages(c, VfioType1Flags.DirtyStart), Is.Zero, ErrorReason.Current);
            before = rig.State(c);
            rig.AssertRejected(c, rig.Map(c, va, A, huge), Errno.EINVAL, before);
            Assert.That(rig.Map(c, va, A, P), Is.Zero, "a trackable mapping still maps: " + ErrorReason.Current);
            rig.AssertInvariants(c);
        });
    }

    [Test]
    public void DT_01_V1ContainerIsEaccesAndFlagsMustBeExactlyOneKnownFlag()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _, _) = rig.OpenEdu(VfioExtension.Type1);
            ulong va = rig.Buffer(4 * P);
            Assert.That(rig.Map(c, va, A, 4 * P), Is.Zero, ErrorReason.Current);
            Type1State before = rig.State(c);
            rig.AssertRejected(c, rig.DirtyPages(c, VfioType1Flags.DirtyStart), Errno.EACCES, before);
            Assert.That(ErrorReason.Current, Does.Contain("TYPE1v2"));
        });

        var rig2 = new Type1Rig();
        rig2.Run(() =>
        {
            (int c, _, _) = rig2.OpenEdu();
            ulong va = rig2.Buffer(4 * P);
            Assert.That(rig2.Map(c, va, A, 4 * P), Is.Zero, ErrorReason.Current);
            Type1State before = rig2.State(c);
            rig2.AssertRejected(c, rig2.DirtyPages(c, 0), Errno.EINVAL, before);
            rig2.AssertRejected(c, rig2.DirtyPages(c, VfioType1Flags.DirtyStart | VfioType1Flags.DirtyStop), Errno.EINVAL, before);
            rig2.AssertRejected(c, rig2.DirtyPages(c, VfioType1Flags.DirtyStart | VfioType1Flags.DirtyGetBitmap), Errno.EINVAL, before);
            rig2.AssertRejected(c, rig2.DirtyPages(c, 1u << 3), Errno.EINVAL, before);
            rig2.AssertRejected(c, rig2.DirtyPages(c, VfioType1Flags.DirtyStart | (1u << 5)), Errno.EINVAL, before);
            rig2.AssertRejected(c, rig2.DirtyPages(c, VfioType1Flags.DirtyStart, argsz: 7), Errno.EINVAL, before);
        });
    }

    [Test]
    public void DT_02_StartIsIdempotentAndStopFreesTheBitmaps()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _, _) = rig.OpenEdu();
            ulong va = rig.Buffer(8 * P);
            ulong bm = rig.Buffer(P);
            Assert.That(rig.Map(c, va, A, 8 * P), Is.Zero, ErrorReason.Current);
            Assert.That(rig.DirtyPages(c, VfioType1Flags.DirtyStop), Is.Zero, "STOP before START is a no-op");
            Assert.That(rig.DirtyPages(c, VfioType1Flags.DirtyStart), Is.Zero, ErrorReason.Current);
            Assert.That(rig.DirtyPages(c, VfioType1Flags.DirtyStart), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Iommu(c).DirtyTracking, Is.True);
            Assert.That(rig.Dirty(c, A, 8 * P, bm), Is.EqualTo(new[] { 0xffUL }));
            rig.AssertInvariants(c);

            Assert.That(rig.DirtyPages(c, VfioType1Flags.DirtyStop), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Iommu(c).DirtyTracking, Is.False);
            Assert.That(rig.GetBitmap(c, A, 8 * P, P, bm, 8), Is.EqualTo(Errno.EINVAL.Negative()), "GET_BITMAP after STOP");
            Assert.That(ErrorReason.Current, Does.Contain("tracking is off"));
            Assert.That(rig.DirtyPages(c, VfioType1Flags.DirtyStop), Is.Zero, "STOP twice");
            rig.AssertInvariants(c);

            // A restart tracks again, including mappings made while it was off.
            ulong va2 = rig.Buffer(4 * P);
            Assert.That(rig.Map(c, va2, A + (8 * P), 4 * P), Is.Zero, ErrorReason.Current);
            Assert.That(rig.DirtyPages(c, VfioType1Flags.DirtyStart), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Dirty(c, A, 12 * P, bm), Is.EqualTo(new[] { 0xfffUL }));
            rig.AssertInvariants(c);
        });
    }

    [Test]
    public void DT_04_GetBitmapArgumentChecks()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _, _) = rig.OpenEdu();
            ulong va = rig.Buffer(128 * P);
            ulong bm = rig.Buffer(P);
            Assert.That(rig.Map(c, va, A, 128 * P), Is.Zero, ErrorReason.Current);
            Type1State off = rig.State(c);
            rig.AssertRejected(c, rig.GetBitmap(c, A, 128 * P, P, bm, 16), Errno.EINVAL, off);
            Assert.That(ErrorReason.Current, Does.Contain("tracking is off"));

            Assert.That(rig.DirtyPages(c, VfioType1Flags.DirtyStart), Is.Zero, ErrorReason.Current);
            Type1State before = rig.State(c);
            rig.AssertRejected(c, rig.GetBitmap(c, A, 128 * P, 2 * P, bm, 16), Errno.EINVAL, before);
            rig.AssertRejected(c, rig.GetBitmap(c, A, 128 * P, P / 2, bm, 64), Errno.EINVAL, before);
            rig.AssertRejected(c, rig.GetBitmap(c, A + 0x800, 64 * P, P, bm, 16), Errno.EINVAL, before);
            rig.AssertRejected(c, rig.GetBitmap(c, A, (64 * P) + 0x800, P, bm, 16), Errno.EINVAL, before);
            rig.AssertRejected(c, rig.GetBitmap(c, A, 0, P, bm, 16), Errno.EINVAL, before);
            rig.AssertRejected(c, rig.GetBitmap(c, ulong.MaxValue - P + 1, 2 * P, P, bm, 16), Errno.EINVAL, before);
            rig.AssertRejected(c, rig.GetBitmap(c, ulong.MaxValue - P + 1, P, P, bm, 16), Errno.EINVAL, before);   // ends exactly at 2^64: iova + size wraps to 0
            rig.AssertRejected(c, rig.GetBitmap(c, A, 128 * P, P, bm, 8), Errno.EINVAL, before);
            Assert.That(ErrorReason.Current, Does.Contain("too small"));
            rig.AssertRejected(c, rig.GetBitmap(c, A, 128 * P, P, bm, 0), Errno.EINVAL, before);
            rig.AssertRejected(c, rig.GetBitmap(c, A, 128 * P, P, bm, (256UL << 20) + 8), Errno.EINVAL, before);
            rig.AssertRejected(c, rig.GetBitmap(c, A, 128 * P, P, bm, 16, argsz: 8 + 39), Errno.EINVAL, before);

            Assert.That(rig.Dirty(c, A, 128 * P, bm), Is.EqualTo(new[] { ulong.MaxValue, ulong.MaxValue }), "the valid call after all the rejected ones");
        });
    }

    [Test]
    public void DT_05_RangeMayNotBisectAMappingAndLaterMappingsLandAtTheirBitOffsets()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _, _, _) = rig.OpenEmulatedEdu();
            ulong va = rig.Buffer(8 * P);
            ulong bm = rig.Buffer(P);
            Assert.That(rig.Map(c, va, A, 4 * P), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Map(c, va + (4 * P), A + (4 * P), 4 * P), Is.Zero, ErrorReason.Current);
            Assert.That(rig.DirtyPages(c, VfioType1Flags.DirtyStart), Is.Zero, ErrorReason.Current);
            rig.DeviceWrite(A + P, 1);
            rig.DeviceWrite(A + (6 * P), 1);
            Type1State before = rig.State(c);
            rig.AssertRejected(c, rig.GetBitmap(c, A + P, 7 * P, P, bm, 8), Errno.EINVAL, before);
            Assert.That(ErrorReason.Current, Does.Contain("starts inside"));
            rig.AssertRejected(c, rig.GetBitmap(c, A, 7 * P, P, bm, 8), Errno.EINVAL, before);
            Assert.That(ErrorReason.Current, Does.Contain("ends inside"));

            Assert.That(rig.Dirty(c, A, 8 * P, bm), Is.EqualTo(new[] { 0b0100_0010UL }), "M2's page 2 is bit 6");
            Assert.That(rig.Dirty(c, A, 8 * P, bm), Is.EqualTo(new[] { 0UL }), "the report cleared the bits");
        });
    }

    [Test]
    public void DT_05_MappingAtANonWordOffsetIsShiftedAndMergedWithTheSharedWord()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _, _, _) = rig.OpenEmulatedEdu();
            ulong va = rig.Buffer(76 * P);
            ulong bm = rig.Buffer(P);
            Assert.That(rig.Map(c, va, A, 70 * P), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Map(c, va + (70 * P), A + (70 * P), 6 * P), Is.Zero, ErrorReason.Current);
            Assert.That(rig.DirtyPages(c, VfioType1Flags.DirtyStart), Is.Zero, ErrorReason.Current);
            rig.DeviceWrite(A, 1);
            rig.DeviceWrite(A + (66 * P), 1);
            rig.DeviceWrite(A + (72 * P), 1);
            rig.DeviceWrite(A + (75 * P), 1);
            Assert.That(rig.Dirty(c, A, 76 * P, bm), Is.EqualTo(new[] { 1UL, (1UL << 2) | (1UL << 8) | (1UL << 11) }));

            // Only M2, starting at bit 0 of the user bitmap.
            rig.DeviceWrite(A + (71 * P), 1);
            Assert.That(rig.Dirty(c, A + (70 * P), 6 * P, bm), Is.EqualTo(new[] { 0b10UL }));
        });
    }

    [Test]
    public void DT_07_UnmapWithDirtyBitmap()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _, _) = rig.OpenEdu();
            ulong va = rig.Buffer(8 * P);
            ulong bm = rig.Buffer(P);
            Assert.That(rig.Map(c, va, A, 8 * P), Is.Zero, ErrorReason.Current);
            Type1State off = rig.State(c);
            rig.AssertRejected(c, rig.UnmapWithBitmap(c, A, 8 * P, P, bm, 8, out ulong un), Errno.EINVAL, off);
            Assert.That(ErrorReason.Current, Does.Contain("tracking is off"));

            Assert.That(rig.DirtyPages(c, VfioType1Flags.DirtyStart), Is.Zero, ErrorReason.Current);
            Type1State before = rig.State(c);
            rig.AssertRejected(c, rig.UnmapWithBitmap(c, A, 8 * P, P, bm, 8, out un, argsz: 47), Errno.EINVAL, before);
            rig.AssertRejected(c, rig.UnmapWithBitmap(c, A, 8 * P, P, bm, ulong.MaxValue - 48 + 8, out un), Errno.EINVAL, before);
            rig.AssertRejected(c, rig.UnmapWithBitmap(c, A, 8 * P, 2 * P, bm, 8, out un), Errno.EINVAL, before);
            rig.AssertRejected(c, rig.Unmap(c, 0, 0, out un, VfioType1Flags.UnmapGetDirtyBitmap | VfioType1Flags.UnmapAll, argsz: 48), Errno.EINVAL, before);
            rig.AssertRejected(c, rig.Unmap(c, A, 8 * P, out un, VfioType1Flags.UnmapGetDirtyBitmap | VfioType1Flags.UnmapVaddr, argsz: 48), Errno.EINVAL, before);

            Assert.That(rig.User.Mm.WriteUser(bm, new byte[8]), Is.Zero);
            Assert.That(rig.UnmapWithBitmap(c, A, 8 * P, P, bm, 8, out un), Is.Zero, ErrorReason.Current);
            Assert.That(un, Is.EqualTo(8 * P));
            Assert.That(rig.ReadWords(bm, 1), Is.EqualTo(new[] { 0xffUL }), "an IOMMU-backed group that never pinned dirties everything");
            Assert.That(rig.Iommu(c).Mappings, Is.Empty);
            Assert.That(rig.User.Mm.LockedVm, Is.Zero);
            rig.AssertInvariants(c);
        });
    }

    [Test]
    public void DT_07_UnmapWithDirtyBitmapOfAnEmulatedContainerReturnsOnlyWrittenPages()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _, _, _) = rig.OpenEmulatedEdu();
            ulong va = rig.Buffer(8 * P);
            ulong bm = rig.Buffer(P);
            Assert.That(rig.Map(c, va, A, 4 * P), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Map(c, va + (4 * P), A + (4 * P), 4 * P), Is.Zero, ErrorReason.Current);
            Assert.That(rig.DirtyPages(c, VfioType1Flags.DirtyStart), Is.Zero, ErrorReason.Current);
            rig.DeviceWrite(A + (3 * P), 1);
            rig.DeviceWrite(A + (5 * P), 1);
            Assert.That(rig.User.Mm.WriteUser(bm, [0x01, 0, 0, 0, 0, 0, 0, 0]), Is.Zero);
            Assert.That(rig.UnmapWithBitmap(c, A + (4 * P), 4 * P, P, bm, 8, out ulong un), Is.Zero, ErrorReason.Current);
            Assert.That(un, Is.EqualTo(4 * P));
            Assert.That(rig.ReadWords(bm, 1), Is.EqualTo(new[] { 0b10UL }), "M2 alone, from bit 0; the user's stale bit is overwritten");
            Assert.That(rig.Iommu(c).Mappings, Has.Count.EqualTo(1));
            Assert.That(rig.Dirty(c, A, 4 * P, bm), Is.EqualTo(new[] { 0b1000UL }));
            rig.AssertInvariants(c);
        });
    }

    [Test]
    public void DT_08_IommuBackedGroupThatNeverPinnedReportsEveryMappedPage()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _, _) = rig.OpenEdu();
            ulong va = rig.Buffer(16 * P);
            ulong bm = rig.Buffer(P);
            Assert.That(rig.Map(c, va, A, 8 * P), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Map(c, va + (8 * P), A + (16 * P), 3 * P), Is.Zero, ErrorReason.Current);
            Assert.That(rig.DirtyPages(c, VfioType1Flags.DirtyStart), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Iommu(c).NumNonPinnedGroups, Is.EqualTo(1));
            ulong expected = 0xffUL | (0b111UL << 16);
            Assert.That(rig.Dirty(c, A, 19 * P, bm), Is.EqualTo(new[] { expected }));
            Assert.That(rig.Dirty(c, A, 19 * P, bm), Is.EqualTo(new[] { expected }), "and again on every query");

            // A mapping made while tracking is on is reported too.
            ulong va2 = rig.Buffer(2 * P);
            Assert.That(rig.Map(c, va2, A + (32 * P), 2 * P), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Dirty(c, A, 34 * P, bm), Is.EqualTo(new[] { expected | (0b11UL << 32) }));
            rig.AssertInvariants(c);
        });
    }

    [Test]
    public void DT_08_DeviceOfARealGroupThatPinsNarrowsTheScopeToPinnedAndWrittenPages()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            var ops = new PinningTestDevice();
            rig.Core.Driver.CustomOps = ops; // IOMMU-backed group, but the device pins like an mdev.
            (int c, _, _) = rig.OpenEdu();
            ulong va = rig.Buffer(8 * P);
            ulong bm = rig.Buffer(P);
            Assert.That(rig.Map(c, va, A, 8 * P), Is.Zero, ErrorReason.Current);
            Assert.That(rig.DirtyPages(c, VfioType1Flags.DirtyStart), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Dirty(c, A, 8 * P, bm), Is.EqualTo(new[] { 0xffUL }));
            Assert.That(ops.Pin(rig.Edu(), A + (2 * P), 1, RW), Is.EqualTo(1), ErrorReason.Current);
            Assert.That(rig.Iommu(c).NumNonPinnedGroups, Is.Zero, "the group is now in pinned-page dirty scope");
            rig.DeviceWrite(A + (5 * P), 1);
            Assert.That(rig.Dirty(c, A, 8 * P, bm), Is.EqualTo(new[] { 0b10_0100UL }));
            Assert.That(rig.Dirty(c, A, 8 * P, bm), Is.EqualTo(new[] { 0b100UL }), "a pinned page stays dirty; the write was reported once");
            ops.Unpin(rig.Edu(), A + (2 * P), 1);
            Assert.That(rig.Dirty(c, A, 8 * P, bm), Is.EqualTo(new[] { 0b100UL }), "the report after the unpin still has it (reset to pinned pages at the last report)");
            Assert.That(rig.Dirty(c, A, 8 * P, bm), Is.EqualTo(new[] { 0UL }));
            rig.AssertInvariants(c);
        });
    }

    [Test]
    public void DT_08_DetachingTheLastNonPinnedGroupReportsEverythingOnceThenOnlyWhatTheEmulatedDeviceDirties()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _, _, _) = rig.OpenEmulatedEdu();
            int gp = rig.OpenPairGroup();
            Assert.That(rig.Core.SetContainer(gp, c), Is.Zero, ErrorReason.Current);
            ulong va = rig.Buffer(8 * P);
            ulong bm = rig.Buffer(P);
            Assert.That(rig.Map(c, va, A, 8 * P), Is.Zero, ErrorReason.Current);
            Assert.That(rig.DirtyPages(c, VfioType1Flags.DirtyStart), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Iommu(c).NumNonPinnedGroups, Is.EqualTo(1));
            Assert.That(rig.Dirty(c, A, 8 * P, bm), Is.EqualTo(new[] { 0xffUL }));

            Assert.That(rig.Core.UnsetContainer(gp), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Iommu(c).NumNonPinnedGroups, Is.Zero);
            Assert.That(rig.Iommu(c).Mappings.Single().IommuMapped, Is.False);
            Assert.That(rig.Dirty(c, A, 8 * P, bm), Is.EqualTo(new[] { 0xffUL }), "the departed group may have dirtied anything");
            Assert.That(rig.Dirty(c, A, 8 * P, bm), Is.EqualTo(new[] { 0UL }));
            rig.DeviceWrite(A + (3 * P), 1);
            Assert.That(rig.Dirty(c, A, 8 * P, bm), Is.EqualTo(new[] { 0b1000UL }));
            rig.AssertInvariants(c);
        });
    }

    [Test]
    public void DT_16_DeviceWritesAreReportedAtPageSizeOnlyAndEveryReportClears()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _, _, _) = rig.OpenEmulatedEdu();
            const ulong iova = 0x10 * P;
            ulong va = rig.Buffer(32 * P);
            ulong bm = rig.Buffer(P);
            Assert.That(rig.Map(c, va, iova, 32 * P), Is.Zero, ErrorReason.Current);
            Assert.That(rig.DirtyPages(c, VfioType1Flags.DirtyStart), Is.Zero, ErrorReason.Current);

            // Reads ("get without put") never dirty.
            byte[] buf = new byte[10 * P];
            Assert.That(rig.Edu().DmaRw(iova, buf, write: false), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Dirty(c, iova, 32 * P, bm), Is.EqualTo(new[] { 0UL }));

            rig.DeviceWrite(iova, 1);
            rig.DeviceWrite(iova + (6 * P), 4 * P);
            // Other bitmap page sizes (LVU's PAGE/2, 2*PAGE, 16*PAGE) are not type1's minimum page: EINVAL, bits kept.
            Type1State before = rig.State(c);
            foreach (ulong pgsize in new[] { P / 2, 2 * P, 16 * P })
            {
                rig.AssertRejected(c, rig.GetBitmap(c, iova, 32 * P, pgsize, bm, 8), Errno.EINVAL, before);
            }

            Assert.That(rig.Dirty(c, iova, 32 * P, bm), Is.EqualTo(new[] { 0b11_1100_0001UL }));
            Assert.That(rig.Dirty(c, iova, 32 * P, bm), Is.EqualTo(new[] { 0UL }), "every report clears");
            rig.AssertInvariants(c);
        });
    }

    [TestCase(0x10, 0x10, 1UL << 0)]
    [TestCase(0x17, 0x17, 1UL << 7)]
    [TestCase(0x10, 0x16, 0x7FUL)]
    [TestCase(0x10, 0x17, 0xFFUL)]
    [TestCase(0x10, 0x18, 0x1FFUL)]
    [TestCase(0x17, 0x18, 0x180UL)]
    [TestCase(0x1F, 0x1F, 1UL << 15)]
    [TestCase(0x27, 0x27, 1UL << 23)]
    public void DT_17_EdgeBits(int firstPage, int lastPage, ulong expected)
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _, _, _) = rig.OpenEmulatedEdu();
            const ulong iova = 0x10 * P;
            ulong va = rig.Buffer(32 * P);
            ulong bm = rig.Buffer(P);
            Assert.That(rig.Map(c, va, iova, 32 * P), Is.Zero, ErrorReason.Current);
            Assert.That(rig.DirtyPages(c, VfioType1Flags.DirtyStart), Is.Zero, ErrorReason.Current);
            if (firstPage == lastPage)
            {
                rig.DeviceWrite(((ulong)firstPage * P) + 0x123, 8);
            }
            else
            {
                // From the last byte of the first page to the first byte of the last page.
                ulong from = ((ulong)firstPage * P) + P - 1;
                rig.DeviceWrite(from, (((ulong)lastPage * P) + 1) - from);
            }

            Assert.That(rig.Dirty(c, iova, 32 * P, bm), Is.EqualTo(new[] { expected }));
            Assert.That(rig.Dirty(c, iova, 32 * P, bm), Is.EqualTo(new[] { 0UL }));
        });
    }

    [Test]
    public void DT_17_TwoSeparateWritesAreOrCombined()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _, _, _) = rig.OpenEmulatedEdu();
            const ulong iova = 0x10 * P;
            ulong va = rig.Buffer(32 * P);
            ulong bm = rig.Buffer(P);
            Assert.That(rig.Map(c, va, iova, 32 * P), Is.Zero, ErrorReason.Current);
            Assert.That(rig.DirtyPages(c, VfioType1Flags.DirtyStart), Is.Zero, ErrorReason.Current);
            rig.DeviceWrite(0x26 * P, 1);
            rig.DeviceWrite(0x12 * P, 2 * P);
            Assert.That(rig.Dirty(c, iova, 32 * P, bm), Is.EqualTo(new[] { 0b0100_0000_0000_0000_0000_1100UL }));
        });
    }

    [Test]
    public void DT_16_PinnedPagesAreReportedOnEveryQueryUntilUnpinned()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _, _, PinningTestDevice ops) = rig.OpenEmulatedEdu();
            ulong va = rig.Buffer(8 * P);
            ulong bm = rig.Buffer(P);
            Assert.That(rig.Map(c, va, A, 8 * P), Is.Zero, ErrorReason.Current);
            Assert.That(ops.Pin(rig.Edu(), A + P, 2, RW), Is.EqualTo(2), ErrorReason.Current);
            // START pre-populates the bitmaps with what is already pinned.
            Assert.That(rig.DirtyPages(c, VfioType1Flags.DirtyStart), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Dirty(c, A, 8 * P, bm), Is.EqualTo(new[] { 0b110UL }));
            Assert.That(rig.Dirty(c, A, 8 * P, bm), Is.EqualTo(new[] { 0b110UL }));
            Assert.That(ops.Pin(rig.Edu(), A + (7 * P), 1, R), Is.EqualTo(1), ErrorReason.Current);
            ops.Unpin(rig.Edu(), A + P, 2);
            Assert.That(rig.Dirty(c, A, 8 * P, bm), Is.EqualTo(new[] { 0b1000_0110UL }));
            Assert.That(rig.Dirty(c, A, 8 * P, bm), Is.EqualTo(new[] { 0b1000_0000UL }));
            ops.Unpin(rig.Edu(), A + (7 * P), 1);
            rig.AssertInvariants(c);
        });
    }

    // DT-20 analogue: type1 has no ENOENT for a range without mappings (it reports nothing and
    // succeeds); closing everything with tracking still on leaks nothing.
    [Test]
    public void DT_20_ReportOnAnUnmappedRegionAndTeardownWithoutStop()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            long pinned0 = rig.Memory.PinnedPages;
            (int c, int g, int d, _) = rig.OpenEmulatedEdu();
            ulong va = rig.Buffer(8 * P);
            ulong bm = rig.Buffer(P);
            Assert.That(rig.Map(c, va, A, 4 * P), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Map(c, va + (4 * P), A + (4 * P), 4 * P), Is.Zero, ErrorReason.Current);
            Assert.That(rig.DirtyPages(c, VfioType1Flags.DirtyStart), Is.Zero, ErrorReason.Current);
            rig.DeviceWrite(A, 1);
            rig.DeviceWrite(A + (4 * P), 1);
            Assert.That(rig.Unmap(c, A, 4 * P, out ulong un), Is.Zero, ErrorReason.Current);
            Assert.That(un, Is.EqualTo(4 * P));
            Assert.That(rig.User.Mm.WriteUser(bm, [0xaa, 0, 0, 0, 0, 0, 0, 0]), Is.Zero);
            Assert.That(rig.GetBitmap(c, A, 4 * P, P, bm, 8), Is.Zero, ErrorReason.Current);
            Assert.That(rig.ReadWords(bm, 1), Is.EqualTo(new[] { 0xaaUL }), "nothing mapped there: the bitmap is not written");
            Assert.That(rig.Dirty(c, A + (4 * P), 4 * P, bm), Is.EqualTo(new[] { 1UL }));
            rig.User.Close(d);
            rig.User.Close(g);
            rig.User.Close(c);
            Assert.That(rig.Memory.PinnedPages, Is.EqualTo(pinned0));
            Assert.That(rig.User.Mm.LockedVm, Is.Zero);
        });
    }
}
