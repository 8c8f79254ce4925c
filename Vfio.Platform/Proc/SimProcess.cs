// Models a thread group (kernel/fork.c, kernel/exit.c) (v6.12): pid, credentials,
// resource limits, an address space, an fd table, and threads that are KTasks running
// for the process. fork() copies the address space (private pages now, shared pages
// shared) and shares every open file; exit drops the address space, then closes every fd.
// Pinned pages survive exit: their pins hold the frames until the pinner releases them.

using Vfio.Kernel;
using Vfio.Platform.Fs;
using Vfio.Platform.Mm;

namespace Vfio.Platform.Proc;

/// <summary>A simulated process: the user of every syscall.</summary>
public sealed partial class SimProcess : IProcessIdentity
{
    // Protects _threads and the exit state.
    private readonly KSpinLock _lock;
    private readonly List<KTask> _threads = [];

    internal SimProcess(SimMachine machine, int pid, string comm, Credentials credentials, ResourceLimits limits, MmStruct mm, FdTable files, SimProcess? parent)
    {
        Machine = machine;
        Pid = pid;
        Comm = comm;
        Credentials = credentials;
        Limits = limits;
        Mm = mm;
        Files = files;
        Parent = parent;
        mm.Owner = this;
        _lock = new KSpinLock(machine.Kernel, $"proc[{pid}].lock");
    }

    /// <summary>The machine.</summary>
    public SimMachine Machine { get; }

    /// <summary>The kernel.</summary>
    public SimKernel Kernel => Machine.Kernel;

    /// <summary>The process id (tgid).</summary>
    public int Pid { get; }

    /// <summary>The command name.</summary>
    public string Comm { get; }

    /// <summary>Credentials (uid, capabilities); may be changed to drop privileges.</summary>
    public Credentials Credentials { get; set; }

    /// <summary>Resource limits (RLIMIT_MEMLOCK, RLIMIT_NOFILE); may be changed as setrlimit would.</summary>
    public ResourceLimits Limits { get; set; }

    /// <summary>The address space.</summary>
    public MmStruct Mm { get; }

    /// <summary>The fd table.</summary>
    public FdTable Files { get; }

    /// <summary>The parent process.</summary>
    public SimProcess? Parent { get; }

    /// <summary>True after <see cref="Exit"/>.</summary>
    public bool HasExited { get; private set; }

    /// <summary>The exit code.</summary>
    public int ExitCode { get; private set; }

    /// <summary>The process the running task acts for (the kernel's <c>current</c>), or null for kernel threads.</summary>
    public static SimProcess? Current => KTask.CurrentOrNull?.Context as SimProcess;

    /// <summary>The threads spawned for this process.</summary>
    public IReadOnlyList<KTask> Threads
    {
        get
        {
            _lock.Lock();
            try
            {
                return [.. _threads];
            }
            finally
            {
                _lock.Unlock();
            }
        }
    }

    /// <summary>Creates a thread of this process running <paramref name="body"/> (clone(CLONE_THREAD)).</summary>
    public KTask SpawnThread(string name, Action body)
    {
        ThrowIfExited();
        KTask t = Kernel.Spawn(name, body, this);
        _lock.Lock();
        _threads.Add(t);
        _lock.Unlock();
        return t;
    }

    /// <summary>
    /// fork(): a child with a copy of this address space and the same open files. Returns
    /// the child's pid, or -ENOMEM (for instance when private hugetlb pages cannot be copied).
    /// </summary>
    public int Fork(out SimProcess? child, string? comm = null)
    {
        ThrowIfExited();
        using SyscallScope scope = Enter();
        // copy_process() allocates the pid after copy_mm(), so a fork that fails there burns
        // no pid. The mm takes its id (used in names) from the pid once it is known.
        MmStruct mm = Mm.Dup(out int err);
        if (err != 0)
        {
            child = null;
            return err;
        }

        int pid = Machine.AllocPid();
        mm.AssignId(pid);
        FdTable files = Files.Clone(Kernel, pid);
        child = new SimProcess(Machine, pid, comm ?? Comm, Credentials, Limits, mm, files, this);
        Machine.AddProcess(child);
        return pid;
    }

    /// <summary>kill(pid, signo): makes <paramref name="signo"/> pending on every live thread of the process.</summary>
    public void Kill(int signo)
    {
        foreach (KTask t in Threads)
        {
            if (!t.HasExited)
            {
                t.SendSignal(signo);
            }
        }
    }

    /// <summary>
    /// exit_group(): kills the other threads (SIGKILL), drops the address space, then closes
    /// every fd (exit_mm before exit_files). Frames that are still pinned stay allocated
    /// until unpinned. A sibling thread still inside a syscall finds the address space dead
    /// (mmap fails with -EINTR) and the fd table closed (a new fd is -EINTR, a file installed
    /// at a reserved fd is released).
    /// </summary>
    public void Exit(int code = 0)
    {
        KTask me = Kernel.CurrentTask;
        KTask[] others;
        _lock.Lock();
        try
        {
            if (HasExited)
            {
                return;
            }

            HasExited = true;
            ExitCode = code;
            others = [.. _threads.Where(t => !ReferenceEquals(t, me) && !t.HasExited)];
        }
        finally
        {
            _lock.Unlock();
        }

        foreach (KTask t in others)
        {
            t.SendSignal(Signals.SIGKILL);
        }

        // do_exit() runs exit_mm() before exit_files(): a file's release sees the address
        // space already gone (mmget_not_zero fails), as a driver's would.
        using (Enter())
        {
            Mm.Put();
            Files.CloseAll();
        }

        Machine.RemoveProcess(this);
    }

    /// <summary>
    /// Passes <paramref name="fd"/> to <paramref name="to"/> as SCM_RIGHTS would: the file
    /// gains a descriptor in the receiver. Returns the receiver's fd, or -EBADF / -EMFILE.
    /// </summary>
    public int SendFd(int fd, SimProcess to)
    {
        ArgumentNullException.ThrowIfNull(to);
        SimFile? f = Files.Get(fd);
        if (f is null)
        {
            return Errno.EBADF.Negative();
        }

        int nfd = to.Files.Install(f, cloexec: false, to.Limits.NoFile);
        if (nfd < 0)
        {
            f.Put();
        }

        return nfd;
    }

    /// <summary>
    /// Makes the calling task act for this process for the duration of a syscall (the
    /// kernel's <c>current</c>), so kernel code reached from here finds this process's mm
    /// and files even when a test thread makes the call.
    /// </summary>
    internal SyscallScope Enter()
    {
        KTask t = Kernel.CurrentTask;
        object? previous = t.Context;
        t.Context = this;
        return new SyscallScope(t, previous);
    }

    private void ThrowIfExited()
    {
        if (HasExited)
        {
            throw new InvalidOperationException($"process {Pid} ({Comm}) has exited; it can no longer make syscalls");
        }
    }

    /// <inheritdoc/>
    public override string ToString() => $"{Comm}[{Pid}]";

    internal readonly struct SyscallScope(KTask task, object? previous) : IDisposable
    {
        public void Dispose() => task.Context = previous;
    }
}
