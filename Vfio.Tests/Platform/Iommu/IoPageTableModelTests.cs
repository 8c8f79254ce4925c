// Seeded random map/unmap sequences checked against a reference model: a dictionary from
// 4 KiB IOVA page to (physical page, protection), with the kernel's unmap arithmetic
// (greedy page sizes, stop at the first hole, a table met at the page size's level counts
// whole).

using NUnit.Framework;
using Vfio.Kernel;
using Vfio.Platform.Iommu;
using Vfio.Platform.Iommu.Hw;
using static Vfio.Tests.Platform.Iommu.IommuTestKit;

namespace Vfio.Tests.Platform.Iommu;

public sealed class IoPageTableModelTests
{
    private const ulong Window = 4UL << 30; // IOVAs [0, 4 GiB): four 1 GiB slots
    private const int Ops = 2500;

    private static readonly ulong[] s_sizes = [(ulong)K4, (ulong)M2, (ulong)G1];

    [Test]
    public void RandomMapsAndUnmaps_TranslateLikeTheModel([Values(1, 2, 3, 4)] int seed)
    {
        IommuDomain d = Paging();
        IoPageTable pt = d.PageTable!;
        var model = new Dictionary<ulong, (long Phys, IommuProt Prot)>();
        var rng = new Random(seed);
        int oneGiBMaps = 0;

        for (int op = 0; op < Ops; op++)
        {
            int kind = rng.Next(100);
            if (kind < 55)
            {
                (ulong iova, long pa, long size) = PickMap(rng, ref oneGiBMaps);
                IommuProt prot = (IommuProt)rng.Next(1, 4);
                bool overlaps = AnyMapped(model, iova, size);
                int tables = pt.TablesInUse;
                long leaves = pt.Leaves4K + pt.Leaves2M + pt.Leaves1G;
                int ret = d.Map(iova, pa, size, prot);
                if (overlaps)
                {
                    Assert.That(ret, Is.EqualTo(Errno.EEXIST.Negative()), $"op {op}: map 0x{iova:x}+0x{size:x} overlaps");
                    Assert.That(pt.TablesInUse, Is.EqualTo(tables), $"op {op}: tables leaked by the unwind");
                    Assert.That(pt.Leaves4K + pt.Leaves2M + pt.Leaves1G, Is.EqualTo(leaves), $"op {op}: leaves leaked by the unwind");
                }
                else
                {
                    Assert.That(ret, Is.Zero, $"op {op}: map 0x{iova:x}+0x{size:x}");
                    for (long off = 0; off < size; off += K4)
                    {
                        model[iova + (ulong)off] = (pa + off, prot);
                    }
                }

                Sample(d, model, rng, iova, size, op);
            }
            else
            {
                (ulong iova, long size) = PickUnmap(rng);
                long expected = ModelUnmap(model, iova, size);
                long got = d.Unmap(iova, size);
                Assert.That(got, Is.EqualTo(expected), $"op {op}: unmap 0x{iova:x}+0x{size:x}");
                Sample(d, model, rng, iova, size, op);
            }

            Assert.That((pt.Leaves4K * 1) + (pt.Leaves2M * 512) + (pt.Leaves1G * 512 * 512), Is.EqualTo(model.Count), $"op {op}: leaves against model pages");
            Assert.That(pt.TablesPendingFree, Is.Zero);
            if (op % 50 == 0)
            {
                AssertConsistent(d);
            }
        }

        AssertConsistent(d);
        Assert.That(pt.Leaves2M, Is.Positive, "the sequence formed superpages");
    }

