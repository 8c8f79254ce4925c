// Models struct vfio_pci_core_device and the device life cycle of
// drivers/vfio/pci/vfio_pci_core.c (v6.12): registration with its device-set choice and
// runtime PM allowed (the idle function suspends), enable on first open (runtime resume,
// reset, saved state, INTx masking support, the virtual config space, MSI-X location, the
// VGA region, per-BAR mmap capability), disable on last close (low power left, restore,
// reset if the device lock can be taken, then a bus reset of the whole set when nobody uses
// it, then the runtime PM count dropped), the REQ channel the unregister wait uses, and name
// matching for GET_DEVICE_FD (with the vf_token option; the SR-IOV side is in Sriov.cs).
// Runtime PM itself is in RuntimePm.cs.
//
// Lock rules (order left to right):
//   dev_set->lock (VfioDeviceSet.Lock) → memory_lock → vconfig lock
//   dev_set->lock → memory_lock of every device of the set (try) → PCI device locks (try,
//   bridge above the bus first from v6.11) — the hot reset and pci_reset_bus (HotReset.cs)
//   mmap_lock → vma_lock → memory_lock → i_mmap lock → page-table lock (Mmap.cs)
//   dev_set->lock → igate → memory_lock → irqlock (Intrs.cs)
//   PF device_lock → memory_lock → VF device_lock → VF probe (sriov_configure, Sriov.cs)
//   dev_set->lock → vf_token->lock (a VF's open and close, Sriov.cs)
//   * dev_set->lock: open/close (Enable/Disable), NeedsReset, the dev_set reset.
//   * igate (vdev->igate): the ERR and REQ eventfds and every SET_IRQS action.
//   * memory_lock (vdev->memory_lock, a rwsem): whether the device decodes memory. BAR
//     accesses hold it for read; COMMAND writes and resets hold it for write.
//   * the vconfig lock: the virtual header bytes (Config.cs).
//   * the PCI device_lock is only ever try-locked here (the kernel's reset paths), since
//     unbind holds it while it waits for the user to close the device.
//   * runtime PM calls that may resume or suspend (and so run the callbacks, which take
//     memory_lock and igate) are made with neither held (RuntimePm.cs).

using System.Globalization;
using Vfio.Core;
using Vfio.Kernel;
using Vfio.Platform;
using Vfio.Platform.Fs;
using Vfio.Platform.Pci;

namespace Vfio.Pci;

/// <summary>struct vfio_pci_core_device: a PCI function bound to vfio-pci.</summary>
public sealed partial class VfioPciCoreDevice : VfioDevice
{
    /// <summary>PAGE_SIZE.</summary>
    private const long PageSize = 4096;

    private static readonly LockClass s_igateClass = LockClass.Get("vfio_pci_core_device.igate");
    private static readonly LockClass s_memoryLockClass = LockClass.Get("vfio_pci_core_device.memory_lock");
    private static readonly LockClass s_vconfigClass = LockClass.Get("vfio_pci_core_device.vconfig");

    private readonly bool[] _barMmapSupported = new bool[PciDevice.RomBarIndex];

    // Protects _errTrigger and _reqTrigger (vdev->igate).
    private KMutex _igate = null!;

    // vdev->err_trigger and vdev->req_trigger (igate).
    private EventFdContext? _errTrigger;
    private EventFdContext? _reqTrigger;

    // pci_store_saved_state() at enable, restored at disable (dev_set->lock).
    private PciSavedState? _savedState;

    // pci_enable_device()'s enable_cnt (dev_set->lock).
    private int _enableCount;

    internal VfioPciCoreDevice()
    {
    }

    /// <summary>vdev-&gt;pdev.</summary>
    public PciDevice Pdev { get; private set; } = null!;

    internal VfioPciDriver Driver { get; private set; } = null!;

    /// <summary>vdev-&gt;memory_lock: held for read by BAR accesses, for write by whatever changes memory decode.</summary>
    internal RwSemaphore MemoryLock { get; private set; } = null!;

    /// <summary>vdev-&gt;reset_works: the function reset at open succeeded.</summary>
    public bool ResetWorks { get; private set; }

