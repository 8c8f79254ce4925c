// A seeded random sequence of type1 operations — map, unmap (including UNMAP_ALL), pin and
// unpin by an emulated-IOMMU device, attach and detach of a real group — checked after
// every step against a small reference model (which mappings exist, which pages the device
// pins, what each call must return and what must be charged and pinned) and by the
// container's invariant checker; at the end everything must be back to baseline.

using NUnit.Framework;
using Vfio.Core;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Tests.Core;

namespace Vfio.Tests.Type1;

[TestFixture]
public sealed class Type1RandomSequenceTests
{
    private const int Slots = 256;          // IOVA space of the test, in pages
    private const ulong IovaBase = 0x10_0000;
    private const int Ops = 3000;
    private const uint EntryLimit = 24;

    [Test]
    public void RandomOperations_MatchTheReferenceModel_AndKeepEveryInvariant([Values(1, 2, 3, 4)] int seed)
    {
        var rig = new Type1Rig(seed: (ulong)seed);
        rig.Type1.DmaEntryLimit = EntryLimit;

        // type1 registers a device for dma_unmap under iommu->lock then device_list_lock, and
        // a dma_unmap notification holds device_list_lock while the driver's vfio_unpin_pages
        // takes iommu->lock: the kernel's own order, which lockdep reports as a possible ABBA
        // the first time a pinned mapping is unmapped (see docs/type1.md).
        rig.Kernel.ExpectWarning("circular locking dependency");
        rig.Run(() =>
        {
            long pinned0 = rig.Memory.PinnedPages;
            long locked0 = rig.User.Mm.LockedVm;

            // The emulated device, opened (so it is registered for dma_unmap).
            PinningTestDevice device = rig.EmulatedNext();
            rig.Core.Bind(VfioRig.Edu);
            VfioDevice vdev = rig.Edu();
            int c = rig.Core.OpenContainer();
            int ge = rig.User.Open(vdev.Group!.DevPath);
            Assert.That(rig.Core.SetContainer(ge, c), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Core.SetIommu(c), Is.Zero, ErrorReason.Current);
            int de = (int)rig.Core.GetDeviceFd(ge, VfioRig.Edu);
            Assert.That(de, Is.GreaterThanOrEqualTo(0), ErrorReason.Current);

            // The real pair group, attached and detached at random.
            rig.RealNext();
            rig.Core.Bind(VfioRig.PairF0);
            rig.Core.Bind(VfioRig.PairF1);
            int gp = rig.Core.OpenGroup(VfioRig.PairF0);
            bool realAttached = false;

            ulong buf = rig.Buffer(Slots * Type1Rig.Page);
            var model = new SortedDictionary<ulong, ulong>(); // iova -> size
            var pins = new Dictionary<ulong, int>();           // iova page -> pin count
            var rnd = new Random(seed);
            var iommu = rig.Iommu(c);

            for (int step = 0; step < Ops; step++)
            {
                int op = rnd.Next(100);
                string what;
                if (op < 35)
                {
                    int start = rnd.Next(Slots);
                    int len = 1 + rnd.Next(Math.Min(8, Slots - start));
                    int voff = rnd.Next(Slots - len + 1);
                    ulong iova = IovaBase + ((ulong)start * Type1Rig.Page);
                    ulong size = (ulong)len * Type1Rig.Page;
                    long expect = Overlaps(model, iova, size) ? Errno.EEXIST.Negative() : model.Count == EntryLimit ? Errno.ENOSPC.Negative() : 0;
                    what = $"step {step}: map [0x{iova:x}, +0x{size:x})";
                    long r = rig.Map(c, buf + ((ulong)voff * Type1Rig.Page), iova, size);
                    Assert.That(r, Is.EqualTo(expect), $"{what}: {ErrorReason.Current}");
                    if (r == 0)
                    {
                        model[iova] = size;
                    }
                }
                else if (op < 55)
                {
                    bool all = rnd.Next(20) == 0;
                    int start = rnd.Next(Slots);
                    int len = 1 + rnd.Next(Math.Min(16, Slots - start));
                    ulong iova = all ? 0 : IovaBase + ((ulong)start * Type1Rig.Page);
                    ulong size = all ? 0 : (ulong)len * Type1Rig.Page;
                    bool bisects = !all && Bisects(model, iova, size);
                    var gone = all ? model.Keys.ToList() : model.Where(m => m.Key >= iova && m.Key + m.Value <= iova + size).Select(m => m.Key).ToList();
                    ulong expectSize = 0;
                    foreach (ulong k in gone)
                    {
                        expectSize += model[k];
                    }

                    what = all ? $"step {step}: unmap all" : $"step {step}: unmap [0x{iova:x}, +0x{size:x})";
                    long r = rig.Unmap(c, iova, size, out ulong unmapped, all ? VfioType1Flags.UnmapAll : 0);
                    if (bisects)
                    {
                        Assert.That(r, Is.EqualTo(Errno.EINVAL.Negative()), what);
                    }
                    else
                    {
                        Assert.That(r, Is.Zero, $"{what}: {ErrorReason.Current}");
                        Assert.That(unmapped, Is.EqualTo(expectSize), what);
                        foreach (ulong k in gone)
                        {
                            // The device was told to unpin what it held in the mapping.
                            foreach (ulong p in pins.Keys.Where(p => p >= k && p < k + model[k]).ToList())
                            {
                                pins.Remove(p);
                            }

                            model.Remove(k);
                        }
                    }
                }
                else if (op < 75)
                {
                    int start = rnd.Next(Slots);
                    int n = 1 + rnd.Next(Math.Min(3, Slots - start));
                    ulong iova = IovaBase + ((ulong)start * Type1Rig.Page);
                    bool ok = true;
                    for (int i = 0; i < n; i++)
                    {
                        ok &= Covering(model, iova + ((ulong)i * Type1Rig.Page)) is not null;
                    }

                    what = $"step {step}: pin 0x{iova:x} x{n}";
                    int r = device.Pin(vdev, iova, n, 3);
                    Assert.That(r, Is.EqualTo(ok ? n : Errno.EINVAL.Negative()), $"{what}: {ErrorReason.Current}");
                    if (ok)
                    {
                        for (int i = 0; i < n; i++)
                        {
                            ulong a = iova + ((ulong)i * Type1Rig.Page);
                            pins[a] = pins.GetValueOrDefault(a) + 1;
                        }
                    }
                }
                else if (op < 90)
                {
                    if (pins.Count == 0)
                    {
                        continue;
                    }

                    ulong a = pins.Keys.ElementAt(rnd.Next(pins.Count));
                    what = $"step {step}: unpin 0x{a:x}";
                    device.Unpin(vdev, a, 1);
                    if (--pins[a] == 0)
                    {
                        pins.Remove(a);
                    }
                }
                else if (!realAttached)
                {
                    what = $"step {step}: attach the pair group";
                    Assert.That(rig.Core.SetContainer(gp, c), Is.Zero, $"{what}: {ErrorReason.Current}");
                    realAttached = true;
                }
                else
                {
                    what = $"step {step}: detach the pair group";
                    Assert.That(rig.Core.UnsetContainer(gp), Is.Zero, $"{what}: {ErrorReason.Current}");
                    realAttached = false;
                }

                CheckAgainstModel(rig, iommu, device, model, pins, realAttached, pinned0, locked0, what);
            }

            // A driver lets go of its pins before it closes.
            foreach (ulong a in pins.Keys.ToList())
            {
                for (int i = pins[a]; i > 0; i--)
                {
                    device.Unpin(vdev, a, 1);
                }
            }

            rig.User.Close(de);
            if (realAttached)
            {
                Assert.That(rig.Core.UnsetContainer(gp), Is.Zero, ErrorReason.Current);
            }

            rig.User.Close(gp);
            rig.User.Close(ge);
            rig.User.Close(c);
            Assert.That(rig.User.Mm.LockedVm, Is.EqualTo(locked0), "locked_vm back to baseline");
            Assert.That(rig.Memory.PinnedPages, Is.EqualTo(pinned0), "every pin released");
        });
    }

