// Races 11 and 12 of docs/races.md as the catalogue runs them: BAR accesses racing a
// memory-disable (CVE-2020-12888), ioeventfd writes racing memory_lock writers (race 11's
// 38565c93c8a1 part) and concurrent faults on one BAR mapping after a zap.
// Each holds on both profiles under the controlled scheduler (fixed seeds) and with real
// threads, and each is reproduced with its fix turned off through a design variant.

using NUnit.Framework;
using Vfio.Core;
using Vfio.Kernel;
using Vfio.Sim.Scenarios;

namespace Vfio.Tests.Races;

[TestFixture]
public sealed class VfioPciMmapRaceTests
{
    private const string MemoryDisable = "bar-access-vs-memory-disable";
    private const string FaultStorm = "bar-faults-after-zap";
    private const string Ioeventfd = "ioeventfd-vs-reset";
    private static readonly ulong[] s_seeds = [1, 2, 3, 5, 8, 13, 21, 34];
    private static readonly string[] s_profiles = ["linux-6.12", "linux-6.1"];

    private static ScenarioResult Run(string name, SchedulerMode mode, ulong seed, string profile, Func<VfioDesign, VfioDesign>? design = null)
        => ScenarioCatalog.Default.Get(name).Run(new ScenarioOptions
        {
            Mode = mode,
            Seed = seed,
            Profile = KernelProfile.Parse(profile),
            Trace = false,
            Configure = design is null ? null : b => b.UseDesign(design),
        });

    [Test]
    public void Race11_BarAccessesRacingAMemoryDisable_NeverReachTheDevice_OnBothProfiles(
        [Values] SchedulerMode mode, [ValueSource(nameof(s_seeds))] ulong seed, [ValueSource(nameof(s_profiles))] string profile)
    {
        ScenarioResult r = Run(MemoryDisable, mode, seed, profile);
        Assert.That(r.Outcome, Is.EqualTo(ScenarioOutcome.Passed), r.Describe());
        Assert.That(r.Sim.Machine.Memory.UnsupportedRequests, Is.Zero);
    }

    [Test]
    public void Race11_WithoutMmioBlocking_AnAccessReachesTheDeviceWhileItsDecodeIsOff(
        [ValueSource(nameof(s_seeds))] ulong seed, [ValueSource(nameof(s_profiles))] string profile)
    {
        ScenarioResult r = Run(MemoryDisable, SchedulerMode.Controlled, seed, profile, d => d with { BlockMmioWhileMemoryDisabled = false });
        Assert.That(r.Outcome, Is.EqualTo(ScenarioOutcome.Failed), r.Describe());
        Assert.That(r.Describe(), Does.Contain("memory decode off"), "the load after MEM was cleared did not raise SIGBUS");
        Assert.That(r.Sim.Machine.Memory.UnsupportedRequests, Is.GreaterThan(0), "the stale mapping's load hit the bus with nothing decoding it");
    }

    [Test]
    public void Race11_IoeventfdWritesRacingMemoryLockWriters_AreDeferredNeverDropped_OnBothProfiles(
        [Values] SchedulerMode mode, [ValueSource(nameof(s_seeds))] ulong seed, [ValueSource(nameof(s_profiles))] string profile)
    {
        ScenarioResult r = Run(Ioeventfd, mode, seed, profile);
        Assert.That(r.Outcome, Is.EqualTo(ScenarioOutcome.Passed), r.Describe());
    }

    [Test]
    public void Race11_SomeSeedMakesTheIoeventfdHandlerDeferAWrite()
    {
        long deferred = 0;
        foreach (ulong seed in s_seeds)
        {
            ScenarioResult r = Run(Ioeventfd, SchedulerMode.Controlled, seed, "linux-6.12");
            Assert.That(r.Outcome, Is.EqualTo(ScenarioOutcome.Passed), r.Describe());
            deferred += ((Vfio.Pci.VfioPciCoreDevice)r.Sim.Device("0000:01:00.0").DriverData!).IoeventfdsDeferred;
        }

        Assert.That(deferred, Is.GreaterThan(0), "the seed list exercises the thread path, not only the trylock");
    }

    [Test]
    [LeavesKernelWarnings] // the run reproduces the sleep in atomic context on purpose
    public void Race11_ThePre510IoeventfdHandler_SleepsInAtomicContext([ValueSource(nameof(s_seeds))] ulong seed, [ValueSource(nameof(s_profiles))] string profile)
    {
        ScenarioResult r = Run(Ioeventfd, SchedulerMode.Controlled, seed, profile, d => d with { DeferContendedIoeventfdWrites = false });
        Assert.That(r.Outcome, Is.EqualTo(ScenarioOutcome.Failed), r.Describe());
        Assert.That(r.Describe(), Does.Contain("sleeping function called from invalid context"));
    }

    [Test]
    public void Race12_ConcurrentFaultsAfterAZap_AllSucceed_OneMappingPerPage_OnBothProfiles(
        [Values] SchedulerMode mode, [ValueSource(nameof(s_seeds))] ulong seed, [ValueSource(nameof(s_profiles))] string profile)
    {
        ScenarioResult r = Run(FaultStorm, mode, seed, profile);
        Assert.That(r.Outcome, Is.EqualTo(ScenarioOutcome.Passed), r.Describe());
    }

    [Test]
    public void Race12_ThePre513FaultHandler_GivesASpuriousSigbusOrADuplicateListEntry_ForSomeSeed([ValueSource(nameof(s_profiles))] string profile)
    {
        var failures = new List<string>();
        foreach (ulong seed in s_seeds)
        {
            ScenarioResult r = Run(FaultStorm, SchedulerMode.Controlled, seed, profile, d => d with { HandleConcurrentBarFaults = false });
            if (r.Outcome == ScenarioOutcome.Failed)
            {
                failures.Add(r.Describe());
            }
            else
            {
                Assert.That(r.Outcome, Is.EqualTo(ScenarioOutcome.Passed), r.Describe());
            }
        }

        Assert.That(failures, Is.Not.Empty, "some schedule of the seed list lets two faults race through the 5.8–5.12 handler");
        Assert.That(failures, Has.Some.Contain("signal raised by thread").Or.Some.Contain("vma_list"));
    }
}
