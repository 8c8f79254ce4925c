// Models the hot reset of drivers/vfio/pci/vfio_pci_core.c (v6.12, with v6.1's order
// and loop structure behind profile features): VFIO_DEVICE_GET_PCI_HOT_RESET_INFO
// (vfio_pci_ioctl_get_pci_hot_reset_info with vfio_pci_count_devs / vfio_pci_fill_devs) and
// VFIO_DEVICE_PCI_HOT_RESET (vfio_pci_ioctl_pci_hot_reset, _groups, vfio_pci_dev_set_hot_reset)
// over the bus the device sits on. Only the group path exists: the simulated kernels have
// no device cdev and no iommufd, so vfio_device_cdev_opened() is always false, the DEV_ID
// flags of the info are never set and the zero-length-array (cdev) form of the reset is
// unreachable. The machine has no hotplug slots, so pci_probe_reset_slot() always fails and
// the bus decides; every function on the bus (and below) is in the reset.
//
// VFIO_DEVICE_GET_PCI_HOT_RESET_INFO: copy in the 12-byte header (EFAULT, argsz < 12
// EINVAL); neither a slot nor a bus reset possible → ENODEV; count every function on the bus
// and below; a buffer too small → ENOSPC with count set and the header copied back;
// otherwise fill the entries under dev_set->lock (an affected function without an IOMMU
// group → EPERM) and copy the entries, then the header, back.
//
// VFIO_DEVICE_PCI_HOT_RESET {argsz, flags, count; s32 group_fds[count]}: copy in the header
// (EFAULT); argsz < 12 or flags → EINVAL; v6.6+ (HotResetZeroLengthFdArray): count 0 from a
// group-opened device → EINVAL; no slot or bus reset → ENODEV; count above the affected
// functions (6.1: or 0) → EINVAL; copy in the fds (EFAULT); fget each (EBADF), not a vfio
// group file → EINVAL; then, under dev_set->lock: every function the reset touches must be a
// vfio-pci device of this dev_set (a sibling on a host driver → EINVAL); every device of the
// set must be in one of the groups passed (EINVAL) and have its BAR mappings zapped and
// memory_lock try-locked for write (EBUSY on contention, with everything taken undone); every
// device to D0; pci_reset_bus (EAGAIN when a PCI device lock is held); unlock in reverse. The
// files taken are put on every path. Devices of the set need not be open; needs_reset is not
// touched (only the dev_set reset at the last close clears it).
//   v6.10+ (ZapBarsByMappingRange): one loop, per device: in the groups, memory_lock
//   try-locked, BARs zapped. v5.8–v6.9: a first loop checks the groups and zaps each device
//   under its vma_lock (try-locks, with the mm's mmap_lock try-locked too), a second loop
//   try-locks every memory_lock and drops that device's vma_lock — so on 6.1 every device is
//   checked and zapped before any memory_lock is tried.
//
// KASAN: the v5.8–v6.9 walk's try-lock of a member's vma_lock is checked, so that a member
// whose driver destroyed its locks while still on the set (the ≤v6.0 teardown order,
// VfioDesign.TeardownBeforeLeavingDeviceSet) is reported in vfio_pci_zap_and_vma_lock.
//
// Lock order (left to right): dev_set->lock → [vma_lock (6.1, try) → mmap_lock (6.1, try)] →
// memory_lock of each device in dev_set order (try, write) → the inode's i_mmap lock (zap) →
// the PCI device locks inside pci_reset_bus (try, top of the tree down: the bridge above the
// bus first from v6.11) → the functions' config locks. Every lock after dev_set->lock is a
// try-lock, because a user can hold memory_lock (a BAR access or fault) and unbind holds a
// device lock while it waits for the user: blocking there would deadlock.

using System.Runtime.InteropServices;
using Vfio.Core;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Fs;
using Vfio.Platform.Mm;
using Vfio.Platform.Pci;
using Vfio.Platform.Proc;

namespace Vfio.Pci;

public sealed partial class VfioPciCoreDevice
{
    private const string HotResetInfoIoctl = "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO";
    private const string HotResetIoctl = "VFIO_DEVICE_PCI_HOT_RESET";

