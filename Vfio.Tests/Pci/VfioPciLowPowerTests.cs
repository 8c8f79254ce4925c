// vfio-pci runtime power management on both profiles, as the real 6.1 and 6.12 kernels
// behave (checked against both): an unused function sits in D3hot, open brings it to D0,
// disable_idle_d3 keeps it there; VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY / _WITH_WAKEUP /
// _EXIT with their flag rules, the SIGBUS on BAR faults while engaged, ioctls and
// read/write waking the device for their duration, the wake-up eventfd signalled once,
// bad input changing nothing, close while engaged, INTx masked while suspended, a failed
// runtime resume (EIO), and low-power entry racing BAR faults and ioctls.

using NUnit.Framework;
using Vfio.Core.Client;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Pci;
using Vfio.Platform.Base;
using Vfio.Platform.Devices;
using Vfio.Platform.Mm;
using Vfio.Platform.Pci;
using Vfio.Sim;

namespace Vfio.Tests.Pci;

[TestFixture]
public sealed class VfioPciLowPowerTests
{
    // The NIC has a PM capability (D3hot) and no No_Soft_Reset; edu has no PM capability.
    private const string Nic = VfioPciRig.Nic;
    private const string Edu = VfioPciRig.Edu;

    private static readonly KernelProfile[] s_profiles = VfioPciMmapTests.Profiles;
    private static readonly ulong[] s_seeds = [1, 2, 3, 5, 8, 13];

    private static void Run(KernelProfile profile, Action<VfioPciRig> body, VfioPciOptions? options = null, SchedulerMode mode = SchedulerMode.Real, ulong seed = 1)
    {
        var rig = new VfioPciRig(VfioPciRig.Builder(mode, seed).UseProfile(profile).AddVfioPci(options).Build());
        Runs.AssertPassed(rig.Sim.Run(() => body(rig)));
    }

    private static string Attr(string bdf, string name) => $"/sys/bus/pci/devices/{bdf}/{name}";

    /// <summary>What user space sees of the function's power (sysfs), and what the PM core counts.</summary>
    private static void AssertPower(VfioPciRig rig, string bdf, string powerState, string runtimeStatus, int usage, string why)
    {
        Assert.That(rig.Sim.SysfsRead(Attr(bdf, "power_state")), Is.EqualTo(powerState), $"{why}: power_state");
        Assert.That(rig.Sim.SysfsRead(Attr(bdf, "power/runtime_status")), Is.EqualTo(runtimeStatus), $"{why}: power/runtime_status");
        Assert.That(rig.Dev(bdf).Power.UsageCount, Is.EqualTo(usage), $"{why}: usage count");
        Assert.That(rig.Sim.SysfsRead(Attr(bdf, "power/runtime_usage")), Is.EqualTo($"{usage}"), $"{why}: power/runtime_usage");
    }

    private static long Feature(VfioPciRig rig, int fd, uint flags, ReadOnlySpan<byte> data = default, uint? argsz = null)
    {
        byte[] b = new byte[8 + data.Length];
        BitConverter.TryWriteBytes(b.AsSpan(0), argsz ?? (uint)b.Length);
        BitConverter.TryWriteBytes(b.AsSpan(4), flags);
        data.CopyTo(b.AsSpan(8));
        return rig.P.Ioctl(fd, VfioIoctl.DeviceFeature, b);
    }

    private static byte[] Wakeup(int fd, uint reserved = 0)
    {
        byte[] b = new byte[8];
        BitConverter.TryWriteBytes(b.AsSpan(0), fd);
        BitConverter.TryWriteBytes(b.AsSpan(4), reserved);
        return b;
    }

    private static long GetInfo(VfioPciRig rig, int fd)
    {
        var info = new VfioDeviceInfo { Argsz = 24 };
        return rig.Ioctl(fd, VfioIoctl.DeviceGetInfo, ref info);
    }

    // ---- Idle D3.

