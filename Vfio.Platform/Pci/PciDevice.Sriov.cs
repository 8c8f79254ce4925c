// Models SR-IOV: the physical function's hardware behind the capability (SriovCapability.cs)
// and the PCI core of drivers/pci/iov.c (v6.12) — pci_iov_init/sriov_init, pci_enable_sriov
// (sriov_enable, pci_iov_add_virtfn), pci_disable_sriov (sriov_disable,
// pci_iov_remove_virtfn), sriov_restore_state, pci_sriov_configure_simple, and the PF's
// sysfs attributes (sriov_totalvfs, sriov_numvfs with sriov_numvfs_store's checks and
// errnos, sriov_offset, sriov_stride, sriov_vf_device, sriov_drivers_autoprobe) with the
// virtfnN / physfn links.
//
// Life cycle: enabling writes NumVFs, then VF Enable and VF MSE (the hardware latches the
// count and its VFs start answering), waits 100 ms, and adds each VF as a PCI function on
// the PF's bus: the PF's model builds the VF (CreateVirtualFunction), the VF's BARs are the
// VF's slices of the PF's IOV windows, and adding it runs the bus notifier (ADD_DEVICE:
// IOMMU group, vfio-pci's driver_override) and the probe. iov->num_VFs is set only after
// every VF is added, as in the kernel. Disabling removes the VFs first — each removal
// unbinds the VF's driver, which blocks while vfio-pci waits for the VF's user — then
// clears VF Enable and waits 1 s.
//
// A VF reads all-ones (config) and decodes nothing unless its PF's VF Enable is set and its
// number is below the latched NumVFs; its COMMAND.MEM is hardwired 0 (no_command_memory),
// memory decode follows the PF's VF MSE; its vendor and device ids read 0xffff (the PCI
// core takes them from the PF and the capability's VF Device ID).
//
// Locks: the PF pushes its VF hardware state to the VFs after dropping its own ConfigLock
// (PF ConfigLock and VF ConfigLock are never nested); _vfListLock protects _vfs. Enable and
// disable run under the PF's device_lock (sriov_numvfs_store, or the driver's remove).

using System.Globalization;
using Vfio.Kernel;
using Vfio.Platform.Fs;
using Vfio.Platform.Machine;

namespace Vfio.Platform.Pci;

public partial class PciDevice
{
    // ---- PF hardware (the capability and the VFs it enables).
    private int _sriovCap;
    private SriovDescription? _sriovDescription;
    private SriovBar?[] _sriovBars = [];

    // VF Enable as the hardware last saw it, and the NumVFs it latched on its rising edge (ConfigLock).
    private bool _hwVfe;
    private int _hwVfCount;

    // ---- PF kernel state (struct pci_sriov), set by pci_iov_init.
    private PciSriov? _sriov;

    // Protects _vfs: the VF pci_devs by VF number (pci_get_domain_bus_and_slot for VFs).
    private KSpinLock? _vfListLock;
    private PciDevice?[] _vfs = [];

    // ---- VF side.
    private PciDevice? _physfn;
    private int _vfId = -1;

    // The VF's decode state as its PF's hardware gives it (ConfigLock of the VF).
    private bool _vfPresent;
    private bool _vfMse;
    private readonly long[] _vfBarBase = [-1, -1, -1, -1, -1, -1];

    /// <summary>Offset of the SR-IOV capability, 0 if none.</summary>
    public int SriovCap => _sriovCap;

    /// <summary>The VF BAR registers of the SR-IOV capability by index (null where not implemented); empty without the capability.</summary>
    public IReadOnlyList<SriovBar?> SriovBars => _sriovBars;

    /// <summary>dev-&gt;is_physfn: the PCI core found a usable SR-IOV capability.</summary>
    public bool IsPhysfn => _sriov is not null;

    /// <summary>dev-&gt;is_virtfn.</summary>
    public bool IsVirtfn => _physfn is not null;

    /// <summary>pci_physfn(): the PF of a VF; the function itself otherwise.</summary>
    public PciDevice Physfn => _physfn ?? this;

    /// <summary>The VF's number (pci_iov_vf_id), -1 for a function that is not a VF.</summary>
    public int VfId => _vfId;

    /// <summary>dev-&gt;no_command_memory: a VF implements no COMMAND.MEM (memory decode follows the PF's VF MSE).</summary>
    public bool NoCommandMemory => _physfn is not null;

