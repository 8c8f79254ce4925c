// Tests the design variants of Vfio.Core/VfioOptions.cs (docs/design-variants.md): each variant's
// visible behaviour, including the bugs the kernel's fixes removed, reproduced with the
// fix off and absent with it on.

using NUnit.Framework;
using Vfio.Core;
using Vfio.Core.Uapi;
using Vfio.Kernel;

namespace Vfio.Tests.Core;

public sealed class DesignVariantTests
{
    private static VfioOptions With(VfioDesign design) => new() { Design = design };

    [Test]
    public void SilentBlock_NeverAsksUserSpace_AndUnbindWaitsForTheClose([Values] SchedulerMode mode)
    {
        var rig = new VfioRig(mode, options: With(VfioDesign.Default with { Unbind = VfioUnbindPolicy.SilentBlock }));
        rig.Bind(VfioRig.Edu);
        rig.Run(() =>
        {
            (int c, int g, int d) = rig.OpenAll(VfioRig.Edu);
            KTask unbinder = rig.Kernel.Spawn("unbinder", () => rig.Unbind(VfioRig.Edu));
            KTask.Msleep(60_000);
            Assert.That(unbinder.HasExited, Is.False);
            Assert.That(rig.Driver.Ops.Requests, Is.Empty, "no request() in the silent design");
            rig.User.Close(d);
            unbinder.Join();
            rig.User.Close(g);
            rig.User.Close(c);
        });
    }

    [Test]
    public void RequestThenRevoke_EndsTheUnbindOfANonCooperativeUser_AndItsFdStopsWorking([Values] SchedulerMode mode)
    {
        var rig = new VfioRig(mode, options: With(VfioDesign.Default with { Unbind = VfioUnbindPolicy.RequestThenRevoke, RevokeAfter = TimeSpan.FromSeconds(30) }));
        rig.Bind(VfioRig.Edu);
        VfioDevice vdev = rig.VDev(VfioRig.Edu);
        rig.Run(() =>
        {
            (int c, int g, int d) = rig.OpenAll(VfioRig.Edu);
            Assert.That(rig.User.Ioctl(d, VfioIoctl.DeviceReset), Is.Zero);
            KTask.Msleep(1);                     // start between two jiffies (HZ=250): the deadline must not slip a slice
            long start = rig.Kernel.Clock.NowNs;
            KTask unbinder = rig.Kernel.Spawn("unbinder", () => rig.Unbind(VfioRig.Edu));
            unbinder.Join(); // the user never closes
            Assert.That(rig.Kernel.Clock.NowNs - start, Is.GreaterThanOrEqualTo(30_000_000_000L - SimClock.NsPerJiffy), "revoked only after the timeout (counted in jiffies)");
            if (mode == SchedulerMode.Controlled)
            {
                Assert.That(rig.Kernel.Clock.NowNs - start, Is.LessThan(30_100_000_000L), "revoked at the timeout, not a 10 s slice later");
            }

            Assert.That(rig.Kernel.Log.Contains("Revoked access of task \"user\""), Is.True, rig.Kernel.Log.Dmesg());
            Assert.That(rig.Dev(VfioRig.Edu).Driver, Is.Null);
            Assert.That(rig.Driver.Ops.Closes, Is.EqualTo(1), "close_device ran on the user's behalf");
            Assert.That(rig.User.Ioctl(d, VfioIoctl.DeviceReset), Is.EqualTo(Errno.ENODEV.Negative()));
            Assert.That(rig.User.Close(d), Is.Zero);
            Assert.That(rig.User.Close(g), Is.Zero);
            Assert.That(rig.User.Close(c), Is.Zero);
            Assert.That(vdev.IsReleased, Is.True);
        });
    }

    [Test]
    public void AllGroupsAtLoad_GivesEveryIommuGroupANode_ThatReportsItsViability()
    {
        var rig = new VfioRig(options: With(VfioDesign.Default with { GroupNodes = VfioGroupNodes.AllGroupsAtLoad }));
        Assert.That(rig.Machine.Vfs.Exists(rig.GroupPath(VfioRig.PairF0)), Is.True, "no vfio driver bound, yet the node exists");
        Assert.That(rig.Vfio.Groups, Has.Count.EqualTo(rig.Machine.Iommu!.Groups.Count));
        int g = rig.OpenGroup(VfioRig.PairF0);
        Assert.That(g, Is.GreaterThanOrEqualTo(0));
        Assert.That(rig.GetStatus(g, out VfioGroupFlags flags), Is.Zero);
        Assert.That(flags, Is.EqualTo(VfioGroupFlags.None), "igb holds both functions");
        rig.User.Close(g);

        rig.Bind(VfioRig.Edu);
        Assert.That(rig.Unbind(VfioRig.Edu), Is.EqualTo("vfio-test"));
        Assert.That(rig.Machine.Vfs.Exists(rig.GroupPath(VfioRig.Edu)), Is.True, "the node stays when the last vfio device goes");
    }

