// Models fs/char_dev.c, drivers/char/misc.c and devtmpfs (drivers/base/devtmpfs.c)
// (v6.12): device numbers bound to file operations, and the /dev nodes that reach them.
// A node without a registered driver opens with -ENXIO; a removed node is -ENOENT.

using Vfio.Kernel;

namespace Vfio.Platform.Fs;

/// <summary>Character device numbers and their drivers (cdev_map), plus misc devices.</summary>
public sealed class CharDevices
{
    /// <summary>MISC_MAJOR.</summary>
    public const int MiscMajor = 10;

    // Protects _cdevs, _misc and the dynamic major counter.
    private readonly KSpinLock _lock;
    private readonly Dictionary<int, (int FirstMinor, int Count, FileOperations Fops, string Name)> _cdevs = [];
    private readonly Dictionary<int, FileOperations> _misc = [];
    private readonly Vfs _vfs;
    private int _nextDynamicMajor = 254;

    internal CharDevices(SimKernel kernel, Vfs vfs)
    {
        _lock = new KSpinLock(kernel, "chrdevs_lock");
        _vfs = vfs;
    }

    /// <summary>MKDEV().</summary>
    public static uint MakeDev(int major, int minor) => ((uint)major << 20) | (uint)minor;

    /// <summary>MAJOR().</summary>
    public static int MajorOf(uint devt) => (int)(devt >> 20);

    /// <summary>MINOR().</summary>
    public static int MinorOf(uint devt) => (int)(devt & 0xfffff);

    /// <summary>alloc_chrdev_region() + cdev_add(): a dynamic major with <paramref name="count"/> minors served by <paramref name="fops"/>.</summary>
    public int AllocRegion(string name, int count, FileOperations fops)
    {
        ArgumentNullException.ThrowIfNull(fops);
        _lock.Lock();
        try
        {
            while (_cdevs.ContainsKey(_nextDynamicMajor) || _nextDynamicMajor == MiscMajor)
            {
                _nextDynamicMajor--;
            }

            if (_nextDynamicMajor <= 0)
            {
                return Errno.EBUSY.Negative();
            }

            int major = _nextDynamicMajor--;
            _cdevs[major] = (0, count, fops, name);
            return major;
        }
        finally
        {
            _lock.Unlock();
        }
    }

    /// <summary>unregister_chrdev_region() + cdev_del().</summary>
    public void FreeRegion(int major)
    {
        _lock.Lock();
        try
        {
            _cdevs.Remove(major);
        }
        finally
        {
            _lock.Unlock();
        }
    }

    /// <summary>misc_register(): minor <paramref name="minor"/> of major 10 with node /dev/<paramref name="nodeName"/>. -EBUSY if taken.</summary>
    public int RegisterMisc(int minor, string nodeName, FileOperations fops, int mode = 0x1b6 /* 0666 */)
    {
        ArgumentNullException.ThrowIfNull(fops);
        _lock.Lock();
        try
        {
            if (!_misc.TryAdd(minor, fops))
            {
                return Errno.EBUSY.Negative();
            }
        }
        finally
        {
            _lock.Unlock();
        }

        _vfs.CreateDevNode(nodeName, MakeDev(MiscMajor, minor), mode);
        return 0;
    }

    /// <summary>misc_deregister().</summary>
    public void DeregisterMisc(int minor, string nodeName)
    {
        _lock.Lock();
        try
        {
            _misc.Remove(minor);
        }
        finally
        {
            _lock.Unlock();
        }

        _vfs.RemoveDevNode(nodeName);
    }

    /// <summary>The operations serving <paramref name="devt"/>, or null.</summary>
    internal FileOperations? Lookup(uint devt)
    {
        int major = MajorOf(devt);
        int minor = MinorOf(devt);
        _lock.Lock();
        try
        {
            if (major == MiscMajor)
            {
                return _misc.GetValueOrDefault(minor);
            }

            return _cdevs.TryGetValue(major, out var c) && minor >= c.FirstMinor && minor < c.FirstMinor + c.Count ? c.Fops : null;
        }
        finally
        {
            _lock.Unlock();
        }
    }
}
