// Models the BARs of a function: the registers as hardware implements them (size mask,
// type bits, the all-ones sizing write of drivers/pci/probe.c __pci_read_base), memory
// decode gated by the command register, and the kernel's view of the assigned resources
// (pci_resource_start/len, include/linux/pci.h) (v6.12).
//
// A BAR is routed into the physical address map while memory decode is on and its address
// is a valid placement (not zero, not the sizing pattern, inside the address space);
// programming two BARs over each other routes neither of the later ones (a decode conflict).
// The ROM's fixed contents live in PciDevice.Rom.cs, the legacy VGA ranges in PciDevice.Vga.cs.

using Vfio.Kernel;
using Vfio.Platform.Mm;

namespace Vfio.Platform.Pci;

/// <summary>The address space and width of a BAR.</summary>
public enum PciBarKind
{
    /// <summary>32-bit memory.</summary>
    Memory32,

    /// <summary>64-bit memory (takes two BAR registers).</summary>
    Memory64,

    /// <summary>I/O ports (recorded and sized; port I/O is not routed on this machine).</summary>
    Io,
}

/// <summary>One implemented BAR (or the expansion ROM, index 6).</summary>
public sealed class PciBar
{
    internal PciBar(PciDevice owner, int index, long size, PciBarKind kind, bool prefetchable)
    {
        Owner = owner;
        Index = index;
        Size = size;
        Kind = kind;
        Prefetchable = prefetchable;
        Window = new BarWindow(this);
    }

    /// <summary>The function.</summary>
    public PciDevice Owner { get; }

    /// <summary>0..5, or 6 for the ROM.</summary>
    public int Index { get; }

    /// <summary>Size in bytes, a power of two.</summary>
    public long Size { get; }

    /// <summary>Address space and width.</summary>
    public PciBarKind Kind { get; }

    /// <summary>The prefetchable bit.</summary>
    public bool Prefetchable { get; }

    /// <summary>Where the BAR is routed now (-1 when it is not decoded).</summary>
    public long RoutedAt { get; internal set; } = -1;

    /// <summary>The kernel's resource: where firmware assigned the BAR (pci_resource_start), 0 if unassigned.</summary>
    public long ResourceStart { get; internal set; }

    internal BarWindow Window { get; }

    /// <summary>The low flag bits of the BAR register.</summary>
    public uint FlagBits => Index == PciDevice.RomBarIndex ? 0 : Kind switch
    {
        PciBarKind.Io => PciRegs.BarSpaceIo,
        PciBarKind.Memory64 => PciRegs.BarMemType64 | (Prefetchable ? PciRegs.BarMemPrefetch : 0),
        _ => Prefetchable ? PciRegs.BarMemPrefetch : 0,
    };

    /// <summary>Routes CPU accesses in the BAR to the device.</summary>
    internal sealed class BarWindow(PciBar bar) : IMmioHandler
    {
        public void Read(long offset, Span<byte> data) => bar.Owner.BarAccess(bar.Index, offset, data);

        public void Write(long offset, ReadOnlySpan<byte> data) => bar.Owner.BarAccess(bar.Index, offset, data);
    }
}

public partial class PciDevice
{
    /// <summary>PCI_ROM_RESOURCE.</summary>
    public const int RomBarIndex = 6;

    private readonly PciBar?[] _bars = new PciBar?[7];
    private readonly string?[] _regionOwners = new string?[7];

    /// <summary>The implemented BARs by index (0..5, 6 = ROM); the upper half of a 64-bit BAR is null.</summary>
    public IReadOnlyList<PciBar?> Bars => _bars;

    /// <summary>
    /// pci_request_region(): reserves BAR <paramref name="index"/>'s resource for
    /// <paramref name="owner"/>. 0, or -EBUSY when it is already reserved (by anyone).
    /// </summary>
    public int RequestRegion(int index, string owner)
    {
        ArgumentNullException.ThrowIfNull(owner);
        return Interlocked.CompareExchange(ref _regionOwners[index], owner, null) is null ? 0 : Errno.EBUSY.Negative();
    }

    /// <summary>pci_release_region(): drops <paramref name="owner"/>'s reservation of BAR <paramref name="index"/>.</summary>
    public void ReleaseRegion(int index, string owner) => Interlocked.CompareExchange(ref _regionOwners[index], null, owner);

    /// <summary>Who reserved BAR <paramref name="index"/> (the name in /proc/iomem), or null.</summary>
    public string? RegionOwner(int index) => Volatile.Read(ref _regionOwners[index]);

    /// <summary>pci_resource_len(): the size of BAR <paramref name="index"/>, 0 if not implemented.</summary>
    public long ResourceLength(int index) => index is >= 0 and <= RomBarIndex ? _bars[index]?.Size ?? 0 : 0;

    /// <summary>pci_resource_start().</summary>
    public long ResourceStart(int index) => index is >= 0 and <= RomBarIndex ? _bars[index]?.ResourceStart ?? 0 : 0;

