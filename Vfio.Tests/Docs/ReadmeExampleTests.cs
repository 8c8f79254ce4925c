// The README's code, run as written (file output replaced by strings), so it stays true.

using NUnit.Framework;
using Vfio.Kernel;
using Vfio.Platform;
using Vfio.Platform.Mm;
using Vfio.Platform.Pci;

namespace Vfio.Tests.Docs;

public sealed class ReadmeExampleTests
{
    // The README's tour explores the planted refcount race: its kernels' refcount_t WARNs are the bug it finds.
    [LeavesKernelWarnings]
    [Test]
    public void TheFiveMinuteTour_RunsAsWritten()
    {
        var k = new SimKernel(new KernelConfig
        {
            Mode = SchedulerMode.Controlled,
            Seed = 42,
            Strategy = StrategySpec.Pct(depth: 3, maxSteps: 200),
        });

        RunResult r = k.Run(() =>
        {
            var groupLock = new KMutex(k, "vfio_group[26].group_lock");
            var comp = new Completion(k, "vfio_device[0].comp");
            KTask unbind = k.Spawn("unbind", () => comp.WaitTimeout(SimClock.SecondsToJiffies(10)));
            groupLock.Lock();
            groupLock.Unlock();
            unbind.Join();
        });

        Runs.AssertPassed(r);
        Assert.That(r.Describe(), Does.StartWith("outcome=Completed seed=42 strategy=pct(d=3,k=200)"));
        Assert.That(k.Clock.NowNs, Is.EqualTo(10_000_000_000L));
        Assert.That(RunTrace.Parse(r.Trace.ToJson()).StepCount, Is.EqualTo(r.Steps));
        Assert.That(r.Trace.ToChromeTrace(), Does.StartWith("{\"traceEvents\":["));

        static void MyScenario(SimKernel kernel) => SelfTest.PlantedRefcountRace(kernel, buggy: true);
        ExplorationResult found = Explorer.Explore(
            new ExploreOptions { Strategy = StrategySpec.Pct(2, 40), SeedCount = 200, ShardIndex = 0, ShardCount = 1 },
            kernel => MyScenario(kernel));
        string json = found.FirstFailure!.Trace.ToJson();
        RunResult again = Explorer.Replay(RunTrace.Parse(json), kernel => MyScenario(kernel));
        Assert.That(again.Outcome, Is.EqualTo(RunOutcome.Deadlock));
    }

    [Test]
    public void TheMachineTour_RunsAsWritten()
    {
        var m = new SimMachine(new MachineConfig { Memory = new MemoryConfig { RamBytes = 8L << 30, HugePages2M = 512 } });
        var qemu = m.CreateProcess("qemu");
        long buf = qemu.Mmap(0, 1 << 30, Prot.PROT_READ | Prot.PROT_WRITE,
            MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_HUGETLB);

        var runs = new PfnRun[512];
        long pinned = qemu.Mm.PinUserPages((ulong)buf, 1 << 18, GupFlags.FOLL_LONGTERM | GupFlags.FOLL_WRITE, runs, out int n);
        m.Memory.Unpin(runs.AsSpan(0, n), dirty: true);

        m.Pci.RegisterDriver(new HostPciDriver("e1000e", new PciDeviceId(0x8086, 0x10d3)));
        m.Pci.Add(new PciDevice(m, 0, 1, 0, 0, new PciIdentity(0x8086, 0x10d3, 0, 0, 0x020000)));
        long r = m.Sysfs.Write("/sys/bus/pci/drivers/e1000e/unbind", "0000:01:00.0");
        string? drv = m.Sysfs.ReadLink("/sys/bus/pci/devices/0000:01:00.0/driver");
        MemoryInvariants.Assert(m);

        Assert.That(buf, Is.GreaterThan(0));
        Assert.That(pinned, Is.EqualTo(1 << 18));
        Assert.That(n, Is.EqualTo(1), "512 adjacent huge pages form one run");
        Assert.That(r, Is.EqualTo(13));
        Assert.That(drv, Is.Null);
    }
}
