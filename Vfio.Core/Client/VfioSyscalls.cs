// The typed vfio client's one way into the kernel: syscalls of a SimProcess, checked, with
// a failure turned into a VfioException carrying the kernel's reason. Argument structs are
// staged through the process's memory by SimProcess's span overloads, as a C program's
// buffers would be.

using System.Runtime.InteropServices;
using Vfio.Platform.Proc;

namespace Vfio.Core.Client;

internal static class VfioSyscalls
{
    /// <summary>Returns <paramref name="ret"/> when it is not negative; otherwise throws for <paramref name="op"/>.</summary>
    public static long Check(long ret, string op) => ret >= 0 ? ret : throw VfioException.FromReturn(ret, op);

    /// <summary>open(): the new fd, or a VfioException naming the path.</summary>
    public static int Open(SimProcess process, string path)
    {
        ArgumentNullException.ThrowIfNull(process);
        ArgumentException.ThrowIfNullOrEmpty(path);
        return (int)Check(process.Open(path), $"open({path})");
    }

    /// <summary>ioctl() with an integer or pointer argument.</summary>
    public static long Ioctl(SimProcess process, int fd, uint cmd, string kind, ulong arg)
    {
        long ret = process.Ioctl(fd, cmd, arg);
        return ret >= 0 ? ret : throw VfioException.FromReturn(ret, Uapi.VfioIoctl.Name(cmd, kind));
    }

    /// <summary>ioctl() with <paramref name="arg"/> staged in user memory and copied back.</summary>
    public static long Ioctl(SimProcess process, int fd, uint cmd, string kind, Span<byte> arg)
    {
        long ret = process.Ioctl(fd, cmd, arg);
        return ret >= 0 ? ret : throw VfioException.FromReturn(ret, Uapi.VfioIoctl.Name(cmd, kind));
    }

    /// <summary>ioctl() with one argument struct staged in user memory and copied back into <paramref name="value"/>.</summary>
    public static long Ioctl<T>(SimProcess process, int fd, uint cmd, string kind, ref T value)
        where T : unmanaged
        => Ioctl(process, fd, cmd, kind, MemoryMarshal.AsBytes(MemoryMarshal.CreateSpan(ref value, 1)));

    /// <summary>The bytes of one struct, for building a request with a trailing array.</summary>
    public static ReadOnlySpan<byte> Bytes<T>(in T value)
        where T : unmanaged
        => MemoryMarshal.AsBytes(new ReadOnlySpan<T>(in value));
}
