// Models fs/eventfd.c (v6.12): a 64-bit counter behind a file. read() returns the counter
// and zeroes it (or returns 1 and decrements, with EFD_SEMAPHORE), blocking while it is 0
// unless O_NONBLOCK (-EAGAIN); write() adds, blocking while the sum would reach
// ULLONG_MAX; both need 8-byte buffers (-EINVAL). poll reports POLLIN when the counter is
// non-zero, POLLOUT while a write of 1 would not block, and POLLERR once eventfd_signal()
// saturated the counter at ULLONG_MAX. Release wakes pollers with POLLHUP before it drops
// the file's reference. Kernel users (vfio interrupts) hold the context itself and signal
// it with eventfd_signal(), which allocates nothing.

using Vfio.Kernel;

namespace Vfio.Platform.Fs;

/// <summary>struct eventfd_ctx: the counter, shared by the file and kernel users that took a reference.</summary>
public sealed class EventFdContext
{
    /// <summary>EFD_SEMAPHORE.</summary>
    public const int EFD_SEMAPHORE = 1;

    /// <summary>EFD_NONBLOCK (= O_NONBLOCK).</summary>
    public const int EFD_NONBLOCK = (int)OpenFlags.O_NONBLOCK;

    /// <summary>EFD_CLOEXEC (= O_CLOEXEC).</summary>
    public const int EFD_CLOEXEC = (int)OpenFlags.O_CLOEXEC;

    private static readonly KernelIdSpace s_ids = new("eventfd");

    // Wake-up keys, boxed once: WaitQueue.WakeUp takes an object and a signal must not allocate.
    internal static readonly object KeyIn = PollEvents.POLLIN;
    internal static readonly object KeyOut = PollEvents.POLLOUT;
    internal static readonly object KeyHup = PollEvents.POLLHUP;

    // Protects _count.
    private readonly KSpinLock _lock;
    private readonly KRef _kref;
    private readonly CostModel _cost;
    private ulong _count;

    internal EventFdContext(SimKernel kernel, ulong initial, bool semaphore)
    {
        Id = (int)kernel.NextId(s_ids);
        _count = initial;
        _cost = kernel.Cost;
        Semaphore = semaphore;
        _lock = new KSpinLock(kernel, $"eventfd[{Id}].wqh.lock");
        Wqh = new WaitQueue(kernel, $"eventfd[{Id}].wqh");
        _kref = new KRef(kernel, $"eventfd[{Id}].kref");
    }

    /// <summary>An id for names (the kernel prints it in fdinfo).</summary>
    public int Id { get; }

    /// <summary>EFD_SEMAPHORE mode.</summary>
    public bool Semaphore { get; }

    /// <summary>The wait queue readers, writers and pollers sleep on.</summary>
    public WaitQueue Wqh { get; }

    /// <summary>The counter, read without side effects (for tests and reports).</summary>
    public ulong Count => Volatile.Read(ref _count);

    /// <summary>eventfd_ctx_fdget(): the context behind <paramref name="file"/> with a reference taken, or null (-EINVAL) if it is not an eventfd.</summary>
    public static EventFdContext? FromFile(SimFile file)
    {
        ArgumentNullException.ThrowIfNull(file);
        if (file.Ops is not EventFdOps || file.PrivateData is not EventFdContext ctx)
        {
            return null;
        }

        ctx.Get();
        return ctx;
    }

    /// <summary>
    /// eventfd_ctx_fdget(): the context behind fd <paramref name="fd"/> of the calling process,
    /// with a reference taken. 0, -EBADF for a closed fd, -EINVAL for a file that is not an
    /// eventfd; the reason names <paramref name="who"/>.
    /// </summary>
    public static int Fdget(int fd, string who, out EventFdContext? ctx)
    {
        ctx = null;
        SimFile? file = Proc.SimProcess.Current?.Files.Get(fd);
        if (file is null)
        {
            return ErrorReason.Fail(Errno.EBADF, $"{who}: fd {fd} is not open");
        }

        try
        {
            ctx = FromFile(file);
            return ctx is null ? ErrorReason.Fail(Errno.EINVAL, $"{who}: fd {fd} ({file.Path}) is not an eventfd") : 0;
        }
        finally
        {
            file.Put();
        }
    }

    /// <summary>The context's reference count (for tests that check a driver dropped what it took).</summary>
    internal int ReferenceCount => _kref.Read();

    /// <summary>The count without a scheduling point (refcount_read is one): for the object graph, which must not yield.</summary>
    internal int ReferenceCountValue => _kref.RefCount.Value;

    /// <summary>kref_get on the context.</summary>
    public void Get() => _kref.Get();

    /// <summary>eventfd_ctx_put().</summary>
    public void Put() => _kref.Put(static () => { });

    /// <summary>
    /// eventfd_signal(): adds <paramref name="n"/>, saturating at ULLONG_MAX (which poll then
    /// reports as POLLERR), and wakes readers and pollers with POLLIN.
    /// </summary>
    public void Signal(ulong n = 1)
    {
        _lock.Lock();

        // A kernel user that signals a context after its last reference went (a released
        // trigger still reachable from an interrupt handler) is a use-after-free: say so.
        if (Warn.On(_kref.RefCount.Value <= 0, $"use-after-free: eventfd_signal() on eventfd[{Id}], whose last reference was dropped (refcount {_kref.RefCount.Value})"))
        {
            _lock.Unlock();
            return;
        }

        _count += Math.Min(n, ulong.MaxValue - _count);
        _lock.Unlock();
        _cost.Charge(CostOp.EventfdSignal);
        if (Wqh.HasSleepers)
        {
            Wqh.WakeUp(KeyIn);
        }
    }

