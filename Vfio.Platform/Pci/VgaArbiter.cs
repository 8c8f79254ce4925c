// Models drivers/pci/vgaarb.c (v6.12) as far as vfio-pci uses it: one arbiter per machine
// tracks every VGA-class function (vga_device: which legacy and normal resources it decodes,
// which it owns — has routed to itself — and how many times each is locked). vga_get()
// locks resources for a function, first taking the legacy ranges away from any other VGA
// function that owns them (waiting while that one holds them locked) and routing them to
// this one with pci_set_vga_state(): its COMMAND.IO/MEM bits and VGA Enable on every bridge
// above. Ownership stays after vga_put(); it moves only when another function asks.
// vga_client_register / vga_set_legacy_decoding record what a driver says its device decodes.
// A function is added on first use with what firmware left it (vga_arbiter_add_pci_device):
// it owns the legacy ranges only if it decodes them and every bridge above forwards VGA —
// on the default machine firmware leaves VGA Enable clear, so nobody owns them at boot.
//
// Lock rule: vga_lock (a spinlock) protects every vga_device; config writes of
// pci_set_vga_state run under it (ConfigLock nests inside); waiters sleep on vga_wait_queue
// without it.

using Vfio.Kernel;

namespace Vfio.Platform.Pci;

/// <summary>VGA_RSRC_*: the resources the arbiter hands out.</summary>
[Flags]
public enum VgaResource
{
    /// <summary>VGA_RSRC_NONE.</summary>
    None = 0,

    /// <summary>VGA_RSRC_LEGACY_IO: ports 0x3b0–0x3bb, 0x3c0–0x3df.</summary>
    LegacyIo = 0x01,

    /// <summary>VGA_RSRC_LEGACY_MEM: 0xa0000–0xbffff.</summary>
    LegacyMem = 0x02,

    /// <summary>VGA_RSRC_NORMAL_IO: the function's I/O BARs.</summary>
    NormalIo = 0x04,

    /// <summary>VGA_RSRC_NORMAL_MEM: the function's memory BARs.</summary>
    NormalMem = 0x08,

    /// <summary>VGA_RSRC_LEGACY_MASK.</summary>
    LegacyMask = LegacyIo | LegacyMem,
}

/// <summary>The VGA arbiter of one machine (vgaarb).</summary>
public sealed class VgaArbiter
{
    private static readonly LockClass s_lockClass = LockClass.Get("vga_lock");
    private readonly SimMachine _machine;

    // Protects _devices and every VgaDevice's fields (vga_lock).
    private readonly KSpinLock _lock;
    private readonly List<VgaDeviceState> _devices = [];
    private readonly WaitQueue _wait;

    internal VgaArbiter(SimMachine machine)
    {
        _machine = machine;
        _lock = new KSpinLock(machine.Kernel, "vga_lock", s_lockClass);
        _wait = new WaitQueue(machine.Kernel, "vga_wait_queue");
    }

    /// <summary>
    /// vga_get(pdev, rsrc, interruptible): locks <paramref name="rsrc"/> for
    /// <paramref name="pdev"/>, routing the legacy ranges to it first. 0; -ENODEV for a
    /// function that is not VGA; -EINTR when a signal interrupts an interruptible wait.
    /// </summary>
    public int Get(PciDevice pdev, VgaResource rsrc, bool interruptible)
    {
        ArgumentNullException.ThrowIfNull(pdev);
        while (true)
        {
            VgaDeviceState? conflict;
            _lock.Lock();
            try
            {
                if (FindLocked(pdev) is not { } dev)
                {
                    return ErrorReason.Fail(Errno.ENODEV, $"vga_get: {pdev.Name} is not a VGA device the arbiter knows");
                }

                conflict = TryGetLocked(dev, rsrc);
            }
            finally
            {
                _lock.Unlock();
            }

            if (conflict is null)
            {
                return 0;
            }

            // Sleep until the holder puts what we want (vga_put wakes every waiter).
            VgaResource want = rsrc;
            bool Released() => !Holds(conflict, want);
            if (interruptible)
            {
                if (_wait.WaitEventInterruptible(Released) != 0)
                {
                    return ErrorReason.Fail(Errno.EINTR, $"vga_get_interruptible: a signal interrupted the wait for {conflict.Pdev.Name} to release the VGA resources");
                }
            }
            else
            {
                _wait.WaitEvent(Released);
            }
        }
    }

