// Group attach with replay and detach with emulated groups remaining (race 13 in
// docs/races.md; vfio_iommu_type1_attach_group, vfio_iommu_replay and
// vfio_iommu_type1_detach_group): mappings made while only an emulated group existed are
// pinned and mapped when the first IOMMU-backed group arrives (RLIMIT_MEMLOCK applies,
// failure undoes everything), a second domain that cannot merge gets a copy of the first
// one's page tables, and detaching the last IOMMU domain keeps the mappings for the
// emulated devices.

using NUnit.Framework;
using Vfio.Core.Uapi;
using Vfio.Iommu.Type1;
using Vfio.Kernel;
using Vfio.Platform.Iommu;
using Vfio.Platform.Mm;
using Vfio.Platform.Proc;
using static Vfio.Tests.Type1.Type1Kit;

namespace Vfio.Tests.Type1;

[TestFixture]
public sealed class ReplayTests
{
    private const ulong A = 0x100000;

    private static void AssertMapsTo(IommuDomain dom, ulong iova, MmStruct mm, ulong va, int pages)
    {
        for (int i = 0; i < pages; i++)
        {
            ulong off = (ulong)i * P;
            Assert.That(dom.IovaToPhys(iova + off), Is.EqualTo(mm.Translate(va + off) << 12), $"iova 0x{iova + off:x}");
        }
    }

