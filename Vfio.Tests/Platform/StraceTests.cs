// Tests Vfio.Platform/Proc/SyscallTracer.cs and the tracing in SimProcess.Syscalls.cs: each
// syscall's line as strace prints it, errors by errno name with the kernel's reason kept
// (and printed only when asked), eventfd counters, only traced processes recorded, Stop
// and Clear, the strace -f -tt format, and the same seed giving the same text.

using NUnit.Framework;
using Vfio.Kernel;
using Vfio.Platform.Fs;
using Vfio.Platform.Mm;
using Vfio.Platform.Proc;
using Vfio.Sim;
using Vfio.Sim.Scenarios;

namespace Vfio.Tests.Platform;

public sealed class StraceTests
{
    private static (VfioSim Sim, SimProcess P) Boot()
    {
        VfioSim sim = VfioSim.CreateBuilder().UseScheduler(SchedulerMode.Real).Build();
        return (sim, sim.Spawn("user"));
    }

    private static string LastLine(VfioSim sim) => sim.Strace.Records[^1].ToString();

    [Test]
    public void EachFileSyscall_IsOneLineAsStracePrintsIt()
    {
        (VfioSim sim, SimProcess p) = Boot();
        sim.Strace.Start(p);

        ulong buf = (ulong)p.Mmap(0, 4096, Prot.PROT_READ | Prot.PROT_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS);
        int fd = p.Open("/sys/bus/pci/devices/0000:01:00.0/vendor", OpenFlags.O_RDONLY);
        long n = p.Read(fd, buf, 4096);
        long end = p.Read(fd, buf, 4096);
        long pn = p.Pread(fd, buf, 4, 2);
        int d = p.Dup(fd);
        int d2 = p.Dup2(fd, 9);
        p.Close(d2);
        p.Close(d);
        p.Close(fd);
        int w = p.Open("/sys/bus/pci/drivers_probe", OpenFlags.O_WRONLY);
        Assert.That(p.CpuWrite(buf, "nothing\n"u8.ToArray().AsSpan(0, 8)), Is.Zero);
        long wr = p.Pwrite(w, buf, 8, 0);

        Assert.That((n, end, pn, d, d2), Is.EqualTo((7L, 0L, 4L, fd + 1, 9)));
        IReadOnlyList<SyscallRecord> records = sim.Strace.Records;
        Assert.That(records.Take(11).Select(r => r.ToString()), Is.EqualTo(new[]
        {
            $"mmap(NULL, 4096, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x{buf:x}",
            $"openat(AT_FDCWD, \"/sys/bus/pci/devices/0000:01:00.0/vendor\", O_RDONLY) = {fd}",
            $"read({fd}, \"0x1234\\n\", 4096) = 7",
            $"read({fd}, \"\", 4096) = 0",
            $"pread64({fd}, \"1234\", 4, 2) = 4",
            $"dup({fd}) = {d}",
            $"dup2({fd}, 9) = 9",
            "close(9) = 0",
            $"close({d}) = 0",
            $"close({fd}) = 0",
            $"openat(AT_FDCWD, \"/sys/bus/pci/drivers_probe\", O_WRONLY) = {w}",
        }));

        // What drivers_probe answers for a device that does not exist is the kernel's business; the line shows the data.
        Assert.That(records[11].ToString(), Does.StartWith($"pwrite64({w}, \"nothing\\n\", 8, 0) = "));
        Assert.That(records[11].Return, Is.EqualTo(wr));
        Assert.That(records.Select(r => r.Pid).Distinct(), Is.EqualTo(new[] { p.Pid }));
    }

