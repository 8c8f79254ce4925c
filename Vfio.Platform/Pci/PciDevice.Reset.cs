// Models function resets: the hardware side (PCIe FLR through Device Control, the PM
// capability's D3hot->D0 transition without No_Soft_Reset, a bridge's Secondary Bus Reset
// that resets everything below it) and the PCI core side of drivers/pci/pci.c (v6.12):
// pci_init_reset_methods / pci_reset_function / pci_try_reset_function /
// __pci_reset_function_locked with the flr, pm and bus methods probed as the kernel does,
// pci_dev_save_and_disable / pci_dev_restore around the reset, and the reset and
// reset_method sysfs attributes of drivers/pci/pci-sysfs.c.

using Vfio.Kernel;

namespace Vfio.Platform.Pci;

/// <summary>What reset a function went through (hardware view).</summary>
public enum PciResetKind
{
    /// <summary>Function level reset.</summary>
    Flr,

    /// <summary>D3hot to D0 without No_Soft_Reset.</summary>
    Pm,

    /// <summary>Secondary bus reset of the bridge above.</summary>
    Bus,
}

/// <summary>The reset methods of pci_reset_fn_methods[] that this machine models.</summary>
public enum PciResetMethod
{
    /// <summary>"flr": pcie_reset_flr.</summary>
    Flr = 3,

    /// <summary>"pm": pci_pm_reset.</summary>
    Pm = 5,

    /// <summary>"bus": pci_reset_bus_function.</summary>
    Bus = 6,
}

public partial class PciDevice
{
    // The kernel's method table order (device_specific, acpi, flr, af_flr, pm, bus); the first
    // two and af_flr never apply to these functions.
    private static readonly PciResetMethod[] s_methodOrder = [PciResetMethod.Flr, PciResetMethod.Pm, PciResetMethod.Bus];
    private static readonly string[] s_allMethodNames = ["device_specific", "acpi", "flr", "af_flr", "pm", "bus", "cxl_bus"];

    private readonly long[] _resets = new long[3];
    private PciResetMethod[] _resetMethods = [];
    private int _pmCap;
    private int _expCap;
    private int _acsCap;

    // The save area a function reset under the device lock saves into and restores from.
    private PciSavedState? _resetSavedState;

    /// <summary>PCI_DEV_FLAGS_NO_BUS_RESET: the description forbids a bus reset of this function.</summary>
    public bool NoBusReset { get; set; }

    /// <summary>pdev-&gt;reset_methods: the enabled methods in priority order.</summary>
    public IReadOnlyList<PciResetMethod> ResetMethods => _resetMethods;

    /// <summary>How many times the hardware went through a reset of <paramref name="kind"/>.</summary>
    public long ResetCount(PciResetKind kind) => Interlocked.Read(ref _resets[(int)kind]);

    /// <summary>Offset of the PM capability, 0 if none.</summary>
    public int PmCap => _pmCap;

    /// <summary>Offset of the PCI Express capability, 0 if none.</summary>
    public int ExpCap => _expCap;

    /// <summary>Offset of the ACS extended capability, 0 if none.</summary>
    public int AcsCap => _acsCap;

    /// <summary>The current power state (0 = D0 … 3 = D3hot); D0 without a PM capability.</summary>
    public int PowerState => _pmCap == 0 ? 0 : Config.GetWord(_pmCap + PciRegs.PmCtrl) & PciRegs.PmCtrlStateMask;

    /// <summary>Device internal state after a reset of <paramref name="kind"/> (registers, engines, pending work).</summary>
    protected virtual void OnReset(PciResetKind kind)
    {
    }

    // ---- Construction.

