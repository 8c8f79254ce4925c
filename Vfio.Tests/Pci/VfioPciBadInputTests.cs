// Tests the argument checks of Vfio.Pci/VfioPciCoreDevice.Ioctl.cs and .Intrs.cs against
// ported peer cases (DF-02, DF-04, DF-07, DF-20, BI-05, BI-07) and the SET_IRQS header
// rules, and that a rejected call changes nothing (open counts, fds, eventfd references).

using NUnit.Framework;
using Vfio.Core.Uapi;
using Vfio.Kernel;

namespace Vfio.Tests.Pci;

[TestFixture]
public sealed class VfioPciBadInputTests
{
    private static void WithOpenEdu(Action<VfioPciRig, int> body)
        => VfioPciRig.Run(SchedulerMode.Real, rig =>
        {
            (int c, int g, int d) = rig.Open(VfioPciRig.Edu);
            body(rig, d);
            rig.CloseAll((c, g, d));
        });

    [Test]
    public void DF_02_GetDeviceFdBeforeSetIommu_IsEinval()
    {
        VfioPciRig.Run(SchedulerMode.Real, rig =>
        {
            rig.BindToVfio(VfioPciRig.Edu);
            int g = rig.P.Open($"/dev/vfio/{rig.GroupId(VfioPciRig.Edu)}");
            Assert.That(rig.GetDeviceFd(g, VfioPciRig.Edu), Is.EqualTo(Errno.EINVAL.Negative()));
            int c = rig.P.Open("/dev/vfio/vfio");
            int cfd = c;
            Assert.That(rig.Ioctl(g, VfioIoctl.GroupSetContainer, ref cfd), Is.Zero);
            Assert.That(rig.GetDeviceFd(g, VfioPciRig.Edu), Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That(rig.Vdev(VfioPciRig.Edu).OpenCountUnlocked, Is.Zero);
        });
    }

    [Test]
    public void DF_04_ANameFollowedByANonSpace_MatchesNothing()
    {
        VfioPciRig.Run(SchedulerMode.Real, rig =>
        {
            rig.BindToVfio(VfioPciRig.Edu);
            (int c, int g) = rig.OpenContainerAndGroup(VfioPciRig.Edu);
            Assert.That(rig.GetDeviceFd(g, VfioPciRig.Edu + "0x"), Is.EqualTo(Errno.ENODEV.Negative()));
            Assert.That(rig.GetDeviceFd(g, VfioPciRig.Edu + " bogus=1"), Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That(rig.GetDeviceFd(g, VfioPciRig.Edu + " vf_token=bd8d9d2b-5a5f-4f5a-a211-f591514ba1f3"), Is.EqualTo(Errno.EINVAL.Negative()), "not a PF or VF");
            long d = rig.GetDeviceFd(g, VfioPciRig.Edu + "   ");
            Assert.That(d, Is.GreaterThanOrEqualTo(0), "trailing spaces are fine");
            rig.CloseAll((c, g, (int)d));
        });
    }

    [Test]
    public void DF_07_GetInfo_RefusesArgszBelow16_AndFillsCapOffsetFrom20()
    {
        WithOpenEdu((rig, d) =>
        {
            var small = new VfioDeviceInfo { Argsz = 8 };
            Assert.That(rig.Ioctl(d, VfioIoctl.DeviceGetInfo, ref small), Is.EqualTo(Errno.EINVAL.Negative()));

            var sixteen = new VfioDeviceInfo { Argsz = 16, CapOffset = 0xdead };
            Assert.That(rig.Ioctl(d, VfioIoctl.DeviceGetInfo, ref sixteen), Is.Zero);
            Assert.That(sixteen.CapOffset, Is.EqualTo(0xdeadu), "not written below 20");

            var big = new VfioDeviceInfo { Argsz = 32, CapOffset = 0xdead };
            Assert.That(rig.Ioctl(d, VfioIoctl.DeviceGetInfo, ref big), Is.Zero);
            Assert.That((big.Argsz, big.CapOffset, big.NumRegions), Is.EqualTo((32u, 0u, 9u)));
        });
    }

    [Test]
    public void DF_20_DeviceFeature_ChecksFlags_AndUnknownOrVfTokenFeaturesAreEnotty()
    {
        WithOpenEdu((rig, d) =>
        {
            long Feature(uint argsz, uint flags)
            {
                byte[] b = new byte[24];
                BitConverter.TryWriteBytes(b.AsSpan(0), argsz);
                BitConverter.TryWriteBytes(b.AsSpan(4), flags);
                return rig.P.Ioctl(d, VfioIoctl.DeviceFeature, b);
            }

            Assert.That(Feature(7, VfioFeature.Get | 12), Is.EqualTo(Errno.EINVAL.Negative()), "argsz < 8");
            Assert.That(Feature(8, 1u << 20), Is.EqualTo(Errno.EINVAL.Negative()), "unknown flag bit");
            Assert.That(Feature(8, VfioFeature.Get | VfioFeature.Set | 12), Is.EqualTo(Errno.EINVAL.Negative()), "GET|SET without PROBE");
            Assert.That(Feature(8, VfioFeature.Get | 12), Is.EqualTo(Errno.ENOTTY.Negative()), "unknown feature");
            Assert.That(Feature(24, VfioFeature.Set | VfioFeature.PciVfToken), Is.EqualTo(Errno.ENOTTY.Negative()), "not a PF");
        });
    }

    [Test]
    public void BI_05_DeviceIoctlsWithArgszOneBelowMinsz_AreEinval()
    {
        WithOpenEdu((rig, d) =>
        {
            var info = new VfioDeviceInfo { Argsz = 15 };
            Assert.That(rig.Ioctl(d, VfioIoctl.DeviceGetInfo, ref info), Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That(rig.RegionInfo(d, 0, out _, argsz: 31), Is.EqualTo(Errno.EINVAL.Negative()));
            var irq = new VfioIrqInfo { Argsz = 15, Index = 4 };
            Assert.That(rig.Ioctl(d, VfioIoctl.DeviceGetIrqInfo, ref irq), Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That(rig.SetIrqs(d, 19, VfioIrqSetFlags.DataNone | VfioIrqSetFlags.ActionTrigger, VfioPciIndex.IrqReq, 0, 0), Is.EqualTo(Errno.EINVAL.Negative()));
            byte[] feature = BitConverter.GetBytes(7UL);
            Assert.That(rig.P.Ioctl(d, VfioIoctl.DeviceFeature, feature), Is.EqualTo(Errno.EINVAL.Negative()));
        });
    }

    [Test]
    public void BI_07_RegionAndIrqIndexes_ValidOnesAnswer_OthersAreEinval()
    {
        WithOpenEdu((rig, d) =>
        {
            for (uint i = 0; i <= 15; i++)
            {
                bool valid = i < 9 && i != VfioPciIndex.Vga;
                Assert.That(rig.RegionInfo(d, i, out _), Is.EqualTo(valid ? 0 : Errno.EINVAL.Negative()), $"region {i}");
                bool irqValid = i < 5 && i != VfioPciIndex.IrqErr; // edu is conventional PCI: no ERR
                Assert.That(rig.IrqInfo(d, i, out _), Is.EqualTo(irqValid ? 0 : Errno.EINVAL.Negative()), $"irq {i}");
            }

            Assert.That(rig.RegionInfo(d, 0xffffffff, out _), Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That(rig.IrqInfo(d, 0xffffffff, out _), Is.EqualTo(Errno.EINVAL.Negative()));
        });
    }

    [Test]
    public void SetIrqs_ValidatesTheHeaderBeforeTheIndexHandler()
    {
        WithOpenEdu((rig, d) =>
        {
            const VfioIrqSetFlags trig = VfioIrqSetFlags.ActionTrigger;
            Assert.That(rig.SetIrqs(d, 20, VfioIrqSetFlags.DataNone | trig, 5, 0, 0), Is.EqualTo(Errno.EINVAL.Negative()), "index 5");
            Assert.That(rig.SetIrqs(d, 20, VfioIrqSetFlags.DataNone | trig, VfioPciIndex.IrqReq, 1, 0xfffffffe), Is.EqualTo(Errno.EINVAL.Negative()), "start+count overflow");
            Assert.That(rig.SetIrqs(d, 20, (VfioIrqSetFlags)0x40 | VfioIrqSetFlags.DataNone | trig, VfioPciIndex.IrqReq, 0, 0), Is.EqualTo(Errno.EINVAL.Negative()), "unknown flag");
            Assert.That(rig.SetIrqs(d, 20, VfioIrqSetFlags.DataNone | trig, VfioPciIndex.IrqReq, 1, 0), Is.EqualTo(Errno.EINVAL.Negative()), "start past the count");
            Assert.That(rig.SetIrqs(d, 20, VfioIrqSetFlags.DataNone | trig, VfioPciIndex.IrqReq, 0, 2), Is.EqualTo(Errno.EINVAL.Negative()), "count past the count");
            Assert.That(rig.SetIrqs(d, 20, VfioIrqSetFlags.DataNone | VfioIrqSetFlags.DataBool | trig, VfioPciIndex.IrqReq, 0, 1), Is.EqualTo(Errno.EINVAL.Negative()), "two data types");
            Assert.That(rig.SetIrqs(d, 23, VfioIrqSetFlags.DataEventfd | trig, VfioPciIndex.IrqReq, 0, 1, [0, 0, 0]), Is.EqualTo(Errno.EINVAL.Negative()), "short payload");
            Assert.That(rig.SetIrqs(d, 20, VfioIrqSetFlags.DataNone | trig, VfioPciIndex.IrqMsix, 0, 0), Is.EqualTo(Errno.EINVAL.Negative()), "edu has no MSI-X vectors");
            Assert.That(rig.SetIrqs(d, 20, VfioIrqSetFlags.DataNone | VfioIrqSetFlags.ActionMask, VfioPciIndex.IrqReq, 0, 1), Is.EqualTo(Errno.ENOTTY.Negative()), "REQ has no MASK");
            Assert.That(rig.SetIrqs(d, 20, VfioIrqSetFlags.DataNone | trig | VfioIrqSetFlags.ActionMask, VfioPciIndex.IrqReq, 0, 1), Is.EqualTo(Errno.ENOTTY.Negative()), "two actions");
            Assert.That(rig.SetIrqs(d, 20, VfioIrqSetFlags.DataNone | trig, VfioPciIndex.IrqIntx, 0, 0), Is.EqualTo(Errno.EINVAL.Negative()), "INTx disable while INTx is off");
            Assert.That(rig.SetIrqs(d, 20, VfioIrqSetFlags.DataNone | VfioIrqSetFlags.ActionMask, VfioPciIndex.IrqMsi, 0, 1), Is.EqualTo(Errno.ENOTTY.Negative()), "MSI has no MASK");
            Assert.That(rig.SetIrqs(d, 20, VfioIrqSetFlags.DataNone | trig, VfioPciIndex.IrqReq, 0, 1), Is.EqualTo(Errno.EINVAL.Negative()), "nothing registered to signal");
        });
    }

    [Test]
    public void RejectedEventfds_LeaveNoReferenceBehind()
    {
        WithOpenEdu((rig, d) =>
        {
            int efd = rig.P.Eventfd(0);
            int notEventfd = rig.P.Open("/dev/vfio/vfio");
            int fdsBefore = rig.P.Files.Open.Count;
            Assert.That(rig.SetIrqEventfd(d, VfioPciIndex.IrqReq, 999), Is.EqualTo(Errno.EBADF.Negative()));
            Assert.That(rig.SetIrqEventfd(d, VfioPciIndex.IrqReq, notEventfd), Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That(rig.SetIrqEventfd(d, VfioPciIndex.IrqReq, -5), Is.EqualTo(Errno.EINVAL.Negative()), "other negative fds are EINVAL on linux-6.12 (VfioPciFeatures.ErrReqNegativeFdIsEinval)");
            Assert.That(rig.SetIrqEventfd(d, VfioPciIndex.IrqReq, efd, count: 0), Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That(rig.Vdev(VfioPciRig.Edu).ReqTrigger, Is.Null);
            Assert.That(rig.EventFdRefs(efd), Is.EqualTo(1));
            Assert.That(rig.P.Files.Open.Count, Is.EqualTo(fdsBefore));

            // Replacing the eventfd drops the old one's reference.
            int efd2 = rig.P.Eventfd(0);
            Assert.That(rig.SetIrqEventfd(d, VfioPciIndex.IrqReq, efd), Is.Zero);
            Assert.That(rig.SetIrqEventfd(d, VfioPciIndex.IrqReq, efd2), Is.Zero);
            Assert.That((rig.EventFdRefs(efd), rig.EventFdRefs(efd2)), Is.EqualTo((1, 2)));
            Assert.That(rig.SetIrqs(d, 20, VfioIrqSetFlags.DataNone | VfioIrqSetFlags.ActionTrigger, VfioPciIndex.IrqReq, 0, 0), Is.Zero, "count 0 clears");
            Assert.That(rig.EventFdRefs(efd2), Is.EqualTo(1));
            Assert.That(rig.Vdev(VfioPciRig.Edu).OpenCountUnlocked, Is.EqualTo(1));
        });
    }
}