    /// <summary>pci_num_vf(): the VFs the PCI core enabled (iov-&gt;num_VFs), 0 for a function that is not a PF.</summary>
    public int NumVfs => _sriov is { } iov ? Volatile.Read(ref iov.NumVfs) : 0;

    /// <summary>pci_sriov_get_totalvfs(): 0 for a function that is not a PF.</summary>
    public int TotalVfs => _sriov?.DriverMaxVfs ?? 0;

    /// <summary>The VFs on the bus now, by VF number (a snapshot).</summary>
    public IReadOnlyList<PciDevice> VirtualFunctions
    {
        get
        {
            if (_vfListLock is null)
            {
                return [];
            }

            _vfListLock.Lock();
            try
            {
                var list = new List<PciDevice>(_vfs.Length);
                foreach (PciDevice? vf in _vfs)
                {
                    if (vf is not null)
                    {
                        list.Add(vf);
                    }
                }

                return list;
            }
            finally
            {
                _vfListLock.Unlock();
            }
        }
    }

    // ---- Construction: the PF's capability.

    /// <summary>
    /// Adds an SR-IOV capability with <paramref name="description"/>'s TotalVFs, VF Device ID,
    /// offset, stride and VF BARs (each VF BAR at least a page, as sriov_init requires). The
    /// function needs a PCI Express endpoint capability and must build its VFs in
    /// <see cref="CreateVirtualFunction"/>.
    /// </summary>
    protected int AddSriovCapability(SriovDescription description)
    {
        ArgumentNullException.ThrowIfNull(description);
        CheckBuilding();
        if (ExpCap == 0)
        {
            throw new InvalidOperationException($"{Name}: SR-IOV needs a PCI Express endpoint capability first");
        }

        if (description.TotalVfs is < 1 or > 255 || description.Offset is < 1 or > 0xffff || description.Stride is < 0 or > 0xffff)
        {
            throw new ArgumentOutOfRangeException(nameof(description), "TotalVFs is 1..255, the First VF Offset 1..65535, the VF Stride 0..65535");
        }

        int cap = Config.AddExtCapability(SriovRegs.ExtCapId, 1, SriovRegs.Sizeof);
        Config.SetWord(cap + SriovRegs.InitialVf, (ushort)description.TotalVfs);
        Config.SetWord(cap + SriovRegs.TotalVf, (ushort)description.TotalVfs);
        Config.SetWritableWord(cap + SriovRegs.NumVf, 0xffff);
        Config.SetWritableWord(cap + SriovRegs.Ctrl, SriovRegs.CtrlVfe | SriovRegs.CtrlMse);
        Config.SetWord(cap + SriovRegs.VfOffset, (ushort)description.Offset);
        Config.SetWord(cap + SriovRegs.VfStride, (ushort)description.Stride);
        Config.SetWord(cap + SriovRegs.VfDid, (ushort)description.VfDevice);
        Config.SetDword(cap + SriovRegs.SupPgsize, SriovRegs.SupportedPageSizes);
        Config.SetDword(cap + SriovRegs.SysPgsize, 1);
        Config.SetWritableDword(cap + SriovRegs.SysPgsize, SriovRegs.SupportedPageSizes);

        var bars = new SriovBar?[SriovRegs.NumBars];
        foreach (BarDescription b in description.Bars)
        {
            if (b.Kind == PciBarKind.Io || b.Size < 4096 || (b.Size & (b.Size - 1)) != 0)
            {
                throw new ArgumentOutOfRangeException(nameof(description), $"VF BAR {b.Index}: a VF BAR is memory and a power of two of at least a page");
            }

            var bar = new SriovBar(b.Index, b.Size, b.Kind, b.Prefetchable, description.TotalVfs);
            bars[b.Index] = bar;
            int reg = cap + SriovRegs.Bar + (4 * b.Index);
            Config.SetDword(reg, bar.FlagBits);
            Config.SetWritableDword(reg, b.Size > uint.MaxValue ? 0 : ~(uint)(b.Size - 1) & 0xfffffff0);
            if (b.Kind == PciBarKind.Memory64)
            {
                Config.SetWritableDword(reg + 4, (uint)(~(ulong)(b.Size - 1) >> 32));
            }
        }

        _sriovCap = cap;
        _sriovBars = bars;
        _sriovDescription = description;
        _vfListLock = new KSpinLock(Machine.Kernel, $"pci[{Name}].virtfns");
        _vfs = new PciDevice?[description.TotalVfs];
        RecapturePowerOn();
        return cap;
    }

    /// <summary>The SR-IOV hardware the function was built with, or null.</summary>
    public SriovDescription? SriovDescription => _sriovDescription;

