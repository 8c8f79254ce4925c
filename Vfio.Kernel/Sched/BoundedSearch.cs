// Simulator-only (no kernel counterpart): bounded-exhaustive schedule search (CHESS-style
// preemption bounding, Musuvathi and Qadeer, PLDI 2007) with partial-order reduction by
// sleep sets (Godefroid 1996), and the shrinking of a failing schedule. Both are stateless:
// every schedule is a fresh run that a guided strategy steers, so a schedule is a list of
// deviations from the non-preemptive default.
//
// The search is a depth-first walk over the decision points of runs (points at which more
// than one task could run), deepest first, alternatives in task-id order, so the order is
// deterministic. At a decision point, running a task other than the current one while the
// current one could go on costs one preemption; choosing among the runnable tasks when the
// current one blocks or exits is free. Schedules with more than PreemptionBound preemptions
// are not run.
//
// Reduction: after the subtree under "U runs at point p" has been searched, U goes to sleep
// in the subtrees of p's other choices and stays asleep while the steps that run are
// independent of U's pending step (both name kernel objects and the objects differ, see
// ScheduleRecorder); a path that would run a sleeping task is equivalent to one already
// searched and is cut there. Caveats, also in docs/kernel-runtime.md:
// - Shared state touched between scheduling points without a kernel primitive (a plain
//   field read in one task and written in another) is outside the reduction's view: two
//   steps that race on such state look independent. Search with PartialOrderReduction =
//   false when a program communicates that way.
// - Sleep sets and a preemption bound do not compose perfectly: the searched schedule that
//   stands for a pruned one may need more preemptions than the bound allows, so with a
//   bound, reduction can miss an interleaving class that the unreduced search covers.
//   Every bug found is real; the bound's coverage claim is weaker with reduction on.
//
// Sharding: a schedule belongs to shard (hash of its first deviation) mod ShardCount and
// the deviation-free schedule to shard 0. Every shard walks the same tree (the deviation-
// free run shows it the top-level choices) but runs only its own subtrees; a subtree of
// another shard counts as searched, so each shard prunes exactly as the whole search
// does and the shards' schedules partition the unsharded search's schedules.

namespace Vfio.Kernel;

/// <summary>
/// A forced context switch of a guided schedule: when task <see cref="TaskId"/> reaches its
/// <see cref="Point"/>-th scheduling point (counted from 1 per task), task
/// <see cref="NextTaskId"/> runs next instead of the default choice.
/// </summary>
/// <param name="TaskId">The task that is preempted (or blocks).</param>
/// <param name="Point">Its scheduling point, counted from 1.</param>
/// <param name="NextTaskId">The task that runs next.</param>
public readonly record struct ScheduleDeviation(int TaskId, int Point, int NextTaskId);

/// <summary>What a bounded search explores.</summary>
public sealed record BoundedSearchOptions
{
    /// <summary>At most this many preemptions (switches away from a task that could go on) per schedule.</summary>
    public int PreemptionBound { get; init; } = 2;

    /// <summary>Skip schedules that only reorder independent steps (sleep sets over kernel objects).</summary>
    public bool PartialOrderReduction { get; init; } = true;

    /// <summary>Stop after this many schedules even if the bounded space is not exhausted.</summary>
    public int MaxSchedules { get; init; } = int.MaxValue;

    /// <summary>This shard's index in [0, <see cref="ShardCount"/>).</summary>
    public int ShardIndex { get; init; }

    /// <summary>How many shards split the search tree (by the first deviation of a schedule).</summary>
    public int ShardCount { get; init; } = 1;

    /// <summary>Stop at the first failing schedule (default) or search on.</summary>
    public bool StopAtFirstFailure { get; init; } = true;
}

/// <summary>Progress of a search or exploration, for progress bars.</summary>
/// <param name="Schedules">Schedules run so far.</param>
/// <param name="DistinctInterleavings">Distinct interleavings (happens-before classes) among them.</param>
/// <param name="Failures">Failing schedules so far.</param>
public readonly record struct SearchProgress(long Schedules, long DistinctInterleavings, long Failures);

