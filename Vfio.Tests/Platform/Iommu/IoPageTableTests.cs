using NUnit.Framework;
using Vfio.Kernel;
using Vfio.Platform.Iommu;
using Vfio.Platform.Iommu.Hw;
using static Vfio.Tests.Platform.Iommu.IommuTestKit;

namespace Vfio.Tests.Platform.Iommu;

public sealed class IoPageTableTests
{
    private const ulong A = 0x4000_0000UL + (3 * (ulong)M2); // 2 MiB aligned, inside the second GiB
    private const long P = 0x1_0000_0000L;                    // 1 GiB aligned

    // ---- Superpage selection (iommu_pgsize).

    [Test]
    public void AlignedContiguousTwoMiB_MapsAsOneTwoMiBLeaf()
    {
        IommuDomain d = Paging();
        Assert.That(d.Map(A, P, M2, RW), Is.Zero);
        IoPageTable pt = d.PageTable!;
        Assert.That((pt.Leaves4K, pt.Leaves2M, pt.Leaves1G), Is.EqualTo((0L, 1L, 0L)));
        Assert.That(pt.TablesInUse, Is.EqualTo(3), "root, level 3, level 2");
        Assert.That(pt.Walk(A + 0x12345, out long phys, out IommuProt prot, out int level), Is.True);
        Assert.That((phys, prot, level), Is.EqualTo((P + 0x12345, RW, 2)));
        AssertConsistent(d);
    }

    [Test]
    public void FourKiBMapAfterItsLeafTableWasFreedAndReused_GetsATableOfItsOwn()
    {
        // A 4 KiB map remembers the last leaf table it used. Unmapping A's only leaf frees
        // that table and its parent; two 2 MiB maps in other GiBs take both from the pool as
        // level-2 tables. The next 4 KiB map at A must walk again, not write into the
        // remembered table, which now maps another GiB.
        IommuDomain d = Paging();
        Assert.That(d.Map(A, P, K4, RW), Is.Zero);
        Assert.That(d.Unmap(A, K4), Is.EqualTo(K4));
        Assert.That(d.Map(A + (ulong)G1, P, M2, RW), Is.Zero);
        Assert.That(d.Map(A + (2 * (ulong)G1), P + M2, M2, RW), Is.Zero);
        Assert.That(d.Map(A, P + (4 * M2), K4, RW), Is.Zero);
        Assert.That(d.IovaToPhys(A), Is.EqualTo(P + (4 * M2)));
        Assert.That(d.IovaToPhys(A + (ulong)G1), Is.EqualTo(P));
        Assert.That(d.IovaToPhys(A + (2 * (ulong)G1)), Is.EqualTo(P + M2));
        Assert.That((d.PageTable!.Leaves4K, d.PageTable.Leaves2M), Is.EqualTo((1L, 2L)));
        AssertConsistent(d);
    }

    [Test]
    public void MisalignedPhysicalAddress_MapsAsFourKiBLeaves()
    {
        IommuDomain d = Paging();
        Assert.That(d.Map(A, P + K4, M2, RW), Is.Zero);
        Assert.That((d.PageTable!.Leaves4K, d.PageTable.Leaves2M), Is.EqualTo((512L, 0L)));
        Assert.That(d.IovaToPhys(A + M2 - 1), Is.EqualTo(P + K4 + M2 - 1));
        AssertConsistent(d);
    }

    [Test]
    public void AlignedOneGiB_MapsAsOneOneGiBLeaf()
    {
        IommuDomain d = Paging();
        Assert.That(d.Map(1UL << 30, P, G1, RW), Is.Zero);
        Assert.That((d.PageTable!.Leaves4K, d.PageTable.Leaves2M, d.PageTable.Leaves1G), Is.EqualTo((0L, 0L, 1L)));
        Assert.That(d.PageTable.TablesInUse, Is.EqualTo(2));
        Assert.That(d.IovaToPhys((1UL << 30) + 0x3456_7890), Is.EqualTo(P + 0x3456_7890));
    }

    [Test]
    public void BitmapWithoutTwoMiB_MapsFourKiBLeaves()
    {
        IommuDomain d = Paging(new IommuHardwareConfig { PgsizeBitmap = (ulong)(K4 | G1) });
        Assert.That(d.Map(A, P, M2, RW), Is.Zero);
        Assert.That((d.PageTable!.Leaves4K, d.PageTable.Leaves2M), Is.EqualTo((512L, 0L)));
    }

