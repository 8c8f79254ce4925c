// Tests vfio-pci's side of the unbind wait (Vfio.Pci/VfioPciCoreDevice.cs Request: the
// request(count) loop of vfio_unregister_group_dev and vfio_pci_core_request signalling the
// REQ eventfd; race 8 in docs/races.md): unbinding an open device from another task blocks;
// a user that registered a REQ eventfd is asked and, closing its fds, lets the unbind
// finish in bounded virtual time; without one the kernel says so once and waits for the
// close.

using NUnit.Framework;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Pci;

namespace Vfio.Tests.Pci;

[TestFixture]
public sealed class VfioPciUnbindTests
{
    private const string Unbind = "/sys/bus/pci/drivers/vfio-pci/unbind";

    [Test]
    public void AUserWithAReqEventfd_IsAskedAndReleases_SoUnbindFinishes([Values] SchedulerMode mode, [Values(1UL, 7UL, 42UL)] ulong seed)
    {
        VfioPciRig.Run(mode, rig =>
        {
            var fds = rig.Open(VfioPciRig.Edu);
            int efd = rig.P.Eventfd(0);
            Assert.That(rig.SetIrqEventfd(fds.Device, VfioPciIndex.IrqReq, efd), Is.Zero);
            PciDevice edu = rig.Dev(VfioPciRig.Edu);
            long start = rig.M.Kernel.Clock.NowNs;
            long unbound = 0;
            KTask unbinder = rig.M.Kernel.Spawn("unbinder", () => unbound = rig.M.Sysfs.Write(Unbind, VfioPciRig.Edu));

            // The cooperative user: block in read(eventfd) until the kernel asks, then let go.
            byte[] counter = new byte[8];
            Assert.That(rig.P.Read(efd, counter), Is.EqualTo(8));
            Assert.That(BitConverter.ToUInt64(counter), Is.GreaterThanOrEqualTo(1UL));
            Assert.That(edu.Driver, Is.Not.Null, "still bound while the user holds the device");
            rig.CloseAll(fds);
            unbinder.Join();

            Assert.That(unbound, Is.GreaterThan(0));
            Assert.That(edu.Driver, Is.Null);
            // Controlled: the first request goes out before the first 10 s wait, so the whole
            // unbind fits in one slice. Real mode runs virtual time at 1000x wall time, so
            // thread start-up jitter counts in seconds there; only a loose bound holds.
            long bound = mode == SchedulerMode.Controlled ? 10_000_000_000L : 120_000_000_000L;
            Assert.That(rig.M.Kernel.Clock.NowNs - start, Is.LessThan(bound));
            Assert.That(rig.M.Kernel.Log.Contains($"vfio-pci {VfioPciRig.Edu}: Relaying device request to user (#0)"), Is.True, rig.M.Kernel.Log.Dmesg());
            Assert.That(rig.M.Kernel.Log.Contains("No device request channel registered"), Is.False);
            Assert.That(rig.EventFdRefs(efd), Is.EqualTo(1), "close_device dropped the REQ eventfd");
        }, seed);
    }

    [Test]
    public void WithoutAReqEventfd_TheKernelSaysSoOnce_AndUnbindWaitsForTheClose([Values] SchedulerMode mode, [Values(1UL, 7UL)] ulong seed)
    {
        VfioPciRig.Run(mode, rig =>
        {
            var fds = rig.Open(VfioPciRig.Edu);
            PciDevice edu = rig.Dev(VfioPciRig.Edu);
            bool done = false;
            KTask unbinder = rig.M.Kernel.Spawn("unbinder", () =>
            {
                rig.M.Sysfs.Write(Unbind, VfioPciRig.Edu);
                Volatile.Write(ref done, true);
            });

            // Three 10 s slices of virtual time: still bound, still waiting, one message.
            KTask.Msleep(35_000);
            Assert.That(Volatile.Read(ref done), Is.False);
            Assert.That(edu.Driver, Is.Not.Null);
            const string line = "vfio-pci 0000:01:00.0: No device request channel registered, blocked until released by user";
            Assert.That(rig.M.Kernel.Log.Messages.Count(x => x.Text == line), Is.EqualTo(1), rig.M.Kernel.Log.Dmesg());

            // The user is still served meanwhile.
            Assert.That(rig.Read32(fds.Device, 0, 0), Is.EqualTo(0x010000edu));

            rig.CloseAll(fds);
            unbinder.Join();
            Assert.That(Volatile.Read(ref done), Is.True);
            Assert.That(edu.Driver, Is.Null);

            // Unbind held the device lock, so close could neither reset the function nor the bus.
            Assert.That(rig.M.Kernel.Log.Messages.Count(x => x.Text == line), Is.EqualTo(1));
        }, seed);
    }

    [Test]
    public void AnOpenWhileUnbindHoldsTheDeviceLock_CannotFindTheDevice([Values] SchedulerMode mode)
    {
        VfioPciRig.Run(mode, rig =>
        {
            var fds = rig.Open(VfioPciRig.Edu);
            KTask unbinder = rig.M.Kernel.Spawn("unbinder", () => rig.M.Sysfs.Write(Unbind, VfioPciRig.Edu));
            KTask.Msleep(1_000);

            // v6.6+ (VfioCoreFeatures.UnregisterHidesDeviceBeforeWaiting): the device left the group list before the wait.
            Assert.That(rig.GetDeviceFd(fds.Group, VfioPciRig.Edu), Is.EqualTo(Errno.ENODEV.Negative()));
            rig.CloseAll(fds);
            unbinder.Join();
        });
    }
}
