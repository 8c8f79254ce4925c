// Models the vfio_device life cycle of drivers/vfio/vfio_main.c (v6.12): allocation with
// init/release ops and the device index, device sets, registration (the registration
// refcount and its completion, the vfio-dev/vfioN sysfs node), first open / last close
// under the device-set lock, the emulated-IOMMU helpers (pin/unpin/dma_rw), and
// vfio_unregister_group_dev, which blocks until the last user is gone.
//
// Two counts: the struct device reference (alloc = 1, vfio_put_device drops it, the last
// put runs ops->release and frees the device), and the registration refcount (1 from
// registration, +1 per open fd; 0 fires the completion the unregister path waits on). An
// open fd holds only the registration count, so the unregister wait is what keeps the
// device's memory alive under it: the NoWait design variant skips the wait, the driver's
// put frees the device (poisoned for KASAN), and the fd's next use is a use-after-free.
// The last put leaves the device set before the driver's release runs (v6.1); the
// TeardownBeforeLeavingDeviceSet variant brings back the ≤v6.0 order (release first).

using Vfio.Kernel;
using Vfio.Platform.Base;
using Vfio.Platform.Fs;
using Vfio.Platform.Proc;

namespace Vfio.Core;

/// <summary>struct vfio_device: drivers derive their device type from it (container_of in the kernel).</summary>
public class VfioDevice
{
    private KRef _ref = null!;
    private RefCount _registration = null!;
    private Completion _comp = null!;
    private int _openCount;
    private KSpinLock _filesLock = null!;
    private readonly List<VfioDeviceFile> _files = [];
    private VfsDir? _sysfsDir;
    private bool _released;

    /// <summary>For drivers' derived types; instances come from <see cref="Alloc{T}"/>.</summary>
    protected VfioDevice()
    {
    }

    /// <summary>The vfio core.</summary>
    public VfioCore Core { get; private set; } = null!;

    /// <summary>device-&gt;dev: the parent (bus) device.</summary>
    public SimDevice Dev { get; private set; } = null!;

    /// <summary>device-&gt;ops.</summary>
    public IVfioDeviceOps Ops { get; private set; } = null!;

    /// <summary>device-&gt;index: the N of vfioN.</summary>
    public int Index { get; private set; }

    /// <summary>"vfioN".</summary>
    public string Name => "vfio" + VfioCore.Dec(Index);

    /// <summary>device-&gt;group (set by registration).</summary>
    public VfioGroup? Group { get; internal set; }

    /// <summary>device-&gt;dev_set.</summary>
    public VfioDeviceSet? DevSet { get; private set; }

    /// <summary>device-&gt;kvm: the KVM the device was opened with (held from first open to last close).</summary>
    public IVfioKvm? Kvm { get; internal set; }

    // The core holds a VM reference for Kvm (v6.3+), or only passed the pointer on (before).
    private bool _kvmReferenced;

    /// <summary>The registration refcount (0 until registered; +1 per open fd).</summary>
    internal int RegistrationCount => _registration.Value;

    /// <summary>The struct device reference count.</summary>
    internal int ReferenceCount => _ref.Read();

    /// <summary>The count without a scheduling point (refcount_read is one): for the object graph, which must not yield.</summary>
    internal int ReferenceCountValue => _ref.RefCount.Value;

    /// <summary>open_count without the lock (for the device set's sum, which holds the set lock).</summary>
    internal int OpenCountUnlocked => Volatile.Read(ref _openCount);

    /// <summary>device-&gt;open_count (the caller holds the device set's lock).</summary>
    public int OpenCountLocked
    {
        get
        {
            DevSet!.Lock.AssertHeld();
            return _openCount;
        }
    }

    /// <summary>True after the last <see cref="PutDevice"/>.</summary>
    public bool IsReleased => Volatile.Read(ref _released);

