// What the race catalogue says about a race scenario: where it comes from (the item of the
// race list in docs/races.md, the kernels it affected, the fix), whether it has a fix
// switch (a design variant or a profile that brings the bug back), and which detectors
// see it when the fix is off.

namespace Vfio.Sim.Races;

/// <summary>What sees a race when its fix is off.</summary>
public enum RaceDetector
{
    /// <summary>No task can run: the wait-for graph shows the cycle.</summary>
    Deadlock,

    /// <summary>Lockdep reports a lock-order inversion or recursion, even when no deadlock happens.</summary>
    Lockdep,

    /// <summary>The kernel WARNs or hits a BUG.</summary>
    WarnOrBug,

    /// <summary>A freed kernel object is used (KASAN, or a refcount that was already zero).</summary>
    UseAfterFree,

    /// <summary>A reference, pin, fd or <c>locked_vm</c> charge is left at the end.</summary>
    Leak,

    /// <summary>An unbind (or another blocking call) does not complete within a virtual-time bound.</summary>
    StalledUnbind,

    /// <summary>A call returns an errno the fixed kernel does not.</summary>
    WrongErrno,

    /// <summary>An invariant the fixed kernel keeps is broken (a state seen that must never be).</summary>
    Invariant,
}

/// <summary>The catalogue's entry for a race scenario.</summary>
public sealed record RaceInfo
{
    /// <summary>
    /// The item in the race list of <c>docs/races.md</c>: <c>"4"</c> for race 4, or the name of
    /// a design story (<c>"seed 000"</c>).
    /// </summary>
    public required string Item { get; init; }

    /// <summary>The kernels that had the bug (<c>"≤ v6.4"</c>).</summary>
    public required string Kernels { get; init; }

    /// <summary>The fix: commit id(s) and subject(s).</summary>
    public required string FixCommits { get; init; }

    /// <summary>
    /// What <c>--fix off</c> switches to (<c>"profile linux-6.1"</c>,
    /// <c>"VfioDesign.TrackDevicesDuringUnbind = false"</c>), or null when the scenario has no fix switch.
    /// </summary>
    public string? FixSwitch { get; init; }

    /// <summary>The detectors that see the bug with the fix off.</summary>
    public required IReadOnlyList<RaceDetector> Detectors { get; init; }
}
