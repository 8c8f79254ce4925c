// The read/write loop the display samples share (samples/vfio-mdev/mdpy.c and mbochs.c
// mdpy_read/mdpy_write, mbochs_read/mbochs_write, v6.12): the request is cut into 4-byte
// pieces where the position is 4-aligned, else 2-byte where 2-aligned, else single bytes;
// each piece is one device access under the device's lock, copied to or from user space
// outside it. A failed access or copy makes the whole call -EFAULT (bytes already done
// stay done); the file position advances piece by piece.

using Vfio.Kernel;
using Vfio.Platform.Fs;

namespace Vfio.Mdev.Samples;

/// <summary>One device access of a piece: the byte count, or a negative value when the position is not handled.</summary>
internal delegate int SampleAccess(Span<byte> val, long pos, bool write);

internal static class SampleRw
{
    public static long Loop(string name, SampleAccess access, ulong buf, long count, ref long pos, bool write)
    {
        long done = 0;
        Span<byte> val = stackalloc byte[4];
        while (count > 0)
        {
            int n = count >= 4 && pos % 4 == 0 ? 4 : count >= 2 && pos % 2 == 0 ? 2 : 1;
            Span<byte> piece = val[..n];
            piece.Clear();
            if (write)
            {
                if (UserMemory.CopyFromUser(piece, buf) != 0)
                {
                    return ErrorReason.Fail(Errno.EFAULT, $"{name}_write: cannot copy from 0x{buf:x}");
                }

                if (access(piece, pos, true) <= 0)
                {
                    return ErrorReason.Fail(Errno.EFAULT, $"{name}_write: {n} bytes at 0x{pos:x} are outside every region");
                }
            }
            else
            {
                if (access(piece, pos, false) <= 0)
                {
                    return ErrorReason.Fail(Errno.EFAULT, $"{name}_read: {n} bytes at 0x{pos:x} are outside every region");
                }

                if (UserMemory.CopyToUser(buf, piece) != 0)
                {
                    return ErrorReason.Fail(Errno.EFAULT, $"{name}_read: cannot copy to 0x{buf:x}");
                }
            }

            count -= n;
            done += n;
            pos += n;
            buf += (ulong)n;
        }

        return done;
    }
}