    /// <summary>Adds a PM capability (D0 and D3hot; <paramref name="noSoftReset"/> set means D3hot→D0 keeps state).</summary>
    protected int AddPmCapability(bool noSoftReset)
    {
        CheckBuilding();
        int cap = Config.AddCapability(PciRegs.CapIdPm, PciRegs.PmSizeof);
        Config.SetWord(cap + PciRegs.PmPmc, 0x0003); // version 3
        Config.SetWord(cap + PciRegs.PmCtrl, noSoftReset ? PciRegs.PmCtrlNoSoftReset : (ushort)0);
        Config.SetWritableWord(cap + PciRegs.PmCtrl, PciRegs.PmCtrlStateMask | 0x0100 /* PME enable */);
        _pmCap = cap;
        RecapturePowerOn();
        return cap;
    }

    /// <summary>Adds a PCI Express capability of port type <paramref name="type"/>; <paramref name="flr"/> advertises function level reset.</summary>
    protected int AddExpCapability(int type, bool flr)
    {
        CheckBuilding();
        if (ConfigSize < PciRegs.ConfigSpaceSize)
        {
            throw new InvalidOperationException($"{Name}: a PCI Express capability needs a 4 KiB configuration space");
        }

        int cap = Config.AddCapability(PciRegs.CapIdExp, PciRegs.ExpCapSizeofV2);
        Config.SetWord(cap + PciRegs.ExpFlags, (ushort)(0x2 | (type << 4)));
        Config.SetDword(cap + PciRegs.ExpDevCap, flr ? PciRegs.ExpDevCapFlr : 0);
        Config.SetWritableWord(cap + PciRegs.ExpDevCtl, (ushort)(0x7fff | (flr ? PciRegs.ExpDevCtlBcrFlr : 0)));
        Config.SetW1cWord(cap + PciRegs.ExpDevSta, 0x000f);
        _expCap = cap;
        RecapturePowerOn();
        return cap;
    }

    /// <summary>Adds an ACS extended capability with <paramref name="capability"/> bits, <paramref name="control"/> enabled at power-on.</summary>
    protected int AddAcsCapability(ushort capability, ushort control)
    {
        CheckBuilding();
        int cap = Config.AddExtCapability(PciRegs.ExtCapIdAcs, 1, PciRegs.AcsSizeof);
        Config.SetWord(cap + PciRegs.AcsCap, capability);
        Config.SetWord(cap + PciRegs.AcsCtrl, (ushort)(control & capability));
        Config.SetWritableWord(cap + PciRegs.AcsCtrl, capability);
        _acsCap = cap;
        RecapturePowerOn();
        return cap;
    }

    // ---- Hardware.

    private void PowerOrResetRegisterWrittenLocked(int offset, int size, ushort oldPmCtrl, ushort oldBridgeCtl, ref PendingEffects fx)
    {
        ConfigLock.AssertHeld();
        // Initiate Function Level Reset (writable only when the function has FLR) reads as zero.
        if (_expCap != 0 && Overlaps(offset, size, _expCap + PciRegs.ExpDevCtl, 2))
        {
            ushort ctl = Config.GetWord(_expCap + PciRegs.ExpDevCtl);
            if ((ctl & PciRegs.ExpDevCtlBcrFlr) != 0)
            {
                Config.SetWord(_expCap + PciRegs.ExpDevCtl, (ushort)(ctl & ~PciRegs.ExpDevCtlBcrFlr));
                fx.Reset = PciResetKind.Flr;
            }
        }

        if (_pmCap != 0 && Overlaps(offset, size, _pmCap + PciRegs.PmCtrl, 2))
        {
            ushort ctl = Config.GetWord(_pmCap + PciRegs.PmCtrl);
            int before = oldPmCtrl & PciRegs.PmCtrlStateMask;
            int state = ctl & PciRegs.PmCtrlStateMask;
            if (state is 1 or 2)
            {
                // Only D0 and D3hot are implemented: other states are ignored.
                Config.SetWord(_pmCap + PciRegs.PmCtrl, (ushort)((ctl & ~PciRegs.PmCtrlStateMask) | before));
                state = before;
            }

            if (before == 3 && state == 0 && (ctl & PciRegs.PmCtrlNoSoftReset) == 0)
            {
                fx.Reset = PciResetKind.Pm;
            }

            if (state != before)
            {
                UpdateBarRoutingLocked();
            }
        }

        // Secondary Bus Reset acts on its rising edge.
        if (IsBridge && Overlaps(offset, size, PciRegs.BridgeControl, 2)
            && (oldBridgeCtl & PciRegs.BridgeCtlBusReset) == 0 && (Config.GetWord(PciRegs.BridgeControl) & PciRegs.BridgeCtlBusReset) != 0)
        {
            fx.SecondaryBusReset = true;
        }
    }