    /// <summary>The kernel's name for the driver's device structure, as a KASAN report names the freed object (<c>vfio_pci_core_device</c>).</summary>
    protected virtual string KernelTypeName => "vfio_device";

    /// <summary>
    /// KASAN at a dereference of this device through a pointer that does not hold it (a
    /// device fd, a VMA's private data): a kernel BUG when the device was already freed.
    /// </summary>
    public void KasanCheck(string function) => Core.Kernel.Kasan.Check(this, function);

    internal int OpenFileCount
    {
        get
        {
            _filesLock.Lock();
            try
            {
                return _files.Count;
            }
            finally
            {
                _filesLock.Unlock();
            }
        }
    }

    // ---- Allocation and release.

    /// <summary>
    /// vfio_alloc_device(): a new device of type <typeparamref name="T"/> for
    /// <paramref name="dev"/>, or null with <paramref name="error"/> (-ENOMEM, -ENOSPC, or
    /// the error of ops-&gt;init). The caller owns one reference (<see cref="PutDevice"/>).
    /// </summary>
    public static T? Alloc<T>(SimDevice dev, IVfioDeviceOps ops, Func<T> create, out int error)
        where T : VfioDevice
    {
        ArgumentNullException.ThrowIfNull(dev);
        ArgumentNullException.ThrowIfNull(ops);
        ArgumentNullException.ThrowIfNull(create);
        VfioCore core = VfioCore.Of(dev.Machine);
        error = 0;
        if (core.Kernel.Faults.ShouldFail("kzalloc:vfio_device"))
        {
            error = Errno.ENOMEM.Negative();
            return null;
        }

        int index = core.DeviceIndexes.Alloc();
        if (index >= VfioCore.MaxMinors)
        {
            core.DeviceIndexes.Free(index);
            error = Errno.ENOSPC.Negative();
            return null;
        }

        T device = create();
        device.Core = core;
        device.Dev = dev;
        device.Ops = ops;
        device.Index = index;
        SimKernel k = core.Kernel;
        string n = "vfio" + VfioCore.Dec(index);
        device._ref = new KRef(k, $"{n}.dev.kobj");
        device._registration = new RefCount(k, $"{n}.refcount", 0) { OnTimeline = true };
        device._comp = new Completion(k, $"{n}.comp");
        device._filesLock = new KSpinLock(k, $"{n}.files");
        if ((ops.Provides & VfioOps.Init) != 0)
        {
            int err = ops.Init(device);
            if (err != 0)
            {
                core.DeviceIndexes.Free(index);
                error = err;
                return null;
            }
        }

        return device;
    }

    /// <summary>
    /// vfio_put_device(): the last reference leaves the device set, frees the index and calls
    /// ops-&gt;release (v6.1+); with <see cref="VfioDesign.TeardownBeforeLeavingDeviceSet"/>, the
    /// ≤v6.0 order: the driver's teardown first, the device still on its set, then the set.
    /// </summary>
    public void PutDevice() => _ref.Put(ReleaseDevice);

    private void ReleaseDevice()
    {
        bool releaseFirst = Core.Design.TeardownBeforeLeavingDeviceSet;
        if (releaseFirst && (Ops.Provides & VfioOps.Release) != 0)
        {
            // ≤v6.0: the driver's uninit (vfio_pci_core_uninit_device) destroyed its state and
            // only then called vfio_uninit_group_dev, which took the device out of its set.
            Ops.Release(this);
        }

        if (DevSet is { } set)
        {
            // vfio_release_device_set(): off the set's list under its lock.
            set.Lock.Lock();
            set.RemoveLocked(this);
            set.Lock.Unlock();
            Core.ReleaseDeviceSetMember(set);
            DevSet = null;
        }

        Core.DeviceIndexes.Free(Index);
        if (!releaseFirst && (Ops.Provides & VfioOps.Release) != 0)
        {
            Ops.Release(this);
        }

        Volatile.Write(ref _released, true);

        // kvfree(device): the driver's structure embeds the vfio_device, so this is its free too.
        Core.Kernel.Kasan.Free(this, $"{KernelTypeName} {Name} ({Dev.Name})", "vfio_device_release");
    }