/// <summary>The outcome of a bounded search.</summary>
public sealed class BoundedSearchResult
{
    internal BoundedSearchResult(long schedules, long distinct, bool exhausted, IReadOnlyList<RunResult> failures)
    {
        Schedules = schedules;
        DistinctInterleavings = distinct;
        Exhausted = exhausted;
        Failures = failures;
    }

    /// <summary>Schedules run.</summary>
    public long Schedules { get; }

    /// <summary>Distinct interleavings covered (runs whose happens-before order differed).</summary>
    public long DistinctInterleavings { get; }

    /// <summary>True when every schedule within the preemption bound (up to reduction) was run.</summary>
    public bool Exhausted { get; }

    /// <summary>The failing runs, in the order found.</summary>
    public IReadOnlyList<RunResult> Failures { get; }
}

/// <summary>Bounded-exhaustive search over schedules.</summary>
public static class BoundedSearch
{
    /// <summary>
    /// Runs every schedule with at most <see cref="BoundedSearchOptions.PreemptionBound"/>
    /// preemptions, once per equivalence class when reduction is on. <paramref name="runOne"/>
    /// runs one schedule on a fresh kernel configured with the strategy it is given (a guided
    /// strategy) and returns the result.
    /// </summary>
    public static BoundedSearchResult Run(BoundedSearchOptions options, Func<StrategySpec, RunResult> runOne, Action<SearchProgress>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(runOne);
        ArgumentOutOfRangeException.ThrowIfNegative(options.PreemptionBound);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MaxSchedules, 0);
        if (options.ShardCount < 1 || options.ShardIndex < 0 || options.ShardIndex >= options.ShardCount)
        {
            throw new ArgumentOutOfRangeException(nameof(options), $"shard {options.ShardIndex}/{options.ShardCount} is not valid: need 0 <= index < count");
        }

