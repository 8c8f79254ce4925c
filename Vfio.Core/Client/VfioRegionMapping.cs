// The typed client's view of an mmap of a device region: loads and stores through the
// mapping are user-mode CPU accesses (SimProcess.CpuRead/CpuWrite), so device memory sees
// one access of the access's width, and an access the kernel answers with a signal (SIGBUS
// while the device's memory decode is off, SIGSEGV after unmap) throws VfioSignalException.

using System.Buffers.Binary;
using Vfio.Kernel;
using Vfio.Platform.Proc;

namespace Vfio.Core.Client;

/// <summary>
/// A region of a device fd mapped into a process (<see cref="VfioDeviceFd.MmapRegion"/>).
/// Read/Write are CPU loads and stores of that width at an offset into the mapping.
/// Dispose unmaps.
/// </summary>
public sealed class VfioRegionMapping : IDisposable
{
    private int _unmapped;

    internal VfioRegionMapping(SimProcess process, int index, long offset, ulong address, ulong length)
    {
        Process = process;
        Index = index;
        Offset = offset;
        Address = address;
        Length = length;
    }

    /// <summary>The process whose address space holds the mapping.</summary>
    public SimProcess Process { get; }

    /// <summary>The region index (a BAR).</summary>
    public int Index { get; }

    /// <summary>The offset into the region the mapping starts at.</summary>
    public long Offset { get; }

    /// <summary>The user address of the mapping.</summary>
    public ulong Address { get; }

    /// <summary>The mapping's length in bytes.</summary>
    public ulong Length { get; }

    /// <summary>A 4-byte load at <paramref name="offset"/> into the mapping.</summary>
    /// <exception cref="VfioSignalException">The access raised SIGBUS or SIGSEGV.</exception>
    public uint Read32(long offset)
    {
        Span<byte> b = stackalloc byte[4];
        Load(offset, b);
        return BinaryPrimitives.ReadUInt32LittleEndian(b);
    }

    /// <summary>An 8-byte load at <paramref name="offset"/> (one 8-byte device read).</summary>
    /// <exception cref="VfioSignalException">The access raised SIGBUS or SIGSEGV.</exception>
    public ulong Read64(long offset)
    {
        Span<byte> b = stackalloc byte[8];
        Load(offset, b);
        return BinaryPrimitives.ReadUInt64LittleEndian(b);
    }

    /// <summary>A 4-byte store at <paramref name="offset"/>.</summary>
    /// <exception cref="VfioSignalException">The access raised SIGBUS or SIGSEGV.</exception>
    public void Write32(long offset, uint value)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, value);
        Store(offset, b);
    }

    /// <summary>An 8-byte store at <paramref name="offset"/> (one 8-byte device write).</summary>
    /// <exception cref="VfioSignalException">The access raised SIGBUS or SIGSEGV.</exception>
    public void Write64(long offset, ulong value)
    {
        Span<byte> b = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(b, value);
        Store(offset, b);
    }

    /// <summary>A load of <paramref name="data"/>.Length bytes (1, 2, 4 or 8) returning the signal it raised, or 0: for callers that expect signals.</summary>
    public int TryRead(long offset, Span<byte> data) => Process.CpuRead(At(offset, data.Length), data);

    /// <summary>A store returning the signal it raised, or 0.</summary>
    public int TryWrite(long offset, ReadOnlySpan<byte> data) => Process.CpuWrite(At(offset, data.Length), data);

    /// <summary>munmap() of the whole mapping; a second call does nothing.</summary>
    public void Unmap()
    {
        if (Interlocked.Exchange(ref _unmapped, 1) != 0)
        {
            return;
        }

        int ret = Process.Munmap(Address, Length);
        if (ret < 0)
        {
            throw VfioException.FromReturn(ret, "munmap");
        }
    }

    /// <summary>Unmaps.</summary>
    public void Dispose() => Unmap();

    /// <inheritdoc/>
    public override string ToString() => $"region {Index}+0x{Offset:x} at 0x{Address:x} ({Length} bytes) of {Process}";

    private void Load(long offset, Span<byte> b)
    {
        ulong addr = At(offset, b.Length);
        int sig = Process.CpuRead(addr, b);
        if (sig != 0)
        {
            throw new VfioSignalException(sig, addr, write: false);
        }
    }

    private void Store(long offset, ReadOnlySpan<byte> b)
    {
        ulong addr = At(offset, b.Length);
        int sig = Process.CpuWrite(addr, b);
        if (sig != 0)
        {
            throw new VfioSignalException(sig, addr, write: true);
        }
    }

    private ulong At(long offset, int width)
    {
        if (offset < 0 || (ulong)offset + (ulong)width > Length)
        {
            throw new ArgumentOutOfRangeException(nameof(offset), offset, $"a {width}-byte access is outside the {Length}-byte mapping");
        }

        return Address + (ulong)offset;
    }
}

/// <summary>A load or store through a mapping raised a signal (SIGBUS: the device's memory decode is off; SIGSEGV: nothing mapped there).</summary>
public sealed class VfioSignalException : Exception
{
    /// <summary>Creates the exception for signal <paramref name="signal"/> raised at <paramref name="address"/>.</summary>
    public VfioSignalException(int signal, ulong address, bool write)
        : base($"{(write ? "store to" : "load from")} 0x{address:x} raised {SignalName(signal)}")
    {
        Signal = signal;
        Address = address;
        IsWrite = write;
    }

    /// <summary>The signal number (<see cref="Signals.SIGBUS"/>, <see cref="Signals.SIGSEGV"/>).</summary>
    public int Signal { get; }

    /// <summary>The faulting user address.</summary>
    public ulong Address { get; }

    /// <summary>True for a store.</summary>
    public bool IsWrite { get; }

    private static string SignalName(int signal) => signal switch
    {
        Signals.SIGBUS => "SIGBUS",
        Signals.SIGSEGV => "SIGSEGV",
        Signals.SIGKILL => "SIGKILL",
        _ => $"signal {signal}",
    };
}
