// The 2016 mdev series' own container matrix, on a real mdev (the mdma sample) and the
// pass-through edu function, on both profiles: pass-through only, mdev only, one of each in
// one type1 container, and hot unplug of either while the other stays — with the mappings,
// the owner's locked_vm and the machine's pinned pages asserted after every step. Also
// race 13 (the replay unwind of vfio_iommu_replay) on a real mdev.

using NUnit.Framework;
using Vfio.Core.Client;
using Vfio.Core.Uapi;
using Vfio.Iommu.Type1;
using Vfio.Kernel;
using Vfio.Mdev.Samples.Mdma;
using Vfio.Platform.Devices;
using Vfio.Platform.Proc;
using Vfio.Sim;
using static Vfio.Tests.Mdev.MdmaRig;

namespace Vfio.Tests.Mdev;

[TestFixture]
public sealed class MdmaContainerMatrixTests
{
    // Below edu's 28-bit DMA mask.
    private const int Pages = 16;
    private static readonly ulong[] s_seeds = [1, 2, 3];

    /// <summary>edu DMAs <paramref name="count"/> bytes from <paramref name="iova"/> into its buffer (through the IOMMU); its result (0 or -errno).</summary>
    private static int EduDmaFromRam(MdmaRig rig, VfioDeviceFd d, ulong iova, ulong count)
    {
        d.WriteConfig16(4, (ushort)(d.ReadConfig16(4) | 0x6)); // memory space, bus master
        d.WriteRegion64(VfioPciIndex.Bar0, EduDevice.RegDmaSource, iova);
        d.WriteRegion64(VfioPciIndex.Bar0, EduDevice.RegDmaDestination, EduDevice.DmaBufferStart);
        d.WriteRegion64(VfioPciIndex.Bar0, EduDevice.RegDmaCount, count);
        d.WriteRegion64(VfioPciIndex.Bar0, EduDevice.RegDmaCommand, EduDevice.DmaCmdStart);
        Runs.SleepUntil(() => (d.ReadRegion64(VfioPciIndex.Bar0, EduDevice.RegDmaCommand) & EduDevice.DmaCmdStart) == 0);
        return ((EduDevice)rig.Sim.Device(Edu)).LastDmaResult;
    }

    private static void Run(MdmaRig rig, Action body) => Runs.AssertPassed(rig.Sim.Run(body));

    [Test]
    public void PassThroughOnly_MapPinsAndChargesEveryPage_UnmapGivesThemBack([ValueSource(typeof(MdmaRig), nameof(Profiles))] KernelProfile profile)
    {
        var rig = new MdmaRig(profile);
        Run(rig, () =>
        {
            long pinned0 = rig.Sim.PinnedPages;
            using VfioContainerFd c = rig.Container();
            (VfioGroupFd g, VfioDeviceFd d) = rig.OpenEdu(c, first: true);
            using UserBuffer buf = rig.Buffer(Pages * P);
            Assert.That(rig.State(c), Is.EqualTo(new MdmaState("", 0, pinned0, 0)));
            c.MapDma(buf.Address, A, Pages * P);
            Assert.That((rig.Qemu.Mm.LockedVm, rig.Sim.PinnedPages - pinned0), Is.EqualTo(((long)Pages, (long)Pages)));
            Assert.That(rig.Iommu(c).Mappings.Single().IommuMapped, Is.True);
            buf.Fill(0x5a);
            Assert.That(EduDmaFromRam(rig, d, A, 64), Is.Zero);
            Assert.That(((EduDevice)rig.Sim.Device(Edu)).CopyBuffer()[..64], Is.All.EqualTo((byte)0x5a));
            Assert.That(c.UnmapDma(A, Pages * P), Is.EqualTo(Pages * P));
            Assert.That(rig.State(c), Is.EqualTo(new MdmaState("", 0, pinned0, 0)));
            d.Dispose();
            g.Dispose();
        });
    }

