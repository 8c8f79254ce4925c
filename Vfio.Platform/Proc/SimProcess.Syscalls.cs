// The syscall surface (fs/open.c, fs/read_write.c, fs/ioctl.c, fs/file.c, fs/select.c,
// fs/eventfd.c, mm/mmap.c, mm/mlock.c, mm/mprotect.c) (v6.12). Each returns what the raw
// syscall returns: a non-negative result or -errno. A -ERESTART* from an interrupted
// sleep reaches user space as -EINTR (no restartable signal handlers are modelled).
//
// Buffers are user pointers into this process's memory. The overloads taking spans stage
// the bytes through a scratch mapping private to the calling thread, so a test can write
// p.Ioctl(fd, cmd, bytes) and still exercise the kernel's copy_from_user/copy_to_user.

using System.Collections.Concurrent;
using Vfio.Kernel;
using Vfio.Platform.Fs;
using Vfio.Platform.Mm;

namespace Vfio.Platform.Proc;

public sealed partial class SimProcess
{
    /// <summary>MAX_RW_COUNT: the most one read or write transfers.</summary>
    public const long MaxRwCount = int.MaxValue & ~(PhysMem.PageSize - 1);

    /// <summary>FIONCLEX.</summary>
    public const uint FIONCLEX = 0x5450;

    /// <summary>FIOCLEX.</summary>
    public const uint FIOCLEX = 0x5451;

    /// <summary>FIONBIO.</summary>
    public const uint FIONBIO = 0x5421;

    private readonly ConcurrentDictionary<KTask, (ulong Addr, ulong Size)> _scratch = new();

    private static long Ret(long r)
        => r is -(long)Errno.ERESTARTSYS or -(long)Errno.ERESTARTNOINTR or -(long)Errno.ERESTARTNOHAND or -(long)Errno.ERESTART_RESTARTBLOCK
            ? Errno.EINTR.Negative()
            : r == -(long)Errno.ENOIOCTLCMD ? Errno.ENOTTY.Negative() : r;

    /// <summary>access_ok(): the size is a size_t, so a negative count is a huge range (and fails).</summary>
    private static bool AccessOk(ulong addr, ulong count)
        => count == 0 || (addr + count >= addr && addr + count <= MmStruct.TaskSize);

    /// <summary>The prologue of every syscall that acts for this process: it must not have exited, and becomes <c>current</c>.</summary>
    private SyscallScope EnterSyscall()
    {
        ThrowIfExited();
        ErrorReason.Clear();
        return EnterCall();
    }

    /// <summary>Becomes <c>current</c> for a syscall, charging its entry and exit to the cost model.</summary>
    private SyscallScope EnterCall()
    {
        Kernel.Cost.Charge(CostOp.SyscallEntry);
        return Enter();
    }

    /// <summary>fdget(): the file at <paramref name="fd"/> with a reference that <see cref="FdRef.Dispose"/> drops (fdput); File is null for a bad fd.</summary>
    private FdRef FdGet(int fd) => new(Files.Get(fd));

    /// <summary>struct fd: a file reference for the length of a syscall.</summary>
    private readonly ref struct FdRef(SimFile? file)
    {
        public SimFile? File { get; } = file;

        /// <summary>fdput().</summary>
        public void Dispose() => File?.Put();
    }

    // ---- Files.

    /// <summary>open(): a new fd, or -errno (EMFILE, then ENOENT, ENOTDIR, EACCES, EISDIR, ELOOP, ENXIO, or the driver's).</summary>
    public int Open(string path, OpenFlags flags = OpenFlags.O_RDWR)
    {
        long t0 = Machine.Strace.Begin(this);
        int r = OpenCore(path, flags);
        if (t0 >= 0)
        {
            Machine.Strace.Add(this, t0, "openat", $"AT_FDCWD, \"{path}\", {SyscallTracer.OpenFlagsText(flags)}", r);
        }

        return r;
    }

    private int OpenCore(string path, OpenFlags flags)
    {
        using SyscallScope scope = EnterSyscall();
        int fd = GetUnusedFd((flags & OpenFlags.O_CLOEXEC) != 0);
        if (fd < 0)
        {
            return fd;
        }

        int ret = Machine.Vfs.Open(Credentials, path, flags, out SimFile? file);
        if (ret < 0)
        {
            PutUnusedFd(fd);
            return (int)Ret(ret);
        }

        FdInstall(fd, file!);
        return fd;
    }

