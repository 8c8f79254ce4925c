// Not a kernel file: the race lab. Explore a race scenario (or a body of your own) over many
// schedules — random, PCT or round-robin over a seed range, or bounded-exhaustive with a
// preemption bound — on all cores or as one shard of a CI matrix; write what it finds as
// replay files; replay and shrink them. `vfio-sim race` is a thin front-end over this class.
//
// Seeded exploration: the shard's seeds are numbered 0..n-1 and handed out in order to the
// worker threads (each boots its own kernels, trace off). A failing seed with
// StopAtFirstBug lowers a shared cut-off, so no worker starts a later seed; every seed at
// or below the cut-off has run, so the result — schedules counted, distinct interleavings,
// the first bug — is the one a single worker gives, whatever the number of jobs. Then each
// bug's run is replayed with the trace on (the replay file's events) and shrunk.
//
// Exhaustive: BoundedSearch over guided schedules. With J jobs and shard K of N, worker j
// searches internal shard K + N·j of N·J, so the shards of every job and machine partition
// the same tree and their outputs merge.

using System.Collections.Concurrent;
using Vfio.Kernel;
using Vfio.Sim.Scenarios;

namespace Vfio.Sim.Races;

/// <summary>How <see cref="RaceLab.Explore(Scenario, RaceExploreOptions, ScenarioOptions?)"/> explores.</summary>
public sealed record RaceExploreOptions
{
    /// <summary>Schedules to run (seeds <see cref="FirstSeed"/> on); with <see cref="Exhaustive"/>, a cap.</summary>
    public int Schedules { get; init; } = 100;

    /// <summary>The first seed of the range (exhaustive: the seed of every run's other random choices).</summary>
    public ulong FirstSeed { get; init; } = 1;

    /// <summary>The strategy of seeded exploration: random, PCT (default, depth 3) or round-robin.</summary>
    public StrategySpec Strategy { get; init; } = StrategySpec.Pct();

    /// <summary>Bounded-exhaustive search instead of seeded schedules.</summary>
    public bool Exhaustive { get; init; }

    /// <summary>Exhaustive: at most this many preemptions per schedule.</summary>
    public int Preemptions { get; init; } = 2;

    /// <summary>Worker threads (each runs its own kernels); default 1. Seeded results do not depend on it.</summary>
    public int Jobs { get; init; } = 1;

    /// <summary>This shard's index in [0, <see cref="ShardCount"/>).</summary>
    public int ShardIndex { get; init; }

    /// <summary>How many shards split the exploration (across CI jobs or machines); seed i of the range belongs to shard i mod count.</summary>
    public int ShardCount { get; init; } = 1;

    /// <summary>Stop at the first bug (default) or explore on and collect every distinct one.</summary>
    public bool StopAtFirstBug { get; init; } = true;

    /// <summary>Shrink each bug's schedule before reporting it (default on).</summary>
    public bool Shrink { get; init; } = true;

    /// <summary>Scheduling steps per run before it is a liveness failure.</summary>
    public long StepBudget { get; init; } = 100_000;

    /// <summary>Told of progress after every schedule (schedules, distinct interleavings, bugs), from the worker threads.</summary>
    public IProgress<SearchProgress>? Progress { get; init; }
}

/// <summary>Explores, replays and shrinks race scenarios.</summary>
public static class RaceLab
{
    /// <summary>
    /// Explores <paramref name="scenario"/> as <paramref name="explore"/> says; <paramref name="options"/>
    /// gives the fix switch, designs, profile and machine (its seed, strategy, mode and trace are the lab's).
    /// </summary>
    /// <exception cref="ArgumentException">A bad shard, job count or schedule count, or a design setting that does not exist.</exception>
    /// <exception cref="InvalidOperationException">The machine cannot run the scenario, or it has no fix switch and <see cref="ScenarioOptions.Fix"/> is set.</exception>
    public static RaceExploration Explore(Scenario scenario, RaceExploreOptions explore, ScenarioOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(scenario);
        ArgumentNullException.ThrowIfNull(explore);
        Validate(explore);
        ScenarioOptions o = options ?? new ScenarioOptions();
        foreach (string d in o.Designs)
        {
            if (DesignSettings.Validate(d) is { } why)
            {
                throw new ArgumentException(why, nameof(options));
            }
        }

        if (o.Fix is not null && scenario.Race?.FixSwitch is null)
        {
            throw new InvalidOperationException($"{scenario.Name} has no fix switch: explore it without a fix setting");
        }

        long budget = explore.StepBudget;
        Action<VfioSimBuilder>? outer = o.Configure;
        o = o with
        {
            Mode = SchedulerMode.Controlled,
            Trace = false,
            Timeline = false,
            Replay = null,
            Observer = null,
            Configure = b =>
            {
                outer?.Invoke(b);
                b.ConfigureKernel(c => c with { StepBudget = budget });
            },
        };

        long start = HostWorkers.Timestamp();
        var run = new Exploration(scenario, explore, o);
        return explore.Exhaustive ? run.Exhaustive(start) : run.Seeded(start);
    }

