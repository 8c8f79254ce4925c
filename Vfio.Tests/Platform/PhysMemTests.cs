using NUnit.Framework;
using Vfio.Platform;
using Vfio.Platform.Mm;

namespace Vfio.Tests.Platform;

public sealed class PhysMemTests
{
    private static long[] AllocMany(PhysMem mem, int n)
    {
        var pfns = new long[n];
        mem.Lock.Lock();
        for (int i = 0; i < n; i++)
        {
            pfns[i] = mem.AllocPageLocked();
        }

        mem.Lock.Unlock();
        return pfns;
    }

    [Test]
    public void A64GiBMachine_StartsWithAlmostNoMetadata_AndPaysSixteenBytesPerPageUsed()
    {
        long before = GC.GetAllocatedBytesForCurrentThread();
        SimMachine m = Machines.Create(ramGiB: 64);
        long boot = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.That(m.Memory.TotalRamPages, Is.EqualTo(64L << 18));
        Assert.That(boot, Is.LessThan(4L << 20), "boot must not allocate per-page metadata for 64 GiB");

        AllocMany(m.Memory, 300_000);
        Assert.That(m.Memory.MetadataBytes, Is.LessThanOrEqualTo((16 * m.Memory.UsedPages) + (1L << 20)));
    }

    [Test]
    public void ScatteredPages_AreNeverPhysicallyAdjacent_ContiguousOnesAre()
    {
        long[] scattered = AllocMany(Machines.Create(policy: AllocationPolicy.Scattered).Memory, 5000);
        long[] contiguous = AllocMany(Machines.Create(policy: AllocationPolicy.Contiguous).Memory, 5000);

        Assert.That(Enumerable.Range(1, 4999).Count(i => scattered[i] == scattered[i - 1] + 1), Is.Zero);
        Assert.That(Enumerable.Range(1, 4999).All(i => contiguous[i] == contiguous[i - 1] + 1), Is.True);
        Assert.That(scattered.Distinct().Count(), Is.EqualTo(5000));
    }

    [Test]
    public void Placement_IsReproducibleFromTheSeed()
    {
        long[] a = AllocMany(Machines.Create(seed: 7).Memory, 100);
        long[] b = AllocMany(Machines.Create(seed: 7).Memory, 100);
        long[] c = AllocMany(Machines.Create(seed: 8).Memory, 100);

        Assert.That(b, Is.EqualTo(a));
        Assert.That(c, Is.Not.EqualTo(a));
    }

    [Test]
    public void TheAddressMap_HasLowRam_APciHole_HighRam_AndAReservedZeroPage()
    {
        PhysMem mem = Machines.Create(ramGiB: 8).Memory;

        Assert.That(mem.IsRam(0), Is.True);
        Assert.That(mem.IsReserved(mem.ZeroPfn), Is.True);
        Assert.That(mem.IsRam((3L << 30) >> 12), Is.False, "3 GiB starts the PCI hole");
        Assert.That(mem.IsRam(((4L << 30) >> 12) - 1), Is.False);
        Assert.That(mem.IsRam((4L << 30) >> 12), Is.True, "high RAM starts at 4 GiB");
        Assert.That(mem.MaxRamPfn, Is.EqualTo((9L << 30) >> 12), "8 GiB of RAM ends at 9 GiB");
        Assert.That(mem.IsInvalidOrReserved(mem.Mmio64Base >> 12), Is.True);
        Assert.That(mem.RefCount(mem.ZeroPfn), Is.EqualTo(1));
    }

    [Test]
    public void HugePools_AreAlignedContiguous_AndHandOutTheLowestPageFirst()
    {
        PhysMem mem = Machines.Create(ramGiB: 8, huge2M: 8, huge1G: 2).Memory;
        HugePool p2 = mem.PoolFor(2L << 20)!;
        HugePool p1 = mem.PoolFor(1L << 30)!;

        Assert.That(p2.Start % PhysMem.PagesPer2M, Is.Zero);
        Assert.That(p1.Start % PhysMem.PagesPer1G, Is.Zero);
        Assert.That(p2.End, Is.LessThanOrEqualTo(p1.Start));
        Assert.That(mem.HugePagesTotal(2L << 20), Is.EqualTo(8));
        Assert.That(mem.HugePagesFree(1L << 30), Is.EqualTo(2));

        mem.Lock.Lock();
        Assert.That(p2.Reserve(3), Is.True);
        long a = p2.AllocReserved(mem), b = p2.AllocReserved(mem);
        mem.PutPageLocked(a);
        long c = p2.AllocReserved(mem);
        mem.Lock.Unlock();

        Assert.That(b, Is.EqualTo(a + PhysMem.PagesPer2M));
        Assert.That(c, Is.EqualTo(a), "a freed page is reused before higher ones");
        Assert.That(mem.HugePagesFree(2L << 20), Is.EqualTo(6));
    }

