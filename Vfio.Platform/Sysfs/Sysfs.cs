// Models fs/sysfs and fs/kernfs (v6.12) as user space meets them: directories that come
// and go with kernel objects, symlinks to other objects, and attributes whose read runs
// the object's show() and whose write runs store().
//
// Semantics kept from kernfs: opening an attribute for reading without show(), or for
// writing without store(), is -EACCES even for root; a read at offset 0 regenerates the
// text (up to PAGE_SIZE); each write() hands at most PAGE_SIZE bytes to store(), whose
// return is the write's result; an attribute removed while open answers -ENODEV.

using System.Text;
using Vfio.Kernel;
using Vfio.Platform.Fs;
using Vfio.Platform.Proc;

namespace Vfio.Platform.Sysfs;

/// <summary>A sysfs attribute file: text (show/store) or binary (read/write at offsets).</summary>
public sealed class SysfsAttribute : VfsNode
{
    internal SysfsAttribute(string name, int mode, Func<string>? show, Func<string, long>? store)
        : base(name, mode)
    {
        Show = show;
        Store = store;
    }

    internal SysfsAttribute(string name, int mode, long size, Func<long, Span<byte>, long>? readAt, Func<long, ReadOnlySpan<byte>, long>? writeAt)
        : base(name, mode)
    {
        Size = size;
        ReadAt = readAt;
        WriteAt = writeAt;
        IsBinary = true;
    }

    /// <summary>show(): the attribute's text.</summary>
    public Func<string>? Show { get; }

    /// <summary>store(): takes the written text, returns the byte count or -errno.</summary>
    public Func<string, long>? Store { get; }

    /// <summary>A binary attribute (config space): reads and writes at offsets.</summary>
    public bool IsBinary { get; }

    /// <summary>Binary size in bytes.</summary>
    public long Size { get; }

    /// <summary>Binary read: bytes read or -errno.</summary>
    public Func<long, Span<byte>, long>? ReadAt { get; }

    /// <summary>Binary write: bytes written or -errno.</summary>
    public Func<long, ReadOnlySpan<byte>, long>? WriteAt { get; }

    internal bool Removed { get; set; }

    internal override int OpenFile(SimKernel kernel, OpenFlags flags, out SimFile? file)
    {
        file = null;
        if (Removed)
        {
            return Errno.ENODEV.Negative();
        }

        OpenFlags acc = flags & OpenFlags.O_ACCMODE;
        bool read = acc is OpenFlags.O_RDONLY or OpenFlags.O_RDWR;
        bool write = acc is OpenFlags.O_WRONLY or OpenFlags.O_RDWR;
        if ((read && Show is null && ReadAt is null) || (write && Store is null && WriteAt is null))
        {
            return Errno.EACCES.Negative();
        }

        file = new SimFile(kernel, SysfsFileOps.Instance, FullPath, flags, this, null);
        return 0;
    }
}

/// <summary>file_operations of sysfs attributes (kernfs_file_fops).</summary>
internal sealed class SysfsFileOps : FileOperations
{
    public static readonly SysfsFileOps Instance = new();

    public override bool CanRead => true;

    public override bool CanWrite => true;

    public override long Read(SimFile file, ulong buf, long count, ref long pos)
    {
        var attr = (SysfsAttribute)file.Node!;
        if (attr.Removed)
        {
            return Errno.ENODEV.Negative();
        }

        if (attr.IsBinary)
        {
            if (pos >= attr.Size || count == 0)
            {
                return 0;
            }

            byte[] tmp = new byte[Math.Min(count, attr.Size - pos)];
            long n = attr.ReadAt!(pos, tmp);
            if (n <= 0)
            {
                return n;
            }

            int err = UserMemory.CopyToUser(buf, tmp.AsSpan(0, (int)n));
            if (err != 0)
            {
                return err;
            }

            pos += n;
            return n;
        }

        if (pos == 0 || file.PrivateData is not byte[])
        {
            // seq_file semantics: show() fills a PAGE_SIZE buffer when reading from the start.
            string text = attr.Show!();
            byte[] bytes = Encoding.UTF8.GetBytes(text);
            file.PrivateData = bytes.Length > 4096 ? bytes[..4096] : bytes;
        }

        byte[] content = (byte[])file.PrivateData!;
        if (pos >= content.Length)
        {
            return 0;
        }

        int len = (int)Math.Min(count, content.Length - pos);
        int ret = UserMemory.CopyToUser(buf, content.AsSpan((int)pos, len));
        if (ret != 0)
        {
            return ret;
        }

        pos += len;
        return len;
    }