    /// <summary>
    /// Replays a replay file: the scenario (found by name in <paramref name="catalog"/>, default the
    /// built-in one) with the file's fix switch, designs and schedule, trace on.
    /// <see cref="RaceSchedule.IsReproducedBy"/> says whether it showed the recorded finding.
    /// </summary>
    /// <exception cref="ArgumentException">No scenario has the file's name, or its profile is unknown.</exception>
    public static ScenarioResult Replay(RaceSchedule schedule, ScenarioCatalog? catalog = null)
    {
        ArgumentNullException.ThrowIfNull(schedule);
        Scenario s = (catalog ?? ScenarioCatalog.Default).Get(schedule.Scenario);
        return s.Run(OptionsOf(schedule) with { Replay = schedule.Trace, Trace = true });
    }

    /// <summary>
    /// Shrinks a failing replay file's schedule (fewer preemptions, then fewer steps) while it
    /// still fails with the same detector, and returns the shrunk schedule, recorded with the trace on.
    /// </summary>
    /// <exception cref="ArgumentException">The schedule records no finding (nothing to shrink), or its scenario is not in the catalogue.</exception>
    public static RaceSchedule Shrink(RaceSchedule schedule, ScenarioCatalog? catalog = null)
    {
        ArgumentNullException.ThrowIfNull(schedule);
        RaceFinding target = schedule.Finding
            ?? throw new ArgumentException("the schedule records no finding: only a failing schedule can be shrunk", nameof(schedule));
        Scenario s = (catalog ?? ScenarioCatalog.Default).Get(schedule.Scenario);
        ScenarioOptions o = OptionsOf(schedule) with { Trace = false };
        return ShrinkRun(s, o, schedule.Trace, target) ?? schedule;
    }

    private static void Validate(RaceExploreOptions e)
    {
        if (e.ShardCount < 1 || e.ShardIndex < 0 || e.ShardIndex >= e.ShardCount)
        {
            throw new ArgumentException($"shard {e.ShardIndex}/{e.ShardCount} is not valid: need 0 <= index < count", nameof(e));
        }

        if (e.Jobs < 1)
        {
            throw new ArgumentException($"jobs must be at least 1, not {e.Jobs}", nameof(e));
        }

        if (e.Schedules < 0)
        {
            throw new ArgumentException($"schedules must not be negative, not {e.Schedules}", nameof(e));
        }

        if (e.Preemptions < 0)
        {
            throw new ArgumentException($"the preemption bound must not be negative, not {e.Preemptions}", nameof(e));
        }
    }

    // The options a replay file's run had (its schedule and seed come from the trace).
    internal static ScenarioOptions OptionsOf(RaceSchedule schedule)
    {
        KernelProfile profile = KernelProfile.TryParse(schedule.Profile, out KernelProfile? p)
            ? p
            : throw new ArgumentException(KernelProfile.UnknownMessage(schedule.Profile), nameof(schedule));
        return new ScenarioOptions
        {
            Seed = schedule.Trace.Seed,
            Profile = profile,
            Fix = schedule.Fix,
            Designs = schedule.Designs,
        };
    }

    // Runs one schedule with the trace off; the finding goes with the run.
    internal static (RunResult Run, RaceFinding? Finding) RunOnce(Scenario s, ScenarioOptions o)
    {
        Action<VfioSimBuilder>? configure = o.Configure;
        ScenarioResult r = s.Run(o with
        {
            Configure = b =>
            {
                configure?.Invoke(b);
                b.ConfigureKernel(c => c with { InterleavingHash = true });
            },
        });
        if (r.Run is null)
        {
            throw new InvalidOperationException($"{s.Name} cannot run on this machine: {r.UnmetReason}");
        }

        return (r.Run, RaceFinding.Of(r));
    }