    /// <summary>vfio_assign_device_set(): joins (or creates) the set keyed by <paramref name="setId"/>.</summary>
    public int AssignDeviceSet(object setId)
    {
        if (Warn.On(Core.Kernel, setId is null, "vfio_assign_device_set: NULL set_id"))
        {
            return Errno.EINVAL.Negative();
        }

        VfioDeviceSet set = Core.DeviceSetFor(setId!);
        set.Lock.Lock();
        try
        {
            DevSet = set;
            set.AddLocked(this);
        }
        finally
        {
            set.Lock.Unlock();
        }

        return 0;
    }

    // ---- Registration.

    /// <summary>vfio_register_group_dev(): a device behind a real IOMMU group (or noiommu). 0 or -errno.</summary>
    public int RegisterGroupDev() => Register(VfioGroupType.Iommu);

    /// <summary>vfio_register_emulated_iommu_dev(): a device whose driver translates through vfio_pin_pages/vfio_dma_rw; always a new software group.</summary>
    public int RegisterEmulatedIommuDev() => Register(VfioGroupType.EmulatedIommu);

    private int Register(VfioGroupType type)
    {
        if (DevSet is null)
        {
            AssignDeviceSet(this);
        }

        int err = VfioGroup.SetGroup(this, type);
        if (err != 0)
        {
            return err;
        }

        DeviceAdd();
        _registration.Set(1);
        Group!.RegisterDevice(this);
        Core.Kernel.Trace.Event(KTask.CurrentOrNull, "vfio_register_dev", Name, $"{Dev.Name} group {Group.Name}");
        return 0;
    }

    private void DeviceAdd()
    {
        var fs = Core.Machine.Sysfs;
        if (Dev.SysfsDir is { } parent)
        {
            VfsDir holder = fs.GetOrCreateDir(parent, "vfio-dev");
            _sysfsDir = fs.CreateDir(holder, Name);
            if (_sysfsDir is not null)
            {
                fs.CreateLink(Core.ClassVfioDev, Name, _sysfsDir);
            }
        }
    }

    private void DeviceDel()
    {
        if (_sysfsDir is null)
        {
            return;
        }

        var fs = Core.Machine.Sysfs;
        fs.RemoveLink(Core.ClassVfioDev, Name);
        fs.Remove(_sysfsDir);
        _sysfsDir = null;
    }

    /// <summary>vfio_device_try_get_registration().</summary>
    internal bool TryGetRegistration() => _registration.IncNotZero();

    /// <summary>vfio_device_put_registration(): the last one completes the unregister wait.</summary>
    internal void PutRegistration()
    {
        if (_registration.DecAndTest())
        {
            _comp.Complete();
        }
    }

    /// <summary>
    /// vfio_device_pm_runtime_get(): when the bound driver does runtime PM (dev-&gt;driver-&gt;pm),
    /// the device is resumed and counted for the ioctl; 0, or -EIO when it cannot be resumed.
    /// Drivers without PM ops (mdev vendor drivers) are not touched.
    /// </summary>
    internal int PmRuntimeGet()
    {
        if (Dev.Driver?.Pm is null)
        {
            return 0;
        }

        int ret = Dev.Power.ResumeAndGet();
        if (ret != 0)
        {
            DevInfo($"vfio: runtime resume failed {ret}");
            return ErrorReason.Fail(Errno.EIO, $"{Dev.Name} cannot be runtime-resumed for the ioctl ({ErrnoExtensions.FromReturn(ret).Describe()})");
        }

        return 0;
    }

    /// <summary>vfio_device_pm_runtime_put(): drops the ioctl's count; the idle device may suspend.</summary>
    internal void PmRuntimePut()
    {
        if (Dev.Driver?.Pm is not null)
        {
            Dev.Power.Put();
        }
    }

