// Tests of the batched 4 KiB leaf writer (IoPageTable.MapSmallRunsLocked) and of
// IommuDomain.MapRuns built on it: every result — return value, bytes mapped, and the
// translation of every IOVA — must be what one MapPages call per run (with iommu_pgsize
// for runs of 2 MiB or more) gives, also when the batch fails part-way.

using NUnit.Framework;
using Vfio.Kernel;
using Vfio.Platform;
using Vfio.Platform.Iommu;
using Vfio.Platform.Iommu.Hw;
using Vfio.Platform.Mm;
using static Vfio.Tests.Platform.Iommu.IommuTestKit;

namespace Vfio.Tests.Platform.Iommu;

public sealed class IoPageTableBatchTests
{
    private const ulong A = 0x4000_0000UL + (3 * (ulong)M2); // 2 MiB aligned, inside the second GiB
    private const long BasePfn = 0x10_0000;                  // 4 GiB

    /// <summary>One-page runs at scattered frames (none adjacent to the one before).</summary>
    private static PfnRun[] Scattered(int count, long salt = 0)
    {
        var runs = new PfnRun[count];
        for (int i = 0; i < count; i++)
        {
            runs[i] = new PfnRun(BasePfn + (((i * 7919L) + salt) % 65_521 * 2), 1);
        }

        return runs;
    }

    /// <summary>The per-run path (MapRuns before the batched writer): iommu_pgsize (4 KiB for a one-page run) and one MapPages call per chunk of each run, stopping at the first error.</summary>
    private static (int Ret, long Mapped) MapPerRun(IoPageTable t, ulong iova, ReadOnlySpan<PfnRun> runs, IommuProt prot)
    {
        long mapped = 0;
        foreach (PfnRun r in runs)
        {
            long paddr = r.Pfn << 12;
            long remaining = r.Count << 12;
            while (remaining > 0)
            {
                long count = 1;
                long pgsize = remaining == K4 ? K4 : IommuDomain.Pgsize(t.PgsizeBitmap, iova, (ulong)paddr, (ulong)remaining, out count);
                int ret = t.MapPages(iova, paddr, pgsize, count, prot, out long done);
                mapped += done;
                remaining -= done;
                iova += (ulong)done;
                paddr += done;
                if (ret != 0)
                {
                    return (ret, mapped);
                }

                if (done == 0)
                {
                    break;
                }
            }
        }

        return (0, mapped);
    }

    /// <summary>Every 4 KiB IOVA of [lo, hi) translates the same way in both tables, and their counters agree.</summary>
    private static void AssertSameTranslations(IoPageTable expected, IoPageTable actual, ulong lo, ulong hi)
    {
        for (ulong a = lo; a < hi; a += (ulong)K4)
        {
            bool e = expected.Walk(a, out long ePhys, out IommuProt eProt, out int eLevel);
            bool g = actual.Walk(a, out long gPhys, out IommuProt gProt, out int gLevel);
            if ((e, ePhys, eProt, eLevel) != (g, gPhys, gProt, gLevel))
            {
                Assert.Fail($"IOVA 0x{a:x}: per-run path ({e}, 0x{ePhys:x}, {eProt}, level {eLevel}), batched ({g}, 0x{gPhys:x}, {gProt}, level {gLevel})");
            }
        }

        Assert.That((actual.Leaves4K, actual.Leaves2M, actual.Leaves1G, actual.TablesInUse), Is.EqualTo((expected.Leaves4K, expected.Leaves2M, expected.Leaves1G, expected.TablesInUse)));
        if (actual.WriterLock is null)
        {
            Assert.That(actual.CheckInvariantsLocked(), Is.Null); // a domain's table is checked by AssertConsistent
        }
    }

    [Test]
    public void ScatteredRunsAcrossLeafTablesAndTwoMiBBoundaries_MapAsThePerRunPathDoes()
    {
        // Starts five pages below a 2 MiB boundary and runs over two more, with a few
        // multi-page runs among the single pages.
        PfnRun[] runs = Scattered(1200);
        runs[3] = new PfnRun(0x20_0000, 3);
        runs[700] = new PfnRun(0x30_0001, 17);
        ulong iova = A - (ulong)(5 * K4);
        IommuDomain d = Paging();
        Assert.That(d.MapRuns(iova, runs, RW, out long mapped), Is.Zero);
        var reference = new IoPageTable();
        (int ret, long refMapped) = MapPerRun(reference, iova, runs, RW);
        Assert.That((ret, mapped), Is.EqualTo((0, refMapped)));
        Assert.That(mapped, Is.EqualTo((1200 + 2 + 16) * K4));
        AssertSameTranslations(reference, d.PageTable!, iova - (ulong)M2, iova + (ulong)(3 * M2));
        AssertConsistent(d);
    }

