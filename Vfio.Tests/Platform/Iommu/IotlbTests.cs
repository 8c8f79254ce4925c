using NUnit.Framework;
using Vfio.Platform.Iommu;
using Vfio.Platform.Iommu.Hw;
using static Vfio.Tests.Platform.Iommu.IommuTestKit;

namespace Vfio.Tests.Platform.Iommu;

public sealed class IotlbTests
{
    private const ulong A = 0x10_0000UL;
    private const ulong B = 0x4000_0000UL; // 2 MiB leaf here
    private const long P = 0x1_0000_0000L;

    private static long Phys(IommuHardware hw, IommuDomain d, ulong iova, out IommuFaultReason reason)
    {
        reason = hw.Translate(d, iova, IommuAccess.Read, out long phys);
        return phys;
    }

    [Test]
    public void StaleEntry_HitsAfterUnmapFast_UntilTheSync()
    {
        (_, IommuHardware hw) = Create();
        IommuDomain d = hw.AllocDomain(IommuDomainType.Unmanaged);
        Assert.That(d.Map(A, P, K4, RW), Is.Zero);
        Assert.That(Phys(hw, d, A + 8, out _), Is.EqualTo(P + 8));

        var gather = new IotlbGather();
        Assert.That(d.UnmapFast(A, K4, ref gather), Is.EqualTo(K4));
        Assert.That(d.IovaToPhys(A), Is.Zero, "the page table no longer maps it");
        Assert.That(Phys(hw, d, A + 8, out IommuFaultReason stale), Is.EqualTo(P + 8), "the IOTLB still does");
        Assert.That(stale, Is.EqualTo(IommuFaultReason.None));

        d.IotlbSync(ref gather);
        Phys(hw, d, A + 8, out IommuFaultReason after);
        Assert.That(after, Is.EqualTo(IommuFaultReason.NotPresent));
    }

    [Test]
    public void SplitSuperpage_StaleUntilSync_ThenTheRestTranslatesThroughTheNewTable()
    {
        (_, IommuHardware hw) = Create();
        IommuDomain d = hw.AllocDomain(IommuDomainType.Unmanaged);
        Assert.That(d.Map(B, P, M2, RW), Is.Zero);
        Assert.That(Phys(hw, d, B, out _), Is.EqualTo(P));

        var gather = new IotlbGather();
        Assert.That(d.UnmapFast(B + (ulong)K4, K4, ref gather), Is.EqualTo(K4));
        Assert.That(Phys(hw, d, B + (ulong)K4, out _), Is.EqualTo(P + K4), "the 2 MiB entry still covers it");
        d.IotlbSync(ref gather);

        Phys(hw, d, B + (ulong)K4, out IommuFaultReason gone);
        Assert.That(gone, Is.EqualTo(IommuFaultReason.NotPresent), "the 4 KiB invalidation dropped the whole 2 MiB entry");
        Assert.That(Phys(hw, d, B + (ulong)(2 * K4), out _), Is.EqualTo(P + (2 * K4)));
    }

    [Test]
    public void Counters_AreExactInAScriptedSequence()
    {
        (_, IommuHardware hw) = Create();
        IommuDomain d = hw.AllocDomain(IommuDomainType.Unmanaged);
        Iotlb tlb = hw.Iotlb;
        Assert.That(d.Map(A, P, K4, RW), Is.Zero);
        Assert.That(d.Map(B, P, M2, RW), Is.Zero);

        Phys(hw, d, A, out _);                  // miss, walk, fill
        Phys(hw, d, A + 100, out _);            // hit
        Phys(hw, d, B + 0x1234, out _);         // miss, walk, fill (one 2 MiB entry)
        Phys(hw, d, B + 0x10_0000, out _);      // hit on the 2 MiB entry
        Assert.That((tlb.Hits, tlb.Misses, tlb.Fills, hw.Walks, tlb.Count), Is.EqualTo((2L, 2L, 2L, 2L, 2L)));

        Assert.That(d.Unmap(A, K4), Is.EqualTo(K4));
        Assert.That((tlb.Invalidations, tlb.InvalidatedEntries), Is.EqualTo((1L, 1L)));
        Phys(hw, d, A, out IommuFaultReason r);   // miss, walk finds nothing, no fill
        Assert.That(r, Is.EqualTo(IommuFaultReason.NotPresent));
        Assert.That((tlb.Hits, tlb.Misses, tlb.Fills, hw.Walks), Is.EqualTo((2L, 3L, 2L, 3L)));

        hw.FlushDomain(d.Id);
        Assert.That((tlb.DomainFlushes, tlb.Count), Is.EqualTo((1L, 0L)));
        Phys(hw, d, B, out _);                  // miss, fill
        hw.FlushAll();
        Assert.That((tlb.GlobalFlushes, tlb.Count, tlb.InvalidatedEntries), Is.EqualTo((1L, 0L, 3L)));
        Assert.That((tlb.Hits, tlb.Misses, tlb.Fills, tlb.Evictions), Is.EqualTo((2L, 4L, 3L, 0L)));
        Assert.That(hw.Translations, Is.EqualTo(6));
    }

    [Test]
    public void FullSet_EvictsRoundRobin()
    {
        (_, IommuHardware hw) = Create(new IommuHardwareConfig { IotlbEntries = 4 }); // one set of four ways
        IommuDomain d = hw.AllocDomain(IommuDomainType.Unmanaged);
        Assert.That(d.Map(A, P, 5 * K4, RW), Is.Zero);
        for (int i = 0; i < 5; i++)
        {
            Phys(hw, d, A + (ulong)(i * K4), out _);
        }

        Assert.That((hw.Iotlb.Fills, hw.Iotlb.Evictions, hw.Iotlb.Count), Is.EqualTo((5L, 1L, 4L)));
        Phys(hw, d, A + (ulong)(4 * K4), out _);
        Assert.That(hw.Iotlb.Hits, Is.EqualTo(1), "the last page is cached");
        Phys(hw, d, A, out _);
        Assert.That(hw.Iotlb.Misses, Is.EqualTo(6), "the first page was the victim");
    }

