// Models struct files_struct and fs/file.c (v6.12): the fd table of a process. New fds
// take the lowest free number below RLIMIT_NOFILE; close drops the table's reference and
// the file's release runs if that was the last one. The table lock is never held while a
// file is released. Like get_unused_fd_flags/fd_install, a number can be reserved first and
// the file installed once it exists, so a full table fails before any driver open runs.

using Vfio.Kernel;

namespace Vfio.Platform.Fs;

/// <summary>files_struct: a process's open file descriptors.</summary>
public sealed class FdTable
{
    // Protects _files, _cloexec, _reserved and _closed. A reserved fd is taken (open_fds)
    // but has no file yet: fget sees nothing there, and dup2 onto it is -EBUSY. _closed is
    // set by CloseAll at exit; a sibling thread still in a syscall then gets no new fd.
    private readonly KSpinLock _lock;
    private SimFile?[] _files = new SimFile?[16];
    private bool[] _cloexec = new bool[16];
    private bool[] _reserved = new bool[16];
    private bool _closed;

    internal FdTable(SimKernel kernel, int pid)
    {
        _lock = new KSpinLock(kernel, $"files[{pid}].file_lock");
    }

    /// <summary>The open descriptors and their files in fd order, read without file_lock: only when no task runs (the object graph's snapshot).</summary>
    internal IReadOnlyList<(int Fd, SimFile File)> OpenUnlocked
    {
        get
        {
            var list = new List<(int, SimFile)>();
            SimFile?[] files = _files;
            for (int i = 0; i < files.Length; i++)
            {
                if (files[i] is { } f)
                {
                    list.Add((i, f));
                }
            }

            return list;
        }
    }

    /// <summary>The open descriptors and their files, in fd order.</summary>
    public IReadOnlyList<(int Fd, SimFile File)> Open
    {
        get
        {
            _lock.Lock();
            try
            {
                var list = new List<(int, SimFile)>();
                for (int i = 0; i < _files.Length; i++)
                {
                    if (_files[i] is { } f)
                    {
                        list.Add((i, f));
                    }
                }

                return list;
            }
            finally
            {
                _lock.Unlock();
            }
        }
    }

    /// <summary>Installs <paramref name="file"/> (whose reference the table now owns) at the lowest free fd; -EMFILE past <paramref name="limit"/>.</summary>
    internal int Install(SimFile file, bool cloexec, int limit) => Allocate(file, cloexec, limit);

    /// <summary>get_unused_fd_flags(): reserves the lowest free fd, or -EMFILE past <paramref name="limit"/>.</summary>
    internal int Reserve(bool cloexec, int limit) => Allocate(null, cloexec, limit);

    /// <summary>fd_install(): puts <paramref name="file"/> (whose reference the table now owns) at a reserved fd.</summary>
    internal void InstallReserved(int fd, SimFile file) => EndReservation(fd, file);

    /// <summary>put_unused_fd(): releases a reservation that never got a file.</summary>
    internal void Unreserve(int fd) => EndReservation(fd, null);

    // The lowest free fd, given the file or (null) reserved for one.
    private int Allocate(SimFile? file, bool cloexec, int limit)
    {
        _lock.Lock();
        try
        {
            if (_closed)
            {
                // The process exited under a thread still in open() or dup(); that thread
                // has SIGKILL pending and never returns to user space.
                return Errno.EINTR.Negative();
            }

            int fd = LowestFreeLocked(limit);
            if (fd >= 0)
            {
                _files[fd] = file;
                _reserved[fd] = file is null;
                _cloexec[fd] = cloexec;
            }

            return fd;
        }
        finally
        {
            _lock.Unlock();
        }
    }

    private void EndReservation(int fd, SimFile? file)
    {
        bool closed;
        _lock.Lock();
        try
        {
            closed = _closed;
            if (!closed)
            {
                if (fd < 0 || fd >= _files.Length || !_reserved[fd])
                {
                    throw new InvalidOperationException($"fd {fd} was not reserved");
                }

                _reserved[fd] = false;
                _files[fd] = file;
            }
        }
        finally
        {
            _lock.Unlock();
        }

        // The table was closed at exit while the fd was reserved: nobody can reach the
        // file any more, so the table's reference is dropped here (outside the lock, as
        // close does) instead of leaking.
        if (closed)
        {
            file?.Put();
        }
    }

    private int LowestFreeLocked(int limit)
    {
        _lock.AssertHeld();
        for (int i = 0; i < limit; i++)
        {
            if (i >= _files.Length)
            {
                GrowLocked(i, limit);
            }

            if (_files[i] is null && !_reserved[i])
            {
                return i;
            }
        }

        return Errno.EMFILE.Negative();
    }

