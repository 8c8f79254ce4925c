// Renders a run's trace as a Perfetto timeline: Chrome trace-event JSON (the format
// ui.perfetto.dev and chrome://tracing open), one event per line, byte-for-byte the same for
// the same trace.
//
// Time axis. Each record gets an instant on the axis, in nanoseconds:
//     virtual_ns (rounded down to a multiple of 125) + 1000 * step
// that is, virtual time plus one microsecond per scheduling step (controlled runs rarely move
// virtual time, so the steps spread the run out); a record that would land on or before the
// previous record's instant is placed 125 ns after it, so every record has an instant of its
// own and the axis keeps the trace's order. Real-mode runs have no steps: virtual time alone,
// plus the separation. "ts" is written in microseconds; being a multiple of 1/8 µs it is exact
// as a binary double, which is how viewers read it (Perfetto multiplies by 1000 and truncates,
// so 1.001 µs would come out as 1000 ns and could swap two events).
//
// Tracks. The kernel process (pid 10000, "kernel") holds a "kernel" thread (tid 10000) for
// records no task made, and every counter. A task is thread 10000 + its id, named comm/id,
// in the process it ran for when it started (the simulated pid, named after its comm), or in
// the kernel process. Spans on a task's track are B/E pairs: lock holds (cat "lock", named
// after the lock; "(read)"/"(write)" for rw_semaphores) and sleeps (cat "blocked",
// "blocked on <object>"). Holds released out of nesting order are closed and reopened so the
// spans nest. A wake-up is a flow arrow: a zero-length "wakes X" slice on the waker's track
// (flow_out) to a zero-length "woken by Y" slice where the woken task resumes (flow_in).
// Instants ("i", thread scope) mark errnos (named -EXXX, the reason in args), WARN/lockdep/
// refcount warnings, kernel BUGs, fault decisions and the other trace events; a clock jump
// and the detector's report (the finding) are global instants. Counters ("C") carry the
// value in args.value. Spans still open when the run ends are closed at its last instant.

using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Vfio.Kernel;

internal static class PerfettoTimeline
{
    /// <summary>pid and tid of the kernel process and its thread; tasks are tid KernelPid + id.</summary>
    internal const int KernelPid = 10000;

    /// <summary>Axis nanoseconds per scheduling step.</summary>
    internal const long StepNs = 1000;

    /// <summary>The axis' resolution and the least distance between two records, in nanoseconds (1/8 µs).</summary>
    internal const long TickNs = 125;

    public static string Render(RunTrace trace, string? finding)
    {
        var r = new Renderer(trace);
        return r.Render(finding);
    }

    private sealed class Span(string name, string cat, string? key, string? argName, string? argValue)
    {
        public string Name { get; } = name;

        public string Cat { get; } = cat;

        public string? Key { get; } = key;

        public string? ArgName { get; } = argName;

        public string? ArgValue { get; } = argValue;
    }

    private sealed class TaskTrack(int tid, string name)
    {
        public int Tid { get; } = tid;

        public string Name { get; } = name;

        public int Pid { get; set; } = KernelPid;

        public List<Span> Open { get; } = [];

        // The flow of the wake-up this task has not yet resumed from (0: none) and its waker.
        public long PendingFlow { get; set; }

        public string? PendingWaker { get; set; }
    }

    private sealed class Renderer(RunTrace trace)
    {
        private readonly StringBuilder _sb = new();
        private readonly ArrayBufferWriter<byte> _buffer = new(256);
        private readonly SortedDictionary<int, TaskTrack> _tasks = [];
        private readonly SortedDictionary<int, string> _processes = [];
        private long _events;
        private long _flows;

