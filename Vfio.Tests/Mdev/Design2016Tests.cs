// The 2016 mdev design (UseMdevDesign2016) against today's, a test per difference: pinning
// without a DMA_UNMAP notifier, a page pinned through two mappings, unmapping by another
// address space, hot unplug re-accounting, removal of an open mdev; then the container
// matrix (pass-through, mdev, both, hot unplug of either) under the 2016 design.

using NUnit.Framework;
using Vfio.Core;
using Vfio.Core.Client;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Mdev;
using Vfio.Mdev.Design2016;
using Vfio.Platform.Mm;
using Vfio.Platform.Proc;
using Vfio.Sim;
using Vfio.Tests.Type1;
using static Vfio.Tests.Type1.Type1Kit;

namespace Vfio.Tests.Mdev;

public enum MdevDesignUnderTest
{
    Today,
    Series2016,
}

[TestFixture]
public sealed class Design2016Tests
{
    private const ulong A = 0x100000;
    private const ulong B = 0x200000;
    private const string Edu = "0000:01:00.0";

    private static readonly VfioDesign Design2016 = VfioDesign.Default with { UnmapOnlyByMappingMm = true, DmaUnmapNotifierChain = true, ExternalPinsPerAddressSpace = true };

    [Test]
    public void PinningWithoutANotifier_IsEinvalIn2016_WhileTodayOnlyTheDmaUnmapOpMatters([Values] MdevDesignUnderTest design)
    {
        var rig = new Type1Rig(options: Options(design));
        rig.Run(() =>
        {
            (int c, _, _, PinningTestDevice ops) = rig.OpenEmulatedEdu();
            ulong va = rig.Buffer(4 * P);
            Assert.That(rig.Map(c, va, A, 4 * P), Is.Zero, ErrorReason.Current);
            Type1State before = rig.State(c);
            if (design == MdevDesignUnderTest.Series2016)
            {
                ulong[] phys = new ulong[1];
                rig.AssertRejected(c, Vfio2016.PinPages(rig.Edu(), [A >> 12], RW, phys), Errno.EINVAL, before);
                Assert.That(ErrorReason.Current, Does.Contain("no VFIO_IOMMU_NOTIFY notifier"));

                var nb = new CountingNotifier();
                ulong events = VfioIommuNotify.DmaUnmap;
                Assert.That(Vfio2016.RegisterNotifier(rig.Edu(), VfioNotifyType.Iommu, ref events, nb), Is.Zero, ErrorReason.Current);
                Assert.That(Vfio2016.PinPages(rig.Edu(), [A >> 12], RW, phys), Is.EqualTo(1), ErrorReason.Current);
                Assert.That(Vfio2016.UnpinPages(rig.Edu(), [A >> 12]), Is.EqualTo(1));
                Assert.That(Vfio2016.UnregisterNotifier(rig.Edu(), VfioNotifyType.Iommu, nb), Is.Zero);
                Assert.That(Vfio2016.UnregisterNotifier(rig.Edu(), VfioNotifyType.Iommu, nb), Is.EqualTo(Errno.ENOENT.Negative()));
            }
            else
            {
                Assert.That(ops.Pin(rig.Edu(), A, 1, RW), Is.EqualTo(1), "today a device with a dma_unmap op pins without registering anything");
                ulong events = VfioIommuNotify.DmaUnmap;
                Assert.That(Vfio2016.RegisterNotifier(rig.Edu(), VfioNotifyType.Iommu, ref events, new CountingNotifier()), Is.EqualTo(Errno.ENOTTY.Negative()), "no notifier chain today");
                ops.Unpin(rig.Edu(), A, 1);
            }

            Assert.That(rig.State(c), Is.EqualTo(before));
        });
    }

