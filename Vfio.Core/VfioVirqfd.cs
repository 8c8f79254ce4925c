// Models drivers/vfio/virqfd.c (v6.12): an eventfd a driver watches from the kernel side —
// vfio-pci's INTx unmask eventfd, which KVM's irqfd resampler writes. A virqfd hangs a wake
// function on the eventfd's wait queue; when the eventfd is signalled the wake function
// takes the counter and calls the driver's handler right there (in the writer's task), and
// when the handler asks for it (returns true, or there is no handler) schedules the inject
// work, which runs the driver's thread callback in a task of its own. Closing the eventfd
// (POLLHUP) deactivates the virqfd; so does vfio_virqfd_disable(), which then waits for the
// cleanup (the shutdown unhooks the wake function, flushes the inject work and drops the
// eventfd). vfio_virqfd_flush_thread() (v6.9) waits for inject work already scheduled.
//
// Each driver device owns one VfioVirqfdSet: the kernel's global virqfd_lock and cleanup
// workqueue, scoped to the device (flushing it flushes that device's virqfds only, which
// is all its callers need).
//
// Lock rule: the set's spinlock (virqfd_lock) protects the slots (the *pvirqfd pointers)
// and the work counters; handlers, threads and eventfd puts run without it.

using Vfio.Kernel;
using Vfio.Platform.Fs;

namespace Vfio.Core;

/// <summary>The place a driver keeps one virqfd (<c>struct virqfd **pvirqfd</c>).</summary>
public sealed class VfioVirqfdSlot
{
    internal VfioVirqfd? Current { get; set; }

    /// <summary>True while a virqfd is registered in this slot.</summary>
    public bool IsActive => Volatile.Read(ref _active);

    private bool _active;

    internal void Publish(VfioVirqfd? v)
    {
        Current = v;
        Volatile.Write(ref _active, v is not null);
    }
}

/// <summary>One registered virqfd (<c>struct virqfd</c>).</summary>
public sealed class VfioVirqfd
{
    private readonly VfioVirqfdSet _set;
    private readonly Func<bool>? _handler;
    private readonly Action? _thread;
    private readonly WaitQueueEntry _wait;
    private readonly Func<bool> _injectsDone;
    private int _injectsOutstanding;
    private bool _injectPending;

    internal VfioVirqfd(VfioVirqfdSet set, EventFdContext eventfd, Func<bool>? handler, Action? thread, VfioVirqfdSlot slot)
    {
        _set = set;
        Eventfd = eventfd;
        _handler = handler;
        _thread = thread;
        Slot = slot;
        _wait = new WaitQueueEntry((_, key) => Wakeup(key), this);
        _injectsDone = () => Volatile.Read(ref _injectsOutstanding) == 0;
    }

    /// <summary>The watched eventfd.</summary>
    public EventFdContext Eventfd { get; }

    internal VfioVirqfdSlot Slot { get; }

    internal void Hook() => Eventfd.Wqh.AddEntry(_wait);

    /// <summary>virqfd_wakeup(): POLLIN takes the count and runs the handler (and maybe the inject); POLLHUP deactivates.</summary>
    private void Wakeup(object? key)
    {
        PollEvents flags = key is PollEvents ev ? ev : PollEvents.POLLIN;
        if ((flags & PollEvents.POLLIN) != 0)
        {
            Eventfd.DoRead();
            Fire();
        }

        if ((flags & PollEvents.POLLHUP) != 0)
        {
            _set.DeactivateIfCurrent(this);
        }
    }

    /// <summary>What an EPOLLIN does: the handler, then the inject work when asked for.</summary>
    internal void Fire()
    {
        if ((_handler is null || _handler()) && _thread is not null)
        {
            ScheduleInject();
        }
    }

    /// <summary>schedule_work(&amp;virqfd-&gt;inject): a no-op while one is pending; the thread callback runs in a task.</summary>
    private void ScheduleInject()
    {
        _set.Lock.Lock();
        if (_injectPending)
        {
            _set.Lock.Unlock();
            return;
        }

        _injectPending = true;
        _injectsOutstanding++;
        _set.Lock.Unlock();
        _set.Kernel.Spawn("kworker/virqfd-inject", () =>
        {
            _set.Lock.Lock();
            _injectPending = false;
            _set.Lock.Unlock();
            try
            {
                _thread!();
            }
            finally
            {
                _set.Lock.Lock();
                _injectsOutstanding--;
                _set.Lock.Unlock();
                _set.Done.WakeUp();
            }
        });
    }

    /// <summary>flush_work(&amp;virqfd-&gt;inject): waits until no inject work is pending or running.</summary>
    internal void FlushInject() => _set.Done.WaitEvent(_injectsDone);