    /// <summary>
    /// vfio_unregister_group_dev(): stops new opens, then waits until every fd is closed,
    /// asking the driver to have user space release the device (request(count)) every
    /// 10 s. A signal to the waiting task is logged and the wait becomes uninterruptible.
    /// The order follows the profile (<see cref="VfioCoreFeatures.UnregisterHidesDeviceBeforeWaiting"/>):
    /// v6.6+ stops new opens first; earlier kernels drop the registration and wait while the
    /// device can still be found. The <see cref="VfioUnbindPolicy.NoWait"/> design hides the
    /// device, drops the registration and goes on without waiting.
    /// </summary>
    public void UnregisterGroupDev()
    {
        bool hideFirst = Core.Design.Unbind == VfioUnbindPolicy.NoWait || Core.Kernel.Profile.Has(VfioCoreFeatures.UnregisterHidesDeviceBeforeWaiting);
        if (hideFirst)
        {
            Group!.UnregisterDevice(this);
            DeviceDel();
        }

        PutRegistration();
        WaitForUsers();
        if (!hideFirst)
        {
            Group!.UnregisterDevice(this);
            DeviceDel();
        }

        Core.Kernel.Trace.Event(KTask.CurrentOrNull, "vfio_unregister_dev", Name, Dev.Name);
        VfioGroup.RemoveGroup(this);
    }

    private void WaitForUsers()
    {
        VfioDesign design = Core.Design;
        if (_comp.TryWait())
        {
            return;
        }

        if (design.Unbind == VfioUnbindPolicy.NoWait)
        {
            // The proposal: the user's fds keep only their registration counts, which nothing
            // waits for; the device's memory goes with the driver's vfio_put_device.
            Core.Kernel.Trace.Event(KTask.CurrentOrNull, "vfio_unregister_nowait", Name, $"{RegistrationCount} fd(s) still open");
            return;
        }

        if (design.Unbind == VfioUnbindPolicy.SilentBlock)
        {
            _comp.Wait();
            return;
        }

        uint i = 0;
        bool interrupted = false;
        const long slice = 10 * SimClock.HZ; // HZ * 10

        // The revoke deadline counts in jiffies, as the slices do: each timed-out slice ends
        // on a jiffy boundary, so counting nanoseconds from a start between two jiffies would
        // find the third 10 s slice a fraction short of 30 s and wait a fourth.
        long start = Core.Kernel.Clock.Jiffies;
        long revokeAfter = (long)Math.Ceiling(design.RevokeAfter.TotalNanoseconds / SimClock.NsPerJiffy);
        while (true)
        {
            if (design.Unbind == VfioUnbindPolicy.RequestThenRevoke && Core.Kernel.Clock.Jiffies - start >= revokeAfter)
            {
                RevokeAll();
                _comp.Wait();
                return;
            }

            if ((Ops.Provides & VfioOps.Request) != 0)
            {
                Ops.Request(this, i++);
            }

            long rc;
            if (interrupted)
            {
                rc = _comp.WaitTimeout(slice);
            }
            else
            {
                rc = _comp.WaitInterruptibleTimeout(slice);
                if (rc < 0)
                {
                    interrupted = true;
                    (string comm, int pid) = CurrentTaskIdentity();
                    DevWarn($"Device is currently in use, task \"{comm}\" ({pid}) blocked until device is released");
                }
            }

            if (rc > 0)
            {
                return;
            }
        }
    }

    internal static (string Comm, int Pid) CurrentTaskIdentity()
        => SimProcess.Current is { } p ? (p.Comm, p.Pid) : KTask.CurrentOrNull is { } t ? (t.Comm, t.Id) : ("?", 0);

