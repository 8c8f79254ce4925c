// Models struct pci_dev (include/linux/pci.h) and the config accessors of
// drivers/pci/access.c (v6.12), together with the function's hardware: its configuration
// space (PciConfigSpace), BARs, interrupts and resets. A virtual device is a subclass that
// adds capabilities and BARs in its constructor and overrides the BAR handlers and
// OnReset; the rest (BAR sizing, decode, MSI/MSI-X, resets, DMA) is shared here.
//
// Lock rule: ConfigLock (the kernel's pci_lock plus the device's register file) protects
// the configuration space, the BAR routing, the MSI-X table and pending bits, and the INTx
// level. It is a spinlock: nothing under it sleeps, and interrupt delivery and DMA happen
// after it is dropped. Routing BARs under it takes PhysMem's lock (ConfigLock → mm zone
// lock). Single-register reads that report state (MsiEnabled, BusMaster, PowerState,
// InterruptPin) may be made without it: they are snapshots, like a CPU's config read.

using System.Globalization;
using Vfio.Kernel;
using Vfio.Platform.Base;

namespace Vfio.Platform.Pci;

/// <summary>A PCI function on the simulated machine: the kernel's pci_dev and the hardware behind it.</summary>
public partial class PciDevice : SimDevice
{
    private bool _sealed;

    /// <summary>
    /// A function at <paramref name="domain"/>:<paramref name="bus"/>:<paramref name="slot"/>.<paramref name="function"/>
    /// with a type 0 header built from <paramref name="identity"/>. <paramref name="pcie"/>
    /// selects a 4 KiB PCI Express configuration space (false: 256 bytes, conventional PCI).
    /// </summary>
    public PciDevice(SimMachine machine, int domain, int bus, int slot, int function, PciIdentity identity, SimDevice? parent = null, Action<SimDevice>? release = null, bool pcie = true)
        : base(machine, FormatName(domain, bus, slot, function), parent ?? machine.PciRoot, release)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(bus, 255);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(slot, 31);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(function, 7);
        Domain = domain;
        BusNumber = bus;
        Slot = slot;
        Function = function;
        Identity = identity;
        ConfigLock = new KSpinLock(machine.Kernel, $"pci[{Name}].config");
        Config = new PciConfigSpace(pcie ? PciRegs.ConfigSpaceSize : PciRegs.StdConfigSpaceSize) { Building = true };
        InitHeader(identity);
        Config.CapturePowerOn();