    /// <summary>
    /// The function goes through a reset: registers back to power-on values (BARs unassigned,
    /// decode and bus mastering off, MSI/MSI-X off with the table masked, D0), INTx released,
    /// and the device's own state reset.
    /// </summary>
    internal void HardwareReset(PciResetKind kind)
    {
        ConfigLock.Lock();
        try
        {
            Config.RestorePowerOn();
            _intxAsserted = false;
            ResetMsixTable();
            UpdateBarRoutingLocked();
        }
        finally
        {
            ConfigLock.Unlock();
        }

        Interlocked.Increment(ref _resets[(int)kind]);
        SriovHardwareChanged(); // a PF's reset clears VF Enable: its VFs vanish
        OnReset(kind);

        // The device's own INTx level after its reset (a completion racing the reset may have raised it).
        SyncIntx();
    }

    // ---- PCI core (drivers/pci/pci.c).

    /// <summary>pci_init_reset_methods(): every method that probes as supported, in the kernel's order.</summary>
    public void InitResetMethods()
    {
        var list = new List<PciResetMethod>(3);
        foreach (PciResetMethod m in s_methodOrder)
        {
            if (ProbeResetMethod(m) == 0)
            {
                list.Add(m);
            }
        }

        _resetMethods = [.. list];
    }

    /// <summary>pci_reset_supported().</summary>
    public bool ResetSupported => _resetMethods.Length > 0;

    /// <summary>The method's probe: 0 when it can reset this function, -ENOTTY otherwise.</summary>
    public int ProbeResetMethod(PciResetMethod method) => method switch
    {
        // pcie_reset_flr: needs the FLR bit of Device Capabilities.
        PciResetMethod.Flr => _expCap != 0 && (Config.GetDword(_expCap + PciRegs.ExpDevCap) & PciRegs.ExpDevCapFlr) != 0 ? 0 : Errno.ENOTTY.Negative(),

        // pci_pm_reset: a PM capability without No_Soft_Reset.
        PciResetMethod.Pm => _pmCap != 0 && (Config.GetWord(_pmCap + PciRegs.PmCtrl) & PciRegs.PmCtrlNoSoftReset) == 0 ? 0 : Errno.ENOTTY.Negative(),

        // pci_parent_bus_reset: not on the root bus, not a bridge, a bridge above, alone on its bus.
        PciResetMethod.Bus => ParentBusResetPossible() ? 0 : Errno.ENOTTY.Negative(),
        _ => Errno.ENOTTY.Negative(),
    };

    private bool ParentBusResetPossible()
    {
        if (OnBus is not { Self: { } bridge } bus || Subordinate is not null || NoBusReset)
        {
            return false;
        }

        return !bus.HasOtherDevice(this);
    }

    /// <summary>pci_reset_function(): device_lock (and the bridge's), save and disable, reset by the first method that works, restore. 0 or -ENOTTY.</summary>
    /// <remarks>From Linux 6.10 (<see cref="PlatformFeatures.ResetFunctionLocksUpstreamBridge"/>) the upstream bridge's device_lock is taken first, so the bridge's configuration stays put during the reset.</remarks>
    public int ResetFunction()
    {
        if (!ResetSupported)
        {
            return Errno.ENOTTY.Negative();
        }

        PciDevice? bridge = Machine.Kernel.Profile.Has(PlatformFeatures.ResetFunctionLocksUpstreamBridge) ? OnBus?.Self : null;
        bridge?.Lock();
        Lock();
        try
        {
            return ResetWithSaveRestoreLocked();
        }
        finally
        {
            Unlock();
            bridge?.Unlock();
        }
    }

