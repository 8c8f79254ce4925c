// The runtime PM core (Vfio.Platform/Base/RuntimePm.cs) on a small test bus whose driver
// counts its callbacks, and the PCI core's part (PciDevice.RuntimePm.cs) on the default
// machine: initial state, usage counting and the idle check, allow/forbid and power/control,
// callback failures (transient, runtime_error), disabled runtime PM, the underflow warning,
// and resumes racing suspends under both schedulers.

using NUnit.Framework;
using Vfio.Kernel;
using Vfio.Platform;
using Vfio.Platform.Base;
using Vfio.Platform.Pci;
using Vfio.Sim;

namespace Vfio.Tests.Platform;

public sealed class RuntimePmTests
{
    private static readonly ulong[] s_seeds = [1, 2, 3, 5, 8, 13, 21, 34];

    /// <summary>A bus without PM callbacks of its own, so the driver's run directly.</summary>
    private sealed class TestBus(SimMachine machine) : BusType(machine, "rpmtest")
    {
        public override int Match(SimDevice dev, DeviceDriver drv) => 1;
    }

    /// <summary>A driver whose runtime PM callbacks count, can fail, and can take their time.</summary>
    private sealed class TestDriver : DeviceDriver
    {
        // A suspend or resume callback is running; an idle callback is running.
        private int _inTransition;
        private int _inIdle;

        public TestDriver()
            : base("rpmdrv")
        {
            Pm = new DevPmOps
            {
                RuntimeSuspend = _ => Callback(ref Suspends, SuspendResult, ref _inTransition),
                RuntimeResume = _ => Callback(ref Resumes, ResumeResult, ref _inTransition),
                RuntimeIdle = _ => Callback(ref Idles, IdleResult, ref _inIdle),
            };
        }

        public int Suspends;
        public int Resumes;
        public int Idles;
        public int Overlaps;

        public int SuspendResult { get; set; }

        public int ResumeResult { get; set; }

        public int IdleResult { get; set; }

        public bool Slow { get; set; }

        public override int Probe(SimDevice dev) => 0;

        /// <summary>Counts the call; two suspend/resume callbacks (or two idle callbacks) at once are an overlap.</summary>
        private int Callback(ref int counter, int result, ref int running)
        {
            if (Interlocked.Exchange(ref running, 1) != 0)
            {
                Interlocked.Increment(ref Overlaps);
            }

            if (Slow)
            {
                KTask.Msleep(1);
            }

            Interlocked.Increment(ref counter);
            Volatile.Write(ref running, 0);
            return result;
        }
    }

    private sealed class Rig
    {
        public Rig(SimMachine machine)
        {
            Machine = machine;
            Bus = new TestBus(machine);
            Driver = new TestDriver();
            Dev = new SimDevice(machine, "rpm0");
        }

        public SimMachine Machine { get; }

        public TestBus Bus { get; }

        public TestDriver Driver { get; }

        public SimDevice Dev { get; }

        public RuntimePm Pm => Dev.Power;

        /// <summary>Added and bound; then, as a driver's probe would, marked active and enabled.</summary>
        public void AddBindAndEnable()
        {
            Assert.That(Bus.RegisterDriver(Driver), Is.Zero);
            Assert.That(Bus.AddDevice(Dev), Is.Zero);
            Assert.That(Dev.Driver, Is.SameAs(Driver));
            Assert.That(Pm.SetActive(), Is.Zero);
            Pm.Enable();
        }

        public string Sys(string attr) => Machine.Sysfs.Read($"/sys/bus/rpmtest/devices/rpm0/power/{attr}");
    }

    private static void Run(Action<Rig> body, SchedulerMode mode = SchedulerMode.Real, ulong seed = 1)
    {
        SimMachine m = Machines.Create(mode, ramGiB: 1, seed: seed);
        Runs.AssertPassed(m.Kernel.Run("main", () => body(new Rig(m))));
    }