        // pci_pm_init(): runtime PM forbidden (until a driver allows it), active, enabled.
        Power.InitActiveForbidden();
    }

    /// <summary>The PCI domain (segment).</summary>
    public int Domain { get; }

    /// <summary>The bus number.</summary>
    public int BusNumber { get; }

    /// <summary>PCI_SLOT(devfn).</summary>
    public int Slot { get; }

    /// <summary>PCI_FUNC(devfn).</summary>
    public int Function { get; }

    /// <summary>devfn.</summary>
    public int DevFn => (Slot << 3) | Function;

    /// <summary>The requester id (bus &lt;&lt; 8 | devfn) the function's DMA carries.</summary>
    public int RequesterId => (BusNumber << 8) | DevFn;

    /// <summary>Vendor, device, subsystem ids, class and revision.</summary>
    public PciIdentity Identity { get; protected set; }

    /// <summary>True for a PCI-to-PCI bridge (class 0x0604xx).</summary>
    public bool IsBridge => (Identity.Class >> 8) == 0x0604;

    /// <summary>True for a PCI Express port (root or switch port), which pcieport drives.</summary>
    public virtual bool IsPcieport => false;

    /// <summary>The bound driver as a PCI driver.</summary>
    public PciDriver? PciDriver => Driver as PciDriver;

    /// <summary>The configuration space (hardware registers; kernel code uses <see cref="ReadConfig"/>/<see cref="WriteConfig"/>).</summary>
    public PciConfigSpace Config { get; }

    /// <summary>Serialises configuration and register-file accesses (pci_lock).</summary>
    internal KSpinLock ConfigLock { get; }

    /// <summary>dev-&gt;cfg_size: 4096 for PCI Express, 256 for conventional PCI.</summary>
    public int ConfigSize => Config.Size;

    /// <summary>True when the function has a PCI Express capability (pci_is_pcie).</summary>
    public bool IsPcie => ExpCap != 0;

    /// <summary>dev-&gt;bus: the bus segment the function sits on (null: the root bus of a machine built without topology).</summary>
    public PciBusSegment? OnBus { get; internal set; }

    /// <summary>dev-&gt;subordinate: the bus below a bridge, or null.</summary>
    public PciBusSegment? Subordinate { get; internal set; }

    /// <summary>dev-&gt;multifunction: the header's multifunction bit.</summary>
    public bool IsMultifunction => (Config.GetByte(PciRegs.HeaderType) & PciRegs.HeaderTypeMultifunction) != 0;

    /// <summary>
    /// Quirk DMA aliases (pci_add_dma_alias): devfns on the same bus whose requester id this
    /// function also uses, as some devices do for their DMA.
    /// </summary>
    public IReadOnlyList<int> DmaAliasDevFns => _dmaAliases;

    private readonly List<int> _dmaAliases = [];

    /// <summary>
    /// A quirk that makes the function behave as if ACS were enabled with these flags
    /// (pci_dev_specific_acs_enabled); null when there is no quirk.
    /// </summary>
    public ushort? AcsQuirkFlags { get; set; }

    /// <summary>Set by <see cref="MarkDisconnected"/> (surprise removal): config reads return all-ones.</summary>
    public bool IsDisconnected { get; private set; }

    /// <summary>"DDDD:BB:DD.F".</summary>
    public static string FormatName(int domain, int bus, int slot, int function)
        => string.Create(CultureInfo.InvariantCulture, $"{domain:x4}:{bus:x2}:{slot:x2}.{function}");

    // ---- Construction (virtual devices call these in their constructors).

    /// <summary>Sets the multifunction bit of the header.</summary>
    protected void SetMultifunction(bool value)
    {
        CheckBuilding();
        byte h = Config.GetByte(PciRegs.HeaderType);
        Config.SetByte(PciRegs.HeaderType, (byte)(value ? h | PciRegs.HeaderTypeMultifunction : h & ~PciRegs.HeaderTypeMultifunction));
        RecapturePowerOn();
    }

    /// <summary>Records a quirk DMA alias on the same bus.</summary>
    public void AddDmaAlias(int devfn)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(devfn);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(devfn, 255);
        if (!_dmaAliases.Contains(devfn))
        {
            _dmaAliases.Add(devfn);
        }
    }

    /// <summary>The register file as built is the power-on state that resets return to.</summary>
    protected void RecapturePowerOn()
    {
        Config.CapturePowerOn();
    }

    private void CheckBuilding()
    {
        if (_sealed || IsRegistered)
        {
            throw new InvalidOperationException($"{Name}: the hardware is fixed once the device is on the bus");
        }
    }

    internal void Seal()
    {
        _sealed = true;
        Config.Building = false;
    }

    private void InitHeader(PciIdentity id)
    {
        PciConfigSpace c = Config;
        c.SetWord(PciRegs.VendorId, (ushort)id.Vendor);
        c.SetWord(PciRegs.DeviceId, (ushort)id.Device);
        c.SetByte(PciRegs.RevisionId, id.Revision);
        c.SetByte(PciRegs.ClassProg, (byte)id.Class);
        c.SetWord(PciRegs.ClassDevice, (ushort)(id.Class >> 8));
        c.SetWritableWord(PciRegs.Command, PciRegs.CommandIo | PciRegs.CommandMemory | PciRegs.CommandMaster | PciRegs.CommandSerr | PciRegs.CommandIntxDisable | 0x40 /* parity */);
        c.SetW1cWord(PciRegs.Status, PciRegs.StatusDetectedParity | PciRegs.StatusSigSystemError | PciRegs.StatusRecMasterAbort | PciRegs.StatusRecTargetAbort | PciRegs.StatusSigTargetAbort | 0x100);
        c.SetWritableByte(PciRegs.CacheLineSize, 0xff);
        c.SetWritableByte(PciRegs.LatencyTimer, 0xff);
        c.SetWritableByte(PciRegs.InterruptLine, 0xff);
        if (IsBridge)
        {
            c.SetByte(PciRegs.HeaderType, PciRegs.HeaderTypeBridge);
            c.SetWritableByte(PciRegs.PrimaryBus, 0xff);
            c.SetWritableByte(PciRegs.SecondaryBus, 0xff);
            c.SetWritableByte(PciRegs.SubordinateBus, 0xff);
            c.SetWritableDword(PciRegs.MemoryBase, 0xfff0fff0);
            c.SetWritableDword(PciRegs.PrefMemoryBase, 0xfff0fff0);
            c.SetWritableWord(PciRegs.BridgeControl, 0x0fff);
        }
        else
        {
            c.SetWord(PciRegs.SubsystemVendorId, (ushort)id.SubsystemVendor);
            c.SetWord(PciRegs.SubsystemId, (ushort)id.SubsystemDevice);
        }
    }

    // ---- Kernel-side configuration access (drivers/pci/access.c).

    /// <summary>
    /// pci_read_config_{byte,word,dword}(): <paramref name="size"/> bytes at <paramref name="offset"/>;
    /// all-ones from a disconnected device or beyond its configuration space (PCIBIOS_DEVICE_NOT_FOUND/BAD_REGISTER_NUMBER, as the value reads).
    /// </summary>
    public uint ReadConfig(int offset, int size)
    {
        uint ones = size == 4 ? 0xffffffff : (1u << (8 * size)) - 1;
        if (IsDisconnected || VfAbsent || offset < 0 || offset + size > ConfigSize || (offset & (size - 1)) != 0)
        {
            return ones;
        }

        ConfigLock.Lock();
        try
        {
            return ConfigReadLocked(offset, size);
        }
        finally
        {
            ConfigLock.Unlock();
        }
    }

    /// <summary>
    /// pci_write_config_{byte,word,dword}(): a configuration write with its hardware effects
    /// (BAR decode, MSI/MSI-X enable, power state, FLR, bus reset). A disconnected device or
    /// an access beyond its configuration space is ignored.
    /// </summary>
    public void WriteConfig(int offset, uint value, int size)
    {
        if (IsDisconnected || VfAbsent || offset < 0 || offset + size > ConfigSize || (offset & (size - 1)) != 0)
        {
            return;
        }

        PendingEffects effects;
        ConfigLock.Lock();
        try
        {
            effects = ConfigWriteLocked(offset, value, size);
        }
        finally
        {
            ConfigLock.Unlock();
        }

        RunEffects(effects);
    }

    /// <summary>The hardware's answer to a config read (the lock is held).</summary>
    private uint ConfigReadLocked(int offset, int size)
    {
        ConfigLock.AssertHeld();
        return Config.Read(offset, size);
    }

    /// <summary>
    /// The hardware's handling of a config write (the lock is held): the masks apply, then
    /// the side effects of the touched registers are worked out. Effects that deliver
    /// interrupts or reset other devices run after the lock is dropped.
    /// </summary>
    private PendingEffects ConfigWriteLocked(int offset, uint value, int size)
    {
        ConfigLock.AssertHeld();
        // The side effects are edges: compare the registers before and after the write.
        ushort oldCommand = Config.GetWord(PciRegs.Command);
        ushort oldPmCtrl = _pmCap != 0 ? Config.GetWord(_pmCap + PciRegs.PmCtrl) : (ushort)0;
        ushort oldBridgeCtl = IsBridge ? Config.GetWord(PciRegs.BridgeControl) : (ushort)0;
        bool msiWas = MsiEnabled, msixWas = MsixEnabled;
        Config.Write(offset, value, size);
        var fx = default(PendingEffects);
        if (Overlaps(offset, size, PciRegs.Command, 2))
        {
            CommandChangedLocked(oldCommand, ref fx);
        }

        if (Overlaps(offset, size, PciRegs.BaseAddress0, 24) || Overlaps(offset, size, IsBridge ? PciRegs.RomAddress1 : PciRegs.RomAddress, 4))
        {
            UpdateBarRoutingLocked();
        }

        if (IsBridge && ((oldBridgeCtl ^ Config.GetWord(PciRegs.BridgeControl)) & BridgeCtlVga) != 0)
        {
            fx.VgaForwardingChanged = true;
        }

        InterruptCapabilityWrittenLocked(offset, size, msiWas, msixWas, ref fx);
        PowerOrResetRegisterWrittenLocked(offset, size, oldPmCtrl, oldBridgeCtl, ref fx);
        SriovRegisterWrittenLocked(offset, size, ref fx);
        CapabilityRegisterWrittenLocked(offset, size, ref fx);
        return fx;
    }

    private static bool Overlaps(int offset, int size, int reg, int regSize) => offset < reg + regSize && reg < offset + size;

    /// <summary>Surprise removal: the function stops answering (config reads all-ones, MMIO unrouted).</summary>
    public void MarkDisconnected()
    {
        ConfigLock.Lock();
        IsDisconnected = true;
        UnrouteAllBarsLocked();
        ConfigLock.Unlock();
    }

    /// <summary>The effects of a configuration write to run after the lock is dropped.</summary>
    private struct PendingEffects
    {
        public bool IntxEdge;
        public bool DeliverMsiPending;
        public bool MsixRescan;
        public PciResetKind? Reset;
        public bool SecondaryBusReset;
        public bool SriovChanged; // the VFs follow the PF's SR-IOV capability (PciDevice.Sriov.cs)
        public bool VgaForwardingChanged;
    }

    private void RunEffects(in PendingEffects fx)
    {
        if (fx.Reset is { } kind)
        {
            HardwareReset(kind);
        }

        if (fx.SriovChanged)
        {
            SriovHardwareChanged();
        }

        if (fx.SecondaryBusReset && Subordinate is { } bus)
        {
            bus.ResetBelow();
        }

        if (fx.VgaForwardingChanged && Subordinate is { } below)
        {
            foreach (PciDevice d in below.AllDevicesBelow())
            {
                d.UpdateLegacyVgaRouting();
            }
        }

        if (fx.IntxEdge)
        {
            Machine.Interrupts.IntxRaised(this);
        }

        if (fx.DeliverMsiPending)
        {
            DeliverPendingMsi();
        }

        if (fx.MsixRescan)
        {
            DeliverPendingMsix();
        }
    }
}