    [Test]
    public void RangeStraddlingTwoMiBBoundaries_UsesSmallPagesOnlyAtTheEdges()
    {
        IommuDomain d = Paging();
        // 4 KiB before a 2 MiB boundary, one whole 2 MiB page, 8 KiB after it.
        Assert.That(d.Map(A - (ulong)K4, P - K4, K4 + M2 + (2 * K4), RW), Is.Zero);
        Assert.That((d.PageTable!.Leaves4K, d.PageTable.Leaves2M), Is.EqualTo((3L, 1L)));
        AssertConsistent(d);
    }

    [Test]
    public void IommuPgsize_CountsSmallPagesUpToTheNextLargerBoundary()
    {
        long pg = IommuDomain.Pgsize(IoPageTable.DefaultPgsizeBitmap, 0x1ff000, 0x1ff000, (ulong)(M2 * 4), out long count);
        Assert.That((pg, count), Is.EqualTo((K4, 1L)));
        pg = IommuDomain.Pgsize(IoPageTable.DefaultPgsizeBitmap, 0x200000, 0x200000, (ulong)(M2 * 3), out count);
        Assert.That((pg, count), Is.EqualTo((M2, 3L)));
        pg = IommuDomain.Pgsize(IoPageTable.DefaultPgsizeBitmap, 0x200000, 0x201000, (ulong)(M2 * 3), out count);
        Assert.That((pg, count), Is.EqualTo((K4, 3L * 512)), "iova and paddr differ modulo 2 MiB: no larger page is ever possible");
    }

    // ---- Errors of iommu_map.

    [Test]
    public void MapChecks_FollowIommuMapOrder()
    {
        (_, IommuHardware hw) = Create();
        IommuDomain identity = hw.AllocDomain(IommuDomainType.Identity);
        IommuDomain d = hw.AllocDomain(IommuDomainType.Unmanaged);
        Assert.That(identity.Map(A, P, K4, RW), Is.EqualTo(Errno.EINVAL.Negative()), "not a paging domain");
        Assert.That(d.Map(A + 1, P, K4, RW), Is.EqualTo(Errno.EINVAL.Negative()), "iova");
        Assert.That(d.Map(A, P + 8, K4, RW), Is.EqualTo(Errno.EINVAL.Negative()), "paddr");
        Assert.That(d.Map(A, P, K4 + 1, RW), Is.EqualTo(Errno.EINVAL.Negative()), "size");
        Assert.That(d.Map(1UL << 48, P, K4, RW), Is.EqualTo(Errno.EFAULT.Negative()), "beyond the address width");
        Assert.That(d.Map(A, P, K4, IommuProt.Cache), Is.Zero, "no read or write: nothing to do");
        Assert.That(d.Map(A, 1L << 52, K4, RW), Is.EqualTo(Errno.ERANGE.Negative()));
        Assert.That(d.PageTable!.MappedBytes, Is.Zero);
        Assert.That(d.PageTable.TablesInUse, Is.EqualTo(1));
    }

    [Test]
    public void MapOverAnExistingLeaf_IsEexist_AndTheUnwindLeavesNothingBehind()
    {
        IommuDomain d = Paging();
        Assert.That(d.Map(A, P, M2, RW), Is.Zero);
        Assert.That(d.Map(A + (ulong)(8 * K4), P + (8 * K4), K4, RW), Is.EqualTo(Errno.EEXIST.Negative()), "4 KiB inside a 2 MiB leaf");

        int tables = d.PageTable!.TablesInUse;
        // Starts 8 KiB below the leaf: two pages are mapped, then the leaf is found.
        Assert.That(d.Map(A - (ulong)(2 * K4), 0x2_0000_0000 - (2 * K4), 4 * K4, RW), Is.EqualTo(Errno.EEXIST.Negative()));
        Assert.That((d.PageTable.Leaves4K, d.PageTable.Leaves2M), Is.EqualTo((0L, 1L)));
        Assert.That(d.PageTable.TablesInUse, Is.EqualTo(tables), "the level-1 table the two pages needed was freed by the unwind");
        Assert.That(d.IovaToPhys(A - (ulong)K4), Is.Zero);
        Assert.That(d.IovaToPhys(A), Is.EqualTo(P));
        AssertConsistent(d);
    }