    /// <summary>
    /// get_unused_fd_flags(): reserves the lowest free fd, or -EMFILE. Kernel code creating a
    /// file for user space reserves first, so a full table fails before anything is opened,
    /// then either <see cref="FdInstall"/>s the file or <see cref="PutUnusedFd"/>s the number.
    /// </summary>
    internal int GetUnusedFd(bool cloexec) => Files.Reserve(cloexec, Limits.NoFile);

    /// <summary>fd_install(): the file's reference passes to the table at the reserved <paramref name="fd"/>.</summary>
    internal void FdInstall(int fd, SimFile file)
    {
        ArgumentNullException.ThrowIfNull(file);
        Files.InstallReserved(fd, file);
    }

    /// <summary>put_unused_fd(): gives back a reserved fd that never got a file.</summary>
    internal void PutUnusedFd(int fd) => Files.Unreserve(fd);

    /// <summary>close(): 0 or -EBADF. The file's release runs here if this was its last reference.</summary>
    public int Close(int fd)
    {
        long t0 = Machine.Strace.Begin(this);
        int r;
        using (EnterCall())
        {
            r = Files.Close(fd);
        }

        if (t0 >= 0)
        {
            Machine.Strace.Add(this, t0, "close", $"{fd}", r, fd);
        }

        return r;
    }

    /// <summary>dup(): the lowest free fd for the same file, or -EBADF / -EMFILE.</summary>
    public int Dup(int fd)
    {
        long t0 = Machine.Strace.Begin(this);
        int r;
        using (EnterCall())
        {
            r = Files.Dup(fd, Limits.NoFile);
        }

        if (t0 >= 0)
        {
            Machine.Strace.Add(this, t0, "dup", $"{fd}", r, fd);
        }

        return r;
    }

    /// <summary>dup2(): <paramref name="newfd"/>, or -EBADF.</summary>
    public int Dup2(int oldfd, int newfd)
    {
        long t0 = Machine.Strace.Begin(this);
        int r;
        using (EnterCall())
        {
            r = Files.Dup2(oldfd, newfd, Limits.NoFile);
        }

        if (t0 >= 0)
        {
            Machine.Strace.Add(this, t0, "dup2", $"{oldfd}, {newfd}", r, oldfd);
        }

        return r;
    }

    /// <summary>eventfd2(): a new eventfd, or -EINVAL for unknown flags.</summary>
    public int Eventfd(uint initval, int flags = 0)
    {
        long t0 = Machine.Strace.Begin(this);
        int r = EventfdCore(initval, flags);
        if (t0 >= 0)
        {
            Machine.Strace.Add(this, t0, "eventfd2", $"{initval}, {SyscallTracer.EventFdFlagsText(flags)}", r);
        }

        return r;
    }

    private int EventfdCore(uint initval, int flags)
    {
        using SyscallScope scope = EnterSyscall();
        if ((flags & ~(EventFdContext.EFD_SEMAPHORE | EventFdContext.EFD_CLOEXEC | EventFdContext.EFD_NONBLOCK)) != 0)
        {
            return Errno.EINVAL.Negative();
        }

        int fd = GetUnusedFd((flags & EventFdContext.EFD_CLOEXEC) != 0);
        if (fd >= 0)
        {
            FdInstall(fd, EventFdFactory.Create(Kernel, initval, flags));
        }

        return fd;
    }

    /// <summary>read(): bytes read, 0 at end, or -errno (EBADF, EINVAL, EFAULT, EAGAIN, EINTR, the driver's).</summary>
    public long Read(int fd, ulong buf, long count) => ReadWrite(fd, buf, count, write: false, offset: null);

    /// <summary>write(): bytes written, or -errno.</summary>
    public long Write(int fd, ulong buf, long count) => ReadWrite(fd, buf, count, write: true, offset: null);

    /// <summary>pread64(): like read at <paramref name="offset"/>, leaving the file position alone.</summary>
    public long Pread(int fd, ulong buf, long count, long offset) => offset < 0 ? Errno.EINVAL.Negative() : ReadWrite(fd, buf, count, write: false, offset);