        return new Search(options, runOne, progress, static r => !r.Passed).Go();
    }

    /// <summary>As the public Run, with <paramref name="isFailure"/> deciding which runs are failures.</summary>
    internal static BoundedSearchResult Run(BoundedSearchOptions options, Func<StrategySpec, RunResult> runOne, Func<RunResult, bool> isFailure)
        => new Search(options, runOne, null, isFailure).Go();

    /// <summary>The shard a schedule whose first deviation is <paramref name="first"/> belongs to.</summary>
    public static int ShardOf(ScheduleDeviation first, int shardCount)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(shardCount, 1);
        ulong h = ScheduleRecorder.Mix(ScheduleRecorder.Mix(((ulong)(uint)first.TaskId << 32) | (uint)first.Point) ^ (uint)first.NextTaskId);
        return (int)(h % (ulong)shardCount);
    }

    /// <summary>A decision point on the path of the schedule being extended.</summary>
    private sealed class Node
    {
        public required RecordedDecision Decision { get; init; }

        public required PendingOp[] Runnable { get; init; }

        /// <summary>Sleeping tasks on arrival, with the steps they would run.</summary>
        public required List<RecordedStep> Sleep { get; init; }

        /// <summary>Tasks whose subtree at this point has been searched (or belongs to another shard).</summary>
        public List<int> Done { get; } = new(4);

        /// <summary>The step each task run here took (what it touched), once known.</summary>
        public Dictionary<int, RecordedStep> Ran { get; } = new(4);

        /// <summary>Preemptions on the path before this point.</summary>
        public required int Preemptions { get; init; }

        public int Chosen { get; set; }

        public bool Asleep(int task)
        {
            foreach (RecordedStep x in Sleep)
            {
                if (x.Task == task)
                {
                    return true;
                }
            }

            return false;
        }
    }

    private sealed class Search(BoundedSearchOptions options, Func<StrategySpec, RunResult> runOne, Action<SearchProgress>? progress, Func<RunResult, bool> isFailure)
    {
        private const int ProgressEvery = 16;

        private readonly List<Node> _path = [];
        private readonly HashSet<ulong> _classes = [];
        private readonly List<RunResult> _failures = [];
        private long _schedules;

        public BoundedSearchResult Go()
        {
            bool exhausted = false;
            bool mine = options.ShardIndex == 0;
            RunResult first = RunCounted([], counted: mine, out bool failed);
            if (!(mine && failed && options.StopAtFirstFailure))
            {
                Extend(first, 0, [], 0);
                exhausted = Backtrack();
            }

            progress?.Invoke(Progress);
            return new BoundedSearchResult(_schedules, _classes.Count, exhausted, _failures);
        }

        private SearchProgress Progress => new(_schedules, _classes.Count, _failures.Count);

        /// <summary>Runs alternatives deepest first until none is left (true) or the search stops (false).</summary>
        private bool Backtrack()
        {
            while (true)
            {
                if (!NextAlternative(out int k, out int u))
                {
                    return true;
                }

                Node node = _path[k];
                node.Done.Add(u);
                List<ScheduleDeviation> devs = DeviationsBefore(k);
                var dev = new ScheduleDeviation(node.Decision.Current, node.Decision.Point, u);
                if (devs.Count == 0 && BoundedSearch.ShardOf(dev, options.ShardCount) != options.ShardIndex)
                {
                    continue; // Another shard's subtree: searched there, asleep here.
                }

                if (_schedules >= options.MaxSchedules)
                {
                    return false;
                }

                devs.Add(dev);
                RunResult r = RunCounted(devs, counted: true, out bool failed);
                RecordedStep ran = StepAt(r, k, node, u);
                node.Chosen = u;
                int preemptions = node.Preemptions + (node.Decision.CurrentCanRun && u != node.Decision.Current ? 1 : 0);
                var sleep = new List<RecordedStep>();
                if (options.PartialOrderReduction)
                {
                    foreach (RecordedStep x in node.Sleep)
                    {
                        if (x.IndependentOf(ran))
                        {
                            sleep.Add(x);
                        }
                    }

                    foreach (int done in node.Done)
                    {
                        if (done != u && !node.Asleep(done))
                        {
                            RecordedStep x = RanAt(k, done);
                            if (x.IndependentOf(ran))
                            {
                                sleep.Add(x);
                            }
                        }
                    }
                }

                Extend(r, node.Decision.Step + 1, sleep, preemptions);
                if (failed && options.StopAtFirstFailure)
                {
                    return false;
                }
            }
        }

        /// <summary>The deviations of the current path before decision point <paramref name="k"/>.</summary>
        private List<ScheduleDeviation> DeviationsBefore(int k)
        {
            var devs = new List<ScheduleDeviation>();
            for (int j = 0; j < k; j++)
            {
                RecordedDecision d = _path[j].Decision;
                if (_path[j].Chosen != d.Default)
                {
                    devs.Add(new ScheduleDeviation(d.Current, d.Point, _path[j].Chosen));
                }
            }

            return devs;
        }

        /// <summary>
        /// The step <paramref name="task"/> took when run at point <paramref name="k"/>. A
        /// subtree left to another shard was not run here: run its first schedule, uncounted,
        /// to learn it, so this shard prunes exactly as the whole search does.
        /// </summary>
        private RecordedStep RanAt(int k, int task)
        {
            Node node = _path[k];
            if (!node.Ran.TryGetValue(task, out RecordedStep step))
            {
                List<ScheduleDeviation> devs = DeviationsBefore(k);
                devs.Add(new ScheduleDeviation(node.Decision.Current, node.Decision.Point, task));
                step = StepAt(RunCounted(devs, counted: false, out _), k, node, task);
            }

            return step;
        }

        private static RecordedStep StepAt(RunResult r, int k, Node node, int task)
        {
            ScheduleRecord rec = r.Record!;
            if (rec.Decisions.Count <= k || rec.Decisions[k].Current != node.Decision.Current || rec.Decisions[k].Point != node.Decision.Point
                || rec.Decisions[k].Chosen != task)
            {
                throw new InvalidOperationException(
                    $"the program did not repeat its schedule: re-running the first {k + 1} decision points with the same choices reached a different point " +
                    "(a run depends on something other than the seed and the schedule, such as wall time, a real thread or state left by an earlier run); " +
                    "a bounded search needs each run to start from the same state");
            }

            RecordedStep step = rec.Steps[rec.Decisions[k].Step];
            node.Ran[task] = step;
            return step;
        }

        /// <summary>Finds the deepest decision point with a choice left to run, popping exhausted points.</summary>
        private bool NextAlternative(out int k, out int u)
        {
            for (k = _path.Count - 1; k >= 0; k--)
            {
                Node node = _path[k];
                foreach (PendingOp p in node.Runnable)
                {
                    if (node.Done.Contains(p.Task) || node.Asleep(p.Task))
                    {
                        continue;
                    }

                    int cost = node.Decision.CurrentCanRun && p.Task != node.Decision.Current ? 1 : 0;
                    if (node.Preemptions + cost > options.PreemptionBound)
                    {
                        continue;
                    }

                    u = p.Task;
                    return true;
                }

                _path.RemoveAt(k);
            }

            u = 0;
            return false;
        }

        /// <summary>
        /// Appends the decision points of <paramref name="r"/> from step <paramref name="fromStep"/>
        /// on, carrying the sleep set along the steps; stops after a point whose run went on
        /// with a sleeping task (the rest of that run repeats a searched class).
        /// </summary>
        private void Extend(RunResult r, int fromStep, List<RecordedStep> sleep, int preemptions)
        {
            ScheduleRecord rec = r.Record!;
            for (int i = fromStep; i < rec.Steps.Count; i++)
            {
                RecordedStep st = rec.Steps[i];
                if (st.Decision >= 0)
                {
                    RecordedDecision d = rec.Decisions[st.Decision];
                    if (d.Step != i || st.Decision != _path.Count)
                    {
                        throw new InvalidOperationException($"decision record out of step: decision {st.Decision} at step {i}, path depth {_path.Count}");
                    }

                    var node = new Node
                    {
                        Decision = d,
                        Runnable = rec.Runnable.GetRange(d.RunnableStart, d.RunnableCount).ToArray(),
                        Sleep = [.. sleep],
                        Preemptions = preemptions,
                        Chosen = d.Chosen,
                    };
                    node.Done.Add(d.Chosen);
                    node.Ran[d.Chosen] = st;
                    _path.Add(node);
                    if (d.CurrentCanRun && d.Chosen != d.Current)
                    {
                        preemptions++;
                    }
                }

                for (int j = sleep.Count - 1; j >= 0; j--)
                {
                    if (sleep[j].Task == st.Task)
                    {
                        return;
                    }

                    if (!sleep[j].IndependentOf(st))
                    {
                        sleep.RemoveAt(j);
                    }
                }
            }
        }

        private RunResult RunCounted(List<ScheduleDeviation> devs, bool counted, out bool failed)
        {
            RunResult r = runOne(StrategySpec.Guided(devs));
            if (r.Record is null)
            {
                throw new InvalidOperationException("runOne must run the schedule on a fresh controlled kernel configured with the strategy it is given (KernelConfig.Strategy)");
            }

            failed = false;
            if (!counted)
            {
                return r;
            }

            _schedules++;
            if (r.InterleavingHash is ulong h)
            {
                _classes.Add(h);
            }

            if (isFailure(r))
            {
                failed = true;
                _failures.Add(r);
            }

            if (_schedules % ProgressEvery == 0)
            {
                progress?.Invoke(Progress);
            }

            return r;
        }
    }
}