    private static (ulong Iova, long Pa, long Size) PickMap(Random rng, ref int oneGiBMaps)
    {
        int kind = rng.Next(100);
        if (kind < 2 && oneGiBMaps < 3)
        {
            oneGiBMaps++;
            ulong iova = (ulong)rng.Next(4) << 30;
            return (iova, (long)rng.Next(1, 16) << 30, G1);
        }

        if (kind < 40)
        {
            // 2 MiB aligned, contiguous: superpages form, with a few 4 KiB pages after.
            ulong iova = (ulong)rng.Next((int)(Window / (ulong)M2)) * (ulong)M2;
            long size = (rng.Next(1, 5) * M2) + (rng.Next(3) * K4);
            size = Math.Min(size, (long)(Window - iova));
            return (iova, (long)rng.Next(1, 8192) * M2, size);
        }

        ulong page = (ulong)rng.Next((int)(Window / (ulong)K4));
        long pages = rng.Next(1, 700);
        long bytes = Math.Min(pages * K4, (long)(Window - (page * (ulong)K4)));
        // Half of the small maps keep iova and paddr congruent modulo 2 MiB, so a long one takes superpages inside.
        long pa = rng.Next(2) == 0 ? ((long)rng.Next(1, 8192) * M2) + (long)(page * (ulong)K4 % (ulong)M2) : (long)rng.Next(1, 1 << 22) * K4;
        return (page * (ulong)K4, pa, bytes);
    }

    private static (ulong Iova, long Size) PickUnmap(Random rng)
    {
        int kind = rng.Next(100);
        if (kind < 3)
        {
            return ((ulong)rng.Next(4) << 30, G1);
        }

        if (kind < 30)
        {
            ulong iova = (ulong)rng.Next((int)(Window / (ulong)M2)) * (ulong)M2;
            return (iova, Math.Min(rng.Next(1, 4) * M2, (long)(Window - iova)));
        }

        ulong page = (ulong)rng.Next((int)(Window / (ulong)K4));
        return (page * (ulong)K4, Math.Min(rng.Next(1, 600) * K4, (long)(Window - (page * (ulong)K4))));
    }

    private static bool AnyMapped(Dictionary<ulong, (long, IommuProt)> model, ulong iova, long size)
    {
        for (long off = 0; off < size; off += K4)
        {
            if (model.ContainsKey(iova + (ulong)off))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>__iommu_unmap against the model: greedy page sizes; a block with anything mapped goes whole; stop at a hole.</summary>
    private static long ModelUnmap(Dictionary<ulong, (long, IommuProt)> model, ulong iova, long size)
    {
        long done = 0;
        while (done < size)
        {
            ulong at = iova + (ulong)done;
            ulong block = (ulong)K4;
            foreach (ulong s in s_sizes)
            {
                if (at % s == 0 && s <= (ulong)(size - done))
                {
                    block = s;
                }
            }

            if (!AnyMapped(model, at, (long)block))
            {
                break;
            }

            for (ulong off = 0; off < block; off += (ulong)K4)
            {
                model.Remove(at + off);
            }

            done += (long)block;
        }

        return done;
    }

    private static void Sample(IommuDomain d, Dictionary<ulong, (long Phys, IommuProt Prot)> model, Random rng, ulong iova, long size, int op)
    {
        for (int i = 0; i < 24; i++)
        {
            ulong at = i < 8
                ? iova + ((ulong)rng.NextInt64(Math.Max(size, 1)) & ~7UL)
                : (ulong)rng.NextInt64((long)Window) & ~7UL;
            ulong page = at & ~((ulong)K4 - 1);
            bool found = d.PageTable!.Walk(at, out long phys, out IommuProt prot, out _);
            if (model.TryGetValue(page, out (long Phys, IommuProt Prot) want))
            {
                Assert.That(found, Is.True, $"op {op}: 0x{at:x} should be mapped");
                Assert.That((phys, prot), Is.EqualTo((want.Phys + (long)(at - page), want.Prot)), $"op {op}: 0x{at:x}");
            }
            else
            {
                Assert.That(found, Is.False, $"op {op}: 0x{at:x} should not be mapped (got 0x{phys:x})");
            }
        }
    }
}