    /// <summary>
    /// kernfs_fop_write_iter(): at most a page is copied in (EFAULT), then the attribute must
    /// still be there (ENODEV); sysfs_kf_bin_write() refuses a write at or past the end
    /// (EFBIG) and clamps; a zero-length write returns 0 without calling store.
    /// </summary>
    public override long Write(SimFile file, ulong buf, long count, ref long pos)
    {
        var attr = (SysfsAttribute)file.Node!;
        byte[] bytes = new byte[(int)Math.Min(count, 4096)];
        int err = UserMemory.CopyFromUser(bytes, buf);
        if (err != 0)
        {
            return err;
        }

        if (attr.Removed)
        {
            return Errno.ENODEV.Negative();
        }

        if (attr.IsBinary)
        {
            if (pos >= attr.Size)
            {
                return Errno.EFBIG.Negative();
            }

            int n = (int)Math.Min(bytes.Length, attr.Size - pos);
            if (n == 0)
            {
                return 0;
            }

            long written = attr.WriteAt!(pos, bytes.AsSpan(0, n));
            if (written > 0)
            {
                pos += written;
            }

            return written;
        }

        // sysfs_kf_write(): "if (!count) return 0;" — store never sees an empty buffer.
        return bytes.Length == 0 ? 0 : attr.Store!(Encoding.UTF8.GetString(bytes));
    }
}

/// <summary>sysfs: the /sys tree, helpers for kernel objects to publish themselves, and a convenience API for users.</summary>
public sealed class SysfsTree
{
    private readonly Vfs _vfs;
    private readonly Func<SimProcess> _defaultCaller;

    internal SysfsTree(Vfs vfs, Func<SimProcess> defaultCaller)
    {
        _vfs = vfs;
        _defaultCaller = defaultCaller;
        Root = vfs.Sys;
        Devices = vfs.MkdirP("/sys/devices");
        Bus = vfs.MkdirP("/sys/bus");
        Class = vfs.MkdirP("/sys/class");
        KernelDir = vfs.MkdirP("/sys/kernel");
        Module = vfs.MkdirP("/sys/module");
    }

    /// <summary>/sys.</summary>
    public VfsDir Root { get; }

    /// <summary>/sys/devices.</summary>
    public VfsDir Devices { get; }

    /// <summary>/sys/bus.</summary>
    public VfsDir Bus { get; }

    /// <summary>/sys/class.</summary>
    public VfsDir Class { get; }

    /// <summary>/sys/kernel.</summary>
    public VfsDir KernelDir { get; }

    /// <summary>/sys/module.</summary>
    public VfsDir Module { get; }

    // ---- For kernel objects.

    /// <summary>sysfs_create_dir(): a new directory, or null (with a WARN, as the kernel prints) when the name is taken.</summary>
    public VfsDir? CreateDir(VfsDir parent, string name, int mode = 0x1ed)
    {
        var dir = new VfsDir(_vfs.TreeLock, name, mode);
        if (_vfs.Add(parent, dir))
        {
            return dir;
        }

        Warn.On(_vfs.Kernel, true, $"sysfs: cannot create duplicate filename '{parent.FullPath}/{name}'");
        return null;
    }

    /// <summary>The existing directory called <paramref name="name"/> under <paramref name="parent"/>, or a new one.</summary>
    public VfsDir GetOrCreateDir(VfsDir parent, string name)
        => _vfs.MkdirP(parent.FullPath + "/" + name);

    /// <summary>sysfs_create_file() with show/store; either may be null.</summary>
    public SysfsAttribute CreateFile(VfsDir dir, string name, int mode, Func<string>? show, Func<string, long>? store = null)
    {
        var attr = new SysfsAttribute(name, mode, show, store);
        AddOrThrow(dir, attr);
        return attr;
    }

    /// <summary>sysfs_create_bin_file().</summary>
    public SysfsAttribute CreateBinFile(VfsDir dir, string name, int mode, long size, Func<long, Span<byte>, long>? readAt, Func<long, ReadOnlySpan<byte>, long>? writeAt)
    {
        var attr = new SysfsAttribute(name, mode, size, readAt, writeAt);
        AddOrThrow(dir, attr);
        return attr;
    }

    /// <summary>sysfs_create_link(): <paramref name="dir"/>/<paramref name="name"/> → <paramref name="target"/>. -EEXIST when taken.</summary>
    public int CreateLink(VfsDir dir, string name, VfsNode target)
        => _vfs.Add(dir, new VfsSymlink(name, target)) ? 0 : Errno.EEXIST.Negative();

    /// <summary>sysfs_remove_link().</summary>
    public void RemoveLink(VfsDir dir, string name)
    {
        _vfs.TreeLock.DownWrite();
        try
        {
            if (dir.LookupLocked(name) is VfsSymlink link)
            {
                dir.RemoveLocked(link);
            }
        }
        finally
        {
            _vfs.TreeLock.UpWrite();
        }
    }

    /// <summary>Removes <paramref name="node"/> and everything below it; open attribute files then answer -ENODEV.</summary>
    public void Remove(VfsNode node)
    {
        ArgumentNullException.ThrowIfNull(node);
        MarkRemoved(node);
        _vfs.Remove(node);
    }

    /// <summary>The entries of <paramref name="dir"/>, a snapshot.</summary>
    internal VfsNode[] Children(VfsDir dir)
    {
        _vfs.TreeLock.DownRead();
        try
        {
            return [.. dir.ChildrenLocked];
        }
        finally
        {
            _vfs.TreeLock.UpRead();
        }
    }