    /// <summary>
    /// Builds VF <paramref name="vfId"/> at <paramref name="address"/>: the model's VF
    /// hardware (a <see cref="PciVirtualFunction"/>). Called by the PCI core when it adds the
    /// VF; a model with an SR-IOV capability overrides it.
    /// </summary>
    protected internal virtual PciVirtualFunction CreateVirtualFunction(PciAddress address, int vfId)
        => throw new NotSupportedException($"{Name}: the device model has no virtual functions");

    /// <summary>Firmware assignment of the IOV window of VF BAR <paramref name="index"/> (all VFs' copies, VF 0 first).</summary>
    internal void AssignIovBar(int index, long address)
    {
        SriovBar bar = _sriovBars[index] ?? throw new InvalidOperationException($"{Name}: no VF BAR {index}");
        bar.ResourceStart = address;
        int reg = _sriovCap + SriovRegs.Bar + (4 * index);
        ConfigLock.Lock();
        Config.SetDword(reg, ((uint)address & 0xfffffff0) | bar.FlagBits);
        if (bar.Kind == PciBarKind.Memory64)
        {
            Config.SetDword(reg + 4, (uint)((ulong)address >> 32));
        }

        ConfigLock.Unlock();
    }

    // ---- PF hardware: VF Enable, NumVFs, VF MSE and the VF BARs reach the VFs.

    private bool InSriovCap(int offset, int size) => _sriovCap != 0 && Overlaps(offset, size, _sriovCap, SriovRegs.Sizeof);

    /// <summary>A config write touched the SR-IOV capability: the VFs' state follows once the lock is dropped.</summary>
    private void SriovRegisterWrittenLocked(int offset, int size, ref PendingEffects fx)
    {
        ConfigLock.AssertHeld();
        if (InSriovCap(offset, size))
        {
            fx.SriovChanged = true;
        }
    }

    /// <summary>What the PF's hardware gives its VFs now: how many answer, whether they decode memory, and each VF BAR register's base.</summary>
    private (int Count, bool Mse, long[] Bases) SriovHardwareStateLocked()
    {
        ConfigLock.AssertHeld();
        ushort ctrl = Config.GetWord(_sriovCap + SriovRegs.Ctrl);
        bool vfe = (ctrl & SriovRegs.CtrlVfe) != 0;
        if (vfe && !_hwVfe)
        {
            _hwVfCount = Math.Min(Config.GetWord(_sriovCap + SriovRegs.NumVf), _vfs.Length);
        }
        else if (!vfe)
        {
            _hwVfCount = 0;
        }

        _hwVfe = vfe;
        long[] bases = new long[SriovRegs.NumBars];
        for (int i = 0; i < SriovRegs.NumBars; i++)
        {
            bases[i] = -1;
            if (_sriovBars[i] is not { } bar)
            {
                continue;
            }

            int reg = _sriovCap + SriovRegs.Bar + (4 * i);
            ulong raw = Config.GetDword(reg) & 0xfffffff0u;
            if (bar.Kind == PciBarKind.Memory64)
            {
                raw |= (ulong)Config.GetDword(reg + 4) << 32;
            }

            long limit = bar.Kind == PciBarKind.Memory64 ? 1L << 52 : 1L << 32;
            if (raw != 0 && raw + (ulong)bar.WindowSize <= (ulong)limit)
            {
                bases[i] = (long)raw;
            }
        }

        return (_hwVfCount, vfe && (ctrl & SriovRegs.CtrlMse) != 0 && !IsDisconnected, bases);
    }

    /// <summary>Pushes the PF's VF state to every VF on the bus (after a write to the capability or a reset of the PF).</summary>
    private void SriovHardwareChanged()
    {
        if (_sriovCap == 0)
        {
            return;
        }

        (int count, bool mse, long[] bases) state;
        ConfigLock.Lock();
        try
        {
            state = SriovHardwareStateLocked();
        }
        finally
        {
            ConfigLock.Unlock();
        }

        foreach (PciDevice vf in VirtualFunctions)
        {
            PushVfState(vf, state);
        }
    }

    private void PushVfState(PciDevice vf, (int Count, bool Mse, long[] Bases) state)
    {
        Span<long> bases = stackalloc long[SriovRegs.NumBars];
        for (int i = 0; i < bases.Length; i++)
        {
            bases[i] = state.Bases[i] < 0 || _sriovBars[i] is not { } bar ? -1 : state.Bases[i] + (bar.VfSize * vf._vfId);
        }

        vf.VfHardwareUpdate(vf._vfId < state.Count, state.Mse, bases);
    }

