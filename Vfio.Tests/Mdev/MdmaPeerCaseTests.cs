// Peer cases of the emulated-IOMMU access path (vfio_pin_pages, vfio_unpin_pages,
// vfio_dma_rw, the dma_unmap notification) on a real mdev: the mdma sample's vfio device,
// driven through its registers where the sample does the call, and through the kernel API
// on its open vfio_device where the case needs arguments the sample never passes. The ids
// are those of docs/conformance.md (MD-xx, T1-31). Each rejected call is checked to change
// nothing.

using NUnit.Framework;
using Vfio.Core;
using Vfio.Core.Client;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Mdev.Samples.Mdma;
using Vfio.Platform.Iommu;
using Vfio.Platform.Proc;
using Vfio.Sim;
using static Vfio.Tests.Mdev.MdmaRig;

namespace Vfio.Tests.Mdev;

[TestFixture]
public sealed class MdmaPeerCaseTests
{
    private const int RW = (int)(IommuProt.Read | IommuProt.Write);

    private static void AssertRejected(MdmaRig rig, VfioContainerFd c, MdmaDevice dev, long ret, Errno errno, MdmaState before)
    {
        Assert.That(ret, Is.EqualTo(errno.Negative()), ErrorReason.Current);
        Assert.That(rig.State(c, dev), Is.EqualTo(before));
        rig.AssertInvariants(c);
    }

    [Test]
    public void MD_10_PinInATypeOneV1Container_IsEacces_DmaRwStillWorks([ValueSource(typeof(MdmaRig), nameof(Profiles))] KernelProfile profile)
    {
        var rig = new MdmaRig(profile);
        Guid u = rig.Create();
        MdmaDevice dev = rig.Dev(u);
        using VfioContainerFd c = rig.Container();
        (VfioGroupFd g, VfioDeviceFd d) = rig.OpenMdev(c, u, VfioExtension.Type1);
        using UserBuffer buf = rig.Buffer(4 * P);
        c.MapDma(buf.Address, A, 4 * P);
        MdmaState before = rig.State(c, dev);
        Assert.That(Copy(d, A, A + P, 64), Is.EqualTo(Failed(Errno.EACCES)));
        AssertRejected(rig, c, dev, dev.PinPages(A, RW, new ulong[1]), Errno.EACCES, before);
        Assert.That(Command(d, MdmaRegs.CmdCopyRw, A, A + P, 64), Is.EqualTo(Done), "vfio_dma_rw has no v2 requirement");
        d.Dispose();
        g.Dispose();
    }

    [Test]
    public void MD_11_ADriverWithoutDmaUnmap_IsNeverRegistered_AndItsPinsAreEinval([ValueSource(typeof(MdmaRig), nameof(Profiles))] KernelProfile profile)
    {
        var rig = new MdmaRig(profile, new MdmaOptions { WithoutDmaUnmapOp = true });
        Guid u = rig.Create();
        MdmaDevice dev = rig.Dev(u);
        using VfioContainerFd c = rig.Container();
        (VfioGroupFd g, VfioDeviceFd d) = rig.OpenMdev(c, u);
        Assert.That(rig.Iommu(c).RegisteredDevices, Is.Zero);
        using UserBuffer buf = rig.Buffer(4 * P);
        c.MapDma(buf.Address, A, 4 * P);
        MdmaState before = rig.State(c, dev);
        Assert.That(Copy(d, A, A + P, 64), Is.EqualTo(Failed(Errno.EINVAL)));
        AssertRejected(rig, c, dev, dev.PinPages(A, RW, new ulong[1]), Errno.EINVAL, before);
        Assert.That(Command(d, MdmaRegs.CmdCopyRw, A, A + P, 64), Is.EqualTo(Done), "vfio_dma_rw needs no dma_unmap");
        d.Dispose();
        g.Dispose();
    }

