// The README's code, run as written (file output replaced by strings), so it stays true.

using NUnit.Framework;
using Vfio.Kernel;
using Vfio.Platform;
using Vfio.Platform.Mm;
using Vfio.Platform.Pci;
using Vfio.Sim;

namespace Vfio.Tests.Docs;

public sealed class ReadmeExampleTests
{
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

        int w = qemu.Mm.WriteUser((ulong)buf + (1 << 21), "hello"u8);               // faults one huge page in: 0, or -errno
        int free = m.Memory.HugePagesFree(2 << 20);                                   // 511 of the pool's 512

        m.Pci.RegisterDriver(new HostPciDriver("e1000e", new PciDeviceId(0x8086, 0x10d3)));
        m.Pci.Add(new PciDevice(m, 0, 1, 0, 0, new PciIdentity(0x8086, 0x10d3, 0, 0, 0x020000)));
        long r = m.Sysfs.Write("/sys/bus/pci/drivers/e1000e/unbind", "0000:01:00.0");
        string? drv = m.Sysfs.ReadLink("/sys/bus/pci/devices/0000:01:00.0/driver");
        MemoryInvariants.Assert(m);

        Assert.That(buf, Is.GreaterThan(0));
        Assert.That(w, Is.Zero);
        Assert.That(free, Is.EqualTo(511));
        Assert.That(r, Is.EqualTo(13));
        Assert.That(drv, Is.Null);
    }

    [Test]
    public void TheHostTour_RunsAsWritten()
    {
        var output = new StringWriter();
        VfioSim sim = VfioSim.CreateDefault(seed: 1);      // default machine; vfio, type1, vfio-pci; controlled scheduler; Linux 6.12
        sim.Bind("0000:01:00.0");                          // edu: unbind from its host driver, driver_override, drivers_probe
        var qemu = sim.Spawn("qemu");
        using (VfioSession s = sim.Open(qemu, "0000:01:00.0"))   // container, group, SET_CONTAINER, SET_IOMMU, device fd
        using (UserBuffer buf = VfioSim.Allocate(qemu, 1 << 20, MapFlags.MAP_POPULATE))
        {
            s.Container.MapDma(buf.Address, iova: 0, buf.Size);   // pins 256 pages, charges locked_vm
            Assert.That(sim.PinnedPages, Is.EqualTo(256));
            Assert.That(qemu.Mm.LockedVm, Is.EqualTo(256));
            s.Device.Reset();
            s.Container.UnmapDma(0, buf.Size);
        }

        output.WriteLine(sim.PinnedPages);                // 0
        output.WriteLine(string.Join("\n", sim.CheckInvariants()));   // nothing: every invariant holds

        Assert.That(output.ToString(), Is.EqualTo("0\n\n"));
        Assert.That(ReadmeBlockContaining("VfioSim.CreateDefault(seed: 1)"), Does.Contain("s.Container.MapDma(buf.Address, iova: 0, buf.Size);"), "the README still shows this tour");
    }

    private static string ReadmeBlockContaining(string text)
    {
        string readme = Repository.ReadAllText("README.md");
        int at = readme.IndexOf(text, StringComparison.Ordinal);
        Assert.That(at, Is.GreaterThanOrEqualTo(0), $"README.md has no block containing {text}");
        int start = readme.LastIndexOf("```csharp", at, StringComparison.Ordinal);
        int end = readme.IndexOf("```", at, StringComparison.Ordinal);
        return readme[start..end];
    }
}