    /// <summary>vga_put(pdev, rsrc): drops one lock of each resource and wakes waiters.</summary>
    public void Put(PciDevice pdev, VgaResource rsrc)
    {
        ArgumentNullException.ThrowIfNull(pdev);
        _lock.Lock();
        try
        {
            if (FindLocked(pdev) is not { } dev)
            {
                return;
            }

            if ((rsrc & VgaResource.LegacyIo) != 0 && dev.IoLocks > 0)
            {
                dev.IoLocks--;
            }

            if ((rsrc & VgaResource.LegacyMem) != 0 && dev.MemLocks > 0)
            {
                dev.MemLocks--;
            }
        }
        finally
        {
            _lock.Unlock();
        }

        _wait.WakeUp();
    }

    /// <summary>vga_client_register(): the driver's set_decode callback, called with single_vga when the VGA count changes.</summary>
    public int ClientRegister(PciDevice pdev, Func<PciDevice, bool, VgaResource>? setDecode)
    {
        ArgumentNullException.ThrowIfNull(pdev);
        _lock.Lock();
        try
        {
            if (FindLocked(pdev) is not { } dev)
            {
                return Errno.ENODEV.Negative();
            }

            dev.SetDecode = setDecode;
            return 0;
        }
        finally
        {
            _lock.Unlock();
        }
    }

    /// <summary>vga_set_legacy_decoding(): what the function decodes; ownership of what it no longer decodes is dropped.</summary>
    public void SetLegacyDecoding(PciDevice pdev, VgaResource decodes)
    {
        ArgumentNullException.ThrowIfNull(pdev);
        _lock.Lock();
        try
        {
            if (FindLocked(pdev) is { } dev)
            {
                dev.Decodes = decodes;
                dev.Owns &= decodes;
            }
        }
        finally
        {
            _lock.Unlock();
        }
    }

    /// <summary>What the arbiter knows of <paramref name="pdev"/>: (decodes, owns, legacy I/O locks, legacy memory locks); null when it is not VGA.</summary>
    public (VgaResource Decodes, VgaResource Owns, int IoLocks, int MemLocks)? State(PciDevice pdev)
    {
        ArgumentNullException.ThrowIfNull(pdev);
        _lock.Lock();
        try
        {
            return FindLocked(pdev) is { } d ? (d.Decodes, d.Owns, d.IoLocks, d.MemLocks) : null;
        }
        finally
        {
            _lock.Unlock();
        }
    }

    private bool Holds(VgaDeviceState d, VgaResource want)
    {
        _lock.Lock();
        try
        {
            return ((want & VgaResource.LegacyIo) != 0 && d.IoLocks > 0) || ((want & VgaResource.LegacyMem) != 0 && d.MemLocks > 0);
        }
        finally
        {
            _lock.Unlock();
        }
    }

    /// <summary>vgadev_find(), adding a VGA function on first sight (vga_arbiter_add_pci_device).</summary>
    private VgaDeviceState? FindLocked(PciDevice pdev)
    {
        _lock.AssertHeld();
        foreach (VgaDeviceState d in _devices)
        {
            if (ReferenceEquals(d.Pdev, pdev))
            {
                return d;
            }
        }

        if (!pdev.IsVga)
        {
            return null;
        }

        var dev = new VgaDeviceState(pdev);
        uint cmd = pdev.ReadConfig(PciRegs.Command, 2);
        if ((cmd & PciRegs.CommandIo) != 0)
        {
            dev.Owns |= VgaResource.LegacyIo;
        }

        if ((cmd & PciRegs.CommandMemory) != 0)
        {
            dev.Owns |= VgaResource.LegacyMem;
        }

        if (!pdev.VgaForwardedToHere())
        {
            dev.Owns = VgaResource.None;
        }

        _devices.Add(dev);
        return dev;
    }

