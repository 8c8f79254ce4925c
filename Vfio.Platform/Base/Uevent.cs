// Models kobject_uevent() / kobject_uevent_env() (lib/kobject_uevent.c, v6.12) as user
// space (udev) sees them: one record per event with its action, the kobject's devpath
// below /sys and the extra environment (MDEV_STATE=registered). Nothing is delivered
// anywhere; the log is there for tests and tools to read.
//
// Lock rules: the log's own spinlock protects the list; it is a leaf.

using Vfio.Kernel;

namespace Vfio.Platform.Base;

/// <summary>enum kobject_action.</summary>
public enum UeventAction
{
    /// <summary>KOBJ_ADD.</summary>
    Add,

    /// <summary>KOBJ_REMOVE.</summary>
    Remove,

    /// <summary>KOBJ_CHANGE.</summary>
    Change,

    /// <summary>KOBJ_MOVE.</summary>
    Move,

    /// <summary>KOBJ_ONLINE.</summary>
    Online,

    /// <summary>KOBJ_OFFLINE.</summary>
    Offline,

    /// <summary>KOBJ_BIND.</summary>
    Bind,

    /// <summary>KOBJ_UNBIND.</summary>
    Unbind,
}

/// <summary>One uevent: <c>ACTION</c>, <c>DEVPATH</c> (below /sys, as <c>/devices/virtual/mtty/mtty</c>) and the extra variables.</summary>
public sealed record UeventRecord(UeventAction Action, string DevPath, IReadOnlyList<string> Env)
{
    /// <inheritdoc/>
    public override string ToString() => $"{Action.ToString().ToLowerInvariant()}@{DevPath}{(Env.Count == 0 ? "" : " " + string.Join(' ', Env))}";
}

/// <summary>The uevents the machine's kernel sent, in order (what <c>udevadm monitor --kernel</c> would print).</summary>
public sealed class UeventLog
{
    // Protects _records.
    private readonly KSpinLock _lock;
    private readonly List<UeventRecord> _records = [];

    internal UeventLog(SimKernel kernel) => _lock = new KSpinLock(kernel, "uevent_sock_mutex");

    /// <summary>Every uevent so far, a snapshot.</summary>
    public IReadOnlyList<UeventRecord> Snapshot()
    {
        _lock.Lock();
        try
        {
            return [.. _records];
        }
        finally
        {
            _lock.Unlock();
        }
    }

    /// <summary>kobject_uevent_env(&amp;dev-&gt;kobj, <paramref name="action"/>, <paramref name="env"/>) for a device in sysfs; nothing for a device without a directory.</summary>
    public void Emit(SimDevice dev, UeventAction action, params string[] env)
    {
        ArgumentNullException.ThrowIfNull(dev);
        if (dev.SysfsDir is not { } dir)
        {
            return;
        }

        string path = dir.FullPath;
        var record = new UeventRecord(action, path.StartsWith("/sys/", StringComparison.Ordinal) ? path[4..] : path, [.. env]);
        _lock.Lock();
        _records.Add(record);
        _lock.Unlock();
    }
}