    /// <summary>
    /// Adds BAR <paramref name="index"/> of <paramref name="size"/> bytes (a power of two, at
    /// least 16 for memory and 4 for I/O, 2 KiB+ for the ROM).
    /// </summary>
    protected PciBar AddBar(int index, long size, PciBarKind kind, bool prefetchable = false)
    {
        CheckBuilding();
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(index, IsBridge ? 1 : 5);
        if (size <= 0 || (size & (size - 1)) != 0 || size < (kind == PciBarKind.Io ? 4 : 16))
        {
            throw new ArgumentOutOfRangeException(nameof(size), size, "a BAR's size is a power of two (at least 16 bytes for memory, 4 for I/O)");
        }

        if (kind != PciBarKind.Memory64 && size > 1L << 31)
        {
            throw new ArgumentOutOfRangeException(nameof(size), size, "a 32-bit BAR is at most 2 GiB");
        }

        if (_bars[index] is not null || (index > 0 && _bars[index - 1]?.Kind == PciBarKind.Memory64))
        {
            throw new InvalidOperationException($"{Name}: BAR {index} is already in use");
        }

        if (kind == PciBarKind.Memory64 && (index == 5 || _bars[index + 1] is not null))
        {
            throw new InvalidOperationException($"{Name}: a 64-bit BAR at {index} needs BAR {index + 1} free");
        }

        var bar = new PciBar(this, index, size, kind, prefetchable);
        _bars[index] = bar;
        int reg = PciRegs.BaseAddress0 + (4 * index);
        Config.SetDword(reg, bar.FlagBits);
        uint lowMask = kind == PciBarKind.Io ? ~(uint)(size - 1) & 0xfffffffc : ~(uint)(size - 1) & 0xfffffff0;
        Config.SetWritableDword(reg, size > uint.MaxValue ? 0 : lowMask);
        if (kind == PciBarKind.Memory64)
        {
            Config.SetWritableDword(reg + 4, (uint)(~(ulong)(size - 1) >> 32));
        }

        RecapturePowerOn();
        return bar;
    }

    /// <summary>Adds an expansion ROM of <paramref name="size"/> bytes (its content reads through <see cref="BarRead"/> with index 6).</summary>
    protected PciBar AddRom(long size)
    {
        CheckBuilding();
        if (size < 2048 || (size & (size - 1)) != 0 || size > 1L << 24)
        {
            throw new ArgumentOutOfRangeException(nameof(size), size, "a ROM is a power of two between 2 KiB and 16 MiB");
        }

        var bar = new PciBar(this, RomBarIndex, size, PciBarKind.Memory32, false);
        _bars[RomBarIndex] = bar;
        int reg = IsBridge ? PciRegs.RomAddress1 : PciRegs.RomAddress;
        Config.SetWritableDword(reg, (~(uint)(size - 1) & 0xfffff800) | PciRegs.RomEnable);
        RecapturePowerOn();
        return bar;
    }

    /// <summary>A CPU read or write of BAR <paramref name="bar"/> at <paramref name="offset"/> (MSI-X structures first).</summary>
    internal void BarAccess(int bar, long offset, Span<byte> data)
    {
        Machine.Kernel.Cost.Charge(CostOp.MmioAccess);
        if ((bar == RomBarIndex && RomContentRead(offset, data)) || MsixClaimsRead(bar, offset, data))
        {
            return;
        }

        BarRead(bar, offset, data);
    }

    internal void BarAccess(int bar, long offset, ReadOnlySpan<byte> data)
    {
        Machine.Kernel.Cost.Charge(CostOp.MmioWrite);
        if ((bar == RomBarIndex && _romContent is not null) || MsixClaimsWrite(bar, offset, data))
        {
            return;
        }

        BarWrite(bar, offset, data);
    }

    /// <summary>The device's answer to a CPU read of its BAR <paramref name="bar"/> (default: zeros).</summary>
    protected virtual void BarRead(int bar, long offset, Span<byte> data) => data.Clear();

    /// <summary>The device's handling of a CPU write to its BAR <paramref name="bar"/> (default: ignored).</summary>
    protected virtual void BarWrite(int bar, long offset, ReadOnlySpan<byte> data)
    {
    }

    /// <summary>Firmware assignment: programs BAR <paramref name="index"/> with <paramref name="address"/> and records the resource.</summary>
    internal void AssignBar(int index, long address)
    {
        PciBar bar = _bars[index] ?? throw new InvalidOperationException($"{Name}: no BAR {index}");
        bar.ResourceStart = address;
        ConfigLock.Lock();
        try
        {
            WriteBarRegisterLocked(bar, address);
            UpdateBarRoutingLocked();
        }
        finally
        {
            ConfigLock.Unlock();
        }

    }