    /// <summary>pci_try_reset_function(): as <see cref="ResetFunction"/> but -EAGAIN when device_lock is taken.</summary>
    public int TryResetFunction()
    {
        if (!ResetSupported)
        {
            return Errno.ENOTTY.Negative();
        }

        if (!Mutex.TryLock())
        {
            return Errno.EAGAIN.Negative();
        }

        try
        {
            return ResetWithSaveRestoreLocked();
        }
        finally
        {
            Unlock();
        }
    }

    /// <summary>pci_reset_function_locked(): the caller holds device_lock.</summary>
    public int ResetFunctionLocked()
    {
        AssertLockHeld();
        return ResetSupported ? ResetWithSaveRestoreLocked() : Errno.ENOTTY.Negative();
    }

    private int ResetWithSaveRestoreLocked()
    {
        AssertLockHeld();
        // pci_dev_save_and_disable(): the function goes to D0 before its state is saved, so
        // that the restore brings it back in D0 and decoding.
        SetFullPowerState();
        PciSavedState saved = SaveStateForResetLocked();
        WriteConfig(PciRegs.Command, PciRegs.CommandIntxDisable, 2);
        int rc = ResetFunctionNoSaveLocked();
        RestoreState(saved);
        return rc;
    }

    /// <summary>
    /// pci_set_power_state(pdev, PCI_D0) → pci_set_full_power_state(): D3hot to D0 with the PM
    /// capability's delay; when that transition reset the function (no No_Soft_Reset),
    /// pci_restore_bars() programs the assigned BARs again. Nothing to do in D0.
    /// </summary>
    public void SetFullPowerState()
    {
        if (_pmCap == 0 || PowerState == 0)
        {
            return;
        }

        uint csr = ReadConfig(_pmCap + PciRegs.PmCtrl, 2);
        bool needRestore = (csr & PciRegs.PmCtrlStateMask) == 3 && (csr & PciRegs.PmCtrlNoSoftReset) == 0;
        WriteConfig(_pmCap + PciRegs.PmCtrl, csr & ~(uint)PciRegs.PmCtrlStateMask, 2);
        Msleep(10);
        if (!needRestore)
        {
            return;
        }

        foreach (PciBar? bar in _bars)
        {
            if (bar is null || bar.Index == RomBarIndex || bar.ResourceStart == 0)
            {
                continue;
            }

            int reg = PciRegs.BaseAddress0 + (4 * bar.Index);
            WriteConfig(reg, (uint)bar.ResourceStart | bar.FlagBits, 4);
            if (bar.Kind == PciBarKind.Memory64)
            {
                WriteConfig(reg + 4, (uint)((ulong)bar.ResourceStart >> 32), 4);
            }
        }
    }

    /// <summary>__pci_reset_function_locked(): tries each enabled method in order; -ENOTTY moves on, another error stops.</summary>
    public int ResetFunctionNoSaveLocked()
    {
        AssertLockHeld();
        foreach (PciResetMethod m in _resetMethods)
        {
            int rc = DoResetMethod(m);
            if (rc == 0)
            {
                return 0;
            }

            if (rc != Errno.ENOTTY.Negative())
            {
                return rc;
            }
        }

        return Errno.ENOTTY.Negative();
    }