    [Test]
    public void MemorySyscalls_PrintProtAndFlagsByName()
    {
        (VfioSim sim, SimProcess p) = Boot();
        sim.Strace.Start(p);

        ulong a = (ulong)p.Mmap(0, 8192, Prot.PROT_READ, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS);
        int prot = p.Mprotect(a, 4096, Prot.PROT_READ | Prot.PROT_WRITE);
        int locked = p.Mlock(a, 4096);
        int unlocked = p.Munlock(a, 4096);
        int unmapped = p.Munmap(a, 8192);
        long bad = p.Mmap(0, 4096, Prot.PROT_READ, MapFlags.MAP_SHARED, 42, 0);

        string Ret(long r) => r >= 0 ? r.ToString(System.Globalization.CultureInfo.InvariantCulture) : $"-1 {ErrnoExtensions.FromReturn(r).Describe()}";
        Assert.That(sim.Strace.Records.Select(r => r.ToString()), Is.EqualTo(new[]
        {
            $"mmap(NULL, 8192, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x{a:x}",
            $"mprotect(0x{a:x}, 4096, PROT_READ|PROT_WRITE) = {Ret(prot)}",
            $"mlock(0x{a:x}, 4096) = {Ret(locked)}",
            $"munlock(0x{a:x}, 4096) = {Ret(unlocked)}",
            $"munmap(0x{a:x}, 8192) = 0",
            "mmap(NULL, 4096, PROT_READ, MAP_SHARED, 42, 0) = -1 EBADF (Bad file descriptor)",
        }));
        Assert.That((prot, unmapped, bad), Is.EqualTo((0, 0, Errno.EBADF.Negative())));
    }

    [Test]
    public void AnEventfdsReadsAndWrites_PrintItsCounter_AndPollPrintsTheReadyFds()
    {
        (VfioSim sim, SimProcess p) = Boot();
        sim.Strace.Start(p);

        int efd = p.Eventfd(0, EventFdContext.EFD_NONBLOCK | EventFdContext.EFD_CLOEXEC);
        ulong buf = (ulong)p.Mmap(0, 4096, Prot.PROT_READ | Prot.PROT_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS);
        long again = p.Read(efd, buf, 8);
        Span<PollFd> fds = [new PollFd(efd, PollEvents.POLLIN)];
        int none = p.Poll(fds, 0);
        Assert.That(p.CpuWrite(buf, BitConverter.GetBytes(3UL)), Is.Zero);
        long wrote = p.Write(efd, buf, 8);
        fds[0] = new PollFd(efd, PollEvents.POLLIN);
        int ready = p.Poll(fds, 0);
        long read = p.Read(efd, buf, 8);

        Assert.That((again, none, wrote, ready, read), Is.EqualTo((Errno.EAGAIN.Negative(), 0, 8L, 1, 8L)));
        Assert.That(sim.Strace.Records.Where(r => r.Syscall != "mmap").Select(r => r.ToString()), Is.EqualTo(new[]
        {
            $"eventfd2(0, EFD_CLOEXEC|EFD_NONBLOCK) = {efd}",
            $"read({efd}, 0x{buf:x}, 8) = -1 EAGAIN (Resource temporarily unavailable)",
            $"poll([{{fd={efd}, events=POLLIN}}], 1, 0) = 0 (Timeout)",
            $"write({efd}, [3], 8) = 8",
            $"poll([{{fd={efd}, events=POLLIN}}], 1, 0) = 1 ([{{fd={efd}, revents=POLLIN}}])",
            $"read({efd}, [3], 8) = 8",
        }));
    }

    [Test]
    public void AFailedSyscall_PrintsTheErrnoByName_AndKeepsTheKernelsReasonForWhoAsks()
    {
        (VfioSim sim, SimProcess p) = Boot();
        sim.Strace.Start(p);

        Assert.That(p.Close(77), Is.EqualTo(Errno.EBADF.Negative()));
        Assert.That(p.Open("/dev/vfio/vfio"), Is.EqualTo(Errno.ENOENT.Negative()));
        Assert.That(p.Eventfd(0, 0x4242), Is.EqualTo(Errno.EINVAL.Negative()));

        IReadOnlyList<SyscallRecord> records = sim.Strace.Records;
        Assert.That(records.Select(r => r.ToString()), Is.EqualTo(new[]
        {
            "close(77) = -1 EBADF (Bad file descriptor)",
            "openat(AT_FDCWD, \"/dev/vfio/vfio\", O_RDWR) = -1 ENOENT (No such file or directory)",
            "eventfd2(0, 0x4242) = -1 EINVAL (Invalid argument)",
        }));
        Assert.That(records.Select(r => r.Error), Is.EqualTo(new[] { Errno.EBADF, Errno.ENOENT, Errno.EINVAL }));
        Assert.That(records.Select(r => r.Fd), Is.EqualTo(new[] { 77, -1, -1 }));

        // A reason the kernel gave is printed as a trailing comment only when asked for.
        var withReason = records[0] with { Reason = "close: fd 77 is not open" };
        Assert.That(withReason.ToString(), Is.EqualTo("close(77) = -1 EBADF (Bad file descriptor)"));
        Assert.That(withReason.ToString(withReason: true), Is.EqualTo("close(77) = -1 EBADF (Bad file descriptor) /* close: fd 77 is not open */"));
        Assert.That(
            SyscallTracer.Format([withReason], new StraceFormat { Reasons = true, Timestamps = false }),
            Is.EqualTo("close(77) = -1 EBADF (Bad file descriptor) /* close: fd 77 is not open */\n"));
        Assert.That((records[1] with { Return = 3 }).ToString(withReason: true), Does.EndWith(") = 3"));
    }

