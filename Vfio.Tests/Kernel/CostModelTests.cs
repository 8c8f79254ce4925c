// The cost model (Vfio.Kernel/Time/CostModel.cs, profiles in CostProfiles.cs): off it
// counts nothing and leaves virtual time alone; the linux-x86 profile composes into the
// published per-page figures of type1 map and unmap; a run's counts and modelled time do
// not depend on the seed, the scheduler mode or strace; concurrent charges add up; a lock
// hand-off is counted once per acquisition that slept.

using NUnit.Framework;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Machine;
using Vfio.Platform.Mm;
using Vfio.Sim.Scenarios;
using Vfio.Tests.Core;
using Vfio.Tests.Type1;

namespace Vfio.Tests.Kernel;

[TestFixture]
public sealed class CostModelTests
{
    private const ulong Page = 4096;
    private const ulong GiB = 1UL << 30;
    private const ulong Iova = 1UL << 36;

    private static VfioRig Rig(CostProfile? model, SchedulerMode mode = SchedulerMode.Controlled, ulong seed = 1)
    {
        MachineDescription m = MachineDescriptionReader.Default with
        {
            Memory = new MemoryConfig { RamBytes = 4L << 30, Policy = AllocationPolicy.Scattered, HugePages2M = 64 },
        };
        return new VfioRig(mode, seed, backend: false, machine: m, modules: b => b.AddType1().UseCostModel(model));
    }

    private static ulong Buffer(VfioRig rig, ulong bytes, MapFlags extra = MapFlags.MAP_POPULATE)
    {
        long a = rig.User.Mmap(0, bytes, Prot.PROT_READ | Prot.PROT_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | extra);
        Assert.That(a, Is.GreaterThan(0), "mmap");
        return (ulong)a;
    }

    private static int OpenContainer(VfioRig rig)
    {
        rig.Bind(VfioRig.Edu);
        return rig.OpenAll(VfioRig.Edu).Container;
    }

    private static CostCounters Measure(VfioRig rig, Action body)
    {
        CostCounters before = rig.Kernel.Cost.Snapshot();
        body();
        return rig.Kernel.Cost.Snapshot().Since(before);
    }

    private static double NsPer(CostCounters c, double n) => c.ModelledPs / 1000.0 / n;

    [Test]
    public void WithTheModelOff_NothingIsCounted_AndMapAndUnmapLeaveVirtualTimeAlone()
    {
        VfioRig rig = Rig(model: null);
        rig.Run(() =>
        {
            int c = OpenContainer(rig);
            ulong va = Buffer(rig, 64 * Page);
            long t0 = rig.Kernel.Clock.NowNs;
            Assert.That(Type1Rig.Map(rig.User, c, va, Iova, 64 * Page), Is.Zero, ErrorReason.Current);
            Assert.That(Type1Rig.Unmap(rig.User, c, Iova, 64 * Page, out _), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Kernel.Clock.NowNs, Is.EqualTo(t0), "virtual time");
        });

        Assert.That(rig.Kernel.Cost.Enabled, Is.False);
        CostCounters all = rig.Kernel.Cost.Snapshot();
        Assert.That(all.ModelledPs, Is.Zero);
        foreach (CostOp op in CostProfile.Operations)
        {
            Assert.That(all[op], Is.Zero, op.ToString());
        }
    }