    [Test]
    public void Item13_ReplayOverRlimitFailsEnomemAndLeavesTheEmulatedMappingsUsable()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c0, _, _, PinningTestDevice ops) = rig.OpenEmulatedEdu();
            int g0 = rig.OpenPairGroup();
            SimProcess p = rig.Machine.CreateProcess("qemu", Credentials.User, new ResourceLimits { MemlockBytes = (long)(8 * P) });
            int c = rig.User.SendFd(c0, p);
            int g = rig.User.SendFd(g0, p);
            ulong va = rig.Buffer(16 * P, p);
            Assert.That(Type1Rig.Map(p, c, va, A, 16 * P), Is.Zero, ErrorReason.Current);
            Assert.That(p.Mm.LockedVm, Is.Zero, "nothing is pinned at MAP without an IOMMU domain");
            Assert.That(ops.Pin(rig.Edu(), A + (2 * P), 1, RW), Is.EqualTo(1), ErrorReason.Current);
            Assert.That(p.Mm.LockedVm, Is.EqualTo(1));
            long pinned = rig.Memory.PinnedPages;
            Type1State before = rig.State(c, p, p);

            rig.AssertRejected(c, SetContainer(p, g, c), Errno.ENOMEM, before, p, p);
            Assert.That(rig.Kernel.Log.Contains("RLIMIT_MEMLOCK"), Is.True, rig.Kernel.Log.Dmesg());
            Assert.That(rig.Memory.PinnedPages, Is.EqualTo(pinned));
            Assert.That(rig.Iommu(c, p).Domains, Is.Empty);
            Assert.That(rig.Iommu(c, p).Mappings.Single().IommuMapped, Is.False);
            Assert.That(rig.Iommu(c, p).NumNonPinnedGroups, Is.Zero);

            Assert.That(ops.Pin(rig.Edu(), A + (3 * P), 1, RW), Is.EqualTo(1), "the emulated device still pins");
            Assert.That(p.Mm.LockedVm, Is.EqualTo(2));
            byte[] data = [1, 2, 3, 4];
            Assert.That(rig.Edu().DmaRw(A + (15 * P), data, write: true), Is.Zero, ErrorReason.Current);
            rig.AssertInvariants(c, p);
            ops.Unpin(rig.Edu(), A + (2 * P), 2);
            Assert.That(p.Mm.LockedVm, Is.Zero);
        });
    }

    [Test]
    public void Item13_ReplayPinsAndMapsEveryMappingWithoutChargingExternalPinsTwice()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _, _, PinningTestDevice ops) = rig.OpenEmulatedEdu();
            int gp = rig.OpenPairGroup();
            long pinned0 = rig.Memory.PinnedPages;
            ulong va = rig.Buffer(20 * P);
            Assert.That(rig.Map(c, va, A, 16 * P), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Map(c, va + (16 * P), A + (32 * P), 4 * P, VfioType1Flags.MapRead), Is.Zero, ErrorReason.Current);
            Assert.That(ops.Pin(rig.Edu(), A + P, 1, RW), Is.EqualTo(1), ErrorReason.Current);
            Assert.That(rig.User.Mm.LockedVm, Is.EqualTo(1));

            Assert.That(rig.Core.SetContainer(gp, c), Is.Zero, ErrorReason.Current);
            VfioIommu iommu = rig.Iommu(c);
            Assert.That(iommu.Domains, Has.Count.EqualTo(1));
            Assert.That(iommu.Mappings.Select(m => m.IommuMapped), Is.All.True);
            Assert.That(rig.User.Mm.LockedVm, Is.EqualTo(20), "the page pinned by the device was charged already");
            Assert.That(iommu.Mappings.Select(m => m.LockedVm), Is.EqualTo(new[] { 16L, 4L }));
            Assert.That(rig.Memory.PinnedPages - pinned0, Is.EqualTo(21));
            AssertMapsTo(iommu.Domains[0], A, rig.User.Mm, va, 16);
            AssertMapsTo(iommu.Domains[0], A + (32 * P), rig.User.Mm, va + (16 * P), 4);
            Assert.That(iommu.NumNonPinnedGroups, Is.EqualTo(1));
            rig.AssertInvariants(c);

            ops.Unpin(rig.Edu(), A + P, 1);
            Assert.That(rig.User.Mm.LockedVm, Is.EqualTo(20));
            Assert.That(rig.Unmap(c, 0, 0, out ulong un, VfioType1Flags.UnmapAll), Is.Zero, ErrorReason.Current);
            Assert.That(un, Is.EqualTo(20 * P));
            Assert.That(rig.User.Mm.LockedVm, Is.Zero);
            Assert.That(rig.Memory.PinnedPages, Is.EqualTo(pinned0));
            rig.AssertInvariants(c);
        });
    }

    [TestCase(false, TestName = "Replay_IntoASecondDomainCopiesThePageTables_DetachSecond")]
    [TestCase(true, TestName = "Replay_IntoASecondDomainCopiesThePageTables_DetachFirst")]
    public void Replay_IntoASecondDomain(bool detachFirst)
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            long pinned0 = rig.Memory.PinnedPages;
            (int c, int ge, int de) = rig.OpenEdu();
            ulong va = rig.Buffer(16 * P);
            Assert.That(rig.Map(c, va, A, 12 * P), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Map(c, va + (12 * P), A + (64 * P), 4 * P), Is.Zero, ErrorReason.Current);
            Assert.That(rig.User.Ioctl(c, VfioIoctl.CheckExtension, VfioExtension.DmaCcIommu), Is.EqualTo(1));
            long pinned = rig.Memory.PinnedPages;

            int gp = rig.OpenPairGroup(noSnoopControl: true);
            Assert.That(rig.Core.SetContainer(gp, c), Is.Zero, ErrorReason.Current);
            VfioIommu iommu = rig.Iommu(c);
            IReadOnlyList<IommuDomain> doms = iommu.Domains;
            Assert.That(doms, Has.Count.EqualTo(2), "a domain without snoop control cannot take a coherent domain's place");
            Assert.That(rig.User.Ioctl(c, VfioIoctl.CheckExtension, VfioExtension.DmaCcIommu), Is.Zero);
            Assert.That(rig.Memory.PinnedPages, Is.EqualTo(pinned), "replay copies the first domain: nothing pinned again");
            Assert.That(rig.User.Mm.LockedVm, Is.EqualTo(16));
            for (ulong iova = A; iova < A + (80 * P); iova += P)
            {
                Assert.That(doms[1].IovaToPhys(iova), Is.EqualTo(doms[0].IovaToPhys(iova)), $"iova 0x{iova:x}");
            }

            AssertMapsTo(doms[1], A, rig.User.Mm, va, 12);
            AssertMapsTo(doms[1], A + (64 * P), rig.User.Mm, va + (12 * P), 4);
            rig.AssertInvariants(c);

            IommuDomain kept;
            if (detachFirst)
            {
                rig.User.Close(de);
                Assert.That(rig.Core.UnsetContainer(ge), Is.Zero, ErrorReason.Current);
                kept = doms[1];
                Assert.That(rig.User.Ioctl(c, VfioIoctl.CheckExtension, VfioExtension.DmaCcIommu), Is.Zero);
            }
            else
            {
                Assert.That(rig.Core.UnsetContainer(gp), Is.Zero, ErrorReason.Current);
                kept = doms[0];
                Assert.That(rig.User.Ioctl(c, VfioIoctl.CheckExtension, VfioExtension.DmaCcIommu), Is.EqualTo(1));
            }

            Assert.That(iommu.Domains, Is.EqualTo(new[] { kept }));
            Assert.That(iommu.Mappings.Select(m => (m.Size, m.IommuMapped)), Is.EqualTo(new[] { (12 * P, true), (4 * P, true) }));
            AssertMapsTo(kept, A, rig.User.Mm, va, 12);
            AssertMapsTo(kept, A + (64 * P), rig.User.Mm, va + (12 * P), 4);
            Assert.That(rig.User.Mm.LockedVm, Is.EqualTo(16));
            Assert.That(rig.Memory.PinnedPages, Is.EqualTo(pinned));
            rig.AssertInvariants(c);

            Assert.That(rig.Unmap(c, 0, 0, out ulong un, VfioType1Flags.UnmapAll), Is.Zero, ErrorReason.Current);
            Assert.That(un, Is.EqualTo(16 * P));
            Assert.That(kept.IovaToPhys(A), Is.Zero);
            Assert.That(rig.User.Mm.LockedVm, Is.Zero);
            Assert.That(rig.Memory.PinnedPages, Is.EqualTo(pinned0));
            rig.AssertInvariants(c);
        });
    }

    [Test]
    public void DetachOfTheLastIommuDomainWithEmulatedGroupsKeepsMappingsChargedForExternalPinsOnly()
    {
        var rig = new Type1Rig();
        rig.ExpectDmaUnmapLockInversion();
        rig.Run(() =>
        {
            (int c, _, _, PinningTestDevice ops) = rig.OpenEmulatedEdu();
            int gp = rig.OpenPairGroup();
            Assert.That(rig.Core.SetContainer(gp, c), Is.Zero, ErrorReason.Current);
            long pinned0 = rig.Memory.PinnedPages;
            ulong va = rig.Buffer(16 * P);
            Assert.That(rig.Map(c, va, A, 16 * P), Is.Zero, ErrorReason.Current);
            Assert.That(rig.User.Mm.LockedVm, Is.EqualTo(16));
            Assert.That(ops.Pin(rig.Edu(), A + (4 * P), 2, RW), Is.EqualTo(2), ErrorReason.Current);
            Assert.That(rig.User.Mm.LockedVm, Is.EqualTo(16));
            Assert.That(rig.Memory.PinnedPages - pinned0, Is.EqualTo(18));
            IommuDomain dom = rig.Iommu(c).Domains.Single();

            Assert.That(rig.Core.UnsetContainer(gp), Is.Zero, ErrorReason.Current);
            VfioIommu iommu = rig.Iommu(c);
            Assert.That(iommu.Domains, Is.Empty);
            VfioDmaInfo m = iommu.Mappings.Single();
            Assert.That((m.Iova, m.Size, m.IommuMapped, m.LockedVm, m.PinnedByDrivers), Is.EqualTo((A, 16 * P, false, 2L, 2)));
            Assert.That(rig.User.Mm.LockedVm, Is.EqualTo(2), "only the externally pinned pages stay charged");
            Assert.That(rig.Memory.PinnedPages - pinned0, Is.EqualTo(2));
            Assert.That(dom.IovaToPhys(A), Is.Zero);
            rig.AssertInvariants(c);

            // Still usable by the emulated device, and accounted per pin again.
            Assert.That(ops.Pin(rig.Edu(), A + (8 * P), 1, RW), Is.EqualTo(1), ErrorReason.Current);
            Assert.That(rig.User.Mm.LockedVm, Is.EqualTo(3));
            Assert.That(rig.Unmap(c, A, 16 * P, out ulong un), Is.Zero, ErrorReason.Current);
            Assert.That(un, Is.EqualTo(16 * P));
            Assert.That(ops.UnmapCalls, Is.EqualTo(new[] { (A, 16 * P) }));
            Assert.That(rig.User.Mm.LockedVm, Is.Zero);
            Assert.That(rig.Memory.PinnedPages, Is.EqualTo(pinned0));
            rig.AssertInvariants(c);
        });
    }
}
