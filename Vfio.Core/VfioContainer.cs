// Models drivers/vfio/container.c (v6.12): the container behind /dev/vfio/vfio, group
// attach/detach with the DMA-ownership claim, CHECK_EXTENSION / SET_IOMMU over the list
// of IOMMU backends, the pass-through of backend ioctls, and the noiommu backend.
//
// A container lives while its fd or any attached group holds its kref, so container,
// group and device fds close in any order. Its group_lock (an rwsem) nests inside the
// groups' group_lock and outside vfio.iommu_drivers_lock.

using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Fs;
using Vfio.Platform.Iommu;
using Vfio.Platform.Proc;

namespace Vfio.Core;

/// <summary>struct vfio_container.</summary>
public sealed class VfioContainer
{
    private static readonly KernelIdSpace s_ids = new("vfio_container");
    private readonly KRef _kref;
    private readonly List<VfioGroup> _groups = [];

    internal VfioContainer(VfioCore core)
    {
        Core = core;
        Id = core.Kernel.NextId(s_ids);
        _kref = new KRef(core.Kernel, $"vfio_container[{Id}].kref");
        _kref.RefCount.OnTimeline = true; // The container's users, as a timeline counter.
        GroupLock = new RwSemaphore(core.Kernel, $"vfio_container[{Id}].group_lock", VfioCore.ContainerLockClass);
    }

    /// <summary>The vfio core.</summary>
    public VfioCore Core { get; }

    /// <summary>An id for names, numbered from 1 in each kernel.</summary>
    public long Id { get; }

    /// <summary>container-&gt;group_lock: protects the group list and the backend.</summary>
    internal RwSemaphore GroupLock { get; }

    /// <summary>container-&gt;iommu_driver (under group_lock).</summary>
    internal IVfioIommuDriver? IommuDriver { get; private set; }

    /// <summary>container-&gt;iommu_data (under group_lock).</summary>
    public object? IommuData { get; private set; }

    /// <summary>container-&gt;noiommu.</summary>
    internal bool NoIommu { get; private set; }

    /// <summary>True once SET_IOMMU chose a backend.</summary>
    internal bool HasIommuDriver => IommuDriver is not null;

    /// <summary>The kref count, for leak checks.</summary>
    internal int ReferenceCount => _kref.Read();

    /// <summary>The count without a scheduling point (refcount_read is one): for the object graph, which must not yield.</summary>
    internal int ReferenceCountValue => _kref.RefCount.Value;

    /// <summary>The attached groups, read without group_lock: only when no task runs (the object graph's snapshot).</summary>
    internal IReadOnlyList<VfioGroup> GroupsUnlocked => [.. _groups];

    /// <summary>The attached groups, a snapshot.</summary>
    internal IReadOnlyList<VfioGroup> Groups
    {
        get
        {
            GroupLock.DownRead();
            try
            {
                return [.. _groups];
            }
            finally
            {
                GroupLock.UpRead();
            }
        }
    }

    /// <summary>vfio_container_from_file(): the container behind a /dev/vfio/vfio file, or null.</summary>
    internal static VfioContainer? FromFile(SimFile file) => file.Ops is VfioContainerFops ? (VfioContainer?)file.PrivateData : null;

    internal void Get() => _kref.Get();

    internal void Put() => _kref.Put(() =>
    {
        Core.Kernel.Trace.Event(KTask.CurrentOrNull, "vfio_container_release", $"container {Id}");

        // kfree(container): a stale pointer to it (an unchecked external user's) is a use-after-free.
        Core.Kernel.Kasan.Free(this, $"vfio_container {Id}");
    });

    private bool DriverAllowed(IVfioIommuDriver driver) => NoIommu == (driver == Core.NoIommuDriver);

    // ---- Ioctls.

    internal long Ioctl(uint cmd, ulong arg)
    {
        switch (cmd)
        {
            case VfioIoctl.GetApiVersion:
                return VfioExtension.ApiVersion;
            case VfioIoctl.CheckExtension:
                return CheckExtension(arg);
            case VfioIoctl.SetIommu:
                return SetIommu(arg);
            default:
                IVfioIommuDriver? driver = IommuDriver;
                return driver is null
                    ? ErrorReason.Fail(Errno.EINVAL, $"{VfioIoctl.Name(cmd, "container")}: the container has no IOMMU driver (VFIO_SET_IOMMU first)")
                    : driver.Ioctl(IommuData, cmd, arg);
        }
    }

    /// <summary>vfio_container_ioctl_check_extension().</summary>
    internal long CheckExtension(ulong arg) => CheckExtension(arg, null);

