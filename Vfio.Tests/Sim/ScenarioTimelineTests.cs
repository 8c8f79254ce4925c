// Tests the timeline of catalogue scenarios (ScenarioOptions.Timeline, RunTrace.ToPerfetto):
// the counters vfio and the mm feed (registration refcount, container_users, locked_vm,
// pinned pages) appear with the values the scenario goes through, errnos are instants, the
// tasks of a process sit in that process, and two runs give the same bytes.

using System.Text.Json;
using NUnit.Framework;
using Vfio.Kernel;
using Vfio.Sim.Scenarios;

namespace Vfio.Tests.Sim;

public sealed class ScenarioTimelineTests
{
    private static ScenarioResult UnbindRequest(ulong seed = 1)
        => ScenarioCatalog.Default.Get("unbind-request").Run(new ScenarioOptions { Seed = seed, Timeline = true });

    private static List<JsonElement> Events(string perfetto)
    {
        using JsonDocument doc = JsonDocument.Parse(perfetto);
        return [.. doc.RootElement.GetProperty("traceEvents").EnumerateArray().Select(e => e.Clone())];
    }

    private static string Ph(JsonElement e) => e.GetProperty("ph").GetString()!;

    private static string? Name(JsonElement e) => e.TryGetProperty("name", out JsonElement n) ? n.GetString() : null;

    private static string? Cat(JsonElement e) => e.TryGetProperty("cat", out JsonElement c) ? c.GetString() : null;

    private static List<long> Counter(List<JsonElement> events, Func<string, bool> name)
        => [.. events.Where(e => Ph(e) == "C" && name(Name(e)!)).Select(e => e.GetProperty("args").GetProperty("value").GetInt64())];

    [Test]
    public void UnbindRequest_ShowsTheCountersOfVfioAndTheMm([Values(1UL, 2UL, 3UL)] ulong seed)
    {
        ScenarioResult r = UnbindRequest(seed);
        Assert.That(r.Outcome, Is.EqualTo(ScenarioOutcome.Passed), r.Describe());
        List<JsonElement> events = Events(r.Trace!.ToPerfetto());

        List<long> pinned = Counter(events, n => n == "pinned_pages");
        Assert.That(pinned, Is.Not.Empty, "MAP_DMA pins and the release unpins");
        Assert.That(pinned.Max() - pinned[^1], Is.GreaterThanOrEqualTo(16), "the buffer's 16 pages are pinned, then released");

        List<long> lockedVm = Counter(events, n => n.StartsWith("mm[", StringComparison.Ordinal) && n.EndsWith("].locked_vm", StringComparison.Ordinal));
        Assert.That(lockedVm, Does.Contain(16L), "MAP_DMA charges 16 pages");
        Assert.That(lockedVm[^1], Is.Zero, "the release uncharges them");

        List<long> users = Counter(events, n => n.StartsWith("vfio_group[", StringComparison.Ordinal) && n.EndsWith("].container_users", StringComparison.Ordinal));
        Assert.That(users, Does.Contain(1L).And.Contain(2L), "1 while attached, 2 with the device open");
        Assert.That(users[^1], Is.Zero, "the group leaves its container");

        List<long> registration = Counter(events, n => n.EndsWith(".refcount", StringComparison.Ordinal) && n.StartsWith("vfio", StringComparison.Ordinal));
        Assert.That(registration, Does.Contain(2L), "the open device holds a registration reference");
        Assert.That(registration[^1], Is.Zero, "the unbind drops the last one");

        List<long> containerRefs = Counter(events, n => n.StartsWith("vfio_container[", StringComparison.Ordinal) && n.EndsWith("].kref", StringComparison.Ordinal));
        Assert.That(containerRefs, Is.Not.Empty, "the container's users: its fd and the attached group");
        Assert.That(containerRefs[^1], Is.Zero, "the container is released");

        List<long> groupRefs = Counter(events, n => n.StartsWith("vfio_group[", StringComparison.Ordinal) && n.EndsWith("].dev.kobj", StringComparison.Ordinal));
        Assert.That(groupRefs, Is.Not.Empty, "the group's users: its fd, devices, the unbind's removal");
    }