    /// <summary>dev_warn(device-&gt;dev, ...): "&lt;driver&gt; &lt;device&gt;: message".</summary>
    public void DevWarn(string message)
        => Core.Kernel.Log.Warn($"{Dev.Driver?.Name ?? Ops.Name} {Dev.Name}: {message}");

    /// <summary>dev_info(device-&gt;dev, ...).</summary>
    public void DevInfo(string message)
        => Core.Kernel.Log.Info($"{Dev.Driver?.Name ?? Ops.Name} {Dev.Name}: {message}");

    // ---- Open / close (vfio_df_open / vfio_df_close), caller holds group_lock and dev_set->lock.

    internal int DfOpenLocked(VfioDeviceFile df)
    {
        DevSet!.Lock.AssertHeld();
        if (_openCount != 0 && df.Group is null)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{Name}: the cdev path opens a device once");
        }

        _openCount++;
        if (_openCount == 1)
        {
            int err = FirstOpenLocked();
            if (err != 0)
            {
                _openCount--;
                return err;
            }
        }

        return 0;
    }

    private int FirstOpenLocked()
    {
        DevSet!.Lock.AssertHeld();
        // try_module_get(driver->owner): a driver being unloaded (unregistered) cannot open.
        if (Dev.Driver is not { IsRegistered: true })
        {
            return ErrorReason.Fail(Errno.ENODEV, $"VFIO_GROUP_GET_DEVICE_FD: the driver of {Dev.Name} is being unloaded");
        }

        VfioGroup group = Group!;
        int err = group.UseContainerLocked();
        if (err != 0)
        {
            return err;
        }

        group.Container!.RegisterDevice(this);
        if ((Ops.Provides & VfioOps.OpenDevice) != 0)
        {
            ErrorReason.Clear();
            err = Ops.OpenDevice(this);
            if (err != 0)
            {
                group.Container!.UnregisterDevice(this);
                group.UnuseContainerLocked();
                return ErrorReason.Current is null ? ErrorReason.Fail(ErrnoExtensions.FromReturn(err), $"VFIO_GROUP_GET_DEVICE_FD: {Ops.Name} failed to open {Dev.Name}") : err;
            }
        }

        return 0;
    }

    internal void DfCloseLocked()
    {
        DevSet!.Lock.AssertHeld();
        if (!AssertDeviceOpen())
        {
            return;
        }

        if (_openCount == 1)
        {
            if ((Ops.Provides & VfioOps.CloseDevice) != 0)
            {
                Ops.CloseDevice(this);
            }

            VfioGroup group = Group!;
            group.Container!.UnregisterDevice(this);
            group.UnuseContainerLocked();
        }

        _openCount--;
    }

    /// <summary>vfio_assert_device_open(): WARNs and returns false when the device is not open.</summary>
    public bool AssertDeviceOpen() => !Warn.On(Core.Kernel, Volatile.Read(ref _openCount) == 0, $"{Name}: device not open");

    internal void GetKvmFromGroupLocked()
    {
        DevSet!.Lock.AssertHeld();
        VfioGroup group = Group!;
        if (Core.Design.KvmLocking != VfioKvmLocking.KvmRefLock)
        {
            // Before v6.3: the pointer is handed over under the group lock, without a
            // reference; a driver that uses the VM takes its own in open_device.
            group.GroupLock.AssertHeld();
            Kvm = group.Kvm;
            _kvmReferenced = false;
            return;
        }

        _kvmReferenced = true;
        group.KvmRefLock.Lock();
        try
        {
            if (group.Kvm is { } kvm && kvm.TryGet())
            {
                Kvm = kvm;
            }
        }
        finally
        {
            group.KvmRefLock.Unlock();
        }
    }

    internal void PutKvm()
    {
        IVfioKvm? kvm = Kvm;
        Kvm = null;
        if (_kvmReferenced)
        {
            kvm?.Put();
        }
    }

    // ---- Open files (for revocation).

    internal void AddFile(VfioDeviceFile df)
    {
        _filesLock.Lock();
        _files.Add(df);
        _filesLock.Unlock();
    }

    internal void RemoveFile(VfioDeviceFile df)
    {
        _filesLock.Lock();
        _files.Remove(df);
        _filesLock.Unlock();
    }

    /// <summary>
    /// The revoke design: every open fd of the device is closed on the user's behalf (the
    /// driver's close_device runs, the container is released, the registration reference
    /// dropped) and marked so that any later access fails with ENODEV.
    /// </summary>
    private void RevokeAll()
    {
        _filesLock.Lock();
        VfioDeviceFile[] files = [.. _files];
        _filesLock.Unlock();
        foreach (VfioDeviceFile df in files)
        {
            if (df.Revoke())
            {
                (string comm, int pid) = (df.OwnerComm, df.OwnerPid);
                DevWarn($"Revoked access of task \"{comm}\" ({pid}) after {Core.Design.RevokeAfter.TotalSeconds:0} s");
            }
        }
    }

    // ---- Emulated-IOMMU access (container.c).

    /// <summary>VFIO_PIN_PAGES_MAX_ENTRIES.</summary>
    public const int PinPagesMaxEntries = 512;

    /// <summary>vfio_pin_pages(): pins <paramref name="pfns"/>.Length pages from <paramref name="iova"/>; the count or -errno.</summary>
    public int PinPages(ulong iova, int prot, Span<ulong> pfns)
    {
        if (pfns.Length == 0 || !AssertDeviceOpen())
        {
            return Errno.EINVAL.Negative();
        }

        // A driver that pins must be able to hear about unmaps, or it would hold pages forever
        // (v6.6; before, only type1's "no device with dma_unmap in the container" caught it).
        if ((Ops.Provides & VfioOps.DmaUnmap) == 0 && Core.Kernel.Profile.Has(VfioCoreFeatures.PinPagesNeedDmaUnmapOp))
        {
            return ErrorReason.Fail(Errno.EINVAL, $"vfio_pin_pages: {Name} ({Ops.Name}) has no dma_unmap op");
        }

        if (pfns.Length > PinPagesMaxEntries)
        {
            return Errno.E2BIG.Negative();
        }

        VfioContainer c = Group!.Container!;
        return c.IommuDriver is { } d ? d.PinPages(c.IommuData, Group.IommuGroupUnchecked!, iova, prot, pfns) : Errno.ENOTTY.Negative();
    }

    /// <summary>vfio_unpin_pages().</summary>
    public void UnpinPages(ulong iova, int npage)
    {
        // The kernel's order: the device must be open, then (v6.6+) have dma_unmap, then the
        // container path checks npage. Each is a WARN and a no-op.
        if (!AssertDeviceOpen()
            || Warn.On(Core.Kernel, (Ops.Provides & VfioOps.DmaUnmap) == 0 && Core.Kernel.Profile.Has(VfioCoreFeatures.PinPagesNeedDmaUnmapOp), $"vfio_unpin_pages: {Name} has no dma_unmap op")
            || Warn.On(Core.Kernel, npage <= 0 || npage > PinPagesMaxEntries, $"vfio_unpin_pages: npage {npage}"))
        {
            return;
        }

        VfioContainer c = Group!.Container!;
        c.IommuDriver!.UnpinPages(c.IommuData, iova, npage);
    }

    /// <summary>vfio_dma_rw(): CPU access to the device's IOVA space; 0 or -errno.</summary>
    public int DmaRw(ulong iova, Span<byte> data, bool write)
    {
        if (data.Length == 0 || !AssertDeviceOpen())
        {
            return Errno.EINVAL.Negative();
        }

        VfioContainer c = Group!.Container!;
        return c.IommuDriver is { } d ? d.DmaRw(c.IommuData, iova, data, write) : Errno.ENOTTY.Negative();
    }

    /// <inheritdoc/>
    public override string ToString() => $"{Name} ({Dev.Name})";
}