    private static void CheckAgainstModel(Type1Rig rig, Iommu.Type1.VfioIommu iommu, PinningTestDevice device, SortedDictionary<ulong, ulong> model, Dictionary<ulong, int> pins, bool realAttached, long pinned0, long locked0, string what)
    {
        Assert.That(iommu.CheckInvariants(EntryLimit), Is.Null, what);
        var maps = iommu.Mappings;
        Assert.That(maps.Select(m => (m.Iova, m.Size)), Is.EqualTo(model.Select(m => (m.Key, m.Value))), $"{what}: mappings");
        Assert.That(device.Pinned.OrderBy(p => p.Key), Is.EqualTo(pins.OrderBy(p => p.Key)), $"{what}: device pins");
        Assert.That(maps.Sum(m => m.PinnedByDrivers), Is.EqualTo(pins.Count), $"{what}: pfn_list entries");
        long mappedPages = model.Values.Sum(s => (long)(s / Type1Rig.Page));
        long charged = realAttached ? mappedPages : pins.Count;
        Assert.That(rig.User.Mm.LockedVm - locked0, Is.EqualTo(charged), $"{what}: locked_vm");
        Assert.That(rig.Memory.PinnedPages - pinned0, Is.EqualTo((realAttached ? mappedPages : 0) + pins.Count), $"{what}: pinned pages");
        Assert.That(iommu.DmaAvail, Is.EqualTo(EntryLimit - (uint)model.Count), $"{what}: dma_avail");
    }

    private static bool Overlaps(SortedDictionary<ulong, ulong> model, ulong iova, ulong size)
        => model.Any(m => m.Key < iova + size && iova < m.Key + m.Value);

    private static ulong? Covering(SortedDictionary<ulong, ulong> model, ulong iova)
    {
        foreach (var m in model)
        {
            if (iova >= m.Key && iova < m.Key + m.Value)
            {
                return m.Key;
            }
        }

        return null;
    }

    private static bool Bisects(SortedDictionary<ulong, ulong> model, ulong iova, ulong size)
    {
        ulong? a = Covering(model, iova);
        ulong? b = Covering(model, iova + size - 1);
        return (a is { } x && x != iova) || (b is { } y && y + model[y] != iova + size);
    }
}
