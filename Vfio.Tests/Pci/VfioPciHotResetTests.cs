// Tests VFIO_DEVICE_PCI_HOT_RESET of Vfio.Pci/VfioPciCoreDevice.HotReset.cs and the bus
// reset under it (VfioPciCoreDevice.PciResetBus) on the default machine's dual-port NIC
// behind root port 00:07.0: two functions with ACS, so two IOMMU groups on one bus, whose
// only reset is the bus reset. Every error of the ioctl in each profile's order, with the
// state checked after each rejected call (no reset, file and group references balanced,
// memory_lock free, mappings working); what a reset does to the other function (open fds
// stay, BAR mmaps are zapped and fault back, MSI/MSI-X keep delivering); and races of the
// reset against BAR accesses and a close of the other function, under the controlled
// scheduler with fixed seeds and with real threads.
//
// Peer cases: RS-01, RS-02, RS-07 (its group-path part: count 0 from a group-opened device),
// BI-05 for HOT_RESET and HOT_RESET_INFO; RS-04/RS-05 are in VfioPciHotResetInfoTests.
// Not ported: RS-07's cdev parts (DEV_ID flags, devids, the zero-length array as a
// cdev-opened device's form) — there is no device cdev or iommufd here; RS-10 (a selftest
// driver's init/remove cycles) — there is no in-kernel DMA-engine test driver to cycle.

using System.Buffers.Binary;
using NUnit.Framework;
using Vfio.Core.Client;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Pci;
using Vfio.Platform;
using Vfio.Platform.Devices;
using Vfio.Platform.Fs;
using Vfio.Platform.Mm;
using Vfio.Platform.Pci;
using Vfio.Sim;

namespace Vfio.Tests.Pci;

[TestFixture]
public sealed class VfioPciHotResetTests
{
    private const uint RegValue = 0x5a5a1234;
    private static readonly KernelProfile[] s_profiles = [KernelProfile.Linux6_12, KernelProfile.Linux6_1];
    private static readonly ulong[] s_seeds = [1, 2, 3, 5, 8];

    // ---- Topology and GET_INFO.

    [TestCaseSource(nameof(s_profiles))]
    public void RS_02_TheDualPortNic_IsTwoGroupsOnOneBus_WithoutAFunctionReset(KernelProfile profile)
    {
        Run(profile, SchedulerMode.Real, 1, t =>
        {
            t.OpenBoth();
            Assert.That(t.Rig.GroupId(t.F0), Is.Not.EqualTo(t.Rig.GroupId(t.F1)), "ACS on the functions: a group each");
            Assert.That(t.Rig.Dev(t.F0).OnBus, Is.SameAs(t.Rig.Dev(t.F1).OnBus), "one bus");
            Assert.That(t.V0.DevSet, Is.SameAs(t.V1.DevSet), "one device set: the bus");
            // Port 0 probed "bus" before port 1 was on the bus (as the kernel's scan does), but
            // the reset itself finds a sibling and gives up: neither port resets alone.
            Assert.That(t.Rig.Dev(t.F0).ResetMethods, Is.EqualTo(new[] { PciResetMethod.Bus }));
            Assert.That(t.Rig.Dev(t.F1).ResetMethods, Is.Empty, "no FLR, no PM reset, and not alone on the bus");
            Assert.That((t.V0.ResetWorks, t.V1.ResetWorks), Is.EqualTo((false, false)));

            VfioDeviceInfo info = t.S0.Device.GetInfo().Info;
            Assert.That(info.Flags & VfioDeviceFlags.Reset, Is.EqualTo((VfioDeviceFlags)0), "GET_INFO shows no RESET");
            Assert.That(t.Rig.P.Ioctl(t.S0.Device.Fd, VfioIoctl.DeviceReset), Is.EqualTo(Errno.EINVAL.Negative()), "RS-02: VFIO_DEVICE_RESET without reset support");

            IReadOnlyList<VfioPciDependentDevice> deps = t.S0.Device.GetPciHotResetInfo();
            Assert.That(deps.Select(d => ((int)d.GroupIdOrDevid, d.Bus, d.Devfn)), Is.EqualTo(new[]
            {
                (t.Rig.GroupId(t.F0), (byte)t.Rig.Dev(t.F0).BusNumber, (byte)0),
                (t.Rig.GroupId(t.F1), (byte)t.Rig.Dev(t.F1).BusNumber, (byte)1),
            }));
        });
    }