    [Test]
    public void MdevOnly_MapPinsNothing_TheDevicePinsAndIsChargedPageByPage([ValueSource(typeof(MdmaRig), nameof(Profiles))] KernelProfile profile)
    {
        var rig = new MdmaRig(profile);
        rig.ExpectDmaUnmapLockInversion();
        Run(rig, () =>
        {
            long pinned0 = rig.Sim.PinnedPages;
            Guid u = rig.Create();
            MdmaDevice dev = rig.Dev(u);
            using VfioContainerFd c = rig.Container();
            (VfioGroupFd g, VfioDeviceFd d) = rig.OpenMdev(c, u);
            using UserBuffer buf = rig.Buffer(Pages * P);
            c.MapDma(buf.Address, A, Pages * P);
            Assert.That(rig.State(c, dev) with { Mappings = "" }, Is.EqualTo(new MdmaState("", 0, pinned0, 0)));
            Assert.That(rig.Iommu(c).Domains, Is.Empty);
            Assert.That(Copy(d, A, A + (8 * P), (uint)(2 * P)), Is.EqualTo(Done));
            Assert.That(rig.State(c, dev) with { Mappings = "" }, Is.EqualTo(new MdmaState("", 4, pinned0 + 4, 4)));
            Assert.That(c.UnmapDma(A, Pages * P), Is.EqualTo(Pages * P));
            Assert.That(dev.DmaUnmapCalls, Is.EqualTo(1));
            Assert.That(rig.State(c, dev), Is.EqualTo(new MdmaState("", 0, pinned0, 0)));
            d.Dispose();
            g.Dispose();
        });
    }

    /// <summary>One of each in one container: map once, edu DMAs through the IOMMU, mdma pins (not charged again) and copies.</summary>
    private static (VfioContainerFd C, VfioGroupFd EduGroup, VfioDeviceFd EduDev, VfioGroupFd MdevGroup, VfioDeviceFd MdevDev, UserBuffer Buf, MdmaDevice Dev) OneOfEach(MdmaRig rig, long pinned0)
    {
        Guid u = rig.Create();
        MdmaDevice dev = rig.Dev(u);
        VfioContainerFd c = rig.Container();
        (VfioGroupFd mg, VfioDeviceFd md) = rig.OpenMdev(c, u);
        (VfioGroupFd eg, VfioDeviceFd ed) = rig.OpenEdu(c);
        UserBuffer buf = rig.Buffer(Pages * P);
        Assert.That(rig.State(c, dev), Is.EqualTo(new MdmaState("", 0, pinned0, 0)));
        c.MapDma(buf.Address, A, Pages * P);
        Assert.That(rig.State(c, dev) with { Mappings = "" }, Is.EqualTo(new MdmaState("", Pages, pinned0 + Pages, 0)), "an IOMMU domain exists: MAP pins and charges");
        byte[] data = new byte[2 * P];
        new Random(5).NextBytes(data);
        buf.Write(0, data);
        Assert.That(Copy(md, A, A + (8 * P), (uint)data.Length), Is.EqualTo(Done));
        Assert.That(buf.Read(8 * P, data.Length), Is.EqualTo(data));
        Assert.That(rig.State(c, dev) with { Mappings = "" }, Is.EqualTo(new MdmaState("", Pages, pinned0 + Pages + 4, 4)), "the device's pins hold page references but are not charged again");
        Assert.That(EduDmaFromRam(rig, ed, A + (8 * P), 64), Is.Zero, "the pass-through device DMAs what the mdev wrote");
        Assert.That(((EduDevice)rig.Sim.Device(Edu)).CopyBuffer()[..64], Is.EqualTo(data[..64]));
        rig.AssertInvariants(c);
        return (c, eg, ed, mg, md, buf, dev);
    }