    [Test]
    public void MD_11_ADeviceWithoutDmaUnmap_BesideOneWithIt_IsRefusedSince66_ButPinnedBy61([ValueSource(typeof(MdmaRig), nameof(Profiles))] KernelProfile profile)
    {
        var rig = new MdmaRig(profile);
        var mtest = new TestMdevDriver();
        TestMdevParent parent = TestMdevParent.Create(rig.Sim.Machine, mtest);
        Guid bare = rig.Sim.CreateMdev(parent.Dev.Name, "mtest-1");
        Guid u = rig.Create();
        MdmaDevice dev = rig.Dev(u);
        using VfioContainerFd c = rig.Container();
        (VfioGroupFd g, VfioDeviceFd d) = rig.OpenMdev(c, u);
        (VfioGroupFd g2, VfioDeviceFd d2) = rig.OpenMdev(c, bare, first: false);
        Assert.That(rig.Iommu(c).RegisteredDevices, Is.EqualTo(1), "only mdma has dma_unmap");
        using UserBuffer buf = rig.Buffer(4 * P);
        c.MapDma(buf.Address, A, 4 * P);
        VfioDevice other = mtest.VfioDeviceOf(bare);
        MdmaState before = rig.State(c, dev);
        if (profile.Has(VfioCoreFeatures.PinPagesNeedDmaUnmapOp))
        {
            AssertRejected(rig, c, dev, other.PinPages(A, RW, new ulong[1]), Errno.EINVAL, before);
            Assert.That(ErrorReason.Current, Does.Contain("no dma_unmap op"));
            rig.Kernel.ExpectWarning("has no dma_unmap op");
            other.UnpinPages(A, 1);
            Assert.That(rig.State(c, dev), Is.EqualTo(before));
        }
        else
        {
            Assert.That(other.PinPages(A, RW, new ulong[1]), Is.EqualTo(1), "6.1: type1 only asks that some device of the container has dma_unmap");
            Assert.That(rig.Qemu.Mm.LockedVm, Is.EqualTo(before.LockedVm + 1));
            other.UnpinPages(A, 1);
            Assert.That(rig.State(c, dev), Is.EqualTo(before));
        }

        foreach (IDisposable x in new IDisposable[] { d2, g2, d, g })
        {
            x.Dispose();
        }
    }

    [Test]
    public void MD_11_AContainerWhoseOnlyEmulatedDeviceWasNeverOpened_HasNoDmaUnmapDevice_SoPinsAreEinval()
    {
        var rig = new MdmaRig();
        Guid opened = rig.Create();
        Guid other = rig.Create();
        MdmaDevice dev = rig.Dev(opened);
        using VfioContainerFd c1 = rig.Container();
        (VfioGroupFd g1, VfioDeviceFd d1) = rig.OpenMdev(c1, opened);

        // A second container holds only a group whose device nobody opened: nothing registered there.
        using VfioContainerFd c2 = rig.Container();
        var g2 = new VfioGroupFd(rig.Qemu, rig.GroupOf(other));
        g2.SetContainer(c2);
        c2.SetIommu(VfioExtension.Type1v2);
        using UserBuffer buf = rig.Buffer(4 * P);
        c2.MapDma(buf.Address, A, 4 * P);
        Assert.That(rig.Iommu(c2).RegisteredDevices, Is.Zero);
        Assert.That(rig.Iommu(c1).RegisteredDevices, Is.EqualTo(1));
        c1.MapDma(buf.Address, A, 4 * P);
        Assert.That(Copy(d1, A, A + P, 64), Is.EqualTo(Done), "the opened device pins in its own container");
        Assert.That(rig.Dev(other).PinnedPages, Is.Zero);
        rig.Kernel.ExpectWarning("device not open");
        MdmaState before = rig.State(c2, rig.Dev(other));
        AssertRejected(rig, c2, rig.Dev(other), rig.Dev(other).PinPages(A, RW, new ulong[1]), Errno.EINVAL, before);
        d1.Dispose();
        g1.Dispose();
        g2.Dispose();
        Assert.That(dev.PinnedPages, Is.Zero);
    }