    // Replays a (trace-off) run with the trace on, for the replay file: the same schedule,
    // now with the kernel's events. Null if the replay does not show the same finding.
    internal static RaceSchedule? Record(Scenario s, ScenarioOptions o, RunTrace trace, RaceFinding finding)
    {
        ScenarioResult r = s.Run(o with { Seed = trace.Seed, Replay = trace, Trace = true });
        RaceFinding? again = RaceFinding.Of(r);
        return r.Trace is { } t && again is not null && again.Detector == finding.Detector
            ? new RaceSchedule(s.Name, o.Fix, o.Designs, t, again)
            : null;
    }

    // The shrunk schedule, recorded; null if the shrinker is not available or found nothing.
    internal static RaceSchedule? ShrinkRun(Scenario s, ScenarioOptions o, RunTrace failing, RaceFinding target)
    {
        var findings = new Dictionary<RunResult, RaceFinding?>(ReferenceEqualityComparer.Instance);
        ulong seed = failing.Seed;
        ShrinkResult shrunk;
        try
        {
            shrunk = ScheduleShrinker.Shrink(
                failing,
                spec =>
                {
                    (RunResult run, RaceFinding? f) = RunOnce(s, o with { Seed = seed, Strategy = spec, Replay = null });
                    findings[run] = f;
                    return run;
                },
                run => findings.TryGetValue(run, out RaceFinding? f) && f is not null && f.Detector == target.Detector);
        }
        catch (InvalidOperationException)
        {
            // The shrinker could not make the schedule fail again under a guided strategy: report it unshrunk.
            return null;
        }

        return Record(s, o with { Replay = null }, shrunk.Shrunk.Trace, target);
    }

    // Which bug a finding shows: its detector and, for a check, what the check expected (the
    // values it found differ from schedule to schedule: UUIDs, counts, times).
    internal static (RaceDetector, string) BugKey(RaceFinding f)
    {
        int found = f.Summary.IndexOf("; found", StringComparison.Ordinal);
        return (f.Detector, f.Summary.StartsWith("expected ", StringComparison.Ordinal) && found > 0 ? f.Summary[..found] : "");
    }

    // A run's interleaving, as a key: its happens-before hash (runs that only reorder
    // independent steps share it), the same in every process so shard summaries merge.
    internal static ulong InterleavingKey(RunResult run)
        => run.InterleavingHash ?? throw new InvalidOperationException("the run was made without KernelConfig.InterleavingHash");

    // One exploration: the scenario, what to explore, the options of every run, and the
    // counters the workers share.
    private sealed class Exploration(Scenario scenario, RaceExploreOptions explore, ScenarioOptions options)
    {
        private readonly ConcurrentDictionary<ulong, byte> _seen = new();
        private long _schedules;
        private long _distinct;
        private long _failures;

        private void Count(ulong key, bool failed)
        {
            long n = Interlocked.Increment(ref _schedules);
            if (_seen.TryAdd(key, 0))
            {
                Interlocked.Increment(ref _distinct);
            }

            long f = failed ? Interlocked.Increment(ref _failures) : Interlocked.Read(ref _failures);
            explore.Progress?.Report(new SearchProgress(n, Interlocked.Read(ref _distinct), f));
        }

        public RaceExploration Seeded(long start)
        {
            int count = 0;
            for (int i = explore.ShardIndex; i < explore.Schedules; i += explore.ShardCount)
            {
                count++;
            }

            var keys = new ulong[count];
            var failed = new ConcurrentDictionary<int, (RunTrace Trace, RaceFinding Finding)>();
            int next = -1;
            int cutoff = int.MaxValue;
            HostWorkers.Run(Math.Min(explore.Jobs, Math.Max(1, count)), _ =>
            {
                while (true)
                {
                    int i = Interlocked.Increment(ref next);
                    if (i >= count || i > Volatile.Read(ref cutoff))
                    {
                        return;
                    }

                    ulong seed = explore.FirstSeed + (ulong)explore.ShardIndex + ((ulong)i * (ulong)explore.ShardCount);
                    (RunResult run, RaceFinding? finding) = RunOnce(scenario, options with { Seed = seed, Strategy = explore.Strategy });
                    keys[i] = InterleavingKey(run);
                    Count(keys[i], finding is not null);
                    if (finding is not null)
                    {
                        failed[i] = (run.Trace, finding);
                        if (explore.StopAtFirstBug)
                        {
                            LowerTo(ref cutoff, i);
                        }
                    }
                }
            });

            // What a single worker would have run: every seed up to the first failing one.
            int ran = explore.StopAtFirstBug && cutoff != int.MaxValue ? cutoff + 1 : count;
            var distinct = new HashSet<ulong>();
            for (int i = 0; i < ran; i++)
            {
                distinct.Add(keys[i]);
            }

            var bugs = new List<RaceBug>();
            var findings = new HashSet<(RaceDetector, string)>();
            long failures = 0;
            for (int i = 0; i < ran; i++)
            {
                if (!failed.TryGetValue(i, out (RunTrace Trace, RaceFinding Finding) f))
                {
                    continue;
                }

                failures++;
                if (findings.Add(BugKey(f.Finding)))
                {
                    bugs.Add(Bug(f.Trace, f.Finding));
                }
            }

            return new RaceExploration(scenario.Name, ran, failures, distinct, exhausted: null, bugs, HostWorkers.Since(start));
        }