    /// <summary>
    /// vfio_container_ioctl_check_extension(), reached from <paramref name="caller"/> through a
    /// pointer that may be stale (an external user's): the dereference is checked by KASAN.
    /// </summary>
    internal long CheckExtension(ulong arg, string? caller)
    {
        long ret = 0;
        GroupLock.DownRead();
        try
        {
            if (caller is not null)
            {
                Core.Kernel.Kasan.Check(this, caller);
            }

            if (IommuDriver is { } driver)
            {
                ret = driver.Ioctl(IommuData, VfioIoctl.CheckExtension, arg);
            }
            else
            {
                Core.DriversLock.Lock();
                try
                {
                    foreach (IVfioIommuDriver d in Core.DriversLocked)
                    {
                        if (_groups.Count > 0 && !DriverAllowed(d))
                        {
                            continue;
                        }

                        ret = d.Ioctl(null, VfioIoctl.CheckExtension, arg);
                        if (ret > 0)
                        {
                            break;
                        }
                    }
                }
                finally
                {
                    Core.DriversLock.Unlock();
                }
            }

            // up_read() touches the rwsem inside the container: freed meanwhile, a use-after-free too.
            if (caller is not null)
            {
                Core.Kernel.Kasan.Check(this, caller);
            }

            return ret;
        }
        finally
        {
            GroupLock.UpRead();
        }
    }

    /// <summary>vfio_ioctl_set_iommu().</summary>
    private long SetIommu(ulong arg)
    {
        const string Name = "VFIO_SET_IOMMU";
        long ret = Errno.ENODEV.Negative();
        string? reason = $"{Name}: no IOMMU driver supports type {arg}";
        GroupLock.DownWrite();
        try
        {
            if (_groups.Count == 0)
            {
                return ErrorReason.Fail(Errno.EINVAL, $"{Name}: the container has no group (VFIO_GROUP_SET_CONTAINER first)");
            }

            if (IommuDriver is not null)
            {
                return ErrorReason.Fail(Errno.EINVAL, $"{Name}: the container already has IOMMU driver {IommuDriver.Name}");
            }

            Core.DriversLock.Lock();
            try
            {
                foreach (IVfioIommuDriver driver in Core.DriversLocked)
                {
                    if (!DriverAllowed(driver) || driver.Ioctl(null, VfioIoctl.CheckExtension, arg) <= 0)
                    {
                        continue;
                    }

                    ErrorReason.Clear();
                    int err = driver.Open(arg, out object? data);
                    if (err != 0)
                    {
                        ret = err;
                        reason = ErrorReason.Current ?? $"{Name}: {driver.Name} refused type {arg}";
                        continue;
                    }

                    err = AttachGroupsLocked(driver, data);
                    if (err != 0)
                    {
                        ret = err;
                        reason = ErrorReason.Current ?? $"{Name}: {driver.Name} could not attach the container's groups";
                        driver.Release(data);
                        continue;
                    }

                    IommuDriver = driver;
                    IommuData = data;
                    ret = 0;
                    break;
                }
            }
            finally
            {
                Core.DriversLock.Unlock();
            }
        }
        finally
        {
            GroupLock.UpWrite();
        }

        return ret < 0 ? ErrorReason.Fail(ErrnoExtensions.FromReturn(ret), reason!) : ret;
    }

    /// <summary>__vfio_container_attach_groups(): every group, unwinding in reverse on failure (container group_lock held for write).</summary>
    private int AttachGroupsLocked(IVfioIommuDriver driver, object? data)
    {
        GroupLock.AssertHeldWrite();
        for (int i = 0; i < _groups.Count; i++)
        {
            VfioGroup g = _groups[i];
            int err = driver.AttachGroup(data, g.IommuGroupUnchecked!, g.Type);
            if (err != 0)
            {
                for (int j = i - 1; j >= 0; j--)
                {
                    driver.DetachGroup(data, _groups[j].IommuGroupUnchecked!);
                }

                return err;
            }
        }

        return 0;
    }

    // ---- Groups (called with the group's group_lock held).

    /// <summary>vfio_container_attach_group().</summary>
    internal int AttachGroupLocked(VfioGroup group)
    {
        group.GroupLock.AssertHeld();
        const string Name = "VFIO_GROUP_SET_CONTAINER";
        if (group.Type == VfioGroupType.NoIommu && !VfioGroup.Capable(Capabilities.CAP_SYS_RAWIO))
        {
            return ErrorReason.Fail(Errno.EPERM, $"{Name}: a noiommu group needs CAP_SYS_RAWIO");
        }

        IommuGroup ig = group.IommuGroupLocked("vfio_container_attach_group")!;
        GroupLock.DownWrite();
        try
        {
            if (_groups.Count > 0 && NoIommu != (group.Type == VfioGroupType.NoIommu))
            {
                return ErrorReason.Fail(Errno.EPERM, $"{Name}: real groups and noiommu groups cannot mix in one container");
            }

            bool claim = group.Type == VfioGroupType.Iommu && Core.Design.Viability == VfioViabilityModel.DmaOwnership;
            if (claim)
            {
                int err = ig.Core.GroupClaimDmaOwner(ig, group);
                if (err != 0)
                {
                    group.ViableLocked(out Platform.Base.SimDevice? blocker);
                    return ErrorReason.Fail(ErrnoExtensions.FromReturn(err), err == Errno.EPERM.Negative()
                        ? $"{Name}: group {group.Name} is not viable ({VfioGroup.Describe(blocker)})"
                        : $"{Name}: group {group.Name} is already owned by another user");
                }
            }

            if (IommuDriver is { } driver)
            {
                ErrorReason.Clear();
                int err = driver.AttachGroup(IommuData, ig, group.Type);
                if (err != 0)
                {
                    if (claim)
                    {
                        ig.Core.GroupReleaseDmaOwner(ig);
                    }

                    return ErrorReason.Current is null ? ErrorReason.Fail(ErrnoExtensions.FromReturn(err), $"{Name}: {driver.Name} could not attach group {group.Name}") : err;
                }
            }

            group.Container = this;
            group.ContainerUsers = 1;
            NoIommu = group.Type == VfioGroupType.NoIommu;
            _groups.Add(group);
            Get();
            return 0;
        }
        finally
        {
            GroupLock.UpWrite();
        }
    }

