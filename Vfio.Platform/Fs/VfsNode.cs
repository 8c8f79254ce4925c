// Models the parts of inodes and dentries (include/linux/fs.h, fs/namei.c, kernfs nodes)
// the simulator needs: a tree of directories, symlinks, device nodes and sysfs
// attributes with owner, group and permission bits. Nodes know their parent, so
// readlink can print the relative target the way sysfs does.

using System.Text;
using Vfio.Kernel;
using Vfio.Platform.Proc;

namespace Vfio.Platform.Fs;

/// <summary>A node of the simulated file tree.</summary>
public abstract class VfsNode
{
    private protected VfsNode(string name, int mode)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (name != "/" && name.Contains('/', StringComparison.Ordinal))
        {
            throw new ArgumentException($"'{name}' is not a valid file name", nameof(name));
        }

        Name = name;
        Mode = mode;
    }

    /// <summary>The name within its directory.</summary>
    public string Name { get; internal set; }

    /// <summary>The directory holding the node; null for the root and for removed nodes.</summary>
    public VfsDir? Parent { get; internal set; }

    /// <summary>Permission bits (0777 and friends).</summary>
    public int Mode { get; set; }

    /// <summary>Owner uid.</summary>
    public int Uid { get; set; }

    /// <summary>Owner gid.</summary>
    public int Gid { get; set; }

    /// <summary>True while the node is reachable from the root.</summary>
    public bool IsAttached
    {
        get
        {
            VfsNode n = this;
            while (n.Parent is { } p)
            {
                n = p;
            }

            return n is VfsDir { IsRoot: true };
        }
    }

    /// <summary>The absolute path (as it is now).</summary>
    public string FullPath
    {
        get
        {
            if (this is VfsDir { IsRoot: true })
            {
                return "/";
            }

            var parts = new Stack<string>();
            for (VfsNode? n = this; n is not null && !(n is VfsDir { IsRoot: true }); n = n.Parent)
            {
                parts.Push(n.Name);
            }

            return "/" + string.Join('/', parts);
        }
    }

    /// <summary>Creates the open file for this node; 0 and the file, or -errno.</summary>
    internal abstract int OpenFile(SimKernel kernel, OpenFlags flags, out SimFile? file);

    /// <summary>Called after the last reference to a file of this node is released.</summary>
    internal virtual void OnFileReleased(SimFile file)
    {
    }

    /// <summary>generic_permission(): may <paramref name="cred"/> open this node for reading and/or writing?</summary>
    internal bool Permits(Credentials cred, bool read, bool write)
    {
        if (cred.Uid == 0 || cred.Capable(Capabilities.CAP_DAC_OVERRIDE))
        {
            return true;
        }

        int bits = cred.Uid == Uid ? (Mode >> 6) & 7 : cred.Gid == Gid ? (Mode >> 3) & 7 : Mode & 7;
        return (!read || (bits & 4) != 0) && (!write || (bits & 2) != 0);
    }

    /// <inheritdoc/>
    public override string ToString() => FullPath;
}

/// <summary>A directory. Its entries are protected by the tree lock of <see cref="Vfs"/>.</summary>
public sealed class VfsDir : VfsNode
{
    // The tree lock of the Vfs the directory belongs to (read: lookups; write: changes).
    private readonly RwSemaphore _treeLock;
    private readonly SortedDictionary<string, VfsNode> _children = new(StringComparer.Ordinal);

    internal VfsDir(RwSemaphore treeLock, string name, int mode = 0x1ed /* 0755 */, bool root = false)
        : base(name, mode)
    {
        _treeLock = treeLock;
        IsRoot = root;
    }

    internal bool IsRoot { get; }

    /// <summary>When set, every entry added to this directory is appended to it (see SysfsTree.Track).</summary>
    internal List<VfsNode>? AddedLog { get; set; }

    internal IReadOnlyCollection<VfsNode> ChildrenLocked
    {
        get
        {
            _treeLock.AssertHeld();
            return [.. _children.Values];
        }
    }

    internal VfsNode? LookupLocked(string name)
    {
        _treeLock.AssertHeld();
        return _children.GetValueOrDefault(name);
    }

    /// <summary>Adds <paramref name="node"/>; false when the name is taken. Caller holds the tree lock for writing.</summary>
    internal bool AddLocked(VfsNode node)
    {
        _treeLock.AssertHeldWrite();
        return Attach(node);
    }