    /// <summary>pwrite64(): like write at <paramref name="offset"/>.</summary>
    public long Pwrite(int fd, ulong buf, long count, long offset) => offset < 0 ? Errno.EINVAL.Negative() : ReadWrite(fd, buf, count, write: true, offset);

    /// <summary>
    /// vfs_read()/vfs_write() in the kernel's order: the fd (EBADF), the file's mode (EBADF),
    /// the operation (EINVAL), access_ok(buf, count) with count as a size_t (EFAULT — so
    /// read(fd, buf, -1) is EFAULT), rw_verify_area's negative count (EINVAL), then the
    /// count is clamped to MAX_RW_COUNT.
    /// </summary>
    private long ReadWrite(int fd, ulong buf, long count, bool write, long? offset)
    {
        long t0 = Machine.Strace.Begin(this);
        if (t0 < 0)
        {
            return ReadWriteCore(fd, buf, count, write, offset);
        }

        // An eventfd's 8 bytes are its counter: shown as the number, not as bytes. strace
        // shows a write's data at entry and a read's at exit: what came back.
        bool counter;
        string? written = null;
        using (Kernel.Unobserved())
        using (Enter())
        {
            using FdRef fdr = FdGet(fd);
            counter = fdr.File?.Ops is EventFdOps && count >= sizeof(ulong);
            if (write)
            {
                written = counter ? SyscallTracer.CounterText(this, buf) : SyscallTracer.QuoteUser(this, buf, count);
            }
        }

        long r = ReadWriteCore(fd, buf, count, write, offset);
        using (Kernel.Unobserved())
        {
            string data = written
                ?? (r < 0 ? SyscallTracer.Hex(buf) : counter && r == sizeof(ulong) ? SyscallTracer.CounterText(this, buf) : SyscallTracer.QuoteUser(this, buf, r));
            string name = (write ? "write" : "read") + (offset is null ? "" : "64");
            Machine.Strace.Add(this, t0, offset is null ? name : "p" + name, offset is { } o ? $"{fd}, {data}, {count}, {o}" : $"{fd}, {data}, {count}", r, fd);
        }

        return r;
    }

    private long ReadWriteCore(int fd, ulong buf, long count, bool write, long? offset)
    {
        using SyscallScope scope = EnterSyscall();
        using FdRef fdr = FdGet(fd);
        if (fdr.File is not { } f || (write ? !f.CanWrite : !f.CanRead))
        {
            return Errno.EBADF.Negative();
        }

        if (write ? !f.Ops.CanWrite : !f.Ops.CanRead)
        {
            return Errno.EINVAL.Negative();
        }

        if (!AccessOk(buf, (ulong)count))
        {
            return Errno.EFAULT.Negative();
        }

        if (count < 0)
        {
            return Errno.EINVAL.Negative();
        }

        count = Math.Min(count, MaxRwCount);
        long pos = offset ?? f.Position;
        long ret = write ? f.Ops.Write(f, buf, count, ref pos) : f.Ops.Read(f, buf, count, ref pos);
        if (ret >= 0 && offset is null)
        {
            f.Position = pos;
        }

        return Ret(ret);
    }

    /// <summary>ioctl(): the driver's result, or -EBADF / -ENOTTY; FIOCLEX, FIONCLEX and FIONBIO are handled generically.</summary>
    public long Ioctl(int fd, uint cmd, ulong arg = 0)
    {
        long t0 = Machine.Strace.Begin(this);
        if (t0 < 0)
        {
            return IoctlCore(fd, cmd, arg);
        }

        // The file's type decides the request's name (numbers repeat across file types);
        // look it up before the call, which may close the fd, and read the argument as
        // passed before the kernel writes it back.
        IoctlBegun begun;
        using (Kernel.Unobserved())
        using (Enter())
        {
            Type? ops;
            using (FdRef fdr = FdGet(fd))
            {
                ops = fdr.File?.Ops.GetType();
            }

            begun = Machine.Strace.BeginIoctl(this, ops, cmd, arg);
        }

        long r = IoctlCore(fd, cmd, arg);
        using (Kernel.Unobserved())
        {
            Machine.Strace.AddIoctl(this, t0, fd, begun, cmd, arg, r);
        }

        return r;
    }

