// Models struct file and struct file_operations (include/linux/fs.h) with fs/file_table.c
// (get_file, fput) (v6.12). A file is shared by every fd that refers to it (dup, fork,
// SCM_RIGHTS); ->release runs exactly once, when the last reference goes. Unlike the
// kernel, which defers __fput to task work at syscall exit, release runs in the task that
// drops the last reference, before that syscall returns — the same point user space can
// observe.

using Vfio.Kernel;
using Vfio.Platform.Mm;

namespace Vfio.Platform.Fs;

/// <summary>open() flags (x86-64 values).</summary>
[Flags]
public enum OpenFlags
{
    O_RDONLY = 0,
    O_WRONLY = 0x1,
    O_RDWR = 0x2,
    O_ACCMODE = 0x3,
    O_CREAT = 0x40,
    O_EXCL = 0x80,
    O_NOCTTY = 0x100,
    O_TRUNC = 0x200,
    O_APPEND = 0x400,
    O_NONBLOCK = 0x800,
    O_DIRECTORY = 0x10000,
    O_NOFOLLOW = 0x20000,
    O_CLOEXEC = 0x80000,
}

/// <summary>poll() event bits.</summary>
[Flags]
public enum PollEvents : short
{
    None = 0,
    POLLIN = 0x001,
    POLLPRI = 0x002,
    POLLOUT = 0x004,
    POLLERR = 0x008,
    POLLHUP = 0x010,
    POLLNVAL = 0x020,
    POLLRDNORM = 0x040,
    POLLWRNORM = 0x100,
}

/// <summary>
/// file_operations: what a driver does for its files. Every method has the kernel's
/// default for a missing operation (read/write -EINVAL, ioctl -ENOTTY, mmap -ENODEV, poll
/// "always ready"). Methods receive user pointers and copy with <see cref="UserMemory"/>.
/// </summary>
public abstract class FileOperations
{
    /// <summary>DEFAULT_POLLMASK.</summary>
    public const PollEvents DefaultPollMask = PollEvents.POLLIN | PollEvents.POLLOUT | PollEvents.POLLRDNORM | PollEvents.POLLWRNORM;

    /// <summary>-&gt;open(): 0 or -errno; runs before the fd is installed.</summary>
    public virtual int Open(VfsNode? node, SimFile file) => 0;

    /// <summary>-&gt;release(): the last reference to the file is gone.</summary>
    public virtual void Release(SimFile file)
    {
    }

    /// <summary>True when the driver implements read.</summary>
    public virtual bool CanRead => false;

    /// <summary>True when the driver implements write.</summary>
    public virtual bool CanWrite => false;

    /// <summary>True when the driver implements mmap.</summary>
    public virtual bool CanMmap => false;

    /// <summary>-&gt;read(): bytes read, or -errno.</summary>
    public virtual long Read(SimFile file, ulong buf, long count, ref long pos) => Errno.EINVAL.Negative();

    /// <summary>-&gt;write(): bytes written, or -errno.</summary>
    public virtual long Write(SimFile file, ulong buf, long count, ref long pos) => Errno.EINVAL.Negative();

    /// <summary>-&gt;unlocked_ioctl(): a value or -errno (-ENOIOCTLCMD becomes -ENOTTY).</summary>
    public virtual long Ioctl(SimFile file, uint cmd, ulong arg) => Errno.ENOTTY.Negative();

    /// <summary>-&gt;mmap(): set up <paramref name="vma"/> (flags, ops, entries); 0 or -errno.</summary>
    public virtual int Mmap(SimFile file, Vma vma) => Errno.ENODEV.Negative();

    /// <summary>-&gt;poll(): the ready mask, registering on wait queues through <paramref name="table"/> when non-null.</summary>
    public virtual PollEvents Poll(SimFile file, PollTable? table) => DefaultPollMask;
}

/// <summary>struct file: an open file, shared by every descriptor that refers to it.</summary>
public sealed class SimFile
{
    private static readonly KernelIdSpace s_ids = new("file");
    private readonly RefCount _count;
    private int _released;

    internal SimFile(SimKernel kernel, FileOperations ops, string path, OpenFlags flags, VfsNode? node, object? privateData)
    {
        Ops = ops;
        Path = path;
        Flags = flags & ~(OpenFlags.O_CREAT | OpenFlags.O_EXCL | OpenFlags.O_NOCTTY | OpenFlags.O_TRUNC | OpenFlags.O_CLOEXEC);
        Node = node;
        PrivateData = privateData;
        Id = kernel.NextId(s_ids);
        OpenFlags acc = flags & OpenFlags.O_ACCMODE;
        CanRead = acc is OpenFlags.O_RDONLY or OpenFlags.O_RDWR;
        CanWrite = acc is OpenFlags.O_WRONLY or OpenFlags.O_RDWR;
        _count = new RefCount(kernel, $"file[{Id}].f_count", 1);
    }

    /// <summary>An id for names and reports, numbered from 1 in each kernel.</summary>
    public long Id { get; }

    /// <summary>The driver's operations.</summary>
    public FileOperations Ops { get; internal set; }

    /// <summary>How the file was reached: a path, or <c>anon_inode:[name]</c>.</summary>
    public string Path { get; }

    /// <summary>f_flags (status flags; O_NONBLOCK can change).</summary>
    public OpenFlags Flags { get; internal set; }

    /// <summary>FMODE_READ.</summary>
    public bool CanRead { get; }

    /// <summary>FMODE_WRITE.</summary>
    public bool CanWrite { get; }

    /// <summary>The inode, for files reached by path.</summary>
    public VfsNode? Node { get; }

    /// <summary>private_data.</summary>
    public object? PrivateData { get; set; }

    /// <summary>f_pos.</summary>
    public long Position { get; set; }

    /// <summary>True when O_NONBLOCK is set.</summary>
    public bool NonBlocking => (Flags & OpenFlags.O_NONBLOCK) != 0;

    /// <summary>f_count without a scheduling point.</summary>
    public int ReferenceCount => _count.Value;

    /// <summary>True once -&gt;release has run.</summary>
    public bool IsReleased => Volatile.Read(ref _released) != 0;

    /// <summary>get_file().</summary>
    public void Get() => _count.Inc();

    /// <summary>get_file_rcu()-style: a reference unless the file is already being released.</summary>
    public bool TryGet() => _count.IncNotZero();

    /// <summary>fput(): drops a reference; the last one runs -&gt;release.</summary>
    public void Put()
    {
        if (!_count.DecAndTest())
        {
            return;
        }

        if (Interlocked.Exchange(ref _released, 1) != 0)
        {
            throw new InvalidOperationException($"file {Path} released twice");
        }

        Ops.Release(this);
        Node?.OnFileReleased(this);
    }

    /// <inheritdoc/>
    public override string ToString() => $"file {Path} (f_count {ReferenceCount})";
}
