// Models path walking and open (fs/namei.c, fs/open.c) over the simulated tree, and
// devtmpfs node management (drivers/base/devtmpfs.c) (v6.12). The tree has /dev and
// /sys; everything else is absent (-ENOENT).
//
// Lock rules: TreeLock (like kernfs_rwsem) protects every directory's entries. Walks hold
// it for reading, mutations for writing; a driver's ->open runs after it is dropped, so
// opens may sleep and take any lock.

using Vfio.Kernel;
using Vfio.Platform.Proc;

namespace Vfio.Platform.Fs;

/// <summary>The file tree: path resolution, open, and the /dev and /sys roots.</summary>
public sealed class Vfs
{
    /// <summary>MAXSYMLINKS.</summary>
    public const int MaxSymlinks = 40;

    internal Vfs(SimKernel kernel)
    {
        Kernel = kernel;
        TreeLock = new RwSemaphore(kernel, "vfs.tree_lock");
        Root = new VfsDir(TreeLock, "/", root: true);
        Dev = new VfsDir(TreeLock, "dev");
        Sys = new VfsDir(TreeLock, "sys");
        Root.AddUnpublished(Dev);
        Root.AddUnpublished(Sys);
        CharDevices = new CharDevices(kernel, this);
    }

    /// <summary>The kernel.</summary>
    public SimKernel Kernel { get; }

    /// <summary>Protects directory entries of the whole tree.</summary>
    internal RwSemaphore TreeLock { get; }

    /// <summary>"/".</summary>
    public VfsDir Root { get; }

    /// <summary>"/dev" (devtmpfs).</summary>
    public VfsDir Dev { get; }

    /// <summary>"/sys" (sysfs).</summary>
    public VfsDir Sys { get; }

    /// <summary>Character device numbers and misc devices.</summary>
    public CharDevices CharDevices { get; }

    // ---- Resolution.

    /// <summary>Resolves <paramref name="path"/> to a node: 0, -ENOENT, -ENOTDIR or -ELOOP.</summary>
    public int Lookup(string path, out VfsNode? node, bool followLast = true)
    {
        TreeLock.DownRead();
        try
        {
            return ResolveLocked(path, followLast, out node);
        }
        finally
        {
            TreeLock.UpRead();
        }
    }

    internal int ResolveLocked(string path, bool followLast, out VfsNode? node)
    {
        TreeLock.AssertHeld();
        ArgumentNullException.ThrowIfNull(path);
        node = null;
        if (path.Length == 0)
        {
            return Errno.ENOENT.Negative();
        }

        if (path.Length >= 4096)
        {
            return Errno.ENAMETOOLONG.Negative();
        }

        string[] parts = path.Split('/', StringSplitOptions.RemoveEmptyEntries);
        VfsNode cur = Root;
        int links = 0;
        for (int i = 0; i < parts.Length; i++)
        {
            string part = parts[i];
            if (part.Length > 255)
            {
                return Errno.ENAMETOOLONG.Negative();
            }

            if (cur is not VfsDir dir)
            {
                return Errno.ENOTDIR.Negative();
            }

            if (part == ".")
            {
                continue;
            }

            if (part == "..")
            {
                cur = dir.Parent ?? Root;
                continue;
            }

            VfsNode? next = dir.LookupLocked(part);
            if (next is null)
            {
                return Errno.ENOENT.Negative();
            }

            while (next is VfsSymlink link && (i < parts.Length - 1 || followLast))
            {
                if (++links > MaxSymlinks)
                {
                    return Errno.ELOOP.Negative();
                }

                if (!link.Target.IsAttached)
                {
                    return Errno.ENOENT.Negative();
                }

                next = link.Target;
            }

            cur = next;
        }

        node = cur;
        return 0;
    }

    // ---- Open.

    /// <summary>
    /// do_filp_open(): opens <paramref name="path"/> for <paramref name="cred"/>. 0 and the
    /// file, or -errno: ENOENT, ENOTDIR, ELOOP, EISDIR, EACCES, EEXIST, or the driver's.
    /// </summary>
    internal int Open(Credentials cred, string path, OpenFlags flags, out SimFile? file)
    {
        file = null;
        TreeLock.DownRead();
        VfsNode? node;
        int ret;
        try
        {
            ret = ResolveLocked(path, followLast: (flags & OpenFlags.O_NOFOLLOW) == 0, out node);
            if (ret == Errno.ENOENT.Negative() && (flags & OpenFlags.O_CREAT) != 0)
            {
                // No filesystem here creates files (kernfs and the root have no ->create;
                // /dev is not a devtmpfs that would): in an existing directory the create
                // is refused as vfs_create() refuses it, elsewhere the walk's ENOENT stands.
                int slash = path.TrimEnd('/').LastIndexOf('/');
                string parent = slash <= 0 ? "/" : path[..slash];
                if (ResolveLocked(parent, followLast: true, out VfsNode? dir) == 0 && dir is VfsDir)
                {
                    ret = Errno.EACCES.Negative();
                }
            }
        }
        finally
        {
            TreeLock.UpRead();
        }

        if (ret != 0)
        {
            return ret;
        }

        if ((flags & (OpenFlags.O_CREAT | OpenFlags.O_EXCL)) == (OpenFlags.O_CREAT | OpenFlags.O_EXCL))
        {
            return Errno.EEXIST.Negative();
        }

        if (node is VfsSymlink)
        {
            return Errno.ELOOP.Negative();
        }

        if ((flags & OpenFlags.O_DIRECTORY) != 0 && node is not VfsDir)
        {
            return Errno.ENOTDIR.Negative();
        }

        OpenFlags acc = flags & OpenFlags.O_ACCMODE;
        bool read = acc is OpenFlags.O_RDONLY or OpenFlags.O_RDWR;
        bool write = acc is OpenFlags.O_WRONLY or OpenFlags.O_RDWR;
        if (node is VfsDir && write)
        {
            return Errno.EISDIR.Negative();
        }

        if (!node!.Permits(cred, read, write))
        {
            return Errno.EACCES.Negative();
        }

        return node.OpenFile(Kernel, flags, out file);
    }