    [Test]
    public void MapOverlappingSmallPages_IsEexist_AndKeepsThePagesThatWereThere()
    {
        IommuDomain d = Paging();
        Assert.That(d.Map(A + (ulong)(2 * K4), 0x7000_0000, K4, IommuProt.Read), Is.Zero);
        Assert.That(d.Map(A, P, 4 * K4, RW), Is.EqualTo(Errno.EEXIST.Negative()));
        Assert.That(d.PageTable!.Leaves4K, Is.EqualTo(1));
        Assert.That(d.IovaToPhys(A), Is.Zero);
        Assert.That(d.IovaToPhys(A + (ulong)(2 * K4)), Is.EqualTo(0x7000_0000));
        AssertConsistent(d);
    }

    [Test]
    public void FailedTableAllocation_IsEnomem_AndLeavesNoEmptyTable()
    {
        (Vfio.Platform.SimMachine m, IommuHardware hw) = Create();
        IommuDomain d = hw.AllocDomain(IommuDomainType.Unmanaged);
        m.Kernel.Faults.FailNth(2, IoPageTable.AllocFaultSite);
        Assert.That(d.Map(A, P, K4, RW), Is.EqualTo(Errno.ENOMEM.Negative()));
        Assert.That(m.Kernel.Faults.Consumed, Is.True);
        Assert.That(d.PageTable!.TablesInUse, Is.EqualTo(1), "the level-3 table linked before the failure is gone");
        AssertConsistent(d);
    }

    // ---- Unmap sizes and splitting.

    [Test]
    public void ASplitWhoseTableAllocationFails_UnmapsNothing_AndKeepsTheLeaf()
    {
        (Vfio.Platform.SimMachine m, IommuHardware hw) = Create();
        IommuDomain d = hw.AllocDomain(IommuDomainType.Unmanaged);
        Assert.That(d.Map(A, P, M2, RW), Is.Zero);
        m.Kernel.Faults.FailNth(1, IoPageTable.AllocFaultSite);
        Assert.That(d.Unmap(A + (ulong)(5 * K4), K4), Is.Zero, "arm_lpae_split_blk_unmap returns 0 when it cannot allocate");
        Assert.That(m.Kernel.Faults.Consumed, Is.True);
        Assert.That(d.PageTable!.Leaves2M, Is.EqualTo(1));
        Assert.That(d.IovaToPhys(A + (ulong)(5 * K4)), Is.EqualTo(P + (5 * K4)));
        AssertConsistent(d);
    }

    [Test]
    public void EnforceCacheCoherency_IsRefusedOnceTheDomainHasMappings()
    {
        IommuDomain d = Paging();
        Assert.That(d.Map(A, P, K4, RW), Is.Zero);
        Assert.That(d.EnforceCacheCoherency(), Is.False);
        Assert.That(d.EnforcesCacheCoherency, Is.False);
        Assert.That(d.Unmap(A, K4), Is.EqualTo(K4));
        Assert.That(d.EnforceCacheCoherency(), Is.True);
        Assert.That(d.EnforceCacheCoherency(), Is.True, "asking again keeps it");
    }

    [Test]
    public void AFreedDomain_TranslatesNothing_EvenIfItsIdIsReused()
    {
        (_, IommuHardware hw) = Create();
        IommuDomain old = hw.AllocDomain(IommuDomainType.Unmanaged);
        Assert.That(old.Map(A, P, K4, RW), Is.Zero);
        old.Free();
        IommuDomain fresh = hw.AllocDomain(IommuDomainType.Unmanaged);
        Assert.That(fresh.Id, Is.EqualTo(old.Id), "the id is reused");
        Assert.That(fresh.Map(A, P, K4, RW), Is.Zero);
        Assert.That(hw.Translate(fresh, A, IommuAccess.Read, out _), Is.EqualTo(IommuFaultReason.None));
        Assert.That(hw.Translate(old, A, IommuAccess.Read, out _), Is.EqualTo(IommuFaultReason.Blocked));
    }

