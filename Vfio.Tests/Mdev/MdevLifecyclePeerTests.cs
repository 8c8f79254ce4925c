// The lifecycle peer cases on a real mediated device (an mtty instance): LR-01, a device fd
// keeps its group and container alive after their fds are closed; LR-02, container, group
// and device fds closed in each of the six orders leave nothing behind, and the instance can
// then be removed at once.

using NUnit.Framework;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Proc;
using Vfio.Sim;

namespace Vfio.Tests.Mdev;

public sealed class MdevLifecyclePeerTests
{
    private static VfioSim Boot(string profile) => VfioSim.CreateBuilder().UseProfile(KernelProfile.Parse(profile)).AddMtty().Build();

    [Test]
    public void LR_01_AfterClosingContainerAndGroup_TheMdevDeviceFdStillWorks([Values("linux-6.12", "linux-6.1")] string profile)
    {
        VfioSim sim = Boot(profile);
        RunResult run = sim.Run(() =>
        {
            SimProcess p = sim.Spawn("user");
            Guid uuid = sim.CreateMdev("mtty", "mtty-2", caller: p);
            VfioSession s = sim.OpenMdev(p, uuid);
            s.Container.Dispose();
            s.Group.Dispose();

            Assert.That(s.Device.GetInfo().Info.NumRegions, Is.EqualTo(9u), "GET_INFO");
            Assert.That(s.Device.GetIrqInfo(VfioPciIndex.IrqMsi).Count, Is.EqualTo(1u), "GET_IRQ_INFO");
            int efd = p.Eventfd(0);
            s.Device.SetIrqEventfd(VfioPciIndex.IrqMsi, efd);
            s.Device.DisableIrqs(VfioPciIndex.IrqMsi);
            Assert.That(s.Device.ReadConfig16(0), Is.EqualTo(0x4348), "a config read");
            p.Close(efd);
            s.Device.Dispose();
            sim.RemoveMdev(uuid, p);
        });

        Assert.That(run.Passed, Is.True, run.Describe());
        Assert.That(sim.CheckInvariants(), Is.Empty);
    }

    private static IEnumerable<int[]> Orders()
    {
        int[][] all = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]];
        return all;
    }

    [Test]
    public void LR_02_ClosingContainerGroupAndMdevDeviceInAnyOrder_LeavesNothing([ValueSource(nameof(Orders))] int[] order)
    {
        VfioSim sim = Boot("linux-6.12");
        RunResult run = sim.Run(() =>
        {
            SimProcess p = sim.Spawn("user");
            Guid uuid = sim.CreateMdev("mtty", "mtty-1", caller: p);
            int group = sim.MdevGroupOf(uuid);
            int fdsBefore = p.Files.Open.Count;
            VfioSession s = sim.OpenMdev(p, uuid);
            IDisposable[] fds = [s.Container, s.Group, s.Device];
            foreach (int i in order)
            {
                fds[i].Dispose();
            }

            Assert.That(p.Files.Open.Count, Is.EqualTo(fdsBefore), "every fd is closed");
            Assert.That(sim.Vfio.Groups.Single(g => g.Id == group).Container, Is.Null, "the group left its container");
            sim.RemoveMdev(uuid, p);  // would block if anything still held the device
            Assert.That(sim.Machine.Vfs.Exists($"/dev/vfio/{group}"), Is.False);
        });

        Assert.That(run.Passed, Is.True, run.Describe());
        Assert.That(sim.CheckInvariants(), Is.Empty);
        Assert.That(sim.Mdev!.Devices, Is.Empty);
    }
}