    // ---- Tree edits.

    /// <summary>Creates (or finds) every directory of <paramref name="path"/>.</summary>
    public VfsDir MkdirP(string path)
    {
        TreeLock.DownWrite();
        try
        {
            return MkdirPLocked(Root, path);
        }
        finally
        {
            TreeLock.UpWrite();
        }
    }

    private VfsDir MkdirPLocked(VfsDir from, string path)
    {
        TreeLock.AssertHeldWrite();
        VfsDir cur = from;
        foreach (string part in path.Split('/', StringSplitOptions.RemoveEmptyEntries))
        {
            VfsNode? next = cur.LookupLocked(part);
            if (next is null)
            {
                var d = new VfsDir(TreeLock, part);
                cur.AddLocked(d);
                next = d;
            }

            cur = next as VfsDir ?? throw new InvalidOperationException($"{next.FullPath} exists and is not a directory");
        }

        return cur;
    }

    /// <summary>Adds <paramref name="node"/> to <paramref name="dir"/>; false (and nothing changes) when the name is taken.</summary>
    internal bool Add(VfsDir dir, VfsNode node)
    {
        TreeLock.DownWrite();
        try
        {
            return dir.AddLocked(node);
        }
        finally
        {
            TreeLock.UpWrite();
        }
    }

    /// <summary>Removes <paramref name="node"/> and everything below it.</summary>
    internal void Remove(VfsNode node)
    {
        TreeLock.DownWrite();
        try
        {
            node.Parent?.RemoveLocked(node);
        }
        finally
        {
            TreeLock.UpWrite();
        }
    }

    /// <summary>devtmpfs_create_node(): /dev/<paramref name="relPath"/> for <paramref name="devt"/>, creating directories as needed.</summary>
    public VfsCharDevice CreateDevNode(string relPath, uint devt, int mode, int uid = 0, int gid = 0)
    {
        ArgumentException.ThrowIfNullOrEmpty(relPath);
        TreeLock.DownWrite();
        try
        {
            int slash = relPath.LastIndexOf('/');
            VfsDir dir = slash < 0 ? Dev : MkdirPLocked(Dev, relPath[..slash]);
            string name = relPath[(slash + 1)..];
            if (dir.LookupLocked(name) is { } existing)
            {
                dir.RemoveLocked(existing);
            }

            var node = new VfsCharDevice(name, devt, mode, CharDevices) { Uid = uid, Gid = gid };
            dir.AddLocked(node);
            return node;
        }
        finally
        {
            TreeLock.UpWrite();
        }
    }

    /// <summary>devtmpfs_delete_node(): removes /dev/<paramref name="relPath"/> and the directories it leaves empty.</summary>
    public void RemoveDevNode(string relPath)
    {
        TreeLock.DownWrite();
        try
        {
            if (ResolveLocked("/dev/" + relPath, followLast: false, out VfsNode? node) != 0 || node is null)
            {
                return;
            }

            VfsDir? dir = node.Parent;
            dir?.RemoveLocked(node);
            while (dir is not null && !ReferenceEquals(dir, Dev) && dir.ChildrenLocked.Count == 0)
            {
                VfsDir? up = dir.Parent;
                up?.RemoveLocked(dir);
                dir = up;
            }
        }
        finally
        {
            TreeLock.UpWrite();
        }
    }

    // ---- Inspection (for shells, labs and tests).

    /// <summary>The entry names of the directory at <paramref name="path"/> (following links), or null.</summary>
    public IReadOnlyList<string>? List(string path)
    {
        TreeLock.DownRead();
        try
        {
            return ResolveLocked(path, followLast: true, out VfsNode? node) == 0 && node is VfsDir dir
                ? [.. dir.ChildrenLocked.Select(c => c.Name)]
                : null;
        }
        finally
        {
            TreeLock.UpRead();
        }
    }

    /// <summary>readlink() of <paramref name="path"/>: the relative target, or null when not a (live) link.</summary>
    public string? ReadLink(string path)
    {
        TreeLock.DownRead();
        try
        {
            return ResolveLocked(path, followLast: false, out VfsNode? node) == 0 && node is VfsSymlink link ? link.ReadLink() : null;
        }
        finally
        {
            TreeLock.UpRead();
        }
    }

    /// <summary>True when <paramref name="path"/> resolves (following links).</summary>
    public bool Exists(string path) => Lookup(path, out _) == 0;

    /// <summary>True when <paramref name="path"/> itself is a symlink (lstat + S_ISLNK), dangling or not.</summary>
    public bool IsSymlink(string path)
    {
        TreeLock.DownRead();
        try
        {
            return ResolveLocked(path, followLast: false, out VfsNode? node) == 0 && node is VfsSymlink;
        }
        finally
        {
            TreeLock.UpRead();
        }
    }
}
