// Tests RunTrace.ToPerfetto (Vfio.Kernel/Tracing/PerfettoTimeline.cs) and the timeline records
// the primitives write with KernelConfig.Timeline: valid trace-event JSON, a track per task,
// hold and sleep spans that nest, wake-up flows from waker to woken, counters, instants for
// WARN, BUG, errno and the finding, byte-for-byte determinism, replay, and nothing recorded
// with the timeline off.

using System.Text.Json;
using NUnit.Framework;
using Vfio.Kernel;

namespace Vfio.Tests.Kernel;

public sealed class PerfettoTests
{
    private static readonly TraceRecordKind[] s_timelineKinds =
    [
        TraceRecordKind.Acquire, TraceRecordKind.Release, TraceRecordKind.Block,
        TraceRecordKind.Unblock, TraceRecordKind.Wake, TraceRecordKind.Counter,
    ];

    private static SimKernel Kernel(ulong seed = 3, bool timeline = true, bool trace = false, SchedulerMode mode = SchedulerMode.Controlled, StrategySpec? strategy = null)
        => new(new KernelConfig
        {
            Mode = mode,
            Seed = seed,
            Strategy = strategy ?? StrategySpec.Random,
            StepBudget = 200_000,
            Trace = trace,
            Timeline = timeline,
            RealWatchdog = TimeSpan.FromSeconds(30),
        });

    /// <summary>
    /// A holds m while it sleeps 10 ms; B waits until A has m, then blocks on it; A's unlock
    /// wakes B. The contention happens under every schedule. A refcount on the timeline
    /// goes 1 → 2 → 1, and B's EBUSY and a WARN (declared expected) are instants.
    /// </summary>
    private static RunResult Contention(SimKernel k) => k.Run(() =>
    {
        var m = new KMutex(k, "m");
        var locked = new Completion(k, "a_has_m");
        var rc = new RefCount(k, "dev.refcount", 1) { OnTimeline = true };
        k.ExpectWarning("timeline test warning");
        KTask a = k.Spawn("A", () =>
        {
            m.Lock();
            rc.Inc();
            locked.Complete();
            KTask.Msleep(10);
            m.Unlock();
            Vfio.Kernel.Warn.On(true, "timeline test warning");
        });
        KTask b = k.Spawn("B", () =>
        {
            locked.Wait();
            m.Lock();
            rc.Dec();
            m.Unlock();
            _ = ErrorReason.Fail(Errno.EBUSY, "TEST_IOCTL: the device is busy (1 user)");
        });
        a.Join();
        b.Join();
    });

    private static List<JsonElement> Events(string perfetto)
    {
        using JsonDocument doc = JsonDocument.Parse(perfetto);
        return [.. doc.RootElement.GetProperty("traceEvents").EnumerateArray().Select(e => e.Clone())];
    }

    private static string Ph(JsonElement e) => e.GetProperty("ph").GetString()!;

    private static string? Name(JsonElement e) => e.TryGetProperty("name", out JsonElement n) ? n.GetString() : null;

    private static string? Cat(JsonElement e) => e.TryGetProperty("cat", out JsonElement c) ? c.GetString() : null;

    private static int Tid(JsonElement e) => e.GetProperty("tid").GetInt32();

    private static decimal Ts(JsonElement e) => e.GetProperty("ts").GetDecimal();

    private static int TidOf(List<JsonElement> events, string threadName)
        => events.Single(e => Ph(e) == "M" && Name(e) == "thread_name" && e.GetProperty("args").GetProperty("name").GetString() == threadName).GetProperty("tid").GetInt32();

