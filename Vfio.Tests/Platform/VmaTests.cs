using NUnit.Framework;
using Vfio.Platform.Mm;

namespace Vfio.Tests.Platform;

public sealed class VmaTests
{
    [Test]
    public void SliceCopiesTheEntriesOfAnUnalignedRange_AndAllocatesOnlyChunksThatHaveEntries()
    {
        var t = new PteTable(64L * PteTable.ChunkSize);
        t.Set(3, 0x1001);
        t.Set(PteTable.ChunkSize + 5, 0x2001);
        t.Set((40L * PteTable.ChunkSize) + 7, 0x3001);

        PteTable s = t.Slice(4, (40L * PteTable.ChunkSize) + 8);

        Assert.That(s.Entries, Is.EqualTo((40L * PteTable.ChunkSize) + 4));
        Assert.That(s.CountPresent(), Is.EqualTo(2), "entry 3 lies before the slice");
        Assert.That(s.Get(PteTable.ChunkSize + 1), Is.EqualTo(0x2001));
        Assert.That(s.Get((40L * PteTable.ChunkSize) + 3), Is.EqualTo(0x3001));
        int allocated = Enumerable.Range(0, s.ChunkCount).Count(c => s.ChunkAt(c) is not null);
        Assert.That(allocated, Is.EqualTo(2));
        Assert.That(t.Slice(0, 0).Entries, Is.Zero);

        t.Clear();
        Assert.That(t.CountPresent(), Is.Zero);
        Assert.That(t.ChunkAt(0), Is.Null);
    }
}