    [Test]
    public void AnUnusedFunctionBoundToVfioPci_SitsInD3hot_IsInD0WhileOpen_AndGoesBackOnClose([ValueSource(nameof(s_profiles))] KernelProfile profile)
    {
        Run(profile, rig =>
        {
            AssertPower(rig, Nic, "D0", "active", 2, "bound to e1000e (forbidden + the probe's count)");
            Assert.That(rig.Sim.SysfsRead(Attr(Nic, "power/control")), Is.EqualTo("on"));

            rig.BindToVfio(Nic);
            AssertPower(rig, Nic, "D3hot", "suspended", 0, "bound to vfio-pci, unused");
            Assert.That(rig.Sim.SysfsRead(Attr(Nic, "power/control")), Is.EqualTo("auto"), "vfio-pci allowed runtime PM");
            Assert.That(rig.Dev(Nic).ReadConfig(PciRegs.VendorId, 2), Is.EqualTo(0x8086u), "config space still answers in D3hot");

            using (VfioSession s = rig.Sim.Open(rig.P, Nic))
            {
                AssertPower(rig, Nic, "D0", "active", 1, "open");
                Assert.That(s.Device.ReadRegion32(0, NicDevice.RegStatus), Is.Not.EqualTo(0xffffffffu), "BAR0 decodes");
            }

            AssertPower(rig, Nic, "D3hot", "suspended", 0, "closed");

            // Unbinding forbids runtime PM (resuming the function) and drops the probe's count.
            Assert.That(rig.Sim.Unbind(Nic), Is.EqualTo(VfioPciDriver.DriverName));
            AssertPower(rig, Nic, "D0", "active", 1, "unbound");
            Assert.That(rig.Sim.SysfsRead(Attr(Nic, "power/control")), Is.EqualTo("on"));
        });
    }

    [Test]
    public void DisableIdleD3_KeepsTheUnusedFunctionInD0_ButLowPowerEntryStillSuspendsIt([ValueSource(nameof(s_profiles))] KernelProfile profile)
    {
        Run(profile, rig =>
        {
            rig.BindToVfio(Nic);
            AssertPower(rig, Nic, "D0", "active", 1, "bound with disable_idle_d3 (the probe's count kept)");
            using (VfioSession s = rig.Sim.Open(rig.P, Nic))
            {
                AssertPower(rig, Nic, "D0", "active", 1, "open: no count of its own");
                s.Device.LowPowerEntry();
                AssertPower(rig, Nic, "D3hot", "suspended", 0, "low power engaged");
                s.Device.LowPowerExit();
                AssertPower(rig, Nic, "D0", "active", 1, "low power left");
            }

            AssertPower(rig, Nic, "D0", "active", 1, "closed");
        }, new VfioPciOptions { DisableIdleD3 = true });
    }

    [Test]
    public void Edu_WithoutAPmCapability_IsRuntimeSuspendedButStaysInD0([ValueSource(nameof(s_profiles))] KernelProfile profile)
    {
        Run(profile, rig =>
        {
            rig.BindToVfio(Edu);
            AssertPower(rig, Edu, "D0", "suspended", 0, "as the real edu shows");
            Assert.That(rig.Dev(Edu).Power.SuspendCount, Is.EqualTo(1));
        });
    }

    // ---- LOW_POWER_ENTRY / EXIT.