    [Test]
    public void DisabledIotlb_WalksEveryTime()
    {
        (_, IommuHardware hw) = Create(new IommuHardwareConfig { IotlbEntries = 0 });
        IommuDomain d = hw.AllocDomain(IommuDomainType.Unmanaged);
        Assert.That(d.Map(A, P, K4, RW), Is.Zero);
        Phys(hw, d, A, out _);
        Phys(hw, d, A, out _);
        Assert.That((hw.Iotlb.Hits, hw.Iotlb.Misses, hw.Walks, hw.Iotlb.Fills), Is.EqualTo((0L, 2L, 2L, 0L)));
    }

    [Test]
    public void DomainFlush_LeavesOtherDomainsCached()
    {
        (_, IommuHardware hw) = Create();
        IommuDomain d1 = hw.AllocDomain(IommuDomainType.Unmanaged);
        IommuDomain d2 = hw.AllocDomain(IommuDomainType.Unmanaged);
        Assert.That(d1.Map(A, P, K4, RW), Is.Zero);
        Assert.That(d2.Map(A, P + K4, K4, RW), Is.Zero);
        Assert.That(Phys(hw, d1, A, out _), Is.EqualTo(P));
        Assert.That(Phys(hw, d2, A, out _), Is.EqualTo(P + K4), "entries are tagged by domain");

        hw.FlushDomain(d1.Id);
        long hits = hw.Iotlb.Hits;
        Phys(hw, d2, A, out _);
        Phys(hw, d1, A, out _);
        Assert.That(hw.Iotlb.Hits, Is.EqualTo(hits + 1));
    }

    [Test]
    public void RangeInvalidation_OfAnotherRange_KeepsTheEntry()
    {
        (_, IommuHardware hw) = Create();
        IommuDomain d = hw.AllocDomain(IommuDomainType.Unmanaged);
        Assert.That(d.Map(A, P, 2 * K4, RW), Is.Zero);
        Phys(hw, d, A, out _);
        Phys(hw, d, A + (ulong)K4, out _);
        hw.InvalidateRange(d.Id, A + (ulong)K4, K4);
        Assert.That(hw.Iotlb.Count, Is.EqualTo(1));
        hw.InvalidateRange(d.Id, 0, 1L << 40); // large: scans every entry
        Assert.That(hw.Iotlb.Count, Is.Zero);
    }

    [Test]
    public void Gather_MergesAdjacentPagesOfOneSize_AndSyncsOnADisjointPageOrAnotherSize()
    {
        (_, IommuHardware hw) = Create();
        IommuDomain d = hw.AllocDomain(IommuDomainType.Unmanaged);
        var g = new IotlbGather();
        Assert.That(g.IsDisjoint(0x5000, K4), Is.False, "an empty gather is never disjoint");

        g.AddPage(d, 0x2000, K4);
        g.AddPage(d, 0x3000, K4);   // touches the end
        g.AddPage(d, 0x1000, K4);   // touches the start
        Assert.That((g.Start, g.End, g.Pgsize), Is.EqualTo((0x1000UL, 0x3fffUL, K4)));
        Assert.That(hw.Iotlb.Invalidations, Is.Zero);

        Assert.That(g.IsDisjoint(0x5000, K4), Is.True, "one page of gap");
        g.AddPage(d, 0x5000, K4);
        Assert.That(hw.Iotlb.Invalidations, Is.EqualTo(1), "the old range was flushed first");
        Assert.That((g.Start, g.End), Is.EqualTo((0x5000UL, 0x5fffUL)));

        g.AddPage(d, 0x20_0000, M2);
        Assert.That(hw.Iotlb.Invalidations, Is.EqualTo(2), "another page size flushes too");
        Assert.That((g.Start, g.End, g.Pgsize), Is.EqualTo((0x20_0000UL, 0x3f_ffffUL, M2)));

        d.IotlbSync(ref g);
        Assert.That(hw.Iotlb.Invalidations, Is.EqualTo(3));
        Assert.That(g.IsEmpty, Is.True);
    }

    [Test]
    public void UnmapOfScatteredRanges_FlushesOncePerDisjointRange()
    {
        (_, IommuHardware hw) = Create();
        IommuDomain d = hw.AllocDomain(IommuDomainType.Unmanaged);
        Assert.That(d.Map(A, P + K4, 8 * K4, RW), Is.Zero);
        Assert.That(d.Map(B, P + K4, 8 * K4, RW), Is.Zero);
        var g = new IotlbGather();
        Assert.That(d.UnmapFast(A, 8 * K4, ref g), Is.EqualTo(8 * K4));
        Assert.That(hw.Iotlb.Invalidations, Is.Zero, "one contiguous range gathered");
        Assert.That(d.UnmapFast(B, 8 * K4, ref g), Is.EqualTo(8 * K4));
        Assert.That(hw.Iotlb.Invalidations, Is.EqualTo(1), "the disjoint range forced a flush of the first");
        d.IotlbSync(ref g);
        Assert.That(hw.Iotlb.Invalidations, Is.EqualTo(2));
        Assert.That(d.PageTable!.TablesPendingFree, Is.Zero);
    }
}