/// <summary>The outcome of shrinking a failing schedule.</summary>
public sealed class ShrinkResult
{
    internal ShrinkResult(RunResult shrunk, int preemptionsBefore, int preemptionsAfter, long stepsBefore, long stepsAfter, int runs)
    {
        Shrunk = shrunk;
        PreemptionsBefore = preemptionsBefore;
        PreemptionsAfter = preemptionsAfter;
        StepsBefore = stepsBefore;
        StepsAfter = stepsAfter;
        Runs = runs;
    }

    /// <summary>The smallest failing run found; its trace replays it.</summary>
    public RunResult Shrunk { get; }

    /// <summary>Preemptions of the original schedule.</summary>
    public int PreemptionsBefore { get; }

    /// <summary>Preemptions of the shrunk schedule.</summary>
    public int PreemptionsAfter { get; }

    /// <summary>Steps of the original run.</summary>
    public long StepsBefore { get; }

    /// <summary>Steps of the shrunk run.</summary>
    public long StepsAfter { get; }

    /// <summary>Runs the shrinking took.</summary>
    public int Runs { get; }
}

/// <summary>Reduces a failing schedule while it still fails.</summary>
public static class ScheduleShrinker
{
    /// <summary>
    /// Shrinks <paramref name="failing"/> (a controlled run's trace): fewer preemptions, then
    /// fewer steps, keeping only schedules for which <paramref name="stillFails"/> holds.
    /// <paramref name="runOne"/> runs one schedule on a fresh kernel with the strategy it is given.
    /// </summary>
    /// <remarks>
    /// <paramref name="runOne"/> must build the kernel as the failing run did (seed, profile,
    /// machine). The schedule is first rewritten as deviations from the guided default and
    /// re-run to check it still fails; then delta debugging (ddmin) keeps the smallest subset
    /// of deviations that still fails, and a last pass tries dropping each one left. Stops
    /// early after <paramref name="maxRuns"/> runs with the best schedule so far.
    /// </remarks>
    public static ShrinkResult Shrink(RunTrace failing, Func<StrategySpec, RunResult> runOne, Func<RunResult, bool> stillFails, int maxRuns = 2000)
    {
        ArgumentNullException.ThrowIfNull(failing);
        ArgumentNullException.ThrowIfNull(runOne);
        ArgumentNullException.ThrowIfNull(stillFails);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxRuns, 1);
        if (failing.Mode != SchedulerMode.Controlled)
        {
            throw new ArgumentException("only traces of controlled runs can be shrunk; real-mode traces have no schedule", nameof(failing));
        }