    [Test]
    public void LowPowerEntry_SuspendsTheOpenDevice_AnIoctlWakesItOnlyForItsDuration_AndEntryTwiceIsEinval([ValueSource(nameof(s_profiles))] KernelProfile profile)
    {
        Run(profile, rig =>
        {
            rig.BindToVfio(Nic);
            using VfioSession s = rig.Sim.Open(rig.P, Nic);
            int d = s.Device.Fd;
            VfioPciCoreDevice vdev = rig.Vdev(Nic);
            RuntimePm pm = rig.Dev(Nic).Power;

            Assert.That(Feature(rig, d, VfioFeature.LowPowerExit | VfioFeature.Set), Is.Zero, "EXIT without entry is fine");
            AssertPower(rig, Nic, "D0", "active", 1, "exit without entry");

            Assert.That(Feature(rig, d, VfioFeature.LowPowerEntry | VfioFeature.Set), Is.Zero, ErrorReason.Current);
            Assert.That(vdev.PmRuntimeEngaged, Is.True);
            AssertPower(rig, Nic, "D3hot", "suspended", 0, "entry");

            long resumes = pm.ResumeCount;
            Assert.That(GetInfo(rig, d), Is.Zero, "ioctls still work");
            Assert.That(pm.ResumeCount, Is.EqualTo(resumes + 1), "the ioctl woke the device");
            AssertPower(rig, Nic, "D3hot", "suspended", 0, "after the ioctl it sleeps again");
            Assert.That(vdev.PmRuntimeEngaged, Is.True, "without a wake-up eventfd low power stays engaged");

            Assert.That(Feature(rig, d, VfioFeature.LowPowerEntry | VfioFeature.Set), Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That(ErrorReason.Current, Does.Contain("low power already"));
            AssertPower(rig, Nic, "D3hot", "suspended", 0, "the second entry changed nothing");

            Assert.That(Feature(rig, d, VfioFeature.LowPowerExit | VfioFeature.Set), Is.Zero);
            Assert.That(vdev.PmRuntimeEngaged, Is.False);
            AssertPower(rig, Nic, "D0", "active", 1, "exit");
            Assert.That(Feature(rig, d, VfioFeature.LowPowerExit | VfioFeature.Set), Is.Zero, "a second exit is fine");
            AssertPower(rig, Nic, "D0", "active", 1, "second exit");
        });
    }

    [Test]
    public void WhileEngaged_BarMappingsAreZappedAndFaultSigbus_ButReadWriteReachTheDevice([ValueSource(nameof(s_profiles))] KernelProfile profile)
    {
        Run(profile, rig =>
        {
            rig.BindToVfio(Nic);
            using VfioSession s = rig.Sim.Open(rig.P, Nic);
            using VfioRegionMapping m = s.Device.MmapRegion(0, 0, 4096);
            uint status = m.Read32(NicDevice.RegStatus);
            Vma vma = rig.P.Mm.FindVma(m.Address)!;
            Assert.That(vma.MappedPages, Is.GreaterThan(0));

            s.Device.LowPowerEntry();
            Assert.That(vma.MappedPages, Is.Zero, "entry zapped the BAR mappings");
            VfioSignalException sig = Assert.Throws<VfioSignalException>(() => m.Read32(NicDevice.RegStatus))!;
            Assert.That(sig.Signal, Is.EqualTo(Signals.SIGBUS));

            Assert.That(s.Device.ReadRegion32(0, NicDevice.RegStatus), Is.EqualTo(status), "pread resumes the function for the access");
            Assert.That(s.Device.ReadConfig16(PciRegs.VendorId), Is.EqualTo(0x8086));
            AssertPower(rig, Nic, "D3hot", "suspended", 0, "and it sleeps again after");
            Assert.Throws<VfioSignalException>(() => m.Read32(NicDevice.RegStatus), "still SIGBUS: low power is still engaged");

            s.Device.LowPowerExit();
            Assert.That(m.Read32(NicDevice.RegStatus), Is.EqualTo(status), "the mapping faults in again");
        });
    }

    [Test]
    public void AUserD3hotThenEntryThenExit_EndsInD0_AsThePciCoreResumesToD0([ValueSource(nameof(s_profiles))] KernelProfile profile)
    {
        Run(profile, rig =>
        {
            rig.BindToVfio(Nic);
            using VfioSession s = rig.Sim.Open(rig.P, Nic);
            int pmctrl = rig.Dev(Nic).PmCap + PciRegs.PmCtrl;
            s.Device.WriteConfig16(pmctrl, 3);
            AssertPower(rig, Nic, "D3hot", "active", 1, "D3hot by PMCSR");
            s.Device.LowPowerEntry();
            AssertPower(rig, Nic, "D3hot", "suspended", 0, "entry");
            s.Device.LowPowerExit();
            AssertPower(rig, Nic, "D0", "active", 1, "the runtime suspend went through D0; the resume ends there");
            Assert.That(s.Device.ReadConfig16(pmctrl) & PciRegs.PmCtrlStateMask, Is.Zero);
        });
    }

    // ---- LOW_POWER_ENTRY_WITH_WAKEUP.

    [Test]
    public void WithWakeup_TheFirstWakeSignalsTheEventfdOnce_LeavesLowPower_AndDropsTheEventfd([ValueSource(nameof(s_profiles))] KernelProfile profile)
    {
        Run(profile, rig =>
        {
            rig.BindToVfio(Nic);
            using VfioSession s = rig.Sim.Open(rig.P, Nic);
            VfioPciCoreDevice vdev = rig.Vdev(Nic);
            int e = rig.P.Eventfd(0);
            int refs = rig.EventFdRefs(e);

            s.Device.LowPowerEntryWithWakeup(e);
            Assert.That(rig.EventFdRefs(e), Is.EqualTo(refs + 1), "vfio-pci holds the eventfd");
            AssertPower(rig, Nic, "D3hot", "suspended", 0, "entry with wake-up");
            Assert.That(rig.EventFdCount(e), Is.Zero);

            // A read of the device wakes it: signalled once, low power over, the eventfd dropped.
            _ = s.Device.ReadConfig32(0);
            Assert.That(rig.EventFdCount(e), Is.EqualTo(1UL));
            Assert.That(vdev.PmRuntimeEngaged, Is.False);
            Assert.That(vdev.PmWakeEventfd, Is.Null);
            Assert.That(rig.EventFdRefs(e), Is.EqualTo(refs));
            AssertPower(rig, Nic, "D0", "active", 1, "woken");
            Assert.That(GetInfo(rig, s.Device.Fd), Is.Zero);
            Assert.That(rig.EventFdCount(e), Is.EqualTo(1UL), "only the first wake signals");

            // An ioctl wakes it too — even LOW_POWER_ENTRY itself, which then engages anew
            // without the eventfd (the real kernels answer 0 and signal once).
            s.Device.LowPowerEntryWithWakeup(e);
            s.Device.LowPowerEntry();
            Assert.That(rig.EventFdCount(e), Is.EqualTo(2UL));
            Assert.That(vdev.PmRuntimeEngaged, Is.True);
            Assert.That(vdev.PmWakeEventfd, Is.Null);
            Assert.That(rig.EventFdRefs(e), Is.EqualTo(refs));

            // EXIT with a wake-up engaged: the wrapper's resume signals and leaves; EXIT finds nothing to do.
            s.Device.LowPowerExit();
            s.Device.LowPowerEntryWithWakeup(e);
            s.Device.LowPowerExit();
            Assert.That(rig.EventFdCount(e), Is.EqualTo(3UL));
            AssertPower(rig, Nic, "D0", "active", 1, "exit");
            Assert.That(rig.EventFdRefs(e), Is.EqualTo(refs));
        });
    }

    [Test]
    public void WithWakeup_BadInput_IsRejectedInTheKernelsOrder_AndChangesNothing([ValueSource(nameof(s_profiles))] KernelProfile profile)
    {
        Run(profile, rig =>
        {
            rig.BindToVfio(Nic);
            using VfioSession s = rig.Sim.Open(rig.P, Nic);
            int d = s.Device.Fd;
            VfioPciCoreDevice vdev = rig.Vdev(Nic);
            int e = rig.P.Eventfd(0);
            int refs = rig.EventFdRefs(e);
            const uint set = VfioFeature.LowPowerEntryWithWakeup | VfioFeature.Set;

            void Rejected(long ret, Errno errno, string what)
            {
                Assert.That(ret, Is.EqualTo(errno.Negative()), $"{what}: {ErrorReason.Current}");
                Assert.That(vdev.PmRuntimeEngaged, Is.False, what);
                Assert.That(rig.EventFdRefs(e), Is.EqualTo(refs), $"{what}: no eventfd reference kept");
                Assert.That(rig.EventFdCount(e), Is.Zero, what);
                AssertPower(rig, Nic, "D0", "active", 1, what);
            }

            Rejected(Feature(rig, d, set, Wakeup(e), argsz: 12), Errno.EINVAL, "argsz 12 (4 data bytes)");
            Rejected(Feature(rig, d, VfioFeature.LowPowerEntryWithWakeup | VfioFeature.Get, Wakeup(e)), Errno.EINVAL, "GET");
            Rejected(Feature(rig, d, set, Wakeup(-1)), Errno.EINVAL, "fd -1");
            Rejected(Feature(rig, d, set, Wakeup(-5)), Errno.EINVAL, "fd -5");
            Rejected(Feature(rig, d, set, Wakeup(999)), Errno.EBADF, "fd 999");
            Rejected(Feature(rig, d, set, Wakeup(d)), Errno.EINVAL, "the device fd, not an eventfd");

            // Already engaged (without a wake-up): EINVAL, and the reference the lookup took is dropped.
            s.Device.LowPowerEntry();
            Assert.That(Feature(rig, d, set, Wakeup(e)), Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That(rig.EventFdRefs(e), Is.EqualTo(refs));
            Assert.That(vdev.PmWakeEventfd, Is.Null);
            s.Device.LowPowerExit();

            // reserved is not checked.
            Assert.That(Feature(rig, d, set, Wakeup(e, reserved: 7)), Is.Zero, ErrorReason.Current);
            Assert.That(vdev.PmWakeEventfd, Is.Not.Null);
        });
    }

    [Test]
    public void TheLowPowerFeatures_SupportSetAndProbeOnly_AsVfioCheckFeatureSays([ValueSource(nameof(s_profiles))] KernelProfile profile)
    {
        Run(profile, rig =>
        {
            rig.BindToVfio(Nic);
            using VfioSession s = rig.Sim.Open(rig.P, Nic);
            int d = s.Device.Fd;
            const uint get = VfioFeature.Get, set = VfioFeature.Set, probe = VfioFeature.Probe;
            foreach (uint f in new[] { VfioFeature.LowPowerEntry, VfioFeature.LowPowerEntryWithWakeup, VfioFeature.LowPowerExit })
            {
                Assert.That(Feature(rig, d, f | probe), Is.Zero, $"{f}: PROBE");
                Assert.That(Feature(rig, d, f | probe | set), Is.Zero, $"{f}: PROBE|SET (no data needed to probe)");
                Assert.That(Feature(rig, d, f | probe | get), Is.EqualTo(Errno.EINVAL.Negative()), $"{f}: PROBE|GET");
                Assert.That(Feature(rig, d, f | probe | get | set), Is.EqualTo(Errno.EINVAL.Negative()), $"{f}: PROBE|GET|SET");
                Assert.That(Feature(rig, d, f | get), Is.EqualTo(Errno.EINVAL.Negative()), $"{f}: GET");
                Assert.That(Feature(rig, d, f), Is.EqualTo(Errno.EINVAL.Negative()), $"{f}: neither GET nor SET");
                Assert.That(Feature(rig, d, f | get | set), Is.EqualTo(Errno.EINVAL.Negative()), $"{f}: GET|SET without PROBE (the core)");
                Assert.That(rig.Vdev(Nic).PmRuntimeEngaged, Is.False, $"{f}: nothing engaged");
                AssertPower(rig, Nic, "D0", "active", 1, $"{f}: probing changes nothing");
            }

            Assert.That(s.Device.ProbeFeature(VfioFeature.LowPowerEntry), Is.True);
            Assert.That(Feature(rig, d, VfioFeature.MigDeviceState | probe | set), Is.EqualTo(Errno.ENOTTY.Negative()), "no migration");
            Assert.That(Feature(rig, d, VfioFeature.PciVfToken | probe | set), Is.EqualTo(Errno.ENOTTY.Negative()), "not a PF");
        });
    }

    // ---- Close while engaged.

    [Test]
    public void ClosingWhileEngaged_LeavesLowPower_ReleasesTheEventfdWithoutSignalling_AndTheNextOpenStartsClean([ValueSource(nameof(s_profiles))] KernelProfile profile)
    {
        Run(profile, rig =>
        {
            rig.BindToVfio(Nic);
            VfioSession s = rig.Sim.Open(rig.P, Nic);
            int e = rig.P.Eventfd(0);
            int refs = rig.EventFdRefs(e);
            s.Device.LowPowerEntryWithWakeup(e);
            Assert.That(rig.EventFdRefs(e), Is.EqualTo(refs + 1));

            s.Dispose();
            VfioPciCoreDevice vdev = rig.Vdev(Nic);
            Assert.That(vdev.PmRuntimeEngaged, Is.False);
            Assert.That(vdev.PmWakeEventfd, Is.Null);
            Assert.That(rig.EventFdRefs(e), Is.EqualTo(refs), "the eventfd reference is released");
            Assert.That(rig.EventFdCount(e), Is.Zero, "close does not signal it");
            AssertPower(rig, Nic, "D3hot", "suspended", 0, "closed and idle");

            using VfioSession again = rig.Sim.Open(rig.P, Nic);
            AssertPower(rig, Nic, "D0", "active", 1, "reopened");
            again.Device.LowPowerEntry();
            Assert.That(rig.EventFdCount(e), Is.Zero);
        });
    }

    [Test]
    public void UnbindingWhileEngagedWithWakeup_SignalsTheEventfd_AsThePciCoreResumesTheFunctionForRemove([ValueSource(nameof(s_profiles))] KernelProfile profile)
    {
        Run(profile, rig =>
        {
            rig.BindToVfio(Nic);
            VfioSession s = rig.Sim.Open(rig.P, Nic);
            int e = rig.P.Eventfd(0);
            s.Device.LowPowerEntryWithWakeup(e);

            // pci_device_remove() resumes the function before vfio-pci's remove, which then
            // waits for the user: the resume is the wake-up.
            string? unbound = null;
            KTask unbinder = rig.Sim.Kernel.Spawn("unbinder", () => unbound = rig.Sim.Unbind(Nic));
            Runs.SleepUntil(() => rig.EventFdCount(e) == 1);
            Assert.That(rig.EventFdCount(e), Is.EqualTo(1UL));
            Assert.That(rig.Vdev(Nic).PmRuntimeEngaged, Is.False);
            Assert.That(unbinder.HasExited, Is.False, "the unbind waits for the open device");

            s.Dispose();
            unbinder.Join();
            Assert.That(unbound, Is.EqualTo(VfioPciDriver.DriverName));
            AssertPower(rig, Nic, "D0", "active", 1, "unbound");
        });
    }

    // ---- INTx.

    [Test]
    public void TheRuntimeSuspendMasksIntx_AndTheResumeUnmasksIt([ValueSource(nameof(s_profiles))] KernelProfile profile)
    {
        Run(profile, rig =>
        {
            rig.BindToVfio(Edu);
            using VfioSession s = rig.Sim.Open(rig.P, Edu);
            VfioPciCoreDevice vdev = rig.Vdev(Edu);
            PciDevice pdev = rig.Dev(Edu);
            int trigger = rig.P.Eventfd(0);
            s.Device.SetIrqEventfd(VfioPciIndex.IrqIntx, trigger);
            Assert.That(vdev.IntxMasked, Is.False);

            s.Device.LowPowerEntry();
            Assert.That(vdev.IntxMasked, Is.True, "masked for the suspend");
            Assert.That(vdev.PmIntxMasked, Is.True);
            Assert.That(pdev.ReadConfig(PciRegs.Command, 2) & PciRegs.CommandIntxDisable, Is.Not.Zero, "DisINTx set in hardware");

            s.Device.LowPowerExit();
            Assert.That(vdev.IntxMasked, Is.False, "unmasked by the resume");
            Assert.That(pdev.ReadConfig(PciRegs.Command, 2) & PciRegs.CommandIntxDisable, Is.Zero);

            // INTx the user masked stays masked: the suspend did not mask it, so the resume leaves it.
            s.Device.MaskIrq(VfioPciIndex.IrqIntx);
            s.Device.LowPowerEntry();
            Assert.That(vdev.PmIntxMasked, Is.False);
            s.Device.LowPowerExit();
            Assert.That(vdev.IntxMasked, Is.True);
        });
    }

    [Test]
    public void AnInterruptRaisedWhileSuspended_IsHeldByDisIntx_AndSignalledWhenTheDeviceWakes([ValueSource(nameof(s_profiles))] KernelProfile profile)
    {
        Run(profile, rig =>
        {
            rig.BindToVfio(Edu);
            using VfioSession s = rig.Sim.Open(rig.P, Edu);
            VfioPciCoreDevice vdev = rig.Vdev(Edu);
            PciDevice edu = rig.Dev(Edu);
            int trigger = rig.P.Eventfd(0);
            s.Device.SetIrqEventfd(VfioPciIndex.IrqIntx, trigger);
            s.Device.LowPowerEntry();
            Assert.That(edu.Power.Status, Is.EqualTo(RpmStatus.Suspended));

            // The function raises INTx on its own while suspended (edu, without a PM
            // capability, still runs; a store to its raise register stands in for its logic).
            edu.BarAccess(0, EduDevice.RegIrqRaise, (ReadOnlySpan<byte>)BitConverter.GetBytes(EduDevice.IrqFactorial));
            Assert.That(edu.IntxAsserted, Is.True, "edu raised INTx");
            Assert.That(rig.EventFdCount(trigger), Is.Zero, "DisINTx kept it off the line while suspended");
            Assert.That(vdev.PmRuntimeEngaged, Is.True);

            // Waking unmasks: the function still asserts, so it stays masked and the trigger fires.
            s.Device.LowPowerExit();
            Assert.That(rig.EventFdCount(trigger), Is.EqualTo(1UL), "the interrupt was not lost");
            Assert.That(vdev.IntxMasked, Is.True, "masked until the user acknowledges and unmasks");
            s.Device.WriteRegion32(0, EduDevice.RegIrqAck, EduDevice.IrqFactorial);
            s.Device.UnmaskIrq(VfioPciIndex.IrqIntx);
            Assert.That(vdev.IntxMasked, Is.False);
            Assert.That(rig.EventFdCount(trigger), Is.EqualTo(1UL));
        });
    }

    // ---- Runtime resume failures.

    [Test]
    public void ARuntimeResumeThatFails_IsEioForIoctlsAndReadWrite_AndTheOpenFailsWithItsErrno([ValueSource(nameof(s_profiles))] KernelProfile profile)
    {
        Run(profile, rig =>
        {
            rig.BindToVfio(Nic);
            RuntimePm pm = rig.Dev(Nic).Power;
            using (VfioSession s = rig.Sim.Open(rig.P, Nic))
            {
                int d = s.Device.Fd;
                s.Device.LowPowerEntry();

                // Runtime PM disabled while suspended (as system sleep does): resumes are -EACCES.
                pm.Disable();
                Assert.That(GetInfo(rig, d), Is.EqualTo(Errno.EIO.Negative()));
                Assert.That(rig.Sim.Dmesg(), Does.Contain("vfio: runtime resume failed -13"));
                byte[] b = new byte[4];
                Assert.That(rig.P.Pread(d, b, VfioPciIndex.IndexToOffset(VfioPciIndex.Config)), Is.EqualTo(Errno.EIO.Negative()));
                Assert.That(rig.Sim.Dmesg(), Does.Contain("runtime resume failed -13"));
                Assert.That(pm.UsageCount, Is.Zero, "the failed gets dropped their counts");
                Assert.That(rig.Sim.SysfsRead(Attr(Nic, "power/runtime_status")), Is.EqualTo("unsupported"));
                pm.Enable();

                Assert.That(GetInfo(rig, d), Is.Zero);
                s.Device.LowPowerExit();
            }

            AssertPower(rig, Nic, "D3hot", "suspended", 0, "closed");
            pm.Disable();
            (int c, int g) = rig.OpenContainerAndGroup(Nic);
            Assert.That(rig.GetDeviceFd(g, Nic), Is.EqualTo(Errno.EACCES.Negative()), "vfio_pci_core_enable returns the resume's errno");
            Assert.That(pm.UsageCount, Is.Zero);
            Assert.That(rig.Vdev(Nic).OpenCountUnlocked, Is.Zero);
            pm.Enable();
            long fd = rig.GetDeviceFd(g, Nic);
            Assert.That(fd, Is.GreaterThanOrEqualTo(0), ErrorReason.Current);
            AssertPower(rig, Nic, "D0", "active", 1, "open after all");
            rig.CloseAll((c, g, (int)fd));
        });
    }

    // ---- The device set.

    [Test]
    public void TheDevSetPmRuntimeGet_ResumesAndCountsEverySuspendedFunction_AndThePutLetsThemSleep()
    {
        Run(KernelProfile.Linux6_12, rig =>
        {
            rig.BindToVfio(Nic);
            VfioPciCoreDevice vdev = rig.Vdev(Nic);
            RuntimePm pm = rig.Dev(Nic).Power;
            vdev.DevSet!.Lock.Lock();
            try
            {
                Assert.That(VfioPciCoreDevice.DevSetPmRuntimeGetLocked(vdev.DevSet), Is.Zero);
                Assert.That(pm.Status, Is.EqualTo(RpmStatus.Active));
                Assert.That(pm.UsageCount, Is.EqualTo(1));
                VfioPciCoreDevice.DevSetPmRuntimePutLocked(vdev.DevSet);
                Assert.That(pm.Status, Is.EqualTo(RpmStatus.Suspended));

                pm.Disable();
                Assert.That(VfioPciCoreDevice.DevSetPmRuntimeGetLocked(vdev.DevSet), Is.EqualTo(Errno.EACCES.Negative()));
                Assert.That(pm.UsageCount, Is.Zero, "nothing left counted");
                pm.Enable();
            }
            finally
            {
                vdev.DevSet.Lock.Unlock();
            }
        });
    }

    // ---- Races.

    [Test]
    public void LowPowerEntryRacingBarFaultsAndIoctls_NeitherDeadlocksNorLeavesAnInconsistentState(
        [Values] SchedulerMode mode, [ValueSource(nameof(s_seeds))] ulong seed)
    {
        Run(KernelProfile.Linux6_12, rig => RaceBody(rig), mode: mode, seed: seed);
    }

    [Test]
    public void OnLinux61_LowPowerEntryRacingBarFaultsAndIoctls_NeitherDeadlocksNorLeavesAnInconsistentState(
        [Values] SchedulerMode mode, [ValueSource(nameof(s_seeds))] ulong seed)
    {
        Run(KernelProfile.Linux6_1, rig => RaceBody(rig), mode: mode, seed: seed);
    }

    private static void RaceBody(VfioPciRig rig)
    {
        rig.BindToVfio(Nic);
        using VfioSession s = rig.Sim.Open(rig.P, Nic);
        using VfioRegionMapping m = s.Device.MmapRegion(0, 0, 4096);
        int d = s.Device.Fd;
        int e = rig.P.Eventfd(0);
        int refs = rig.EventFdRefs(e);
        const int Rounds = 6;
        int faults = 0, sigbus = 0;

        KTask toucher = rig.P.SpawnThread("toucher", () =>
        {
            byte[] b = new byte[4];
            for (int i = 0; i < Rounds; i++)
            {
                if (m.TryRead(NicDevice.RegStatus, b) == 0)
                {
                    faults++;
                }
                else
                {
                    sigbus++;
                }

                KTask.Schedule();
            }
        });

        KTask prober = rig.P.SpawnThread("prober", () =>
        {
            byte[] b = new byte[4];
            for (int i = 0; i < Rounds; i++)
            {
                Assert.That(GetInfo(rig, d), Is.Zero, ErrorReason.Current);
                Assert.That(rig.P.Pread(d, b, VfioPciIndex.IndexToOffset(VfioPciIndex.Config)), Is.EqualTo(4), ErrorReason.Current);
                KTask.Schedule();
            }
        });

        for (int i = 0; i < Rounds; i++)
        {
            long r = i % 2 == 0
                ? Feature(rig, d, VfioFeature.LowPowerEntry | VfioFeature.Set)
                : Feature(rig, d, VfioFeature.LowPowerEntryWithWakeup | VfioFeature.Set, Wakeup(e));
            Assert.That(r, Is.Zero.Or.EqualTo(Errno.EINVAL.Negative()), ErrorReason.Current);
            KTask.Schedule();
            Assert.That(Feature(rig, d, VfioFeature.LowPowerExit | VfioFeature.Set), Is.Zero);
        }

        toucher.Join();
        prober.Join();

        VfioPciCoreDevice vdev = rig.Vdev(Nic);
        Assert.That(vdev.PmRuntimeEngaged, Is.False);
        Assert.That(vdev.PmWakeEventfd, Is.Null);
        Assert.That(rig.EventFdRefs(e), Is.EqualTo(refs), "no eventfd reference leaked");
        AssertPower(rig, Nic, "D0", "active", 1, "after the race");
        Assert.That(rig.Dev(Nic).Power.SuspendCount - rig.Dev(Nic).Power.ResumeCount, Is.Zero, "every suspend was resumed");
        Assert.That(m.Read32(NicDevice.RegStatus), Is.Not.EqualTo(0xffffffffu), "the mapping works again");
        TestContext.Out.WriteLine($"{faults} good accesses, {sigbus} SIGBUS");
    }
}