        public RaceExploration Exhaustive(long start)
        {
            int jobs = explore.Jobs;
            int shards = explore.ShardCount * jobs;
            int cap = explore.Schedules == int.MaxValue ? int.MaxValue : (explore.Schedules + jobs - 1) / jobs;
            var results = new BoundedSearchResult[jobs];
            var findings = new ConcurrentDictionary<RunResult, RaceFinding>(ReferenceEqualityComparer.Instance);
            ScenarioOptions o = options with { Seed = explore.FirstSeed };
            HostWorkers.Run(jobs, j =>
            {
                var search = new BoundedSearchOptions
                {
                    PreemptionBound = explore.Preemptions,
                    MaxSchedules = cap,
                    ShardIndex = explore.ShardIndex + (explore.ShardCount * j),
                    ShardCount = shards,
                    StopAtFirstFailure = explore.StopAtFirstBug,
                };
                results[j] = BoundedSearch.Run(search, spec =>
                {
                    (RunResult run, RaceFinding? finding) = RunOnce(scenario, o with { Strategy = spec });
                    if (finding is not null)
                    {
                        findings[run] = finding;
                    }

                    Count(InterleavingKey(run), finding is not null);
                    return run;
                });
            });

            long schedules = 0;
            long failures = 0;
            bool exhausted = true;
            var bugs = new List<RaceBug>();
            var seen = new HashSet<(RaceDetector, string)>();
            foreach (BoundedSearchResult r in results)
            {
                schedules += r.Schedules;
                exhausted &= r.Exhausted;
                foreach (RunResult failure in r.Failures)
                {
                    failures++;
                    RaceFinding f = findings.TryGetValue(failure, out RaceFinding? known) ? known : Classify(failure);
                    if (seen.Add(BugKey(f)) && !(explore.StopAtFirstBug && bugs.Count > 0))
                    {
                        bugs.Add(Bug(failure.Trace, f));
                    }
                }
            }

            return new RaceExploration(scenario.Name, schedules, failures, [.. _seen.Keys], exhausted, bugs, HostWorkers.Since(start));
        }

        // location = min(location, value), atomically.
        private static void LowerTo(ref int location, int value)
        {
            int seen = Volatile.Read(ref location);
            while (value < seen)
            {
                int was = Interlocked.CompareExchange(ref location, value, seen);
                if (was == seen)
                {
                    return;
                }

                seen = was;
            }
        }

        // A failing run the search handed back as a different object than runOne returned:
        // replay it to see what its detector finds.
        private RaceFinding Classify(RunResult run)
            => RaceFinding.Of(scenario.Run(options with { Seed = run.Trace.Seed, Replay = run.Trace }))
                ?? new RaceFinding { Detector = RaceDetector.Invariant, Summary = run.Outcome.ToString(), Report = run.Describe() };

        private RaceBug Bug(RunTrace trace, RaceFinding finding)
        {
            ScenarioOptions o = options with { Strategy = explore.Strategy };
            RaceSchedule found = Record(scenario, o, trace, finding)
                ?? new RaceSchedule(scenario.Name, options.Fix, options.Designs, trace, finding);
            RaceSchedule? shrunk = explore.Shrink ? ShrinkRun(scenario, o, found.Trace, found.Finding!) : null;
            return shrunk is null ? new RaceBug(found.Finding!, found, original: null) : new RaceBug(shrunk.Finding!, shrunk, found);
        }
    }
}