    [Test]
    public void LinuxX86_MapsAGiBOfScattered4KPages_AtAbout60NsAPage_AndUnmapsThemAtAbout70()
    {
        const double pages = GiB / Page;
        VfioRig rig = Rig(CostProfile.LinuxX86);
        CostCounters map = default, unmap = default;
        long clockBefore = 0, clockAfter = 0;
        rig.Run(() =>
        {
            int c = OpenContainer(rig);
            ulong va = Buffer(rig, GiB);
            clockBefore = rig.Kernel.Clock.NowNs;
            map = Measure(rig, () => Assert.That(Type1Rig.Map(rig.User, c, va, Iova, GiB), Is.Zero, ErrorReason.Current));
            clockAfter = rig.Kernel.Clock.NowNs;
            unmap = Measure(rig, () => Assert.That(Type1Rig.Unmap(rig.User, c, Iova, GiB, out _), Is.Zero, ErrorReason.Current));
        });

        TestContext.Out.WriteLine("map:\n" + map.Format(CostProfile.LinuxX86) + "unmap:\n" + unmap.Format(CostProfile.LinuxX86));
        Assert.That(map[CostOp.GupPage], Is.EqualTo((long)pages), "every page pinned once");
        Assert.That(map[CostOp.GupFolio], Is.EqualTo(pages), "every 4 KiB page is its own folio");
        Assert.That(map[CostOp.PteWrite], Is.EqualTo(pages), "one 4 KiB leaf a page");
        Assert.That(map[CostOp.SyscallEntry], Is.EqualTo(1));
        Assert.That(map[CostOp.IoctlCopy], Is.EqualTo(1), "the map struct copied in");
        Assert.That(NsPer(map, pages), Is.EqualTo(60).Within(10).Percent, "map ns per page");
        Assert.That(NsPer(unmap, pages), Is.EqualTo(70).Within(10).Percent, "unmap ns per page");
        Assert.That(unmap[CostOp.UnpinPage], Is.EqualTo((long)pages));
        Assert.That(unmap[CostOp.IotlbFlush], Is.GreaterThan(0), "unmap syncs the IOTLB");
        Assert.That(clockAfter - clockBefore, Is.EqualTo(map.ModelledNs).Within(1), "the modelled time moved the virtual clock");
    }

    [Test]
    public void LinuxX86_Maps2MHugetlbPages_AtAbout3MicrosecondsAPage()
    {
        const int hugePages = 32;
        const ulong size = hugePages * (2UL << 20);
        VfioRig rig = Rig(CostProfile.LinuxX86);
        CostCounters map = default;
        rig.Run(() =>
        {
            int c = OpenContainer(rig);
            ulong va = Buffer(rig, size, MapFlags.MAP_POPULATE | MapFlags.MAP_HUGETLB | MapFlags.MAP_HUGE_2MB);
            map = Measure(rig, () => Assert.That(Type1Rig.Map(rig.User, c, va, Iova, size), Is.Zero, ErrorReason.Current));
        });

        TestContext.Out.WriteLine(map.Format(CostProfile.LinuxX86));
        Assert.That(map[CostOp.GupPage], Is.EqualTo(hugePages * 512));
        Assert.That(NsPer(map, hugePages), Is.EqualTo(3000).Within(15).Percent, "map ns per 2 MiB page");
    }

    [Test]
    public void LinuxX86_GetApiVersion_CostsOneSyscallEntry_AndNothingElse()
    {
        VfioRig rig = Rig(CostProfile.LinuxX86);
        CostCounters c = default;
        rig.Run(() =>
        {
            int fd = rig.User.Open("/dev/vfio/vfio");
            Assert.That(fd, Is.GreaterThanOrEqualTo(0));
            c = Measure(rig, () => Assert.That(rig.User.Ioctl(fd, VfioIoctl.GetApiVersion), Is.Zero));
        });

        Assert.That(c[CostOp.SyscallEntry], Is.EqualTo(1));
        Assert.That(c.ModelledPs, Is.EqualTo(90_000), "90 ns: a syscall with no argument to copy");
        Assert.That(CostProfile.LinuxX86.CostNs(CostOp.SyscallEntry), Is.EqualTo(90));
    }

    [Test]
    public void EveryLinuxX86Figure_HasASource()
    {
        foreach (CostOp op in CostProfile.Operations)
        {
            Assert.That(CostProfile.LinuxX86.Source(op), Is.Not.Empty, op.ToString());
        }

        Assert.That(CostProfile.Find("LINUX-X86"), Is.SameAs(CostProfile.LinuxX86));
        Assert.That(CostProfile.Find("linux-arm"), Is.Null);
    }

    private static ScenarioResult RunDemo(ulong seed, SchedulerMode mode = SchedulerMode.Controlled, bool strace = false)
    {
        Assert.That(ScenarioCatalog.Default.TryFind("vfio-rst-demo", out Scenario? demo), Is.True);
        ScenarioResult r = demo!.Run(new ScenarioOptions { Seed = seed, Mode = mode, Strace = strace, CostModel = CostProfile.LinuxX86 });
        Assert.That(r.Passed, Is.True, r.Describe());
        return r;
    }