    [Test]
    public void ANewDevice_HasRuntimePmDisabled_CountsAsSuspended_AndCannotBeResumed()
    {
        Run(r =>
        {
            Assert.That(r.Pm.IsEnabled, Is.False);
            Assert.That(r.Pm.Status, Is.EqualTo(RpmStatus.Suspended));
            Assert.That(r.Pm.IsAllowed, Is.True);
            Assert.That(r.Pm.Resume(), Is.EqualTo(Errno.EACCES.Negative()));
            Assert.That(r.Bus.AddDevice(r.Dev), Is.Zero);
            Assert.That(r.Sys("runtime_status"), Is.EqualTo("unsupported\n"));
            Assert.That(r.Sys("control"), Is.EqualTo("auto\n"));
            Assert.That(r.Sys("runtime_usage"), Is.EqualTo("0\n"));
        });
    }

    [Test]
    public void AnIdleDevice_SuspendsWhenItsLastUserLeaves_AndAGetResumesIt()
    {
        Run(r =>
        {
            r.AddBindAndEnable();
            Assert.That(r.Pm.Status, Is.EqualTo(RpmStatus.Active), "enable alone runs no idle check");

            r.Pm.GetNoresume();
            Assert.That(r.Pm.Put(), Is.Zero);
            Assert.That(r.Pm.Status, Is.EqualTo(RpmStatus.Suspended));
            Assert.That((r.Driver.Idles, r.Driver.Suspends), Is.EqualTo((1, 1)), "the idle callback, then the suspend callback");
            Assert.That(r.Sys("runtime_status"), Is.EqualTo("suspended\n"));

            Assert.That(r.Pm.GetSync(), Is.Zero, "resumed");
            Assert.That(r.Pm.GetSync(), Is.EqualTo(1), "already active");
            Assert.That((r.Pm.UsageCount, r.Driver.Resumes), Is.EqualTo((2, 1)));
            Assert.That(r.Pm.Put(), Is.Zero);
            Assert.That(r.Pm.Status, Is.EqualTo(RpmStatus.Active), "one user left");
            r.Pm.PutNoidle();
            Assert.That(r.Pm.Status, Is.EqualTo(RpmStatus.Active), "put_noidle runs no idle check");
            Assert.That(r.Pm.Idle(), Is.Zero);
            Assert.That(r.Pm.Status, Is.EqualTo(RpmStatus.Suspended));
            Assert.That(r.Pm.Suspend(), Is.EqualTo(1), "already suspended");
            Assert.That(r.Pm.ResumeCount, Is.EqualTo(1));
            Assert.That(r.Pm.SuspendCount, Is.EqualTo(2));
        });
    }