        public string Render(string? finding)
        {
            Collect();
            _sb.Append("{\"traceEvents\":[");
            WriteMetadata();
            long ts = -TickNs;
            foreach (TraceRecord r in trace.Records)
            {
                ts = Math.Max(ts + TickNs, (r.TimeNs / TickNs * TickNs) + (r.Step * StepNs));
                Record(r, ts);
            }

            long end = ts + TickNs;
            foreach (TaskTrack t in _tasks.Values)
            {
                for (int i = t.Open.Count - 1; i >= 0; i--)
                {
                    End(t, end);
                }

                t.Open.Clear();
            }

            if (finding is not null)
            {
                Event(w =>
                {
                    w.WriteString("ph", "i");
                    w.WriteString("s", "g");
                    w.WriteString("name", "finding: " + FirstLine(finding));
                    w.WriteString("cat", "finding");
                    w.WriteNumber("pid", KernelPid);
                    w.WriteNumber("tid", KernelPid);
                    WriteTs(w, end);
                    w.WriteStartObject("args");
                    w.WriteString("report", finding);
                    w.WriteString("outcome", trace.Outcome.ToString());
                    w.WriteEndObject();
                });
            }

            _sb.Append("\n],\n\"metadata\":");
            _buffer.Clear();
            using (var w = new Utf8JsonWriter(_buffer))
            {
                w.WriteStartObject();
                w.WriteString("format", "vfio-sim-timeline");
                w.WriteNumber("seed", trace.Seed);
                w.WriteString("strategy", trace.Strategy);
                w.WriteString("mode", trace.Mode.ToString().ToLowerInvariant());
                w.WriteString("profile", trace.Profile);
                w.WriteString("outcome", trace.Outcome.ToString());
                w.WriteNumber("steps", trace.StepCount);
                w.WriteString("time_axis", "ts = virtual time (rounded down to 1/8 us) + 1 us per scheduling step; each record at least 1/8 us after the previous one");
                if (finding is not null)
                {
                    w.WriteString("finding", finding);
                }

                w.WriteEndObject();
            }

            _sb.Append(Encoding.UTF8.GetString(_buffer.WrittenSpan));
            _sb.Append("\n}\n");
            return _sb.ToString();
        }

        // ---- Tracks and processes, from the whole trace before anything is written.

        private void Collect()
        {
            foreach (TraceRecord r in trace.Records)
            {
                if (r.TaskId != 0 && !_tasks.ContainsKey(r.TaskId))
                {
                    _tasks.Add(r.TaskId, new TaskTrack(KernelPid + r.TaskId, r.Task));
                }

                if (r.Kind == TraceRecordKind.Wake && r.NextTaskId != 0 && !_tasks.ContainsKey(r.NextTaskId))
                {
                    _tasks.Add(r.NextTaskId, new TaskTrack(KernelPid + r.NextTaskId, r.Detail ?? $"task {r.NextTaskId}"));
                }

                if (r.Kind == TraceRecordKind.Event && r.Op == "task_start" && r.TaskId != 0 && ParseProcess(r.Detail) is { } p)
                {
                    _tasks[r.TaskId].Pid = p.Pid;
                    _processes.TryAdd(p.Pid, p.Comm);
                }
            }
        }

        private static (int Pid, string Comm)? ParseProcess(string? detail)
        {
            // "pid <n> <comm>", as TraceLog.TaskStart writes it with the timeline on.
            if (detail is null || !detail.StartsWith("pid ", StringComparison.Ordinal))
            {
                return null;
            }

            int space = detail.IndexOf(' ', 4);
            if (space < 0 || !int.TryParse(detail.AsSpan(4, space - 4), NumberStyles.None, CultureInfo.InvariantCulture, out int pid) || pid == KernelPid)
            {
                return null;
            }

            return (pid, detail[(space + 1)..]);
        }

        private void WriteMetadata()
        {
            Metadata("process_name", KernelPid, KernelPid, "kernel");
            foreach ((int pid, string comm) in _processes)
            {
                Metadata("process_name", pid, pid, comm);
            }

            Metadata("thread_name", KernelPid, KernelPid, "kernel");
            foreach (TaskTrack t in _tasks.Values)
            {
                Metadata("thread_name", t.Pid, t.Tid, t.Name);
            }
        }

        private void Metadata(string what, int pid, int tid, string name) => Event(w =>
        {
            w.WriteString("ph", "M");
            w.WriteString("name", what);
            w.WriteNumber("pid", pid);
            w.WriteNumber("tid", tid);
            w.WriteStartObject("args");
            w.WriteString("name", name);
            w.WriteEndObject();
        });

        // ---- One record.

