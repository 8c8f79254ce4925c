// The DMA half of the demo: program edu's DMA engine through BAR0 of the device fd (the bus
// address is the IOVA), wait for it on the virtual clock, look at the user buffer and at the
// IOMMU's fault log; then unmap, close and unbind.

using System.Buffers.Binary;
using System.Text;
using Vfio.Kernel;
using Vfio.Pci;
using Vfio.Platform.Devices;
using Vfio.Platform.Iommu;
using Vfio.Platform.Mm;

namespace Vfio.Cli;

internal sealed partial class DemoScript
{
    private const int DmaBytes = EduDevice.DmaBufferSize;

    private string DmaIn()
    {
        byte[] pattern = Pattern();
        Check(_p.Mm.WriteUser(_va, pattern) == 0, "the user buffer is writable");
        int rc = Dma(Iova, EduDevice.DmaBufferStart, EduDevice.DmaCmdStart);
        Check(rc == 0, $"the transfer completes without error, not {Describe(rc)}");
        Check(((EduDevice)_edu!).CopyBuffer().AsSpan().SequenceEqual(pattern), "edu's buffer holds the user's bytes");
        return $"wrote {DmaBytes} bytes of \"{Greeting.Trim()}…\" at user va {Hex(_va)}\n" +
            $"BAR0: src {Hex(Iova)} (IOVA), dst {Hex(EduDevice.DmaBufferStart)}, count {Hex(DmaBytes)}, cmd {Hex(EduDevice.DmaCmdStart)}; msleep until the start bit clears\n" +
            $"edu's buffer now starts with \"{Ascii(((EduDevice)_edu!).CopyBuffer())}\"";
    }

    private string DmaOut()
    {
        int rc = Dma(EduDevice.DmaBufferStart, Iova + BackOffset, EduDevice.DmaCmdStart | EduDevice.DmaCmdToRam);
        Check(rc == 0, $"the transfer completes without error, not {Describe(rc)}");
        byte[] got = new byte[DmaBytes];
        Check(_p.Mm.ReadUser(_va + BackOffset, got) == 0, "the user buffer is readable");
        Check(got.AsSpan().SequenceEqual(Pattern()), "the bytes at the user buffer are the ones edu sent");
        return $"BAR0: src {Hex(EduDevice.DmaBufferStart)}, dst {Hex(Iova + BackOffset)} (IOVA), count {Hex(DmaBytes)}, cmd {Hex(EduDevice.DmaCmdStart | EduDevice.DmaCmdToRam)}\n" +
            $"bytes arrived: {DmaBytes} bytes at user va {Hex(_va + BackOffset)}: \"{Ascii(got)}\"";
    }

    private string Unmap()
    {
        long lockedBefore = _p.Mm.LockedVm;
        ulong unmapped = _container!.UnmapDma(Iova, BufferSize);
        long released = lockedBefore - _p.Mm.LockedVm;
        Check(unmapped == BufferSize, $"UNMAP_DMA reports {BufferSize} bytes unmapped, not {unmapped}");
        Check(released == (long)(BufferSize / PhysMem.PageSize), $"the {BufferSize / PhysMem.PageSize} pages leave locked_vm, not {released}");
        return $"unmapped {Size(unmapped)} at IOVA {Hex(Iova)}; unpinned, locked_vm -{released} pages";
    }

    private string DmaFaults()
    {
        IommuFaultLog log = machine.Iommu!.Hardware.Faults;
        long before = log.Total;
        int rc = Dma(EduDevice.DmaBufferStart, Iova + BackOffset, EduDevice.DmaCmdStart | EduDevice.DmaCmdToRam);
        Check(rc == Errno.EFAULT.Negative(), $"the transfer fails with EFAULT, not {Describe(rc)}");
        Check(log.Total > before, "the IOMMU recorded a fault");
        IommuFault f = log.Snapshot()[^1];
        Check(f.Device == _edu!.Name && f.Iova == Iova + BackOffset && f.Reason == IommuFaultReason.NotPresent,
            $"the fault is {_edu.Name}'s, at IOVA {Hex(Iova + BackOffset)}, not present; got {f}");
        return $"edu: {((EduDevice)_edu).LastDmaError}\n" +
            $"IOMMU fault log, new entry: device {f.Device}, iova {Hex(f.Iova)}, {f.Access}, reason {f.Reason}, domain {f.DomainId}, at t={f.TimeNs / 1e9:0.000} s";
    }