    /// <summary>Every thread's B/E events balance and nest, and no event goes back in time on its thread.</summary>
    private static void AssertSpansNest(List<JsonElement> events)
    {
        foreach (IGrouping<int, JsonElement> thread in events.Where(e => Ph(e) is "B" or "E").GroupBy(Tid))
        {
            int depth = 0;
            decimal last = -1;
            foreach (JsonElement e in thread)
            {
                Assert.That(Ts(e), Is.GreaterThanOrEqualTo(last), $"tid {thread.Key}: events go back in time");
                last = Ts(e);
                depth += Ph(e) == "B" ? 1 : -1;
                Assert.That(depth, Is.GreaterThanOrEqualTo(0), $"tid {thread.Key}: an E without its B");
            }

            Assert.That(depth, Is.Zero, $"tid {thread.Key}: a span is never closed");
        }
    }

    [Test]
    public void Perfetto_IsTraceEventJson_WithMetadata()
    {
        string json = Contention(Kernel()).Trace.ToPerfetto();
        using JsonDocument doc = JsonDocument.Parse(json);

        Assert.That(doc.RootElement.GetProperty("traceEvents").GetArrayLength(), Is.GreaterThan(10));
        Assert.That(doc.RootElement.GetProperty("metadata").GetProperty("seed").GetUInt64(), Is.EqualTo(3UL));
        Assert.That(doc.RootElement.GetProperty("metadata").GetProperty("format").GetString(), Is.EqualTo("vfio-sim-timeline"));
        foreach (JsonElement e in doc.RootElement.GetProperty("traceEvents").EnumerateArray())
        {
            Assert.That(Ph(e), Is.AnyOf("M", "B", "E", "X", "i", "C"));
            Assert.That(e.TryGetProperty("pid", out _) && e.TryGetProperty("tid", out _), Is.True, e.ToString());
        }
    }

    [Test]
    public void TwoTasksContendingAMutex_GiveATrackPerTask_AHold_ABlockedWait_AndAFlowFromUnlockerToWoken([Values(1UL, 2UL, 3UL, 4UL)] ulong seed)
    {
        RunResult r = Contention(Kernel(seed));
        Runs.AssertPassed(r);
        List<JsonElement> events = Events(r.Trace.ToPerfetto());
        int a = TidOf(events, "A/2");
        int b = TidOf(events, "B/3");

        Assert.That(events.Count(e => Ph(e) == "M" && Name(e) == "thread_name"), Is.EqualTo(4), "main, A, B and the kernel thread");
        Assert.That(events.Any(e => Ph(e) == "B" && Tid(e) == a && Cat(e) == "lock" && Name(e) == "m"), Is.True, "A's hold of m");
        Assert.That(events.Any(e => Ph(e) == "B" && Tid(e) == b && Cat(e) == "blocked" && Name(e) == "blocked on m"), Is.True, "B's wait for m");
        Assert.That(events.Any(e => Ph(e) == "B" && Tid(e) == b && Cat(e) == "lock" && Name(e) == "m"), Is.True, "B's hold of m after A's unlock");

        JsonElement wake = events.Single(e => Ph(e) == "X" && Tid(e) == a && Name(e) == "wakes B/3");
        long flow = wake.GetProperty("bind_id").GetInt64();
        Assert.That(wake.GetProperty("flow_out").GetBoolean(), Is.True);
        Assert.That(wake.GetProperty("args").GetProperty("object").GetString(), Is.EqualTo("m"));
        JsonElement woken = events.Single(e => Ph(e) == "X" && e.TryGetProperty("bind_id", out JsonElement id) && id.GetInt64() == flow && e.TryGetProperty("flow_in", out _));
        Assert.That(Tid(woken), Is.EqualTo(b));
        Assert.That(Name(woken), Is.EqualTo("woken by A/2"));
        Assert.That(Ts(woken), Is.GreaterThan(Ts(wake)));
        AssertSpansNest(events);
    }