    [Test]
    public void APagePinnedThroughTwoMappings_IsPinnedAndChargedOnceIn2016_TwiceToday([Values] MdevDesignUnderTest design)
    {
        var rig = new Type1Rig(options: Options(design));
        rig.Run(() =>
        {
            (int c, _, _, PinningTestDevice ops) = rig.OpenEmulatedEdu();
            ulong va = rig.Buffer(P);
            Assert.That(rig.Map(c, va, A, P), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Map(c, va, B, P), Is.Zero, ErrorReason.Current);
            long pinned0 = rig.Memory.PinnedPages, locked0 = rig.User.Mm.LockedVm;
            var nb = new CountingNotifier();
            ulong[] phys = new ulong[2];
            if (design == MdevDesignUnderTest.Series2016)
            {
                ulong events = VfioIommuNotify.DmaUnmap;
                Assert.That(Vfio2016.RegisterNotifier(rig.Edu(), VfioNotifyType.Iommu, ref events, nb), Is.Zero);
                Assert.That(Vfio2016.PinPages(rig.Edu(), [A >> 12, B >> 12], RW, phys), Is.EqualTo(2), ErrorReason.Current);
            }
            else
            {
                Assert.That(ops.Pin(rig.Edu(), A, 1, RW, phys), Is.EqualTo(1));
                Assert.That(ops.Pin(rig.Edu(), B, 1, RW, phys), Is.EqualTo(1));
            }

            long expect = design == MdevDesignUnderTest.Series2016 ? 1 : 2;
            Assert.That(rig.Memory.PinnedPages - pinned0, Is.EqualTo(expect), "external pins of the one user page");
            Assert.That(rig.User.Mm.LockedVm - locked0, Is.EqualTo(expect), "locked_vm charges");
            if (design == MdevDesignUnderTest.Series2016)
            {
                Assert.That(rig.Iommu(c).AddressSpacePins, Is.EqualTo(1));

                // Unmapping A notifies (iova A, one page); the notifier unpins A, and the page stays pinned through B.
                rig.ExpectDmaUnmapLockInversion();
                nb.Unpin = (iova, size) => Vfio2016.UnpinPages(rig.Edu(), [iova >> 12]);
                Assert.That(rig.Unmap(c, A, P, out ulong unmapped), Is.Zero, ErrorReason.Current);
                Assert.That(unmapped, Is.EqualTo(P));
                Assert.That(nb.Calls, Is.EqualTo(new[] { (A, P) }));
                Assert.That(rig.Memory.PinnedPages - pinned0, Is.EqualTo(1), "still pinned through B");
                Assert.That(rig.User.Mm.LockedVm - locked0, Is.EqualTo(1));
                Assert.That(Vfio2016.UnpinPages(rig.Edu(), [B >> 12]), Is.EqualTo(1));
                Assert.That(Vfio2016.UnregisterNotifier(rig.Edu(), VfioNotifyType.Iommu, nb), Is.Zero);
            }
            else
            {
                ops.Unpin(rig.Edu(), A, 1);
                ops.Unpin(rig.Edu(), B, 1);
            }

            Assert.That(rig.Memory.PinnedPages, Is.EqualTo(pinned0));
            Assert.That(rig.User.Mm.LockedVm, Is.EqualTo(locked0));
            rig.AssertInvariants(c);
        });
    }

    [Test]
    public void TheBuilderSwitch_SetsEveryPartOfThe2016Design_AndTodayStaysTheDefault([Values] MdevDesignUnderTest design)
    {
        VfioSimBuilder b = VfioSim.CreateBuilder().AddVfioPci();
        if (design == MdevDesignUnderTest.Series2016)
        {
            b.UseMdevDesign2016();
        }
        else
        {
            b.AddMdev();
        }

        VfioSim sim = b.Build();
        bool on = design == MdevDesignUnderTest.Series2016;
        Assert.That(sim.Mdev!.Design.Api, Is.EqualTo(on ? MdevApi.Series2016 : MdevApi.Current));
        VfioDesign d = sim.Vfio.Design;
        Assert.That((d.UnmapOnlyByMappingMm, d.DmaUnmapNotifierChain, d.ExternalPinsPerAddressSpace), Is.EqualTo((on, on, on)));
        Assert.That(sim.Machine.GetModule<Mdev2016Core>() is not null, Is.EqualTo(on));
    }

    [Test]
    public void UnmapByAnotherAddressSpace_LeavesTheMappingIn2016_AndSucceedsToday([Values] MdevDesignUnderTest design)
    {
        VfioSim sim = Build(design, legacyPin: false);
        SimProcess qemu = sim.Spawn("qemu");
        SimProcess other = sim.Spawn("other");
        sim.Bind(Edu);
        using VfioSession s = sim.Open(qemu, Edu);
        using UserBuffer buf = VfioSim.Allocate(qemu, 4 * P, MapFlags.MAP_POPULATE);
        s.Container.MapDma(buf.Address, A, buf.Size);
        int fd = qemu.SendFd(s.Container.Fd, other);
        long r = Type1Rig.Unmap(other, fd, A, buf.Size, out ulong unmapped);
        Assert.That(r, Is.Zero);
        Assert.That(unmapped, Is.EqualTo(design == MdevDesignUnderTest.Series2016 ? 0 : buf.Size));
        if (design == MdevDesignUnderTest.Series2016)
        {
            Assert.That(s.Container.UnmapDma(A, buf.Size), Is.EqualTo(buf.Size), "the mapping address space may");
        }

        Assert.That(other.Close(fd), Is.Zero);
    }