    private string CloseFds()
    {
        _device!.Dispose();
        _group!.Dispose();
        _container!.Dispose();
        (_device, _group, _container) = (null, null, null);
        Check(_edu!.IommuGroup!.Domain?.Type != IommuDomainType.Unmanaged, "the group left vfio's domain");
        return $"closed; group {_groupId} is back in its default domain ({_edu.IommuGroup.Domain?.Type.SysfsName() ?? "none"})";
    }

    private string Unbind()
    {
        string bdf = _edu!.Name;
        SysfsWrite($"/sys/bus/pci/drivers/{VfioPciDriver.DriverName}/unbind", bdf);
        Check(DriverOf(bdf) is null, $"{bdf} has no driver after the unbind");
        Check(!machine.Vfs.Exists($"/dev/vfio/{_groupId}"), $"/dev/vfio/{_groupId} is gone");
        SysfsWrite($"/sys/bus/pci/devices/{bdf}/driver_override", "");
        SysfsWrite("/sys/bus/pci/drivers_probe", bdf);
        string? now = DriverOf(bdf);
        Check(now == _hostDriver, $"{bdf} is back on {_hostDriver}, not {now ?? "no driver"}");
        return $"echo {bdf} > /sys/bus/pci/drivers/{VfioPciDriver.DriverName}/unbind; /dev/vfio/{_groupId} is gone\n" +
            $"cleared driver_override and reprobed: {bdf} is bound to {now} again";
    }

    /// <summary>Programs one edu transfer through BAR0, sleeps until the start bit clears, returns edu's result.</summary>
    private int Dma(ulong src, ulong dst, ulong cmd)
    {
        Write64(EduDevice.RegDmaSource, src);
        Write64(EduDevice.RegDmaDestination, dst);
        Write64(EduDevice.RegDmaCount, DmaBytes);
        Write64(EduDevice.RegDmaCommand, cmd);
        for (int waited = 0; (Read64(EduDevice.RegDmaCommand) & EduDevice.DmaCmdStart) != 0; waited += 10)
        {
            Check(waited < 10_000, "the transfer finishes within 10 s of virtual time");
            KTask.Msleep(10);
        }

        return ((EduDevice)_edu!).LastDmaResult;
    }

    private uint Read32(long offset)
    {
        byte[] b = new byte[4];
        Check(_device!.Read(0, offset, b) == 4, $"a 4-byte read of BAR0 at {Hex((ulong)offset)}");
        return BinaryPrimitives.ReadUInt32LittleEndian(b);
    }

    private ulong Read64(long offset)
    {
        byte[] b = new byte[8];
        Check(_device!.Read(0, offset, b) == 8, $"an 8-byte read of BAR0 at {Hex((ulong)offset)}");
        return BinaryPrimitives.ReadUInt64LittleEndian(b);
    }

    private void Write64(long offset, ulong value)
    {
        byte[] b = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(b, value);
        Check(_device!.Write(0, offset, b) == 8, $"an 8-byte write of BAR0 at {Hex((ulong)offset)}");
    }

    private static byte[] Pattern()
    {
        byte[] b = new byte[DmaBytes];
        byte[] g = Encoding.ASCII.GetBytes(Greeting);
        for (int i = 0; i < b.Length; i++)
        {
            b[i] = g[i % g.Length];
        }

        return b;
    }

    private static string Ascii(byte[] b) => Encoding.ASCII.GetString(b, 0, Greeting.Length).Trim();

    private static string Describe(int rc) => rc == 0 ? "success" : ErrnoExtensions.FromReturn(rc).Describe();

    private void CloseQuietly()
    {
        _device?.Dispose();
        _group?.Dispose();
        _container?.Dispose();
    }
}