    private long IoctlCore(int fd, uint cmd, ulong arg)
    {
        using SyscallScope scope = EnterSyscall();
        using FdRef fdr = FdGet(fd);
        if (fdr.File is not { } f)
        {
            return Errno.EBADF.Negative();
        }

        switch (cmd)
        {
            case FIOCLEX:
                return Files.SetCloseOnExec(fd, true);
            case FIONCLEX:
                return Files.SetCloseOnExec(fd, false);
            case FIONBIO:
                int err = UserMemory.Get(arg, out int on);
                if (err != 0)
                {
                    return err;
                }

                f.Flags = on != 0 ? f.Flags | OpenFlags.O_NONBLOCK : f.Flags & ~OpenFlags.O_NONBLOCK;
                return 0;
            default:
                return Ret(f.Ops.Ioctl(f, cmd, arg));
        }
    }

    // ---- Memory.

    /// <summary>
    /// mmap(): the address, or -errno. <paramref name="fd"/> is ignored with MAP_ANONYMOUS.
    /// The offset is an unsigned long to the kernel: an unaligned one is -EINVAL before the
    /// fd is looked up; a negative aligned one is a very large offset.
    /// </summary>
    public long Mmap(ulong addr, ulong length, Prot prot, MapFlags flags, int fd = -1, long offset = 0)
    {
        long t0 = Machine.Strace.Begin(this);
        long r = MmapCore(addr, length, prot, flags, fd, offset);
        if (t0 >= 0)
        {
            Machine.Strace.Add(
                this,
                t0,
                "mmap",
                $"{SyscallTracer.Hex(addr)}, {length}, {SyscallTracer.ProtText(prot)}, {SyscallTracer.Flags(flags)}, {fd}, {SyscallTracer.Hex((ulong)offset).Replace("NULL", "0", StringComparison.Ordinal)}",
                r,
                fd,
                returnText: r >= 0 ? SyscallTracer.Hex((ulong)r) : null);
        }

        return r;
    }

    private long MmapCore(ulong addr, ulong length, Prot prot, MapFlags flags, int fd, long offset)
    {
        using SyscallScope scope = EnterSyscall();
        if ((offset & (PhysMem.PageSize - 1)) != 0)
        {
            return Errno.EINVAL.Negative();
        }

        bool anonymous = (flags & MapFlags.MAP_ANONYMOUS) != 0;
        using FdRef fdr = anonymous ? default : FdGet(fd);
        if (!anonymous && fdr.File is null)
        {
            return Errno.EBADF.Negative();
        }

        return Mm.Mmap(addr, length, prot, flags, fdr.File, (ulong)offset, this);
    }

    /// <summary>
    /// A user-mode load of <paramref name="data"/>.Length bytes (1, 2, 4 or 8, naturally
    /// aligned) at <paramref name="addr"/>, as one CPU instruction: 0, or the signal it raised
    /// (<see cref="Signals.SIGSEGV"/>, <see cref="Signals.SIGBUS"/>) instead of an errno. Device
    /// memory sees one access of that width.
    /// </summary>
    public int CpuRead(ulong addr, Span<byte> data)
    {
        using SyscallScope scope = Enter();
        return Mm.UserAccess(addr, data, write: false);
    }

    /// <summary>A user-mode store, as <see cref="CpuRead"/>: 0 or the signal raised.</summary>
    public int CpuWrite(ulong addr, ReadOnlySpan<byte> data)
    {
        using SyscallScope scope = Enter();
        Span<byte> copy = stackalloc byte[8];
        if (data.Length > copy.Length)
        {
            throw new ArgumentException($"a CPU store is at most 8 bytes (got {data.Length})", nameof(data));
        }

        data.CopyTo(copy);
        return Mm.UserAccess(addr, copy[..data.Length], write: true);
    }

    /// <summary>munmap(): 0 or -EINVAL.</summary>
    public int Munmap(ulong addr, ulong length)
    {
        long t0 = Machine.Strace.Begin(this);
        int r;
        using (EnterCall())
        {
            r = Mm.Munmap(addr, length);
        }

        if (t0 >= 0)
        {
            Machine.Strace.Add(this, t0, "munmap", $"{SyscallTracer.Hex(addr)}, {length}", r);
        }

        return r;
    }