    /// <summary>__vga_tryget(): null when the resources are locked for <paramref name="dev"/>, else the function holding them.</summary>
    private VgaDeviceState? TryGetLocked(VgaDeviceState dev, VgaResource rsrc)
    {
        _lock.AssertHeld();

        // Normal resources imply their legacy counterparts.
        if ((rsrc & VgaResource.NormalIo) != 0)
        {
            rsrc |= VgaResource.LegacyIo;
        }

        if ((rsrc & VgaResource.NormalMem) != 0)
        {
            rsrc |= VgaResource.LegacyMem;
        }

        VgaResource wants = rsrc & ~dev.Owns;
        VgaResource legacyWants = wants & VgaResource.LegacyMask;
        if (legacyWants != 0)
        {
            foreach (VgaDeviceState other in _devices)
            {
                if (ReferenceEquals(other, dev) || (other.Owns & legacyWants) == 0)
                {
                    continue;
                }

                if (((legacyWants & VgaResource.LegacyIo) != 0 && other.IoLocks > 0) || ((legacyWants & VgaResource.LegacyMem) != 0 && other.MemLocks > 0))
                {
                    return other;
                }

                // Take the ranges away: its decode bits off, and the bridges that lead only to it stop forwarding.
                VgaResource taken = other.Owns & legacyWants;
                SetVgaState(other.Pdev, false, CommandBits(taken), changeBridges: true, keepFor: dev.Pdev);
                other.Owns &= ~taken;
            }
        }

        if (wants != 0)
        {
            SetVgaState(dev.Pdev, true, CommandBits(wants), changeBridges: legacyWants != 0, keepFor: null);
            dev.Owns |= wants;
        }

        if ((rsrc & VgaResource.LegacyIo) != 0)
        {
            dev.IoLocks++;
        }

        if ((rsrc & VgaResource.LegacyMem) != 0)
        {
            dev.MemLocks++;
        }

        return null;
    }

    private static ushort CommandBits(VgaResource r)
        => (ushort)(((r & (VgaResource.LegacyMem | VgaResource.NormalMem)) != 0 ? PciRegs.CommandMemory : 0)
                  | ((r & (VgaResource.LegacyIo | VgaResource.NormalIo)) != 0 ? PciRegs.CommandIo : 0));

    /// <summary>
    /// pci_set_vga_state(): the function's COMMAND decode bits on or off and, with
    /// <paramref name="changeBridges"/>, VGA Enable on every bridge above it (when turning
    /// off, not on the bridges that also lead to <paramref name="keepFor"/>).
    /// </summary>
    private static void SetVgaState(PciDevice pdev, bool decode, ushort commandBits, bool changeBridges, PciDevice? keepFor)
    {
        if (commandBits != 0)
        {
            uint cmd = pdev.ReadConfig(PciRegs.Command, 2);
            uint want = decode ? cmd | commandBits : cmd & ~(uint)commandBits;
            if (want != cmd)
            {
                pdev.WriteConfig(PciRegs.Command, want, 2);
            }
        }

        if (!changeBridges)
        {
            return;
        }

        for (PciBusSegment? bus = pdev.OnBus; bus is not null; bus = bus.Parent)
        {
            if (bus.Self is not { } bridge || (!decode && keepFor is not null && Leads(bridge, keepFor)))
            {
                continue;
            }

            uint ctl = bridge.ReadConfig(PciRegs.BridgeControl, 2);
            uint want = decode ? ctl | PciDevice.BridgeCtlVga : ctl & ~(uint)PciDevice.BridgeCtlVga;
            if (want != ctl)
            {
                bridge.WriteConfig(PciRegs.BridgeControl, want, 2);
            }
        }
    }

    private static bool Leads(PciDevice bridge, PciDevice to)
    {
        for (PciBusSegment? bus = to.OnBus; bus is not null; bus = bus.Parent)
        {
            if (ReferenceEquals(bus.Self, bridge))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>struct vga_device.</summary>
    private sealed class VgaDeviceState(PciDevice pdev)
    {
        public PciDevice Pdev { get; } = pdev;

        public VgaResource Decodes { get; set; } = VgaResource.LegacyIo | VgaResource.LegacyMem | VgaResource.NormalIo | VgaResource.NormalMem;

        public VgaResource Owns { get; set; }

        public int IoLocks { get; set; }

        public int MemLocks { get; set; }

        public Func<PciDevice, bool, VgaResource>? SetDecode { get; set; }
    }
}