    [Test]
    public void HotUnplugOfThePassThroughDevice_ReaccountsASharedPageOnceIn2016_TwiceToday([Values] MdevDesignUnderTest design)
    {
        var rig = new Type1Rig(options: Options(design));
        rig.Run(() =>
        {
            // An mdev-like emulated device (edu) and a pass-through device (the pair group) in one container.
            (int c, _, _, PinningTestDevice ops) = rig.OpenEmulatedEdu();
            int pair = rig.OpenPairGroup();
            Assert.That(SetContainer(rig.User, pair, c), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Iommu(c).Domains, Has.Count.EqualTo(1));
            ulong va = rig.Buffer(P);
            Assert.That(rig.Map(c, va, A, P), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Map(c, va, B, P), Is.Zero, ErrorReason.Current);
            long locked0 = rig.User.Mm.LockedVm;
            Assert.That(locked0, Is.EqualTo(2), "the domain pins and charges each mapping");
            var nb = new CountingNotifier();
            ulong[] phys = new ulong[2];
            if (design == MdevDesignUnderTest.Series2016)
            {
                ulong events = VfioIommuNotify.DmaUnmap;
                Assert.That(Vfio2016.RegisterNotifier(rig.Edu(), VfioNotifyType.Iommu, ref events, nb), Is.Zero);
                Assert.That(Vfio2016.PinPages(rig.Edu(), [A >> 12, B >> 12], RW, phys), Is.EqualTo(2), ErrorReason.Current);
            }
            else
            {
                Assert.That(ops.Pin(rig.Edu(), A, 1, RW, phys), Is.EqualTo(1));
                Assert.That(ops.Pin(rig.Edu(), B, 1, RW, phys), Is.EqualTo(1));
            }

            Assert.That(rig.User.Mm.LockedVm, Is.EqualTo(locked0), "external pins are not charged while a domain exists");

            // Hot unplug: the pass-through group leaves; only the external pins stay charged.
            Assert.That(rig.User.Close(pair), Is.Zero);
            Assert.That(rig.Iommu(c).Domains, Is.Empty);
            Assert.That(rig.User.Mm.LockedVm, Is.EqualTo(design == MdevDesignUnderTest.Series2016 ? 1 : 2));
            rig.AssertInvariants(c);
            if (design == MdevDesignUnderTest.Series2016)
            {
                Assert.That(Vfio2016.UnpinPages(rig.Edu(), [A >> 12, B >> 12]), Is.EqualTo(2));
                Assert.That(Vfio2016.UnregisterNotifier(rig.Edu(), VfioNotifyType.Iommu, nb), Is.Zero);
            }
            else
            {
                ops.Unpin(rig.Edu(), A, 1);
                ops.Unpin(rig.Edu(), B, 1);
            }

            Assert.That(rig.User.Mm.LockedVm, Is.Zero);
        });
    }

    [Test]
    public void RemovingAnOpenMdev_IsEbusyAndTheMdevStays_In2016_WhileAVendorThatCannotRefuseBlocksUntilClose([Values] bool vendorRefuses)
    {
        VfioSim sim = Build(MdevDesignUnderTest.Series2016, legacyPin: true);
        LegacyPinSample pin = sim.LegacyPin!;
        pin.RefuseRemoveWhileOpen = vendorRefuses;
        Mdev2016Core core = Mdev2016Core.Of(sim.Machine);
        SimProcess qemu = sim.Spawn("qemu");
        var uuid = new Guid("83b8f4f2-509f-382f-3c1e-e6bfe0fa1001");
        Assert.That(core.CreateDevice(pin.Type, uuid), Is.Zero, ErrorReason.Current);
        MdevDevice mdev = core.Devices.Single();
        var c = new VfioContainerFd(qemu);
        var g = new VfioGroupFd(qemu, mdev.IommuGroup!.Id);
        g.SetContainer(c);
        c.SetIommu(VfioExtension.Type1v2);
        VfioDeviceFd d = g.GetDeviceFd(mdev.Name);
        Assert.That(pin.StateOf(mdev).IsOpen, Is.True);
        if (vendorRefuses)
        {
            Assert.That(core.RemoveDevice(mdev), Is.EqualTo(Errno.EBUSY.Negative()));
            Assert.That(core.Devices, Does.Contain(mdev), "the mdev stays");
            Assert.That(sim.Machine.Sysfs.Exists($"/sys/bus/mdev/devices/{mdev.Name}/remove"), Is.True, "the remove attribute is back");
            Assert.That(() => sim.SysfsWrite($"/sys/bus/mdev/devices/{mdev.Name}/remove", "1"), Throws.Exception.With.Message.Contains("EBUSY"));
            Assert.That(VfioMdevDriver.DeviceOf(mdev), Is.Not.Null);
            d.Dispose();
            Assert.That(core.RemoveDevice(mdev), Is.Zero, ErrorReason.Current);
        }
        else
        {
            RunResult r = sim.Run(() =>
            {
                KTask remover = sim.Kernel.Spawn("remove", () => Assert.That(core.RemoveDevice(mdev), Is.Zero));
                KTask.Msleep(30_000);
                Assert.That(remover.HasExited, Is.False, "removal waits for the user");
                d.Dispose();
                remover.Join();
            });
            Runs.AssertPassed(r);
        }

        Assert.That(core.Devices, Is.Empty);
        g.Dispose();
        c.Dispose();
    }