    [Test]
    public void AnUnknownIoctl_PrintsItsNumberInHex_AndTheGenericOnesByName()
    {
        (VfioSim sim, SimProcess p) = Boot();
        int efd = p.Eventfd(0);
        sim.Strace.Start(p);

        long unknown = p.Ioctl(efd, 0xAB12, 0x10);
        long cloexec = p.Ioctl(efd, SimProcess.FIOCLEX);

        Assert.That((unknown, cloexec), Is.EqualTo((Errno.ENOTTY.Negative(), 0L)));
        Assert.That(sim.Strace.Records.Select(r => r.ToString()), Is.EqualTo(new[]
        {
            $"ioctl({efd}, 0xab12, 0x10) = -1 ENOTTY (Inappropriate ioctl for device)",
            $"ioctl({efd}, FIOCLEX) = 0",
        }));
        Assert.That(sim.Strace.Records[0].Request, Is.EqualTo("0xab12"));
    }

    [Test]
    public void OnlyTracedProcesses_AreRecorded()
    {
        (VfioSim sim, SimProcess p) = Boot();
        SimProcess other = sim.Spawn("other");
        p.Eventfd(0);
        Assert.That(sim.Strace.Records, Is.Empty, "nothing is traced before Start");
        Assert.That(sim.Strace.IsActive, Is.False);

        sim.Strace.Start(other);
        p.Eventfd(0);
        other.Eventfd(0);

        Assert.That(sim.Strace.IsTraced(p), Is.False);
        Assert.That(sim.Strace.Records.Select(r => (r.Pid, r.Comm)), Is.EqualTo(new[] { (other.Pid, "other") }));
        Assert.That(sim.Strace.RecordsOf(p), Is.Empty);
    }

    [Test]
    public void StartForAll_TracesProcessesSpawnedLater_StopKeepsTheRecords_AndClearForgetsThem()
    {
        (VfioSim sim, SimProcess p) = Boot();
        sim.Strace.Start();
        SimProcess later = sim.Spawn("later");
        p.Eventfd(0);
        later.Eventfd(0);
        Assert.That(sim.Strace.Records.Select(r => r.Comm), Is.EqualTo(new[] { "user", "later" }));

        sim.Strace.Stop();
        p.Eventfd(0);
        Assert.That(sim.Strace.IsActive, Is.False);
        Assert.That(sim.Strace.Records, Has.Count.EqualTo(2), "Stop keeps what was recorded and records nothing more");

        sim.Strace.Start(p);
        sim.Strace.Stop(p);
        later.Eventfd(0);
        Assert.That(sim.Strace.Records, Has.Count.EqualTo(2));

        sim.Strace.Clear();
        Assert.That(sim.Strace.Records, Is.Empty);
        Assert.That(sim.Strace.Format(), Is.Empty);
    }

    [Test]
    public void EnableStrace_TracesEveryProcessFromBoot()
    {
        VfioSim sim = VfioSim.CreateBuilder().UseScheduler(SchedulerMode.Real).EnableStrace().Build();
        SimProcess p = sim.Spawn("user");
        int efd = p.Eventfd(1);

        Assert.That(sim.Strace.IsTraced(p), Is.True);
        Assert.That(sim.Strace.Records.Select(r => r.ToString()), Is.EqualTo(new[] { $"eventfd2(1, 0) = {efd}" }));
    }