    /// <summary>vdev-&gt;needs_reset: set at close; cleared by a successful function or bus reset.</summary>
    public bool NeedsReset { get; private set; }

    /// <summary>vdev-&gt;pci_2_3: DisINTx masking works on this function.</summary>
    public bool Pci23 { get; private set; }

    /// <summary>vdev-&gt;nointx: INTx is hidden because the device's masking is known to be broken.</summary>
    public bool NoIntx { get; private set; }

    /// <summary>vdev-&gt;msix_bar (0xff: no MSI-X).</summary>
    internal int MsixBar { get; private set; } = 0xff;

    internal long MsixOffset { get; private set; }

    internal long MsixSize { get; private set; }

    /// <summary>vdev-&gt;err_trigger (under igate).</summary>
    internal EventFdContext? ErrTrigger => _errTrigger;

    /// <summary>vdev-&gt;req_trigger (under igate).</summary>
    internal EventFdContext? ReqTrigger => _reqTrigger;

    internal KMutex Igate => _igate;

    private string Pname => Pdev.Name;

    /// <inheritdoc/>
    protected override string KernelTypeName => "vfio_pci_core_device";

    /// <summary>vfio_pci_core_init_dev(): the locks; called by the core inside vfio_alloc_device.</summary>
    internal void InitDev(VfioPciDriver driver)
    {
        Driver = driver;
        Pdev = (PciDevice)Dev;
        SimKernel k = Core.Kernel;
        _igate = new KMutex(k, $"vfio-pci[{Dev.Name}].igate", s_igateClass);
        MemoryLock = new RwSemaphore(k, $"vfio-pci[{Dev.Name}].memory_lock", s_memoryLockClass);
        _vconfigLock = new KMutex(k, $"vfio-pci[{Dev.Name}].vconfig", s_vconfigClass);
        InitMmap();
        InitIntrs(k);
        InitIoeventfds(k);
    }

    /// <summary>
    /// vfio_pci_core_release_dev() (v6.1+), or vfio_pci_core_uninit_device() in the ≤v6.0
    /// order (<see cref="VfioDesign.TeardownBeforeLeavingDeviceSet"/>): mutex_destroy of igate,
    /// ioeventfds_lock and vma_lock — poisoned for KASAN, so a set walk that still finds this
    /// device and takes its vma_lock is reported — and the driver's allocations freed.
    /// </summary>
    internal void ReleaseDev()
    {
        string function = Core.Design.TeardownBeforeLeavingDeviceSet ? "vfio_pci_core_uninit_device" : "vfio_pci_core_release_dev";
        Kasan kasan = Core.Kernel.Kasan;
        string of = $"of vfio_pci_core_device {Name} ({Pname}), destroyed";
        kasan.Free(_igate, $"igate {of}", function);
        kasan.Free(_ioeventfdsLock, $"ioeventfds_lock {of}", function);
        kasan.Free(_vmaLock, $"vma_lock {of}", function);
        _savedState = null;
    }

    // ---- Registration (vfio_pci_core_register_device / vfio_pci_core_unregister_device).