    [Test]
    public void OneOfEach_ShareOneMapping_AndUnmapReleasesBothKindsOfPins([ValueSource(typeof(MdmaRig), nameof(Profiles))] KernelProfile profile)
    {
        var rig = new MdmaRig(profile);
        rig.ExpectDmaUnmapLockInversion();
        Run(rig, () =>
        {
            long pinned0 = rig.Sim.PinnedPages;
            (VfioContainerFd c, VfioGroupFd eg, VfioDeviceFd ed, VfioGroupFd mg, VfioDeviceFd md, UserBuffer buf, MdmaDevice dev) = OneOfEach(rig, pinned0);
            Assert.That(c.UnmapDma(A, Pages * P), Is.EqualTo(Pages * P));
            Assert.That(dev.DmaUnmapCalls, Is.EqualTo(1));
            Assert.That(rig.State(c, dev), Is.EqualTo(new MdmaState("", 0, pinned0, 0)));
            foreach (IDisposable x in new IDisposable[] { md, ed, mg, eg, c, buf })
            {
                x.Dispose();
            }
        });
    }

    [Test]
    public void UnplugThePassThroughDevice_TheMdevKeepsTheMappings_OnlyItsPinsStayCharged([ValueSource(typeof(MdmaRig), nameof(Profiles))] KernelProfile profile)
    {
        var rig = new MdmaRig(profile);
        rig.ExpectDmaUnmapLockInversion();
        Run(rig, () =>
        {
            long pinned0 = rig.Sim.PinnedPages;
            (VfioContainerFd c, VfioGroupFd eg, VfioDeviceFd ed, VfioGroupFd mg, VfioDeviceFd md, UserBuffer buf, MdmaDevice dev) = OneOfEach(rig, pinned0);
            ed.Dispose();
            Assert.That(rig.State(c, dev) with { Mappings = "" }, Is.EqualTo(new MdmaState("", Pages, pinned0 + Pages + 4, 4)), "closing the device detaches nothing");
            eg.Dispose(); // the group leaves the container: the last IOMMU domain goes (vfio_iommu_unmap_unpin_reaccount)
            VfioIommu iommu = rig.Iommu(c);
            Assert.That(iommu.Domains, Is.Empty);
            VfioDmaInfo m = iommu.Mappings.Single();
            Assert.That((m.Size, m.IommuMapped, m.PinnedByDrivers, m.LockedVm), Is.EqualTo((Pages * P, false, 4, 4L)), "kept for the mdev, unmapped from the IOMMU, re-accounted to the device's pins");
            Assert.That(rig.State(c, dev) with { Mappings = "" }, Is.EqualTo(new MdmaState("", 4, pinned0 + 4, 4)));
            Assert.That(rig.Sim.Unbind(Edu), Is.EqualTo("vfio-pci"), "nothing holds edu: the unbind does not wait");
            Assert.That(rig.State(c, dev) with { Mappings = "" }, Is.EqualTo(new MdmaState("", 4, pinned0 + 4, 4)));

            // The mdev goes on: new pins are charged one by one again.
            Assert.That(Copy(md, A + (4 * P), A + (12 * P), (uint)P), Is.EqualTo(Done));
            Assert.That(rig.State(c, dev) with { Mappings = "" }, Is.EqualTo(new MdmaState("", 6, pinned0 + 6, 6)));
            rig.AssertInvariants(c);
            Assert.That(c.UnmapDma(A, Pages * P), Is.EqualTo(Pages * P));
            Assert.That(rig.State(c, dev), Is.EqualTo(new MdmaState("", 0, pinned0, 0)));
            foreach (IDisposable x in new IDisposable[] { md, mg, c, buf })
            {
                x.Dispose();
            }
        });
    }

