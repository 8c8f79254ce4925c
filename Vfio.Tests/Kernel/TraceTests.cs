using System.Text.Json;
using NUnit.Framework;
using Vfio.Kernel;

namespace Vfio.Tests.Kernel;

public sealed class TraceTests
{
    private static RunResult SmallRun(bool trace)
    {
        SimKernel k = Runs.Kernel(SchedulerMode.Controlled, seed: 2, trace: trace);
        return k.Run(() =>
        {
            var m = new KMutex(k, "m");
            var rc = new RefCount(k, "rc", 1);
            KTask t = k.Spawn("worker \"quoted\"", () => { m.Lock(); rc.Inc(); m.Unlock(); });
            KTask.Msleep(1);
            t.Join();
            rc.DecAndTest();
        });
    }

    [Test]
    public void Json_RoundTrips_ByteForByte()
    {
        RunResult r = SmallRun(trace: true);
        string json = r.Trace.ToJson();
        RunTrace parsed = RunTrace.Parse(json);

        Assert.That(parsed.ToJson(), Is.EqualTo(json));
        Assert.That(parsed.Seed, Is.EqualTo(2UL));
        Assert.That(parsed.Strategy, Is.EqualTo("random"));
        Assert.That(parsed.StepCount, Is.EqualTo(r.Trace.StepCount));
        Assert.That(json, Does.Contain("worker \\u0022quoted\\u0022"));
    }

    [Test]
    public void Parse_RejectsSomethingThatIsNotATrace()
    {
        Assert.That(() => RunTrace.Parse("{\"format\":\"other\"}"), Throws.TypeOf<FormatException>().With.Message.Contains("not a vfio-sim trace"));
        Assert.That(() => RunTrace.Parse("{\"format\":\"vfio-sim-trace\",\"version\":99}"), Throws.TypeOf<FormatException>().With.Message.Contains("version 99 is not supported"));
        Assert.That(() => RunTrace.Parse("not json"), Throws.TypeOf<FormatException>());
    }

    [Test]
    public void Text_HasAHeaderAndOneLinePerRecord()
    {
        RunResult r = SmallRun(trace: false);
        string[] lines = r.Trace.ToText().TrimEnd('\n').Split('\n');

        Assert.That(lines[0], Does.StartWith("# vfio-sim trace v1: seed=2 strategy=random mode=controlled"));
        Assert.That(lines, Has.Length.EqualTo(r.Trace.Records.Count + 1));
        Assert.That(lines.Skip(1).Any(l => l.Contains("mutex_lock") && l.Contains(" m ")), Is.True);
    }

    [Test]
    public void Events_AreRecordedOnlyWhenEnabled()
    {
        Assert.That(SmallRun(trace: false).Trace.Records.Any(x => x.Kind == TraceRecordKind.Event), Is.False);

        var events = SmallRun(trace: true).Trace.Records.Where(x => x.Kind == TraceRecordKind.Event).ToList();
        Assert.That(events.Select(e => e.Op), Does.Contain("task_spawn").And.Contain("refcount_inc").And.Contain("refcount_dec_and_test"));
        Assert.That(events.Single(e => e.Op == "refcount_inc").Detail, Is.EqualTo("1 -> 2"));
        Assert.That(events.Where(e => e.Object == "m").Select(e => e.Op), Is.EqualTo(new[] { "lock_acquire", "lock_release" }));
    }

    [Test]
    public void Tracing_CanBeSwitchedOnMidRun()
    {
        SimKernel k = Runs.Kernel(SchedulerMode.Real);
        RunResult r = k.Run(() =>
        {
            var m = new KMutex(k, "m");
            m.Lock();
            m.Unlock();
            k.Trace.Enabled = true;
            m.Lock();
            m.Unlock();
            k.Trace.Enabled = false;
            m.Lock();
            m.Unlock();
        });

        Assert.That(r.Trace.Records.Select(x => x.Op), Is.EqualTo(new[] { "lock_acquire", "lock_release" }));
    }

    [Test]
    public void ChromeTrace_IsValidJson_WithATrackPerTask()
    {
        string chrome = SmallRun(trace: true).Trace.ToChromeTrace();
        using JsonDocument doc = JsonDocument.Parse(chrome);
        var events = doc.RootElement.GetProperty("traceEvents").EnumerateArray().ToList();

        var names = events.Where(e => e.GetProperty("ph").GetString() == "M")
            .Select(e => e.GetProperty("args").GetProperty("name").GetString()).ToList();
        Assert.That(names, Is.EquivalentTo(new[] { "main/1", "worker \"quoted\"/2" }));
        Assert.That(events.Count(e => e.GetProperty("ph").GetString() == "X"), Is.GreaterThan(1));
        Assert.That(doc.RootElement.GetProperty("metadata").GetProperty("seed").GetUInt64(), Is.EqualTo(2UL));
    }

    [Test]
    public void RealModeEvents_AreRecordedFromEveryThread()
    {
        SimKernel k = Runs.Kernel(SchedulerMode.Real, trace: true);
        RunResult r = k.Run(() =>
        {
            var rc = new RefCount(k, "rc", 1);
            var ts = Enumerable.Range(0, 4).Select(i => k.Spawn($"t{i}", () => { for (int j = 0; j < 50; j++) { rc.Inc(); rc.Dec(); } })).ToList();
            ts.ForEach(t => t.Join());
        });

        Runs.AssertPassed(r);
        Assert.That(r.Trace.Records.Count(x => x.Op == "refcount_inc"), Is.EqualTo(200));
        Assert.That(r.Trace.StepCount, Is.Zero, "real mode has no schedule");
    }
}
