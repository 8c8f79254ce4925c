// Tests the blocking paths of Vfio.Mdev/MdevCore.cs: removing an mdev user space holds
// open waits in vfio_unregister_group_dev (silently without a request op, asking with
// one), unregistering a parent waits for each open child while create and remove on it
// answer ENODEV (MD-07), a remove during creation is EAGAIN, a remove file kept open past
// the device's end is ENODEV, and an mdev group shares a type1 container with a PCI
// group. Waits run on the virtual clock.

using NUnit.Framework;
using Vfio.Core.Client;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Fs;
using Vfio.Platform.Proc;
using Vfio.Sim;

namespace Vfio.Tests.Mdev;

public sealed class MdevLifecycleTests
{
    private static readonly Guid s_a = Guid.Parse("0a0a0a0a-0000-4000-8000-00000000000a");
    private static readonly Guid s_b = Guid.Parse("0b0b0b0b-0000-4000-8000-00000000000b");
    private static readonly Guid s_c = Guid.Parse("0c0c0c0c-0000-4000-8000-00000000000c");

    private static IEnumerable<KernelProfile> Profiles() => [KernelProfile.Linux6_12, KernelProfile.Linux6_1];

    [TestCaseSource(nameof(Profiles))]
    public void RemovingAnOpenMdev_BlocksUntilTheUserCloses_SilentlyWhenTheDriverHasNoRequestOp(KernelProfile profile)
    {
        var rig = new MdevRig(profile);
        Runs.AssertPassed(rig.Sim.Run(() =>
        {
            rig.Sim.CreateMdev("mtest", "mtest-1", s_a);
            int group = rig.Sim.MdevGroupOf(s_a);
            VfioSession s = rig.Sim.OpenMdev(rig.Sim.Spawn("qemu"), s_a);
            long rc = 0;
            KTask remover = rig.Kernel.Spawn("remover", () => rc = rig.WriteRemove(s_a));

            KTask.Msleep(35_000);
            Assert.That(remover.HasExited, Is.False, "vfio_unregister_group_dev waits for the last fd");
            Assert.That(rig.Fs.Exists(MdevRig.DevicePath(s_a) + "/remove"), Is.False, "the attribute removed itself first");
            Assert.That(rig.WriteRemove(s_a), Is.EqualTo(Errno.ENOENT.Negative()), "a second writer finds no file");
            Assert.That(rig.Kernel.Log.Contains("No device request channel"), Is.False, "that line is a request op's (vfio-pci's); without one the core waits silently");
            Assert.That(rig.Kernel.Log.Contains("blocked until device is released"), Is.False);

            s.Dispose();
            remover.Join();
            Assert.That(rc, Is.EqualTo(2));
            Assert.That(rig.Core.Devices, Is.Empty);
            Assert.That(rig.Sim.Machine.Vfs.Exists($"/dev/vfio/{group}"), Is.False);
            Assert.That(rig.Available(), Is.EqualTo(4));
        }));
    }

    [Test]
    public void RemovingAnOpenMdev_WithARequestOp_AsksTheUser_WhoClosesAndLetsItFinish()
    {
        var rig = new MdevRig(driver: new TestMdevDriver(hasRequest: true));
        Runs.AssertPassed(rig.Sim.Run(() =>
        {
            rig.Sim.CreateMdev("mtest", "mtest-1", s_a);
            VfioSession s = rig.Sim.OpenMdev(rig.Sim.Spawn("qemu"), s_a);
            long start = rig.Kernel.Clock.NowNs;
            KTask remover = rig.Kernel.Spawn("remover", () => rig.WriteRemove(s_a));
            Runs.SpinUntil(() => !rig.Driver.Ops.Requests.IsEmpty);
            Assert.That(rig.Driver.Ops.Requests.First(), Is.Zero, "request(0) before the first 10 s wait");
            s.Dispose();
            remover.Join();
            Assert.That(rig.Kernel.Clock.NowNs - start, Is.LessThan(10_000_000_000L));
            Assert.That(rig.Core.Devices, Is.Empty);
        }));
    }

    [Test]
    public void ASignalToTheBlockedRemover_IsLogged_AndTheWaitGoesOnUninterruptibly()
    {
        var rig = new MdevRig();
        Runs.AssertPassed(rig.Sim.Run(() =>
        {
            rig.Sim.CreateMdev("mtest", "mtest-1", s_a);
            VfioSession s = rig.Sim.OpenMdev(rig.Sim.Spawn("qemu"), s_a);
            KTask remover = rig.Kernel.Spawn("remover", () => rig.WriteRemove(s_a));
            KTask.Msleep(1_000);
            remover.SendSignal(Signals.SIGINT);
            KTask.Msleep(15_000);
            Assert.That(rig.Kernel.Log.Contains($"mtest {s_a:D}: Device is currently in use"), Is.True, rig.Sim.Dmesg());
            Assert.That(remover.HasExited, Is.False);
            s.Dispose();
            remover.Join();
            Assert.That(rig.Core.Devices, Is.Empty);
        }));
    }