    [Test]
    public void MD_13_NpageZeroIsEinval_Over512IsE2big_AndAnIovaThatWrapsIsEinvalOnTheType1Path([ValueSource(typeof(MdmaRig), nameof(Profiles))] KernelProfile profile)
    {
        var rig = new MdmaRig(profile);
        Guid u = rig.Create(Type2Name);
        MdmaDevice dev = rig.Dev(u);
        using VfioContainerFd c = rig.Container();
        (VfioGroupFd g, VfioDeviceFd d) = rig.OpenMdev(c, u);
        using UserBuffer buf = rig.Buffer(1024 * P);
        c.MapDma(buf.Address, A, 1024 * P);
        const ulong top = 0xffff_ffff_ffff_e000;
        c.MapDma(buf.Address, top, 2 * P); // no IOMMU domain: any IOVA whose end does not wrap
        MdmaState before = rig.State(c, dev);
        AssertRejected(rig, c, dev, dev.PinPages(A, RW, []), Errno.EINVAL, before);
        AssertRejected(rig, c, dev, dev.PinPages(A, RW, new ulong[VfioDevice.PinPagesMaxEntries + 1]), Errno.E2BIG, before);
        Assert.That(dev.PinPages(A, RW, new ulong[VfioDevice.PinPagesMaxEntries]), Is.EqualTo(VfioDevice.PinPagesMaxEntries), "512 is allowed");
        dev.UnpinPages(A, VfioDevice.PinPagesMaxEntries);
        Assert.That(rig.State(c, dev), Is.EqualTo(before));

        // Neither 6.1 nor 6.12 checks iova + npage pages for overflow on the container path:
        // the address wraps to 0, which no mapping covers, and the call unwinds (EINVAL).
        AssertRejected(rig, c, dev, dev.PinPages(top, RW, new ulong[3]), Errno.EINVAL, before);
        Assert.That(Copy(d, top, A, (uint)(3 * P)), Is.EqualTo(Failed(Errno.EINVAL)), "the sample's engine wraps the same way");
        d.Dispose();
        g.Dispose();
    }

    [Test]
    public void MD_14_PinningTheSameIovaTwice_SharesOnePage_AndTakesTwoUnpins([ValueSource(typeof(MdmaRig), nameof(Profiles))] KernelProfile profile)
    {
        var rig = new MdmaRig(profile);
        Guid u = rig.Create();
        MdmaDevice dev = rig.Dev(u);
        using VfioContainerFd c = rig.Container();
        (VfioGroupFd g, VfioDeviceFd d) = rig.OpenMdev(c, u);
        using UserBuffer buf = rig.Buffer(4 * P);
        c.MapDma(buf.Address, A, 4 * P);
        long pinned0 = rig.Sim.PinnedPages;
        ulong[] p1 = new ulong[1], p2 = new ulong[1];
        Assert.That(dev.PinPages(A, RW, p1), Is.EqualTo(1), "a successful pin returns npage");
        Assert.That(dev.PinPages(A, (int)IommuProt.Read, p2), Is.EqualTo(1));
        Assert.That(p2, Is.EqualTo(p1));
        Assert.That((rig.Iommu(c).Mappings.Single().PinnedByDrivers, rig.Qemu.Mm.LockedVm, rig.Sim.PinnedPages - pinned0), Is.EqualTo((1, 1L, 1L)), "one vfio_pfn with refcount 2");
        dev.UnpinPages(A, 1);
        Assert.That((rig.Iommu(c).Mappings.Single().PinnedByDrivers, rig.Qemu.Mm.LockedVm), Is.EqualTo((1, 1L)), "still pinned");
        dev.UnpinPages(A, 1);
        Assert.That((rig.Iommu(c).Mappings.Single().PinnedByDrivers, rig.Qemu.Mm.LockedVm, rig.Sim.PinnedPages), Is.EqualTo((0, 0L, pinned0)));
        rig.AssertInvariants(c);
        d.Dispose();
        g.Dispose();
    }

