// Conformance of VFIO_IOMMU_MAP_DMA in the type1 backend against the peer cases
// (docs/conformance.md) T1-01, T1-02, T1-05, T1-07, T1-08, T1-10, T1-11, T1-19, T1-20,
// T1-23, T1-25, T1-26, T1-29 and BI-05, the RLIMIT_MEMLOCK rule, PFNMAP (MMIO) backing and
// disable_hugepages: what is accepted, the errno of what is not in the kernel's order, and
// that a rejected map leaves mappings, dma_avail, locked_vm and pins exactly as they were.

using NUnit.Framework;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Iommu;
using Vfio.Platform.Iommu.Hw;
using Vfio.Platform.Mm;
using Vfio.Platform.Proc;

namespace Vfio.Tests.Type1;

[TestFixture]
public sealed class Type1MapTests
{
    private const ulong Page = Type1Rig.Page;
    private const ulong MiB = 1UL << 20;
    private const uint RW = VfioType1Flags.MapRead | VfioType1Flags.MapWrite;

    [Test]
    public void T1_01_MapThenUnmap_TranslatesEveryPageThenLeavesNoEntry([Values(VfioExtension.Type1, VfioExtension.Type1v2)] uint type)
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            long pinned0 = rig.Memory.PinnedPages;
            (int c, _, _) = rig.OpenEdu(type);
            ulong va = rig.Buffer(16 * Page);
            const ulong iova = 0x10000000;
            Assert.That(rig.Map(c, va, iova, 16 * Page), Is.Zero, ErrorReason.Current);
            IommuDomain dom = rig.Iommu(c).Domains[0];
            for (ulong off = 0; off < 16 * Page; off += Page)
            {
                Assert.That(dom.IovaToPhys(iova + off), Is.EqualTo(rig.User.Mm.Translate(va + off) << 12), $"iova +0x{off:x} translates to the buffer's page");
            }

            Assert.That(rig.Unmap(c, iova, 16 * Page, out ulong unmapped), Is.Zero, ErrorReason.Current);
            Assert.That(unmapped, Is.EqualTo(16 * Page));
            for (ulong off = 0; off < 16 * Page; off += Page)
            {
                Assert.That(dom.PageTable!.Walk(iova + off, out _, out _, out _), Is.False, "no IOMMU entry is left");
            }

