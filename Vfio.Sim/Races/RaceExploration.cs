// Not a kernel file: what an exploration of the race lab found, and how the outputs of the
// shards of one exploration merge. The summary file (`race explore --out DIR` writes it)
// holds the counts, the interleavings seen (so distinct interleavings add up exactly across
// shards) and every bug with its replay schedule:
//
//   {"format": "vfio-sim-race-exploration", "version": 1, "scenario": …, "schedules": …,
//    "failingSchedules": …, "distinctInterleavings": …, "exhausted": true|false|null,
//    "elapsedSeconds": …, "interleavings": "<base64 of sorted 64-bit keys>",
//    "bugs": [{"schedule": <replay file>, "original": <replay file>|null}, …]}

using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Vfio.Sim.Races;

/// <summary>A bug an exploration found, with the schedule that shows it.</summary>
public sealed class RaceBug
{
    internal RaceBug(RaceFinding finding, RaceSchedule schedule, RaceSchedule? original)
    {
        Finding = finding;
        Schedule = schedule;
        Original = original;
    }

    /// <summary>What the detector saw.</summary>
    public RaceFinding Finding { get; }

    /// <summary>The schedule to replay (shrunk when the exploration shrank it).</summary>
    public RaceSchedule Schedule { get; }

    /// <summary>The schedule as first found, when it was shrunk.</summary>
    public RaceSchedule? Original { get; }

    /// <summary>The seed of the run that found it.</summary>
    public ulong Seed => (Original ?? Schedule).Trace.Seed;

    /// <inheritdoc/>
    public override string ToString() => $"seed {Seed}: {Finding}";
}

/// <summary>The outcome of an exploration (mergeable across shards).</summary>
public sealed class RaceExploration
{
    // The "format" field of an exploration summary.
    internal const string Format = "vfio-sim-race-exploration";

    // The interleavings seen, sorted: merging shards unions them.
    private readonly ulong[] _interleavings;

    internal RaceExploration(string scenario, long schedules, long failing, IEnumerable<ulong> interleavings, bool? exhausted, IReadOnlyList<RaceBug> bugs, TimeSpan elapsed)
    {
        Scenario = scenario;
        Schedules = schedules;
        FailingSchedules = failing;
        var set = new SortedSet<ulong>(interleavings);
        _interleavings = [.. set];
        Exhausted = exhausted;
        Bugs = bugs;
        Elapsed = elapsed;
    }

    /// <summary>The scenario explored.</summary>
    public string Scenario { get; }

    /// <summary>Schedules run.</summary>
    public long Schedules { get; }

    /// <summary>Schedules that failed (several may show the same bug).</summary>
    public long FailingSchedules { get; }

    /// <summary>Distinct interleavings (schedules that ordered the tasks' steps differently) among them.</summary>
    public long DistinctInterleavings => _interleavings.Length;

    /// <summary>Exhaustive mode: whether the bounded space was exhausted; null for seeded exploration.</summary>
    public bool? Exhausted { get; }

    /// <summary>The bugs found: one per detector and check (a check's values differ between schedules), from the lowest seed that showed it.</summary>
    public IReadOnlyList<RaceBug> Bugs { get; }

    /// <summary>Wall time the exploration took (merged shards: the longest shard's).</summary>
    public TimeSpan Elapsed { get; }

    /// <summary>True when no bug was found.</summary>
    public bool Passed => Bugs.Count == 0;

    /// <summary>Schedules per second of wall time.</summary>
    public double SchedulesPerSecond => Elapsed > TimeSpan.Zero ? Schedules / Elapsed.TotalSeconds : 0;

    /// <summary>
    /// The outputs of the shards of one exploration as one: schedules and failures add up,
    /// interleavings and bugs are united (bugs ordered by seed, one per detector and check), and an
    /// exhaustive search is exhausted when every shard's was.
    /// </summary>
    /// <exception cref="ArgumentException">No parts, or parts of different scenarios.</exception>
    public static RaceExploration Merge(IEnumerable<RaceExploration> parts)
    {
        ArgumentNullException.ThrowIfNull(parts);
        List<RaceExploration> all = [.. parts];
        if (all.Count == 0)
        {
            throw new ArgumentException("nothing to merge", nameof(parts));
        }

        string scenario = all[0].Scenario;
        long schedules = 0;
        long failing = 0;
        var interleavings = new List<ulong>();
        bool? exhausted = null;
        TimeSpan elapsed = TimeSpan.Zero;
        var bugs = new List<RaceBug>();
        foreach (RaceExploration p in all)
        {
            if (!string.Equals(p.Scenario, scenario, StringComparison.Ordinal))
            {
                throw new ArgumentException($"cannot merge explorations of {scenario} and {p.Scenario}", nameof(parts));
            }

            schedules += p.Schedules;
            failing += p.FailingSchedules;
            interleavings.AddRange(p._interleavings);
            exhausted = p.Exhausted is null ? exhausted : (exhausted ?? true) && p.Exhausted.Value;
            elapsed = p.Elapsed > elapsed ? p.Elapsed : elapsed;
            bugs.AddRange(p.Bugs);
        }

        var seen = new HashSet<(RaceDetector, string)>();
        List<RaceBug> merged = [.. bugs.OrderBy(b => b.Seed).Where(b => seen.Add(RaceLab.BugKey(b.Finding)))];
        return new RaceExploration(scenario, schedules, failing, interleavings, exhausted, merged, elapsed);
    }