    [Test]
    public void EveryFlow_HasOneStartAndOneEnd()
    {
        List<JsonElement> events = Events(Contention(Kernel()).Trace.ToPerfetto());
        var outs = events.Where(e => e.TryGetProperty("flow_out", out _)).Select(e => e.GetProperty("bind_id").GetInt64()).ToList();
        var ins = events.Where(e => e.TryGetProperty("flow_in", out _)).Select(e => e.GetProperty("bind_id").GetInt64()).ToList();

        Assert.That(outs, Is.Unique.And.Not.Empty);
        Assert.That(ins, Is.EquivalentTo(outs), "each wake-up arrow ends where the woken task resumes");
    }

    [Test]
    public void ASignalThatInterruptsASleep_IsAnArrowFromTheSender()
    {
        SimKernel k = Kernel();
        int ret = 0;
        RunResult r = k.Run(() =>
        {
            var never = new Completion(k, "never");
            KTask b = k.Spawn("B", () => ret = never.WaitInterruptible());
            while (b.State != TaskState.Blocked)
            {
                KTask.Schedule();
            }

            b.SendSignal(10);
            b.Join();
        });
        Runs.AssertPassed(r);
        List<JsonElement> events = Events(r.Trace.ToPerfetto());

        Assert.That(ret, Is.EqualTo(Errno.ERESTARTSYS.Negative()));
        JsonElement wake = events.Single(e => Ph(e) == "X" && Name(e) == "wakes B/2");
        Assert.That(Tid(wake), Is.EqualTo(TidOf(events, "main/1")));
        Assert.That(wake.GetProperty("args").GetProperty("object").GetString(), Is.EqualTo("signal 10"));
        long flow = wake.GetProperty("bind_id").GetInt64();
        Assert.That(events.Count(e => Ph(e) == "X" && Tid(e) == TidOf(events, "B/2") && e.TryGetProperty("flow_in", out _) && e.GetProperty("bind_id").GetInt64() == flow), Is.EqualTo(1));
    }

    [Test]
    public void ARefcountOnTheTimeline_IsACounterTrack_WithEveryValue()
    {
        List<JsonElement> events = Events(Contention(Kernel()).Trace.ToPerfetto());
        var values = events.Where(e => Ph(e) == "C" && Name(e) == "dev.refcount").Select(e => e.GetProperty("args").GetProperty("value").GetInt64()).ToList();

        Assert.That(values, Is.EqualTo(new long[] { 2, 1 }));
    }

    [Test]
    public void AWarnAndAnErrno_AreInstants_OnTheTaskThatHitThem()
    {
        List<JsonElement> events = Events(Contention(Kernel()).Trace.ToPerfetto());
        int a = TidOf(events, "A/2");
        int b = TidOf(events, "B/3");

        JsonElement warn = events.Single(e => Ph(e) == "i" && Cat(e) == "warning");
        Assert.That(Tid(warn), Is.EqualTo(a));
        Assert.That(Name(warn), Does.StartWith("WARNING: ").And.Contain("timeline test warning"));

        JsonElement errno = events.Single(e => Ph(e) == "i" && Cat(e) == "errno");
        Assert.That(Tid(errno), Is.EqualTo(b));
        Assert.That(Name(errno), Is.EqualTo("-EBUSY"));
        Assert.That(errno.GetProperty("args").GetProperty("reason").GetString(), Is.EqualTo("TEST_IOCTL: the device is busy (1 user)"));
    }

    [Test]
    public void AKernelBug_IsAnInstant_AndTheFindingIsAGlobalInstantAtTheEnd()
    {
        SimKernel k = Kernel();
        RunResult r = k.Run(() =>
        {
            var m = new KMutex(k, "m");
            m.Lock();
            Bug.On(true, "list corruption in test");
        });
        Assert.That(r.Outcome, Is.EqualTo(RunOutcome.Panic));
        List<JsonElement> events = Events(r.Trace.ToPerfetto("Panic: kernel BUG (list corruption in test)\nsecond line"));

        JsonElement bug = events.Single(e => Ph(e) == "i" && Cat(e) == "bug");
        Assert.That(Name(bug), Does.StartWith("kernel BUG at ").And.Contain("list corruption in test"));
        JsonElement finding = events.Single(e => Cat(e) == "finding");
        Assert.That(finding.GetProperty("s").GetString(), Is.EqualTo("g"));
        Assert.That(Name(finding), Is.EqualTo("finding: Panic: kernel BUG (list corruption in test)"));
        Assert.That(finding.GetProperty("args").GetProperty("report").GetString(), Does.EndWith("second line"));
        Assert.That(Ts(finding), Is.GreaterThanOrEqualTo(events.Where(e => e.TryGetProperty("ts", out _)).Max(Ts)));
        AssertSpansNest(events); // m's hold, open when the task died, is closed at the end.
    }

