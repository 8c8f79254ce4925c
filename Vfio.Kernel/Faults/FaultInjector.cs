// Models lib/fault-inject.c and the per-task fail-nth file (v6.12): named sites where
// simulated kernel code can fail for resource reasons ("kzalloc:vfio_dma", "gup:pin",
// "iommu_map"). Two modes, combinable: fail-nth fails exactly the Nth evaluation of the
// matching sites after arming (the iommufd_fail_nth.c method: sweep n = 1, 2, … until
// the injection is no longer consumed), and seeded probabilities per site pattern. When
// nothing is armed a site costs one volatile read. Every evaluation while armed is
// recorded in the trace; a replay checks that the same sites make the same decisions.

namespace Vfio.Kernel;

/// <summary>One evaluation of a fault site while injection was armed.</summary>
/// <param name="Site">The site name.</param>
/// <param name="Task">The task that evaluated it.</param>
/// <param name="Hit">How many matching evaluations came before, plus one.</param>
/// <param name="Failed">Whether the site was told to fail.</param>
public sealed record FaultDecision(string Site, string Task, long Hit, bool Failed);

/// <summary>Fault injection for one <see cref="SimKernel"/>.</summary>
public sealed class FaultInjector
{
    private readonly SimKernel _kernel;
    private readonly KRandom _rng;

    // Protects everything below.
    private readonly Lock _lock = new();
    private volatile bool _armed;
    private long _failNth;
    private string? _nthPattern;
    private KTask? _nthTask;
    private long _hits;
    private bool _consumed;
    private readonly List<(string Pattern, double Probability)> _probabilities = [];
    private readonly List<FaultDecision> _decisions = [];
    private readonly Queue<TraceRecord> _replay = new();

    internal FaultInjector(SimKernel kernel)
    {
        _kernel = kernel;
        _rng = new KRandom(kernel.Seed, stream: 3);
        if (kernel.Config.Strategy.ReplayTrace is { } trace)
        {
            foreach (TraceRecord r in trace.FaultDecisions)
            {
                _replay.Enqueue(r);
            }
        }
    }

    /// <summary>True when any injection is armed.</summary>
    public bool IsArmed => _armed;

    /// <summary>
    /// fail-nth: the <paramref name="n"/>-th evaluation (1-based) of a site matching
    /// <paramref name="sitePattern"/> (all sites when null; a trailing <c>*</c> matches a
    /// prefix) by <paramref name="task"/> (any task when null) fails. Resets the hit count.
    /// </summary>
    public void FailNth(long n, string? sitePattern = null, KTask? task = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(n, 1);
        lock (_lock)
        {
            _failNth = n;
            _nthPattern = sitePattern;
            _nthTask = task;
            _hits = 0;
            _consumed = false;
            _armed = true;
        }
    }

    /// <summary>Makes sites matching <paramref name="sitePattern"/> fail with probability <paramref name="probability"/>, drawn from the run's seed.</summary>
    public void SetProbability(string sitePattern, double probability)
    {
        ArgumentException.ThrowIfNullOrEmpty(sitePattern);
        ArgumentOutOfRangeException.ThrowIfLessThan(probability, 0.0);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(probability, 1.0);
        lock (_lock)
        {
            _probabilities.RemoveAll(p => p.Pattern == sitePattern);
            if (probability > 0)
            {
                _probabilities.Add((sitePattern, probability));
            }

            _armed = _failNth > 0 || _probabilities.Count > 0;
        }
    }

    /// <summary>Disarms everything (keeps the decision log).</summary>
    public void Disarm()
    {
        lock (_lock)
        {
            _failNth = 0;
            _nthPattern = null;
            _nthTask = null;
            _probabilities.Clear();
            _armed = false;
        }
    }

    /// <summary>
    /// True once the armed fail-nth injection has fired (the sweep read-back of
    /// <c>fail-nth</c> being 0): the sequence reached site n, so try n + 1.
    /// </summary>
    public bool Consumed
    {
        get
        {
            lock (_lock)
            {
                return _consumed;
            }
        }
    }

