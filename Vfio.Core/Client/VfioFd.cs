// The part every typed vfio handle shares: the owning process, the fd, raw ioctls that
// throw VfioException, and an idempotent Dispose that closes the fd.

using Vfio.Platform.Proc;

namespace Vfio.Core.Client;

/// <summary>A vfio fd (container, group or device) owned by a process.</summary>
public abstract class VfioFd : IDisposable
{
    private int _disposed;

    private protected VfioFd(SimProcess process, int fd, string kind)
    {
        Process = process;
        Fd = fd;
        Kind = kind;
    }

    /// <summary>The process that owns the fd.</summary>
    public SimProcess Process { get; }

    /// <summary>The fd, for raw syscalls (it stays the number it was after <see cref="Dispose"/>).</summary>
    public int Fd { get; }

    // "container", "group" or "device": how ioctl numbers are named in messages.
    private protected string Kind { get; }

    /// <summary>Any ioctl on the fd with an integer or pointer argument; its non-negative result, or a <see cref="VfioException"/>.</summary>
    public long Ioctl(uint cmd, ulong arg = 0)
    {
        ThrowIfDisposed();
        return VfioSyscalls.Ioctl(Process, Fd, cmd, Kind, arg);
    }

    /// <summary>Any ioctl on the fd with <paramref name="arg"/> staged in user memory and copied back.</summary>
    public long Ioctl(uint cmd, Span<byte> arg)
    {
        ThrowIfDisposed();
        return VfioSyscalls.Ioctl(Process, Fd, cmd, Kind, arg);
    }

    /// <summary>Closes the fd; a second call does nothing.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            // -EBADF here means the fd was closed behind the handle's back; nothing is left to release.
            Process.Close(Fd);
        }

        GC.SuppressFinalize(this);
    }

    /// <inheritdoc/>
    public override string ToString() => $"{Kind} fd {Fd} of {Process}";

    private protected void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed != 0, this);
}