    private int DoResetMethod(PciResetMethod method)
    {
        int probe = ProbeResetMethod(method);
        if (probe != 0)
        {
            return probe;
        }

        switch (method)
        {
            case PciResetMethod.Flr:
                WriteConfig(_expCap + PciRegs.ExpDevCtl, ReadConfig(_expCap + PciRegs.ExpDevCtl, 2) | PciRegs.ExpDevCtlBcrFlr, 2);
                Msleep(100);
                return 0;
            case PciResetMethod.Pm:
                // pci_pm_reset works from D0 only.
                if (PowerState != 0)
                {
                    return Errno.EINVAL.Negative();
                }

                uint csr = ReadConfig(_pmCap + PciRegs.PmCtrl, 2) & ~(uint)PciRegs.PmCtrlStateMask;
                WriteConfig(_pmCap + PciRegs.PmCtrl, csr | 3, 2);
                Msleep(10);
                WriteConfig(_pmCap + PciRegs.PmCtrl, csr, 2);
                Msleep(10);
                return 0;
            default:
                return OnBus!.Self!.SecondaryBusReset();
        }
    }

    /// <summary>pci_bridge_secondary_bus_reset(): pulses Secondary Bus Reset on this bridge and waits for the bus to settle.</summary>
    public int SecondaryBusReset()
    {
        if (!IsBridge)
        {
            return Errno.ENOTTY.Negative();
        }

        uint ctl = ReadConfig(PciRegs.BridgeControl, 2);
        WriteConfig(PciRegs.BridgeControl, ctl | PciRegs.BridgeCtlBusReset, 2);
        Msleep(2);
        WriteConfig(PciRegs.BridgeControl, ctl & ~(uint)PciRegs.BridgeCtlBusReset, 2);
        Msleep(100);
        return 0;
    }

    private void Msleep(int ms)
    {
        _ = Machine.Kernel.CurrentTask;
        KTask.Msleep(ms);
    }

    /// <summary>
    /// pci_save_state() + pci_store_saved_state(): a copy of the function's configuration
    /// (and MSI-X table) that <see cref="LoadAndRestoreState"/> writes back, as vfio-pci keeps
    /// the state it found at open and restores at release.
    /// </summary>
    public PciSavedState StoreSavedState() => SaveState();

    /// <summary>pci_load_saved_state() + pci_restore_state(): writes <paramref name="state"/> back to the function.</summary>
    public void LoadAndRestoreState(PciSavedState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        RestoreState(state);
    }

    /// <summary>pci_save_state(): the configuration registers and the MSI-X table.</summary>
    private PciSavedState SaveState()
    {
        ConfigLock.Lock();
        try
        {
            return new PciSavedState(Config.SnapshotRegisters(), (byte[])_msixTable.Clone());
        }
        finally
        {
            ConfigLock.Unlock();
        }
    }

    /// <summary>
    /// pci_save_state() into the function's own save area, as the kernel's
    /// saved_config_space lives in struct pci_dev: a reset under the device lock reuses it,
    /// so a steady VFIO_DEVICE_RESET allocates nothing.
    /// </summary>
    private PciSavedState SaveStateForResetLocked()
    {
        AssertLockHeld();
        ConfigLock.Lock();
        try
        {
            PciSavedState? s = _resetSavedState;
            byte[] config = Config.SnapshotRegisters(s?.Config);
            byte[] msix = s is not null && s.MsixTable.Length == _msixTable.Length ? s.MsixTable : new byte[_msixTable.Length];
            _msixTable.CopyTo(msix, 0);
            if (s is null || !ReferenceEquals(config, s.Config) || !ReferenceEquals(msix, s.MsixTable))
            {
                s = _resetSavedState = new PciSavedState(config, msix);
            }

            return s;
        }
        finally
        {
            ConfigLock.Unlock();
        }
    }

