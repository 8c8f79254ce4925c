// Models fs/select.c (v6.12): poll(). A first pass asks every file for its ready mask
// and, through the poll table, hangs a wake-up entry on each file's wait queues; if
// nothing is ready the caller sleeps until one of them fires, the timeout passes on the
// virtual clock, or a signal arrives; then it asks again without registering.

using Vfio.Kernel;

namespace Vfio.Platform.Fs;

/// <summary>struct pollfd.</summary>
/// <param name="Fd">The descriptor (negative entries are ignored).</param>
/// <param name="Events">Requested events.</param>
/// <param name="REvents">Returned events.</param>
public record struct PollFd(int Fd, PollEvents Events, PollEvents REvents = PollEvents.None);

/// <summary>poll_table: how a file's -&gt;poll registers the caller on its wait queues.</summary>
public sealed class PollTable
{
    private readonly WaitQueue _wq;
    private readonly List<WaitQueueEntry> _entries = [];
    private volatile bool _triggered;
    private PollEvents _interest;

    internal PollTable(SimKernel kernel)
    {
        _wq = new WaitQueue(kernel, "poll_wqueues");
    }

    internal bool Registering { get; set; } = true;

    internal bool Triggered => _triggered;

    internal WaitQueue Queue => _wq;

    internal void SetInterest(PollEvents events) => _interest = events | PollEvents.POLLERR | PollEvents.POLLHUP;

    /// <summary>poll_wait(): wake the poller when <paramref name="wq"/> is woken with an event it asked for.</summary>
    public void Wait(SimFile file, WaitQueue wq)
    {
        ArgumentNullException.ThrowIfNull(wq);
        if (!Registering)
        {
            return;
        }

        PollEvents interest = _interest;
        var entry = new WaitQueueEntry((e, key) =>
        {
            if (key is PollEvents ev && (ev & interest) == 0)
            {
                return; // pollwake(): not an event this fd asked for.
            }

            _triggered = true;
            _wq.WakeUp();
        }, file);
        wq.AddEntry(entry);
        _entries.Add(entry);
    }

    internal void Rearm() => _triggered = false;

    internal void RemoveAll()
    {
        foreach (WaitQueueEntry e in _entries)
        {
            e.Queue?.RemoveEntry(e);
        }

        _entries.Clear();
    }
}