    /// <summary>The VF's side of its PF's state: present or gone (a VF that goes through a reset), decoding or not, where its BARs are.</summary>
    private void VfHardwareUpdate(bool present, bool mse, ReadOnlySpan<long> bases)
    {
        bool vanished;
        ConfigLock.Lock();
        try
        {
            vanished = _vfPresent && !present;
            _vfPresent = present;
            _vfMse = mse;
            bases.CopyTo(_vfBarBase);
            UpdateBarRoutingLocked();
        }
        finally
        {
            ConfigLock.Unlock();
        }

        if (vanished)
        {
            HardwareReset(PciResetKind.Flr);
        }
    }

    /// <summary>A VF that its PF does not enable answers no config cycle.</summary>
    private bool VfAbsent => _physfn is not null && !Volatile.Read(ref _vfPresent);

    /// <summary>Where a VF's BAR decodes: its slice of the PF's window while VF MSE is on; -1 otherwise.</summary>
    private long VfDecodedAddressLocked(PciBar bar)
    {
        ConfigLock.AssertHeld();
        return bar.Index < SriovRegs.NumBars && _vfPresent && _vfMse && !IsDisconnected && PowerState == 0 ? _vfBarBase[bar.Index] : -1;
    }

    // ---- VF construction (PciVirtualFunction calls these).

    private protected void InitVirtualFunction(PciDevice physfn, int vfId)
    {
        _physfn = physfn;
        _vfId = vfId;

        // The VF's own header: vendor and device read all-ones; I/O, memory and INTx
        // disable are hardwired 0 (the VF has no COMMAND.MEM); no INTx pin; one function.
        Config.SetWord(PciRegs.VendorId, 0xffff);
        Config.SetWord(PciRegs.DeviceId, 0xffff);
        Config.SetWritableWord(PciRegs.Command, PciRegs.CommandMaster | PciRegs.CommandSerr | 0x40 /* parity */);
        Config.SetByte(PciRegs.InterruptPin, 0);
        Config.SetByte(PciRegs.HeaderType, PciRegs.HeaderTypeNormal);
        RecapturePowerOn();
    }

    /// <summary>A VF BAR: the size the PF's capability gives it, no register of its own (a VF's BAR registers read 0).</summary>
    private protected void AddVfBar(SriovBar window, long resourceStart)
    {
        CheckBuilding();
        var bar = new PciBar(this, window.Index, window.VfSize, window.Kind, window.Prefetchable) { ResourceStart = resourceStart };
        _bars[window.Index] = bar;
    }

    // ---- PCI core: pci_iov_init (sriov_init).

    /// <summary>
    /// pci_iov_init(): a PCI Express endpoint with an SR-IOV capability whose TotalVFs is
    /// not 0 becomes a PF: VF Enable cleared, NumVFs 0, the smallest supported page size
    /// chosen, the IOV resources read from the VF BARs.
    /// </summary>
    internal void IovInit()
    {
        if (_sriovCap == 0 || _sriov is not null || !IsPcie)
        {
            return;
        }

        int pos = _sriovCap;
        int total = (int)ReadConfig(pos + SriovRegs.TotalVf, 2);
        if (total == 0)
        {
            return;
        }

        WriteConfig(pos + SriovRegs.Ctrl, 0, 2);
        WriteConfig(pos + SriovRegs.NumVf, 0, 2);
        ushort offset = (ushort)ReadConfig(pos + SriovRegs.VfOffset, 2);
        ushort stride = (ushort)ReadConfig(pos + SriovRegs.VfStride, 2);
        if (offset == 0 || (total > 1 && stride == 0))
        {
            return; // -EIO: not a PF
        }

        uint pgsz = ReadConfig(pos + SriovRegs.SupPgsize, 4);
        if (pgsz == 0)
        {
            return;
        }

        pgsz &= ~(pgsz - 1);
        WriteConfig(pos + SriovRegs.SysPgsize, pgsz, 4);
        // iov->nres: the VF BARs the capability implements (each must have a window to enable).
        int nres = 0;
        foreach (SriovBar? bar in _sriovBars)
        {
            if (bar is not null)
            {
                nres++;
            }
        }

        _sriov = new PciSriov
        {
            Pos = pos,
            TotalVfs = (ushort)total,
            DriverMaxVfs = (ushort)total,
            InitialVfs = (ushort)ReadConfig(pos + SriovRegs.InitialVf, 2),
            Offset = offset,
            Stride = stride,
            VfDevice = (ushort)ReadConfig(pos + SriovRegs.VfDid, 2),
            Pgsz = pgsz,
            Nres = nres,
            Lock = new KMutex(Machine.Kernel, $"pci[{Name}].sriov.lock"),
        };
    }

