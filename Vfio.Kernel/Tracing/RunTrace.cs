// A finished run's trace: the header that reproduces it (seed, strategy, profile,
// budget) and its records. Renders as one line per record, as JSON (one record per line,
// byte-for-byte deterministic for a given seed), as the old Chrome trace (a slice per
// stretch a task ran) and as a Perfetto timeline (PerfettoTimeline.cs). The timeline's
// record kinds (acquire, release, block, unblock, wake, counter) were added to format
// version 1 without a bump: files without them read as before, and a build older than
// them rejects a file that has them with "unknown kind".

using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Vfio.Kernel;

/// <summary>The trace of one run: replay it with <see cref="StrategySpec.Replay"/>.</summary>
public sealed class RunTrace
{
    /// <summary>The JSON format version this build writes and reads.</summary>
    public const int CurrentVersion = 1;

    private readonly IReadOnlyList<TraceRecord> _records;

    internal RunTrace(int version, ulong seed, string strategy, SchedulerMode mode, string profile, long stepBudget, RunOutcome outcome, IReadOnlyList<TraceRecord> records)
    {
        Version = version;
        Seed = seed;
        Strategy = strategy;
        Mode = mode;
        Profile = profile;
        StepBudget = stepBudget;
        Outcome = outcome;
        _records = records;
        long steps = 0;
        foreach (TraceRecord r in records)
        {
            if (r.Kind == TraceRecordKind.Step)
            {
                steps++;
            }
        }

        StepCount = steps;
    }

    /// <summary>Format version.</summary>
    public int Version { get; }

    /// <summary>The run's seed.</summary>
    public ulong Seed { get; }

    /// <summary>The strategy that produced the schedule (<c>pct(d=3,k=200)</c>).</summary>
    public string Strategy { get; }

    /// <summary>Scheduler mode of the run.</summary>
    public SchedulerMode Mode { get; }

    /// <summary>Kernel profile name.</summary>
    public string Profile { get; }

    /// <summary>The step budget the run had.</summary>
    public long StepBudget { get; }

    /// <summary>How the run ended.</summary>
    public RunOutcome Outcome { get; }

    /// <summary>Every record in order.</summary>
    public IReadOnlyList<TraceRecord> Records => _records;

    /// <summary>Number of scheduling steps.</summary>
    public long StepCount { get; }

    /// <summary>The scheduling steps and clock jumps: what a replay follows.</summary>
    public IEnumerable<TraceRecord> Schedule => _records.Where(r => r.Kind is TraceRecordKind.Step or TraceRecordKind.Clock);

    /// <summary>The fault-injection decisions, in order.</summary>
    public IEnumerable<TraceRecord> FaultDecisions => _records.Where(r => r.Kind == TraceRecordKind.Fault);

    // ---- Text.

    /// <summary>One line per record, for people.</summary>
    public string ToText()
    {
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"# vfio-sim trace v{Version}: seed={Seed} strategy={Strategy} mode={Mode.ToString().ToLowerInvariant()} profile={Profile} budget={StepBudget} outcome={Outcome}\n");
        foreach (TraceRecord r in _records)
        {
            AppendLine(sb, r);
            sb.Append('\n');
        }