    [Test]
    public void RemoveTheMdev_ItsPinsGo_ThePassThroughMappingStaysPinnedAndCharged([ValueSource(typeof(MdmaRig), nameof(Profiles))] KernelProfile profile)
    {
        var rig = new MdmaRig(profile);
        Run(rig, () =>
        {
            long pinned0 = rig.Sim.PinnedPages;
            (VfioContainerFd c, VfioGroupFd eg, VfioDeviceFd ed, VfioGroupFd mg, VfioDeviceFd md, UserBuffer buf, MdmaDevice dev) = OneOfEach(rig, pinned0);
            Guid u = rig.Sim.Mdev!.Devices.Single().Uuid;
            md.Dispose();
            Assert.That(rig.State(c, dev) with { Mappings = "" }, Is.EqualTo(new MdmaState("", Pages, pinned0 + Pages, 0)), "close_device unpinned the device's pages; MAP's pins stay");
            Assert.That(rig.Iommu(c).RegisteredDevices, Is.Zero);
            mg.Dispose();
            Assert.That(rig.Iommu(c).EmulatedGroupCount, Is.Zero);
            rig.Remove(u);
            Assert.That(rig.Mdma.DeviceOf(u), Is.Null);
            VfioDmaInfo m = rig.Iommu(c).Mappings.Single();
            Assert.That((m.IommuMapped, m.LockedVm, m.PinnedByDrivers), Is.EqualTo((true, (long)Pages, 0)));
            Assert.That(rig.State(c) with { Mappings = "" }, Is.EqualTo(new MdmaState("", Pages, pinned0 + Pages, 0)));
            Assert.That(EduDmaFromRam(rig, ed, A, 64), Is.Zero, "the pass-through device still DMAs");
            Assert.That(c.UnmapDma(A, Pages * P), Is.EqualTo(Pages * P));
            Assert.That(rig.State(c), Is.EqualTo(new MdmaState("", 0, pinned0, 0)));
            foreach (IDisposable x in new IDisposable[] { ed, eg, c, buf })
            {
                x.Dispose();
            }
        });
    }

    [Test]
    public void Race13_AttachingAPassThroughGroupOverRlimit_IsEnomem_AndTheMdevStillDmas(
        [Values] SchedulerMode mode, [ValueSource(nameof(s_seeds))] ulong seed, [ValueSource(typeof(MdmaRig), nameof(Profiles))] KernelProfile profile)
    {
        var rig = new MdmaRig(profile, limits: new ResourceLimits { MemlockBytes = 8 * (long)P }, mode: mode, seed: seed);
        rig.ExpectDmaUnmapLockInversion();
        Run(rig, () =>
        {
            long pinned0 = rig.Sim.PinnedPages;
            Guid u = rig.Create();
            MdmaDevice dev = rig.Dev(u);
            using VfioContainerFd c = rig.Container();
            (VfioGroupFd mg, VfioDeviceFd md) = rig.OpenMdev(c, u);
            using UserBuffer buf = rig.Buffer(Pages * P);
            c.MapDma(buf.Address, A, Pages * P);
            Assert.That(Copy(md, A, A + P, 64), Is.EqualTo(Done));
            MdmaState before = rig.State(c, dev);
            Assert.That(before with { Mappings = "" }, Is.EqualTo(new MdmaState("", 2, pinned0 + 2, 2)));

            rig.Sim.Bind(Edu);
            var eg = new VfioGroupFd(rig.Qemu, rig.Sim.GroupOf(Edu));
            var ex = Assert.Throws<VfioException>(() => eg.SetContainer(c));
            Assert.That(ex!.Errno, Is.EqualTo(Errno.ENOMEM), ex.Message);
            Assert.That(rig.Kernel.Log.Contains("RLIMIT_MEMLOCK"), Is.True, rig.Kernel.Log.Dmesg());
            Assert.That(rig.State(c, dev), Is.EqualTo(before), "the replay unwound: locked_vm and pins as they were");
            Assert.That(rig.Iommu(c).Domains, Is.Empty);
            Assert.That(rig.Iommu(c).Mappings.Single().IommuMapped, Is.False);
            rig.AssertInvariants(c);

            // The mappings are still the mdev's to use.
            byte[] data = [1, 2, 3, 4, 5, 6, 7, 8];
            buf.Write(2 * P, data);
            Assert.That(Copy(md, A + (2 * P), A + (3 * P), (uint)data.Length), Is.EqualTo(Done));
            Assert.That(buf.Read(3 * P, data.Length), Is.EqualTo(data));
            Assert.That(rig.State(c, dev) with { Mappings = "" }, Is.EqualTo(new MdmaState("", 4, pinned0 + 4, 4)));
            Assert.That(c.UnmapDma(A, Pages * P), Is.EqualTo(Pages * P));
            Assert.That(rig.State(c, dev), Is.EqualTo(new MdmaState("", 0, pinned0, 0)));
            eg.Dispose();
            md.Dispose();
            mg.Dispose();
        });
    }
}