    // ---- PCI core: enable and disable.

    /// <summary>pci_iov_virtfn_bus() + pci_iov_virtfn_devfn(): the routing id VF <paramref name="vfId"/> takes.</summary>
    private (int Bus, int DevFn) VirtfnRoutingId(int vfId)
    {
        PciSriov iov = _sriov!;
        int rid = DevFn + iov.Offset + (iov.Stride * vfId);
        return (BusNumber + (rid >> 8), rid & 0xff);
    }

    /// <summary>
    /// pci_enable_sriov(): -ENOSYS for a function that is not a PF; sriov_enable(): 0 for
    /// 0 VFs, -EINVAL when VFs are enabled already or <paramref name="numVfs"/> is above
    /// TotalVFs, -ENOMEM when an IOV window is unassigned or the last VF's bus is beyond the
    /// bus range (a VF is never put on another bus here); then NumVFs, VF Enable and VF MSE,
    /// 100 ms, and each VF added. A VF that cannot be added undoes the ones before it.
    /// </summary>
    public int EnableSriov(int numVfs)
    {
        if (_sriov is not { } iov)
        {
            return ErrorReason.Fail(Errno.ENOSYS, $"pci_enable_sriov: {Name} is not an SR-IOV PF");
        }

        if (numVfs == 0)
        {
            return 0;
        }

        if (iov.NumVfs != 0)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"pci_enable_sriov: {Name} has {iov.NumVfs} VFs enabled already");
        }

        int initial = (int)ReadConfig(iov.Pos + SriovRegs.InitialVf, 2);
        if (initial > iov.TotalVfs || initial != iov.TotalVfs)
        {
            return ErrorReason.Fail(Errno.EIO, $"pci_enable_sriov: {Name}'s InitialVFs {initial} is not its TotalVFs {iov.TotalVfs}");
        }

        if (numVfs < 0 || numVfs > iov.TotalVfs)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"pci_enable_sriov: {numVfs} VFs is not in 1..{iov.TotalVfs} (TotalVFs of {Name})");
        }

        int nres = 0;
        foreach (SriovBar? bar in _sriovBars)
        {
            if (bar is not null && bar.ResourceStart != 0)
            {
                nres++;
            }
        }

        if (nres != iov.Nres)
        {
            Machine.Kernel.Log.Printk(LogLevel.Err, $"pci {Name}: not enough MMIO resources for SR-IOV");
            return ErrorReason.Fail(Errno.ENOMEM, $"pci_enable_sriov: {Name} has IOV windows firmware did not assign");
        }

        (int lastBus, _) = VirtfnRoutingId(numVfs - 1);
        if (lastBus != BusNumber)
        {
            Machine.Kernel.Log.Printk(LogLevel.Err, $"pci {Name}: can't enable {numVfs} VFs (bus {lastBus:x2} out of range of bus {BusNumber:x2})");
            return ErrorReason.Fail(Errno.ENOMEM, $"pci_enable_sriov: VF {numVfs - 1} of {Name} would sit on bus {lastBus:x2}, beyond the PF's bus range");
        }

        iov.InitialVfs = (ushort)initial;
        WriteConfig(iov.Pos + SriovRegs.NumVf, (uint)numVfs, 2);
        iov.Ctrl |= SriovRegs.CtrlVfe | SriovRegs.CtrlMse;
        WriteConfig(iov.Pos + SriovRegs.Ctrl, iov.Ctrl, 2);
        Msleep(100);

        // sriov_add_vfs().
        for (int i = 0; i < numVfs; i++)
        {
            int rc = AddVirtfn(i);
            if (rc != 0)
            {
                while (i-- > 0)
                {
                    RemoveVirtfn(i);
                }

                iov.Ctrl = (ushort)(iov.Ctrl & ~(SriovRegs.CtrlVfe | SriovRegs.CtrlMse));
                WriteConfig(iov.Pos + SriovRegs.Ctrl, iov.Ctrl, 2);
                WriteConfig(iov.Pos + SriovRegs.NumVf, 0, 2);
                Msleep(1000);
                return rc;
            }
        }

        Volatile.Write(ref iov.NumVfs, numVfs);
        return 0;
    }

    /// <summary>pci_disable_sriov(): removes every VF (each removal may block in its driver's remove), clears VF Enable and VF MSE, waits 1 s.</summary>
    public void DisableSriov()
    {
        if (_sriov is not { } iov || iov.NumVfs == 0)
        {
            return;
        }

        for (int i = 0; i < iov.NumVfs; i++)
        {
            RemoveVirtfn(i);
        }

        iov.Ctrl = (ushort)(iov.Ctrl & ~(SriovRegs.CtrlVfe | SriovRegs.CtrlMse));
        WriteConfig(iov.Pos + SriovRegs.Ctrl, iov.Ctrl, 2);
        Msleep(1000);
        Volatile.Write(ref iov.NumVfs, 0);
        WriteConfig(iov.Pos + SriovRegs.NumVf, 0, 2);
    }

    /// <summary>
    /// pci_sriov_configure_simple(): what a PF driver without VF resources of its own does
    /// in -&gt;sriov_configure: 0 disables; otherwise pci_enable_sriov, returning the count.
    /// </summary>
    public int SriovConfigureSimple(int numVfs)
    {
        if (_sriov is null)
        {
            return Errno.ENODEV.Negative();
        }

        if (numVfs == 0)
        {
            DisableSriov();
            return 0;
        }

        int rc = EnableSriov(numVfs);
        return rc < 0 ? rc : numVfs;
    }

    /// <summary>
    /// pci_iov_add_virtfn(): the VF's pci_dev (vendor from the PF, device from the VF Device
    /// ID, BARs at its slice of each IOV window, not multifunction) is added to the PF's bus
    /// and probed; then the virtfnN and physfn links. 0 or -errno.
    /// </summary>
    private int AddVirtfn(int id)
    {
        PciSriov iov = _sriov!;
        (int bus, int devfn) = VirtfnRoutingId(id);
        var address = new PciAddress(Domain, bus, devfn >> 3, devfn & 7);
        PciVirtualFunction vf = CreateVirtualFunction(address, id);
        if (!ReferenceEquals(vf._physfn, this) || vf._vfId != id)
        {
            throw new InvalidOperationException($"{Name}: CreateVirtualFunction({id}) built a VF of another PF or number");
        }

        vf.Identity = vf.Identity with { Vendor = Identity.Vendor, Device = iov.VfDevice };
        vf.OnBus = OnBus;
        Get(); // virtfn->physfn holds a reference to the PF.

        _vfListLock!.Lock();
        _vfs[id] = vf;
        _vfListLock.Unlock();
        (int, bool, long[]) state;
        ConfigLock.Lock();
        try
        {
            state = SriovHardwareStateLocked();
        }
        finally
        {
            ConfigLock.Unlock();
        }

        PushVfState(vf, state);

        int rc = Machine.Pci.Add(vf);
        if (rc != 0)
        {
            _vfListLock.Lock();
            _vfs[id] = null;
            _vfListLock.Unlock();
            vf.UnrouteAllBars();
            vf.Put();
            Put();
            return rc;
        }

        Sysfs.SysfsTree fs = Machine.Sysfs;
        fs.CreateLink(SysfsDir!, string.Create(CultureInfo.InvariantCulture, $"virtfn{id}"), vf.SysfsDir!);
        fs.CreateLink(vf.SysfsDir!, "physfn", SysfsDir!);
        return 0;
    }

    /// <summary>pci_iov_remove_virtfn(): the links go, then pci_stop_and_remove_bus_device() (the VF's driver is unbound; it may block), then the references.</summary>
    private void RemoveVirtfn(int id)
    {
        _vfListLock!.Lock();
        PciDevice? vf = _vfs[id];
        _vfListLock.Unlock();
        if (vf is null)
        {
            return;
        }

        Sysfs.SysfsTree fs = Machine.Sysfs;
        if (SysfsDir is { } dir)
        {
            fs.RemoveLink(dir, string.Create(CultureInfo.InvariantCulture, $"virtfn{id}"));
        }

        if (vf.SysfsDir is { } vdir)
        {
            fs.RemoveLink(vdir, "physfn");
        }

        _sriov!.Lock.Lock();
        try
        {
            Machine.Pci.Remove(vf);
        }
        finally
        {
            _sriov.Lock.Unlock();
        }

        _vfListLock.Lock();
        _vfs[id] = null;
        _vfListLock.Unlock();
        vf.Put();
        Put();
    }

    /// <summary>
    /// pci_restore_iov_state() (sriov_restore_state): unless VF Enable is still on, the IOV
    /// BARs, the page size, NumVFs and the control register the PCI core keeps are written
    /// back (VF Enable last), with 100 ms for the VFs to come up.
    /// </summary>
    private void RestoreIovState()
    {
        if (_sriov is not { } iov)
        {
            return;
        }

        if ((ReadConfig(iov.Pos + SriovRegs.Ctrl, 2) & SriovRegs.CtrlVfe) != 0)
        {
            return;
        }

        foreach (SriovBar? bar in _sriovBars)
        {
            if (bar is not null && bar.ResourceStart != 0)
            {
                int reg = iov.Pos + SriovRegs.Bar + (4 * bar.Index);
                WriteConfig(reg, ((uint)bar.ResourceStart & 0xfffffff0) | bar.FlagBits, 4);
                if (bar.Kind == PciBarKind.Memory64)
                {
                    WriteConfig(reg + 4, (uint)((ulong)bar.ResourceStart >> 32), 4);
                }
            }
        }

        WriteConfig(iov.Pos + SriovRegs.SysPgsize, iov.Pgsz, 4);
        WriteConfig(iov.Pos + SriovRegs.NumVf, (uint)iov.NumVfs, 2);
        WriteConfig(iov.Pos + SriovRegs.Ctrl, iov.Ctrl, 2);
        if ((iov.Ctrl & SriovRegs.CtrlVfe) != 0)
        {
            Msleep(100);
        }
    }

    /// <summary>A capability dword that pci_restore_state restores through <see cref="RestoreIovState"/>, not from the saved bytes.</summary>
    private bool IsSriovCapDword(int offset) => _sriovCap != 0 && offset >= _sriovCap && offset < _sriovCap + SriovRegs.Sizeof;

    /// <summary>pci_device_can_probe(): a VF probes only if its PF's sriov_drivers_autoprobe is on or it has a driver_override.</summary>
    internal bool CanProbe => _physfn is not { } pf || pf._sriov is not { } iov || Volatile.Read(ref iov.DriversAutoprobe) || DriverOverride is not null;

    // ---- sysfs (drivers/pci/iov.c sriov_pf_dev_attrs).

    /// <summary>The PF's SR-IOV attributes, created with the device's other attributes.</summary>
    internal void AddSriovAttributes(VfsDir dir)
    {
        if (_sriov is not { } iov)
        {
            return;
        }

        Sysfs.SysfsTree fs = Machine.Sysfs;
        const int ro = 0x124; // 0444
        const int rw = 0x1b4; // 0664
        fs.CreateFile(dir, "sriov_totalvfs", ro, () => Dec(TotalVfs));
        fs.CreateFile(dir, "sriov_numvfs", rw, SriovNumvfsShow, SriovNumvfsStore);
        fs.CreateFile(dir, "sriov_offset", ro, () => Dec(iov.Offset));
        fs.CreateFile(dir, "sriov_stride", ro, () => Dec(iov.Stride));
        fs.CreateFile(dir, "sriov_vf_device", ro, () => iov.VfDevice.ToString("x", CultureInfo.InvariantCulture) + "\n");
        fs.CreateFile(dir, "sriov_drivers_autoprobe", rw, () => Volatile.Read(ref iov.DriversAutoprobe) ? "1\n" : "0\n", SriovDriversAutoprobeStore);
    }

    private static string Dec(int v) => v.ToString(CultureInfo.InvariantCulture) + "\n";

    /// <summary>sriov_numvfs_show(): iov-&gt;num_VFs, read under device_lock.</summary>
    private string SriovNumvfsShow()
    {
        Lock();
        try
        {
            return Dec(NumVfs);
        }
        finally
        {
            Unlock();
        }
    }

    /// <summary>
    /// sriov_numvfs_store(), in the kernel's order: not a u16 -EINVAL, above
    /// TotalVFs -ERANGE; under device_lock: the current count is a no-op; no driver, or a
    /// driver without -&gt;sriov_configure, -ENOENT; 0 disables through the driver; VFs
    /// enabled already -EBUSY; else the driver enables (a short count is logged).
    /// </summary>
    private long SriovNumvfsStore(string buf)
    {
        // Any parse failure, overflow included, is -EINVAL (the store functions return -EINVAL
        // consistently since v5.15); -ERANGE is only for a count above sriov_totalvfs.
        if (Kstrtox.Kstrtou16(buf, out ushort numVfs) != 0)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"sriov_numvfs: \"{buf.Trim()}\" is not a number of VFs (0-65535)");
        }

        if (numVfs > TotalVfs)
        {
            return ErrorReason.Fail(Errno.ERANGE, $"sriov_numvfs: {numVfs} is above sriov_totalvfs {TotalVfs} of {Name}");
        }

        Lock();
        try
        {
            int ret = 0;
            if (numVfs == NumVfs)
            {
                return buf.Length;
            }

            if (PciDriver is not { } drv)
            {
                Machine.Kernel.Log.Info($"pci {Name}: no driver bound to device; cannot configure SR-IOV");
                return ErrorReason.Fail(Errno.ENOENT, $"sriov_numvfs: {Name} has no driver to configure SR-IOV");
            }

            if (!drv.HasSriovConfigure)
            {
                Machine.Kernel.Log.Info($"pci {Name}: driver does not support SR-IOV configuration via sysfs");
                return ErrorReason.Fail(Errno.ENOENT, $"sriov_numvfs: {drv.Name} (bound to {Name}) has no sriov_configure");
            }

            if (numVfs == 0)
            {
                ret = drv.SriovConfigure(this, 0);
                return ret < 0 ? ret : buf.Length;
            }

            if (NumVfs != 0)
            {
                Machine.Kernel.Log.Warn($"pci {Name}: {NumVfs} VFs already enabled. Disable before enabling {numVfs} VFs");
                return ErrorReason.Fail(Errno.EBUSY, $"sriov_numvfs: {Name} has {NumVfs} VFs enabled; write 0 before enabling {numVfs}");
            }

            ret = drv.SriovConfigure(this, numVfs);
            if (ret < 0)
            {
                return ret;
            }

            if (ret != numVfs)
            {
                Machine.Kernel.Log.Warn($"pci {Name}: {numVfs} VFs requested; only {ret} enabled");
            }

            return buf.Length;
        }
        finally
        {
            Unlock();
        }
    }

    /// <summary>sriov_drivers_autoprobe_store(): kstrtobool, else -EINVAL.</summary>
    private long SriovDriversAutoprobeStore(string buf)
    {
        string s = buf.TrimEnd('\n');
        bool? v = s switch
        {
            "1" or "y" or "Y" or "on" => true,
            "0" or "n" or "N" or "off" => false,
            _ => null,
        };
        if (v is not { } value)
        {
            return Errno.EINVAL.Negative();
        }

        Volatile.Write(ref _sriov!.DriversAutoprobe, value);
        return buf.Length;
    }
}