    [Test]
    public void MD_16_WithTheMappingOwnerGone_PinIsEnodev_AndDmaRwIsEperm([ValueSource(typeof(MdmaRig), nameof(Profiles))] KernelProfile profile)
    {
        var rig = new MdmaRig(profile);
        Guid u = rig.Create();
        MdmaDevice dev = rig.Dev(u);
        using VfioContainerFd c = rig.Container();
        (VfioGroupFd g, VfioDeviceFd d) = rig.OpenMdev(c, u);

        // Another process maps its memory into the container, then exits.
        SimProcess owner = rig.Sim.Spawn("mapper", Credentials.User);
        int cfd = rig.Qemu.SendFd(c.Fd, owner);
        UserBuffer ob = VfioSim.Allocate(owner, 4 * P, Vfio.Platform.Mm.MapFlags.MAP_POPULATE);
        Assert.That(Vfio.Tests.Type1.Type1Rig.Map(owner, cfd, ob.Address, A, 4 * P), Is.Zero, ErrorReason.Current);
        owner.Exit();
        MdmaState before = rig.State(c, dev);
        Assert.That(Copy(d, A, A + P, 64), Is.EqualTo(Failed(Errno.ENODEV)));
        AssertRejected(rig, c, dev, dev.PinPages(A, RW, new ulong[1]), Errno.ENODEV, before);
        Assert.That(Command(d, MdmaRegs.CmdCopyRw, A, A + P, 64), Is.EqualTo(Failed(Errno.EPERM)));
        Assert.That(c.UnmapDma(A, 4 * P), Is.EqualTo(4 * P), "anyone holding the container unmaps");
        d.Dispose();
        g.Dispose();
    }

    [Test]
    public void MD_17_UnpinWithNpageOutOfRange_WarnsAndChangesNothing([ValueSource(typeof(MdmaRig), nameof(Profiles))] KernelProfile profile, [Values(0, -1, VfioDevice.PinPagesMaxEntries + 1)] int npage)
    {
        var rig = new MdmaRig(profile);
        Guid u = rig.Create();
        MdmaDevice dev = rig.Dev(u);
        using VfioContainerFd c = rig.Container();
        (VfioGroupFd g, VfioDeviceFd d) = rig.OpenMdev(c, u);
        using UserBuffer buf = rig.Buffer(4 * P);
        c.MapDma(buf.Address, A, 4 * P);
        Assert.That(Copy(d, A, A + P, 64), Is.EqualTo(Done));
        MdmaState before = rig.State(c, dev);
        rig.Kernel.ExpectWarning($"vfio_unpin_pages: npage {npage}");
        int warnings = rig.Kernel.Warnings.Count;
        dev.UnpinPages(A, npage);
        Assert.That(rig.Kernel.Warnings, Has.Count.EqualTo(warnings + 1));
        Assert.That(rig.State(c, dev), Is.EqualTo(before));
        d.Dispose();
        g.Dispose();
        Assert.That(rig.Qemu.Mm.LockedVm, Is.Zero);
    }

    [Test]
    public void T1_31_OnARealMdev_UnmapNotifiesEachPinnedMappingWhole_RestartsAndReportsTheFullSize([ValueSource(typeof(MdmaRig), nameof(Profiles))] KernelProfile profile)
    {
        var rig = new MdmaRig(profile);
        rig.ExpectDmaUnmapLockInversion();
        Guid u = rig.Create();
        MdmaDevice dev = rig.Dev(u);
        using VfioContainerFd c = rig.Container();
        (VfioGroupFd g, VfioDeviceFd d) = rig.OpenMdev(c, u);
        using UserBuffer buf = rig.Buffer(16 * P);
        long pinned0 = rig.Sim.PinnedPages;
        c.MapDma(buf.Address, A, 4 * P);
        c.MapDma(buf.Address + (4 * P), A + (4 * P), 4 * P);
        c.MapDma(buf.Address + (8 * P), A + (8 * P), 8 * P);
        Assert.That(Copy(d, A + P, A + (9 * P), (uint)(3 * P)), Is.EqualTo(Done), "pins in the first, second and third mappings");
        Assert.That(rig.Iommu(c).Mappings.Select(m => m.PinnedByDrivers), Is.EqualTo(new[] { 3, 0, 3 }));
        Assert.That(rig.Qemu.Mm.LockedVm, Is.EqualTo(6));
        Assert.That(c.UnmapDma(A, 16 * P), Is.EqualTo(16 * P));
        Assert.That(dev.DmaUnmapCalls, Is.EqualTo(2), "one notification per mapping with pinned pages");
        Assert.That(rig.State(c, dev), Is.EqualTo(new MdmaState("", 0, pinned0, 0)));
        rig.AssertInvariants(c);
        d.Dispose();
        g.Dispose();
    }
}
