// Races virt/kvm/vfio.c (v6.12) against drivers/vfio/group.c device open and close (race 7
// in docs/races.md, the KVM ↔ VFIO lock inversions): one thread releases the KVM-VFIO device
// and the VM while another opens and closes a device fd of the group registered with that
// KVM. The last VM reference may go at a device's last close under the vfio group lock;
// vfio_file_set_kvm runs under kvm->lock. Lockdep must stay silent, nothing may deadlock,
// and nothing may leak: the VM is destroyed exactly once, and neither the group nor the
// device keeps a stale VM.

using NUnit.Framework;
using Vfio.Core.Kvm;
using Vfio.Kernel;
using Vfio.Tests.Core.Kvm;

namespace Vfio.Tests.Races;

public sealed class KvmVfioRaceTests
{
    /// <summary>
    /// Runs the race; <paramref name="destroyedBy"/> names the task whose put destroyed the
    /// VM. The opener opens at 0 ms and 2 ms of virtual time and closes at 1 ms and 3 ms;
    /// the closer starts at <paramref name="delayMs"/>, so every seed lands it against a
    /// different step of the opener, and the scheduler decides the ties. With
    /// <paramref name="closeGroupFd"/> the opener closes user space's only group fd once its
    /// device is open (and opens once), so the group file's last reference goes either with
    /// the kvm-vfio device or at the device's last close, under the group lock.
    /// </summary>
    private static void Scenario(KvmRig r, int delayMs, bool closeGroupFd, out string? destroyedBy)
    {
        (int g, int container, int vm, int dev, KvmVm v) = r.SetUp(container: true, add: true);

        KTask closer = r.P.SpawnThread("close-kvm", () =>
        {
            KTask.Msleep(delayMs);
            Assert.That(r.P.Close(dev), Is.Zero);
            Assert.That(r.P.Close(vm), Is.Zero);
        });
        KTask opener = r.P.SpawnThread("open-device", () =>
        {
            for (int i = 0; i < (closeGroupFd ? 1 : 2); i++)
            {
                int fd = r.GetDeviceFd(g);
                Assert.That(fd, Is.GreaterThanOrEqualTo(0), ErrorReason.Current);
                if (closeGroupFd)
                {
                    Assert.That(r.P.Close(g), Is.Zero);
                }

                KTask.Msleep(1);
                Assert.That(r.P.Close(fd), Is.Zero);
                KTask.Msleep(1);
            }
        });
        closer.Join();
        opener.Join();

        Assert.That(v.UsersCount, Is.Zero);
        Assert.That(v.IsDestroyed, Is.True);
        destroyedBy = v.DestroyedBy;
        Assert.That(r.Group.Kvm, Is.Null);
        Assert.That(r.Device.Kvm, Is.Null);
        if (closeGroupFd)
        {
            // The group's release ran (it left its container); the node opens again.
            Assert.That(r.Group.ContainerUsersSnapshot, Is.Zero);
            g = r.OpenGroup();
            Assert.That(g, Is.GreaterThanOrEqualTo(0), ErrorReason.Current);
        }
        else
        {
            Assert.That(r.FileRefs(g), Is.EqualTo(1), "only the user's fd holds the group file");
            Assert.That(r.Group.ContainerUsersSnapshot, Is.EqualTo(1));
        }

        r.Close(g, container);
        r.AssertNothingLeft();
    }

    private static RunResult RunOnce(SchedulerMode mode, ulong seed, StrategySpec? strategy, bool closeGroupFd, out string? destroyedBy)
    {
        var rig = new KvmRig(mode, seed, strategy);
        string? by = null;
        RunResult r = rig.Vfio.Kernel.Run("main", () => Scenario(rig, (int)(seed % 5), closeGroupFd, out by));
        destroyedBy = by;
        return r;
    }

    [Test]
    public void ClosingKvmWhileADeviceOpensAndCloses_IsCleanUnderTheControlledScheduler(
        [Values(1UL, 2UL, 3UL, 4UL, 5UL, 6UL, 7UL, 8UL, 9UL, 10UL)] ulong seed,
        [Values] bool closeGroupFd)
    {
        Runs.AssertPassed(RunOnce(SchedulerMode.Controlled, seed, null, closeGroupFd, out _));
    }

    [Test]
    public void ClosingKvmWhileADeviceOpensAndCloses_IsCleanWithPctOverASeedList([Values] bool closeGroupFd)
    {
        var destroyers = new HashSet<string?>();
        for (ulong seed = 100; seed < 132; seed++)
        {
            RunResult r = RunOnce(SchedulerMode.Controlled, seed, StrategySpec.Pct(3), closeGroupFd, out string? by);
            Assert.That(r.Outcome, Is.EqualTo(RunOutcome.Completed), $"seed {seed}: {r.Describe()}");
            destroyers.Add(by);
        }

        // Both orders happen: the VM fd's close is the last put, or a device's last close
        // under the vfio group lock is.
        Assert.That(destroyers, Is.EquivalentTo(new[] { "close-kvm", "open-device" }));
    }

    [Test]
    public void ClosingKvmWhileADeviceOpensAndCloses_IsCleanWithRealThreads([Values] bool closeGroupFd)
    {
        for (int i = 0; i < 25; i++)
        {
            RunResult r = RunOnce(SchedulerMode.Real, (ulong)i + 1, null, closeGroupFd, out _);
            Assert.That(r.Outcome, Is.EqualTo(RunOutcome.Completed), $"iteration {i}: {r.Describe()}");
        }
    }
}