    /// <summary>
    /// Calls <paramref name="create"/> and returns the entries it added to <paramref name="dir"/>
    /// (what sysfs_create_groups() created), so they can be removed as a group later.
    /// </summary>
    internal VfsNode[] Track(VfsDir dir, Action create)
    {
        // The directory logs what is added to it while create() runs, instead of two
        // snapshots of its entries compared: the same set, in the directory's (name) order.
        // The tree lock is still taken for reading before and after, where the snapshots took
        // it, so that traces and controlled schedules stay what they were.
        List<VfsNode>? outer = dir.AddedLog;
        var added = new List<VfsNode>(32);
        _vfs.TreeLock.DownRead();
        dir.AddedLog = added;
        _vfs.TreeLock.UpRead();
        try
        {
            create();
        }
        finally
        {
            _vfs.TreeLock.DownRead();
            dir.AddedLog = outer;
            _vfs.TreeLock.UpRead();
        }

        outer?.AddRange(added);
        added.Sort(static (a, b) => string.CompareOrdinal(a.Name, b.Name));
        int kept = 0;
        for (int i = 0; i < added.Count; i++)
        {
            // Still in the directory (not removed again), and once (an entry removed and re-added is logged twice).
            VfsNode n = added[i];
            if (ReferenceEquals(n.Parent, dir) && (kept == 0 || !ReferenceEquals(added[kept - 1], n)))
            {
                added[kept++] = n;
            }
        }

        added.RemoveRange(kept, added.Count - kept);
        return [.. added];
    }

    /// <summary>sysfs_remove_file() / sysfs_remove_groups(): removes each of <paramref name="nodes"/>.</summary>
    internal void RemoveAll(IEnumerable<VfsNode?> nodes)
    {
        foreach (VfsNode? n in nodes)
        {
            if (n is not null)
            {
                Remove(n);
            }
        }
    }

    private void MarkRemoved(VfsNode node)
    {
        if (node is SysfsAttribute a)
        {
            a.Removed = true;
        }
        else if (node is VfsDir d)
        {
            _vfs.TreeLock.DownRead();
            VfsNode[] children;
            try
            {
                children = [.. d.ChildrenLocked];
            }
            finally
            {
                _vfs.TreeLock.UpRead();
            }

            foreach (VfsNode c in children)
            {
                MarkRemoved(c);
            }
        }
    }

    private void AddOrThrow(VfsDir dir, VfsNode node)
    {
        if (!_vfs.Add(dir, node))
        {
            throw new InvalidOperationException($"sysfs: cannot create duplicate filename '{dir.FullPath}/{node.Name}'");
        }
    }

    // ---- For users: the same syscalls a shell would make.

    /// <summary><c>cat path</c>: the attribute's content, or null when it cannot be read (see <paramref name="error"/>).</summary>
    public string? Read(string path, out int error, SimProcess? caller = null)
    {
        SimProcess p = caller ?? _defaultCaller();
        int fd = p.Open(path, OpenFlags.O_RDONLY);
        if (fd < 0)
        {
            error = fd;
            return null;
        }

        try
        {
            var sb = new StringBuilder();
            byte[] buf = new byte[4096];
            while (true)
            {
                long n = p.Read(fd, buf);
                if (n < 0)
                {
                    error = (int)n;
                    return null;
                }

                if (n == 0)
                {
                    break;
                }

                sb.Append(Encoding.UTF8.GetString(buf, 0, (int)n));
            }

            error = 0;
            return sb.ToString();
        }
        finally
        {
            p.Close(fd);
        }
    }

    /// <summary><c>cat path</c>, throwing when it cannot be read.</summary>
    public string Read(string path, SimProcess? caller = null)
        => Read(path, out int error, caller) ?? throw new IOException($"cat {path}: {ErrnoExtensions.FromReturn(error).Describe()}");

    /// <summary><c>echo value &gt; path</c>: the write's result (bytes written, with the trailing newline echo adds) or -errno.</summary>
    public long Write(string path, string value, SimProcess? caller = null, bool newline = true)
    {
        SimProcess p = caller ?? _defaultCaller();
        int fd = p.Open(path, OpenFlags.O_WRONLY | OpenFlags.O_TRUNC);
        if (fd < 0)
        {
            return fd;
        }

        try
        {
            return p.Write(fd, Encoding.UTF8.GetBytes(newline ? value + "\n" : value));
        }
        finally
        {
            p.Close(fd);
        }
    }

    /// <summary><c>readlink path</c>, or null.</summary>
    public string? ReadLink(string path) => _vfs.ReadLink(path);

    /// <summary><c>ls path</c>, or null when not a directory.</summary>
    public IReadOnlyList<string>? List(string path) => _vfs.List(path);

    /// <summary><c>test -e path</c>.</summary>
    public bool Exists(string path) => _vfs.Exists(path);

    /// <summary><c>test -L path</c>.</summary>
    public bool IsSymlink(string path) => _vfs.IsSymlink(path);
}