    [Test]
    public void HoldsReleasedOutOfOrder_AreSplitSoSpansNest()
    {
        SimKernel k = Kernel();
        RunResult r = k.Run(() =>
        {
            var first = new KMutex(k, "first");
            var second = new RwSemaphore(k, "second");
            first.Lock();
            second.DownRead();
            first.Unlock();
            second.UpRead();
        });
        Runs.AssertPassed(r);
        List<JsonElement> events = Events(r.Trace.ToPerfetto());

        AssertSpansNest(events);
        Assert.That(events.Where(e => Ph(e) == "B").Select(Name), Is.EqualTo(new[] { "first", "second (read)", "second (read)" }), "second is closed with first and reopened");
    }

    [Test]
    public void ATaskThatRunsForAProcess_IsTrackedInThatProcess()
    {
        SimKernel k = Kernel();
        RunResult r = k.Run(() =>
        {
            var m = new KMutex(k, "m");
            KTask t = k.Spawn("qemu-vcpu", () => { m.Lock(); m.Unlock(); }, new FakeProcess(42, "qemu"));
            t.Join();
        });
        Runs.AssertPassed(r);
        List<JsonElement> events = Events(r.Trace.ToPerfetto());

        Assert.That(events.Any(e => Ph(e) == "M" && Name(e) == "process_name" && e.GetProperty("pid").GetInt32() == 42 && e.GetProperty("args").GetProperty("name").GetString() == "qemu"), Is.True);
        Assert.That(events.Single(e => Ph(e) == "M" && Name(e) == "thread_name" && e.GetProperty("args").GetProperty("name").GetString() == "qemu-vcpu/2").GetProperty("pid").GetInt32(), Is.EqualTo(42));
        Assert.That(events.Single(e => Ph(e) == "M" && Name(e) == "thread_name" && e.GetProperty("args").GetProperty("name").GetString() == "main/1").GetProperty("pid").GetInt32(), Is.EqualTo(PerfettoTimeline.KernelPid));
    }

    [Test]
    public void TheAxis_IsVirtualTimePlusAMicrosecondPerStep_AndEveryRecordHasItsOwnInstant()
    {
        RunResult r = Contention(Kernel());
        List<JsonElement> events = Events(r.Trace.ToPerfetto());
        TraceRecord sleepEnd = r.Trace.Records.First(x => x.Kind == TraceRecordKind.Unblock && x.Op == "wake_up_process" && x.Object is null);

        // A's msleep(10) ends once virtual time reached 10 ms: from there the axis is past 10 000 µs.
        Assert.That(sleepEnd.TimeNs, Is.GreaterThanOrEqualTo(10_000_000));
        decimal last = -1;
        foreach (JsonElement e in events.Where(e => Ph(e) != "M"))
        {
            Assert.That(Ts(e), Is.GreaterThanOrEqualTo(last), "the axis keeps the trace's order");
            Assert.That(Ts(e) * 8, Is.EqualTo(decimal.Truncate(Ts(e) * 8)), "ts is a multiple of 1/8 µs, exact as a double");
            last = Ts(e);
        }

        decimal wokenAt = Ts(events.First(e => Ph(e) == "E" && Tid(e) == TidOf(events, "A/2") && Ts(e) >= sleepEnd.TimeNs / 1000m));
        Assert.That(wokenAt, Is.GreaterThanOrEqualTo((sleepEnd.TimeNs / 1000m) + sleepEnd.Step));
        Assert.That(last, Is.GreaterThan(wokenAt));
    }