    /// <summary>A summary line, then one line per bug.</summary>
    public string Describe()
    {
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"{Scenario}: {Schedules} schedules, {DistinctInterleavings} distinct interleavings, {Bugs.Count} bug(s)");
        if (Exhausted is { } ex)
        {
            sb.Append(ex ? "; the bounded space was exhausted" : "; the bounded space was not exhausted");
        }

        sb.Append(CultureInfo.InvariantCulture, $" in {Elapsed.TotalSeconds:0.00} s\n");
        foreach (RaceBug b in Bugs)
        {
            sb.Append("  ").Append(b).Append('\n');
        }

        return sb.ToString();
    }

    /// <inheritdoc/>
    public override string ToString() => Describe();

    /// <summary>The exploration as a summary file (JSON), with every bug's schedule.</summary>
    public string ToJson()
    {
        var sb = new StringBuilder();
        sb.Append("{\n");
        sb.Append("  \"format\": ").Append(RaceSchedule.Quote(Format)).Append(",\n");
        sb.Append("  \"version\": ").Append(RaceSchedule.CurrentVersion).Append(",\n");
        sb.Append("  \"scenario\": ").Append(RaceSchedule.Quote(Scenario)).Append(",\n");
        sb.Append(CultureInfo.InvariantCulture, $"  \"schedules\": {Schedules},\n");
        sb.Append(CultureInfo.InvariantCulture, $"  \"failingSchedules\": {FailingSchedules},\n");
        sb.Append(CultureInfo.InvariantCulture, $"  \"distinctInterleavings\": {DistinctInterleavings},\n");
        sb.Append("  \"exhausted\": ").Append(Exhausted is null ? "null" : Exhausted.Value ? "true" : "false").Append(",\n");
        sb.Append(CultureInfo.InvariantCulture, $"  \"elapsedSeconds\": {Elapsed.TotalSeconds:0.000},\n");
        byte[] keys = new byte[_interleavings.Length * sizeof(ulong)];
        for (int i = 0; i < _interleavings.Length; i++)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(keys.AsSpan(i * sizeof(ulong)), _interleavings[i]);
        }

        sb.Append("  \"interleavings\": \"").Append(Convert.ToBase64String(keys)).Append("\",\n");
        sb.Append("  \"bugs\": [");
        for (int i = 0; i < Bugs.Count; i++)
        {
            RaceBug b = Bugs[i];
            sb.Append(i == 0 ? "\n" : ",\n").Append("    {\n      \"schedule\": {\n");
            b.Schedule.AppendBody(sb, "        ");
            sb.Append("      },\n      \"original\": ");
            if (b.Original is null)
            {
                sb.Append("null\n");
            }
            else
            {
                sb.Append("{\n");
                b.Original.AppendBody(sb, "        ");
                sb.Append("      }\n");
            }

            sb.Append("    }");
        }

        sb.Append(Bugs.Count == 0 ? "]\n}\n" : "\n  ]\n}\n");
        return sb.ToString();
    }

    /// <summary>Reads a summary file written by <see cref="ToJson"/>.</summary>
    /// <exception cref="FormatException">The text is not an exploration summary this build reads.</exception>
    public static RaceExploration Parse(string json)
    {
        ArgumentNullException.ThrowIfNull(json);
        try
        {
            using JsonDocument doc = JsonDocument.Parse(json);
            JsonElement root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("format", out JsonElement fmt) || fmt.ValueKind != JsonValueKind.String || fmt.GetString() != Format)
            {
                throw new FormatException($"not an exploration summary: the \"format\" field must be \"{Format}\"");
            }

            int version = root.GetProperty("version").GetInt32();
            if (version != RaceSchedule.CurrentVersion)
            {
                throw new FormatException($"exploration summary version {version} is not supported; this build reads version {RaceSchedule.CurrentVersion}");
            }

            byte[] keys = Convert.FromBase64String(root.GetProperty("interleavings").GetString() ?? "");
            if (keys.Length % sizeof(ulong) != 0)
            {
                throw new FormatException("the \"interleavings\" field is not a list of 64-bit keys");
            }

            var interleavings = new ulong[keys.Length / sizeof(ulong)];
            for (int i = 0; i < interleavings.Length; i++)
            {
                interleavings[i] = BinaryPrimitives.ReadUInt64LittleEndian(keys.AsSpan(i * sizeof(ulong)));
            }

            var bugs = new List<RaceBug>();
            foreach (JsonElement b in root.GetProperty("bugs").EnumerateArray())
            {
                RaceSchedule schedule = RaceSchedule.Read(b.GetProperty("schedule"));
                JsonElement o = b.GetProperty("original");
                RaceSchedule? original = o.ValueKind == JsonValueKind.Null ? null : RaceSchedule.Read(o);
                RaceFinding finding = schedule.Finding ?? throw new FormatException("a bug's schedule records no finding");
                bugs.Add(new RaceBug(finding, schedule, original));
            }

            JsonElement ex = root.GetProperty("exhausted");
            bool? exhausted = ex.ValueKind switch
            {
                JsonValueKind.Null => null,
                JsonValueKind.True => true,
                JsonValueKind.False => false,
                _ => throw new FormatException("the \"exhausted\" field must be true, false or null"),
            };
            return new RaceExploration(
                root.GetProperty("scenario").GetString() ?? throw new FormatException("the \"scenario\" field is null"),
                root.GetProperty("schedules").GetInt64(),
                root.GetProperty("failingSchedules").GetInt64(),
                interleavings,
                exhausted,
                bugs,
                TimeSpan.FromSeconds(root.GetProperty("elapsedSeconds").GetDouble()));
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or ArgumentException)
        {
            throw new FormatException($"malformed exploration summary: {e.Message}", e);
        }
    }
}