    [Test]
    public void Format_IsStraceDashFDashTt_WithAPidPrefixOnlyForSeveralProcesses()
    {
        var a = new SyscallRecord(101, "a", 123_456, "close", "3", 0, null, 3, null);
        var b = new SyscallRecord(102, "b", 3_723_000_001_000, "dup", "4", 5, null, 4, null);

        Assert.That(SyscallTracer.Format([a]), Is.EqualTo("00:00:00.000123 close(3) = 0\n"));
        Assert.That(SyscallTracer.Format([a, b]), Is.EqualTo("[pid   101] 00:00:00.000123 close(3) = 0\n[pid   102] 01:02:03.000001 dup(4) = 5\n"));
        Assert.That(SyscallTracer.Format([a], new StraceFormat { PidPrefix = true, Timestamps = false }), Is.EqualTo("[pid   101] close(3) = 0\n"));
        Assert.That(SyscallTracer.Format([a, b], new StraceFormat { PidPrefix = false, Timestamps = false }), Is.EqualTo("close(3) = 0\ndup(4) = 5\n"));
        Assert.That(SyscallTracer.TimeText(90_061_500_000_000), Is.EqualTo("25:01:01.500000"));
    }

    [Test]
    public void TheTimestamp_IsTheVirtualTimeTheSyscallEnteredAt()
    {
        VfioSim sim = VfioSim.CreateBuilder().EnableStrace().Build();
        SimProcess p = sim.Spawn("user");
        Runs.AssertPassed(sim.Run(() =>
        {
            p.Eventfd(0);
            sim.Kernel.Clock.Advance(TimeSpan.FromMilliseconds(250));
            p.Eventfd(0);
        }));

        IReadOnlyList<SyscallRecord> records = sim.Strace.Records;
        Assert.That(records[1].TimeNs - records[0].TimeNs, Is.EqualTo(250_000_000L));
        Assert.That(sim.Strace.Format(), Does.Contain($"{SyscallTracer.TimeText(records[1].TimeNs)} eventfd2(0, 0) = {records[1].Return}"));
    }

    [Test]
    public void TheSameSeed_GivesTheSameStraceText_InTwoFreshSimulations([Values(1UL, 7UL)] ulong seed)
    {
        static string RunOnce(ulong seed)
        {
            ScenarioResult r = ScenarioCatalog.Default.All.Single(s => s.Name == "vfio-rst-demo").Run(new ScenarioOptions { Seed = seed, Strace = true });
            Assert.That(r.Passed, Is.True, r.Describe());
            return r.Sim.Strace.Format();
        }

        string first = RunOnce(seed);
        string second = RunOnce(seed);

        Assert.That(first, Does.Contain("VFIO_IOMMU_MAP_DMA"));
        Assert.That(second, Is.EqualTo(first));
    }

    [Test]
    public void TracingEveryProcess_DoesNotChangeTheRun_ItsScheduleOrKernelTrace()
    {
        // strace watches without touching: no lock, no scheduling point, no trace event of
        // its own, so a seed explored with strace on replays with it off and the other way round.
        foreach (string name in new[] { "vfio-rst-demo", "mtty-demo", "kvm-group-vs-container-change", "unbind-request", "getfd-vs-unregister" })
        {
            Scenario scenario = ScenarioCatalog.Default.Get(name);
            foreach (ulong seed in new[] { 2UL, 5UL })
            {
                ScenarioResult plain = scenario.Run(new ScenarioOptions { Seed = seed });
                ScenarioResult traced = scenario.Run(new ScenarioOptions { Seed = seed, Strace = true });

                Assert.That(traced.Sim.Strace.Records, Is.Not.Empty, name);
                Assert.That(traced.Outcome, Is.EqualTo(plain.Outcome), name);
                Assert.That(traced.Trace!.ToJson(), Is.EqualTo(plain.Trace!.ToJson()), $"{name} seed {seed}: tracing changed the run");
            }
        }
    }

    [Test]
    public void AScenarioRunWithStraceOff_RecordsNothing()
    {
        ScenarioResult r = ScenarioCatalog.Default.All.Single(s => s.Name == "vfio-rst-demo").Run(new ScenarioOptions());

        Assert.That(r.Passed, Is.True, r.Describe());
        Assert.That(r.Sim.Strace.Records, Is.Empty);
        Assert.That(r.Sim.Strace.IsActive, Is.False);
    }
}
