// The shared zero page in type1 (Vfio.Iommu.Type1/VfioIommu.Map.cs and Pin.cs) on both
// profiles. On 6.1 a read-only long-term GUP of never-written memory pins the zero page
// itself (PlatformFeatures.LongTermGupUnsharesZeroPage is off), and 6.1's type1 drops those
// pins at once (Type1Features.UnpinsZeroPages, 873aefb376bb): the zero page is mapped but
// neither kept pinned nor charged, so locked_vm stays put, RLIMIT_MEMLOCK does not limit the
// map and unmap has nothing to release. On 6.12 GUP unshares into fresh pages, which are
// pinned and charged as usual. The invariant checker reports a zero page left pinned.
// The real kernels agree (QEMU guest, 16 untouched pages mapped READ): 6.1 leaves VmLck at
// 0 kB with no pin outstanding and maps under an 8 KiB RLIMIT_MEMLOCK; 6.12.118 charges
// 64 kB and answers ENOMEM under that limit.

using NUnit.Framework;
using Vfio.Core.Uapi;
using Vfio.Iommu.Type1;
using Vfio.Kernel;
using Vfio.Platform;
using Vfio.Platform.Mm;
using Vfio.Platform.Proc;
using static Vfio.Tests.Type1.Type1Kit;

namespace Vfio.Tests.Type1;

[TestFixture]
public sealed class ZeroPageTests
{
    private const ulong A = 0x100000;
    private const int Pages = 16;

    public static IEnumerable<string> Profiles => ["linux-6.12", "linux-6.1"];

    [TestCaseSource(nameof(Profiles))]
    public void ReadOnlyMapOfNeverWrittenMemory_ChargesAndPinsAsTheProfileDoes_AndUnmapLeavesNothingPinned(string profile)
    {
        KernelProfile kernel = KernelProfile.Parse(profile);
        bool zeroPage = !kernel.Has(PlatformFeatures.LongTermGupUnsharesZeroPage);
        Assert.That(zeroPage, Is.EqualTo(kernel == KernelProfile.Linux6_1), "6.1's GUP pins the zero page itself");
        Assert.That(kernel.Has(Type1Features.UnpinsZeroPages), Is.EqualTo(zeroPage), "and 6.1's type1 drops those pins");
        var rig = new Type1Rig(profile: kernel);
        rig.Run(() =>
        {
            (int c, _, _) = rig.OpenEdu();
            ulong va = Untouched(rig, Pages);
            PhysMem mem = rig.Memory;
            long pinned0 = mem.PinnedPages;
            long zeroPins0 = mem.PinCount(mem.ZeroPfn);

            Assert.That(rig.Map(c, va, A, Pages * P, VfioType1Flags.MapRead), Is.Zero, ErrorReason.Current);
            VfioIommu iommu = rig.Iommu(c);
            Assert.Multiple(() =>
            {
                long zeroMapped = Enumerable.Range(0, Pages).Count(i => iommu.Domains[0].IovaToPhys(A + ((ulong)i * P)) >> PhysMem.PageShift == mem.ZeroPfn);
                Assert.That(zeroMapped, Is.EqualTo(zeroPage ? Pages : 0), "6.1 maps the zero page; 6.12 maps fresh pages");
                Assert.That(rig.User.Mm.LockedVm, Is.EqualTo(zeroPage ? 0 : Pages), "the zero page is reserved: never charged");
                Assert.That(iommu.Mappings.Single().LockedVm, Is.EqualTo(zeroPage ? 0 : Pages));
                Assert.That(mem.PinnedPages - pinned0, Is.EqualTo(zeroPage ? 0 : Pages), "zero-page pins are dropped at once");
                Assert.That(mem.PinCount(mem.ZeroPfn), Is.EqualTo(zeroPins0));
            });
            rig.AssertInvariants(c);

            Assert.That(rig.Unmap(c, A, Pages * P, out ulong unmapped), Is.Zero, ErrorReason.Current);
            Assert.That(unmapped, Is.EqualTo(Pages * P));
            Assert.Multiple(() =>
            {
                Assert.That(mem.PinnedPages, Is.EqualTo(pinned0), "nothing stays pinned after the unmap");
                Assert.That(mem.PinCount(mem.ZeroPfn), Is.EqualTo(zeroPins0));
                Assert.That(rig.User.Mm.LockedVm, Is.Zero);
            });
            rig.AssertInvariants(c);
        });
    }