    /// <summary>pci_restore_state().</summary>
    private void RestoreState(PciSavedState s)
    {
        // BARs and the rest of the header first, the command register last (as
        // pci_restore_config_space does), then the capabilities; the status word is skipped
        // (its bits are write-1-to-clear).
        for (int off = PciRegs.BaseAddress0; off < 0x40; off += 4)
        {
            WriteConfig(off, BitConverter.ToUInt32(s.Config, off), 4);
        }

        WriteConfig(PciRegs.CacheLineSize, BitConverter.ToUInt32(s.Config, PciRegs.CacheLineSize), 4);
        for (int off = 0x40; off < ConfigSize; off += 4)
        {
            // Not VPD: pci_restore_state has no VPD step, and rewriting its address register
            // would start a transfer with whatever the data register holds.
            if (Config.WritableDword(off) != 0 && !IsSriovCapDword(off) && !IsVpdCapDword(off))
            {
                WriteConfig(off, BitConverter.ToUInt32(s.Config, off), 4);
            }
        }

        ConfigLock.Lock();
        s.MsixTable.CopyTo(_msixTable, 0);
        ConfigLock.Unlock();
        WriteConfig(PciRegs.Command, BitConverter.ToUInt16(s.Config, PciRegs.Command), 2);
        RestoreIovState(); // pci_restore_iov_state(): from the PCI core's state, last
    }

    // ---- sysfs: reset and reset_method.

    /// <summary>reset_store(): "1" resets the function (pci_reset_function); anything else is -EINVAL.</summary>
    internal long ResetStore(string buf)
    {
        if (!Kstrtox.Kstrtoul(buf, out ulong v) || v != 1)
        {
            return Errno.EINVAL.Negative();
        }

        int rc = ResetFunction();
        return rc < 0 ? rc : buf.Length;
    }

    /// <summary>
    /// kstrtoul(buf, 0, &amp;val): an optional '+', then "0x" and hex digits, "0" and octal
    /// digits, or decimal digits, then at most one newline; no other whitespace.
    /// </summary>

    /// <summary>reset_method_show(): the enabled methods separated by spaces, then a newline; nothing when none.</summary>
    internal string ResetMethodShow()
        => _resetMethods.Length == 0 ? string.Empty : string.Join(' ', _resetMethods.Select(MethodName)) + "\n";

    /// <summary>
    /// reset_method_store(): "" disables every method, "default" re-probes, otherwise a
    /// space-separated list; an unknown or unsupported name fails with -EINVAL and changes nothing.
    /// </summary>
    internal long ResetMethodStore(string buf)
    {
        if (buf.Length >= 4096 - 1)
        {
            return Errno.EINVAL.Negative();
        }

        string s = buf.EndsWith('\n') ? buf[..^1] : buf;
        if (s.Length == 0)
        {
            Machine.Kernel.Log.Warn($"pci {Name}: All device reset methods disabled by user");
            _resetMethods = [];
            return buf.Length;
        }

        if (s == "default")
        {
            InitResetMethods();
            return buf.Length;
        }

        var list = new List<PciResetMethod>(3);
        foreach (string raw in s.Split(' '))
        {
            string name = raw.Trim();
            if (name.Length == 0)
            {
                continue;
            }

            int idx = Array.IndexOf(s_allMethodNames, name);
            if (idx < 0)
            {
                Machine.Kernel.Log.Err($"pci {Name}: Invalid reset method '{name}'");
                return Errno.EINVAL.Negative();
            }

            if (!Enum.IsDefined((PciResetMethod)(idx + 1)) || ProbeResetMethod((PciResetMethod)(idx + 1)) != 0)
            {
                Machine.Kernel.Log.Err($"pci {Name}: Unsupported reset method '{name}'");
                return Errno.EINVAL.Negative();
            }

            if (list.Count == s_allMethodNames.Length)
            {
                Machine.Kernel.Log.Err($"pci {Name}: Too many reset methods");
                return Errno.EINVAL.Negative();
            }

            list.Add((PciResetMethod)(idx + 1));
        }

        _resetMethods = [.. list];
        return buf.Length;
    }

    /// <summary>The sysfs name of <paramref name="m"/>.</summary>
    public static string MethodName(PciResetMethod m) => s_allMethodNames[(int)m - 1];
}

/// <summary>struct pci_saved_state: a stored copy of a function's configuration, opaque to drivers.</summary>
public sealed class PciSavedState
{
    internal PciSavedState(byte[] config, byte[] msixTable)
    {
        Config = config;
        MsixTable = msixTable;
    }

    internal byte[] Config { get; }

    internal byte[] MsixTable { get; }
}