    [Test]
    public void PartialUnmapOfTwoMiBLeaf_SplitsIt_AndReturnsOnlyTheRequestedSize()
    {
        IommuDomain d = Paging();
        Assert.That(d.Map(A, P, M2, RW), Is.Zero);
        Assert.That(d.Unmap(A + (ulong)(5 * K4), K4), Is.EqualTo(K4));
        Assert.That((d.PageTable!.Leaves4K, d.PageTable.Leaves2M), Is.EqualTo((511L, 0L)));
        Assert.That(d.IovaToPhys(A + (ulong)(5 * K4)), Is.Zero);
        Assert.That(d.IovaToPhys(A + (ulong)(6 * K4) + 7), Is.EqualTo(P + (6 * K4) + 7));
        Assert.That(d.IovaToPhys(A), Is.EqualTo(P));
        AssertConsistent(d);
    }

    [Test]
    public void PartialUnmapOfOneGiBLeaf_SplitsTwoLevels()
    {
        IommuDomain d = Paging();
        Assert.That(d.Map(1UL << 30, P, G1, RW), Is.Zero);
        Assert.That(d.Unmap((1UL << 30) + (ulong)M2 + (ulong)K4, K4), Is.EqualTo(K4));
        IoPageTable pt = d.PageTable!;
        Assert.That((pt.Leaves4K, pt.Leaves2M, pt.Leaves1G), Is.EqualTo((511L, 511L, 0L)));
        Assert.That(d.IovaToPhys((1UL << 30) + (ulong)M2), Is.EqualTo(P + M2));
        Assert.That(d.IovaToPhys((1UL << 30) + (ulong)M2 + (ulong)K4), Is.Zero);
        Assert.That(d.IovaToPhys((1UL << 30) + (ulong)(5 * M2)), Is.EqualTo(P + (5 * M2)));
        AssertConsistent(d);
    }

    [Test]
    public void UnmapAtTwoMiBOverSmallPages_FreesTheTableAndCountsTheWholeBlock()
    {
        IommuDomain d = Paging();
        Assert.That(d.Map(A, P + K4, 3 * K4, RW), Is.Zero);
        Assert.That(d.Unmap(A, M2), Is.EqualTo(M2), "__arm_lpae_unmap frees a table met at the page size's level and counts its size");
        Assert.That(d.PageTable!.Leaves4K, Is.Zero);
        Assert.That(d.PageTable.TablesInUse, Is.EqualTo(1));
        Assert.That(d.PageTable.TablesPooled, Is.EqualTo(3));
        AssertConsistent(d);
    }

    [Test]
    public void UnmapStopsAtTheFirstHole()
    {
        IommuDomain d = Paging();
        Assert.That(d.Map(A, P, 4 * K4, RW), Is.Zero);
        Assert.That(d.Map(A + (ulong)(5 * K4), P, K4, RW), Is.Zero);
        Assert.That(d.Unmap(A, 8 * K4), Is.EqualTo(4 * K4));
        Assert.That(d.Unmap(A, 8 * K4), Is.Zero, "nothing at the start");
        Assert.That(d.Unmap(A + 1, K4), Is.Zero, "misaligned");
        Assert.That(d.PageTable!.Leaves4K, Is.EqualTo(1));
        AssertConsistent(d);
    }

    [Test]
    public void UnmapFast_KeepsUnlinkedTablesOutOfThePoolUntilTheSync()
    {
        IommuDomain d = Paging();
        Assert.That(d.Map(A, P + K4, 2 * K4, RW), Is.Zero);
        var gather = new IotlbGather();
        Assert.That(d.UnmapFast(A, 2 * K4, ref gather), Is.EqualTo(2 * K4));
        Assert.That(gather.TablesToFree, Is.EqualTo(3));
        Assert.That((d.PageTable!.TablesPendingFree, d.PageTable.TablesPooled), Is.EqualTo((3, 0)));
        Assert.That((gather.Start, gather.End, gather.Pgsize), Is.EqualTo((A, A + (ulong)(2 * K4) - 1, K4)));
        d.IotlbSync(ref gather);
        Assert.That((d.PageTable.TablesPendingFree, d.PageTable.TablesPooled), Is.EqualTo((0, 3)));
        Assert.That(gather.IsEmpty, Is.True);
    }