    [Test]
    public void PhysicalData_IsZeroUntilWritten_AndWritesDirtyTheFrame()
    {
        PhysMem mem = Machines.Create().Memory;
        long pfn = AllocMany(mem, 1)[0];
        long addr = pfn << 12;
        byte[] buf = new byte[16];
        mem.Read(addr + 100, buf);
        Assert.That(buf, Is.All.Zero);
        Assert.That(mem.IsDirty(pfn), Is.False);

        mem.Write(addr + 4090, "hello world"u8);
        mem.Read(addr + 4090, buf.AsSpan(0, 11));

        Assert.That(buf.AsSpan(0, 11).ToArray(), Is.EqualTo("hello world"u8.ToArray()));
        Assert.That(mem.IsDirty(pfn), Is.True);
        Assert.That(mem.DataBytes, Is.EqualTo(2 * PhysMem.PageSize), "the write crossed into the next frame");
    }

    [Test]
    public void MmioRanges_DispatchToTheirDevice_AndHolesReadAllOnes()
    {
        PhysMem mem = Machines.Create().Memory;
        var dev = new RecordingMmio();
        long bar = PhysMem.PciHoleStart + 0x100000;
        mem.RegisterMmio(bar, 0x1000, dev);
        mem.Write(bar + 8, new byte[] { 1, 2, 3, 4 });
        byte[] hole = new byte[4];
        mem.Read(bar + 0x1000, hole);

        Assert.That(dev.Writes, Is.EqualTo(new[] { (8L, 4) }));
        Assert.That(hole, Is.All.EqualTo(0xff));
        Assert.That(() => mem.RegisterMmio(bar + 0x800, 0x1000, dev), Throws.ArgumentException.With.Message.Contains("another device's range"));
        Assert.That(() => mem.RegisterMmio(0x1000, 0x1000, dev), Throws.ArgumentException.With.Message.Contains("overlaps RAM"));
    }

    [Test]
    public void BadConfigurations_AreRejectedWithTheReason()
    {
        Assert.That(() => new SimMachine(new MachineConfig { Memory = new MemoryConfig { RamBytes = 1 << 20 } }),
            Throws.ArgumentException.With.Message.Contains("at least 64 MiB"));
        Assert.That(() => new SimMachine(new MachineConfig { Memory = new MemoryConfig { RamBytes = 1L << 30, HugePages1G = 1 } }),
            Throws.ArgumentException.With.Message.Contains("hugetlb pools"));
    }

    private sealed class RecordingMmio : IMmioHandler
    {
        public List<(long, int)> Writes { get; } = [];

        public void Read(long offset, Span<byte> data) => data.Clear();

        public void Write(long offset, ReadOnlySpan<byte> data) => Writes.Add((offset, data.Length));
    }

    [Test]
    public void AFrameWrittenWhileFree_IsZeroForItsNextOwner([Values(false, true)] bool huge)
    {
        SimMachine m = Machines.Create(huge2M: 1);
        var p = m.CreateProcess("t");
        const Prot rw = Prot.PROT_READ | Prot.PROT_WRITE;
        MapFlags flags = MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | (huge ? MapFlags.MAP_HUGETLB : 0);
        ulong size = huge ? 2UL << 20 : 4096;
        ulong a = (ulong)p.Mmap(0, size, rw, flags);
        Assert.That(p.Mm.WriteUser(a + 64, "owner"u8), Is.Zero);
        long pfn = p.Mm.Translate(a + 64);
        Assert.That(p.Munmap(a, size), Is.Zero);
        long slots = m.Memory.Data.SlotsInUse;

        m.Memory.Write((pfn << PhysMem.PageShift) + 64, "stray"u8); // A DMA into the freed frame.
        ulong b = (ulong)p.Mmap(0, size, rw, flags);
        Assert.That(p.Mm.WriteUser(b + 4096 - 1, "x"u8), Is.Zero, "fault a frame in (the same one: the free list is LIFO, the pool has one page)");
        byte[] got = new byte[5];
        Assert.That(p.Mm.ReadUser(b + 64, got), Is.Zero);

        Assert.That(p.Mm.Translate(b + 64), Is.EqualTo(pfn));
        Assert.That(got, Is.All.Zero, "the stray data was dropped when the frame was allocated");
        Assert.That(m.Memory.Data.SlotsInUse, Is.EqualTo(slots + 1), "only the new owner's page holds data");
        MemoryInvariants.Assert(m);
    }

    [Test]
    public void UnpinningAFrameWhoseMetadataWasNeverAllocated_ReportsThePinUnderflow()
    {
        SimMachine m = Machines.Create(ramGiB: 4);
        long untouched = m.Memory.TotalRamPages - 1;

        Assert.That(() => m.Memory.Unpin([new PfnRun(untouched, 1)], dirty: false), Throws.InvalidOperationException.With.Message.Contains("unpinned what it did not pin"));
    }
}