    /// <summary>virqfd_shutdown(): unhook from the eventfd (remove_wait_queue waits for a wake-up in flight), flush the inject work, drop the eventfd.</summary>
    internal void Shutdown()
    {
        Eventfd.Wqh.RemoveEntry(_wait);
        Eventfd.DoRead();
        FlushInject();
        Eventfd.Put();
    }
}

/// <summary>The virqfds of one driver device: virqfd_lock and the cleanup workqueue.</summary>
public sealed class VfioVirqfdSet
{
    private static readonly LockClass s_lockClass = LockClass.Get("virqfd_lock");

    // The flushes' wait condition, made once: a flush with nothing outstanding allocates nothing.
    private readonly Func<bool> _cleanupDone;
    private int _cleanupOutstanding;

    /// <summary>A set for a device named <paramref name="name"/>.</summary>
    public VfioVirqfdSet(SimKernel kernel, string name)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        Kernel = kernel;
        Lock = new KSpinLock(kernel, $"virqfd_lock[{name}]", s_lockClass);
        Done = new WaitQueue(kernel, $"vfio-irqfd-cleanup[{name}]");
        _cleanupDone = () => Volatile.Read(ref _cleanupOutstanding) == 0;
    }

    internal SimKernel Kernel { get; }

    internal KSpinLock Lock { get; }

    internal WaitQueue Done { get; }

    /// <summary>
    /// vfio_virqfd_enable(): watches eventfd <paramref name="fd"/> of the calling process.
    /// -EBADF for a closed fd, -EINVAL for a file that is not an eventfd, -EBUSY when the slot
    /// already holds a virqfd. An eventfd already signalled fires at once.
    /// </summary>
    public int Enable(Func<bool>? handler, Action? thread, VfioVirqfdSlot slot, int fd, string who)
    {
        ArgumentNullException.ThrowIfNull(slot);
        int err = EventFdContext.Fdget(fd, who, out EventFdContext? found);
        if (err != 0)
        {
            return err;
        }

        EventFdContext ctx = found!;
        var virqfd = new VfioVirqfd(this, ctx, handler, thread, slot);
        Lock.Lock();
        if (slot.Current is not null)
        {
            Lock.Unlock();
            ctx.Put();
            return ErrorReason.Fail(Errno.EBUSY, $"{who}: an unmask eventfd is already registered (set fd -1 first)");
        }

        slot.Publish(virqfd);
        Lock.Unlock();

        // vfs_poll(): hook the wake function first, then look, so no signal is lost. A signal
        // that came before is acted on as if it had not been missed, but its count stays on the
        // eventfd (vfio_virqfd_enable reads nothing; the next wake-up takes it).
        virqfd.Hook();
        if (ctx.Count > 0)
        {
            virqfd.Fire();
        }

        return 0;
    }

    /// <summary>vfio_virqfd_disable(): deactivates the slot's virqfd and waits for every cleanup of this set.</summary>
    public void Disable(VfioVirqfdSlot slot)
    {
        ArgumentNullException.ThrowIfNull(slot);
        Lock.Lock();
        VfioVirqfd? v = slot.Current;
        if (v is not null)
        {
            slot.Publish(null);
            _cleanupOutstanding++;
        }

        Lock.Unlock();
        if (v is not null)
        {
            RunCleanup(v, async: false);
        }

        FlushCleanup();
    }

    /// <summary>vfio_virqfd_flush_thread() (v6.9): waits for the slot's inject work already scheduled.</summary>
    public void FlushThread(VfioVirqfdSlot slot)
    {
        ArgumentNullException.ThrowIfNull(slot);
        Lock.Lock();
        VfioVirqfd? v = slot.Current;
        Lock.Unlock();
        v?.FlushInject();
        FlushCleanup();
    }

    /// <summary>POLLHUP: the eventfd is being released; deactivate the virqfd if its slot still holds it.</summary>
    internal void DeactivateIfCurrent(VfioVirqfd v)
    {
        Lock.Lock();
        bool mine = ReferenceEquals(v.Slot.Current, v);
        if (mine)
        {
            v.Slot.Publish(null);
            _cleanupOutstanding++;
        }

        Lock.Unlock();
        if (mine)
        {
            RunCleanup(v, async: true);
        }
    }

    private void RunCleanup(VfioVirqfd v, bool async)
    {
        void Body()
        {
            try
            {
                v.Shutdown();
            }
            finally
            {
                Lock.Lock();
                _cleanupOutstanding--;
                Lock.Unlock();
                Done.WakeUp();
            }
        }

        if (async)
        {
            Kernel.Spawn("kworker/vfio-irqfd-cleanup", Body);
        }
        else
        {
            Body();
        }
    }

    /// <summary>flush_workqueue(vfio_irqfd_cleanup_wq).</summary>
    private void FlushCleanup() => Done.WaitEvent(_cleanupDone);
}
