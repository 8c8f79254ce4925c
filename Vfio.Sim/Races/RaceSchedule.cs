// Not a kernel file: the race lab's replay file. One failing (or passing) run of a race
// scenario: the scenario's name, the fix switch, the design settings and profile it ran
// with, what the detector found, and the run's trace (seed, strategy and the schedule a
// replay follows). The bytes are deterministic: the same run gives the same file, and
// parsing then writing a file gives it back byte for byte.
//
//   {"format": "vfio-sim-race", "version": 1, "scenario": …, "fix": true|false|null,
//    "designs": [KEY=VALUE…], "profile": …, "finding": {"detector", "summary"}|null,
//    "trace": <the run's trace object>}

using System.Buffers;
using System.Text;
using System.Text.Json;
using Vfio.Kernel;
using Vfio.Sim.Scenarios;

namespace Vfio.Sim.Races;

/// <summary>
/// A replay file: the scenario, its fix switch, design settings and profile, the finding,
/// and the run's trace (seed, strategy, schedule). <c>vfio-sim race replay</c> reads it.
/// </summary>
public sealed class RaceSchedule
{
    // The "format" field of a replay file.
    internal const string Format = "vfio-sim-race";

    // The replay-file version this build writes and reads.
    internal const int CurrentVersion = 1;

    internal RaceSchedule(string scenario, bool? fix, IReadOnlyList<string> designs, RunTrace trace, RaceFinding? finding)
    {
        Scenario = scenario;
        Fix = fix;
        Designs = designs;
        Trace = trace;
        Finding = finding;
    }

    /// <summary>The scenario's name.</summary>
    public string Scenario { get; }

    /// <summary>The fix switch the run had (null: the scenario as configured).</summary>
    public bool? Fix { get; }

    /// <summary>The design settings (<c>KEY=VALUE</c>).</summary>
    public IReadOnlyList<string> Designs { get; }

    /// <summary>The kernel profile the run had (<c>linux-6.12</c>).</summary>
    public string Profile => Trace.Profile;

    /// <summary>The run's trace: seed, strategy, profile and the schedule a replay follows.</summary>
    public RunTrace Trace { get; }

    /// <summary>What the run found, or null for a passing run.</summary>
    public RaceFinding? Finding { get; }

    /// <summary>
    /// Whether <paramref name="result"/> (a replay of this schedule) shows the recorded outcome:
    /// the same detector and summary, or a pass when the schedule recorded none.
    /// </summary>
    public bool IsReproducedBy(ScenarioResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        RaceFinding? found = RaceFinding.Of(result);
        return Finding is null
            ? result.Passed
            : found is not null && found.Detector == Finding.Detector && string.Equals(found.Summary, Finding.Summary, StringComparison.Ordinal);
    }

    /// <summary>The replay file's JSON (deterministic: the same run gives the same bytes).</summary>
    public string ToJson()
    {
        var sb = new StringBuilder();
        sb.Append("{\n");
        AppendBody(sb, "  ");
        sb.Append("}\n");
        return sb.ToString();
    }

    // The fields of the file's object, each line indented by `indent` (the exploration
    // summary nests schedules).
    internal void AppendBody(StringBuilder sb, string indent)
    {
        sb.Append(indent).Append("\"format\": ").Append(Quote(Format)).Append(",\n");
        sb.Append(indent).Append("\"version\": ").Append(CurrentVersion).Append(",\n");
        sb.Append(indent).Append("\"scenario\": ").Append(Quote(Scenario)).Append(",\n");
        sb.Append(indent).Append("\"fix\": ").Append(Fix is null ? "null" : Fix.Value ? "true" : "false").Append(",\n");
        sb.Append(indent).Append("\"designs\": [");
        for (int i = 0; i < Designs.Count; i++)
        {
            sb.Append(i == 0 ? "" : ", ").Append(Quote(Designs[i]));
        }

        sb.Append("],\n");
        sb.Append(indent).Append("\"profile\": ").Append(Quote(Profile)).Append(",\n");
        sb.Append(indent).Append("\"finding\": ");
        if (Finding is null)
        {
            sb.Append("null");
        }
        else
        {
            sb.Append("{\"detector\": ").Append(Quote(Finding.Detector.ToString()))
              .Append(", \"summary\": ").Append(Quote(Finding.Summary)).Append('}');
        }

        sb.Append(",\n");
        sb.Append(indent).Append("\"trace\": ");
        string[] lines = Trace.ToJson().TrimEnd('\n').Split('\n');
        for (int i = 0; i < lines.Length; i++)
        {
            sb.Append(i == 0 ? "" : indent).Append(lines[i]).Append('\n');
        }
    }

