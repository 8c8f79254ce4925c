// The argsz/minsz protocol of include/uapi/linux/vfio.h, written once: the kernel copies
// the mandatory prefix (minsz bytes) of an argument struct from user memory, fails EFAULT
// if it cannot, and EINVAL if the caller's argsz is smaller than minsz. Bytes beyond
// minsz are not read (type1 ignores them; see peer case BI-05).

using System.Runtime.InteropServices;
using Vfio.Kernel;
using Vfio.Platform.Fs;

namespace Vfio.Core.Uapi;

/// <summary>Copying VFIO argument structs in and out of user memory.</summary>
public static class VfioArg
{
    /// <summary>
    /// copy_from_user(&amp;v, arg, minsz) then <c>argsz &lt; minsz</c>: 0, -EFAULT or -EINVAL.
    /// The struct's first field must be its u32 argsz; bytes past minsz stay zero.
    /// </summary>
    public static int CopyIn<T>(ulong arg, int minsz, out T value, string ioctl)
        where T : unmanaged
    {
        value = default;
        Span<byte> bytes = MemoryMarshal.AsBytes(MemoryMarshal.CreateSpan(ref value, 1));
        if (minsz < sizeof(uint) || minsz > bytes.Length)
        {
            throw new ArgumentOutOfRangeException(nameof(minsz), minsz, $"minsz of {typeof(T).Name} must be between 4 and {bytes.Length}");
        }

        if (UserMemory.CopyFromUser(bytes[..minsz], arg) != 0)
        {
            return ErrorReason.Fail(Errno.EFAULT, $"{ioctl}: cannot read {minsz} bytes of the argument at 0x{arg:x}");
        }

        uint argsz = MemoryMarshal.Read<uint>(bytes);
        return argsz < (uint)minsz
            ? ErrorReason.Fail(Errno.EINVAL, $"{ioctl}: argsz {argsz} is smaller than the minimum {minsz}")
            : 0;
    }

    /// <summary>copy_from_user() of the first <paramref name="size"/> bytes of a struct (for fields the kernel reads only when argsz allows).</summary>
    public static int CopyInPrefix<T>(ulong arg, int size, ref T value)
        where T : unmanaged
    {
        Span<byte> bytes = MemoryMarshal.AsBytes(MemoryMarshal.CreateSpan(ref value, 1));
        return UserMemory.CopyFromUser(bytes[..size], arg) != 0 ? Errno.EFAULT.Negative() : 0;
    }

    /// <summary>copy_to_user(arg, &amp;v, size): 0 or -EFAULT. <paramref name="size"/> is how much of the struct the kernel writes back.</summary>
    public static int CopyOut<T>(ulong arg, in T value, int size)
        where T : unmanaged
    {
        ReadOnlySpan<byte> bytes = MemoryMarshal.AsBytes(MemoryMarshal.CreateReadOnlySpan(in value, 1));
        return UserMemory.CopyToUser(arg, bytes[..size]) != 0 ? Errno.EFAULT.Negative() : 0;
    }

    /// <summary>sizeof(T).</summary>
    public static int SizeOf<T>()
        where T : unmanaged
        => Marshal.SizeOf<T>();
}
