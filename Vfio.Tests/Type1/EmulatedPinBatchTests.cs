// vfio_pin_pages / vfio_unpin_pages of many pages through the type1 backend
// (drivers/vfio/vfio_iommu_type1.c v6.12): the simulator pins the pages the kernel takes one
// by one in batches, and the outcome must stay the kernel's page by page — the first page
// that fails decides the errno, everything the call pinned is given back, a page already
// pinned only gains a count — and a steady pin + unpin allocates nothing.

using NUnit.Framework;
using Vfio.Core;
using Vfio.Kernel;
using Vfio.Platform.Proc;
using static Vfio.Tests.Type1.Type1Kit;

namespace Vfio.Tests.Type1;

[TestFixture]
public sealed class EmulatedPinBatchTests
{
    private const ulong A = 0x100000;

    [Test]
    public void A512PagePinSpanningTwoMappingsPinsEachPageOnceAndUnpinGivesEverythingBack()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _, _, _) = rig.OpenEmulatedEdu();
            long pinned0 = rig.Memory.PinnedPages;
            ulong va = rig.Buffer(512 * P);
            Assert.That(rig.Map(c, va, A, 200 * P), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Map(c, va + (200 * P), A + (200 * P), 312 * P), Is.Zero, ErrorReason.Current);
            ulong[] pfns = new ulong[512];
            Assert.That(rig.Edu().PinPages(A, RW, pfns), Is.EqualTo(512), ErrorReason.Current);
            for (int i = 0; i < 512; i++)
            {
                Assert.That(pfns[i], Is.EqualTo((ulong)rig.User.Mm.Translate(va + ((ulong)i * P))), $"page {i}");
            }

            Assert.That(rig.Memory.PinnedPages - pinned0, Is.EqualTo(512));
            Assert.That(rig.User.Mm.LockedVm, Is.EqualTo(512));
            Assert.That(rig.Iommu(c).Mappings.Select(m => (m.PinnedByDrivers, m.LockedVm)), Is.EqualTo(new[] { (200, 200L), (312, 312L) }));
            rig.AssertInvariants(c);

            rig.Edu().UnpinPages(A, 512);
            Assert.That(rig.Memory.PinnedPages, Is.EqualTo(pinned0));
            Assert.That(rig.User.Mm.LockedVm, Is.Zero);
            Assert.That(rig.Iommu(c).Mappings.Select(m => m.PinnedByDrivers), Is.All.Zero);
            rig.AssertInvariants(c);
        });
    }

    [Test]
    public void PagesAlreadyPinnedInsideABatchOnlyGainACountAndKeepTheirChargeAfterTheUnpin()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _, _, _) = rig.OpenEmulatedEdu();
            long pinned0 = rig.Memory.PinnedPages;
            ulong va = rig.Buffer(8 * P);
            Assert.That(rig.Map(c, va, A, 8 * P), Is.Zero, ErrorReason.Current);
            ulong[] one = new ulong[1];
            Assert.That(rig.Edu().PinPages(A + (2 * P), RW, one), Is.EqualTo(1), ErrorReason.Current);
            Assert.That(rig.Edu().PinPages(A + (5 * P), RW, one), Is.EqualTo(1), ErrorReason.Current);
            ulong[] pfns = new ulong[8];
            Assert.That(rig.Edu().PinPages(A, RW, pfns), Is.EqualTo(8), ErrorReason.Current);
            Assert.That(pfns[5], Is.EqualTo(one[0]));
            Assert.That(rig.Memory.PinnedPages - pinned0, Is.EqualTo(8), "one page pin per vfio_pfn");
            Assert.That(rig.User.Mm.LockedVm, Is.EqualTo(8));

            rig.Edu().UnpinPages(A, 8);
            Assert.That(rig.Memory.PinnedPages - pinned0, Is.EqualTo(2), "pages 2 and 5 keep their first pin");
            Assert.That(rig.User.Mm.LockedVm, Is.EqualTo(2));
            Assert.That(rig.Iommu(c).Mappings[0].PinnedByDrivers, Is.EqualTo(2));
            rig.AssertInvariants(c);
        });
    }

    [Test]
    public void AHoleInTheMiddleOfABatchIsEfaultAndLeavesNothingPinnedOrCharged()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _, _, _) = rig.OpenEmulatedEdu();
            ulong va = rig.Buffer(8 * P);
            Assert.That(rig.Map(c, va, A, 8 * P), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Edu().PinPages(A + P, RW, new ulong[1]), Is.EqualTo(1), ErrorReason.Current);
            Assert.That(rig.User.Munmap(va + (5 * P), P), Is.Zero);
            Type1State before = rig.State(c);
            ulong[] pfns = new ulong[8];
            Array.Fill(pfns, 0xdeadUL);
            rig.AssertRejected(c, rig.Edu().PinPages(A, RW, pfns), Errno.EFAULT, before);
            Assert.That(pfns, Is.EqualTo(new ulong[] { 0, 0, 0, 0, 0, 0, 0xdead, 0xdead }), "the pages up to the failing one are cleared, the rest untouched");
            Assert.That(rig.Iommu(c).Mappings[0].PinnedByDrivers, Is.EqualTo(1), "the earlier pin keeps its single count");
            rig.Edu().UnpinPages(A + P, 1);
            Assert.That(rig.Iommu(c).Mappings[0].PinnedByDrivers, Is.Zero, "and one unpin releases it");
            Assert.That(rig.User.Mm.LockedVm, Is.Zero);
        });
    }

    [Test]
    public void TheLimitReachedBeforeAHoleIsEnomemAndAHoleBeforeTheLimitIsEfault()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c0, _, _, _) = rig.OpenEmulatedEdu();
            SimProcess p = rig.Machine.CreateProcess("qemu", Credentials.User, new ResourceLimits { MemlockBytes = (long)(4 * P) });
            int c = rig.User.SendFd(c0, p);
            ulong va = rig.Buffer(16 * P, p);
            Assert.That(Type1Rig.Map(p, c, va, A, 16 * P), Is.Zero, ErrorReason.Current);
            Assert.That(p.Munmap(va + (6 * P), P), Is.Zero);
            Type1State before = rig.State(c, p, p);

            // Pages 0-3 fit the limit, page 4 does not: the kernel stops there, before the hole at 6.
            rig.AssertRejected(c, rig.Edu().PinPages(A, RW, new ulong[8]), Errno.ENOMEM, before, p, p);
            Assert.That(rig.Kernel.Log.Contains($"Task qemu ({p.Pid}) RLIMIT_MEMLOCK ({4 * P}) exceeded"), Is.True, rig.Kernel.Log.Dmesg());

            // From page 3 the hole (page 6) comes first: 3 pages charged, then EFAULT.
            rig.AssertRejected(c, rig.Edu().PinPages(A + (3 * P), RW, new ulong[5]), Errno.EFAULT, before, p, p);
            Assert.That(rig.Edu().PinPages(A, RW, new ulong[4]), Is.EqualTo(4), ErrorReason.Current);
            Assert.That(p.Mm.LockedVm, Is.EqualTo(4));
            rig.Edu().UnpinPages(A, 4);
            Assert.That(p.Mm.LockedVm, Is.Zero);
            rig.AssertInvariants(c, p);
        });
    }

    [Test]
    public void ABatchRunningPastTheEndOfItsMappingIsEinvalAndRolledBack()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _, _, _) = rig.OpenEmulatedEdu();
            ulong va = rig.Buffer(8 * P);
            Assert.That(rig.Map(c, va, A, 6 * P), Is.Zero, ErrorReason.Current);
            Type1State before = rig.State(c);
            rig.AssertRejected(c, rig.Edu().PinPages(A + (2 * P), RW, new ulong[5]), Errno.EINVAL, before);
            Assert.That(ErrorReason.Current, Does.Contain($"0x{A + (6 * P):x} is not mapped"));
        });
    }

    [Test]
    public void PinAndUnpinOfOneOrAFullBatchAllocateNothingOnceWarm([Values(1, 512)] int pages)
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _, _, _) = rig.OpenEmulatedEdu();
            ulong va = rig.Buffer(512 * P);
            Assert.That(rig.Map(c, va, A, 512 * P), Is.Zero, ErrorReason.Current);
            VfioDevice edu = rig.Edu();
            ulong[] pfns = new ulong[pages];
            for (int i = 0; i < 3; i++)
            {
                Assert.That(edu.PinPages(A, RW, pfns), Is.EqualTo(pages), ErrorReason.Current);
                edu.UnpinPages(A, pages);
            }

            long before = GC.GetAllocatedBytesForCurrentThread();
            int r = 0;
            for (int i = 0; i < 10; i++)
            {
                r |= edu.PinPages(A, RW, pfns) ^ pages;
                edu.UnpinPages(A, pages);
            }

            long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            Assert.That(r, Is.Zero);
            Assert.That(allocated, Is.Zero, "bytes allocated by 10 steady pin + unpin pairs");
            Assert.That(rig.User.Mm.LockedVm, Is.Zero);
            rig.AssertInvariants(c);
        });
    }
}