    [Test]
    public void AScenarioWithTheModel_GivesTheSameCountsAndModelledTime_InTwoRunsAndAcrossSeeds()
    {
        CostCounters first = RunDemo(seed: 1).Cost;
        TestContext.Out.WriteLine(first.Format(CostProfile.LinuxX86));
        Assert.That(first.ModelledPs, Is.GreaterThan(0));
        Assert.That(first[CostOp.SyscallEntry], Is.GreaterThan(0));
        Assert.That(first[CostOp.MmioAccess] + first[CostOp.MmioWrite], Is.GreaterThan(0), "the demo programs the edu device");
        Assert.That(RunDemo(seed: 1).Cost, Is.EqualTo(first), "the same seed again");
        Assert.That(RunDemo(seed: 7).Cost, Is.EqualTo(first), "another seed");
    }

    [Test]
    public void AScenarioWithTheModel_UnderRealThreads_ModelsTheSameTimeAsUnderTheControlledScheduler()
    {
        Assert.That(RunDemo(seed: 1, SchedulerMode.Real).Cost, Is.EqualTo(RunDemo(seed: 1).Cost));
    }

    [Test]
    public void Strace_DoesNotChangeTheCountsOrTheModelledTime()
    {
        ScenarioResult traced = RunDemo(seed: 1, strace: true);
        Assert.That(traced.Sim.Strace.Records, Is.Not.Empty);
        Assert.That(traced.Cost, Is.EqualTo(RunDemo(seed: 1).Cost));
    }

    [Test]
    public void ChargesOfConcurrentTasks_AddUp([Values] SchedulerMode mode, [Values(1UL, 2UL, 3UL)] ulong seed)
    {
        const int tasks = 3, calls = 20;
        VfioRig rig = Rig(CostProfile.LinuxX86, mode, seed);
        CostCounters c = default;
        rig.Run(() =>
        {
            int fd = rig.User.Open("/dev/vfio/vfio");
            c = Measure(rig, () =>
            {
                var all = new List<KTask>();
                for (int t = 0; t < tasks; t++)
                {
                    all.Add(rig.User.SpawnThread($"caller{t}", () =>
                    {
                        for (int i = 0; i < calls; i++)
                        {
                            rig.User.Ioctl(fd, VfioIoctl.GetApiVersion);
                            KTask.Schedule();
                        }
                    }));
                }

                foreach (KTask t in all)
                {
                    t.Join();
                }
            });
        });

        Assert.That(c[CostOp.SyscallEntry], Is.EqualTo(tasks * calls));
        Assert.That(c.ModelledPs, Is.EqualTo(tasks * calls * 90_000L));
    }

    [Test]
    public void AContendedMutex_CountsOneHandOff_ForTheAcquisitionThatSlept([Values] SchedulerMode mode)
    {
        var k = new SimKernel(new KernelConfig { Mode = mode, Seed = 1, CostProfile = CostProfile.LinuxX86, RealWatchdog = TimeSpan.FromSeconds(30) });
        long uncontended = -1, before = -1, afterLock = -1;
        RunResult r = k.Run("main", () =>
        {
            var m = new KMutex(k, "m");
            m.Lock();
            m.Unlock();
            uncontended = k.Cost.Count(CostOp.LockHandoff);
            m.Lock();
            KTask waiter = k.Spawn("waiter", () =>
            {
                m.Lock();
                afterLock = k.Cost.Count(CostOp.LockHandoff);
                m.Unlock();
            });
            while (waiter.State != TaskState.Blocked)
            {
                KTask.Schedule();
            }

            before = k.Cost.Count(CostOp.LockHandoff);
            m.Unlock();
            waiter.Join();
        });

        Runs.AssertPassed(r);
        Assert.That(uncontended, Is.Zero, "a free mutex is no hand-off");
        Assert.That(afterLock - before, Is.EqualTo(1), "the waiter slept and was handed the mutex");
        Assert.That(k.Cost.ModelledNs, Is.GreaterThanOrEqualTo(1500));
    }
}
