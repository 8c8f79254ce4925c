// Models copy_from_user / copy_to_user / get_user / put_user / strndup_user
// (include/linux/uaccess.h, mm/util.c) (v6.12): kernel code reaches user memory of the
// current process through its user pointers; a bad pointer is -EFAULT.

using System.Runtime.InteropServices;
using System.Text;
using Vfio.Kernel;
using Vfio.Platform.Mm;
using Vfio.Platform.Proc;

namespace Vfio.Platform.Fs;

/// <summary>Kernel-side access to the current process's memory.</summary>
public static class UserMemory
{
    private static MmStruct CurrentMm
        => SimProcess.Current?.Mm
           ?? throw new InvalidOperationException("user memory accessed outside a process context: call through a SimProcess syscall or a task spawned for a process");

    /// <summary>copy_from_user(): 0, or -EFAULT. One <see cref="CostOp.IoctlCopy"/> for the cost model.</summary>
    public static int CopyFromUser(Span<byte> to, ulong from)
    {
        MmStruct mm = CurrentMm;
        mm.Kernel.Cost.Charge(CostOp.IoctlCopy);
        return mm.ReadUser(from, to);
    }

    /// <summary>copy_to_user(): 0, or -EFAULT. One <see cref="CostOp.IoctlCopy"/> for the cost model.</summary>
    public static int CopyToUser(ulong to, ReadOnlySpan<byte> from)
    {
        MmStruct mm = CurrentMm;
        mm.Kernel.Cost.Charge(CostOp.IoctlCopy);
        return mm.WriteUser(to, from);
    }

    /// <summary>get_user() / copy_from_user() of one blittable value.</summary>
    public static int Get<T>(ulong from, out T value)
        where T : unmanaged
    {
        value = default;
        return CopyFromUser(MemoryMarshal.AsBytes(MemoryMarshal.CreateSpan(ref value, 1)), from);
    }

    /// <summary>put_user() / copy_to_user() of one blittable value.</summary>
    public static int Put<T>(ulong to, T value)
        where T : unmanaged
        => CopyToUser(to, MemoryMarshal.AsBytes(MemoryMarshal.CreateReadOnlySpan(ref value, 1)));

    /// <summary>
    /// strndup_user(): a NUL-terminated string of at most <paramref name="max"/> bytes
    /// including the NUL. -EFAULT on a bad pointer, -EINVAL when no NUL is found in time.
    /// </summary>
    public static int StrndupUser(ulong from, int max, out string value)
    {
        value = string.Empty;
        byte[] buf = new byte[max];
        int have = 0;
        while (have < max)
        {
            // Read up to the end of the current page: the next page may legitimately be unmapped.
            ulong at = from + (ulong)have;
            int chunk = (int)Math.Min(max - have, PhysMem.PageSize - (long)(at & (PhysMem.PageSize - 1)));
            int ret = CopyFromUser(buf.AsSpan(have, chunk), at);
            if (ret != 0)
            {
                return ret;
            }

            int nul = buf.AsSpan(have, chunk).IndexOf((byte)0);
            if (nul >= 0)
            {
                value = Encoding.UTF8.GetString(buf, 0, have + nul);
                return 0;
            }

            have += chunk;
        }

        return Errno.EINVAL.Negative();
    }
}