    [Test]
    public void TheSameRunTwice_GivesTheSameBytes()
    {
        string first = Contention(Kernel(seed: 9, strategy: StrategySpec.Pct(3, 500))).Trace.ToPerfetto("finding");
        string second = Contention(Kernel(seed: 9, strategy: StrategySpec.Pct(3, 500))).Trace.ToPerfetto("finding");

        Assert.That(second, Is.EqualTo(first));
    }

    [Test]
    public void AReplayedRun_GivesTheSameTimeline_AndSoDoesItsTraceFileAfterParsing()
    {
        RunResult original = Contention(Kernel(seed: 5));
        RunTrace parsed = RunTrace.Parse(original.Trace.ToJson());
        RunResult replayed = Contention(Kernel(timeline: true, strategy: StrategySpec.Replay(parsed)));

        Runs.AssertPassed(replayed);
        Assert.That(parsed.ToPerfetto(), Is.EqualTo(original.Trace.ToPerfetto()));
        Assert.That(replayed.Trace.ToPerfetto(), Is.EqualTo(original.Trace.ToPerfetto()));
    }

    [Test]
    public void WithTheTimelineOff_NoTimelineRecordIsWritten([Values] bool trace)
    {
        RunResult r = Contention(Kernel(timeline: false, trace: trace));

        Runs.AssertPassed(r);
        Assert.That(r.Trace.Records.Where(x => s_timelineKinds.Contains(x.Kind)), Is.Empty);
        Assert.That(r.Trace.Records.Any(x => x.Op == "bug"), Is.False);
    }

    [Test]
    public void WithTheTimelineOn_LockEventsBecomeHoldRecords()
    {
        RunResult r = Contention(Kernel());

        Assert.That(r.Trace.Records.Where(x => x.Kind == TraceRecordKind.Event).Select(x => x.Op), Has.None.EqualTo("lock_acquire"));
        Assert.That(r.Trace.Records.First(x => x.Kind == TraceRecordKind.Acquire).Detail, Is.EqualTo("mutex"));
        Assert.That(r.Trace.Records.Any(x => x.Kind == TraceRecordKind.Wake && x.Object == "m" && x.Task == "A/2" && x.NextTaskId == 3), Is.True, "A's unlock wakes B");
    }

    [Test]
    public void ATraceWithoutTheTimeline_StillShowsItsHoldsAndInstants()
    {
        List<JsonElement> events = Events(Contention(Kernel(timeline: false, trace: true)).Trace.ToPerfetto());

        Assert.That(events.Count(e => Ph(e) == "B" && Cat(e) == "lock"), Is.EqualTo(2));
        Assert.That(events.Any(e => Cat(e) == "errno"), Is.True);
        Assert.That(events.Any(e => Cat(e) == "blocked" || Cat(e) == "wake" || Ph(e) == "C"), Is.False);
        AssertSpansNest(events);
    }

    [Test]
    public void WithRealThreads_TheTimelineIsRecordedAndRenders()
    {
        RunResult r = Contention(Kernel(mode: SchedulerMode.Real));
        Runs.AssertPassed(r);
        List<JsonElement> events = Events(r.Trace.ToPerfetto());

        // Whether B sleeps on m depends on the threads' timing; the holds and the join waits do not.
        Assert.That(events.Count(e => Ph(e) == "B" && Cat(e) == "lock" && Name(e) == "m"), Is.EqualTo(2));
        Assert.That(r.Trace.Records.Count(x => x.Kind == TraceRecordKind.Counter), Is.EqualTo(2));
        AssertSpansNest(events);
    }

    private sealed class FakeProcess(int pid, string comm) : IProcessIdentity
    {
        public int Pid { get; } = pid;

        public string Comm { get; } = comm;
    }
}