    /// <summary>mprotect(): 0 or -errno.</summary>
    public int Mprotect(ulong addr, ulong length, Prot prot)
    {
        long t0 = Machine.Strace.Begin(this);
        int r;
        using (EnterCall())
        {
            r = Mm.Mprotect(addr, length, prot);
        }

        if (t0 >= 0)
        {
            Machine.Strace.Add(this, t0, "mprotect", $"{SyscallTracer.Hex(addr)}, {length}, {SyscallTracer.ProtText(prot)}", r);
        }

        return r;
    }

    /// <summary>mlock(): 0, -EPERM, -ENOMEM.</summary>
    public int Mlock(ulong addr, ulong length)
    {
        long t0 = Machine.Strace.Begin(this);
        int r;
        using (EnterCall())
        {
            r = Mm.Mlock(addr, length, this);
        }

        if (t0 >= 0)
        {
            Machine.Strace.Add(this, t0, "mlock", $"{SyscallTracer.Hex(addr)}, {length}", r);
        }

        return r;
    }

    /// <summary>munlock(): 0 or -ENOMEM.</summary>
    public int Munlock(ulong addr, ulong length)
    {
        long t0 = Machine.Strace.Begin(this);
        int r;
        using (EnterCall())
        {
            r = Mm.Munlock(addr, length);
        }

        if (t0 >= 0)
        {
            Machine.Strace.Add(this, t0, "munlock", $"{SyscallTracer.Hex(addr)}, {length}", r);
        }

        return r;
    }

    // ---- poll.

    /// <summary>
    /// poll(): the number of entries with events, 0 on timeout (<paramref name="timeoutMs"/>
    /// of virtual time; negative waits forever), -EINTR on a signal, -EINVAL for too many fds.
    /// </summary>
    public int Poll(Span<PollFd> fds, int timeoutMs)
    {
        long t0 = Machine.Strace.Begin(this);
        string? before = t0 >= 0 ? SyscallTracer.PollFdsText(fds, revents: false) : null;
        int r = PollCore(fds, timeoutMs);
        if (t0 >= 0)
        {
            Machine.Strace.Add(
                this,
                t0,
                "poll",
                $"{before}, {fds.Length}, {timeoutMs}",
                r,
                returnText: r > 0 ? $"{r} ({SyscallTracer.PollFdsText(fds, revents: true)})" : r == 0 ? "0 (Timeout)" : null);
        }

        return r;
    }

    private int PollCore(Span<PollFd> fds, int timeoutMs)
    {
        using SyscallScope scope = EnterSyscall();
        if (fds.Length > Limits.NoFile)
        {
            return Errno.EINVAL.Negative();
        }

        // A zero timeout is one pass without a poll table (do_poll clears _qproc): nothing
        // is registered, so nothing is allocated.
        return timeoutMs == 0 ? PollPass(fds, null) : PollWait(fds, timeoutMs);
    }

    // One pass of do_poll(): every entry's ready mask; the first pass of a poll that may
    // sleep registers on the files' queues until an entry is ready (then only asks).
    private int PollPass(Span<PollFd> fds, PollTable? table)
    {
        int count = 0;
        for (int i = 0; i < fds.Length; i++)
        {
            fds[i].REvents = PollEvents.None;
            if (fds[i].Fd < 0)
            {
                continue;
            }

            PollEvents mask;
            using (FdRef fdr = FdGet(fds[i].Fd))
            {
                if (fdr.File is not { } f)
                {
                    fds[i].REvents = PollEvents.POLLNVAL;
                    count++;
                    continue;
                }

                table?.SetInterest(fds[i].Events);
                mask = f.Ops.Poll(f, table is { Registering: true } && count == 0 ? table : null);
            }

            mask &= fds[i].Events | PollEvents.POLLERR | PollEvents.POLLHUP;
            if (mask != PollEvents.None)
            {
                fds[i].REvents = mask;
                count++;
            }
        }

        if (table is not null)
        {
            table.Registering = false;
        }

        return count;
    }