    /// <summary>vfio_pci_ioctl_get_pci_hot_reset_info() for a group-opened device.</summary>
    private long GetPciHotResetInfo(ulong arg)
    {
        int err = VfioArg.CopyIn(arg, VfioPciHotResetInfo.MinSz, out VfioPciHotResetInfo hdr, HotResetInfoIoctl);
        if (err != 0)
        {
            return err;
        }

        hdr.Flags = 0;

        // pci_probe_reset_slot() fails (no hotplug slots here), so the bus must be resettable.
        if (Pdev.OnBus is not { } bus || ProbeResetBus(bus) != 0)
        {
            return ErrorReason.Fail(Errno.ENODEV, $"{HotResetInfoIoctl}: {Pname} can be reset neither by slot nor by bus ({(Pdev.OnBus is { IsRoot: true } ? "it is on a root bus" : "a function on its bus forbids bus resets")})");
        }

        // vfio_pci_count_devs over the bus walk.
        int count = bus.AllDevicesBelow().Count();

        if (Warn.On(Core.Kernel, count == 0, $"{HotResetInfoIoctl}: no function on the bus of {Pname}"))
        {
            return Errno.ERANGE.Negative();
        }

        uint capacity = (hdr.Argsz - VfioPciHotResetInfo.MinSz) / (uint)VfioArg.SizeOf<VfioPciDependentDevice>();
        if ((uint)count > capacity)
        {
            hdr.Count = (uint)count;
            return VfioArg.CopyOut(arg, hdr, VfioPciHotResetInfo.MinSz) != 0
                ? ErrorReason.Fail(Errno.EFAULT, $"{HotResetInfoIoctl}: cannot write the header to 0x{arg:x}")
                : ErrorReason.Fail(Errno.ENOSPC, $"{HotResetInfoIoctl}: {count} functions are affected but argsz {hdr.Argsz} holds {capacity} entries");
        }

        var devices = new VfioPciDependentDevice[count];
        int filled;
        KMutex setLock = DevSet!.Lock;
        setLock.Lock();
        try
        {
            filled = FillDependentDevicesLocked(bus, devices, out string? ungrouped);
            if (filled < 0)
            {
                // v6.1 still copied the header back (flags cleared, the caller's count).
                if (!Core.Kernel.Profile.Has(VfioPciFeatures.HotResetInfoFailedFillWritesNothing)
                    && VfioArg.CopyOut(arg, hdr, VfioPciHotResetInfo.MinSz) != 0)
                {
                    return ErrorReason.Fail(Errno.EFAULT, $"{HotResetInfoIoctl}: cannot write the header to 0x{arg:x}");
                }

                return filled == Errno.EPERM.Negative()
                    ? ErrorReason.Fail(Errno.EPERM, $"{HotResetInfoIoctl}: {ungrouped} on the bus of {Pname} has no IOMMU group, so the bus cannot be reset safely")
                    : ErrorReason.Fail((Errno)(-filled), $"{HotResetInfoIoctl}: the functions below the bus of {Pname} changed while they were listed");
            }
        }
        finally
        {
            setLock.Unlock();
        }

        ReadOnlySpan<byte> entries = MemoryMarshal.AsBytes(devices.AsSpan(0, filled));
        if (UserMemory.CopyToUser(arg + VfioPciHotResetInfo.MinSz, entries) != 0)
        {
            return ErrorReason.Fail(Errno.EFAULT, $"{HotResetInfoIoctl}: cannot write {filled} entries to 0x{arg + VfioPciHotResetInfo.MinSz:x}");
        }

        hdr.Count = (uint)filled;
        return VfioArg.CopyOut(arg, hdr, VfioPciHotResetInfo.MinSz) != 0
            ? ErrorReason.Fail(Errno.EFAULT, $"{HotResetInfoIoctl}: cannot write the header to 0x{arg:x}")
            : 0;
    }

    /// <summary>
    /// vfio_pci_fill_devs() over every function on <paramref name="bus"/> and below: group id,
    /// segment, bus number, devfn. Returns the entries filled, or -EPERM with the first
    /// function that has no IOMMU group.
    /// </summary>
    private int FillDependentDevicesLocked(PciBusSegment bus, VfioPciDependentDevice[] devices, out string? ungrouped)
    {
        DevSet!.Lock.AssertHeld();
        ungrouped = null;
        int n = 0;
        foreach (PciDevice d in bus.AllDevicesBelow())
        {
            // The bus walk found more functions than the count did: the topology changed.
            if (n == devices.Length)
            {
                return Errno.EAGAIN.Negative();
            }

            if (d.IommuGroup is not { } group)
            {
                ungrouped = d.Name;
                return Errno.EPERM.Negative();
            }

            devices[n++] = new VfioPciDependentDevice
            {
                GroupIdOrDevid = (uint)group.Id,
                Segment = (ushort)d.Domain,
                Bus = (byte)d.BusNumber,
                Devfn = (byte)d.DevFn,
            };
        }

        return n;
    }

