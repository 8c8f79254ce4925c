// Conformance of type1 group attach (vfio_iommu_type1_attach_group) against peer case CG-17
// (docs/conformance.md): replay of
// existing mappings when the first IOMMU-backed group joins a container whose mappings were
// made with only an emulated group, and when a group needs a second domain (no snoop
// control); unwinding of a failed replay; and EPERM without interrupt remapping unless
// allow_unsafe_interrupts.

using NUnit.Framework;
using Vfio.Core.Uapi;
using Vfio.Iommu.Type1;
using Vfio.Kernel;
using Vfio.Platform.Iommu;
using Vfio.Platform.Machine;
using Vfio.Platform.Proc;
using Vfio.Tests.Core;

namespace Vfio.Tests.Type1;

[TestFixture]
public sealed class Type1AttachTests
{
    private const ulong Page = Type1Rig.Page;

    /// <summary>
    /// Binds the NIC as an emulated-IOMMU device (mdev stand-in: the NIC is first taken out of
    /// its IOMMU group, as an mdev has none) and opens a container holding only its group.
    /// </summary>
    internal static (int Container, int Group) OpenEmulated(Type1Rig rig, uint type = VfioExtension.Type1v2)
    {
        rig.EmulatedNext(withDmaUnmap: false, device: VfioRig.Nic);
        rig.Core.Bind(VfioRig.Nic);
        rig.RealNext();
        int c = rig.Core.OpenContainer();
        int g = rig.User.Open(rig.Core.Group(VfioRig.Nic).DevPath);
        Assert.That(g, Is.GreaterThanOrEqualTo(0));
        Assert.That(rig.Core.SetContainer(g, c), Is.Zero, ErrorReason.Current);
        Assert.That(rig.Core.SetIommu(c, type), Is.Zero, ErrorReason.Current);
        return (c, g);
    }