    [TestCaseSource(nameof(Profiles))]
    public void ReadOnlyMapOfNeverWrittenMemory_UnderARlimitBelowItsSize_SucceedsOn61_AndIsEnomemOn612(string profile)
    {
        KernelProfile kernel = KernelProfile.Parse(profile);
        bool zeroPage = kernel.Has(Type1Features.UnpinsZeroPages);
        var rig = new Type1Rig(profile: kernel);
        rig.Run(() =>
        {
            (int c, _, _) = rig.OpenEdu();
            rig.User.Credentials = Credentials.Root.Without(Capabilities.CAP_IPC_LOCK);
            rig.User.Limits = rig.User.Limits with { MemlockBytes = (long)(2 * P) };
            ulong va = Untouched(rig, Pages);
            Type1State before = rig.State(c);
            long ret = rig.Map(c, va, A, Pages * P, VfioType1Flags.MapRead);
            if (zeroPage)
            {
                Assert.That(ret, Is.Zero, "nothing is charged, so the limit does not bite: " + ErrorReason.Current);
                Assert.That(rig.User.Mm.LockedVm, Is.Zero);
                Assert.That(rig.Memory.PinnedPages, Is.EqualTo(before.PinnedPages));
                rig.AssertInvariants(c);
            }
            else
            {
                rig.AssertRejected(c, ret, Errno.ENOMEM, before);
                Assert.That(ErrorReason.Current, Does.Contain("RLIMIT_MEMLOCK"));
            }
        });
    }

    [TestCaseSource(nameof(Profiles))]
    public void VfioPinPagesOfNeverWrittenMemory_LeavesTheZeroPageUnpinnedAndUncharged_On61(string profile)
    {
        KernelProfile kernel = KernelProfile.Parse(profile);
        bool zeroPage = kernel.Has(Type1Features.UnpinsZeroPages);
        var rig = new Type1Rig(profile: kernel);
        rig.Run(() =>
        {
            (int c, _, _, PinningTestDevice ops) = rig.OpenEmulatedEdu();
            ulong va = Untouched(rig, 4);
            Assert.That(rig.Map(c, va, A, 4 * P, VfioType1Flags.MapRead), Is.Zero, ErrorReason.Current);
            PhysMem mem = rig.Memory;
            long pinned0 = mem.PinnedPages;
            long zeroPins0 = mem.PinCount(mem.ZeroPfn);
            ulong[] pfns = new ulong[4];

            Assert.That(ops.Pin(rig.Edu(), A, 4, R, pfns), Is.EqualTo(4), ErrorReason.Current);
            Assert.Multiple(() =>
            {
                Assert.That(pfns.Count(p => (long)p == mem.ZeroPfn), Is.EqualTo(zeroPage ? 4 : 0), "the driver is handed the zero page on 6.1");
                Assert.That(mem.PinnedPages - pinned0, Is.EqualTo(zeroPage ? 0 : 4));
                Assert.That(mem.PinCount(mem.ZeroPfn), Is.EqualTo(zeroPins0));
                Assert.That(rig.User.Mm.LockedVm, Is.EqualTo(zeroPage ? 0 : 4), "no IOMMU domain: driver pins are charged, reserved pages not");
                Assert.That(rig.Iommu(c).Mappings.Single().PinnedByDrivers, Is.EqualTo(4), "the pfn_list still records them");
            });
            rig.AssertInvariants(c);

            ops.Unpin(rig.Edu(), A, 4);
            Assert.Multiple(() =>
            {
                Assert.That(mem.PinnedPages, Is.EqualTo(pinned0));
                Assert.That(mem.PinCount(mem.ZeroPfn), Is.EqualTo(zeroPins0));
                Assert.That(rig.User.Mm.LockedVm, Is.Zero);
            });
            rig.AssertInvariants(c);
        });
    }

    [Test]
    public void TheInvariantChecker_ReportsAZeroPageLeftPinned_On61()
    {
        var rig = new Type1Rig(profile: KernelProfile.Linux6_1);
        rig.Run(() =>
        {
            (int c, _, _) = rig.OpenEdu();
            ulong va = Untouched(rig, 2);
            Assert.That(rig.Map(c, va, A, 2 * P, VfioType1Flags.MapRead), Is.Zero, ErrorReason.Current);
            VfioIommu iommu = rig.Iommu(c);
            Assert.That(iommu.CheckInvariants(iommu.EntryLimit), Is.Null);

            // What the simulator used to do: keep GUP's pin on the zero page.
            Span<PfnRun> run = stackalloc PfnRun[1];
            Assert.That(rig.User.Mm.PinUserPages(va, 1, GupFlags.FOLL_LONGTERM, run, out int n), Is.EqualTo(1));
            Assert.That(run[0].Pfn, Is.EqualTo(rig.Memory.ZeroPfn));
            try
            {
                Assert.That(iommu.CheckInvariants(iommu.EntryLimit), Does.Contain("zero page").And.Contain("1 pins"));
            }
            finally
            {
                rig.Memory.Unpin(run[0], dirty: false);
            }

            Assert.That(iommu.CheckInvariants(iommu.EntryLimit), Is.Null);
        });
    }

    // Private anonymous memory nobody has touched: a read fault maps the zero page.
    private static ulong Untouched(Type1Rig rig, int pages)
    {
        long a = rig.User.Mmap(0, (ulong)pages * P, Prot.PROT_READ | Prot.PROT_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS);
        Assert.That(a, Is.GreaterThan(0), "mmap");
        return (ulong)a;
    }
}