    [Test]
    public void Free_ReturnsTablesAndTheDomainId()
    {
        (_, IommuHardware hw) = Create();
        IommuDomain d = hw.AllocDomain(IommuDomainType.Unmanaged);
        Assert.That(d.Map(A, P + K4, 16 * K4, RW), Is.Zero);
        d.Free();
        Assert.That(d.PageTable!.TablesInUse, Is.EqualTo(1));
        Assert.That(d.PageTable.MappedBytes, Is.Zero);
        Assert.That(() => d.Map(A, P, K4, RW), Throws.InvalidOperationException);
        Assert.That(hw.AllocDomain(IommuDomainType.Dma).Id, Is.EqualTo(d.Id), "lowest free id");
    }

    // ---- Promotion (design variant).

    [Test]
    public void Promotion_CollapsesAFullContiguousTable_AndCascadesToOneGiB()
    {
        IommuDomain d = Paging(new IommuHardwareConfig { Promote = true });
        IoPageTable pt = d.PageTable!;
        Assert.That(d.Map(A, P, M2 / 2, RW), Is.Zero);
        Assert.That(pt.Leaves4K, Is.EqualTo(256));
        Assert.That(d.Map(A + (ulong)(M2 / 2), P + (M2 / 2), M2 / 2, RW), Is.Zero);
        Assert.That((pt.Leaves4K, pt.Leaves2M, pt.Promotions), Is.EqualTo((0L, 1L, 1L)));
        AssertConsistent(d);

        ulong g = 4UL << 30;
        Assert.That(d.Map(g, 2 * G1, G1 / 2, RW), Is.Zero);
        Assert.That(d.Map(g + (ulong)(G1 / 2), (2 * G1) + (G1 / 2), G1 / 2, RW), Is.Zero);
        Assert.That((pt.Leaves2M, pt.Leaves1G), Is.EqualTo((1L, 1L)));
        Assert.That(d.Unmap(g + (ulong)K4, K4), Is.EqualTo(K4), "a promoted leaf splits like any other");
        Assert.That(d.IovaToPhys(g + (ulong)(2 * K4)), Is.EqualTo((2 * G1) + (2 * K4)));
        AssertConsistent(d);
    }

    [Test]
    public void Promotion_LeavesNonContiguousOrMixedTablesAlone_AndIsOffByDefault()
    {
        IommuDomain on = Paging(new IommuHardwareConfig { Promote = true });
        Assert.That(on.Map(A, P, M2 / 2, RW), Is.Zero);
        Assert.That(on.Map(A + (ulong)(M2 / 2), P + M2, M2 / 2, RW), Is.Zero, "not contiguous");
        Assert.That(on.PageTable!.Leaves2M, Is.Zero);
        Assert.That(on.Map(A + (ulong)M2, P, M2 / 2, IommuProt.Read), Is.Zero);
        Assert.That(on.Map(A + (ulong)M2 + (ulong)(M2 / 2), P + (M2 / 2), M2 / 2, RW), Is.Zero, "protections differ");
        Assert.That(on.PageTable.Leaves2M, Is.Zero);

        IommuDomain off = Paging();
        Assert.That(off.Map(A, P, M2 / 2, RW), Is.Zero);
        Assert.That(off.Map(A + (ulong)(M2 / 2), P + (M2 / 2), M2 / 2, RW), Is.Zero);
        Assert.That(off.PageTable!.Leaves4K, Is.EqualTo(512));
    }

    // ---- Allocation.

    [Test]
    public void SteadyStateMapAndUnmap_AllocateNothing()
    {
        IommuDomain d = Paging();
        for (int i = 0; i < 3; i++)
        {
            Cycle(d);
        }

        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 50; i++)
        {
            Cycle(d);
        }

        Assert.That(GC.GetAllocatedBytesForCurrentThread() - before, Is.Zero);

        static void Cycle(IommuDomain d)
        {
            if (d.Map(A, P + K4, 64 * K4, RW) != 0 || d.Map(8UL << 30, 2 * G1, 2 * M2, RW) != 0)
            {
                throw new InvalidOperationException("map failed");
            }

            d.Hardware.Translate(d, A, IommuAccess.Read, out _);
            d.Unmap(A + (ulong)(3 * K4), K4);
            d.Unmap(A, 3 * K4);
            d.Unmap(A + (ulong)(4 * K4), 60 * K4);
            d.Unmap((8UL << 30) + (ulong)K4, K4);
            d.Unmap(8UL << 30, 2 * M2);
            if (d.PageTable!.MappedBytes != 0)
            {
                throw new InvalidOperationException("unmap left pages behind");
            }
        }
    }
}