    private void WriteBarRegisterLocked(PciBar bar, long address)
    {
        ConfigLock.AssertHeld();
        if (bar.Index == RomBarIndex)
        {
            int rom = IsBridge ? PciRegs.RomAddress1 : PciRegs.RomAddress;
            Config.SetDword(rom, ((uint)address & 0xfffff800) | (Config.GetDword(rom) & PciRegs.RomEnable));
            return;
        }

        int reg = PciRegs.BaseAddress0 + (4 * bar.Index);
        uint low = bar.Kind == PciBarKind.Io ? ~0x3u : ~0xfu;
        Config.SetDword(reg, ((uint)address & low) | bar.FlagBits);
        if (bar.Kind == PciBarKind.Memory64)
        {
            Config.SetDword(reg + 4, (uint)((ulong)address >> 32));
        }
    }

    /// <summary>The address BAR <paramref name="bar"/> decodes now, or -1 when it does not decode.</summary>
    private long DecodedAddressLocked(PciBar bar)
    {
        ConfigLock.AssertHeld();
        if (IsVirtfn)
        {
            return VfDecodedAddressLocked(bar); // a VF's BARs follow its PF's VF MSE (PciDevice.Sriov.cs)
        }

        ushort cmd = Config.GetWord(PciRegs.Command);
        if (bar.Kind == PciBarKind.Io)
        {
            // I/O decode: the COMMAND.IO bit and a placement inside the 64 Ki port space.
            if ((cmd & PciRegs.CommandIo) == 0 || IsDisconnected || PowerState != 0)
            {
                return -1;
            }

            long port = Config.GetDword(PciRegs.BaseAddress0 + (4 * bar.Index)) & 0xfffffffcu;
            return port == 0 || port + bar.Size > IoPortSpace.Size ? -1 : port;
        }

        if ((cmd & PciRegs.CommandMemory) == 0 || IsDisconnected || PowerState != 0)
        {
            return -1;
        }

        long addr;
        long limit;
        if (bar.Index == RomBarIndex)
        {
            uint rom = Config.GetDword(IsBridge ? PciRegs.RomAddress1 : PciRegs.RomAddress);
            if ((rom & PciRegs.RomEnable) == 0)
            {
                return -1;
            }

            addr = rom & 0xfffff800 & ~(bar.Size - 1);
            limit = 1L << 32;
        }
        else
        {
            int reg = PciRegs.BaseAddress0 + (4 * bar.Index);
            ulong raw = Config.GetDword(reg) & 0xfffffff0u;
            if (bar.Kind == PciBarKind.Memory64)
            {
                raw |= (ulong)Config.GetDword(reg + 4) << 32;
                limit = 1L << 52;
            }
            else
            {
                limit = 1L << 32;
            }

            if (raw >= (ulong)limit)
            {
                return -1;
            }

            addr = (long)raw;
        }

        // Zero and the all-ones sizing pattern are not placements.
        long sizingPattern = bar.Kind == PciBarKind.Memory64 ? limit - bar.Size : (1L << 32) - bar.Size;
        return addr == 0 || addr >= sizingPattern || addr + bar.Size > limit ? -1 : addr;
    }

    /// <summary>Re-routes every BAR (and the legacy VGA ranges, PciDevice.Vga.cs) after a write to a BAR or the command register.</summary>
    private protected void UpdateBarRoutingLocked()
    {
        ConfigLock.AssertHeld();
        UpdateLegacyVgaRoutingLocked();
        foreach (PciBar? bar in _bars)
        {
            if (bar is null)
            {
                continue;
            }

            long want = DecodedAddressLocked(bar);
            if (want == bar.RoutedAt)
            {
                continue;
            }

            UnrouteLocked(bar);
            bool routed = want >= 0 && (bar.Kind == PciBarKind.Io
                ? Machine.IoPorts.TryRegister((int)want, (int)bar.Size, bar.Window)
                : Machine.Memory.TryRegisterMmio(want, bar.Size, bar.Window));
            if (routed)
            {
                bar.RoutedAt = want;
            }
        }
    }

    /// <summary>Takes <paramref name="bar"/> out of the memory or I/O port map it is routed in.</summary>
    private void UnrouteLocked(PciBar bar)
    {
        ConfigLock.AssertHeld();
        if (bar.RoutedAt < 0)
        {
            return;
        }

        if (bar.Kind == PciBarKind.Io)
        {
            Machine.IoPorts.Unregister((int)bar.RoutedAt);
        }
        else
        {
            Machine.Memory.UnregisterMmio(bar.RoutedAt);
        }

        bar.RoutedAt = -1;
    }

    private void UnrouteAllBarsLocked()
    {
        ConfigLock.AssertHeld();
        UpdateLegacyVgaRoutingLocked();
        foreach (PciBar? bar in _bars)
        {
            if (bar is not null)
            {
                UnrouteLocked(bar);
            }
        }
    }

    /// <summary>Removes the BARs from the address map for good (device removal).</summary>
    internal void UnrouteAllBars()
    {
        ConfigLock.Lock();
        UnrouteAllBarsLocked();
        ConfigLock.Unlock();
    }
}