        return new Shrinker(runOne, stillFails, maxRuns).Go(failing);
    }

    /// <summary>
    /// The schedule of <paramref name="trace"/> as guided deviations: every switch the trace
    /// made, and every choice after a task blocked or exited (the trace does not say which
    /// tasks were runnable there, so the default is unknown). Re-running them follows the trace.
    /// </summary>
    internal static List<ScheduleDeviation> DeviationsOf(RunTrace trace)
    {
        var points = new Dictionary<int, int>();
        var devs = new List<ScheduleDeviation>();
        string block = SchedOp.Block.KernelName();
        string exit = SchedOp.Exit.KernelName();
        foreach (TraceRecord r in trace.Records)
        {
            if (r.Kind != TraceRecordKind.Step)
            {
                continue;
            }

            int n = points.GetValueOrDefault(r.TaskId) + 1;
            points[r.TaskId] = n;
            if (r.NextTaskId != 0 && (r.NextTaskId != r.TaskId || r.Op == block || r.Op == exit))
            {
                devs.Add(new ScheduleDeviation(r.TaskId, n, r.NextTaskId));
            }
        }

        return devs;
    }

    private sealed class Shrinker(Func<StrategySpec, RunResult> runOne, Func<RunResult, bool> stillFails, int maxRuns)
    {
        private int _runs;
        private RunResult? _best;

        public ShrinkResult Go(RunTrace failing)
        {
            RunResult first = RunOne(StrategySpec.Guided(DeviationsOf(failing)));
            if (first.Record is null)
            {
                throw new InvalidOperationException("runOne must run the schedule on a fresh controlled kernel configured with the strategy it is given (KernelConfig.Strategy)");
            }

            if (!stillFails(first))
            {
                // The guided rewrite did not fail: fall back to the recorded schedule itself.
                RunResult replay = RunOne(StrategySpec.Replay(failing));
                if (replay.Outcome == RunOutcome.ReplayDivergence || !stillFails(replay))
                {
                    throw new InvalidOperationException(
                        $"the failing schedule does not fail when it is run again (replay: {replay.Outcome}); check that runOne builds the kernel as the failing run did (seed {failing.Seed}, profile {failing.Profile})");
                }

                return new ShrinkResult(replay, first.Record.Preemptions, first.Record.Preemptions, failing.StepCount, replay.Steps, _runs);
            }

            _best = first;
            Minimize(first.Record.Deviations());

            // ddmin keeps a subset of the original switches; a schedule with fewer preemptions
            // may need different ones. Search for one with the bound raised from 0, in the
            // runs left, and minimize what it finds.
            for (int bound = 0; bound < _best.Record!.Preemptions && _runs < maxRuns; bound++)
            {
                RunResult? found = FindWithin(bound);
                if (found is not null)
                {
                    _best = found;
                    Minimize(found.Record!.Deviations());
                    break;
                }
            }

            return new ShrinkResult(_best, first.Record.Preemptions, _best.Record!.Preemptions, failing.StepCount, _best.Steps, _runs);
        }

        /// <summary>ddmin, then a pass dropping each deviation left; <see cref="_best"/> ends as the last failing run.</summary>
        private void Minimize(List<ScheduleDeviation> devs)
        {
            devs = DeltaDebug(devs);
            for (int i = devs.Count - 1; i >= 0 && _runs < maxRuns; i--)
            {
                List<ScheduleDeviation> without = [.. devs];
                without.RemoveAt(i);
                if (Fails(without))
                {
                    devs = without;
                }
            }
        }

        private RunResult? FindWithin(int bound)
        {
            BoundedSearchResult r = BoundedSearch.Run(
                new BoundedSearchOptions { PreemptionBound = bound, MaxSchedules = maxRuns - _runs },
                spec => RunOne(spec),
                stillFails);
            return r.Failures.Count > 0 ? r.Failures[0] : null;
        }

        /// <summary>Zeller's ddmin: a 1-minimal failing subset (up to the run budget).</summary>
        private List<ScheduleDeviation> DeltaDebug(List<ScheduleDeviation> devs)
        {
            if (devs.Count == 0 || Fails([]))
            {
                return [];
            }

            int n = 2;
            while (devs.Count >= 2 && _runs < maxRuns)
            {
                int chunk = (devs.Count + n - 1) / n;
                bool reduced = false;
                for (int start = 0; start < devs.Count && !reduced; start += chunk)
                {
                    List<ScheduleDeviation> part = devs.GetRange(start, Math.Min(chunk, devs.Count - start));
                    if (Fails(part))
                    {
                        devs = part;
                        n = 2;
                        reduced = true;
                    }
                }

                for (int start = 0; start < devs.Count && !reduced && n > 2; start += chunk)
                {
                    List<ScheduleDeviation> rest = [.. devs[..start], .. devs[Math.Min(devs.Count, start + chunk)..]];
                    if (Fails(rest))
                    {
                        devs = rest;
                        n = Math.Max(n - 1, 2);
                        reduced = true;
                    }
                }

                if (!reduced)
                {
                    if (n >= devs.Count)
                    {
                        break;
                    }

                    n = Math.Min(n * 2, devs.Count);
                }
            }

            return devs;
        }

        private bool Fails(List<ScheduleDeviation> devs)
        {
            if (_runs >= maxRuns)
            {
                return false;
            }

            RunResult r = RunOne(StrategySpec.Guided(devs));
            if (!stillFails(r))
            {
                return false;
            }

            _best = r;
            return true;
        }

        private RunResult RunOne(StrategySpec spec)
        {
            _runs++;
            return runOne(spec);
        }
    }
}