    [Test]
    public void RS_01_AFunctionWhoseGetInfoShowsReset_IsResetByVfioDeviceReset()
    {
        VfioPciRig.Run(SchedulerMode.Real, rig =>
        {
            using VfioSession s = VfioPciMmapTests.OpenSession(rig, VfioPciMmapTests.Peer);
            Assert.That(s.Device.GetInfo().Info.Flags & VfioDeviceFlags.Reset, Is.EqualTo(VfioDeviceFlags.Reset));
            long flr = rig.Dev(VfioPciMmapTests.Peer).ResetCount(PciResetKind.Flr);
            s.Device.WriteRegion32(0, 0, RegValue);
            Assert.That(rig.P.Ioctl(s.Device.Fd, VfioIoctl.DeviceReset), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Dev(VfioPciMmapTests.Peer).ResetCount(PciResetKind.Flr), Is.EqualTo(flr + 1), "the first method, FLR");
            Assert.That(s.Device.ReadRegion32(0, 0), Is.Zero, "the register went back to its reset value");
        });
    }

    // ---- Argument checks, in each profile's order.

    [TestCaseSource(nameof(s_profiles))]
    public void BI_05_ArgszOneBelowMinsz_AndFlags_AreEinval_BeforeAnythingElse(KernelProfile profile)
    {
        Run(profile, SchedulerMode.Real, 1, t =>
        {
            t.OpenBoth();
            t.Arm();
            Assert.That(t.HotReset(argsz: 11, flags: 0, t.G0, t.G1), Is.EqualTo(Errno.EINVAL.Negative()), "argsz 11");
            Assert.That(t.HotReset(argsz: 20, flags: 1, t.G0, t.G1), Is.EqualTo(Errno.EINVAL.Negative()), "flags 1");
            Assert.That(t.HotReset(argsz: 20, flags: 0x80000000, t.G0, t.G1), Is.EqualTo(Errno.EINVAL.Negative()), "a high flag");
            byte[] info = new byte[64];
            BinaryPrimitives.WriteUInt32LittleEndian(info, 11);
            Assert.That(t.Rig.P.Ioctl(t.S0.Device.Fd, VfioIoctl.DeviceGetPciHotResetInfo, info), Is.EqualTo(Errno.EINVAL.Negative()), "HOT_RESET_INFO argsz 11");
            t.AssertNothingHappened();
        });
    }

    [TestCaseSource(nameof(s_profiles))]
    public void RS_07_CountZeroFromAGroupOpenedDevice_IsEinval_AndOn612BeforeTheResetIsProbed(KernelProfile profile)
    {
        Run(profile, SchedulerMode.Real, 1, t =>
        {
            t.OpenBoth();
            t.Arm();
            Assert.That(t.HotReset(argsz: 12, flags: 0), Is.EqualTo(Errno.EINVAL.Negative()), "the zero-length array is the cdev form");
            t.AssertNothingHappened();
        });

        // A function no reset can reach tells the orders apart: 6.12 refuses count 0 first, 6.1
        // probes first. The real kernels agree (a root-bus edu in the oracle guest: 6.1.192
        // answers ENODEV, 6.12.118 EINVAL; a bad fd is ENODEV on both, the probe comes first).
        VfioSim sim = VfioPciRig.Builder(SchedulerMode.Real).UseProfile(profile).AddVfioPci().Build();
        var rig = new VfioPciRig(sim);
        Runs.AssertPassed(sim.Run(() =>
        {
            const string hostBridge = "0000:00:00.0";
            using VfioSession s = VfioPciMmapTests.OpenSession(rig, hostBridge);
            byte[] arg = Header(12, 0, 0);
            long ret = rig.P.Ioctl(s.Device.Fd, VfioIoctl.DevicePciHotReset, arg);
            bool early = profile.Has(VfioPciFeatures.HotResetZeroLengthFdArray);
            Assert.That(early, Is.EqualTo(profile == KernelProfile.Linux6_12));
            Assert.That(ret, Is.EqualTo(early ? Errno.EINVAL.Negative() : Errno.ENODEV.Negative()), ErrorReason.Current);
            Assert.That(rig.P.Ioctl(s.Device.Fd, VfioIoctl.DevicePciHotReset, Header(16, 0, 1, s.Group.Fd)), Is.EqualTo(Errno.ENODEV.Negative()), "a root-bus function: no slot, no bus reset");
            Assert.That(rig.P.Ioctl(s.Device.Fd, VfioIoctl.DevicePciHotReset, Header(16, 0, 1, 999)), Is.EqualTo(Errno.ENODEV.Negative()), "the probe comes before the fds");
            Assert.That(rig.P.Ioctl(s.Device.Fd, VfioIoctl.DevicePciHotReset, Header(16, 1, 1, s.Group.Fd)), Is.EqualTo(Errno.EINVAL.Negative()), "flags before the probe");
        }));
    }

    [TestCaseSource(nameof(s_profiles))]
    public void ACountAboveTheAffectedFunctions_IsEinval_BeforeTheFdsAreRead(KernelProfile profile)
    {
        Run(profile, SchedulerMode.Real, 1, t =>
        {
            t.OpenBoth();
            t.Arm();
            Assert.That(t.HotReset(argsz: 24, flags: 0, 999, 998, 997), Is.EqualTo(Errno.EINVAL.Negative()), "3 fds for 2 functions: EINVAL, not EBADF");
            Assert.That(ErrorReason.Current, Does.Contain("between 1 and the 2 functions"));
            t.AssertNothingHappened();
        });
    }

