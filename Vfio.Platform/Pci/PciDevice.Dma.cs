// Models a function's DMA as a bus master: reads and writes of host memory carry the
// function's requester id and pass through the IOMMU (the machine's DMA translator); a
// function whose Bus Master Enable is clear issues no DMA (PCI Local Bus 3.0 §6.2.2).

using Vfio.Kernel;

namespace Vfio.Platform.Pci;

/// <summary>Where a function's DMA goes: the IOMMU, or straight to memory on a machine without one.</summary>
public interface IDmaTranslator
{
    /// <summary>A DMA read of <paramref name="buffer"/>.Length bytes at bus address <paramref name="iova"/>: 0 or -errno (-EFAULT on an IOMMU fault).</summary>
    int DmaRead(PciDevice device, ulong iova, Span<byte> buffer);

    /// <summary>A DMA write: 0 or -errno.</summary>
    int DmaWrite(PciDevice device, ulong iova, ReadOnlySpan<byte> buffer);
}

/// <summary>No IOMMU: bus addresses are physical addresses.</summary>
public sealed class DirectDma(SimMachine machine) : IDmaTranslator
{
    /// <inheritdoc/>
    public int DmaRead(PciDevice device, ulong iova, Span<byte> buffer)
    {
        machine.Memory.Read((long)iova, buffer);
        return 0;
    }

    /// <inheritdoc/>
    public int DmaWrite(PciDevice device, ulong iova, ReadOnlySpan<byte> buffer)
    {
        machine.Memory.Write((long)iova, buffer);
        return 0;
    }
}

public partial class PciDevice
{
    private long _dmaBlocked;

    /// <summary>Bus Master Enable.</summary>
    public bool BusMaster => (Config.GetWord(PciRegs.Command) & PciRegs.CommandMaster) != 0;

    /// <summary>DMA attempts dropped because bus mastering was off.</summary>
    public long DmaBlockedByCommand => Interlocked.Read(ref _dmaBlocked);

    /// <summary>The function reads host memory at bus address <paramref name="iova"/>: 0, -EIO without bus mastering, -EFAULT on an IOMMU fault.</summary>
    protected int DmaRead(ulong iova, Span<byte> buffer)
    {
        if (!BusMaster || IsDisconnected)
        {
            Interlocked.Increment(ref _dmaBlocked);
            return Errno.EIO.Negative();
        }

        return Machine.DmaTranslator.DmaRead(this, iova, buffer);
    }

    /// <summary>The function writes host memory at bus address <paramref name="iova"/>.</summary>
    protected int DmaWrite(ulong iova, ReadOnlySpan<byte> buffer)
    {
        if (!BusMaster || IsDisconnected)
        {
            Interlocked.Increment(ref _dmaBlocked);
            return Errno.EIO.Negative();
        }

        return Machine.DmaTranslator.DmaWrite(this, iova, buffer);
    }
}