        return sb.ToString();
    }

    internal static void AppendLine(StringBuilder sb, TraceRecord r)
    {
        string time = SimClock.FormatNs(r.TimeNs);
        switch (r.Kind)
        {
            case TraceRecordKind.Step:
                sb.Append(CultureInfo.InvariantCulture, $"#{r.Step:D6} t={time} {r.Task,-16} {r.Op,-24} {r.Object ?? "-",-32} -> {(r.NextTaskId == 0 ? "(none)" : r.NextTaskId.ToString(CultureInfo.InvariantCulture))}");
                break;
            case TraceRecordKind.Clock:
                sb.Append(CultureInfo.InvariantCulture, $"#{r.Step:D6} t={time} {"kernel",-16} clock advances (every task is asleep)");
                break;
            default:
                sb.Append(CultureInfo.InvariantCulture, $"  {r.Kind.ToString().ToLowerInvariant(),-5} t={time} {r.Task,-16} {r.Op,-24} {r.Object ?? "-",-32} {r.Detail}");
                break;
        }
    }

    // ---- JSON.

    /// <summary>
    /// The trace as JSON: a header object with a <c>records</c> array, one record per line.
    /// Deterministic: the same run gives the same bytes.
    /// </summary>
    public string ToJson()
    {
        var sb = new StringBuilder();
        sb.Append("{\n");
        sb.Append(CultureInfo.InvariantCulture, $"  \"format\": \"vfio-sim-trace\",\n  \"version\": {Version},\n  \"seed\": {Seed},\n");
        sb.Append(CultureInfo.InvariantCulture, $"  \"strategy\": {Quote(Strategy)},\n  \"mode\": {Quote(Mode.ToString().ToLowerInvariant())},\n");
        sb.Append(CultureInfo.InvariantCulture, $"  \"profile\": {Quote(Profile)},\n  \"stepBudget\": {StepBudget},\n  \"outcome\": {Quote(Outcome.ToString())},\n");
        sb.Append("  \"records\": [");
        var buffer = new ArrayBufferWriter<byte>(256);
        for (int i = 0; i < _records.Count; i++)
        {
            TraceRecord r = _records[i];
            buffer.Clear();
            using (var w = new Utf8JsonWriter(buffer))
            {
                w.WriteStartObject();
                w.WriteString("k", r.Kind.ToString().ToLowerInvariant());
                w.WriteNumber("s", r.Step);
                w.WriteNumber("t", r.TimeNs);
                w.WriteNumber("id", r.TaskId);
                w.WriteString("task", r.Task);
                w.WriteString("op", r.Op);
                if (r.Object is not null)
                {
                    w.WriteString("obj", r.Object);
                }

                if (r.Kind is TraceRecordKind.Step or TraceRecordKind.Wake)
                {
                    w.WriteNumber("next", r.NextTaskId);
                }

                if (r.Detail is not null)
                {
                    w.WriteString("detail", r.Detail);
                }

                w.WriteEndObject();
            }

            sb.Append(i == 0 ? "\n    " : ",\n    ");
            sb.Append(Encoding.UTF8.GetString(buffer.WrittenSpan));
        }

        sb.Append(_records.Count == 0 ? "]\n}\n" : "\n  ]\n}\n");
        return sb.ToString();
    }

    private static string Quote(string s)
    {
        var buffer = new ArrayBufferWriter<byte>(s.Length + 8);
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStringValue(s);
        }

        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    /// <summary>Reads a trace written by <see cref="ToJson"/>.</summary>
    /// <exception cref="FormatException">The text is not a vfio-sim trace of a version this build reads.</exception>
    public static RunTrace Parse(string json)
    {
        ArgumentNullException.ThrowIfNull(json);
        try
        {
            using JsonDocument doc = JsonDocument.Parse(json);
            JsonElement root = doc.RootElement;
            if (!root.TryGetProperty("format", out JsonElement fmt) || fmt.GetString() != "vfio-sim-trace")
            {
                throw new FormatException("not a vfio-sim trace: the \"format\" field must be \"vfio-sim-trace\"");
            }

            int version = root.GetProperty("version").GetInt32();
            if (version != CurrentVersion)
            {
                throw new FormatException($"trace format version {version} is not supported; this build reads version {CurrentVersion}");
            }

            var records = new List<TraceRecord>();
            foreach (JsonElement e in root.GetProperty("records").EnumerateArray())
            {
                string kindText = e.GetProperty("k").GetString()!;
                if (!Enum.TryParse(kindText, ignoreCase: true, out TraceRecordKind kind))
                {
                    throw new FormatException($"record {records.Count}: unknown kind '{kindText}'");
                }

                records.Add(new TraceRecord(
                    records.Count,
                    kind,
                    e.GetProperty("s").GetInt64(),
                    e.GetProperty("t").GetInt64(),
                    e.GetProperty("id").GetInt32(),
                    e.GetProperty("task").GetString()!,
                    e.GetProperty("op").GetString()!,
                    e.TryGetProperty("obj", out JsonElement o) ? o.GetString() : null,
                    e.TryGetProperty("next", out JsonElement n) ? n.GetInt32() : 0,
                    e.TryGetProperty("detail", out JsonElement d) ? d.GetString() : null));
            }

            string mode = root.GetProperty("mode").GetString()!;
            return new RunTrace(
                version,
                root.GetProperty("seed").GetUInt64(),
                root.GetProperty("strategy").GetString()!,
                Enum.Parse<SchedulerMode>(mode, ignoreCase: true),
                root.GetProperty("profile").GetString()!,
                root.GetProperty("stepBudget").GetInt64(),
                Enum.Parse<RunOutcome>(root.GetProperty("outcome").GetString()!, ignoreCase: true),
                records);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or ArgumentException)
        {
            throw new FormatException($"malformed vfio-sim trace: {e.Message}", e);
        }
    }

    // ---- Chrome / Perfetto.

    /// <summary>
    /// The trace in the Chrome trace-event format (open in Perfetto or chrome://tracing):
    /// one track per task, a slice for each stretch a task ran, instants for events,
    /// faults and warnings. Controlled runs use one microsecond per scheduling step as the
    /// time axis (virtual time rarely moves); real runs use virtual time.
    /// </summary>
    public string ToChromeTrace()
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = false }))
        {
            w.WriteStartObject();
            w.WriteStartArray("traceEvents");
            var names = new SortedDictionary<int, string>();
            foreach (TraceRecord r in _records)
            {
                if (r.TaskId != 0)
                {
                    names[r.TaskId] = r.Task;
                }
            }

            foreach ((int id, string name) in names)
            {
                w.WriteStartObject();
                w.WriteString("ph", "M");
                w.WriteString("name", "thread_name");
                w.WriteNumber("pid", 1);
                w.WriteNumber("tid", id);
                w.WriteStartObject("args");
                w.WriteString("name", name);
                w.WriteEndObject();
                w.WriteEndObject();
            }

            bool bySteps = Mode == SchedulerMode.Controlled;
            int runningTask = 0;
            long sliceStart = 0;
            foreach (TraceRecord r in _records)
            {
                long ts = bySteps ? r.Step : r.TimeNs / 1000;
                if (r.Kind == TraceRecordKind.Step)
                {
                    if (runningTask == 0)
                    {
                        runningTask = r.TaskId;
                        sliceStart = Math.Max(0, ts - 1);
                    }

                    if (r.NextTaskId != r.TaskId)
                    {
                        WriteSlice(w, runningTask, sliceStart, ts, r.Op);
                        runningTask = r.NextTaskId;
                        sliceStart = ts;
                    }

                    continue;
                }

                w.WriteStartObject();
                w.WriteString("ph", "i");
                w.WriteString("s", "t");
                w.WriteString("name", r.Object is null ? r.Op : $"{r.Op} {r.Object}");
                w.WriteString("cat", r.Kind.ToString().ToLowerInvariant());
                w.WriteNumber("pid", 1);
                w.WriteNumber("tid", r.TaskId);
                w.WriteNumber("ts", ts);
                w.WriteStartObject("args");
                w.WriteNumber("virtual_ns", r.TimeNs);
                if (r.Detail is not null)
                {
                    w.WriteString("detail", r.Detail);
                }

                w.WriteEndObject();
                w.WriteEndObject();
            }

            w.WriteEndArray();
            w.WriteStartObject("metadata");
            w.WriteNumber("seed", Seed);
            w.WriteString("strategy", Strategy);
            w.WriteString("outcome", Outcome.ToString());
            w.WriteEndObject();
            w.WriteEndObject();
        }

        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    /// <summary>
    /// The run as a Perfetto timeline (Chrome trace-event JSON that ui.perfetto.dev opens):
    /// virtual time on the axis (plus one microsecond per scheduling step), one track per
    /// task grouped by process, spans for lock holds and sleeps, flow arrows from each
    /// wake-up to the woken task, counter tracks, and instants for errnos, warnings, BUGs
    /// and <paramref name="finding"/>, the detector's report, when given. Holds, sleeps,
    /// wake-ups and counters need <see cref="KernelConfig.Timeline"/>; a trace recorded
    /// without it gives the instants and, with tracing on, the lock holds. The same trace
    /// gives the same bytes.
    /// </summary>
    public string ToPerfetto(string? finding = null) => PerfettoTimeline.Render(this, finding);

    private static void WriteSlice(Utf8JsonWriter w, int task, long start, long end, string name)
    {
        if (task == 0)
        {
            return;
        }

        w.WriteStartObject();
        w.WriteString("ph", "X");
        w.WriteString("name", $"runs until {name}");
        w.WriteNumber("pid", 1);
        w.WriteNumber("tid", task);
        w.WriteNumber("ts", start);
        w.WriteNumber("dur", Math.Max(1, end - start));
        w.WriteEndObject();
    }

    /// <inheritdoc/>
    public override string ToString() => ToText();
}