    [Test]
    public void UnbindRequest_ShowsTheUnbindBlockedUntilTheUserReleases_AndAWakeUpOfIt()
    {
        ScenarioResult r = UnbindRequest();
        List<JsonElement> events = Events(r.Trace!.ToPerfetto());
        int unbind = events.Single(e => Ph(e) == "M" && Name(e) == "thread_name" && e.GetProperty("args").GetProperty("name").GetString()!.StartsWith("unbind/", StringComparison.Ordinal)).GetProperty("tid").GetInt32();

        Assert.That(events.Any(e => Ph(e) == "B" && Cat(e) == "blocked" && e.GetProperty("tid").GetInt32() == unbind), Is.True, "the unbind sleeps");
        Assert.That(events.Any(e => Ph(e) == "X" && Cat(e) == "wake" && e.GetProperty("tid").GetInt32() == unbind && e.TryGetProperty("flow_in", out _)), Is.True, "and is woken");
        Assert.That(events.Any(e => Ph(e) == "B" && Cat(e) == "lock"), Is.True);
    }

    [Test]
    public void TheTasksOfAProcess_SitInThatProcess()
    {
        List<JsonElement> events = Events(UnbindRequest().Trace!.ToPerfetto());
        var processes = events.Where(e => Ph(e) == "M" && Name(e) == "process_name").Select(e => e.GetProperty("args").GetProperty("name").GetString()).ToList();
        JsonElement handler = events.Single(e => Ph(e) == "M" && Name(e) == "thread_name" && e.GetProperty("args").GetProperty("name").GetString()!.StartsWith("req-handler/", StringComparison.Ordinal));
        JsonElement qemu = events.Single(e => Ph(e) == "M" && Name(e) == "process_name" && e.GetProperty("args").GetProperty("name").GetString() == "qemu");

        Assert.That(processes, Does.Contain("kernel").And.Contain("qemu").And.Contain("admin"));
        Assert.That(handler.GetProperty("pid").GetInt32(), Is.EqualTo(qemu.GetProperty("pid").GetInt32()));
    }

    [Test]
    public void Errnos_AreInstantsWithTheirReasons_OnTheTaskThatGotThem()
    {
        // getfd-vs-unregister: GET_DEVICE_FD after the device left its group is ENODEV, and says why.
        ScenarioResult r = ScenarioCatalog.Default.Get("getfd-vs-unregister").Run(new ScenarioOptions { Seed = 1, Timeline = true });
        Assert.That(r.Outcome, Is.EqualTo(ScenarioOutcome.Passed), r.Describe());
        List<JsonElement> events = Events(r.Trace!.ToPerfetto());
        var errnos = events.Where(e => Ph(e) == "i" && Cat(e) == "errno").ToList();
        var recorded = r.Trace.Records.Where(x => x.Kind == TraceRecordKind.Event && x.Op == "errno").ToList();

        Assert.That(recorded, Is.Not.Empty);
        Assert.That(errnos.Select(Name), Is.EqualTo(recorded.Select(x => "-" + x.Object)));
        Assert.That(errnos.Select(e => e.GetProperty("args").GetProperty("reason").GetString()), Is.EqualTo(recorded.Select(x => x.Detail)));
        Assert.That(errnos.Select(Name), Does.Contain("-ENODEV"));
        Assert.That(errnos.Select(e => e.GetProperty("tid").GetInt32()), Is.EqualTo(recorded.Select(x => PerfettoTimeline.KernelPid + x.TaskId)));
    }

    [Test]
    public void TwoRunsWithOneSeed_GiveTheSameTimeline_ByteForByte()
    {
        string first = UnbindRequest(7).Trace!.ToPerfetto("none");
        string second = UnbindRequest(7).Trace!.ToPerfetto("none");

        Assert.That(second, Is.EqualTo(first));
    }

    [Test]
    public void AReplayOfTheScenario_GivesTheSameTimeline()
    {
        ScenarioResult original = UnbindRequest(4);
        Scenario s = ScenarioCatalog.Default.Get("unbind-request");
        ScenarioResult replayed = s.Replay(RunTrace.Parse(original.Trace!.ToJson()), new ScenarioOptions { Timeline = true });

        Assert.That(replayed.Outcome, Is.EqualTo(ScenarioOutcome.Passed), replayed.Describe());
        Assert.That(replayed.Trace!.ToPerfetto(), Is.EqualTo(original.Trace.ToPerfetto()));
    }

    [Test]
    public void WithoutTheTimeline_TheScenarioRecordsNoTimelineRecord()
    {
        ScenarioResult r = ScenarioCatalog.Default.Get("unbind-request").Run(new ScenarioOptions { Seed = 1 });

        Assert.That(r.Trace!.Records.Where(x => x.Kind is TraceRecordKind.Acquire or TraceRecordKind.Release or TraceRecordKind.Block
            or TraceRecordKind.Unblock or TraceRecordKind.Wake or TraceRecordKind.Counter), Is.Empty);
    }
}