    [Test]
    public void MixedOnePageAndTwoMiBCapableRuns_TakeTwoMiBLeavesWhereAlignmentAllows()
    {
        // After seven single pages the IOVA is A + 7 pages; a 1100-page run starting at the
        // same offset in its 2 MiB frame maps 505 small pages, one 2 MiB leaf and 83 small.
        PfnRun[] runs = [.. Scattered(7), new(0x20_0000 + 7, 1100), .. Scattered(40, salt: 5)];
        IommuDomain d = Paging();
        Assert.That(d.MapRuns(A, runs, RW, out long mapped), Is.Zero);
        var reference = new IoPageTable();
        Assert.That(MapPerRun(reference, A, runs, RW), Is.EqualTo((0, mapped)));
        Assert.That(d.PageTable!.Leaves2M, Is.EqualTo(1));
        AssertSameTranslations(reference, d.PageTable!, A, A + (ulong)(3 * M2));
        AssertConsistent(d);
    }

    [Test]
    public void EntryPresentInTheMiddleOfABatch_IsEexist_AndTheDomainUnwindsToTheTableBefore()
    {
        IommuDomain d = Paging();
        Assert.That(d.Map(A + (ulong)(300 * K4), 0x7000_0000, K4, RW), Is.Zero);
        int tables = d.PageTable!.TablesInUse;
        Assert.That(d.MapRuns(A, Scattered(600), RW, out long mapped), Is.EqualTo(Errno.EEXIST.Negative()));
        Assert.That(mapped, Is.Zero, "what the call mapped was unmapped again");
        Assert.That((d.PageTable.Leaves4K, d.PageTable.TablesInUse), Is.EqualTo((1L, tables)));
        Assert.That(d.IovaToPhys(A + (ulong)(300 * K4)), Is.EqualTo(0x7000_0000));
        Assert.That(d.IovaToPhys(A), Is.Zero);
        Assert.That(d.IovaToPhys(A + (ulong)(299 * K4)), Is.Zero);
        AssertConsistent(d);
    }

    [Test]
    public void EntryPresentInTheMiddleOfABatch_StopsTheWriterWhereThePerRunPathStops()
    {
        PfnRun[] runs = Scattered(600);
        runs[299] = new PfnRun(0x20_0000, 4); // pages 299..302: the present entry is the second
        var batched = new IoPageTable();
        var reference = new IoPageTable();
        Assert.That(batched.MapPages(A + (ulong)(300 * K4), 0x7000_0000, K4, 1, RW, out _), Is.Zero);
        Assert.That(reference.MapPages(A + (ulong)(300 * K4), 0x7000_0000, K4, 1, RW, out _), Is.Zero);
        int ret = batched.MapSmallRunsLocked(A, runs, RW, out long mapped, out int consumed);
        Assert.That((ret, mapped), Is.EqualTo(MapPerRun(reference, A, runs, RW)));
        Assert.That((ret, mapped, consumed), Is.EqualTo((Errno.EEXIST.Negative(), 300 * K4, 299)), "the run holding the present entry is not consumed");
        AssertSameTranslations(reference, batched, A, A + (ulong)M2);
    }

    [Test]
    public void TableAllocationFailingInTheMiddleOfABatch_IsEnomem_AndLeavesTheTableAsBefore()
    {
        // From an empty tree the batch allocates the level-3, level-2 and level-1 tables for
        // A, then a second level-1 table when it crosses A + 2 MiB: that fourth one fails.
        (SimMachine m, IommuHardware hw) = Create();
        IommuDomain d = hw.AllocDomain(IommuDomainType.Unmanaged);
        m.Kernel.Faults.FailNth(4, IoPageTable.AllocFaultSite);
        Assert.That(d.MapRuns(A, Scattered(600), RW, out long mapped), Is.EqualTo(Errno.ENOMEM.Negative()));
        Assert.That(m.Kernel.Faults.Consumed, Is.True);
        Assert.That(mapped, Is.Zero);
        Assert.That((d.PageTable!.Leaves4K, d.PageTable.TablesInUse), Is.EqualTo((0L, 1)), "unwound, and the emptied tables freed with it");
        Assert.That(d.IovaToPhys(A), Is.Zero);
        AssertConsistent(d);

        // The writer itself stops with exactly the first leaf table written.
        (SimMachine m2, _) = Create();
        var table = new IoPageTable(kernel: m2.Kernel);
        m2.Kernel.Faults.FailNth(4, IoPageTable.AllocFaultSite);
        Assert.That(table.MapSmallRunsLocked(A, Scattered(600), RW, out long written, out int consumed), Is.EqualTo(Errno.ENOMEM.Negative()));
        Assert.That((written, consumed, table.Leaves4K), Is.EqualTo((512 * K4, 512, 512L)));
    }

