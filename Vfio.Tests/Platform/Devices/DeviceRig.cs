// Helpers for the virtual-device tests: CPU accesses to physical addresses as a driver's
// readl/writel would make them, polling on the virtual clock, and a DMA translator that
// faults outside one window (a stand-in for an IOMMU domain with one mapping).

using System.Buffers.Binary;
using Vfio.Kernel;
using Vfio.Platform;
using Vfio.Platform.Pci;

namespace Vfio.Tests.Platform.Devices;

internal static class Cpu
{
    public static uint Read32(SimMachine m, long addr)
    {
        Span<byte> b = stackalloc byte[4];
        m.Memory.Read(addr, b);
        return BinaryPrimitives.ReadUInt32LittleEndian(b);
    }

    public static ulong Read64(SimMachine m, long addr)
    {
        Span<byte> b = stackalloc byte[8];
        m.Memory.Read(addr, b);
        return BinaryPrimitives.ReadUInt64LittleEndian(b);
    }

    public static void Write32(SimMachine m, long addr, uint value)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, value);
        m.Memory.Write(addr, b);
    }

    public static void Write64(SimMachine m, long addr, ulong value)
    {
        Span<byte> b = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(b, value);
        m.Memory.Write(addr, b);
    }

    public static byte[] ReadBytes(SimMachine m, long addr, int length)
    {
        byte[] b = new byte[length];
        m.Memory.Read(addr, b);
        return b;
    }

    /// <summary>A recognisable byte pattern: no two offsets of one buffer alike within 251 bytes, different per seed.</summary>
    public static byte[] Pattern(int length, int seed)
    {
        byte[] b = new byte[length];
        for (int i = 0; i < length; i++)
        {
            b[i] = (byte)(((i * 7) + (seed * 31) + 1) % 251);
        }

        return b;
    }

    /// <summary>Polls <paramref name="condition"/> with 1 ms sleeps of virtual time, as a driver with msleep does.</summary>
    public static void PollMsleep(Func<bool> condition)
    {
        while (!condition())
        {
            KTask.Msleep(1);
        }
    }

    /// <summary>Programs the function's MSI capability to send <paramref name="vector"/> and enables it.</summary>
    public static void EnableMsi(PciDevice dev, int vector)
    {
        int cap = dev.MsiCap;
        (ulong address, uint data) = InterruptController.ComposeMsiMessage(vector);
        dev.WriteConfig(cap + PciRegs.MsiAddressLo, (uint)address, 4);
        dev.WriteConfig(cap + 8, (uint)(address >> 32), 4);
        dev.WriteConfig(cap + 12, data, 2);
        dev.WriteConfig(cap + PciRegs.MsiFlags, dev.ReadConfig(cap + PciRegs.MsiFlags, 2) | PciRegs.MsiFlagsEnable, 2);
    }
}

/// <summary>DMA that reaches memory only inside [Start, Start + Length): elsewhere it faults with -EFAULT, as an IOMMU would.</summary>
internal sealed class WindowDmaTranslator(SimMachine machine, ulong start, ulong length) : IDmaTranslator
{
    private int _faults;
    private int _calls;

    public ulong Start { get; set; } = start;

    public int Faults => Volatile.Read(ref _faults);

    public int Calls => Volatile.Read(ref _calls);

    public int LastRequesterId { get; private set; } = -1;

    public int DmaRead(PciDevice device, ulong iova, Span<byte> buffer)
    {
        if (!Admit(device, iova, buffer.Length))
        {
            return Errno.EFAULT.Negative();
        }

        machine.Memory.Read((long)iova, buffer);
        return 0;
    }

    public int DmaWrite(PciDevice device, ulong iova, ReadOnlySpan<byte> buffer)
    {
        if (!Admit(device, iova, buffer.Length))
        {
            return Errno.EFAULT.Negative();
        }

        machine.Memory.Write((long)iova, buffer);
        return 0;
    }

    private bool Admit(PciDevice device, ulong iova, int size)
    {
        Interlocked.Increment(ref _calls);
        LastRequesterId = device.RequesterId;
        if (iova >= Start && iova + (ulong)size <= Start + length)
        {
            return true;
        }

        Interlocked.Increment(ref _faults);
        return false;
    }
}
