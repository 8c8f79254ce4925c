// Who may unmap, and who is charged (MAP_DMA with VADDR moving the charge to the caller's mm,
// the owner check vfio_dma_do_unmap no longer has, race 14 in docs/races.md): the
// locked_vm charge follows the mapping to the process that re-supplies its vaddr (live
// update), the old owner may exit, and no counter goes negative. The design variant
// VfioDesign.UnmapOnlyByMappingMm restores the 4.10–5.18 owner check.

using NUnit.Framework;
using Vfio.Core;
using Vfio.Core.Uapi;
using Vfio.Iommu.Type1;
using Vfio.Kernel;
using Vfio.Platform.Proc;
using static Vfio.Tests.Type1.Type1Kit;

namespace Vfio.Tests.Type1;

[TestFixture]
public sealed class UnmapOwnerTests
{
    private const ulong A = 0x100000;

    [Test]
    public void Item14_UpdateVaddrFromAnotherProcessMovesTheChargeAndTheOldOwnerMayExit()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            long pinned0 = rig.Memory.PinnedPages;
            (int c0, _, _) = rig.OpenEdu();
            SimProcess p = rig.Machine.CreateProcess("qemu-old", Credentials.User);
            SimProcess q = rig.Machine.CreateProcess("qemu-new", Credentials.User);
            SimProcess small = rig.Machine.CreateProcess("qemu-small", Credentials.User, new ResourceLimits { MemlockBytes = (long)(8 * P) });
            int cp = rig.User.SendFd(c0, p);
            ulong va = rig.Buffer(16 * P, p);
            Assert.That(Type1Rig.Map(p, cp, va, A, 16 * P), Is.Zero, ErrorReason.Current);
            Assert.That(p.Mm.LockedVm, Is.EqualTo(16));
            int cq = p.SendFd(cp, q);
            int cs = p.SendFd(cp, small);

            Assert.That(Type1Rig.Unmap(q, cq, A, 16 * P, out ulong un, VfioType1Flags.UnmapVaddr), Is.Zero, ErrorReason.Current);
            Assert.That(un, Is.EqualTo(16 * P));
            Assert.That(rig.Iommu(c0).Mappings.Single().VaddrInvalid, Is.True);
            Assert.That(p.Mm.LockedVm, Is.EqualTo(16), "the charge stays until a new vaddr is supplied");

            // A new owner whose RLIMIT_MEMLOCK cannot take the charge is refused; nothing moves.
            ulong vs = rig.Buffer(16 * P, small);
            Type1State before = rig.State(c0, p);
            rig.AssertRejected(c0, Type1Rig.Map(small, cs, vs, A, 16 * P, VfioType1Flags.MapVaddr), Errno.ENOMEM, before, p);
            Assert.That(small.Mm.LockedVm, Is.Zero);

            ulong vq = rig.Buffer(16 * P, q);
            Assert.That(Type1Rig.Map(q, cq, vq, A, 16 * P, VfioType1Flags.MapVaddr), Is.Zero, ErrorReason.Current);
            VfioDmaInfo m = rig.Iommu(c0).Mappings.Single();
            Assert.That((m.VaddrInvalid, m.Vaddr, m.OwnerPid, m.LockedVm), Is.EqualTo((false, vq, q.Pid, 16L)));
            Assert.That(p.Mm.LockedVm, Is.Zero);
            Assert.That(q.Mm.LockedVm, Is.EqualTo(16));
            rig.AssertInvariants(c0);

            p.Exit();
            Assert.That(Type1Rig.Unmap(q, cq, A, 16 * P, out un), Is.Zero, ErrorReason.Current);
            Assert.That(un, Is.EqualTo(16 * P));
            Assert.That(q.Mm.LockedVm, Is.Zero);
            Assert.That(p.Mm.LockedVm, Is.Zero);
            Assert.That(rig.Memory.PinnedPages, Is.EqualTo(pinned0));
            rig.AssertInvariants(c0);
        });
    }

    [Test]
    public void Item14_OwnerExitsBeforeTheHandOverAndNoCounterGoesNegative()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            long pinned0 = rig.Memory.PinnedPages;
            (int c0, _, _) = rig.OpenEdu();
            SimProcess p = rig.Machine.CreateProcess("qemu-old", Credentials.User);
            SimProcess q = rig.Machine.CreateProcess("qemu-new", Credentials.User);
            int cp = rig.User.SendFd(c0, p);
            ulong va = rig.Buffer(8 * P, p);
            Assert.That(Type1Rig.Map(p, cp, va, A, 8 * P), Is.Zero, ErrorReason.Current);
            int cq = p.SendFd(cp, q);
            Assert.That(Type1Rig.Unmap(q, cq, A, 8 * P, out ulong un, VfioType1Flags.UnmapVaddr), Is.Zero, ErrorReason.Current);
            p.Exit();

            ulong vq = rig.Buffer(8 * P, q);
            Assert.That(Type1Rig.Map(q, cq, vq, A, 8 * P, VfioType1Flags.MapVaddr), Is.Zero, ErrorReason.Current);
            Assert.That(q.Mm.LockedVm, Is.EqualTo(8));
            Assert.That(rig.Iommu(c0).Mappings.Single().OwnerPid, Is.EqualTo(q.Pid));
            rig.AssertInvariants(c0);
            Assert.That(Type1Rig.Unmap(q, cq, A, 8 * P, out un), Is.Zero, ErrorReason.Current);
            Assert.That(un, Is.EqualTo(8 * P));
            Assert.That(q.Mm.LockedVm, Is.Zero);
            Assert.That(rig.Memory.PinnedPages, Is.EqualTo(pinned0));
            rig.AssertInvariants(c0);
        });
    }

    [TestCase(false, TestName = "Variant_UnmapOnlyByMappingMm_Off_AnyHolderUnmaps")]
    [TestCase(true, TestName = "Variant_UnmapOnlyByMappingMm_On_OtherMmGetsSizeZero")]
    public void Variant_UnmapOnlyByMappingMm(bool onlyByMappingMm)
    {
        var rig = new Type1Rig(options: new VfioOptions { Design = VfioDesign.Default with { UnmapOnlyByMappingMm = onlyByMappingMm } });
        rig.Run(() =>
        {
            (int c, _, _) = rig.OpenEdu();
            ulong va = rig.Buffer(8 * P);
            Assert.That(rig.Map(c, va, A, 8 * P), Is.Zero, ErrorReason.Current);
            SimProcess q = rig.Machine.CreateProcess("other");
            int cq = rig.User.SendFd(c, q);
            Type1State before = rig.State(c);

            Assert.That(Type1Rig.Unmap(q, cq, A, 8 * P, out ulong un), Is.Zero, ErrorReason.Current);
            if (onlyByMappingMm)
            {
                Assert.That(un, Is.Zero, "the loop stops silently at the first mapping of another mm");
                Assert.That(rig.State(c), Is.EqualTo(before));
                Assert.That(Type1Rig.Unmap(q, cq, 0, 0, out un, VfioType1Flags.UnmapAll), Is.Zero, ErrorReason.Current);
                Assert.That(un, Is.Zero);
                Assert.That(rig.State(c), Is.EqualTo(before));
                Assert.That(rig.Unmap(c, A, 8 * P, out un), Is.Zero, "the mapper itself still can");
            }

            Assert.That(un, Is.EqualTo(8 * P));
            Assert.That(rig.Iommu(c).Mappings, Is.Empty);
            Assert.That(rig.User.Mm.LockedVm, Is.Zero);
            rig.AssertInvariants(c);
        });
    }
}