    [TestCaseSource(nameof(s_profiles))]
    public void FdsTheKernelCannotRead_AreEfault(KernelProfile profile)
    {
        Run(profile, SchedulerMode.Real, 1, t =>
        {
            t.OpenBoth();
            t.Arm();
            long page = t.Rig.P.Mmap(0, 8192, Prot.PROT_READ | Prot.PROT_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS);
            Assert.That(page, Is.GreaterThan(0));
            Assert.That(t.Rig.P.Munmap((ulong)page + 4096, 4096), Is.Zero);
            ulong arg = (ulong)page + 4096 - 12;
            Assert.That(t.Rig.P.Mm.WriteUser(arg, Header(20, 0, 2)), Is.Zero);
            Assert.That(t.Rig.P.Ioctl(t.S0.Device.Fd, VfioIoctl.DevicePciHotReset, arg), Is.EqualTo(Errno.EFAULT.Negative()), "the header fits, the fds are past the mapping");
            t.AssertNothingHappened();
        });
    }

    [TestCaseSource(nameof(s_profiles))]
    public void ABadFd_IsEbadf_AndTheFilesTakenBeforeItAreGivenBack(KernelProfile profile)
    {
        Run(profile, SchedulerMode.Real, 1, t =>
        {
            t.OpenBoth();
            t.Arm();
            Assert.That(t.HotReset(argsz: 20, flags: 0, 999, t.G1), Is.EqualTo(Errno.EBADF.Negative()));
            Assert.That(t.HotReset(argsz: 20, flags: 0, t.G0, -1), Is.EqualTo(Errno.EBADF.Negative()), "the first group's file was taken, then given back");
            t.AssertNothingHappened();
        });
    }

    [TestCaseSource(nameof(s_profiles))]
    public void AnFdThatIsNotAVfioGroup_IsEinval_AndIsGivenBack(KernelProfile profile)
    {
        Run(profile, SchedulerMode.Real, 1, t =>
        {
            t.OpenBoth();
            int efd = t.Rig.P.Eventfd(0);
            t.Arm();
            int efdRefs = t.FileRefs(efd), containerRefs = t.FileRefs(t.S0.Container.Fd), deviceRefs = t.FileRefs(t.S1!.Device.Fd);
            foreach (int fd in new[] { efd, t.S0.Container.Fd, t.S1.Device.Fd })
            {
                Assert.That(t.HotReset(argsz: 20, flags: 0, t.G0, fd), Is.EqualTo(Errno.EINVAL.Negative()), $"fd {fd}");
                Assert.That(ErrorReason.Current, Does.Contain("is not a vfio group fd"));
            }

            Assert.That((t.FileRefs(efd), t.FileRefs(t.S0.Container.Fd), t.FileRefs(t.S1.Device.Fd)), Is.EqualTo((efdRefs, containerRefs, deviceRefs)));
            t.AssertNothingHappened();
        });
    }

    [TestCaseSource(nameof(s_profiles))]
    public void AMissingGroup_IsEinval_NoResetHappens_AndTheZappedMappingsFaultBack(KernelProfile profile)
    {
        Run(profile, SchedulerMode.Real, 1, t =>
        {
            t.OpenBoth();
            t.Arm();
            Assert.That(t.HotReset(argsz: 16, flags: 0, t.G0), Is.EqualTo(Errno.EINVAL.Negative()), "only the first group");
            Assert.That(ErrorReason.Current, Does.Contain(t.F1).And.Contain("not among the 1 group fds"));
            Assert.That(t.HotReset(argsz: 20, flags: 0, t.G1, t.G1), Is.EqualTo(Errno.EINVAL.Negative()), "the second group twice");
            Assert.That(t.HotReset(argsz: 20, flags: 0, t.G0, t.GroupFdOf(VfioPciRig.Edu)), Is.EqualTo(Errno.EINVAL.Negative()), "another group instead");
            t.AssertNothingHappened();
        });
    }

