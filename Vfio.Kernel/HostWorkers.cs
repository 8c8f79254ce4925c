// Not a kernel file: the host side of an exploration. Many simulated kernels run side by
// side on the host's cores (each kernel is independent and schedules its own tasks), and the
// lab measures wall time for its progress lines. Only Vfio.Kernel may touch raw threads and
// wall clocks, so the race lab in Vfio.Sim comes here for both.

using System.Diagnostics;

namespace Vfio.Kernel;

/// <summary>Worker threads and wall time for running many independent kernels at once.</summary>
internal static class HostWorkers
{
    /// <summary>
    /// Runs <paramref name="worker"/>(0 … <paramref name="jobs"/> − 1) on <paramref name="jobs"/>
    /// threads and waits for all; one job runs on the calling thread. The first exception a
    /// worker throws is rethrown after every worker has ended.
    /// </summary>
    public static void Run(int jobs, Action<int> worker)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(jobs, 1);
        ArgumentNullException.ThrowIfNull(worker);
        if (jobs == 1)
        {
            worker(0);
            return;
        }

        var threads = new Thread[jobs];
        Exception? first = null;
        for (int j = 0; j < jobs; j++)
        {
            int index = j;
            threads[j] = new Thread(() =>
            {
                try
                {
                    worker(index);
                }
                catch (Exception e)
                {
                    Interlocked.CompareExchange(ref first, e, null);
                }
            })
            {
                IsBackground = true,
                Name = $"race-lab-{index}",
            };
            threads[j].Start();
        }

        foreach (Thread t in threads)
        {
            t.Join();
        }

        if (first is not null)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(first);
        }
    }

    /// <summary>A wall-clock timestamp for <see cref="Since"/>.</summary>
    public static long Timestamp() => Stopwatch.GetTimestamp();

    /// <summary>Wall time since <paramref name="timestamp"/>.</summary>
    public static TimeSpan Since(long timestamp) => Stopwatch.GetElapsedTime(timestamp);

    /// <summary>Wall time from <paramref name="start"/> to <paramref name="end"/> (two <see cref="Timestamp"/>s) in nanoseconds, at the timer's full resolution.</summary>
    public static double ElapsedNs(long start, long end) => (end - start) * (1e9 / Stopwatch.Frequency);
}