    [Test]
    public void MisalignedIova_IsEinval_AndMapsNothing()
    {
        var batched = new IoPageTable();
        var reference = new IoPageTable();
        PfnRun[] runs = Scattered(3);
        int ret = batched.MapSmallRunsLocked(A + 0x800, runs, RW, out long mapped, out int consumed);
        Assert.That((ret, mapped, consumed), Is.EqualTo((Errno.EINVAL.Negative(), 0L, 0)));
        Assert.That(MapPerRun(reference, A + 0x800, runs, RW), Is.EqualTo((ret, mapped)));
        Assert.That((batched.Leaves4K, batched.TablesInUse), Is.EqualTo((0L, 1)));
    }

    [Test]
    public void RunCrossingTheAddressWidth_IsEfault_AfterTheRunsBeforeIt()
    {
        // A 32-bit table: two single pages fit below 4 GiB, the two-page run after them does not.
        var batched = new IoPageTable(addressWidth: 32);
        var reference = new IoPageTable(addressWidth: 32);
        PfnRun[] runs = [new(BasePfn, 1), new(BasePfn + 2, 1), new(BasePfn + 4, 2)];
        ulong iova = (1UL << 32) - (ulong)(3 * K4);
        int ret = batched.MapSmallRunsLocked(iova, runs, RW, out long mapped, out int consumed);
        Assert.That((ret, mapped, consumed), Is.EqualTo((Errno.EFAULT.Negative(), 2 * K4, 2)));
        Assert.That(MapPerRun(reference, iova, runs, RW), Is.EqualTo((ret, mapped)));
        AssertSameTranslations(reference, batched, iova - (ulong)K4, 1UL << 32);
    }

    [Test]
    public void PhysicalAddressBeyond52Bits_IsErange_AfterTheRunsBeforeIt()
    {
        var batched = new IoPageTable();
        var reference = new IoPageTable();
        PfnRun[] runs = [new(BasePfn, 1), new((1L << 40) - 1, 2), new(BasePfn + 2, 1)];
        int ret = batched.MapSmallRunsLocked(A, runs, RW, out long mapped, out int consumed);
        Assert.That((ret, mapped, consumed), Is.EqualTo((Errno.ERANGE.Negative(), K4, 1)));
        Assert.That(MapPerRun(reference, A, runs, RW), Is.EqualTo((ret, mapped)));
        AssertSameTranslations(reference, batched, A, A + (ulong)(4 * K4));
    }

    [Test]
    public void WriterStopsBeforeTheFirstRunOfTwoMiB()
    {
        var table = new IoPageTable();
        PfnRun[] runs = [new(BasePfn, 1), new(BasePfn + 2, 511), new(0x20_0000, 512), new(BasePfn + 4, 1)];
        Assert.That(table.MapSmallRunsLocked(A, runs, RW, out long mapped, out int consumed), Is.Zero);
        Assert.That((mapped, consumed, table.Leaves4K), Is.EqualTo((512 * K4, 2, 512L)));
    }

    [Test]
    public void WithoutReadOrWrite_NothingIsMapped_AsOnThePerRunPath()
    {
        var batched = new IoPageTable();
        var reference = new IoPageTable();
        PfnRun[] runs = Scattered(20);
        int ret = batched.MapSmallRunsLocked(A, runs, IommuProt.Cache, out long mapped, out int consumed);
        Assert.That((ret, mapped, consumed), Is.EqualTo((0, 0L, 20)));
        Assert.That(MapPerRun(reference, A, runs, IommuProt.Cache), Is.EqualTo((ret, mapped)));
        Assert.That(batched.TablesInUse, Is.EqualTo(reference.TablesInUse));
    }

    [Test]
    public void WithPromotion_AFilledLeafTableOfContiguousFramesBecomesATwoMiBLeaf_AsOnThePerRunPath()
    {
        // 512 one-page runs of consecutive, 2 MiB-aligned frames fill one leaf table.
        var runs = new PfnRun[520];
        for (int i = 0; i < runs.Length; i++)
        {
            runs[i] = new PfnRun(0x20_0000 + i, 1);
        }

        var batched = new IoPageTable(promote: true);
        var reference = new IoPageTable(promote: true);
        Assert.That(batched.MapSmallRunsLocked(A, runs, RW, out long mapped, out _), Is.Zero);
        Assert.That(MapPerRun(reference, A, runs, RW), Is.EqualTo((0, mapped)));
        Assert.That((batched.Leaves2M, batched.Leaves4K), Is.EqualTo((1L, 8L)));
        AssertSameTranslations(reference, batched, A, A + (ulong)(2 * M2));
    }
}