/// <summary>struct pci_sriov: what the PCI core keeps of a PF's SR-IOV capability.</summary>
internal sealed class PciSriov
{
    public int Pos;
    public ushort TotalVfs;
    public ushort DriverMaxVfs;
    public ushort InitialVfs;
    public ushort Offset;
    public ushort Stride;
    public ushort VfDevice;
    public uint Pgsz;
    public int Nres;

    // iov->ctrl, written under the PF's device_lock.
    public ushort Ctrl;

    // iov->num_VFs: set after every VF is added, cleared after they are gone.
    public int NumVfs;

    // iov->drivers_autoprobe.
    public bool DriversAutoprobe = true;

    // sriov->lock: held around adding and removing VF pci_devs.
    public required KMutex Lock;
}

/// <summary>
/// A virtual function: built by its PF's model when the PCI core adds it (the VF's own
/// registers: vendor/device all-ones, no COMMAND.MEM, no INTx pin, a PCI Express endpoint
/// capability with FLR), with one BAR per VF BAR of the PF's capability, at the VF's slice of
/// the PF's IOV window.
/// </summary>
public class PciVirtualFunction : PciDevice
{
    /// <summary>VF <paramref name="vfId"/> of <paramref name="physfn"/> at <paramref name="address"/>.</summary>
    public PciVirtualFunction(PciDevice physfn, int vfId, PciAddress address)
        : base((physfn ?? throw new ArgumentNullException(nameof(physfn))).Machine, address.Domain, address.Bus, address.Slot, address.Function, physfn.Identity)
    {
        InitVirtualFunction(physfn, vfId);
        AddExpCapability(PciRegs.ExpTypeEndpoint, flr: true);
        foreach (SriovBar? w in physfn.SriovBars)
        {
            if (w is not null)
            {
                AddVfBar(w, w.ResourceStart == 0 ? 0 : w.ResourceStart + (w.VfSize * vfId));
            }
        }

        if (physfn.SriovDescription?.Msix is { } x)
        {
            AddMsixCapability(x.Vectors, x.TableBar, x.TableOffset, x.PbaBar, x.PbaOffset);
        }
    }
}
