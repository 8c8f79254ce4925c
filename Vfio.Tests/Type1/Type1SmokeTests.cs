// First end-to-end checks of the type1 backend: map, DMA through the IOMMU, unmap, and the
// accounting coming back to baseline.

using NUnit.Framework;
using Vfio.Kernel;
using Vfio.Platform.Iommu;
using Vfio.Tests.Core;

namespace Vfio.Tests.Type1;

[TestFixture]
public sealed class Type1SmokeTests
{
    [Test]
    public void MapThenUnmap_PinsChargesAndMapsThenGivesEverythingBack()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            long pinned0 = rig.Memory.PinnedPages;
            (int c, int g, int d) = rig.OpenEdu();
            ulong va = rig.Buffer(1 << 20);
            Assert.That(rig.Map(c, va, 0x100000, 1 << 20), Is.Zero, ErrorReason.Current);
            var iommu = rig.Iommu(c);
            Assert.That(iommu.Mappings, Has.Count.EqualTo(1));
            Assert.That(rig.User.Mm.LockedVm, Is.EqualTo(256));
            Assert.That(rig.Memory.PinnedPages - pinned0, Is.EqualTo(256));
            IommuDomain dom = iommu.Domains[0];
            Assert.That(dom.IovaToPhys(0x100000), Is.EqualTo(rig.User.Mm.Translate(va) << 12));
            rig.AssertInvariants(c);
            Assert.That(rig.Unmap(c, 0x100000, 1 << 20, out ulong unmapped), Is.Zero, ErrorReason.Current);
            Assert.That(unmapped, Is.EqualTo(1UL << 20));
            Assert.That(rig.User.Mm.LockedVm, Is.Zero);
            Assert.That(rig.Memory.PinnedPages, Is.EqualTo(pinned0));
            Assert.That(dom.IovaToPhys(0x100000), Is.Zero);
            rig.AssertInvariants(c);
            rig.User.Close(d);
            rig.User.Close(g);
            rig.User.Close(c);
        });
    }

    [Test]
    public void PinPagesByADriverWithoutDmaUnmap_IsEinvalAndPinsNothing()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _, _) = rig.OpenEdu();
            ulong va = rig.Buffer(Type1Rig.Page);
            Assert.That(rig.Map(c, va, 0x100000, Type1Rig.Page), Is.Zero, ErrorReason.Current);
            long pinned = rig.Memory.PinnedPages;
            long locked = rig.User.Mm.LockedVm;
            ulong[] pfns = new ulong[1];
            Assert.That(rig.Core.VDev(VfioRig.Edu).PinPages(0x100000, 3, pfns), Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That(ErrorReason.Current, Does.Contain("no dma_unmap op"));
            Assert.That(pfns[0], Is.Zero);
            Assert.That(rig.Memory.PinnedPages, Is.EqualTo(pinned));
            Assert.That(rig.User.Mm.LockedVm, Is.EqualTo(locked));
            Assert.That(rig.Iommu(c).Mappings[0].PinnedByDrivers, Is.Zero);
        });
    }
}