    [TestCaseSource(nameof(Profiles))]
    public void MD_07_WhileUnregistrationWaitsForAnOpenChild_CreateAndRemoveAreEnodev_AndItFinishesAfterTheClose(KernelProfile profile)
    {
        var rig = new MdevRig(profile);
        Runs.AssertPassed(rig.Sim.Run(() =>
        {
            rig.Sim.CreateMdev("mtest", "mtest-1", s_a);
            rig.Sim.CreateMdev("mtest", "mtest-2", s_b);
            VfioSession s = rig.Sim.OpenMdev(rig.Sim.Spawn("qemu"), s_a);
            KTask unregister = rig.Kernel.Spawn("rmmod", () => rig.Parent.Unregister());
            KTask.Msleep(25_000);
            Assert.That(unregister.HasExited, Is.False, "unregistration waits for the open child");

            Assert.That(rig.WriteCreate(s_c.ToString()), Is.EqualTo(Errno.ENODEV.Negative()), "unreg_sem is held for write");
            Assert.That(ErrorReason.Current, Does.Contain("being unregistered"));
            Assert.That(rig.WriteRemove(s_b), Is.EqualTo(Errno.ENODEV.Negative()), "unregistration will remove it");
            Assert.That(rig.Core.Find(s_b), Is.Not.Null);
            Assert.That(rig.Core.Find(s_c), Is.Null, "the refused creation left nothing");

            s.Dispose();
            unregister.Join();
            Assert.That(rig.Core.Devices, Is.Empty, "MD-08: every child went");
            Assert.That(rig.Parent.Parent.AvailableInstances, Is.EqualTo(4));
            Assert.That(rig.Sim.Machine.Uevents.Snapshot()[^1].Env, Is.EqualTo(new[] { "MDEV_STATE=unregistered" }));
        }));
    }

    [Test]
    public void MD_07_RemoveDuringCreation_IsEagain_AndTheRemoveFileIsGoneAfterwards()
    {
        var rig = new MdevRig();
        Runs.AssertPassed(rig.Sim.Run(() =>
        {
            var gate = new Completion(rig.Kernel, "probe gate");
            bool inProbe = false;
            rig.Driver.OnProbe = _ =>
            {
                Volatile.Write(ref inProbe, true);
                gate.Wait();
            };
            long created = 0;
            KTask creator = rig.Kernel.Spawn("creator", () => created = rig.WriteCreate(s_a.ToString()));
            Runs.SpinUntil(() => Volatile.Read(ref inProbe));

            Assert.That(rig.WriteRemove(s_a), Is.EqualTo(Errno.EAGAIN.Negative()), "not active until creation finishes");
            gate.Complete();
            creator.Join();
            Assert.That(created, Is.EqualTo(36));
            Assert.That(rig.Core.Find(s_a), Is.Not.Null);
            Assert.That(rig.Fs.Exists(MdevRig.DevicePath(s_a) + "/remove"), Is.False, "device_remove_file_self() ran before the EAGAIN; nothing puts the file back");
            rig.Driver.OnProbe = null;
            rig.Parent.Unregister();
            Assert.That(rig.Core.Devices, Is.Empty, "only unregistration can remove it now");
        }));
    }

    [Test]
    public void MD_07_ARemoveFileKeptOpenPastTheDevice_IsEnodev()
    {
        var rig = new MdevRig();
        Runs.AssertPassed(rig.Sim.Run(() =>
        {
            rig.Sim.CreateMdev("mtest", "mtest-1", s_a);
            SimProcess sh = rig.Sim.Spawn("sh");
            int fd = sh.Open(MdevRig.DevicePath(s_a) + "/remove", OpenFlags.O_WRONLY);
            Assert.That(fd, Is.GreaterThanOrEqualTo(0));
            rig.Parent.Unregister();
            Assert.That(sh.Write(fd, "1\n"u8.ToArray()), Is.EqualTo(Errno.ENODEV.Negative()));
            sh.Close(fd);
        }));
    }

    [Test]
    public void AnMdevGroupAndAPciGroup_ShareOneType1Container()
    {
        var rig = new MdevRig(vfioPci: true);
        const string edu = "0000:01:00.0";
        rig.Sim.Bind(edu);
        Runs.AssertPassed(rig.Sim.Run(() =>
        {
            rig.Sim.CreateMdev("mtest", "mtest-1", s_a);
            SimProcess qemu = rig.Sim.Spawn("qemu");
            using var container = new VfioContainerFd(qemu);
            using var pciGroup = new VfioGroupFd(qemu, rig.Sim.GroupOf(edu));
            using var mdevGroup = new VfioGroupFd(qemu, rig.Sim.MdevGroupOf(s_a));
            pciGroup.SetContainer(container);
            container.SetIommu(VfioExtension.Type1v2);
            mdevGroup.SetContainer(container);
            Assert.That(mdevGroup.GetStatus(), Is.EqualTo(VfioGroupFlags.Viable | VfioGroupFlags.ContainerSet));
            using VfioDeviceFd pci = pciGroup.GetDeviceFd(edu);
            using VfioDeviceFd mdev = mdevGroup.GetDeviceFd(s_a.ToString("D"));
            Assert.That(rig.Driver.Ops.Opens, Is.EqualTo(1));
        }));
    }
}