    private void GrowLocked(int fd, int limit)
    {
        _lock.AssertHeld();
        int size = Math.Min(Math.Max(_files.Length * 2, fd + 1), limit);
        Array.Resize(ref _files, size);
        Array.Resize(ref _cloexec, size);
        Array.Resize(ref _reserved, size);
    }

    /// <summary>fget(): the file at <paramref name="fd"/> with a reference taken, or null.</summary>
    public SimFile? Get(int fd)
    {
        _lock.Lock();
        try
        {
            if (fd < 0 || fd >= _files.Length || _files[fd] is not { } f)
            {
                return null;
            }

            f.Get();
            return f;
        }
        finally
        {
            _lock.Unlock();
        }
    }

    /// <summary>True when the fd has close-on-exec set.</summary>
    public bool IsCloseOnExec(int fd)
    {
        _lock.Lock();
        try
        {
            return fd >= 0 && fd < _files.Length && _files[fd] is not null && _cloexec[fd];
        }
        finally
        {
            _lock.Unlock();
        }
    }

    internal int SetCloseOnExec(int fd, bool on)
    {
        _lock.Lock();
        try
        {
            if (fd < 0 || fd >= _files.Length || _files[fd] is null)
            {
                return Errno.EBADF.Negative();
            }

            _cloexec[fd] = on;
            return 0;
        }
        finally
        {
            _lock.Unlock();
        }
    }

    /// <summary>close(): 0, or -EBADF.</summary>
    internal int Close(int fd)
    {
        SimFile? f;
        _lock.Lock();
        try
        {
            if (fd < 0 || fd >= _files.Length || _files[fd] is null)
            {
                return Errno.EBADF.Negative();
            }

            f = _files[fd];
            _files[fd] = null;
        }
        finally
        {
            _lock.Unlock();
        }

        f!.Put();
        return 0;
    }

    /// <summary>dup(): the lowest free fd referring to the same file, or -EBADF / -EMFILE.</summary>
    internal int Dup(int fd, int limit)
    {
        SimFile? f = Get(fd);
        if (f is null)
        {
            return Errno.EBADF.Negative();
        }

        int nfd = Install(f, cloexec: false, limit);
        if (nfd < 0)
        {
            f.Put();
        }

        return nfd;
    }

    /// <summary>dup2(): makes <paramref name="newfd"/> refer to the file of <paramref name="oldfd"/>, closing what it held; -EBUSY while <paramref name="newfd"/> is reserved.</summary>
    internal int Dup2(int oldfd, int newfd, int limit)
    {
        if (newfd < 0 || newfd >= limit)
        {
            return Errno.EBADF.Negative();
        }

        SimFile? f = Get(oldfd);
        if (f is null)
        {
            return Errno.EBADF.Negative();
        }

        if (oldfd == newfd)
        {
            f.Put();
            return newfd;
        }

        SimFile? old;
        _lock.Lock();
        try
        {
            if (newfd >= _files.Length)
            {
                GrowLocked(newfd, limit);
            }

            if (_reserved[newfd])
            {
                // The reference taken above is dropped after the unlock, as a replaced file is.
                old = f;
                newfd = Errno.EBUSY.Negative();
            }
            else
            {
                old = _files[newfd];
                _files[newfd] = f;
                _cloexec[newfd] = false;
            }
        }
        finally
        {
            _lock.Unlock();
        }

        old?.Put();
        return newfd;
    }

    /// <summary>dup_fd() for fork: a table referring to the same files.</summary>
    internal FdTable Clone(SimKernel kernel, int childPid)
    {
        var t = new FdTable(kernel, childPid);
        _lock.Lock();
        try
        {
            t._files = new SimFile?[_files.Length];
            t._cloexec = (bool[])_cloexec.Clone();
            t._reserved = new bool[_files.Length];
            for (int i = 0; i < _files.Length; i++)
            {
                if (_files[i] is { } f)
                {
                    f.Get();
                    t._files[i] = f;
                }
            }
        }
        finally
        {
            _lock.Unlock();
        }

        return t;
    }

    /// <summary>Closes every fd (process exit); the table accepts no new fd afterwards.</summary>
    internal void CloseAll()
    {
        SimFile?[] files;
        _lock.Lock();
        try
        {
            files = _files;
            _files = new SimFile?[16];
            _cloexec = new bool[16];
            _reserved = new bool[16];
            _closed = true;
        }
        finally
        {
            _lock.Unlock();
        }

        foreach (SimFile? f in files)
        {
            f?.Put();
        }
    }
}