    /// <summary>Adds <paramref name="node"/> to a tree that no other task can reach yet (the roots, while <see cref="Vfs"/> is built).</summary>
    internal void AddUnpublished(VfsNode node)
    {
        if (!Attach(node))
        {
            throw new InvalidOperationException($"{FullPath}: '{node.Name}' is added twice while the tree is built");
        }
    }

    private bool Attach(VfsNode node)
    {
        if (!_children.TryAdd(node.Name, node))
        {
            return false;
        }

        node.Parent = this;
        AddedLog?.Add(node);
        return true;
    }

    /// <summary>Detaches <paramref name="node"/> (and with it everything below). Caller holds the tree lock for writing.</summary>
    internal void RemoveLocked(VfsNode node)
    {
        _treeLock.AssertHeldWrite();
        if (_children.TryGetValue(node.Name, out VfsNode? n) && ReferenceEquals(n, node))
        {
            _children.Remove(node.Name);
            node.Parent = null;
        }
    }

    internal override int OpenFile(SimKernel kernel, OpenFlags flags, out SimFile? file)
    {
        if ((flags & OpenFlags.O_ACCMODE) != OpenFlags.O_RDONLY)
        {
            file = null;
            return Errno.EISDIR.Negative();
        }

        file = new SimFile(kernel, DirectoryOps.Instance, FullPath, flags, this, null);
        return 0;
    }

    private sealed class DirectoryOps : FileOperations
    {
        public static readonly DirectoryOps Instance = new();

        public override bool CanRead => true;

        public override long Read(SimFile file, ulong buf, long count, ref long pos) => Errno.EISDIR.Negative();
    }
}

/// <summary>A symbolic link to another node (sysfs links point at kernel objects, not paths).</summary>
public sealed class VfsSymlink : VfsNode
{
    internal VfsSymlink(string name, VfsNode target)
        : base(name, 0x1ff /* 0777 */)
    {
        Target = target;
    }

    /// <summary>The node linked to. The link dangles once that node is removed.</summary>
    public VfsNode Target { get; }

    /// <summary>readlink(): the target's path relative to this link's directory, as sysfs prints it; null when dangling.</summary>
    public string? ReadLink()
    {
        if (Parent is null || !Target.IsAttached)
        {
            return null;
        }

        string[] from = Split(Parent.FullPath);
        string[] to = Split(Target.FullPath);
        int common = 0;
        while (common < from.Length && common < to.Length && from[common] == to[common])
        {
            common++;
        }

        var sb = new StringBuilder();
        for (int i = common; i < from.Length; i++)
        {
            sb.Append("../");
        }

        sb.Append(string.Join('/', to[common..]));
        return sb.ToString().TrimEnd('/');
    }

    private static string[] Split(string path) => path.Split('/', StringSplitOptions.RemoveEmptyEntries);

    internal override int OpenFile(SimKernel kernel, OpenFlags flags, out SimFile? file)
    {
        file = null;
        return Errno.ELOOP.Negative();
    }
}

/// <summary>A character device node (/dev/vfio/vfio): opening it reaches the driver registered for its dev_t.</summary>
public sealed class VfsCharDevice : VfsNode
{
    private readonly CharDevices _registry;

    internal VfsCharDevice(string name, uint devt, int mode, CharDevices registry)
        : base(name, mode)
    {
        DevT = devt;
        _registry = registry;
    }

    /// <summary>The device number (MKDEV(major, minor)).</summary>
    public uint DevT { get; }

    /// <summary>MAJOR(dev).</summary>
    public int Major => CharDevices.MajorOf(DevT);

    /// <summary>MINOR(dev).</summary>
    public int Minor => CharDevices.MinorOf(DevT);

    internal override int OpenFile(SimKernel kernel, OpenFlags flags, out SimFile? file)
    {
        // chrdev_open(): no driver for the number is -ENXIO.
        file = null;
        FileOperations? fops = _registry.Lookup(DevT);
        if (fops is null)
        {
            return Errno.ENXIO.Negative();
        }

        var f = new SimFile(kernel, fops, FullPath, flags, this, null);
        int ret = fops.Open(this, f);
        if (ret < 0)
        {
            return ret;
        }

        file = f;
        return 0;
    }
}