    [Test]
    public void OpenRefusedUntilViable_RefusesToOpenANonViableGroup()
    {
        var rig = new VfioRig(options: With(VfioDesign.Default with { GroupNodes = VfioGroupNodes.OpenRefusedUntilViable }));
        rig.Bind(VfioRig.PairF0);
        Assert.That(rig.OpenGroup(VfioRig.PairF0), Is.EqualTo(Errno.EBUSY.Negative()));
        Assert.That(ErrorReason.Current, Does.Contain("not viable"));
        rig.Machine.Sysfs.Write("/sys/bus/pci/drivers/igb/unbind", VfioRig.PairF1);
        Assert.That(rig.OpenGroup(VfioRig.PairF0), Is.GreaterThanOrEqualTo(0));
    }

    [Test]
    public void LegacyNotifier_AKernelDriverBindingIntoALiveGroup_IsAKernelBug_WhereDmaOwnershipSaysEbusy()
    {
        // Race 1 in docs/races.md, the pre-fix design.
        var rig = new VfioRig(options: With(VfioDesign.Default with { Viability = VfioViabilityModel.LegacyNotifier }));
        rig.Bind(VfioRig.PairF0);
        rig.Machine.Sysfs.Write("/sys/bus/pci/drivers/igb/unbind", VfioRig.PairF1);
        rig.OpenAll(VfioRig.PairF0);
        var panic = Assert.Throws<KernelPanicException>(() => rig.Machine.Sysfs.Write("/sys/bus/pci/drivers/igb/bind", VfioRig.PairF1));
        Assert.That(panic!.Message, Does.Contain("vfio_group_nb_verify").And.Contain("0000:02:00.1 bound to igb"));
    }

    [Test]
    public void LegacyNotifier_GetDeviceFdInANonViableGroup_IsEinval()
    {
        var rig = new VfioRig(options: With(VfioDesign.Default with { Viability = VfioViabilityModel.LegacyNotifier }));
        rig.Bind(VfioRig.PairF0);
        int c = rig.OpenContainer();
        int g = rig.OpenGroup(VfioRig.PairF0);
        Assert.That(rig.SetContainer(g, c), Is.Zero, "≤5.18 SET_CONTAINER did not check viability");
        Assert.That(rig.SetIommu(c), Is.Zero);
        Assert.That(rig.GetStatus(g, out VfioGroupFlags flags), Is.Zero);
        Assert.That(flags, Is.EqualTo(VfioGroupFlags.ContainerSet));
        Assert.That(rig.GetDeviceFd(g, VfioRig.PairF0), Is.EqualTo(Errno.EINVAL.Negative()));
        Assert.That(ErrorReason.Current, Does.Contain("not viable"));
    }

    [Test]
    public void LegacyNotifier_AStalledUnbind_MakesTheGroupNonViable_UnlessDevicesAreTrackedDuringUnbind([Values] bool track, [Values] SchedulerMode mode)
    {
        // Race 2 in docs/races.md: the device has left the group's list but is still bound to vfio.
        var rig = new VfioRig(mode, options: With(VfioDesign.Default with { Viability = VfioViabilityModel.LegacyNotifier, TrackDevicesDuringUnbind = track }));
        rig.Bind(VfioRig.PairF0);
        rig.Machine.Sysfs.Write("/sys/bus/pci/drivers/igb/unbind", VfioRig.PairF1);
        rig.Run(() =>
        {
            (int c, int g, int d) = rig.OpenAll(VfioRig.PairF0);
            KTask unbinder = rig.Kernel.Spawn("unbinder", () => rig.Unbind(VfioRig.PairF0));
            VfioRig.WaitUntil(() => !rig.Driver.Ops.Requests.IsEmpty);
            Assert.That(rig.GetStatus(g, out VfioGroupFlags flags), Is.Zero);
            Assert.That((flags & VfioGroupFlags.Viable) != 0, Is.EqualTo(track), track ? "tracked: stays viable" : "untracked: the stalled unbind breaks viability");
            rig.User.Close(d);
            unbinder.Join();
            rig.User.Close(g);
            rig.User.Close(c);
        });
    }

    [Test]
    public void WithoutItsOwnIommuGroupReference_AGroupFdOutlivingTheDevice_UsesAFreedIommuGroup([Values] bool holdsReference)
    {
        // ca5f21b25749 "vfio: Follow a strict lifetime for struct iommu_group": off reproduces the bug.
        var rig = new VfioRig(options: With(VfioDesign.Default with { GroupHoldsIommuGroupReference = holdsReference }));
        rig.Bind(VfioRig.Edu);
        int g = rig.OpenGroup(VfioRig.Edu);
        var edu = rig.Dev(VfioRig.Edu);
        Assert.That(rig.Unbind(VfioRig.Edu), Is.EqualTo("vfio-test"));
        rig.Machine.Pci.Remove(edu); // hot-unplug: the device's iommu_group reference goes
        if (holdsReference)
        {
            Assert.That(rig.GetStatus(g, out _), Is.EqualTo(Errno.ENODEV.Negative()));
        }
        else
        {
            var panic = Assert.Throws<KernelPanicException>(() => rig.GetStatus(g, out _));
            Assert.That(panic!.Message, Does.Contain("use-after-free").And.Contain("iommu_group 2"));
        }
    }
}