    /// <summary>Matching site evaluations counted since fail-nth was armed.</summary>
    public long Hits
    {
        get
        {
            lock (_lock)
            {
                return _hits;
            }
        }
    }

    /// <summary>Every evaluation made while armed, in order.</summary>
    public IReadOnlyList<FaultDecision> Decisions
    {
        get
        {
            lock (_lock)
            {
                return [.. _decisions];
            }
        }
    }

    /// <summary>
    /// should_fail(): simulated kernel code calls this at a site that can fail for resource
    /// reasons and returns the site's errno (ENOMEM for allocations, EFAULT for user copies)
    /// when it is true.
    /// </summary>
    public bool ShouldFail(string site)
    {
        if (!_armed)
        {
            return false;
        }

        return Decide(site);
    }

    private bool Decide(string site)
    {
        KTask? t = KTask.CurrentOrNull is { } c && ReferenceEquals(c.Kernel, _kernel) ? c : null;
        bool fail = false;
        long hit = 0;
        bool counted = false;
        lock (_lock)
        {
            if (_failNth > 0 && Matches(_nthPattern, site) && (_nthTask is null || ReferenceEquals(_nthTask, t)))
            {
                counted = true;
                hit = ++_hits;
                if (hit == _failNth)
                {
                    fail = true;
                    _consumed = true;
                    _failNth = 0;
                    _armed = _probabilities.Count > 0;
                }
            }

            if (!fail)
            {
                foreach ((string pattern, double p) in _probabilities)
                {
                    if (Matches(pattern, site))
                    {
                        counted = true;
                        if (_rng.Chance(p))
                        {
                            fail = true;
                        }

                        break;
                    }
                }
            }

            if (!counted)
            {
                return false;
            }

            _decisions.Add(new FaultDecision(site, t?.DisplayName ?? "kernel", hit, fail));
        }

        CheckReplay(t, site, fail);
        _kernel.Trace.Fault(t, site, hit, fail);
        return fail;
    }

    private void CheckReplay(KTask? t, string site, bool fail)
    {
        if (_kernel.Config.Strategy.Kind != StrategyKind.Replay)
        {
            return;
        }

        string? problem = null;
        lock (_lock)
        {
            if (_replay.Count == 0)
            {
                problem = $"REPLAY DIVERGED: fault site '{site}' was evaluated, but the trace records no further fault decisions";
            }
            else
            {
                TraceRecord r = _replay.Dequeue();
                bool recordedFail = r.Detail?.EndsWith("FAIL", StringComparison.Ordinal) == true;
                if (r.Object != site || recordedFail != fail)
                {
                    problem = $"REPLAY DIVERGED: the trace has fault site '{r.Object}' → {(recordedFail ? "fail" : "pass")}, the code evaluated '{site}' → {(fail ? "fail" : "pass")}";
                }
            }
        }

        if (problem is not null)
        {
            _kernel.Scheduler.Fail(RunOutcome.ReplayDivergence, problem, null, t, captureGraph: false);
            throw new KTaskAbortedException(problem);
        }
    }

    /// <summary>After a replayed run: a report when the trace has fault decisions the code never made.</summary>
    internal string? CheckReplayFinished()
    {
        lock (_lock)
        {
            return _replay.Count == 0
                ? null
                : $"REPLAY DIVERGED: the run finished, but the trace still has {_replay.Count} fault decision(s), next at site '{_replay.Peek().Object}'";
        }
    }

    private static bool Matches(string? pattern, string site)
    {
        if (pattern is null || pattern == "*")
        {
            return true;
        }

        return pattern.EndsWith('*')
            ? site.StartsWith(pattern.AsSpan(0, pattern.Length - 1), StringComparison.Ordinal)
            : string.Equals(pattern, site, StringComparison.Ordinal);
    }
}