    [Test]
    public void CG_17_FirstRealGroup_ReplaysMappingsMadeWithOnlyAnEmulatedGroup_PinningAndChargingThemNow()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _) = OpenEmulated(rig);
            rig.Core.Bind(VfioRig.Edu);
            ulong va = rig.Buffer(16 * Page);
            long pinned0 = rig.Memory.PinnedPages;
            Assert.That(rig.Map(c, va, 0x100000, 16 * Page), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Iommu(c).Mappings.Single().IommuMapped, Is.False);
            Assert.That(rig.User.Mm.LockedVm, Is.Zero);
            int g = rig.Core.OpenGroup(VfioRig.Edu);
            Assert.That(rig.Core.SetContainer(g, c), Is.Zero, ErrorReason.Current);
            var iommu = rig.Iommu(c);
            Assert.That(iommu.Domains, Has.Count.EqualTo(1));
            Assert.That(iommu.Mappings.Single().IommuMapped, Is.True);
            Assert.That(rig.User.Mm.LockedVm, Is.EqualTo(16), "replay charges the pages it pins");
            Assert.That(rig.Memory.PinnedPages - pinned0, Is.EqualTo(16));
            for (ulong off = 0; off < 16 * Page; off += Page)
            {
                Assert.That(iommu.Domains[0].IovaToPhys(0x100000 + off), Is.EqualTo(rig.User.Mm.Translate(va + off) << 12));
            }

            Assert.That(iommu.IovaList, Is.Not.Empty, "the real group brings an IOVA list");
            rig.AssertInvariants(c);
            Assert.That(rig.Unmap(c, 0x100000, 16 * Page, out ulong unmapped), Is.Zero, ErrorReason.Current);
            Assert.That(unmapped, Is.EqualTo(16 * Page));
            Assert.That(rig.User.Mm.LockedVm, Is.Zero);
            Assert.That(rig.Memory.PinnedPages, Is.EqualTo(pinned0));
        });
    }

    [Test]
    public void DetachingTheLastRealGroupBesideAnEmulatedOne_KeepsMappingsUnpinned_AndReattachReplaysThem()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _) = OpenEmulated(rig);
            rig.Core.Bind(VfioRig.Edu);
            int g = rig.Core.OpenGroup(VfioRig.Edu);
            Assert.That(rig.Core.SetContainer(g, c), Is.Zero, ErrorReason.Current);
            long pinned0 = rig.Memory.PinnedPages;
            ulong va = rig.Buffer(8 * Page);
            Assert.That(rig.Map(c, va, 0x100000, 8 * Page), Is.Zero, ErrorReason.Current);
            Assert.That(rig.User.Mm.LockedVm, Is.EqualTo(8));
            Assert.That(rig.Core.UnsetContainer(g), Is.Zero, ErrorReason.Current);
            Vfio.Iommu.Type1.VfioDmaInfo m = rig.Iommu(c).Mappings.Single();
            Assert.That((m.Iova, m.Size, m.IommuMapped), Is.EqualTo((0x100000UL, 8 * Page, false)), "the mapping stays, unmapped from any IOMMU");
            Assert.That(rig.Iommu(c).Domains, Is.Empty);
            Assert.That(rig.User.Mm.LockedVm, Is.Zero, "its pages were unpinned and uncharged");
            Assert.That(rig.Memory.PinnedPages, Is.EqualTo(pinned0));
            Assert.That(rig.Iommu(c).IovaList.Select(r => (r.Start, r.End)), Is.EqualTo(new[] { (0UL, ulong.MaxValue) }),
                "vfio_iommu_aper_expand + resv_refresh with no domain left: the whole 64-bit space, no reserved hole");
            rig.AssertInvariants(c);
            Assert.That(rig.Core.SetContainer(g, c), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Iommu(c).Mappings.Single().IommuMapped, Is.True, "re-attach replays it");
            Assert.That(rig.User.Mm.LockedVm, Is.EqualTo(8));
            Assert.That(rig.Iommu(c).Domains[0].IovaToPhys(0x100000 + Page), Is.EqualTo(rig.User.Mm.Translate(va + Page) << 12));
            rig.AssertInvariants(c);
        });
    }

    [Test]
    public void DetachingTheOnlyRealGroup_RemovesEveryMapping()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            long pinned0 = rig.Memory.PinnedPages;
            rig.Core.Bind(VfioRig.Edu);
            rig.Core.Bind(VfioRig.PairF0);
            rig.Core.Bind(VfioRig.PairF1);
            int c = rig.Core.OpenContainer();
            int g1 = rig.Core.OpenGroup(VfioRig.Edu);
            int g2 = rig.Core.OpenGroup(VfioRig.PairF0);
            Assert.That(rig.Core.SetContainer(g1, c), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Core.SetContainer(g2, c), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Core.SetIommu(c), Is.Zero, ErrorReason.Current);
            ulong va = rig.Buffer(8 * Page);
            Assert.That(rig.Map(c, va, 0x100000, 8 * Page), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Core.UnsetContainer(g2), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Iommu(c).Mappings, Has.Count.EqualTo(1), "a group remains, so the mappings stay");
            Assert.That(rig.User.Mm.LockedVm, Is.EqualTo(8));
            rig.AssertInvariants(c);
            Assert.That(rig.Core.UnsetContainer(g1), Is.Zero, ErrorReason.Current);
            Assert.That(rig.User.Mm.LockedVm, Is.Zero);
            Assert.That(rig.Memory.PinnedPages, Is.EqualTo(pinned0));
        });
    }

    [Test]
    public void AttachWhoseDomainCannotBeAllocated_IsEnomemOn612_EioOn61_AndChangesNothing([Values("linux-6.12", "linux-6.1")] string profile)
    {
        KernelProfile kernel = KernelProfile.Parse(profile);
        Errno expected = kernel.Has(Type1Features.DomainAllocFailurePassesErrno) ? Errno.ENOMEM : Errno.EIO;
        Assert.That(expected, Is.EqualTo(kernel == KernelProfile.Linux6_1 ? Errno.EIO : Errno.ENOMEM), "iommu_domain_alloc() NULL on 6.1; iommu_paging_domain_alloc()'s -ENOMEM on 6.12");
        var rig = new Type1Rig(profile: kernel);
        rig.Run(() =>
        {
            (int c, _, _) = rig.OpenEdu();
            ulong va = rig.Buffer(4 * Page);
            Assert.That(rig.Map(c, va, 0x100000, 4 * Page), Is.Zero, ErrorReason.Current);
            rig.Core.Dev(VfioRig.PairF0).IommuGroup!.NoSnoopControl = true; // needs a domain of its own
            rig.Core.Bind(VfioRig.PairF0);
            rig.Core.Bind(VfioRig.PairF1);
            int g = rig.Core.OpenGroup(VfioRig.PairF0);
            Type1State before = rig.Snapshot(c);
            rig.Kernel.Faults.FailNth(1, Iommu.Type1.VfioIommu.DomainAllocFaultSite);
            Assert.That(rig.Core.SetContainer(g, c), Is.EqualTo(expected.Negative()), ErrorReason.Current);
            rig.AssertUnchanged(c, before);
            Assert.That(rig.Core.Group(VfioRig.PairF0).Container, Is.Null, "the group did not join the container");
            Assert.That(rig.Core.SetContainer(g, c), Is.Zero, "a second try succeeds: " + ErrorReason.Current);
            Assert.That(rig.Iommu(c).Domains, Has.Count.EqualTo(2));
            rig.AssertInvariants(c);
        });
    }

    [Test]
    public void CG_17_ReplayThatHitsRlimitMemlock_FailsTheAttach_AndUnwindsOnlyTheNewDomain()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _) = OpenEmulated(rig);
            rig.Core.Bind(VfioRig.Edu);
            rig.User.Credentials = Credentials.Root.Without(Capabilities.CAP_IPC_LOCK);
            rig.User.Limits = rig.User.Limits with { MemlockBytes = (long)(8 * Page) };
            ulong va = rig.Buffer(32 * Page);
            Assert.That(rig.Map(c, va, 0x100000, 4 * Page), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Map(c, va + (4 * Page), 0x200000, 16 * Page), Is.Zero, ErrorReason.Current);
            Type1State before = rig.Snapshot(c);
            int g = rig.Core.OpenGroup(VfioRig.Edu);
            Assert.That(rig.Core.SetContainer(g, c), Is.EqualTo(Errno.ENOMEM.Negative()), ErrorReason.Current);
            rig.AssertUnchanged(c, before);
            Assert.That(rig.Iommu(c).Mappings.Select(m => m.IommuMapped), Is.All.False);
            Assert.That(rig.Iommu(c).IovaList, Is.Empty, "the IOVA list is the emulated-only one again");
            Assert.That(rig.Core.Group(VfioRig.Edu).Container, Is.Null, "the group did not join the container");
        });
    }

    [Test]
    public void CG_17_GroupWithoutSnoopControl_GetsASecondDomain_WithEveryMappingReplayedWithoutRecharging()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            rig.Core.Dev(VfioRig.PairF0).IommuGroup!.NoSnoopControl = true;
            (int c, _, _) = rig.OpenEdu();
            Assert.That(rig.CheckExtension(c, VfioExtension.DmaCcIommu), Is.EqualTo(1));
            ulong va = rig.Buffer(2 * 1024 * 1024);
            ulong hva = rig.HugeBuffer(2 * 1024 * 1024);
            Assert.That(rig.Map(c, va, 0x100000, 64 * Page), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Map(c, hva, 0x40000000, 2 * 1024 * 1024), Is.Zero, ErrorReason.Current);
            long locked = rig.User.Mm.LockedVm;
            long pinned = rig.Memory.PinnedPages;
            rig.Core.Bind(VfioRig.PairF0);
            rig.Core.Bind(VfioRig.PairF1);
            int g = rig.Core.OpenGroup(VfioRig.PairF0);
            Assert.That(rig.Core.SetContainer(g, c), Is.Zero, ErrorReason.Current);
            var iommu = rig.Iommu(c);
            Assert.That(iommu.Domains, Has.Count.EqualTo(2), "a domain that cannot enforce coherency is not shared");
            Assert.That(rig.User.Mm.LockedVm, Is.EqualTo(locked), "replay does not charge again");
            Assert.That(rig.Memory.PinnedPages, Is.EqualTo(pinned), "replay does not pin again");
            IommuDomain first = iommu.Domains[0], second = iommu.Domains[1];
            for (ulong off = 0; off < 64 * Page; off += Page)
            {
                Assert.That(second.IovaToPhys(0x100000 + off), Is.EqualTo(first.IovaToPhys(0x100000 + off)).And.Not.Zero);
            }

            Assert.That(second.IovaToPhys(0x40000000 + 0x1000), Is.EqualTo(rig.User.Mm.Translate(hva + 0x1000) << 12));
            Assert.That(rig.CheckExtension(c, VfioExtension.DmaCcIommu), Is.Zero, "DMA_CC_IOMMU needs every domain coherent");
            rig.AssertInvariants(c);
            Assert.That(rig.Unmap(c, 0x100000, 64 * Page, out _), Is.Zero, ErrorReason.Current);
            Assert.That(second.IovaToPhys(0x100000), Is.Zero, "unmap removes the mapping from every domain");
            Assert.That(first.IovaToPhys(0x100000), Is.Zero);
        });
    }

    [Test]
    public void CG_17_CoherentSecondGroup_JoinsTheExistingDomain()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _, _) = rig.OpenEdu();
            ulong va = rig.Buffer(4 * Page);
            Assert.That(rig.Map(c, va, 0x100000, 4 * Page), Is.Zero, ErrorReason.Current);
            rig.Core.Bind(VfioRig.PairF0);
            rig.Core.Bind(VfioRig.PairF1);
            int g = rig.Core.OpenGroup(VfioRig.PairF0);
            Assert.That(rig.Core.SetContainer(g, c), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Iommu(c).Domains, Has.Count.EqualTo(1));
            Assert.That(rig.CheckExtension(c, VfioExtension.DmaCcIommu), Is.EqualTo(1));
            rig.AssertInvariants(c);
        });
    }

    [Test]
    public void AttachWithoutInterruptRemapping_IsEperm_UnlessAllowUnsafeInterrupts()
    {
        MachineDescription d = MachineDescriptionReader.Default;
        d = d with { Iommu = d.Iommu! with { InterruptRemapping = false } };
        var rig = new Type1Rig(machine: d);
        rig.Run(() =>
        {
            rig.Core.Bind(VfioRig.Edu);
            int c = rig.Core.OpenContainer();
            int g = rig.Core.OpenGroup(VfioRig.Edu);
            Assert.That(rig.Core.SetContainer(g, c), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Core.SetIommu(c), Is.EqualTo(Errno.EPERM.Negative()), ErrorReason.Current);
            Assert.That(ErrorReason.Current, Does.Contain("allow_unsafe_interrupts"));
            rig.Type1.AllowUnsafeInterrupts = true;
            Assert.That(rig.Core.SetIommu(c), Is.Zero, ErrorReason.Current);
            ulong va = rig.Buffer(Page);
            Assert.That(rig.Map(c, va, 0x100000, Page), Is.Zero, ErrorReason.Current);
            rig.AssertInvariants(c);
        });
    }
}