    /// <summary>
    /// eventfd_ctx_do_read(): takes the counter (or 1 in semaphore mode) without blocking,
    /// as a kernel waiter does from its wake function; returns what it took.
    /// </summary>
    public ulong DoRead()
    {
        _lock.Lock();
        ulong value = Semaphore ? Math.Min(_count, 1) : _count;
        _count -= value;
        _lock.Unlock();
        return value;
    }

    /// <summary>eventfd_release(): tells pollers (irqfd, virqfd) the file is gone with POLLHUP, then drops the file's reference.</summary>
    internal void Release()
    {
        Wqh.WakeUp(KeyHup);
        Put();
    }

    internal long ReadCounter(bool nonBlocking, out ulong value)
    {
        value = 0;
        while (true)
        {
            _lock.Lock();
            if (_count > 0)
            {
                value = Semaphore ? 1 : _count;
                _count -= value;
                _lock.Unlock();
                Wqh.WakeUp(KeyOut);
                return 8;
            }

            _lock.Unlock();
            if (nonBlocking)
            {
                return Errno.EAGAIN.Negative();
            }

            int ret = Wqh.WaitEventInterruptible(() => Volatile.Read(ref _count) > 0);
            if (ret != 0)
            {
                return ret;
            }
        }
    }

    internal long WriteCounter(ulong value, bool nonBlocking)
    {
        if (value == ulong.MaxValue)
        {
            return Errno.EINVAL.Negative();
        }

        while (true)
        {
            _lock.Lock();
            if (ulong.MaxValue - _count > value)
            {
                _count += value;
                _lock.Unlock();
                if (value > 0)
                {
                    Wqh.WakeUp(KeyIn);
                }

                return 8;
            }

            _lock.Unlock();
            if (nonBlocking)
            {
                return Errno.EAGAIN.Negative();
            }

            int ret = WaitForRoom(value);
            if (ret != 0)
            {
                return ret;
            }
        }
    }

    // The sleep of a write that does not fit, apart so that the condition's closure (it
    // captures the value) is allocated only by a write that blocks.
    private int WaitForRoom(ulong value) => Wqh.WaitEventInterruptible(() => ulong.MaxValue - Volatile.Read(ref _count) > value);

    internal PollEvents PollMask()
    {
        ulong c = Volatile.Read(ref _count);
        PollEvents mask = PollEvents.None;
        if (c > 0)
        {
            mask |= PollEvents.POLLIN;
        }

        if (c == ulong.MaxValue)
        {
            mask |= PollEvents.POLLERR;
        }

        if (ulong.MaxValue - 1 > c)
        {
            mask |= PollEvents.POLLOUT;
        }

        return mask;
    }
}

/// <summary>eventfd_fops.</summary>
internal sealed class EventFdOps : FileOperations
{
    public static readonly EventFdOps Instance = new();

    public override bool CanRead => true;

    public override bool CanWrite => true;

    public override long Read(SimFile file, ulong buf, long count, ref long pos)
    {
        if (count < 8)
        {
            return Errno.EINVAL.Negative();
        }

        var ctx = (EventFdContext)file.PrivateData!;
        long ret = ctx.ReadCounter(file.NonBlocking, out ulong value);
        if (ret < 0)
        {
            return ret;
        }

        int err = UserMemory.Put(buf, value);
        return err != 0 ? err : 8;
    }

    public override long Write(SimFile file, ulong buf, long count, ref long pos)
    {
        if (count < 8)
        {
            return Errno.EINVAL.Negative();
        }

        int err = UserMemory.Get(buf, out ulong value);
        if (err != 0)
        {
            return err;
        }

        return ((EventFdContext)file.PrivateData!).WriteCounter(value, file.NonBlocking);
    }

    public override PollEvents Poll(SimFile file, PollTable? table)
    {
        var ctx = (EventFdContext)file.PrivateData!;
        table?.Wait(file, ctx.Wqh);
        return ctx.PollMask();
    }

    public override void Release(SimFile file) => ((EventFdContext)file.PrivateData!).Release();
}

/// <summary>Models fs/anon_inodes.c: files without a path (eventfd, vfio device fds).</summary>
public static class AnonInodes
{
    /// <summary>anon_inode_getfile(): a new file named <c>anon_inode:<paramref name="name"/></c>.</summary>
    public static SimFile GetFile(SimKernel kernel, string name, FileOperations fops, object? privateData, OpenFlags flags)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        ArgumentNullException.ThrowIfNull(fops);
        return new SimFile(kernel, fops, "anon_inode:" + name, flags, null, privateData);
    }
}

/// <summary>eventfd2(): creates the file.</summary>
internal static class EventFdFactory
{
    public static SimFile Create(SimKernel kernel, ulong initval, int flags)
    {
        var ctx = new EventFdContext(kernel, initval, (flags & EventFdContext.EFD_SEMAPHORE) != 0);
        OpenFlags f = OpenFlags.O_RDWR | (OpenFlags)(flags & EventFdContext.EFD_NONBLOCK);
        return AnonInodes.GetFile(kernel, "[eventfd]", EventFdOps.Instance, ctx, f);
    }
}

