// The pfn_list of a type1 dma (VfioPfnList, modelling the per-dma vfio_pfn rb-tree of
// drivers/vfio/vfio_iommu_type1.c v6.12 as an open-addressing table): lookup, insert,
// removal with backward shift, growth, reuse, and no allocation once grown.

using NUnit.Framework;
using Vfio.Iommu.Type1;

namespace Vfio.Tests.Type1;

[TestFixture]
public sealed class VfioPfnListTests
{
    private const ulong P = 4096;

    [Test]
    public void AnEmptyListFindsNothingAndHasNoSlots()
    {
        var list = new VfioPfnList();
        Assert.That(list.IndexOf(0), Is.EqualTo(-1));
        Assert.That(list.Contains(P), Is.False);
        Assert.That(list.Count, Is.Zero);
        Assert.That(list.Capacity, Is.Zero);
        Assert.That(Entries(list), Is.Empty);
    }

    [Test]
    public void AnAddedPageIsFoundWithOnePinAndItsFrame()
    {
        var list = new VfioPfnList();
        list.Add(7 * P, 0x1234);
        int at = list.IndexOf(7 * P);
        Assert.That(at, Is.GreaterThanOrEqualTo(0));
        VfioPfn e = list.At(at);
        Assert.That((e.Iova, e.Pfn, e.RefCount), Is.EqualTo((7 * P, 0x1234L, 1)));
        Assert.That(list.Contains(8 * P), Is.False);
        list.At(at).RefCount++;
        Assert.That(list.At(list.IndexOf(7 * P)).RefCount, Is.EqualTo(2), "At returns the entry itself, not a copy");
    }

    [Test]
    public void AddingAPageTwiceIsAProgrammingError()
    {
        var list = new VfioPfnList();
        list.Add(P, 1);
        Assert.That(() => list.Add(P, 2), Throws.InvalidOperationException);
        Assert.That(list.Count, Is.EqualTo(1));
    }

    [Test]
    public void RandomInsertsAndRemovalsMatchASortedDictionary([Values(1, 2, 3)] int seed)
    {
        var rng = new Random(seed);
        var list = new VfioPfnList();
        var model = new SortedDictionary<ulong, long>();
        for (int step = 0; step < 20_000; step++)
        {
            // Few distinct keys, clustered and spread, so probe chains collide and wrap.
            ulong iova = (rng.Next(3) == 0 ? (ulong)rng.Next(64) : (ulong)rng.Next(1 << 20) << 7) * P;
            int at = list.IndexOf(iova);
            Assert.That(at >= 0, Is.EqualTo(model.ContainsKey(iova)), $"step {step}: lookup of 0x{iova:x}");
            if (at >= 0)
            {
                Assert.That(list.At(at).Pfn, Is.EqualTo(model[iova]));
                list.RemoveAt(at);
                model.Remove(iova);
            }
            else
            {
                long pfn = rng.NextInt64(1, 1L << 40);
                list.Add(iova, pfn);
                model.Add(iova, pfn);
            }

            Assert.That(list.Count, Is.EqualTo(model.Count));
        }

        Assert.That(Entries(list).OrderBy(e => e.Iova).Select(e => (e.Iova, e.Pfn)), Is.EqualTo(model.Select(kv => (kv.Key, kv.Value))));
        foreach (ulong k in model.Keys)
        {
            Assert.That(list.Contains(k), Is.True);
        }
    }

    [Test]
    public void RemovingEveryEntryInAnyOrderEmptiesTheList([Values(0, 1)] int order)
    {
        var list = new VfioPfnList();
        for (ulong i = 0; i < 512; i++)
        {
            list.Add(i * P, (long)i + 100);
        }

        var keys = Enumerable.Range(0, 512).Select(i => (ulong)i * P).ToList();
        if (order == 1)
        {
            keys.Reverse();
        }

        foreach (ulong k in keys)
        {
            int at = list.IndexOf(k);
            Assert.That(at, Is.GreaterThanOrEqualTo(0), $"0x{k:x} lost by an earlier removal");
            list.RemoveAt(at);
            Assert.That(list.Contains(k), Is.False);
        }

        Assert.That(list.Count, Is.Zero);
        Assert.That(Entries(list), Is.Empty);
    }

    [Test]
    public void ClearKeepsTheSlotsAndAReusedListAllocatesNothing()
    {
        var list = new VfioPfnList();
        Fill(list);
        int capacity = list.Capacity;
        list.Clear();
        Assert.That((list.Count, list.Capacity), Is.EqualTo((0, capacity)));
        Assert.That(list.Contains(0), Is.False);

        Fill(list);
        Drain(list);
        long before = GC.GetAllocatedBytesForCurrentThread();
        Fill(list);
        int n = 0;
        foreach (VfioPfn e in list)
        {
            n += e.RefCount;
        }

        Drain(list);
        Assert.That(GC.GetAllocatedBytesForCurrentThread() - before, Is.Zero, "insert, lookup, walk and removal of a grown list");
        Assert.That(n, Is.EqualTo(512));
        Assert.That(list.Capacity, Is.EqualTo(capacity));
    }

    private static void Fill(VfioPfnList list)
    {
        for (ulong i = 0; i < 512; i++)
        {
            list.Add(i * P, (long)i);
        }
    }

    private static void Drain(VfioPfnList list)
    {
        for (ulong i = 0; i < 512; i++)
        {
            list.RemoveAt(list.IndexOf(i * P));
        }
    }

    private static List<VfioPfn> Entries(VfioPfnList list)
    {
        var all = new List<VfioPfn>();
        foreach (VfioPfn e in list)
        {
            all.Add(e);
        }

        return all;
    }
}