    [TestCaseSource(nameof(s_profiles))]
    public void ASiblingBoundToAHostDriver_IsEinval_EvenBeforeTheGroupsAreChecked(KernelProfile profile)
    {
        Run(profile, SchedulerMode.Real, 1, t =>
        {
            t.Rig.BindToVfio(t.F0);
            t.Rig.Sim.Bind(t.F1, "pci-stub");
            t.S0 = t.Rig.Sim.Open(t.Rig.P, t.F0);
            t.Arm(withF1: false);
            Assert.That(t.HotReset(argsz: 16, flags: 0, t.G0), Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That(ErrorReason.Current, Does.Contain($"{t.F1} is reset with the bus").And.Contain("pci-stub"));
            Assert.That(t.Rig.Dev(t.F1).ResetCount(PciResetKind.Bus), Is.Zero);
            t.AssertNothingHappened();
        });
    }

    // ---- Contention: memory_lock (EBUSY), device locks (EAGAIN).

    [Test]
    public void AHeldMemoryLock_IsEbusy_612ZapsOnlyTheDevicesBeforeIt_61ZapsEveryDeviceFirst(
        [ValueSource(nameof(s_profiles))] KernelProfile profile, [Values] SchedulerMode mode)
    {
        Run(profile, mode, 1, t =>
        {
            t.OpenBoth();
            t.Arm();
            Assert.That(t.MappedPages(1), Is.GreaterThan(0));
            using (t.HoldMemoryLock(t.V1))
            {
                Assert.That(t.HotReset(argsz: 20, flags: 0, t.G0, t.G1), Is.EqualTo(Errno.EBUSY.Negative()), ErrorReason.Current);
                Assert.That(ErrorReason.Current, Does.Contain("memory_lock of " + t.F1));
                bool oneLoop = profile.Has(VfioPciFeatures.ZapBarsByMappingRange);
                Assert.That(t.MappedPages(0), Is.Zero, "the device before the busy one was zapped");
                Assert.That(t.MappedPages(1) > 0, Is.EqualTo(oneLoop), "6.1 zapped the busy device too (first loop); 6.12 stops before its zap");
            }

            t.AssertNothingHappened();
        });
    }

    [TestCaseSource(nameof(s_profiles))]
    public void AHeldMemoryLockAndAMissingGroup_Are_EbusyOn612_ButEinvalOn61_WhichChecksEveryGroupFirst(KernelProfile profile)
    {
        Run(profile, SchedulerMode.Real, 1, t =>
        {
            t.OpenBoth();
            t.Arm();
            long ret;
            using (t.HoldMemoryLock(t.V0))
            {
                ret = t.HotReset(argsz: 16, flags: 0, t.G0);
            }

            Assert.That(ret, Is.EqualTo(profile.Has(VfioPciFeatures.ZapBarsByMappingRange) ? Errno.EBUSY.Negative() : Errno.EINVAL.Negative()), ErrorReason.Current);
            t.AssertNothingHappened();
        });
    }

    [Test]
    public void AHeldFunctionDeviceLock_IsEagain_FromTheBusReset([ValueSource(nameof(s_profiles))] KernelProfile profile, [Values] SchedulerMode mode)
    {
        Run(profile, mode, 1, t =>
        {
            t.OpenBoth();
            t.Arm();
            using (t.HoldDeviceLock(t.Rig.Dev(t.F1)))
            {
                Assert.That(t.HotReset(argsz: 20, flags: 0, t.G0, t.G1), Is.EqualTo(Errno.EAGAIN.Negative()), ErrorReason.Current);
            }

            t.AssertNothingHappened();
        });
    }

    [TestCaseSource(nameof(s_profiles))]
    public void AHeldRootPortLock_IsEagainOnlyWhereTheBusResetLocksTheBridge(KernelProfile profile)
    {
        Run(profile, SchedulerMode.Real, 1, t =>
        {
            t.OpenBoth();
            t.Arm();
            long ret;
            using (t.HoldDeviceLock(t.Port))
            {
                ret = t.HotReset(argsz: 20, flags: 0, t.G0, t.G1);
            }

            if (profile.Has(PlatformFeatures.BusResetLocksBridge))
            {
                Assert.That(ret, Is.EqualTo(Errno.EAGAIN.Negative()), ErrorReason.Current);
                t.AssertNothingHappened();
            }
            else
            {
                Assert.That(ret, Is.Zero, "v6.1 does not lock the bridge above the bus");
                t.AssertResetOnce();
            }
        });
    }

    // ---- Success and what it does to the other function.

    [Test]
    public void BothGroups_ResetBothFunctions_ZapTheOtherFunctionsMmaps_WhichFaultBack_AndInterruptsKeepWorking(
        [ValueSource(nameof(s_profiles))] KernelProfile profile, [Values] SchedulerMode mode)
    {
        Run(profile, mode, 1, t =>
        {
            t.OpenBoth();
            t.Arm();
            var nic0 = (GenericPciDevice)t.Rig.Dev(t.F0);
            var nic1 = (GenericPciDevice)t.Rig.Dev(t.F1);

            // MSI on port 0, MSI-X on port 1, each delivering before the reset.
            int msi = t.Rig.P.Eventfd(0, EventFdContext.EFD_NONBLOCK), msix = t.Rig.P.Eventfd(0, EventFdContext.EFD_NONBLOCK);
            t.S0.Device.SetIrqEventfd(VfioPciIndex.IrqMsi, msi);
            t.S1!.Device.SetIrqEventfd(VfioPciIndex.IrqMsix, msix);
            foreach (VfioSession s in new[] { t.S0, t.S1 })
            {
                s.Device.WriteConfig16(PciRegs.Command, (ushort)(s.Device.ReadConfig16(PciRegs.Command) | PciRegs.CommandMaster));
            }

            Assert.That((nic0.Fire(0), nic1.Fire(0)), Is.EqualTo((true, true)));
            Assert.That((t.Rig.EventFdCount(msi), t.Rig.EventFdCount(msix)), Is.EqualTo((1UL, 1UL)));
            Take(t, msi);
            Take(t, msix);

            Assert.That(t.HotReset(argsz: 20, flags: 0, t.G1, t.G0), Is.Zero, ErrorReason.Current);
            t.AssertResetOnce();

            // The open fds are fine, the interrupts still deliver, and nothing needs a reset.
            Assert.That(t.S1.Device.GetInfo().Info.NumRegions, Is.EqualTo(9u));
            Assert.That((nic0.Fire(0), nic1.Fire(0)), Is.EqualTo((true, true)), "MSI/MSI-X state came back with the saved config");
            Assert.That((t.Rig.EventFdCount(msi), t.Rig.EventFdCount(msix)), Is.EqualTo((1UL, 1UL)));
            Assert.That((t.V0.NeedsReset, t.V1.NeedsReset, t.V0.ResetWorks), Is.EqualTo((false, false, false)));
        });
    }

    [Test]
    public void TheDocsExample_ListsBothPorts_AndResetsThemWithBothGroupFds()
    {
        Run(KernelProfile.Linux6_12, SchedulerMode.Real, 1, t =>
        {
            // docs/vfio-pci.md, "Hot reset".
            t.Rig.BindToVfio("0000:08:00.0");
            t.Rig.BindToVfio("0000:08:00.1");
            using VfioSession port0 = t.Rig.Sim.Open(t.Rig.P, "0000:08:00.0");
            using VfioSession port1 = t.Rig.Sim.Open(t.Rig.P, "0000:08:00.1");
            IReadOnlyList<VfioPciDependentDevice> affected = port0.Device.GetPciHotResetInfo();
            port0.Device.PciHotReset([port0.Group.Fd, port1.Group.Fd]);

            Assert.That(affected.Select(a => (int)a.GroupIdOrDevid), Is.EqualTo(new[] { port0.GroupId, port1.GroupId }));
            Assert.That(t.Rig.Dev("0000:08:00.1").ResetCount(PciResetKind.Bus), Is.EqualTo(1));
            var e = Assert.Throws<VfioException>(() => port1.Device.PciHotReset([port1.Group.Fd]))!;
            Assert.That(e.Errno, Is.EqualTo(Errno.EINVAL), "port 0's group is missing");
        });
    }

    [TestCaseSource(nameof(s_profiles))]
    public void DevicesOfTheSetNeedNotBeOpen_ItsGroupFdIsEnough(KernelProfile profile)
    {
        Run(profile, SchedulerMode.Real, 1, t =>
        {
            t.Rig.BindToVfio(t.F0);
            t.Rig.BindToVfio(t.F1);
            t.S0 = t.Rig.Sim.Open(t.Rig.P, t.F0);
            int g1 = t.Rig.P.Open($"/dev/vfio/{t.Rig.GroupId(t.F1)}");
            Assert.That(g1, Is.GreaterThanOrEqualTo(0), ErrorReason.Current);
            t.G1 = g1;
            t.Arm(withF1: false);
            Assert.That(t.V1.OpenCountUnlocked, Is.Zero);
            Assert.That(t.HotReset(argsz: 20, flags: 0, t.G0, g1), Is.Zero, ErrorReason.Current);
            Assert.That(t.Rig.Dev(t.F1).ResetCount(PciResetKind.Bus), Is.EqualTo(1));
            t.AssertResetOnce();
        });
    }

    [TestCaseSource(nameof(s_profiles))]
    public void AMappingWithDecodeOff_IsSigbusBeforeAndAfter_AndFaultsInOnceDecodeIsBack(KernelProfile profile)
    {
        Run(profile, SchedulerMode.Real, 1, t =>
        {
            t.OpenBoth();
            t.Arm();
            ushort cmd = t.S1!.Device.ReadConfig16(PciRegs.Command);
            t.S1.Device.WriteConfig16(PciRegs.Command, (ushort)(cmd & ~PciRegs.CommandMemory));
            Assert.That(t.Maps[1].TryRead(0, new byte[4]), Is.EqualTo(Signals.SIGBUS));
            Assert.That(t.HotReset(argsz: 20, flags: 0, t.G0, t.G1), Is.Zero, ErrorReason.Current);
            Assert.That(t.Maps[1].TryRead(0, new byte[4]), Is.EqualTo(Signals.SIGBUS), "the restored COMMAND has decode off again");
            Assert.That(t.Maps[0].Read32(0), Is.Zero, "port 0 decodes and was reset");
            t.S1.Device.WriteConfig16(PciRegs.Command, cmd);
            Assert.That(t.Maps[1].Read32(0), Is.Zero, "decode on: the access faults in and reads the reset value");
        });
    }

    [TestCaseSource(nameof(s_profiles))]
    public void AHotReset_LeavesNeedsResetAlone_TheLastCloseOfTheSetResetsTheBusAndClearsIt(KernelProfile profile)
    {
        Run(profile, SchedulerMode.Real, 1, t =>
        {
            t.OpenBoth();
            t.S1!.Dispose();
            Assert.That(t.V1.NeedsReset, Is.True, "no function reset at close, and port 0 is still open: no bus reset yet");
            Assert.That(t.Rig.Dev(t.F1).ResetCount(PciResetKind.Bus), Is.Zero);

            int g1 = t.Rig.P.Open($"/dev/vfio/{t.Rig.GroupId(t.F1)}");
            Assert.That(t.HotReset(argsz: 20, flags: 0, t.G0, g1), Is.Zero, ErrorReason.Current);
            Assert.That(t.Rig.Dev(t.F1).ResetCount(PciResetKind.Bus), Is.EqualTo(1));
            Assert.That(t.V1.NeedsReset, Is.True, "only the device set's reset at the last close clears needs_reset");
            Assert.That(t.Rig.P.Close(g1), Is.Zero);

            t.S0.Dispose();
            Assert.That((t.Rig.Dev(t.F0).ResetCount(PciResetKind.Bus), t.Rig.Dev(t.F1).ResetCount(PciResetKind.Bus)), Is.EqualTo((2L, 2L)), "the last close of the set reset the bus");
            Assert.That((t.V0.NeedsReset, t.V1.NeedsReset), Is.EqualTo((false, false)));
        });
    }

    // ---- Races.

    [Test]
    public void AHotResetRacingBarAccessesOfTheOtherFunction_NeverReachesItWithDecodeOff(
        [ValueSource(nameof(s_profiles))] KernelProfile profile, [Values] SchedulerMode mode, [ValueSource(nameof(s_seeds))] ulong seed)
    {
        Run(profile, mode, seed, t =>
        {
            t.OpenBoth();
            t.Arm();
            long ur = t.Rig.M.Memory.UnsupportedRequests;
            bool stop = false;
            int faults = 0, reads = 0;
            KTask accessor = t.Rig.P.SpawnThread("accessor", () =>
            {
                byte[] b = new byte[4];
                while (!Volatile.Read(ref stop))
                {
                    Assert.That(t.Maps[1].TryRead(0, b), Is.Zero, "a mapped access never faults with SIGBUS: decode is on before and after");
                    faults++;
                    Assert.That(t.Rig.P.Pread(t.S1!.Device.Fd, b, VfioPciIndex.IndexToOffset(0)), Is.EqualTo(4));
                    reads++;
                    KTask.Schedule();
                }
            });

            int done = 0;
            for (int i = 0; i < 4; i++)
            {
                long ret = t.HotReset(argsz: 20, flags: 0, t.G0, t.G1);
                Assert.That(ret, Is.Zero.Or.EqualTo(Errno.EBUSY.Negative()), ErrorReason.Current);
                done += ret == 0 ? 1 : 0;
                KTask.Schedule();
            }

            Volatile.Write(ref stop, true);
            accessor.Join();
            Assert.That(t.Rig.M.Memory.UnsupportedRequests, Is.EqualTo(ur), "no access reached a function while its decode was off");
            Assert.That(t.Rig.Dev(t.F1).ResetCount(PciResetKind.Bus), Is.EqualTo(done));
            Assert.That(t.V1.MemoryLock.DownWriteTrylock(), Is.True, "memory_lock is free");
            t.V1.MemoryLock.UpWrite();
        });
    }

    [Test]
    public void AHotResetRacingTheCloseOfTheOtherFunction_EndsWithBothDone_AndEveryReferenceBack(
        [ValueSource(nameof(s_profiles))] KernelProfile profile, [Values] SchedulerMode mode, [ValueSource(nameof(s_seeds))] ulong seed)
    {
        Run(profile, mode, seed, t =>
        {
            t.OpenBoth();
            t.Arm();
            t.Maps[1].Dispose();
            int d1 = t.S1!.Device.Fd;
            int closed = -1;
            KTask closer = t.Rig.P.SpawnThread("closer", () => closed = t.Rig.P.Close(d1));
            long ret = t.HotReset(argsz: 20, flags: 0, t.G0, t.G1);
            closer.Join();
            Assert.That(ret, Is.Zero, ErrorReason.Current);
            Assert.That(closed, Is.Zero);
            Assert.That(t.V1.OpenCountUnlocked, Is.Zero);
            Assert.That(t.FileRefs(t.G0), Is.EqualTo(t.GroupFileRefs[0]));
            Assert.That(t.FileRefs(t.G1), Is.EqualTo(t.GroupFileRefs[1] - 1), "only the reference the device's open took on its group file went, with the close");
            Assert.That(t.Rig.Vdev(t.F1).Group!.ReferenceCount, Is.EqualTo(t.GroupRefs[1]));
        });
    }

    // ---- The rig.

    private static void Run(KernelProfile profile, SchedulerMode mode, ulong seed, Action<Dual> body)
    {
        VfioSim sim = VfioPciRig.Builder(mode, seed).UseProfile(profile).AddVfioPci().Build();
        var rig = new VfioPciRig(sim);
        Runs.AssertPassed(sim.Run(() => body(new Dual(rig))));
    }

    private static byte[] Header(uint argsz, uint flags, uint count, params int[] fds)
    {
        byte[] b = new byte[Math.Max(12 + (4 * fds.Length), 12)];
        BinaryPrimitives.WriteUInt32LittleEndian(b, argsz);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(4), flags);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(8), count);
        for (int i = 0; i < fds.Length; i++)
        {
            BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(12 + (4 * i)), fds[i]);
        }

        return b;
    }

    private static void Take(Dual t, int efd) => t.Rig.P.Read(efd, new byte[8]);

    /// <summary>The dual-port NIC behind root port 00:07.0: found by its ids, opened, and watched.</summary>
    private sealed class Dual
    {
        public Dual(VfioPciRig rig)
        {
            Rig = rig;
            PciDevice[] ports = [.. rig.M.Pci.Devices.OfType<PciDevice>()
                .Where(d => d.Identity is { Vendor: 0x8086, Device: 0x10fb })
                .OrderBy(d => d.Function)];
            Assert.That(ports, Has.Length.EqualTo(2), "the default machine's dual-port NIC");
            F0 = ports[0].Name;
            F1 = ports[1].Name;
            Port = ports[0].OnBus!.Self!;
        }

        public VfioPciRig Rig { get; }

        public string F0 { get; }

        public string F1 { get; }

        /// <summary>The root port above the NIC's bus.</summary>
        public PciDevice Port { get; }

        public VfioSession S0 { get; set; } = null!;

        public VfioSession? S1 { get; set; }

        public int G0 => S0.Group.Fd;

        public int G1
        {
            get => S1?.Group.Fd ?? _g1;
            set => _g1 = value;
        }

        public VfioPciCoreDevice V0 => Rig.Vdev(F0);

        public VfioPciCoreDevice V1 => Rig.Vdev(F1);

        /// <summary>BAR0 of each port mapped (4 pages), a page faulted in.</summary>
        public VfioRegionMapping[] Maps { get; } = new VfioRegionMapping[2];

        public int[] GroupFileRefs { get; } = new int[2];

        public int[] GroupRefs { get; } = new int[2];

        private int _g1;
        private readonly long[] _busResets = new long[2];
        private int _otherGroupFd = -1;

        /// <summary>Binds both ports to vfio-pci (port 0 first, so it leads the device set) and opens each.</summary>
        public void OpenBoth()
        {
            Rig.BindToVfio(F0);
            Rig.BindToVfio(F1);
            S0 = Rig.Sim.Open(Rig.P, F0);
            S1 = Rig.Sim.Open(Rig.P, F1);
        }

        /// <summary>Writes a register a reset clears, maps BAR0, and notes the references a call must give back.</summary>
        public void Arm(bool withF1 = true)
        {
            S0.Device.WriteRegion32(0, 0, RegValue);
            Maps[0] = S0.Device.MmapRegion(0, 0, 4 * 4096);
            Assert.That(Maps[0].Read32(0), Is.EqualTo(RegValue));
            if (withF1)
            {
                S1!.Device.WriteRegion32(0, 0, RegValue);
                Maps[1] = S1.Device.MmapRegion(0, 0, 4 * 4096);
                Assert.That(Maps[1].Read32(0), Is.EqualTo(RegValue));
            }

            _busResets[0] = Rig.Dev(F0).ResetCount(PciResetKind.Bus);
            _busResets[1] = Rig.Dev(F1).ResetCount(PciResetKind.Bus);
            GroupFileRefs[0] = FileRefs(G0);
            GroupRefs[0] = V0.Group!.ReferenceCount;
            if (Rig.Dev(F1).DriverData is VfioPciCoreDevice v1)
            {
                GroupFileRefs[1] = FileRefs(G1);
                GroupRefs[1] = v1.Group!.ReferenceCount;
            }
        }

        /// <summary>VFIO_DEVICE_PCI_HOT_RESET on port 0's device fd with <paramref name="fds"/> after the header.</summary>
        public long HotReset(uint argsz, uint flags, params int[] fds)
            => Rig.P.Ioctl(S0.Device.Fd, VfioIoctl.DevicePciHotReset, Header(argsz, flags, (uint)fds.Length, fds));

        public int GroupFdOf(string bdf)
        {
            if (_otherGroupFd < 0)
            {
                Rig.BindToVfio(bdf);
                _otherGroupFd = Rig.P.Open($"/dev/vfio/{Rig.GroupId(bdf)}");
                Assert.That(_otherGroupFd, Is.GreaterThanOrEqualTo(0), ErrorReason.Current);
            }

            return _otherGroupFd;
        }

        /// <summary>f_count of the file behind <paramref name="fd"/>, without the reference this peek takes.</summary>
        public int FileRefs(int fd)
        {
            SimFile f = Rig.P.Files.Get(fd)!;
            int n = f.ReferenceCount;
            f.Put();
            return n - 1;
        }

        public int MappedPages(int port) => Rig.P.Mm.FindVma(Maps[port].Address)!.MappedPages;

        /// <summary>A rejected call: no bus reset, registers kept, references and memory_locks free, mappings fault back.</summary>
        public void AssertNothingHappened()
        {
            Assert.That(Rig.Dev(F0).ResetCount(PciResetKind.Bus), Is.EqualTo(_busResets[0]), "no bus reset");
            Assert.That(Rig.Dev(F1).ResetCount(PciResetKind.Bus), Is.EqualTo(_busResets[1]), "no bus reset");
            Assert.That(FileRefs(G0), Is.EqualTo(GroupFileRefs[0]), "the group file got its reference back");
            Assert.That(V0.Group!.ReferenceCount, Is.EqualTo(GroupRefs[0]));
            Assert.That(V0.MemoryLock.DownWriteTrylock(), Is.True, "memory_lock is free");
            V0.MemoryLock.UpWrite();
            Assert.That(Maps[0].Read32(0), Is.EqualTo(RegValue), "the mapping works (faulting back in if it was zapped)");
            if (Rig.Dev(F1).DriverData is VfioPciCoreDevice v1)
            {
                Assert.That(FileRefs(G1), Is.EqualTo(GroupFileRefs[1]), "the group file got its reference back");
                Assert.That(v1.Group!.ReferenceCount, Is.EqualTo(GroupRefs[1]));
                Assert.That(v1.MemoryLock.DownWriteTrylock(), Is.True, "memory_lock is free");
                v1.MemoryLock.UpWrite();
                if (Maps[1] is { } m)
                {
                    Assert.That(m.Read32(0), Is.EqualTo(RegValue));
                }
            }

            Assert.That(V0.VmaLockIsFree && (Rig.Dev(F1).DriverData is not VfioPciCoreDevice w || w.VmaLockIsFree), Is.True, "vma_lock is free (6.1)");
        }

        /// <summary>One bus reset of both ports: the registers read their reset value, through the fd and through the (re-faulted) mapping.</summary>
        public void AssertResetOnce()
        {
            Assert.That(Rig.Dev(F0).ResetCount(PciResetKind.Bus), Is.EqualTo(_busResets[0] + 1));
            Assert.That(Rig.Dev(F1).ResetCount(PciResetKind.Bus), Is.EqualTo(_busResets[1] + 1));
            Assert.That(S0.Device.ReadRegion32(0, 0), Is.Zero, "port 0 was reset");
            Assert.That(MappedPages(0), Is.Zero, "port 0's mapping was zapped");
            Assert.That(Maps[0].Read32(0), Is.Zero, "and faults back in");
            if (Maps[1] is { } m)
            {
                Assert.That(MappedPages(1), Is.Zero, "port 1's mapping was zapped");
                Assert.That(m.Read32(0), Is.Zero, "port 1 was reset, and its mapping faults back in");
            }

            Assert.That(FileRefs(G0), Is.EqualTo(GroupFileRefs[0]));
            Assert.That(FileRefs(G1), Is.EqualTo(GroupFileRefs[1]));
            Assert.That(V0.MemoryLock.DownWriteTrylock(), Is.True, "memory_lock is free");
            V0.MemoryLock.UpWrite();
            Assert.That(V1.MemoryLock.DownWriteTrylock(), Is.True, "memory_lock is free");
            V1.MemoryLock.UpWrite();
        }

        /// <summary>Holds <paramref name="v"/>'s memory_lock for read from another task (a BAR access in flight) until disposed.</summary>
        public IDisposable HoldMemoryLock(VfioPciCoreDevice v) => new Holder(Rig, "bar-access", () => v.MemoryLock.DownRead(), v.MemoryLock.UpRead);

        /// <summary>Holds <paramref name="dev"/>'s device lock from another task (an unbind in progress) until disposed.</summary>
        public IDisposable HoldDeviceLock(PciDevice dev) => new Holder(Rig, "unbind", () => dev.Lock(), dev.Unlock);

        private sealed class Holder : IDisposable
        {
            private readonly KTask _task;
            private bool _held;
            private bool _release;

            public Holder(VfioPciRig rig, string name, Action take, Action give)
            {
                _task = rig.Sim.Kernel.Spawn(name, () =>
                {
                    take();
                    Volatile.Write(ref _held, true);
                    Runs.SpinUntil(() => Volatile.Read(ref _release));
                    give();
                });
                Runs.SpinUntil(() => Volatile.Read(ref _held));
            }

            public void Dispose()
            {
                Volatile.Write(ref _release, true);
                _task.Join();
            }
        }
    }
}
