// Tests Vfio.Mdev/MdevCore.cs (mdev_core.c, mdev_sysfs.c, mdev_driver.c): parent
// registration and its sysfs types, create and remove through sysfs with the kernel's
// errnos in the kernel's order, unregistration removing every child, and the state
// after each rejected write. Ported cases keep their ids (MD-01, MD-02, MD-04, MD-07, MD-08).

using NUnit.Framework;
using Vfio.Core.Client;
using Vfio.Kernel;
using Vfio.Platform.Base;

namespace Vfio.Tests.Mdev;

public sealed class MdevCoreTests
{
    private static readonly Guid s_a = Guid.Parse("c0ffee00-0000-4000-8000-000000000001");
    private static readonly Guid s_b = Guid.Parse("c0ffee00-0000-4000-8000-000000000002");

    private static IEnumerable<KernelProfile> Profiles() => [KernelProfile.Linux6_12, KernelProfile.Linux6_1];

    [TestCaseSource(nameof(Profiles))]
    public void MD_01_WritingAUuidToCreate_MakesTheDevice_AndTheSameUuidAgainIsEexist(KernelProfile profile)
    {
        var rig = new MdevRig(profile);
        Assert.That(rig.WriteCreate(s_a + "\n"), Is.EqualTo(37));
        Assert.That(rig.Core.Devices.Select(d => d.Uuid), Is.EqualTo(new[] { s_a }));
        Assert.That(rig.Fs.Exists(MdevRig.DevicePath(s_a)), Is.True);
        Assert.That(rig.Driver.Probes, Is.EqualTo(1));

        string before = rig.State();
        Assert.That(rig.WriteCreate(s_a + "\n"), Is.EqualTo(Errno.EEXIST.Negative()));
        Assert.That(ErrorReason.Current, Does.Contain("exists already"));
        Assert.That(rig.WriteCreate(s_a.ToString(), type: 2), Is.EqualTo(Errno.EEXIST.Negative()), "a UUID is unique across types (and parents)");
        Assert.That(rig.State(), Is.EqualTo(before));
    }

    [Test]
    public void RemoveWritesOne_RemovesTheDevice_GivesTheInstanceBack_AndLeavesNothing()
    {
        var rig = new MdevRig();
        string empty = rig.State();
        int refs = rig.Parent.Dev.ReferenceCount;
        rig.Sim.CreateMdev("mtest", "mtest-1", s_a);
        Assert.That(rig.Available(), Is.EqualTo(3));
        Assert.That(rig.WriteRemove(s_a), Is.EqualTo(2));
        Assert.That(rig.Core.Devices, Is.Empty);
        Assert.That(rig.Available(), Is.EqualTo(4));
        Assert.That(rig.Driver.Removes, Is.EqualTo(1));
        Assert.That(rig.Fs.Exists(MdevRig.DevicePath(s_a)), Is.False);
        Assert.That(rig.Parent.Dev.ReferenceCount, Is.EqualTo(refs));
        Assert.That(rig.State(), Is.EqualTo(empty));
    }

    [TestCaseSource(nameof(Profiles))]
    public void MD_08_UnregisteringTheParent_RemovesEveryChild_AndTheTypes_ThenSaysUnregistered(KernelProfile profile)
    {
        var rig = new MdevRig(profile);
        int refsBefore = rig.Parent.Dev.ReferenceCount;
        rig.Sim.CreateMdev("mtest", "mtest-1", s_a);
        rig.Sim.CreateMdev("mtest", "mtest-2", s_b);
        rig.Parent.Unregister();

        Assert.That(rig.Core.Devices, Is.Empty);
        Assert.That(rig.Core.Bus.Devices, Is.Empty);
        Assert.That(rig.Driver.Removes, Is.EqualTo(2));
        Assert.That(rig.Fs.Exists(rig.Parent.TypesPath), Is.False);
        Assert.That(rig.Fs.Exists("/sys/class/mdev_bus/mtest"), Is.False);
        Assert.That(rig.Parent.Parent.IsRegistered, Is.False);
        Assert.That(rig.Parent.Dev.ReferenceCount, Is.EqualTo(refsBefore - 2), "the two types' references on the parent device are gone");
        Assert.That(rig.Kernel.Log.Contains("mtest mtest: MDEV: Unregistering"), Is.True);
        IReadOnlyList<UeventRecord> ev = rig.Sim.Machine.Uevents.Snapshot();
        Assert.That(ev.Select(e => e.ToString()), Is.EqualTo(new[]
        {
            "change@/devices/virtual/mtest/mtest MDEV_STATE=registered",
            "change@/devices/virtual/mtest/mtest MDEV_STATE=unregistered",
        }));
    }

    [Test]
    public void AnMdevOpensThroughItsGroup_ByUuid()
    {
        var rig = new MdevRig();
        Guid id = rig.Sim.CreateMdev("mtest", "mtest-1");
        int group = rig.Sim.MdevGroupOf(id);
        Assert.That(rig.Sim.Machine.Vfs.Exists($"/dev/vfio/{group}"), Is.True);
        using (var s = rig.Sim.OpenMdev(rig.Sim.Spawn("qemu"), id))
        {
            Assert.That(s.GroupId, Is.EqualTo(group));
            Assert.That(rig.Driver.Ops.Opens, Is.EqualTo(1));
        }

        rig.Sim.RemoveMdev(id);
        Assert.That(rig.Sim.Machine.Vfs.Exists($"/dev/vfio/{group}"), Is.False);
        Assert.That(() => rig.Sim.RemoveMdev(id), Throws.InstanceOf<VfioException>().With.Property(nameof(VfioException.Errno)).EqualTo(Errno.ENOENT));
    }
}