    [Test]
    public void Forbid_ResumesAndHoldsTheDevice_AndPowerControlSwitchesBetweenOnAndAuto()
    {
        Run(r =>
        {
            r.AddBindAndEnable();
            Assert.That(r.Pm.Idle(), Is.Zero);
            string control = "/sys/bus/rpmtest/devices/rpm0/power/control";
            Assert.That(r.Machine.Sysfs.Write(control, "on"), Is.EqualTo(3));
            Assert.That((r.Pm.Status, r.Pm.UsageCount, r.Pm.IsAllowed), Is.EqualTo((RpmStatus.Active, 1, false)));
            Assert.That(r.Sys("control"), Is.EqualTo("on\n"));
            Assert.That(r.Machine.Sysfs.Write(control, "on"), Is.EqualTo(3), "forbidding twice counts once");
            Assert.That(r.Pm.UsageCount, Is.EqualTo(1));

            Assert.That(r.Machine.Sysfs.Write(control, "sometimes"), Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That(r.Pm.IsAllowed, Is.False, "a bad value changes nothing");

            Assert.That(r.Machine.Sysfs.Write(control, "auto"), Is.EqualTo(5));
            Assert.That((r.Pm.Status, r.Pm.UsageCount, r.Pm.IsAllowed), Is.EqualTo((RpmStatus.Suspended, 0, true)));
        });
    }

    [Test]
    public void AnIdleCallbackThatRefuses_KeepsTheDeviceActive_ButAnExplicitSuspendStillWorks()
    {
        Run(r =>
        {
            r.AddBindAndEnable();
            r.Driver.IdleResult = Errno.EBUSY.Negative();
            Assert.That(r.Pm.Idle(), Is.EqualTo(Errno.EBUSY.Negative()));
            Assert.That((r.Pm.Status, r.Driver.Suspends), Is.EqualTo((RpmStatus.Active, 0)));
            Assert.That(r.Pm.Suspend(), Is.Zero);
            Assert.That(r.Pm.Status, Is.EqualTo(RpmStatus.Suspended));
        });
    }

    [Test]
    public void ASuspendFailure_WithEbusyIsTransient_AnyOtherSetsRuntimeError_UntilTheStatusIsSetAgain()
    {
        Run(r =>
        {
            r.AddBindAndEnable();
            r.Driver.SuspendResult = Errno.EBUSY.Negative();
            Assert.That(r.Pm.Idle(), Is.EqualTo(Errno.EBUSY.Negative()));
            Assert.That((r.Pm.Status, r.Pm.RuntimeError), Is.EqualTo((RpmStatus.Active, 0)));

            r.Driver.SuspendResult = Errno.EIO.Negative();
            Assert.That(r.Pm.Idle(), Is.EqualTo(Errno.EIO.Negative()));
            Assert.That((r.Pm.Status, r.Pm.RuntimeError), Is.EqualTo((RpmStatus.Active, Errno.EIO.Negative())));
            Assert.That(r.Sys("runtime_status"), Is.EqualTo("error\n"));
            Assert.That(r.Pm.GetSync(), Is.EqualTo(Errno.EINVAL.Negative()), "every transition is refused now");
            Assert.That(r.Pm.UsageCount, Is.EqualTo(1), "get_sync keeps its count even when it fails");
            r.Pm.PutNoidle();
            Assert.That(r.Pm.ResumeAndGet(), Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That(r.Pm.UsageCount, Is.Zero, "resume_and_get drops its count when it fails");

            Assert.That(r.Pm.SetActive(), Is.Zero, "set_status clears the error (allowed while it stands)");
            r.Driver.SuspendResult = 0;
            Assert.That(r.Pm.Idle(), Is.Zero);
            Assert.That(r.Pm.Status, Is.EqualTo(RpmStatus.Suspended));
        });
    }

    [Test]
    public void AResumeFailure_LeavesTheDeviceSuspended_WithRuntimeError()
    {
        Run(r =>
        {
            r.AddBindAndEnable();
            Assert.That(r.Pm.Idle(), Is.Zero);
            r.Driver.ResumeResult = Errno.EIO.Negative();
            Assert.That(r.Pm.ResumeAndGet(), Is.EqualTo(Errno.EIO.Negative()));
            Assert.That((r.Pm.Status, r.Pm.UsageCount, r.Pm.RuntimeError), Is.EqualTo((RpmStatus.Suspended, 0, Errno.EIO.Negative())));
        });
    }

    [Test]
    public void WhileDisabled_ASuspendedDeviceCannotResume_ButAnActiveOneCountsAsResumed()
    {
        Run(r =>
        {
            r.AddBindAndEnable();
            r.Pm.Disable();
            Assert.That(r.Pm.ResumeAndGet(), Is.Zero, "active while disabled: 1 from rpm_resume, success");
            r.Pm.PutNoidle();
            Assert.That(r.Pm.Suspend(), Is.EqualTo(Errno.EACCES.Negative()));
            Assert.That(r.Pm.SetActive(), Is.Zero, "set_status is allowed while disabled");
            r.Pm.Enable();
            Assert.That(r.Pm.Idle(), Is.Zero);
            r.Pm.Disable();
            Assert.That(r.Pm.ResumeAndGet(), Is.EqualTo(Errno.EACCES.Negative()));
            Assert.That(r.Pm.UsageCount, Is.Zero);
            Assert.That(r.Pm.SetActive(), Is.Zero);
            Assert.That(r.Pm.Status, Is.EqualTo(RpmStatus.Active));
            r.Pm.Enable();
            Assert.That(r.Pm.SetActive(), Is.EqualTo(Errno.EAGAIN.Negative()), "not while enabled");
        });
    }

    [Test]
    public void DroppingACountThatIsNotThere_WarnsOfTheUnderflow_AndKeepsTheCountAtZero()
    {
        Run(r =>
        {
            r.AddBindAndEnable();
            r.Machine.Kernel.ExpectWarning("Runtime PM usage count underflow", count: 2);
            r.Pm.PutNoidle();
            Assert.That(r.Pm.UsageCount, Is.Zero);
            Assert.That(r.Pm.Put(), Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That(r.Pm.UsageCount, Is.Zero);
        });
    }

    [Test]
    public void UsersRacingTheIdleSuspend_NeverOverlapCallbacks_AndTheLastPutLeavesItSuspended(
        [Values] SchedulerMode mode, [ValueSource(nameof(s_seeds))] ulong seed)
    {
        Run(
            r =>
            {
                r.AddBindAndEnable();
                r.Driver.Slow = true;
                const int rounds = 5;
                KTask[] users = new KTask[3];
                for (int u = 0; u < users.Length; u++)
                {
                    users[u] = r.Machine.Kernel.Spawn($"user{u}", () =>
                    {
                        for (int i = 0; i < rounds; i++)
                        {
                            Assert.That(r.Pm.ResumeAndGet(), Is.Zero);
                            Assert.That(r.Pm.Status, Is.EqualTo(RpmStatus.Active), "a counted user sees the device active");
                            KTask.Schedule();
                            Assert.That(r.Pm.Put(), Is.GreaterThanOrEqualTo(0).Or.EqualTo(Errno.EAGAIN.Negative()).Or.EqualTo(Errno.EINPROGRESS.Negative()));
                        }
                    });
                }

                foreach (KTask t in users)
                {
                    t.Join();
                }

                Assert.That(r.Driver.Overlaps, Is.Zero, "one suspend or resume at a time, one idle notification at a time");
                Assert.That(r.Pm.UsageCount, Is.Zero);
                Assert.That(r.Pm.Status, Is.EqualTo(RpmStatus.Suspended), "the last put suspended it");
                Assert.That(r.Pm.SuspendCount, Is.EqualTo(r.Pm.ResumeCount + 1));
            },
            mode,
            seed);
    }

    // ---- The PCI core.

    [Test]
    public void AnUnboundPciFunction_SuspendedByItsUser_KeepsD0_AndComesBackWithItsState()
    {
        VfioSim sim = VfioSim.CreateBuilder().Build();
        Runs.AssertPassed(sim.Run(() =>
        {
            const string bdf = "0000:04:02.0";
            PciDevice pdev = sim.Device(bdf);
            Assert.That(pdev.Driver, Is.Null, "no driver at boot");
            Assert.That(pdev.PmCap, Is.Not.Zero);
            Assert.That((pdev.Power.Status, pdev.Power.UsageCount, pdev.Power.IsAllowed), Is.EqualTo((RpmStatus.Active, 1, false)), "pci_pm_init: forbidden, active");

            pdev.WriteConfig(PciRegs.LatencyTimer, 0x40, 1);
            sim.SysfsWrite($"/sys/bus/pci/devices/{bdf}/power/control", "auto");
            Assert.That(pdev.Power.Status, Is.EqualTo(RpmStatus.Suspended));
            Assert.That(sim.SysfsRead($"/sys/bus/pci/devices/{bdf}/power_state"), Is.EqualTo("D0"), "an unbound function is left in D0");
            pdev.WriteConfig(PciRegs.LatencyTimer, 0, 1);

            sim.SysfsWrite($"/sys/bus/pci/devices/{bdf}/power/control", "on");
            Assert.That(pdev.Power.Status, Is.EqualTo(RpmStatus.Active));
            Assert.That(pdev.ReadConfig(PciRegs.LatencyTimer, 1), Is.EqualTo(0x40u), "the resume restored the state the suspend saved");
        }));
    }

    [Test]
    public void ABoundPciFunction_WithADriverWithoutPmOps_IsNeverSuspendedByAnIdleCheck()
    {
        VfioSim sim = VfioSim.CreateBuilder().Build();
        Runs.AssertPassed(sim.Run(() =>
        {
            PciDevice nic = sim.Device("0000:05:00.0");
            Assert.That(nic.Driver?.Name, Is.EqualTo("e1000e"));
            Assert.That(nic.Power.UsageCount, Is.EqualTo(2), "forbidden, plus the probe's count");
            nic.Power.Allow();
            nic.Power.PutNoidle();
            Assert.That(nic.Power.Idle(), Is.EqualTo(Errno.ENOSYS.Negative()), "pci_pm_runtime_idle: no PM ops");
            Assert.That(nic.Power.Status, Is.EqualTo(RpmStatus.Active));
            Assert.That(nic.PowerStateName, Is.EqualTo("D0"));
            nic.Power.GetNoresume();
            nic.Power.Forbid();
        }));
    }
}
