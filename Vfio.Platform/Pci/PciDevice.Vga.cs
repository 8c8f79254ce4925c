// Legacy VGA decode of a VGA-class function (PCI-to-PCI Bridge Architecture 1.2 §12.1.1,
// the VGA Enable bit; drivers/pci/pci.c pci_set_vga_state, v6.12): a function marked with
// AddLegacyVga answers the legacy I/O ports 0x3b0–0x3bb and 0x3c0–0x3df while its
// COMMAND.IO is set, and the memory window 0xa0000–0xbffff while COMMAND.MEM is set — but
// only when every bridge above it forwards VGA cycles (Bridge Control bit 3, VGA Enable).
// Firmware here leaves VGA Enable clear on every bridge, so nothing decodes the legacy
// ranges until the VGA arbiter routes them (VgaArbiter, pci_set_vga_state). Two functions
// decoding at once is a decode conflict: the second is not routed.
//
// Lock rule: routing runs under the function's ConfigLock (as BAR routing does); the
// bridges' Bridge Control words are read as snapshots, and a write to one re-routes every
// function below it after the bridge's lock is dropped.

using Vfio.Platform.Mm;

namespace Vfio.Platform.Pci;

public partial class PciDevice
{
    /// <summary>PCI_BRIDGE_CTL_VGA: the bridge forwards the legacy VGA ranges.</summary>
    public const ushort BridgeCtlVga = 0x08;

    /// <summary>The legacy VGA I/O ranges: [0x3b0, 0x3bc) and [0x3c0, 0x3e0).</summary>
    public static readonly (int Start, int Length)[] LegacyVgaPorts = [(0x3b0, 12), (0x3c0, 32)];

    private LegacyVgaWindow? _legacyVga;
    private bool _legacyIoRouted;
    private bool _legacyMemRouted;

    /// <summary>True for a function of the VGA display class (class 0x0300xx), which the VGA arbiter tracks.</summary>
    public bool IsVga => (Identity.Class >> 8) == 0x0300;

    /// <summary>True while the function decodes the legacy VGA I/O ports.</summary>
    public bool LegacyVgaIoDecoded => Volatile.Read(ref _legacyIoRouted);

    /// <summary>True while the function decodes the legacy VGA memory window.</summary>
    public bool LegacyVgaMemoryDecoded => Volatile.Read(ref _legacyMemRouted);

    /// <summary>Marks the function as decoding the legacy VGA ranges (answered by <see cref="LegacyVgaRead"/> and <see cref="LegacyVgaWrite"/>).</summary>
    protected void AddLegacyVga()
    {
        CheckBuilding();
        _legacyVga = new LegacyVgaWindow(this);
    }

    /// <summary>A CPU read of a legacy VGA port (<paramref name="io"/>; <paramref name="address"/> is the port) or of the memory window (the physical address).</summary>
    protected virtual void LegacyVgaRead(bool io, long address, Span<byte> data) => data.Fill(0xff);

    /// <summary>A CPU write of a legacy VGA port or of the memory window; see <see cref="LegacyVgaRead"/>.</summary>
    protected virtual void LegacyVgaWrite(bool io, long address, ReadOnlySpan<byte> data)
    {
    }

    /// <summary>True when every bridge between the root and this function forwards VGA cycles.</summary>
    public bool VgaForwardedToHere()
    {
        for (PciBusSegment? bus = OnBus; bus is not null; bus = bus.Parent)
        {
            if (bus.Self is { } bridge && (bridge.Config.GetWord(PciRegs.BridgeControl) & BridgeCtlVga) == 0)
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>Re-evaluates the legacy routing (after a bridge above changed its VGA Enable).</summary>
    internal void UpdateLegacyVgaRouting()
    {
        if (_legacyVga is null)
        {
            return;
        }

        ConfigLock.Lock();
        try
        {
            UpdateLegacyVgaRoutingLocked();
        }
        finally
        {
            ConfigLock.Unlock();
        }
    }

    /// <summary>Routes or unroutes the legacy ranges from COMMAND, the power state and the bridges' VGA Enable.</summary>
    private void UpdateLegacyVgaRoutingLocked()
    {
        ConfigLock.AssertHeld();
        if (_legacyVga is not { } w)
        {
            return;
        }

        ushort cmd = Config.GetWord(PciRegs.Command);
        bool live = !IsDisconnected && PowerState == 0 && VgaForwardedToHere();
        bool io = live && (cmd & PciRegs.CommandIo) != 0;
        bool mem = live && (cmd & PciRegs.CommandMemory) != 0;
        if (io != _legacyIoRouted)
        {
            if (io)
            {
                int done = 0;
                while (done < LegacyVgaPorts.Length && Machine.IoPorts.TryRegister(LegacyVgaPorts[done].Start, LegacyVgaPorts[done].Length, w.Ports[done]))
                {
                    done++;
                }

                if (done < LegacyVgaPorts.Length)
                {
                    UnregisterLegacyPorts(done);
                    io = false;
                }
            }
            else
            {
                UnregisterLegacyPorts(LegacyVgaPorts.Length);
            }

            Volatile.Write(ref _legacyIoRouted, io);
        }

        if (mem != _legacyMemRouted)
        {
            if (mem)
            {
                mem = Machine.Memory.TryRegisterMmio(PhysMem.LegacyVgaStart, PhysMem.LegacyVgaEnd - PhysMem.LegacyVgaStart, w.Memory);
            }
            else
            {
                Machine.Memory.UnregisterMmio(PhysMem.LegacyVgaStart);
            }

            Volatile.Write(ref _legacyMemRouted, mem);
        }
    }

    private void UnregisterLegacyPorts(int count)
    {
        for (int i = 0; i < count; i++)
        {
            Machine.IoPorts.Unregister(LegacyVgaPorts[i].Start);
        }
    }

    /// <summary>The handlers the legacy ranges are routed to: one per port range and one for the memory window.</summary>
    private sealed class LegacyVgaWindow(PciDevice owner)
    {
        public readonly IMmioHandler[] Ports = [new Handler(owner, io: true, LegacyVgaPorts[0].Start), new Handler(owner, io: true, LegacyVgaPorts[1].Start)];
        public readonly IMmioHandler Memory = new Handler(owner, io: false, PhysMem.LegacyVgaStart);

        // A range's offsets count from its start; the device sees absolute ports and addresses.
        private sealed class Handler(PciDevice owner, bool io, long start) : IMmioHandler
        {
            public void Read(long offset, Span<byte> data) => owner.LegacyVgaRead(io, start + offset, data);

            public void Write(long offset, ReadOnlySpan<byte> data) => owner.LegacyVgaWrite(io, start + offset, data);
        }
    }
}