        private void Record(TraceRecord r, long ts)
        {
            TaskTrack? t = r.TaskId != 0 ? _tasks[r.TaskId] : null;
            switch (r.Kind)
            {
                case TraceRecordKind.Step:
                    return;
                case TraceRecordKind.Clock:
                    Instant(null, ts, $"clock jumps to t={SimClock.FormatNs(r.TimeNs)}", "clock", "g", null, null);
                    return;
                case TraceRecordKind.Acquire:
                    Begin(t, ts, new Span(LockSpanName(r.Object!, r.Detail), "lock", r.Object, "lock", r.Detail));
                    return;
                case TraceRecordKind.Release:
                    Close(t, ts, "lock", r.Object);
                    return;
                case TraceRecordKind.Block:
                    Begin(t, ts, new Span(r.Object is null ? $"blocked in {r.Op}" : $"blocked on {r.Object}", "blocked", null, "op", r.Op));
                    return;
                case TraceRecordKind.Unblock:
                    Unblock(t, ts);
                    return;
                case TraceRecordKind.Wake:
                    Wake(t, r, ts);
                    return;
                case TraceRecordKind.Counter:
                    Counter(r, ts);
                    return;
                case TraceRecordKind.Warning:
                    if (r.Op == "bug")
                    {
                        Instant(t, ts, FirstLine(r.Detail ?? "kernel BUG"), "bug", "t", "report", r.Detail);
                    }
                    else
                    {
                        Instant(t, ts, $"{WarningLabel(r.Op)}: {r.Detail}", "warning", "t", "kind", r.Op);
                    }

                    return;
                case TraceRecordKind.Fault:
                    Instant(t, ts, $"should_fail {r.Object}", "fault", "t", "decision", r.Detail);
                    return;
                default:
                    EventRecord(t, r, ts);
                    return;
            }
        }

        private void EventRecord(TaskTrack? t, TraceRecord r, long ts)
        {
            switch (r.Op)
            {
                case "errno":
                    Instant(t, ts, "-" + r.Object, "errno", "t", "reason", r.Detail);
                    return;
                case "task_start":
                    return;

                // A trace recorded without the timeline still shows its lock holds.
                case "lock_acquire":
                    Begin(t, ts, new Span(LockSpanName(r.Object!, r.Detail), "lock", r.Object, "lock", r.Detail ?? "lock"));
                    return;
                case "lock_release":
                    Close(t, ts, "lock", r.Object);
                    return;
                default:
                    Instant(t, ts, r.Object is null ? r.Op : $"{r.Op} {r.Object}", "event", "t", "detail", r.Detail);
                    return;
            }
        }

        private static string LockSpanName(string lockName, string? detail)
        {
            if (detail is null)
            {
                return lockName;
            }

            if (detail.Contains(" read", StringComparison.Ordinal) || detail.StartsWith("read", StringComparison.Ordinal))
            {
                return lockName + " (read)";
            }

            if (detail.Contains(" write", StringComparison.Ordinal) || detail.StartsWith("write", StringComparison.Ordinal))
            {
                return lockName + " (write)";
            }

            return lockName;
        }

        private static string WarningLabel(string kind) => kind switch
        {
            "warn" => "WARNING",
            "lockdep" => "lockdep",
            "refcount" => "refcount_t",
            "sleepinatomic" => "BUG: sleeping function called from invalid context",
            _ => kind,
        };

        private static string FirstLine(string text)
        {
            int nl = text.IndexOf('\n', StringComparison.Ordinal);
            return nl < 0 ? text : text[..nl];
        }

        // ---- Spans.

        private void Begin(TaskTrack? t, long ts, Span s)
        {
            if (t is null)
            {
                return; // Holds and sleeps belong to tasks; the kernel thread never takes a lock.
            }

            t.Open.Add(s);
            WriteBegin(t, ts, s);
        }

        private void WriteBegin(TaskTrack t, long ts, Span s) => Event(w =>
        {
            w.WriteString("ph", "B");
            w.WriteString("name", s.Name);
            w.WriteString("cat", s.Cat);
            w.WriteNumber("pid", t.Pid);
            w.WriteNumber("tid", t.Tid);
            WriteTs(w, ts);
            if (s.ArgName is not null && s.ArgValue is not null)
            {
                w.WriteStartObject("args");
                w.WriteString(s.ArgName, s.ArgValue);
                w.WriteEndObject();
            }
        });

        private void End(TaskTrack t, long ts) => Event(w =>
        {
            w.WriteString("ph", "E");
            w.WriteNumber("pid", t.Pid);
            w.WriteNumber("tid", t.Tid);
            WriteTs(w, ts);
        });

