// Lifecycle races of the vfio core (races 3 and 4 in docs/races.md: group lifetime against
// unregister, new opens racing the unregister wait; a group open racing the removal of its
// last device; SET/UNSET_CONTAINER racing on one container), each under the controlled
// scheduler with fixed seeds and again with real threads. Unbind waits run on the virtual
// clock: no test sleeps.

using NUnit.Framework;
using Vfio.Core;
using Vfio.Kernel;
using Vfio.Tests.Core;

namespace Vfio.Tests.Races;

public sealed class VfioLifecycleRaceTests
{
    private static readonly ulong[] s_seeds = [1, 2, 3, 5, 8, 13, 21, 34];

    [Test]
    public void GetDeviceFdRacingUnregister_IsEnodevOnceUnregisterStarted_AndUnregisterEndsWithTheLastOldFd(
        [Values] SchedulerMode mode, [ValueSource(nameof(s_seeds))] ulong seed)
    {
        // Race 4 in docs/races.md, the v6.6+ order (VfioCoreFeatures.UnregisterHidesDeviceBeforeWaiting): the device leaves the group list before the wait.
        var rig = new VfioRig(mode, seed);
        rig.Bind(VfioRig.Edu);
        rig.Run(() =>
        {
            (int c, int g, int d) = rig.OpenAll(VfioRig.Edu);
            bool started = false;
            string? unbound = null;
            KTask unbinder = rig.Kernel.Spawn("unbinder", () =>
            {
                Volatile.Write(ref started, true);
                unbound = rig.Unbind(VfioRig.Edu);
            });

            int newAfterStart = 0;
            for (int i = 0; i < 20 && !unbinder.HasExited; i++)
            {
                bool wasStarted = Volatile.Read(ref started) && rig.VDev(VfioRig.Edu).RegistrationCount <= 1;
                long fd = rig.GetDeviceFd(g, VfioRig.Edu);
                if (fd >= 0)
                {
                    if (wasStarted && !rig.Group(VfioRig.Edu).Devices.Contains(rig.VDev(VfioRig.Edu)))
                    {
                        newAfterStart++;
                    }

                    rig.User.Close((int)fd);
                }
                else
                {
                    Assert.That(fd, Is.EqualTo(Errno.ENODEV.Negative()), ErrorReason.Current);
                }

                KTask.Schedule();
            }

            Assert.That(newAfterStart, Is.Zero, "no fd handed out once the device left the group list");
            Runs.SpinUntil(() => Volatile.Read(ref started));
            Runs.SpinUntil(() => !rig.Group(VfioRig.Edu).Devices.Any());
            Assert.That(rig.GetDeviceFd(g, VfioRig.Edu), Is.EqualTo(Errno.ENODEV.Negative()));
            Assert.That(unbinder.HasExited, Is.False, "the pre-existing fd still holds the device");
            rig.User.Close(d);
            unbinder.Join();
            Assert.That(unbound, Is.EqualTo("vfio-test"));
            rig.User.Close(g);
            rig.User.Close(c);
        });
    }

    [Test]
    public void OnLinux61_NewOpensDuringTheUnregisterWait_StillSucceed_SoAnEagerUserCanStarveIt()
    {
        // The pre-v6.6 order (race 4 in docs/races.md, the bug 291872a533a2 fixed): the device is still on the group list while unregister waits.
        var rig = new VfioRig(SchedulerMode.Controlled, 1, profile: KernelProfile.Linux6_1);
        rig.Bind(VfioRig.Edu);
        rig.Run(() =>
        {
            (int c, int g, int d) = rig.OpenAll(VfioRig.Edu);
            KTask unbinder = rig.Kernel.Spawn("unbinder", () => rig.Unbind(VfioRig.Edu));
            Runs.SpinUntil(() => rig.VDev(VfioRig.Edu).RegistrationCount == 1 && rig.Driver.Ops.Requests.Count > 0);
            long again = rig.GetDeviceFd(g, VfioRig.Edu);
            Assert.That(again, Is.GreaterThanOrEqualTo(0), "6.1 hands out a new fd while unregister waits");
            rig.User.Close(d);
            Assert.That(unbinder.HasExited, Is.False, "the new fd keeps unregister waiting");
            rig.User.Close((int)again);
            unbinder.Join();
            rig.User.Close(g);
            rig.User.Close(c);
        });
    }

