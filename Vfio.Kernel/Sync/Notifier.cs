// Models kernel/notifier.c and include/linux/notifier.h (v6.12): blocking notifier
// chains. Callbacks run in priority order (highest first) under the chain's rwsem held for
// reading; registration takes it for writing. A callback's return value can stop the
// chain (NOTIFY_STOP_MASK) and carry an errno (notifier_from_errno).

namespace Vfio.Kernel;

/// <summary><c>struct notifier_block</c>.</summary>
/// <param name="call">The callback: (block, action, data) → NOTIFY_* value.</param>
/// <param name="priority">Higher runs first.</param>
public sealed class NotifierBlock(Func<NotifierBlock, ulong, object?, int> call, int priority = 0)
{
    /// <summary>The callback.</summary>
    public Func<NotifierBlock, ulong, object?, int> Call { get; } = call ?? throw new ArgumentNullException(nameof(call));

    /// <summary>Higher priorities are called first.</summary>
    public int Priority { get; } = priority;
}

/// <summary><c>struct blocking_notifier_head</c>.</summary>
public sealed class BlockingNotifierChain
{
    /// <summary>NOTIFY_DONE: don't care.</summary>
    public const int NOTIFY_DONE = 0x0000;

    /// <summary>NOTIFY_OK: suits me.</summary>
    public const int NOTIFY_OK = 0x0001;

    /// <summary>NOTIFY_STOP_MASK: don't call further callbacks.</summary>
    public const int NOTIFY_STOP_MASK = 0x8000;

    /// <summary>NOTIFY_BAD: veto.</summary>
    public const int NOTIFY_BAD = NOTIFY_STOP_MASK | 0x0002;

    private readonly RwSemaphore _rwsem;

    // Written under _rwsem for writing, read under it for reading. _count mirrors
    // _blocks.Count for the unlocked emptiness test of CallChain (the kernel's
    // rcu_access_pointer(nh->head)).
    private readonly List<NotifierBlock> _blocks = [];
    private volatile int _count;

    /// <summary>BLOCKING_NOTIFIER_HEAD().</summary>
    public BlockingNotifierChain(SimKernel kernel, string name)
    {
        _rwsem = new RwSemaphore(kernel, name + ".rwsem");
        Name = name;
    }

    /// <summary>The chain's name.</summary>
    public string Name { get; }

    /// <summary>blocking_notifier_chain_register(): 0, or -EEXIST if <paramref name="block"/> is already registered.</summary>
    public int Register(NotifierBlock block)
    {
        ArgumentNullException.ThrowIfNull(block);
        _rwsem.DownWrite();
        try
        {
            if (_blocks.Contains(block))
            {
                Warn.On(true, $"notifier callback already registered on {Name}");
                return Errno.EEXIST.Negative();
            }

            int at = 0;
            while (at < _blocks.Count && _blocks[at].Priority >= block.Priority)
            {
                at++;
            }

            _blocks.Insert(at, block);
            _count = _blocks.Count;
            return 0;
        }
        finally
        {
            _rwsem.UpWrite();
        }
    }

    /// <summary>blocking_notifier_chain_unregister(): 0, or -ENOENT if it was not registered.</summary>
    public int Unregister(NotifierBlock block)
    {
        ArgumentNullException.ThrowIfNull(block);
        _rwsem.DownWrite();
        try
        {
            bool removed = _blocks.Remove(block);
            _count = _blocks.Count;
            return removed ? 0 : Errno.ENOENT.Negative();
        }
        finally
        {
            _rwsem.UpWrite();
        }
    }

    /// <summary>
    /// blocking_notifier_call_chain(): calls every block until one returns a value with
    /// NOTIFY_STOP_MASK; returns the last value. An empty chain returns NOTIFY_DONE without
    /// taking the rwsem (the head is tested outside the lock; a racing register is fine
    /// either way, as in the kernel).
    /// </summary>
    public int CallChain(ulong action, object? data)
    {
        if (_count == 0)
        {
            return NOTIFY_DONE;
        }

        _rwsem.DownRead();
        try
        {
            int ret = NOTIFY_DONE;
            foreach (NotifierBlock b in _blocks)
            {
                ret = b.Call(b, action, data);
                if ((ret & NOTIFY_STOP_MASK) != 0)
                {
                    break;
                }
            }

            return ret;
        }
        finally
        {
            _rwsem.UpRead();
        }
    }

    /// <summary>notifier_from_errno(): wraps a -errno so it stops the chain.</summary>
    public static int FromErrno(int err) => err != 0 ? NOTIFY_STOP_MASK | (NOTIFY_OK - err) : NOTIFY_OK;

    /// <summary>notifier_to_errno(): the -errno a callback returned, or 0.</summary>
    public static int ToErrno(int ret)
    {
        ret &= ~NOTIFY_STOP_MASK;
        return ret > NOTIFY_OK ? NOTIFY_OK - ret : 0;
    }
}