    [Test]
    public void RemovingAnOpenMdev_Today_BlocksUntilTheClose_WithNoWayForTheVendorToRefuse()
    {
        var rig = new MdevRig();
        var uuid = new Guid("83b8f4f2-509f-382f-3c1e-e6bfe0fa1003");
        Runs.AssertPassed(rig.Sim.Run(() =>
        {
            rig.Sim.CreateMdev("mtest", "mtest-1", uuid);
            VfioSession s = rig.Sim.OpenMdev(rig.Sim.Spawn("qemu"), uuid);
            long rc = 0;
            KTask remover = rig.Kernel.Spawn("remover", () => rc = rig.WriteRemove(uuid));
            KTask.Msleep(30_000);
            Assert.That(remover.HasExited, Is.False, "today the remove write waits for the user");
            s.Dispose();
            remover.Join();
            Assert.That(rc, Is.EqualTo(2));
            Assert.That(rig.Core.Devices, Is.Empty);
        }));
    }

    [Test]
    public void Matrix2016_MdevOnly_ChargesExactlyThePagesTheVendorPins()
    {
        VfioSim sim = Build(MdevDesignUnderTest.Series2016, legacyPin: true);
        SimProcess qemu = sim.Spawn("qemu");
        (VfioContainerFd c, VfioGroupFd g, VfioDeviceFd d, LegacyPinState st) = OpenMdev(sim, qemu, null);
        using UserBuffer buf = VfioSim.Allocate(qemu, 16 * P, MapFlags.MAP_POPULATE);
        c.MapDma(buf.Address, A, buf.Size);
        Assert.That((sim.PinnedPages, qemu.Mm.LockedVm), Is.EqualTo((0L, 0L)), "no IOMMU domain: MAP_DMA pins nothing");
        Assert.That(st.Pin(A, 4, RW), Is.EqualTo(4), ErrorReason.Current);
        Assert.That((sim.PinnedPages, qemu.Mm.LockedVm), Is.EqualTo((4L, 4L)));
        Assert.That(sim.CheckInvariants(), Is.Empty);
        d.Dispose();
        Assert.That((sim.PinnedPages, qemu.Mm.LockedVm), Is.EqualTo((0L, 0L)), "release unpins everything");
        Assert.That(st.NotifierRegistered, Is.False);
        g.Dispose();
        c.Dispose();
    }