    [Test]
    public void AnUnbindWaitingForAUser_RequestsEvery10Seconds_AndASignalMakesTheWaitUninterruptible([Values] SchedulerMode mode)
    {
        var rig = new VfioRig(mode);
        rig.Bind(VfioRig.Edu);
        rig.Run(() =>
        {
            (int c, int g, int d) = rig.OpenAll(VfioRig.Edu);
            KTask unbinder = rig.Kernel.Spawn("unbinder", () => rig.Unbind(VfioRig.Edu));
            VfioRig.WaitUntil(() => rig.Driver.Ops.Requests.Count >= 3);
            unbinder.SendSignal(Signals.SIGINT);
            VfioRig.WaitUntil(() => rig.Kernel.Log.Contains("Device is currently in use"));
            VfioRig.WaitUntil(() => rig.Driver.Ops.Requests.Count >= 5);
            Assert.That(unbinder.HasExited, Is.False, "a signal does not end the wait");
            Assert.That(rig.Driver.Ops.Requests.Take(5), Is.EqualTo(new uint[] { 0, 1, 2, 3, 4 }), "request(count) with an increasing count");

            Assert.That(rig.Kernel.Log.Contains("vfio-test 0000:01:00.0: Device is currently in use, task \"init\" (1) blocked until device is released"), Is.True, rig.Kernel.Log.Dmesg());
            rig.User.Close(d);
            unbinder.Join();
            if (mode == SchedulerMode.Controlled)
            {
                Assert.That(rig.Kernel.Clock.NowNs, Is.GreaterThanOrEqualTo(30_000_000_000L), "10 s slices of virtual time; the signal cut one short");
            }

            rig.User.Close(g);
            rig.User.Close(c);
        });
    }

    [Test]
    public void GroupOpenRacingTheLastDeviceRemoval_IsEnodevOrSucceeds_AndNeverLeaks(
        [Values] SchedulerMode mode, [ValueSource(nameof(s_seeds))] ulong seed)
    {
        // vfio_group_fops_open (drivers/vfio/group.c): a group whose last driver is going
        // (drivers == 0) refuses the open with ENODEV; once the node is gone, ENOENT or ENXIO.
        var rig = new VfioRig(mode, seed);
        rig.Bind(VfioRig.Edu);
        string path = rig.GroupPath(VfioRig.Edu);
        VfioGroup group = rig.Group(VfioRig.Edu);
        rig.Run(() =>
        {
            KTask unbinder = rig.Kernel.Spawn("unbinder", () => rig.Unbind(VfioRig.Edu));
            int fd = rig.User.Open(path);
            Assert.That(fd, Is.GreaterThanOrEqualTo(0).Or.EqualTo(Errno.ENODEV.Negative()).Or.EqualTo(Errno.ENOENT.Negative()).Or.EqualTo(Errno.ENXIO.Negative()));
            unbinder.Join();
            if (fd >= 0)
            {
                Assert.That(rig.GetStatus(fd, out _), Is.Zero.Or.EqualTo(Errno.ENODEV.Negative()));
                rig.User.Close(fd);
            }

            Assert.That(group.ReferenceCount, Is.Zero, "the group went with its last reference");
            Assert.That(rig.Machine.Vfs.Exists(path), Is.False);
        });
    }

    [Test]
    public void SetContainerRacingAnotherGroupsUnsetContainer_OnTheSameContainer_LeavesAConsistentContainer(
        [Values] SchedulerMode mode, [ValueSource(nameof(s_seeds))] ulong seed)
    {
        var rig = new VfioRig(mode, seed);
        rig.Bind(VfioRig.Edu);
        rig.Bind(VfioRig.Nic);
        rig.Run(() =>
        {
            int c = rig.OpenContainer();
            int g1 = rig.OpenGroup(VfioRig.Edu);
            int g2 = rig.OpenGroup(VfioRig.Nic);
            Assert.That(rig.SetContainer(g1, c), Is.Zero);
            Assert.That(rig.SetIommu(c), Is.Zero);
            long set = 1, unset = 1;
            KTask a = rig.Kernel.Spawn("set", () => set = rig.SetContainer(g2, c), rig.User);
            KTask b = rig.Kernel.Spawn("unset", () => unset = rig.UnsetContainer(g1), rig.User);
            a.Join();
            b.Join();
            Assert.That(unset, Is.Zero);
            Assert.That(set, Is.Zero);
            VfioContainer container = rig.Group(VfioRig.Nic).Container!;
            Assert.That(container.Groups, Is.EqualTo(new[] { rig.Group(VfioRig.Nic) }));
            int attaches = rig.Backend.Invocations.Count(i => i.Method.Name == nameof(IVfioIommuDriver.AttachGroup));
            int releases = rig.Backend.Invocations.Count(i => i.Method.Name == nameof(IVfioIommuDriver.Release));
            // Either the new group joined the live backend (2 attaches, no release), or the
            // unset emptied the container first and released the backend, leaving it unset.
            Assert.That((attaches, releases, container.HasIommuDriver), Is.EqualTo((2, 0, true)).Or.EqualTo((1, 1, false)));
            rig.User.Close(g1);
            rig.User.Close(g2);
            rig.User.Close(c);
            Assert.That(container.ReferenceCount, Is.Zero);
        });
    }
}