    /// <summary>
    /// vfio_pci_core_register_device(): refuses bridges, joins the device set that one reset
    /// covers, puts the function in D0 and registers it with vfio. 0 or -errno.
    /// </summary>
    /// <remarks>
    /// Device sets: a function on a root bus is a set of its own; otherwise the key would be
    /// the hotplug slot when a slot reset is possible — this machine has no hotplug slots,
    /// so the key is the <see cref="PciBusSegment"/> the function sits on (every function a
    /// secondary bus reset touches shares one dev_set lock; a PF and its VFs share one). A PF
    /// with VFs enabled is refused (-EBUSY): its VFs may be in use and cannot be captured.
    /// </remarks>
    internal int RegisterDevice(VfioPciDriver driver)
    {
        if (Warn.On(Core.Kernel, Pdev.DriverData != this, $"vfio-pci: {Pname} drvdata is not its vfio_pci_core_device"))
        {
            return Errno.EINVAL.Negative();
        }

        int hdr = (int)Pdev.ReadConfig(PciRegs.HeaderType, 1) & 0x7f;
        if (hdr != PciRegs.HeaderTypeNormal)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"vfio-pci probe: {Pname} has header type {hdr} (vfio-pci takes only normal type-0 functions, not bridges)");
        }

        if (Pdev.NumVfs != 0)
        {
            Core.Kernel.Log.Warn($"{VfioPciDriver.DriverName} {Pname}: Cannot bind to PF with SR-IOV enabled");
            return ErrorReason.Fail(Errno.EBUSY, $"vfio-pci probe: {Pname} has {Pdev.NumVfs} VFs enabled; write 0 to its sriov_numvfs first");
        }

        PciBusSegment? bus = Pdev.OnBus;
        int ret = bus is null || bus.IsRoot ? AssignDeviceSet(this) : AssignDeviceSet(bus);
        if (ret != 0)
        {
            return ret;
        }

        ret = VfInit();
        if (ret != 0)
        {
            return ret;
        }

        VgaInit();

        // The PCI core leaves the power state unknown after boot or another driver; only D0
        // leads anywhere from there, so go to D0 before runtime PM may take it to D3hot.
        SetPowerStateD0();
        RegisterRuntimePm();
        ret = RegisterGroupDev();
        if (ret != 0)
        {
            UnregisterRuntimePm();
            VgaUninit();
            VfUninit();
        }

        return ret;
    }

    /// <summary>
    /// vfio_pci_core_unregister_device(): SR-IOV off first (removing the VFs, each of which
    /// may wait for its own user), then the wait until every fd of the device is closed, then
    /// the VF token and bus notifier go, the device leaves the VGA arbiter, and runtime PM is
    /// forbidden (the function resumes).
    /// </summary>
    internal void UnregisterDevice()
    {
        SriovConfigure(0);
        UnregisterGroupDev();
        VfUninit();
        VgaUninit();
        UnregisterRuntimePm();
    }

    // ---- Enable / disable (first open / last close).

    /// <summary>
    /// vfio_pci_core_enable(): resume the function and count the open (unless
    /// disable_idle_d3; a failed resume fails the open with its errno), clear bus master,
    /// enable, try a function reset (-EAGAIN when the device lock is taken fails the open),
    /// save the state, decide INTx masking, build the virtual config space and note the MSI-X
    /// table. The caller holds dev_set-&gt;lock.
    /// </summary>
    internal int Enable()
    {
        DevSet!.Lock.AssertHeld();
        int ret;
        if (!DisableIdleD3)
        {
            ret = Pdev.Power.ResumeAndGet();
            if (ret < 0)
            {
                return ErrorReason.Fail(ErrnoExtensions.FromReturn(ret), $"VFIO_GROUP_GET_DEVICE_FD: {Pname} cannot be runtime-resumed ({ErrnoExtensions.FromReturn(ret).Describe()})");
            }
        }

        ClearMaster();
        EnableDevice();

        ret = Pdev.TryResetFunction();
        if (ret == Errno.EAGAIN.Negative())
        {
            DisableDevice();
            if (!DisableIdleD3)
            {
                Pdev.Power.Put();
            }

            return ErrorReason.Fail(Errno.EAGAIN, $"VFIO_GROUP_GET_DEVICE_FD: the device lock of {Pname} is held (an unbind or reset is in progress); try again");
        }

        ResetWorks = ret == 0;
        _savedState = Pdev.StoreSavedState();

        Pci23 = false;
        NoIntx = false;
        if (!Driver.Options.NoIntxMask)
        {
            if (IsNoIntxDevice(Pdev.Identity))
            {
                Core.Kernel.Log.Info($"{VfioPciDriver.DriverName} {Pname}: Masking broken INTx support");
                NoIntx = true;
                SetIntxDisable(true);
            }
            else
            {
                Pci23 = IntxMaskSupported();
            }
        }

        if (Pci23)
        {
            SetIntxDisable(false);
        }

        ConfigInit();
        EnableVga();

        int msix = Pdev.MsixCap;
        if (msix != 0)
        {
            uint flags = Pdev.ReadConfig(msix + PciRegs.MsixFlags, 2);
            uint table = Pdev.ReadConfig(msix + PciRegs.MsixTable, 4);
            MsixBar = (int)(table & PciRegs.MsixTableBir);
            MsixOffset = table & ~PciRegs.MsixTableBir;
            MsixSize = ((flags & PciRegs.MsixFlagsQsize) + 1) * PciRegs.MsixEntrySize;
        }
        else
        {
            MsixBar = 0xff;
        }

        return 0;
    }

    /// <summary>vfio_pci_core_finish_enable(): which BARs user space could mmap.</summary>
    internal void FinishEnable()
    {
        ProbeMmaps();
        VfTokenGetUser();
    }

    /// <summary>vfio_pci_core_close_device(): disable, then drop the ERR and REQ eventfds.</summary>
    internal void CloseDevice()
    {
        VfTokenPutUser();
        Disable();
        ReleaseErrReqTriggers();
    }

    /// <summary>
    /// vfio_pci_core_disable(): low power left (the wake-up eventfd released, not signalled)
    /// and the function resumed, D0, no bus mastering, the virtual config space freed,
    /// needs_reset set; the saved state is reloaded, COMMAND set to INTX_DISABLE, the
    /// function reset if that worked at open and the device lock can be try-locked (then
    /// needs_reset clears), the state restored, the device disabled; then the set-wide
    /// bus reset is tried, and the open's runtime PM count dropped (the idle function
    /// suspends). The caller holds dev_set-&gt;lock.
    /// </summary>
    private void Disable()
    {
        DevSet!.Lock.AssertHeld();

        // Low power may be engaged (the count dropped, maybe suspended): take the count back
        // first, then make sure the function is up before touching it.
        RuntimePmExit();
        Pdev.Power.Resume();
        SetPowerStateD0();
        _pmSave = null;
        ClearMaster();
        DisableIrqsForClose();
        ReleaseIoeventfds();
        ConfigFree();
        NeedsReset = true;

        // The kernel's "Couldn't reload saved state" path needs a failed allocation at
        // enable; pci_store_saved_state() cannot fail here, so there is always a state.
        PciSavedState saved = _savedState ?? throw new InvalidOperationException($"vfio-pci: {Pname} is disabled without the state saved when it was enabled");
        _savedState = null;
        Pdev.WriteConfig(PciRegs.Command, PciRegs.CommandIntxDisable, 2);

        // Not the "try" reset interface: that one would save and restore the current
        // (just cleared) state over the one reloaded above.
        if (ResetWorks && Pdev.Mutex.TryLock())
        {
            try
            {
                if (Pdev.ResetFunctionNoSaveLocked() == 0)
                {
                    NeedsReset = false;
                }
            }
            finally
            {
                Pdev.Unlock();
            }
        }

        Pdev.LoadAndRestoreState(saved);

        ReleaseBarmaps();
        DisableDevice();
        DevSetTryResetLocked(DevSet, DisableIdleD3);
        if (!DisableIdleD3)
        {
            Pdev.Power.Put();
        }
    }

    /// <summary>
    /// vfio_pci_dev_set_try_reset(): when no other device of the set is open, one of them
    /// needs a reset, and every function the bus reset touches is in the set, resume and
    /// count every function (unless disable_idle_d3; a failed resume skips the reset), reset
    /// the bus, clear needs_reset on all of them if it worked, and drop the counts again.
    /// </summary>
    private static void DevSetTryResetLocked(VfioDeviceSet set, bool disableIdleD3)
    {
        set.Lock.AssertHeld();

        // The closing device still counts 1 here.
        if (set.OpenCountLocked() > 1)
        {
            return;
        }

        bool needsReset = false;
        foreach (VfioDevice d in set.DevicesLocked)
        {
            needsReset |= d is VfioPciCoreDevice { NeedsReset: true };
        }

        if (!needsReset || ResettableLocked(set) is not { } pdev)
        {
            return;
        }

        // Some functions of the set may be runtime-suspended in D3hot.
        if (!disableIdleD3 && DevSetPmRuntimeGetLocked(set) != 0)
        {
            return;
        }

        if (PciResetBus(pdev) == 0)
        {
            foreach (VfioDevice d in set.DevicesLocked)
            {
                if (d is VfioPciCoreDevice cur)
                {
                    cur.NeedsReset = false;
                }
            }
        }

        if (!disableIdleD3)
        {
            DevSetPmRuntimePutLocked(set);
        }
    }

    /// <summary>vfio_pci_dev_set_resettable(): the function to pass to pci_reset_bus when every function it resets is in the set, else null.</summary>
    private static PciDevice? ResettableLocked(VfioDeviceSet set)
    {
        set.Lock.AssertHeld();
        if (set.DevicesLocked.Count == 0 || set.DevicesLocked[0] is not VfioPciCoreDevice first)
        {
            return null;
        }

        PciDevice pdev = first.Pdev;
        if (pdev.OnBus is not { } bus || ProbeResetBus(bus) != 0)
        {
            return null;
        }

        foreach (PciDevice other in bus.AllDevicesBelow())
        {
            if (set.FindDeviceLocked(other) is null)
            {
                return null;
            }
        }

        return pdev;
    }

    /// <summary>
    /// pci_probe_reset_bus() (pci_bus_reset with PCI_RESET_PROBE): a bus with a bridge above
    /// it, that bridge and no function on the bus or below flagged against bus resets. 0 or
    /// -ENOTTY.
    /// </summary>
    internal static int ProbeResetBus(PciBusSegment bus)
    {
        if (bus.Self is not { } bridge || bridge.NoBusReset)
        {
            return Errno.ENOTTY.Negative();
        }

        foreach (PciDevice d in bus.AllDevicesBelow())
        {
            if (d.NoBusReset)
            {
                return Errno.ENOTTY.Negative();
            }
        }

        return 0;
    }

    /// <summary>
    /// pci_reset_bus() without hotplug slots (__pci_reset_bus): probe; pci_bus_trylock, which
    /// fails -EAGAIN with nothing done when any device lock is held; save and disable every
    /// function on the bus and below (D0, the state saved, COMMAND = INTX_DISABLE, as
    /// pci_dev_save_and_disable does); pulse Secondary Bus Reset on the bridge; restore every
    /// function; unlock bottom up.
    /// </summary>
    internal static int PciResetBus(PciDevice pdev)
    {
        PciBusSegment bus = pdev.OnBus!;
        int rc = ProbeResetBus(bus);
        if (rc != 0)
        {
            return rc;
        }

        var locked = new List<PciDevice>();
        if (!BusTrylock(bus, pdev.Machine.Kernel.Profile.Has(PlatformFeatures.BusResetLocksBridge), locked))
        {
            UnlockDevices(locked);
            return Errno.EAGAIN.Negative();
        }

        try
        {
            var functions = new List<PciDevice>(bus.AllDevicesBelow());
            var states = new PciSavedState[functions.Count];
            for (int i = 0; i < functions.Count; i++)
            {
                functions[i].SetFullPowerState();
                states[i] = functions[i].StoreSavedState();
                functions[i].WriteConfig(PciRegs.Command, PciRegs.CommandIntxDisable, 2);
            }

            rc = bus.Self!.SecondaryBusReset();
            for (int i = 0; i < functions.Count; i++)
            {
                functions[i].LoadAndRestoreState(states[i]);
            }

            return rc;
        }
        finally
        {
            UnlockDevices(locked);
        }
    }

    /// <summary>
    /// pci_bus_trylock(): top of the tree down. From v6.11
    /// (<see cref="PlatformFeatures.BusResetLocksBridge"/>) the bridge above the bus first,
    /// then each function on it, a bridge among them locked as the top of its own bus; before,
    /// each function, then the bus below it if it is a bridge. Every lock taken is appended to
    /// <paramref name="locked"/>; false on the first contended one (the caller unlocks).
    /// </summary>
    private static bool BusTrylock(PciBusSegment bus, bool lockBridge, List<PciDevice> locked)
    {
        if (lockBridge)
        {
            if (!bus.Self!.Mutex.TryLock())
            {
                return false;
            }

            locked.Add(bus.Self);
        }

        foreach (PciDevice d in bus.Devices)
        {
            if (lockBridge && d.Subordinate is { } sub)
            {
                if (!BusTrylock(sub, lockBridge, locked))
                {
                    return false;
                }

                continue;
            }

            if (!d.Mutex.TryLock())
            {
                return false;
            }

            locked.Add(d);
            if (d.Subordinate is { } below && !BusTrylock(below, lockBridge, locked))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>pci_bus_unlock(): the device locks <see cref="BusTrylock"/> took, bottom up.</summary>
    private static void UnlockDevices(List<PciDevice> locked)
    {
        for (int i = locked.Count - 1; i >= 0; i--)
        {
            locked[i].Unlock();
        }
    }

    // ---- PCI core helpers (drivers/pci/pci.c) as vfio-pci uses them.

    /// <summary>pci_clear_master().</summary>
    private void ClearMaster()
    {
        uint cmd = Pdev.ReadConfig(PciRegs.Command, 2);
        if ((cmd & PciRegs.CommandMaster) != 0)
        {
            Pdev.WriteConfig(PciRegs.Command, cmd & ~(uint)PciRegs.CommandMaster, 2);
        }
    }

    /// <summary>pci_enable_device(): turns on the decode of the function's assigned memory and I/O BARs.</summary>
    private void EnableDevice()
    {
        if (_enableCount++ > 0)
        {
            return;
        }

        SetPowerStateD0();
        uint want = 0;
        for (int i = 0; i <= PciDevice.RomBarIndex; i++)
        {
            if (Pdev.Bars[i] is { } bar && i != PciDevice.RomBarIndex)
            {
                want |= bar.Kind == PciBarKind.Io ? PciRegs.CommandIo : PciRegs.CommandMemory;
            }
        }

        uint cmd = Pdev.ReadConfig(PciRegs.Command, 2);
        if ((cmd & want) != want)
        {
            Pdev.WriteConfig(PciRegs.Command, cmd | want, 2);
        }
    }

    /// <summary>pci_disable_device(): the last disable stops bus mastering.</summary>
    private void DisableDevice()
    {
        if (_enableCount == 0 || --_enableCount > 0)
        {
            return;
        }

        ClearMaster();
    }

    /// <summary>vfio_pci_set_power_state(vdev, PCI_D0): the PCI core's D0 transition, which reprograms the BARs when it reset the function.</summary>
    private void SetPowerStateD0()
    {
        // needs_pm_restore: a function without No_Soft_Reset was reset by D3hot → D0; every
        // path back to D0 (config write, VFIO_DEVICE_RESET, enable, disable) puts back the
        // state saved when it entered D3hot.
        bool restore = Pdev.PowerState == 3;
        Pdev.SetFullPowerState();
        if (restore && _pmSave is { } saved)
        {
            _pmSave = null;
            Pdev.LoadAndRestoreState(saved);
        }
    }

    /// <summary>pci_intx(pdev, !disable).</summary>
    private void SetIntxDisable(bool disable)
    {
        uint cmd = Pdev.ReadConfig(PciRegs.Command, 2);
        uint want = disable ? cmd | PciRegs.CommandIntxDisable : cmd & ~(uint)PciRegs.CommandIntxDisable;
        if (want != cmd)
        {
            Pdev.WriteConfig(PciRegs.Command, want, 2);
        }
    }

    /// <summary>pci_intx_mask_supported(): DisINTx toggles when written.</summary>
    private bool IntxMaskSupported()
    {
        uint orig = Pdev.ReadConfig(PciRegs.Command, 2);
        Pdev.WriteConfig(PciRegs.Command, orig ^ PciRegs.CommandIntxDisable, 2);
        uint now = Pdev.ReadConfig(PciRegs.Command, 2);
        bool supported = (now ^ orig) == PciRegs.CommandIntxDisable;
        Pdev.WriteConfig(PciRegs.Command, orig, 2);
        return supported;
    }

    /// <summary>vfio_pci_nointx(): Intel i40e and X550 functions whose INTx masking is broken.</summary>
    private static bool IsNoIntxDevice(PciIdentity id)
        => id.Vendor == 0x8086 && id.Device is 0x1572 or 0x1574 or 0x1580 or 0x1581 or (>= 0x1583 and <= 0x158b) or (>= 0x37d0 and <= 0x37d2) or 0x1563;

    /// <summary>vfio_pci_probe_mmaps(): a memory BAR of at least a page, or a page-aligned smaller one, can be mmapped.</summary>
    private void ProbeMmaps()
    {
        for (int i = 0; i < _barMmapSupported.Length; i++)
        {
            PciBar? bar = Pdev.Bars[i];
            _barMmapSupported[i] = bar is not null && bar.Kind != PciBarKind.Io && bar.Size > 0
                && (bar.Size >= PageSize || (bar.ResourceStart & (PageSize - 1)) == 0);
        }
    }

    internal bool BarMmapSupported(int index) => _barMmapSupported[index];

    // ---- REQ (vfio_pci_core_request) and name matching (vfio_pci_core_match).

    /// <summary>
    /// vfio_pci_core_request(): the unregister path asks user space to release the device:
    /// signal the REQ eventfd (logging every 10th request), or say once that nothing can be asked.
    /// </summary>
    internal void Request(uint count)
    {
        _igate.Lock();
        try
        {
            if (_reqTrigger is { } req)
            {
                if (count % 10 == 0)
                {
                    Core.Kernel.Log.Printk(LogLevel.Notice, $"{VfioPciDriver.DriverName} {Pname}: Relaying device request to user (#{count.ToString(CultureInfo.InvariantCulture)})");
                }

                req.Signal();
            }
            else if (count == 0)
            {
                Core.Kernel.Log.Warn($"{VfioPciDriver.DriverName} {Pname}: No device request channel registered, blocked until released by user");
            }
        }
        finally
        {
            _igate.Unlock();
        }
    }

    /// <summary>
    /// vfio_pci_core_match(): the device name, optionally followed by spaces and one
    /// <c>vf_token=&lt;uuid&gt;</c>. A name followed by anything but a space does not match;
    /// an unknown or repeated option, or a short or malformed token, is -EINVAL; then the
    /// token is checked (<see cref="ValidateVfToken"/>, Sriov.cs).
    /// </summary>
    internal int Match(string buf)
    {
        string name = Pname;
        if (!buf.StartsWith(name, StringComparison.Ordinal))
        {
            return 0;
        }

        bool vfToken = false;
        UInt128 uuid = 0;
        if (buf.Length > name.Length)
        {
            if (buf[name.Length] != ' ')
            {
                return 0;
            }

            const string tokenArg = "vf_token=";
            const int uuidLen = 36;
            int i = name.Length;
            while (i < buf.Length)
            {
                if (buf[i] == ' ')
                {
                    i++;
                    continue;
                }

                if (!vfToken && string.CompareOrdinal(buf, i, tokenArg, 0, tokenArg.Length) == 0)
                {
                    i += tokenArg.Length;
                    if (buf.Length - i < uuidLen)
                    {
                        return ErrorReason.Fail(Errno.EINVAL, $"VFIO_GROUP_GET_DEVICE_FD: vf_token of \"{buf}\" is shorter than a UUID");
                    }

                    if (!UuidParse(buf.AsSpan(i, uuidLen), out uuid))
                    {
                        return ErrorReason.Fail(Errno.EINVAL, $"VFIO_GROUP_GET_DEVICE_FD: vf_token of \"{buf}\" is not a UUID");
                    }

                    vfToken = true;
                    i += uuidLen;
                }
                else
                {
                    return ErrorReason.Fail(Errno.EINVAL, $"VFIO_GROUP_GET_DEVICE_FD: unknown or repeated option at \"{buf[i..]}\"");
                }
            }
        }

        int ret = ValidateVfToken(vfToken, uuid);
        return ret != 0 ? ret : 1;
    }
}