        /// <summary>Closes the innermost open span of <paramref name="cat"/> (and <paramref name="key"/>), reopening the spans above it.</summary>
        private bool Close(TaskTrack? t, long ts, string cat, string? key)
        {
            if (t is null)
            {
                return false;
            }

            int i = t.Open.Count - 1;
            while (i >= 0 && !(t.Open[i].Cat == cat && (key is null || t.Open[i].Key == key)))
            {
                i--;
            }

            if (i < 0)
            {
                return false; // Released by a task that did not take it (up_read of another's hold).
            }

            for (int j = t.Open.Count - 1; j >= i; j--)
            {
                End(t, ts);
            }

            t.Open.RemoveAt(i);
            for (int j = i; j < t.Open.Count; j++)
            {
                WriteBegin(t, ts, t.Open[j]);
            }

            return true;
        }

        // ---- Wake-ups.

        private void Wake(TaskTrack? waker, TraceRecord r, long ts)
        {
            if (!_tasks.TryGetValue(r.NextTaskId, out TaskTrack? wakee))
            {
                return; // A hand-edited file: a wake-up of no task.
            }

            string wakerName = waker?.Name ?? "kernel";
            long flow = 0;
            if (wakee.PendingFlow == 0)
            {
                flow = ++_flows;
                wakee.PendingFlow = flow;
                wakee.PendingWaker = wakerName;
            }

            int pid = waker?.Pid ?? KernelPid;
            int tid = waker?.Tid ?? KernelPid;
            Event(w =>
            {
                w.WriteString("ph", "X");
                w.WriteString("name", $"wakes {wakee.Name}");
                w.WriteString("cat", "wake");
                w.WriteNumber("pid", pid);
                w.WriteNumber("tid", tid);
                WriteTs(w, ts);
                w.WriteNumber("dur", 0);
                if (flow != 0)
                {
                    w.WriteNumber("bind_id", flow);
                    w.WriteBoolean("flow_out", true);
                }

                w.WriteStartObject("args");
                w.WriteString("object", r.Object);
                w.WriteEndObject();
            });
        }

        private void Unblock(TaskTrack? t, long ts)
        {
            if (t is null)
            {
                return;
            }

            Close(t, ts, "blocked", null);
            if (t.PendingFlow == 0)
            {
                return; // Timed out or signalled: nobody woke it.
            }

            long flow = t.PendingFlow;
            string waker = t.PendingWaker!;
            t.PendingFlow = 0;
            t.PendingWaker = null;
            Event(w =>
            {
                w.WriteString("ph", "X");
                w.WriteString("name", $"woken by {waker}");
                w.WriteString("cat", "wake");
                w.WriteNumber("pid", t.Pid);
                w.WriteNumber("tid", t.Tid);
                WriteTs(w, ts);
                w.WriteNumber("dur", 0);
                w.WriteNumber("bind_id", flow);
                w.WriteBoolean("flow_in", true);
            });
        }

        // ---- Counters and instants.

        private void Counter(TraceRecord r, long ts)
        {
            if (!long.TryParse(r.Detail, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long value))
            {
                return;
            }

            Event(w =>
            {
                w.WriteString("ph", "C");
                w.WriteString("name", r.Object);
                w.WriteString("cat", "counter");
                w.WriteNumber("pid", KernelPid);
                w.WriteNumber("tid", KernelPid);
                WriteTs(w, ts);
                w.WriteStartObject("args");
                w.WriteNumber("value", value);
                w.WriteEndObject();
            });
        }

        private void Instant(TaskTrack? t, long ts, string name, string cat, string scope, string? argName, string? argValue) => Event(w =>
        {
            w.WriteString("ph", "i");
            w.WriteString("s", scope);
            w.WriteString("name", name);
            w.WriteString("cat", cat);
            w.WriteNumber("pid", t?.Pid ?? KernelPid);
            w.WriteNumber("tid", t?.Tid ?? KernelPid);
            WriteTs(w, ts);
            if (argName is not null && argValue is not null)
            {
                w.WriteStartObject("args");
                w.WriteString(argName, argValue);
                w.WriteEndObject();
            }
        });

        private static void WriteTs(Utf8JsonWriter w, long axisNs) => w.WriteNumber("ts", axisNs / 1000m);

        private void Event(Action<Utf8JsonWriter> body)
        {
            _buffer.Clear();
            using (var w = new Utf8JsonWriter(_buffer))
            {
                w.WriteStartObject();
                body(w);
                w.WriteEndObject();
            }

            _sb.Append(_events++ == 0 ? "\n" : ",\n");
            _sb.Append(Encoding.UTF8.GetString(_buffer.WrittenSpan));
        }
    }
}