    internal static string Quote(string s)
    {
        var buffer = new ArrayBufferWriter<byte>(s.Length + 8);
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStringValue(s);
        }

        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    /// <summary>Reads a replay file.</summary>
    /// <exception cref="FormatException">The text is not a replay file this build reads.</exception>
    public static RaceSchedule Parse(string json)
    {
        ArgumentNullException.ThrowIfNull(json);
        try
        {
            using JsonDocument doc = JsonDocument.Parse(json);
            return Read(doc.RootElement);
        }
        catch (JsonException e)
        {
            throw new FormatException($"not a replay file: {e.Message}", e);
        }
    }

    internal static RaceSchedule Read(JsonElement root)
    {
        try
        {
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("format", out JsonElement fmt) || fmt.ValueKind != JsonValueKind.String || fmt.GetString() != Format)
            {
                throw new FormatException($"not a replay file: the \"format\" field must be \"{Format}\"");
            }

            int version = root.GetProperty("version").GetInt32();
            if (version != CurrentVersion)
            {
                throw new FormatException($"replay file version {version} is not supported; this build reads version {CurrentVersion}");
            }

            string scenario = root.GetProperty("scenario").GetString() ?? throw new FormatException("the \"scenario\" field is null");
            JsonElement fixEl = root.GetProperty("fix");
            bool? fix = fixEl.ValueKind switch
            {
                JsonValueKind.Null => null,
                JsonValueKind.True => true,
                JsonValueKind.False => false,
                _ => throw new FormatException("the \"fix\" field must be true, false or null"),
            };
            var designs = new List<string>();
            foreach (JsonElement d in root.GetProperty("designs").EnumerateArray())
            {
                string setting = d.GetString() ?? throw new FormatException("a design setting is null");
                if (DesignSettings.Validate(setting) is { } why)
                {
                    throw new FormatException(why);
                }

                designs.Add(setting);
            }

            string profile = root.GetProperty("profile").GetString() ?? throw new FormatException("the \"profile\" field is null");
            RaceFinding? finding = null;
            JsonElement f = root.GetProperty("finding");
            if (f.ValueKind != JsonValueKind.Null)
            {
                string detector = f.GetProperty("detector").GetString() ?? "";
                if (!Enum.TryParse(detector, ignoreCase: false, out RaceDetector d) || !Enum.IsDefined(d))
                {
                    throw new FormatException($"unknown detector '{detector}': use one of {string.Join(", ", Enum.GetNames<RaceDetector>())}");
                }

                string summary = f.GetProperty("summary").GetString() ?? throw new FormatException("the finding's \"summary\" is null");
                finding = new RaceFinding { Detector = d, Summary = summary, Report = summary };
            }

            JsonElement traceEl = root.GetProperty("trace");
            if (traceEl.ValueKind != JsonValueKind.Object)
            {
                throw new FormatException("the \"trace\" field must be a trace object");
            }

            RunTrace trace = RunTrace.Parse(traceEl.GetRawText());
            if (trace.Mode != SchedulerMode.Controlled)
            {
                throw new FormatException("the trace is of a real-threads run, which has no schedule to replay");
            }

            if (!string.Equals(trace.Profile, profile, StringComparison.Ordinal))
            {
                throw new FormatException($"the file says profile {profile} but its trace was recorded under {trace.Profile}");
            }

            return new RaceSchedule(scenario, fix, designs, trace, finding);
        }
        catch (Exception e) when (e is KeyNotFoundException or InvalidOperationException or ArgumentException)
        {
            throw new FormatException($"malformed replay file: {e.Message}", e);
        }
    }

    /// <inheritdoc/>
    public override string ToString()
        => $"{Scenario} seed {Trace.Seed} ({Trace.Strategy}, {Profile}{(Fix is null ? "" : Fix.Value ? ", fix on" : ", fix off")}): {(Finding is null ? "passes" : Finding.ToString())}";
}