    /// <summary>The container half of vfio_group_detach_container(): the backend lets go of the group; the last group takes the backend with it.</summary>
    internal void DetachGroupLocked(VfioGroup group)
    {
        group.GroupLock.AssertHeld();
        IommuGroup ig = group.IommuGroupUnchecked!;
        GroupLock.DownWrite();
        try
        {
            IVfioIommuDriver? driver = IommuDriver;
            driver?.DetachGroup(IommuData, ig);
            if (group.Type == VfioGroupType.Iommu && Core.Design.Viability == VfioViabilityModel.DmaOwnership)
            {
                ig.Core.GroupReleaseDmaOwner(ig);
            }

            _groups.Remove(group);
            if (driver is not null && _groups.Count == 0)
            {
                driver.Release(IommuData);
                IommuDriver = null;
                IommuData = null;
            }
        }
        finally
        {
            GroupLock.UpWrite();
        }

        Put();
    }

    /// <summary>vfio_device_container_register(): tell the backend a device of the container was opened.</summary>
    internal void RegisterDevice(VfioDevice device)
    {
        if (IommuDriver is { HasDeviceRegistration: true } d)
        {
            d.RegisterDevice(IommuData, device);
        }
    }

    /// <summary>vfio_device_container_unregister().</summary>
    internal void UnregisterDevice(VfioDevice device)
    {
        if (IommuDriver is { HasDeviceRegistration: true } d)
        {
            d.UnregisterDevice(IommuData, device);
        }
    }

    /// <inheritdoc/>
    public override string ToString() => $"vfio container {Id}";
}

/// <summary>vfio_fops: /dev/vfio/vfio.</summary>
internal sealed class VfioContainerFops(VfioCore core) : FileOperations
{
    public override int Open(VfsNode? node, SimFile file)
    {
        if (core.Kernel.Faults.ShouldFail("kzalloc:vfio_container"))
        {
            return Errno.ENOMEM.Negative();
        }

        file.PrivateData = new VfioContainer(core);
        return 0;
    }

    public override void Release(SimFile file)
    {
        var c = (VfioContainer)file.PrivateData!;
        file.PrivateData = null;
        c.Put();
    }

    public override long Ioctl(SimFile file, uint cmd, ulong arg)
        => file.PrivateData is VfioContainer c ? c.Ioctl(cmd, arg) : Errno.EINVAL.Negative();
}

/// <summary>vfio_noiommu_ops: the backend of noiommu containers (no translation, no ioctls but CHECK_EXTENSION).</summary>
internal sealed class VfioNoIommuDriver(VfioCore core) : IVfioIommuDriver
{
    public string Name => "vfio-noiommu";

    public bool HasDeviceRegistration => false;

    public int Open(ulong arg, out object? iommuData)
    {
        iommuData = null;
        if (arg != VfioExtension.NoIommu)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"VFIO_SET_IOMMU: vfio-noiommu only serves type {VfioExtension.NoIommu}");
        }

        return !VfioGroup.Capable(Capabilities.CAP_SYS_RAWIO)
            ? ErrorReason.Fail(Errno.EPERM, "VFIO_SET_IOMMU: the noiommu IOMMU driver needs CAP_SYS_RAWIO")
            : 0;
    }

    public void Release(object? iommuData)
    {
    }

    public long Ioctl(object? iommuData, uint cmd, ulong arg)
        => cmd == VfioIoctl.CheckExtension
            ? core.NoIommuMode && arg == VfioExtension.NoIommu ? 1 : 0
            : ErrorReason.Fail(Errno.ENOTTY, $"{VfioIoctl.Name(cmd, "container")}: the noiommu IOMMU driver has no such ioctl");

    public int AttachGroup(object? iommuData, IommuGroup group, VfioGroupType type) => 0;

    public void DetachGroup(object? iommuData, IommuGroup group)
    {
    }

    public int PinPages(object? iommuData, IommuGroup group, ulong iova, int prot, Span<ulong> pfns) => Errno.ENOTTY.Negative();

    public void UnpinPages(object? iommuData, ulong iova, int npage)
    {
    }

    public void RegisterDevice(object? iommuData, VfioDevice device)
    {
    }

    public void UnregisterDevice(object? iommuData, VfioDevice device)
    {
    }

    public int DmaRw(object? iommuData, ulong iova, Span<byte> data, bool write) => Errno.ENOTTY.Negative();
}
