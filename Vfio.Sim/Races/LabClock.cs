// Not a kernel file: wall time for the race lab's progress lines and summaries (the
// command line's too). Only Vfio.Kernel touches the host's clocks; this forwards to it.

using Vfio.Kernel;

namespace Vfio.Sim.Races;

/// <summary>Wall-clock timestamps for progress and schedules-per-second figures.</summary>
internal static class LabClock
{
    /// <summary>A timestamp for <see cref="Since"/>.</summary>
    public static long Timestamp() => HostWorkers.Timestamp();

    /// <summary>Wall time since <paramref name="timestamp"/>.</summary>
    public static TimeSpan Since(long timestamp) => HostWorkers.Since(timestamp);
}