    [Test]
    public void Matrix2016_PassThroughAndMdevInOneContainer_HotUnplugOfEither_KeepsPinsAndLockedVmRight([Values] bool unplugPassThrough)
    {
        VfioSim sim = Build(MdevDesignUnderTest.Series2016, legacyPin: true);
        SimProcess qemu = sim.Spawn("qemu");
        sim.Bind(Edu);
        var c = new VfioContainerFd(qemu);
        var pg = new VfioGroupFd(qemu, sim.GroupOf(Edu));
        pg.SetContainer(c);
        c.SetIommu(VfioExtension.Type1v2);
        VfioDeviceFd pd = pg.GetDeviceFd(Edu);
        using UserBuffer buf = VfioSim.Allocate(qemu, 16 * P, MapFlags.MAP_POPULATE);
        c.MapDma(buf.Address, A, buf.Size);
        Assert.That((sim.PinnedPages, qemu.Mm.LockedVm), Is.EqualTo((16L, 16L)), "pass-through only");

        (_, VfioGroupFd mg, VfioDeviceFd md, LegacyPinState st) = OpenMdev(sim, qemu, c);
        Assert.That(st.Pin(A, 4, RW), Is.EqualTo(4), ErrorReason.Current);
        Assert.That((sim.PinnedPages, qemu.Mm.LockedVm), Is.EqualTo((20L, 16L)), "both: the external pins add pins but no charge");
        Assert.That(sim.CheckInvariants(), Is.Empty);

        if (unplugPassThrough)
        {
            pd.Dispose();
            pg.Dispose();
            Assert.That((sim.PinnedPages, qemu.Mm.LockedVm), Is.EqualTo((4L, 4L)), "re-accounted: only the vendor's pins stay, charged");
            Assert.That(sim.CheckInvariants(), Is.Empty);
            Assert.That(st.Unpin(A, 4), Is.EqualTo(4));
            Assert.That((sim.PinnedPages, qemu.Mm.LockedVm), Is.EqualTo((0L, 0L)));
            md.Dispose();
            mg.Dispose();
        }
        else
        {
            md.Dispose();
            mg.Dispose();
            Assert.That((sim.PinnedPages, qemu.Mm.LockedVm), Is.EqualTo((16L, 16L)), "the mdev's release unpinned; the domain keeps its pins");
            Assert.That(sim.CheckInvariants(), Is.Empty);
            pd.Dispose();
            pg.Dispose();
        }

        Assert.That((sim.PinnedPages, qemu.Mm.LockedVm), Is.EqualTo((0L, 0L)));
        c.Dispose();
    }

    private static (VfioContainerFd Container, VfioGroupFd Group, VfioDeviceFd Device, LegacyPinState State) OpenMdev(VfioSim sim, SimProcess p, VfioContainerFd? container)
    {
        LegacyPinSample pin = sim.LegacyPin!;
        Mdev2016Core core = Mdev2016Core.Of(sim.Machine);
        Assert.That(core.CreateDevice(pin.Type, new Guid("83b8f4f2-509f-382f-3c1e-e6bfe0fa1002")), Is.Zero, ErrorReason.Current);
        MdevDevice mdev = core.Devices.Single();
        VfioContainerFd c = container ?? new VfioContainerFd(p);
        var g = new VfioGroupFd(p, mdev.IommuGroup!.Id);
        g.SetContainer(c);
        if (container is null)
        {
            c.SetIommu(VfioExtension.Type1v2);
        }

        VfioDeviceFd d = g.GetDeviceFd(mdev.Name);
        return (c, g, d, pin.StateOf(mdev));
    }

    [Test]
    public void TheMdevGuideExample_RunsAsWritten()
    {
        VfioSim sim = VfioSim.CreateBuilder()
            .AddVfioPci()
            .AddLegacyPinSample()          // implies UseMdevDesign2016()
            .Build();
        Mdev2016Core core = Mdev2016Core.Of(sim.Machine);
        int r = core.CreateDevice(sim.LegacyPin!.Type, Guid.NewGuid());   // 0 or -errno

        Assert.That(r, Is.Zero, ErrorReason.Current);
        Assert.That(core.Devices, Has.Count.EqualTo(1));
        Assert.That(Repository.ReadAllText("docs/mdev.md"), Does.Contain("core.CreateDevice(sim.LegacyPin!.Type, Guid.NewGuid());"));
    }

    private static VfioOptions Options(MdevDesignUnderTest design)
        => new() { Design = design == MdevDesignUnderTest.Series2016 ? Design2016 : VfioDesign.Default };

    private static VfioSim Build(MdevDesignUnderTest design, bool legacyPin)
    {
        VfioSimBuilder b = VfioSim.CreateBuilder().UseSeed(1).AddVfioPci();
        if (legacyPin)
        {
            b.AddLegacyPinSample();
        }
        else if (design == MdevDesignUnderTest.Series2016)
        {
            b.UseMdevDesign2016();
        }

        return b.Build();
    }

    private sealed class CountingNotifier : IVfioIommuNotifier
    {
        public List<(ulong Iova, ulong Size)> Calls { get; } = [];

        public Action<ulong, ulong>? Unpin { get; set; }

        public void DmaUnmap(ulong iova, ulong size)
        {
            Calls.Add((iova, size));
            Unpin?.Invoke(iova, size);
        }
    }
}