    // ---- VFIO_DEVICE_PCI_HOT_RESET.

    /// <summary>vfio_pci_ioctl_pci_hot_reset() for a group-opened device.</summary>
    private long PciHotReset(ulong arg)
    {
        int err = VfioArg.CopyIn(arg, VfioPciHotReset.MinSz, out VfioPciHotReset hdr, HotResetIoctl);
        if (err != 0)
        {
            return err;
        }

        if (hdr.Flags != 0)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{HotResetIoctl}: flags 0x{hdr.Flags:x} (no flag is defined)");
        }

        // vfio_device_cdev_opened() is false here (no cdev path), so only a non-empty group-fd
        // array is accepted; v6.1 refused count 0 only after probing the reset.
        if (Has(VfioPciFeatures.HotResetZeroLengthFdArray) && hdr.Count == 0)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{HotResetIoctl}: count 0 (the zero-length array is the form for cdev-opened devices; {Pname} was opened through its group, so pass the group fds)");
        }

        // pci_probe_reset_slot() fails (no hotplug slots here), so the bus must be resettable.
        if (Pdev.OnBus is not { } bus || ProbeResetBus(bus) != 0)
        {
            return ErrorReason.Fail(Errno.ENODEV, $"{HotResetIoctl}: {Pname} can be reset neither by slot nor by bus ({(Pdev.OnBus is { IsRoot: true } ? "it is on a root bus" : "a function on its bus forbids bus resets")})");
        }

        return PciHotResetGroups(arg, hdr.Count, bus);
    }

    /// <summary>
    /// vfio_pci_ioctl_pci_hot_reset_groups(): a count the bus can account for (each affected
    /// function in a group of its own at most), the fds copied in, a reference on each group
    /// file for the whole reset, and every reference put again on the way out.
    /// </summary>
    private int PciHotResetGroups(ulong arg, uint arrayCount, PciBusSegment bus)
    {
        int affected = 0;
        foreach (PciDevice _ in bus.AllDevicesBelow())
        {
            affected++;
        }

        if (arrayCount == 0 || arrayCount > (uint)affected)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{HotResetIoctl}: count {arrayCount} is not between 1 and the {affected} functions the reset of {Pname} affects");
        }

        int[] fds = new int[arrayCount];
        if (UserMemory.CopyFromUser(MemoryMarshal.AsBytes(fds.AsSpan()), arg + (ulong)VfioPciHotReset.MinSz) != 0)
        {
            return ErrorReason.Fail(Errno.EFAULT, $"{HotResetIoctl}: cannot read {arrayCount} group fds at 0x{arg + (ulong)VfioPciHotReset.MinSz:x}");
        }

        // fget() each fd; the file keeps its group alive until the matching fput().
        var files = new SimFile[arrayCount];
        FdTable? table = SimProcess.Current?.Files;
        int taken = 0;
        int ret = 0;
        for (; taken < files.Length; taken++)
        {
            SimFile? file = table?.Get(fds[taken]);
            if (file is null)
            {
                ret = ErrorReason.Fail(Errno.EBADF, $"{HotResetIoctl}: group_fds[{taken}] = {fds[taken]} is not an open fd");
                break;
            }

            if (!VfioFile.IsGroup(file))
            {
                string path = file.Path;
                file.Put();
                ret = ErrorReason.Fail(Errno.EINVAL, $"{HotResetIoctl}: group_fds[{taken}] = {fds[taken]} ({path}) is not a vfio group fd");
                break;
            }

            files[taken] = file;
        }

        try
        {
            return ret != 0 ? ret : DevSetHotReset(DevSet!, files);
        }
        finally
        {
            for (int i = taken - 1; i >= 0; i--)
            {
                files[i].Put();
            }
        }
    }

    /// <summary>
    /// vfio_pci_dev_set_hot_reset() with a group list: under dev_set-&gt;lock, the set must
    /// cover the reset, every device must be in a passed group and give up its BAR mappings
    /// and its memory_lock (try-locks, undone on contention), then the bus is reset with every
    /// device in D0.
    /// </summary>
    private static int DevSetHotReset(VfioDeviceSet set, SimFile[] groups)
    {
        set.Lock.Lock();
        try
        {
            return DevSetHotResetLocked(set, groups);
        }
        finally
        {
            set.Lock.Unlock();
        }
    }

    /// <summary>The body of <see cref="DevSetHotReset"/>: the caller holds dev_set-&gt;lock (tests drive the walk at a chosen moment).</summary>
    internal static int DevSetHotResetLocked(VfioDeviceSet set, SimFile[] groups)
    {
        set.Lock.AssertHeld();
        if (ResettableLocked(set) is not { } pdev)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{HotResetIoctl}: {NotResettableReasonLocked(set)}");
        }

        IReadOnlyList<VfioDevice> devices = set.DevicesLocked;
        var vdevs = new VfioPciCoreDevice[devices.Count];
        for (int i = 0; i < vdevs.Length; i++)
        {
            if (devices[i] is not VfioPciCoreDevice v)
            {
                Warn.On(pdev.Machine.Kernel, true, $"{HotResetIoctl}: {devices[i].Name} is in a vfio-pci device set but is not a vfio-pci device");
                return Errno.EINVAL.Negative();
            }

            vdevs[i] = v;
        }

        // Functions of the set may be runtime-suspended (D3hot): resume and count every one
        // of them for the reset (its errno when one cannot be resumed, nothing left held).
        int ret = DevSetPmRuntimeGetLocked(set);
        if (ret != 0)
        {
            return ret;
        }

        ret = vdevs[0].UsesVmaList ? HotResetVmaListLocked(vdevs, groups, pdev) : HotResetLocked(vdevs, groups, pdev);
        DevSetPmRuntimePutLocked(set);
        return ret;
    }

    /// <summary>
    /// The v6.10+ loop: per device in set order, in the groups (EINVAL), memory_lock try-locked
    /// for write (EBUSY), BARs zapped; then D0 and pci_reset_bus; memory_locks released in
    /// reverse. A failure releases exactly the memory_locks taken before it.
    /// </summary>
    private static int HotResetLocked(VfioPciCoreDevice[] vdevs, SimFile[] groups, PciDevice pdev)
    {
        vdevs[0].DevSet!.Lock.AssertHeld();
        int locked = 0;
        int ret = 0;
        for (; locked < vdevs.Length; locked++)
        {
            VfioPciCoreDevice v = vdevs[locked];
            if (!InGroups(v, groups))
            {
                ret = NotOwned(v, groups);
                break;
            }

            if (!v.MemoryLock.DownWriteTrylock())
            {
                ret = MemoryLockBusy(v);
                break;
            }

            if (v.BlocksMmio)
            {
                v.ZapBarsLocked();
            }
        }

        if (ret == 0)
        {
            ret = ResetBusLocked(vdevs, pdev);
        }

        for (int i = locked - 1; i >= 0; i--)
        {
            vdevs[i].MemoryLock.UpWrite();
        }

        return ret;
    }

    /// <summary>
    /// The v5.8–v6.9 loops: first, per device, in the groups (EINVAL) and zapped with its
    /// vma_lock kept (try-locks; EBUSY); then every memory_lock try-locked for write (EBUSY),
    /// dropping that device's vma_lock. The unwind releases memory_lock on the devices the
    /// second loop reached and vma_lock on the ones only the first did.
    /// </summary>
    private static int HotResetVmaListLocked(VfioPciCoreDevice[] vdevs, SimFile[] groups, PciDevice pdev)
    {
        vdevs[0].DevSet!.Lock.AssertHeld();
        int vmaLocked = 0;
        int memLocked = 0;
        int ret = 0;
        for (; vmaLocked < vdevs.Length; vmaLocked++)
        {
            VfioPciCoreDevice v = vdevs[vmaLocked];
            if (!InGroups(v, groups))
            {
                ret = NotOwned(v, groups);
                break;
            }

            if (!v.TryZapAndVmaLock())
            {
                ret = ErrorReason.Fail(Errno.EBUSY, $"{HotResetIoctl}: the vma_lock of {v.Pname} (or the mmap_lock of a process mapping it) is held by a fault or a zap in flight; try again");
                break;
            }
        }

        if (ret == 0)
        {
            for (; memLocked < vdevs.Length; memLocked++)
            {
                VfioPciCoreDevice v = vdevs[memLocked];
                if (!v.MemoryLock.DownWriteTrylock())
                {
                    ret = MemoryLockBusy(v);
                    break;
                }

                v._vmaLock.Unlock();
            }
        }

        if (ret == 0)
        {
            ret = ResetBusLocked(vdevs, pdev);
        }

        for (int i = 0; i < vmaLocked; i++)
        {
            if (i < memLocked)
            {
                vdevs[i].MemoryLock.UpWrite();
            }
            else
            {
                vdevs[i]._vmaLock.Unlock();
            }
        }

        return ret;
    }

    /// <summary>Every device of the set to D0 (vfio_pci_set_power_state), then pci_reset_bus. The caller holds every memory_lock for write.</summary>
    private static int ResetBusLocked(VfioPciCoreDevice[] vdevs, PciDevice pdev)
    {
        vdevs[0].DevSet!.Lock.AssertHeld();
        foreach (VfioPciCoreDevice v in vdevs)
        {
            v.MemoryLock.AssertHeldWrite();
            v.SetPowerStateD0();
        }

        int rc = PciResetBus(pdev);
        return rc == Errno.EAGAIN.Negative()
            ? ErrorReason.Fail(Errno.EAGAIN, $"{HotResetIoctl}: a PCI device lock on or above the bus of {pdev.Name} is held (an unbind, a reset or a sysfs access in progress); try again")
            : rc;
    }

    /// <summary>vfio_dev_in_groups(): one of the passed files is the group file of <paramref name="v"/>'s group (vfio_file_has_dev).</summary>
    private static bool InGroups(VfioPciCoreDevice v, SimFile[] groups)
    {
        foreach (SimFile f in groups)
        {
            if (VfioFile.HasDev(f, v))
            {
                return true;
            }
        }

        return false;
    }

    private static int NotOwned(VfioPciCoreDevice v, SimFile[] groups)
        => ErrorReason.Fail(Errno.EINVAL, $"{HotResetIoctl}: {v.Pname} is reset with the bus but its group {v.Group?.Name} is not among the {groups.Length} group fds passed");

    private static int MemoryLockBusy(VfioPciCoreDevice v)
        => ErrorReason.Fail(Errno.EBUSY, $"{HotResetIoctl}: the memory_lock of {v.Pname} is held (a BAR access, fault or COMMAND write in flight); try again");

    /// <summary>Why <see cref="ResettableLocked"/> found no function to reset (for the error reason).</summary>
    private static string NotResettableReasonLocked(VfioDeviceSet set)
    {
        set.Lock.AssertHeld();
        if (set.DevicesLocked.Count == 0 || set.DevicesLocked[0] is not VfioPciCoreDevice first || first.Pdev.OnBus is not { } bus || ProbeResetBus(bus) != 0)
        {
            return "the device set cannot be reset by slot or bus";
        }

        foreach (PciDevice other in bus.AllDevicesBelow())
        {
            if (set.FindDeviceLocked(other) is null)
            {
                return $"{other.Name} is reset with the bus of {first.Pname} but is not a vfio-pci device of its set ({(other.Driver is { } drv ? $"bound to {drv.Name}" : "no driver")})";
            }
        }

        return "the device set cannot be reset";
    }

    /// <summary>For tests: nobody holds vma_lock (a failed hot reset gave back every one it took).</summary>
    internal bool VmaLockIsFree
    {
        get
        {
            if (!_vmaLock.TryLock())
            {
                return false;
            }

            _vmaLock.Unlock();
            return true;
        }
    }

    /// <summary>
    /// vfio_pci_zap_and_vma_lock(vdev, true), the v5.8–v6.9 try variant: empty vma_list one mm
    /// at a time with vma_lock and that mm's mmap_lock only try-locked; true with vma_lock held
    /// and the list empty, false (nothing held) on contention.
    /// </summary>
    private bool TryZapAndVmaLock()
    {
        // A member of the set whose driver already destroyed vma_lock (the ≤v6.0 teardown
        // order, VfioDesign.TeardownBeforeLeavingDeviceSet) is still on the list the hot
        // reset walks: this try-lock is the first touch of the torn-down state.
        Core.Kernel.Kasan.Check(_vmaLock, "vfio_pci_zap_and_vma_lock");
        while (true)
        {
            if (!_vmaLock.TryLock())
            {
                return false;
            }

            if (!BlocksMmio)
            {
                return true;
            }

            MmStruct? mm = null;
            while (_vmaList.Count != 0)
            {
                if (_vmaList[0].Mm.GetNotZero())
                {
                    mm = _vmaList[0].Mm;
                    break;
                }

                _vmaList.RemoveAt(0);
            }

            if (mm is null)
            {
                return true;
            }

            _vmaLock.Unlock();
            if (!mm.MmapLock.DownReadTrylock())
            {
                mm.Put();
                return false;
            }

            if (!_vmaLock.TryLock())
            {
                mm.MmapLock.UpRead();
                mm.Put();
                return false;
            }

            for (int i = _vmaList.Count - 1; i >= 0; i--)
            {
                Vma vma = _vmaList[i];
                if (vma.Mm == mm)
                {
                    _vmaList.RemoveAt(i);
                    vma.ZapPfnRange(vma.Start, vma.Length);
                }
            }

            _vmaLock.Unlock();
            mm.MmapLock.UpRead();
            mm.Put();
        }
    }
}