            Assert.That(rig.Iommu(c).Mappings, Is.Empty);
            Assert.That(rig.Memory.PinnedPages, Is.EqualTo(pinned0));
            Assert.That(rig.User.Mm.LockedVm, Is.Zero);
            rig.AssertInvariants(c);
        });
    }

    [Test]
    public void T1_02_LeafSize_FollowsTheBacking_4KAnonymous2MAnd1GHugetlb(
        [Values(VfioExtension.Type1, VfioExtension.Type1v2)] uint type,
        [Values(1, 2, 3)] int level)
    {
        // Type1 (unlike the iommufd compat v1 mode) uses large leaves for both v1 and v2.
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _, _) = rig.OpenEdu(type);
            ulong size = level switch { 1 => 64 * Page, 2 => 2 * MiB, _ => 1UL << 30 };
            ulong va = level == 1 ? rig.Buffer(size) : rig.HugeBuffer(size, gig: level == 3);
            ulong iova = 1UL << 30;
            IoPageTable pt = rig.Iommu(c).Domains[0].PageTable!;
            (long l4, long l2, long l1) = (pt.Leaves4K, pt.Leaves2M, pt.Leaves1G);
            Assert.That(rig.Map(c, va, iova, size), Is.Zero, ErrorReason.Current);
            Assert.That(rig.LeafLevel(c, iova), Is.EqualTo(level), "leaf level of the first IOVA");
            Assert.That(rig.LeafLevel(c, iova + size - Page), Is.EqualTo(level), "leaf level of the last IOVA");
            (long d4, long d2, long d1) = (pt.Leaves4K - l4, pt.Leaves2M - l2, pt.Leaves1G - l1);
            Assert.That((d4, d2, d1), Is.EqualTo(level switch { 1 => (64L, 0L, 0L), 2 => (0L, 1L, 0L), _ => (0L, 0L, 1L) }));
            Assert.That(rig.Unmap(c, iova, size, out ulong unmapped), Is.Zero, ErrorReason.Current);
            Assert.That(unmapped, Is.EqualTo(size));
            Assert.That((pt.Leaves4K, pt.Leaves2M, pt.Leaves1G), Is.EqualTo((l4, l2, l1)));
            rig.AssertInvariants(c);
        });
    }

    [Test]
    public void DisableHugepages_Forces4KLeavesOnHugetlbBacking()
    {
        var rig = new Type1Rig();
        rig.Type1.DisableHugepages = true;
        rig.Run(() =>
        {
            (int c, _, _) = rig.OpenEdu();
            ulong va = rig.HugeBuffer(2 * MiB);
            IoPageTable pt = rig.Iommu(c).Domains[0].PageTable!;
            long l4 = pt.Leaves4K, l2 = pt.Leaves2M;
            Assert.That(rig.Map(c, va, 0x40000000, 2 * MiB), Is.Zero, ErrorReason.Current);
            Assert.That(pt.Leaves4K - l4, Is.EqualTo(512));
            Assert.That(pt.Leaves2M - l2, Is.Zero);
            Assert.That(rig.LeafLevel(c, 0x40000000), Is.EqualTo(1));
            Assert.That(rig.Iommu(c).Domains[0].IovaToPhys(0x40000000 + MiB), Is.EqualTo(rig.User.Mm.Translate(va + MiB) << 12));
            Assert.That(rig.User.Mm.LockedVm, Is.EqualTo(512));
            rig.AssertInvariants(c);
        });
    }

    [Test]
    public void T1_05_MapWhoseIovaOrVaddrWraps_IsEinvalOnBothProfiles(
        [Values(VfioExtension.Type1, VfioExtension.Type1v2)] uint type,
        [Values("6.12", "6.1")] string kernel)
    {
        KernelProfile profile = kernel == "6.1" ? KernelProfile.Linux6_1 : KernelProfile.Linux6_12;
        // Linux 6.1 and 6.12.118 both answer EINVAL (checked on the real kernels); EOVERFLOW came in v6.18.
        const Errno expected = Errno.EINVAL;
        var rig = new Type1Rig(profile: profile);
        rig.Run(() =>
        {
            (int c, _, _) = rig.OpenEdu(type);
            ulong va = rig.Buffer(2 * Page);
            Assert.That(rig.Map(c, va, 0x100000, 2 * Page), Is.Zero, ErrorReason.Current);
            rig.AssertRejected(c, expected, () => rig.Map(c, va, 0xFFFF_FFFF_FFFF_F000, 2 * Page));
            rig.AssertRejected(c, expected, () => rig.Map(c, 0xFFFF_FFFF_FFFF_F000, 0x200000, 2 * Page));
            rig.AssertRejected(c, expected, () => rig.Unmap(c, 0xFFFF_FFFF_FFFF_F000, 2 * Page, out _));
        });
    }

    [Test]
    public void T1_07_MapWithUnalignedIovaVaddrOrSize_OrSizeZero_IsEinval([Values(VfioExtension.Type1, VfioExtension.Type1v2)] uint type)
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _, _) = rig.OpenEdu(type);
            ulong va = rig.Buffer(4 * Page);
            Assert.That(rig.Map(c, va + Page, 0x200000, Page), Is.Zero, ErrorReason.Current);
            rig.AssertRejected(c, Errno.EINVAL, () => rig.Map(c, va, 0x100000 + 0x800, Page));
            rig.AssertRejected(c, Errno.EINVAL, () => rig.Map(c, va + 8, 0x100000, Page));
            rig.AssertRejected(c, Errno.EINVAL, () => rig.Map(c, va, 0x100000, Page + 1));
            rig.AssertRejected(c, Errno.EINVAL, () => rig.Map(c, va, 0x100000, 0));
        });
    }

    [Test]
    public void T1_08_MapWithShortArgszUnknownFlagOrBadFlagCombination_IsEinval([Values(VfioExtension.Type1, VfioExtension.Type1v2)] uint type)
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _, _) = rig.OpenEdu(type);
            ulong va = rig.Buffer(Page);
            rig.AssertRejected(c, Errno.EINVAL, () => rig.Map(c, va, 0x100000, Page, argsz: 1));
            rig.AssertRejected(c, Errno.EINVAL, () => rig.Map(c, va, 0x100000, Page, flags: RW | (1u << 31)));
            rig.AssertRejected(c, Errno.EINVAL, () => rig.Map(c, va, 0x100000, Page, flags: 0));
            rig.AssertRejected(c, Errno.EINVAL, () => rig.Map(c, va, 0x100000, Page, flags: VfioType1Flags.MapVaddr | VfioType1Flags.MapRead));
            rig.AssertRejected(c, Errno.EINVAL, () => rig.Map(c, va, 0x100000, Page, flags: VfioType1Flags.MapVaddr | VfioType1Flags.MapWrite));
            Assert.That(rig.Map(c, va, 0x100000, Page, flags: VfioType1Flags.MapWrite), Is.Zero, "a WRITE-only mapping is allowed: " + ErrorReason.Current);
            Assert.That(rig.Iommu(c).Mappings.Single().Prot, Is.EqualTo(IommuProt.Write));
            rig.AssertInvariants(c);
        });
    }

    [Test]
    public void BI_05_MapWithArgszOneBelowMinsz_IsEinval()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _, _) = rig.OpenEdu();
            ulong va = rig.Buffer(Page);
            rig.AssertRejected(c, Errno.EINVAL, () => rig.Map(c, va, 0x100000, Page, argsz: VfioIommuType1DmaMap.MinSz - 1));
            Assert.That(rig.Map(c, va, 0x100000, Page, argsz: VfioIommuType1DmaMap.MinSz), Is.Zero, ErrorReason.Current);
        });
    }

    [Test]
    public void T1_10_MapTouchingTheMsiWindowOrBeyondTheAperture_IsEinval_AndTheNeighboursMap()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _, _) = rig.OpenEdu();
            IReadOnlyList<Vfio.Iommu.Type1.VfioIova> list = rig.Iommu(c).IovaList;
            Assert.That(list.Any(r => r.Start <= 0xfee00000 && r.End >= 0xfee00000), Is.False, "the MSI window is excluded from the IOVA list");
            ulong va = rig.Buffer(2 * MiB);
            rig.AssertRejected(c, Errno.EINVAL, () => rig.Map(c, va, 0xfee00000, Page));
            rig.AssertRejected(c, Errno.EINVAL, () => rig.Map(c, va, 0xfeeff000, Page));
            rig.AssertRejected(c, Errno.EINVAL, () => rig.Map(c, va, 0xfed00000, 2 * MiB));
            rig.AssertRejected(c, Errno.EINVAL, () => rig.Map(c, va, 0xfedff000, 2 * Page));
            ulong top = list[^1].End;
            rig.AssertRejected(c, Errno.EINVAL, () => rig.Map(c, va, top + 1, Page));
            rig.AssertRejected(c, Errno.EINVAL, () => rig.Map(c, va, top + 1 - Page, 2 * Page));
            Assert.That(rig.Map(c, va, 0xfedff000, Page), Is.Zero, "just below the window: " + ErrorReason.Current);
            Assert.That(rig.Map(c, va + Page, 0xfef00000, Page), Is.Zero, "just above the window: " + ErrorReason.Current);
            Assert.That(rig.Map(c, va + (2 * Page), top + 1 - Page, Page), Is.Zero, "the last page of the aperture: " + ErrorReason.Current);
            rig.AssertInvariants(c);
        });
    }

    [Test]
    public void T1_10_ContainerWithOnlyAnEmulatedGroup_AcceptsAnyIova_AndPinsNothing()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _) = Type1AttachTests.OpenEmulated(rig);
            Assert.That(rig.Iommu(c).IovaList, Is.Empty);
            ulong va = rig.Buffer(Page);
            long pinned0 = rig.Memory.PinnedPages;
            Assert.That(rig.Map(c, va, 0xfee00000, Page), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Map(c, va, 1UL << 60, Page), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Iommu(c).Mappings.Select(m => m.IommuMapped), Is.All.False);
            Assert.That(rig.Memory.PinnedPages, Is.EqualTo(pinned0));
            Assert.That(rig.User.Mm.LockedVm, Is.Zero);
            rig.AssertInvariants(c);
        });
    }

    [Test]
    public void T1_11_MapBeyondDmaEntryLimit_IsEnospc_AndAnUnmapReturnsASlot()
    {
        var rig = new Type1Rig();
        rig.Type1.DmaEntryLimit = 4;
        rig.Run(() =>
        {
            (int c, _, _) = rig.OpenEdu();
            ulong va = rig.Buffer(8 * Page);
            for (ulong i = 0; i < 4; i++)
            {
                Assert.That(rig.Map(c, va + (i * Page), 0x100000 + (i * Page), Page), Is.Zero, ErrorReason.Current);
                Assert.That(Type1Checks.DmaAvailCap(rig.GetFullInfo(c)), Is.EqualTo(3 - (uint)i));
            }

            rig.AssertRejected(c, Errno.ENOSPC, () => rig.Map(c, va + (4 * Page), 0x200000, Page));
            Assert.That(rig.Unmap(c, 0x100000, Page, out ulong unmapped), Is.Zero, ErrorReason.Current);
            Assert.That(unmapped, Is.EqualTo(Page));
            Assert.That(Type1Checks.DmaAvailCap(rig.GetFullInfo(c)), Is.EqualTo(1u));
            Assert.That(rig.Map(c, va + (4 * Page), 0x200000, Page), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Iommu(c).DmaAvail, Is.Zero);
            rig.AssertInvariants(c);
        });
    }

    [Test]
    public void T1_11_DmaEntryLimitIsReadWhenTheContainerIsCreated()
    {
        var rig = new Type1Rig();
        rig.Type1.DmaEntryLimit = 2;
        rig.Run(() =>
        {
            (int c, _, _) = rig.OpenEdu();
            rig.Type1.DmaEntryLimit = 100;
            ulong va = rig.Buffer(3 * Page);
            Assert.That(rig.Map(c, va, 0x100000, Page), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Map(c, va + Page, 0x101000, Page), Is.Zero, ErrorReason.Current);
            rig.AssertRejected(c, Errno.ENOSPC, () => rig.Map(c, va + (2 * Page), 0x102000, Page));
        });
    }

    [Test]
    public void MapOverlappingAnExistingMapping_IsEexist([Values(VfioExtension.Type1, VfioExtension.Type1v2)] uint type)
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _, _) = rig.OpenEdu(type);
            ulong va = rig.Buffer(8 * Page);
            Assert.That(rig.Map(c, va, 0x102000, 2 * Page), Is.Zero, ErrorReason.Current);
            rig.AssertRejected(c, Errno.EEXIST, () => rig.Map(c, va, 0x102000, 2 * Page));
            rig.AssertRejected(c, Errno.EEXIST, () => rig.Map(c, va, 0x101000, 2 * Page));
            rig.AssertRejected(c, Errno.EEXIST, () => rig.Map(c, va, 0x103000, 2 * Page));
            rig.AssertRejected(c, Errno.EEXIST, () => rig.Map(c, va, 0x100000, 8 * Page));
            Assert.That(rig.Map(c, va, 0x104000, Page), Is.Zero, "the page right after is free: " + ErrorReason.Current);
            Assert.That(rig.Map(c, va, 0x101000, Page), Is.Zero, "the page right before is free: " + ErrorReason.Current);
        });
    }

    [Test]
    public void MapBeyondRlimitMemlock_IsEnomem_WithEverythingRolledBack()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _, _) = rig.OpenEdu();
            rig.User.Credentials = Credentials.Root.Without(Capabilities.CAP_IPC_LOCK);
            rig.User.Limits = rig.User.Limits with { MemlockBytes = 64 * 1024 };
            ulong va = rig.Buffer(4 * MiB);
            Assert.That(rig.Map(c, va, 0x100000, 8 * Page), Is.Zero, ErrorReason.Current);
            Assert.That(rig.User.Mm.LockedVm, Is.EqualTo(8));
            rig.AssertRejected(c, Errno.ENOMEM, () => rig.Map(c, va + (8 * Page), 0x200000, 9 * Page));
            Assert.That(ErrorReason.Current, Does.Contain("RLIMIT_MEMLOCK"));
            rig.AssertRejected(c, Errno.ENOMEM, () => rig.Map(c, va + (8 * Page), 0x400000, 4 * MiB - (8 * Page)));
            Assert.That(rig.Map(c, va + (8 * Page), 0x200000, 8 * Page), Is.Zero, "exactly up to the limit: " + ErrorReason.Current);
            Assert.That(rig.User.Mm.LockedVm, Is.EqualTo(16));
        });
    }

    [Test]
    public void MapThatCrossesRlimitMemlockAfterSeveralBatches_IsEnomem_WithEverythingRolledBack([Values(VfioExtension.Type1, VfioExtension.Type1v2)] uint type)
    {
        // 4 MiB of limit, 8 MiB asked for: the charge fails in the third GUP batch of 512 pages.
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _, _) = rig.OpenEdu(type);
            rig.User.Credentials = Credentials.Root.Without(Capabilities.CAP_IPC_LOCK);
            rig.User.Limits = rig.User.Limits with { MemlockBytes = 4L << 20 };
            ulong va = rig.Buffer(8 * MiB);
            IoPageTable pt = rig.Iommu(c).Domains[0].PageTable!;
            long leaves = pt.Leaves4K + pt.Leaves2M + pt.Leaves1G;
            rig.AssertRejected(c, Errno.ENOMEM, () => rig.Map(c, va, 0x10000000, 8 * MiB));
            Assert.That(pt.Leaves4K + pt.Leaves2M + pt.Leaves1G, Is.EqualTo(leaves), "no IOMMU leaf is left behind");
            Assert.That(rig.Map(c, va, 0x10000000, 4 * MiB), Is.Zero, "exactly the limit maps: " + ErrorReason.Current);
            Assert.That(rig.User.Mm.LockedVm, Is.EqualTo(1024));
            rig.AssertInvariants(c);
        });
    }

    [Test]
    public void MapWithCapIpcLock_IsNotLimitedByRlimitMemlock()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _, _) = rig.OpenEdu();
            rig.User.Limits = rig.User.Limits with { MemlockBytes = 64 * 1024 };
            ulong va = rig.Buffer(MiB);
            Assert.That(rig.Map(c, va, 0x100000, MiB), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Iommu(c).Mappings.Single().Size, Is.EqualTo(MiB));
            rig.AssertInvariants(c);
        });
    }

    [Test]
    public void T1_19_TheSameHostBufferBacksManyIovaRanges([Values(VfioExtension.Type1, VfioExtension.Type1v2)] uint type)
    {
        // Scaled down from a 4 GiB buffer: 4 MiB, mapped at 0 and 1 MiB, then at every 4 GiB up to 1 TiB.
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _, _) = rig.OpenEdu(type);
            const ulong size = 4 * MiB;
            ulong va = rig.Buffer(size);
            Assert.That(rig.Map(c, va, 0, 640 * 1024), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Map(c, va + MiB, MiB, size - MiB), Is.Zero, ErrorReason.Current);
            for (ulong iova = 4UL << 30; iova < 1UL << 40; iova += 4UL << 30)
            {
                Assert.That(rig.Map(c, va, iova, size), Is.Zero, $"iova 0x{iova:x}: {ErrorReason.Current}");
            }

            Assert.That(rig.Iommu(c).Mappings, Has.Count.EqualTo(2 + 255));
            IommuDomain dom = rig.Iommu(c).Domains[0];
            long phys = rig.User.Mm.Translate(va + (3 * MiB)) << 12;
            Assert.That(dom.IovaToPhys((512UL << 30) + (3 * MiB)), Is.EqualTo(phys));
            Assert.That(dom.IovaToPhys(3 * MiB), Is.EqualTo(phys));
            rig.AssertInvariants(c);
            Assert.That(rig.Unmap(c, 0, 0, out ulong all, VfioType1Flags.UnmapAll), Is.Zero, ErrorReason.Current);
            Assert.That(all, Is.EqualTo((640 * 1024) + (size - MiB) + (255 * size)));
            Assert.That(rig.User.Mm.LockedVm, Is.Zero);
        });
    }

    [Test]
    public void T1_20_InterleavedChunkMapsAcrossWindows_ThenUnmapFromBothEnds([Values(VfioExtension.Type1, VfioExtension.Type1v2)] uint type)
    {
        // Scaled down from 1 GiB / 1024 windows: 16 MiB of 2 MiB chunks in 24 windows.
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            long pinned0 = rig.Memory.PinnedPages;
            (int c, _, _) = rig.OpenEdu(type);
            const ulong chunk = 2 * MiB, window = 16 * MiB;
            const int chunks = 8;
            ulong va = rig.Buffer(window);
            var mapped = new List<ulong>();
            for (int w = 0; w < 24; w++)
            {
                if (w % 3 == 0)
                {
                    continue;
                }

                ulong base_ = (1UL << 32) + ((ulong)w * window);
                foreach (int cls in new[] { 0, 1, 3, 2 })
                {
                    for (int j = cls; j < chunks; j += 4)
                    {
                        ulong iova = base_ + ((ulong)j * chunk);
                        Assert.That(rig.Map(c, va + ((ulong)j * chunk), iova, chunk), Is.Zero, $"map 0x{iova:x}: {ErrorReason.Current}");
                        mapped.Add(iova);
                    }
                }
            }

            mapped.Sort();
            rig.AssertInvariants(c);
            int half = mapped.Count / 2;
            for (int i = 0; i < half; i++)
            {
                Assert.That(rig.Unmap(c, mapped[i], chunk, out ulong u), Is.Zero, ErrorReason.Current);
                Assert.That(u, Is.EqualTo(chunk));
            }

            for (int i = mapped.Count - 1; i >= half; i--)
            {
                Assert.That(rig.Unmap(c, mapped[i], chunk, out ulong u), Is.Zero, ErrorReason.Current);
                Assert.That(u, Is.EqualTo(chunk));
            }

            Assert.That(rig.Iommu(c).Mappings, Is.Empty);
            Assert.That(rig.Iommu(c).DmaAvail, Is.EqualTo(rig.Iommu(c).EntryLimit));
            Assert.That(rig.User.Mm.LockedVm, Is.Zero);
            Assert.That(rig.Memory.PinnedPages, Is.EqualTo(pinned0));
            rig.AssertInvariants(c);
        });
    }

    [Test]
    public void T1_25_MapOfABufferWithUnmappedPages_IsEfault_AndNothingIsLeft([Values(VfioExtension.Type1, VfioExtension.Type1v2)] uint type)
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _, _) = rig.OpenEdu(type);
            ulong va = rig.Buffer(8 * Page);
            Assert.That(rig.User.Munmap(va + (4 * Page), 4 * Page), Is.Zero);
            rig.AssertRejected(c, Errno.EFAULT, () => rig.Map(c, va, 0x100000, 8 * Page));
            Assert.That(rig.User.Munmap(va, 4 * Page), Is.Zero);
            rig.AssertRejected(c, Errno.EFAULT, () => rig.Map(c, va, 0x100000, 8 * Page));
            Assert.That(rig.Iommu(c).Domains[0].IovaToPhys(0x100000), Is.Zero, "nothing was left in the IOMMU");
        });
    }

    [Test]
    public void T1_26_MapWhosePinningFailsAfterManyBatches_RollsBackCompletely([Values(VfioExtension.Type1, VfioExtension.Type1v2)] uint type)
    {
        // 2047 good pages (4 GUP batches) and then a hole: everything pinned and mapped must go.
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _, _) = rig.OpenEdu(type);
            ulong va = rig.Buffer(8 * MiB);
            Assert.That(rig.Map(c, va + (4 * MiB), 0x40000000, Page), Is.Zero, ErrorReason.Current);
            Assert.That(rig.User.Munmap(va + (4 * MiB) - Page, Page), Is.Zero);
            IoPageTable pt = rig.Iommu(c).Domains[0].PageTable!;
            long leaves = pt.Leaves4K + pt.Leaves2M + pt.Leaves1G;
            rig.AssertRejected(c, Errno.EFAULT, () => rig.Map(c, va, 0x1000000, 4 * MiB));
            Assert.That(pt.Leaves4K + pt.Leaves2M + pt.Leaves1G, Is.EqualTo(leaves), "no IOMMU leaf is left behind");
            Assert.That(rig.Iommu(c).Domains[0].IovaToPhys(0x1000000), Is.Zero);
            Assert.That(rig.Map(c, va, 0x1000000, 4 * MiB - Page), Is.Zero, "the good part maps: " + ErrorReason.Current);
        });
    }

    [Test]
    public void T1_23_MapOfAnMmioPfnmapRange_MapsTheMmioFramesWithoutPinningOrCharging([Values(VfioExtension.Type1, VfioExtension.Type1v2)] uint type)
    {
        // A misc device's PFNMAP mmap of MMIO frames stands in for another device's BAR (peer-to-peer).
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _, _) = rig.OpenEdu(type);
            var bar = new Vfio.Tests.Platform.CountingMisc(rig.Machine);
            int fd = rig.User.Open(bar.NodePath);
            Assert.That(fd, Is.GreaterThanOrEqualTo(0));
            long a = rig.User.Mmap(0, 16 * Page, Prot.PROT_READ | Prot.PROT_WRITE, MapFlags.MAP_SHARED, fd);
            Assert.That(a, Is.GreaterThan(0));
            ulong va = (ulong)a;
            long pinned0 = rig.Memory.PinnedPages;
            Assert.That(rig.Map(c, va, 0x100000, 16 * Page), Is.Zero, "full BAR: " + ErrorReason.Current);
            Assert.That(rig.Iommu(c).Domains[0].IovaToPhys(0x100000 + (3 * Page)), Is.EqualTo(bar.MmioBase + (3 * (long)Page)));
            Assert.That(rig.Memory.PinnedPages, Is.EqualTo(pinned0), "MMIO frames are not pinned");
            Assert.That(rig.User.Mm.LockedVm, Is.Zero, "MMIO frames are not charged");
            Assert.That(rig.Map(c, va, 0x200000, Page), Is.Zero, "first page only: " + ErrorReason.Current);
            rig.AssertInvariants(c);
            Assert.That(rig.Unmap(c, 0x100000, 16 * Page, out ulong unmapped), Is.Zero, ErrorReason.Current);
            Assert.That(unmapped, Is.EqualTo(16 * Page));
            Assert.That(rig.Unmap(c, 0x200000, Page, out unmapped), Is.Zero, ErrorReason.Current);
            Assert.That(unmapped, Is.EqualTo(Page));
            Assert.That(rig.Memory.PinnedPages, Is.EqualTo(pinned0));
            rig.AssertInvariants(c);
        });
    }

    [Test]
    public void WritableMapOfAReadOnlyPfnmapRange_IsEfault_AndAReadOnlyMapSucceeds()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _, _) = rig.OpenEdu();
            var bar = new Vfio.Tests.Platform.CountingMisc(rig.Machine);
            int fd = rig.User.Open(bar.NodePath);
            long a = rig.User.Mmap(0, 4 * Page, Prot.PROT_READ, MapFlags.MAP_SHARED, fd);
            Assert.That(a, Is.GreaterThan(0));
            rig.AssertRejected(c, Errno.EFAULT, () => rig.Map(c, (ulong)a, 0x100000, 4 * Page));
            Assert.That(rig.Map(c, (ulong)a, 0x100000, 4 * Page, flags: VfioType1Flags.MapRead), Is.Zero, ErrorReason.Current);
            rig.AssertInvariants(c);
        });
    }

    [Test]
    public void IommuWithOnly4KPages_Reports4KPgsizes_AndMapsHugetlbWith4KLeaves()
    {
        Vfio.Platform.Machine.MachineDescription d = Vfio.Platform.Machine.MachineDescriptionReader.Default;
        d = d with { Iommu = d.Iommu! with { PgsizeBitmap = 0x1000 } };
        var rig = new Type1Rig(machine: d);
        rig.Run(() =>
        {
            (int c, _, _) = rig.OpenEdu();
            Assert.That(rig.Iommu(c).PgsizeBitmap, Is.EqualTo(0x1000UL));
            Assert.That(System.Runtime.InteropServices.MemoryMarshal.Read<VfioIommuType1Info>(rig.GetFullInfo(c)).IovaPgsizes, Is.EqualTo(0x1000UL));
            ulong va = rig.HugeBuffer(2 * MiB);
            Assert.That(rig.Map(c, va, 0x40000000, 2 * MiB), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Iommu(c).Domains[0].PageTable!.Leaves4K, Is.EqualTo(512));
            Assert.That(rig.LeafLevel(c, 0x40000000), Is.EqualTo(1));
        });
    }

    [Test]
    public void T1_29_IdentityMapOfASharedAnonymousBuffer_MapsAndUnmaps([Values(VfioExtension.Type1, VfioExtension.Type1v2)] uint type)
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _, _) = rig.OpenEdu(type);
            long a = rig.User.Mmap(0, 2 * MiB, Prot.PROT_READ | Prot.PROT_WRITE, MapFlags.MAP_SHARED | MapFlags.MAP_ANONYMOUS);
            Assert.That(a, Is.GreaterThan(0));
            ulong va = (ulong)a;
            Assert.That(rig.Map(c, va, va, 2 * MiB), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Iommu(c).Domains[0].IovaToPhys(va + Page), Is.EqualTo(rig.User.Mm.Translate(va + Page) << 12));
            Assert.That(rig.Unmap(c, va, 2 * MiB, out ulong unmapped), Is.Zero, ErrorReason.Current);
            Assert.That(unmapped, Is.EqualTo(2 * MiB));
            rig.AssertInvariants(c);
        });
    }
}
