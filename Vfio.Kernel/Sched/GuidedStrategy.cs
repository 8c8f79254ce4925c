// Simulator-only (no kernel counterpart): the guided strategy that the bounded search and
// the shrinker steer. Without deviations it is a non-preemptive scheduler: the running
// task goes on while it can; when it blocks or exits the lowest-id runnable task runs. A
// deviation (T, n, U) makes U run when T reaches its n-th scheduling point (counted from 1
// over the points at which T is the current task, blocking and exiting included), if U can
// run there; a deviation naming a task that cannot run is ignored.
//
// Per step: one dictionary lookup when deviations remain, no allocation. The point
// counters live in the run's ScheduleRecorder, which also records the decision points.

namespace Vfio.Kernel;

internal sealed class GuidedStrategy : Strategy
{
    // (task id << 32 | point) → the task to run there.
    private readonly Dictionary<long, int> _deviations;
    private readonly ScheduleRecorder _recorder;

    public GuidedStrategy(IReadOnlyList<ScheduleDeviation> deviations, ScheduleRecorder recorder)
    {
        _recorder = recorder;
        _deviations = new Dictionary<long, int>(deviations.Count);
        foreach (ScheduleDeviation d in deviations)
        {
            if (d.TaskId <= 0 || d.Point <= 0 || d.NextTaskId <= 0)
            {
                throw new ArgumentException($"deviation {d} is not valid: task ids and points count from 1", nameof(deviations));
            }

            // Two deviations at one point: the first wins, as the search never makes both.
            _deviations.TryAdd(Key(d.TaskId, d.Point), d.NextTaskId);
        }
    }

    public override KTask Choose(KTask current, List<KTask> runnable, SchedOp op, KernelObject? obj, long step)
    {
        if (runnable.Count == 1)
        {
            return runnable[0];
        }

        if (_deviations.Count > 0 && _deviations.TryGetValue(Key(current.Id, _recorder.PointOf(current)), out int next))
        {
            foreach (KTask t in runnable)
            {
                if (t.Id == next)
                {
                    return t;
                }
            }
        }

        foreach (KTask t in runnable)
        {
            if (ReferenceEquals(t, current))
            {
                return t;
            }
        }

        return runnable[0];
    }

    private static long Key(int task, int point) => ((long)task << 32) | (uint)point;
}
