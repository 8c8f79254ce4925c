// A range of a simulated process's memory, for labs and experiments: fill it, read it back,
// map it for DMA at its address. Reads and writes go through the process's page tables
// (copy_to_user / copy_from_user), so they fault pages in and fail on holes as user code would.

using Vfio.Core.Client;
using Vfio.Kernel;
using Vfio.Platform.Proc;

namespace Vfio.Sim;

/// <summary>Anonymous memory of one process (see <see cref="VfioSim.Allocate"/>); <see cref="Dispose"/> unmaps it.</summary>
public sealed class UserBuffer : IDisposable
{
    private bool _unmapped;

    internal UserBuffer(SimProcess process, ulong address, ulong size)
    {
        Process = process;
        Address = address;
        Size = size;
    }

    /// <summary>The process the memory belongs to.</summary>
    public SimProcess Process { get; }

    /// <summary>The user virtual address (what MAP_DMA's <c>vaddr</c> takes).</summary>
    public ulong Address { get; }

    /// <summary>The size in bytes.</summary>
    public ulong Size { get; }

    /// <summary>Writes <paramref name="data"/> at <paramref name="offset"/>.</summary>
    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        CheckRange(offset, (ulong)data.Length);
        Check(Process.Mm.WriteUser(Address + offset, data), "write");
    }

    /// <summary>Fills the whole buffer with <paramref name="value"/>.</summary>
    public void Fill(byte value)
    {
        byte[] chunk = new byte[(int)Math.Min(Size, 1UL << 16)];
        Array.Fill(chunk, value);
        for (ulong off = 0; off < Size; off += (ulong)chunk.Length)
        {
            Write(off, chunk.AsSpan(0, (int)Math.Min((ulong)chunk.Length, Size - off)));
        }
    }

    /// <summary>Reads into <paramref name="destination"/> from <paramref name="offset"/>.</summary>
    public void Read(ulong offset, Span<byte> destination)
    {
        CheckRange(offset, (ulong)destination.Length);
        Check(Process.Mm.ReadUser(Address + offset, destination), "read");
    }

    /// <summary>Reads <paramref name="length"/> bytes from <paramref name="offset"/>.</summary>
    public byte[] Read(ulong offset, int length)
    {
        byte[] b = new byte[length];
        Read(offset, b);
        return b;
    }

    /// <summary>munmap()s the buffer; a second call does nothing.</summary>
    public void Dispose()
    {
        if (!_unmapped)
        {
            _unmapped = true;
            Process.Munmap(Address, Size);
        }
    }

    /// <inheritdoc/>
    public override string ToString() => $"0x{Address:x}+0x{Size:x} of {Process}";

    private void CheckRange(ulong offset, ulong length)
    {
        ObjectDisposedException.ThrowIf(_unmapped, this);
        if (offset > Size || length > Size - offset)
        {
            throw new ArgumentOutOfRangeException(nameof(offset), $"[{offset}, +{length}) is outside the {Size}-byte buffer");
        }
    }

    private void Check(int ret, string what)
    {
        if (ret != 0)
        {
            throw new VfioException(ErrnoExtensions.FromReturn(ret), $"{what} of user memory at 0x{Address:x}", ErrorReason.Current);
        }
    }
}