    private int PollWait(Span<PollFd> fds, int timeoutMs)
    {
        var table = new PollTable(Kernel);
        bool timed = timeoutMs >= 0;
        long expire = timed ? Kernel.Clock.Jiffies + SimClock.MsecsToJiffies(timeoutMs) : 0;
        bool timedOut = false;
        try
        {
            while (true)
            {
                int count = PollPass(fds, table);
                if (count > 0 || timedOut)
                {
                    return count;
                }

                if (Kernel.CurrentTask.SignalPending)
                {
                    return Errno.EINTR.Negative();
                }

                long r;
                if (timed)
                {
                    long left = expire - Kernel.Clock.Jiffies;
                    r = left <= 0 ? 0 : table.Queue.WaitEventInterruptibleTimeout(() => table.Triggered, left);
                    timedOut = r == 0;
                }
                else
                {
                    r = table.Queue.WaitEventInterruptible(() => table.Triggered);
                }

                if (r < 0)
                {
                    return (int)Ret(r);
                }

                table.Rearm();
            }
        }
        finally
        {
            table.RemoveAll();
        }
    }

    // ---- Span conveniences (staged through a scratch mapping of the calling thread).

    /// <summary>read() into <paramref name="buffer"/>.</summary>
    public long Read(int fd, Span<byte> buffer) => ReadStaged(fd, buffer, null);

    /// <summary>write() of <paramref name="data"/>.</summary>
    public long Write(int fd, ReadOnlySpan<byte> data) => WriteStaged(fd, data, null);

    /// <summary>pread64() into <paramref name="buffer"/>.</summary>
    public long Pread(int fd, Span<byte> buffer, long offset) => ReadStaged(fd, buffer, offset);

    /// <summary>pwrite64() of <paramref name="data"/>.</summary>
    public long Pwrite(int fd, ReadOnlySpan<byte> data, long offset) => WriteStaged(fd, data, offset);

    // read()/pread64() through the scratch mapping: the kernel copies to user memory, then
    // the bytes it reported are copied out to the caller's span.
    private long ReadStaged(int fd, Span<byte> buffer, long? offset)
    {
        ulong ua = Scratch(buffer.Length);
        long r = offset is { } o ? Pread(fd, ua, buffer.Length, o) : Read(fd, ua, buffer.Length);
        if (r > 0)
        {
            CheckStaging(Mm.ReadUser(ua, buffer[..(int)r]));
        }

        return r;
    }

    private long WriteStaged(int fd, ReadOnlySpan<byte> data, long? offset)
    {
        ulong ua = Scratch(data.Length);
        CheckStaging(Mm.WriteUser(ua, data));
        return offset is { } o ? Pwrite(fd, ua, data.Length, o) : Write(fd, ua, data.Length);
    }

    /// <summary>ioctl() with <paramref name="arg"/> staged in user memory and copied back afterwards (both directions, as a user buffer would be).</summary>
    public long Ioctl(int fd, uint cmd, Span<byte> arg)
    {
        ulong ua = Scratch(arg.Length);
        CheckStaging(Mm.WriteUser(ua, arg));
        long r = Ioctl(fd, cmd, ua);
        CheckStaging(Mm.ReadUser(ua, arg));
        return r;
    }

    private static void CheckStaging(int ret)
    {
        if (ret != 0)
        {
            throw new InvalidOperationException("the syscall staging buffer is not accessible: was it unmapped by the test?");
        }
    }

    private ulong Scratch(int length)
    {
        ThrowIfExited();
        KTask t = Kernel.CurrentTask;
        ulong need = (ulong)Math.Max(length, 1);
        if (_scratch.TryGetValue(t, out (ulong Addr, ulong Size) s) && s.Size >= need)
        {
            return s.Addr;
        }

        ulong size = Math.Max(64UL << 10, (ulong)1 << (64 - System.Numerics.BitOperations.LeadingZeroCount(need - 1)));
        long addr = Mm.Mmap(0, size, Prot.PROT_READ | Prot.PROT_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS, null, 0, this);
        if (addr < 0)
        {
            throw new InvalidOperationException($"cannot map a {size}-byte syscall staging buffer: {ErrnoExtensions.FromReturn(addr).Describe()}");
        }

        if (s.Size != 0)
        {
            Mm.Munmap(s.Addr, s.Size);
        }

        _scratch[t] = ((ulong)addr, size);
        return (ulong)addr;
    }
}
