// Models struct vfio_device_file and vfio_device_fops (drivers/vfio/vfio_main.c,
// group.c, v6.12): the fd GET_DEVICE_FD returns. Opening runs the device's first open
// under group_lock then dev_set->lock; access is granted only once that succeeded;
// release closes the device and drops the fd's registration reference, which may be the
// one the unregister path is waiting for. Every ioctl runs with the device runtime-resumed
// when its driver does runtime PM. Also VFIO_DEVICE_FEATURE, handled by the core.
//
// df->device is a plain pointer: the fd holds the registration count, not the struct
// device, so the device stays allocated only because unregister waits for the fd. Where
// the kernel first dereferences it (the access checks done, in ioctl, read, write, mmap and
// release) KASAN checks it: with the NoWait unbind design it may already be freed.

using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Fs;
using Vfio.Platform.Mm;

namespace Vfio.Core;

/// <summary>struct vfio_device_file: one per open device fd.</summary>
internal sealed class VfioDeviceFile
{
    private volatile bool _accessGranted;
    private int _revoked;

    private VfioDeviceFile(VfioDevice device, VfioGroup? group)
    {
        Device = device;
        Group = group;
        (OwnerComm, OwnerPid) = VfioDevice.CurrentTaskIdentity();
    }

    public VfioDevice Device { get; }

    /// <summary>The group the fd came from (null for the cdev path).</summary>
    public VfioGroup? Group { get; }

    public string OwnerComm { get; }

    public int OwnerPid { get; }

    /// <summary>access_granted, published after the open completed (release/acquire).</summary>
    public bool AccessGranted => _accessGranted;

    public bool IsRevoked => Volatile.Read(ref _revoked) != 0;

    /// <summary>vfio_device_open_file() of the group path; on success <paramref name="file"/> carries the caller's registration reference.</summary>
    public static int OpenGroupPath(VfioDevice device, VfioGroup group, out SimFile? file)
    {
        file = null;
        if (device.Core.Kernel.Faults.ShouldFail("kzalloc:vfio_device_file"))
        {
            return Errno.ENOMEM.Negative();
        }

        var df = new VfioDeviceFile(device, group);
        int ret = df.GroupOpen();
        if (ret != 0)
        {
            return ret;
        }

        file = AnonInodes.GetFile(device.Core.Kernel, "[vfio-device]", device.Core.DeviceFops, df, OpenFlags.O_RDWR);
        if (group.Type == VfioGroupType.NoIommu)
        {
            (string comm, int pid) = VfioDevice.CurrentTaskIdentity();
            device.DevWarn($"vfio-noiommu device opened by user ({comm}:{pid})");
        }

        device.AddFile(df);
        df._accessGranted = true;
        return 0;
    }

    /// <summary>vfio_df_group_open().</summary>
    private int GroupOpen()
    {
        VfioGroup group = Group!;
        group.GroupLock.Lock();
        try
        {
            if (group.Container is null)
            {
                return ErrorReason.Fail(Errno.EINVAL, $"VFIO_GROUP_GET_DEVICE_FD: group {group.Name} is not in a container (VFIO_GROUP_SET_CONTAINER first)");
            }

            VfioDeviceSet set = Device.DevSet!;
            set.Lock.Lock();
            try
            {
                bool first = Device.OpenCountLocked == 0;
                if (first)
                {
                    Device.GetKvmFromGroupLocked();
                }

                int ret = Device.DfOpenLocked(this);
                if (Device.OpenCountLocked == 0)
                {
                    Device.PutKvm();
                }

                return ret;
            }
            finally
            {
                set.Lock.Unlock();
            }
        }
        finally
        {
            group.GroupLock.Unlock();
        }
    }

    /// <summary>vfio_df_group_close().</summary>
    private void GroupClose()
    {
        VfioGroup group = Group!;

        // The last close drops the group file reference the open took (unuse_container).
        // The kernel's fput defers the file's release to task work; here release would run
        // at once and retake group_lock, so the put is held back until the lock is dropped.
        SimFile? groupFile;
        group.GroupLock.Lock();
        try
        {
            groupFile = group.OpenedFile;
            groupFile?.Get();
            VfioDeviceSet set = Device.DevSet!;
            set.Lock.Lock();
            try
            {
                Device.DfCloseLocked();
                if (Device.OpenCountLocked == 0)
                {
                    Device.PutKvm();
                }
            }
            finally
            {
                set.Lock.Unlock();
            }
        }
        finally
        {
            group.GroupLock.Unlock();
        }

        groupFile?.Put();
    }

    /// <summary>
    /// The revoke design: close on the user's behalf now; later accesses fail, and the fd no
    /// longer refers to the device (which may be freed once the unbind completes). False if
    /// the fd was already released or revoked.
    /// </summary>
    public bool Revoke()
    {
        if (Interlocked.Exchange(ref _revoked, 1) != 0)
        {
            return false;
        }

        Device.RemoveFile(this);
        GroupClose();
        Device.PutRegistration();
        return true;
    }

    /// <summary>vfio_device_fops_release().</summary>
    public void Release()
    {
        if (Interlocked.Exchange(ref _revoked, 1) != 0)
        {
            return;
        }

        // vfio_df_group_close() reads device->group first.
        Device.KasanCheck("vfio_df_group_close");
        Device.RemoveFile(this);
        GroupClose();
        Device.PutRegistration();
    }

    /// <summary>The check ioctl/read/write/mmap make first: access was granted and not revoked.</summary>
    public bool Accessible => _accessGranted && !IsRevoked;

    /// <summary>Why <paramref name="op"/> is refused when the fd is not <see cref="Accessible"/>: -EINVAL before the open completed, -ENODEV once revoked.</summary>
    public int Deny(string op)
        => !_accessGranted
            ? ErrorReason.Fail(Errno.EINVAL, $"{op}: the device fd is not bound yet")
            : ErrorReason.Fail(Errno.ENODEV, $"{op}: access to {Device.Dev.Name} was revoked when it was unbound");
}

/// <summary>vfio_device_fops.</summary>
internal sealed class VfioDeviceFops : FileOperations
{
    public override bool CanRead => true;

    public override bool CanWrite => true;

    public override bool CanMmap => true;

    public override void Release(SimFile file) => ((VfioDeviceFile)file.PrivateData!).Release();

    public override long Ioctl(SimFile file, uint cmd, ulong arg)
    {
        var df = (VfioDeviceFile)file.PrivateData!;
        if (!df.Accessible)
        {
            return df.Deny(VfioIoctl.Name(cmd));
        }

        // vfio_device_pm_runtime_get/put around every command: a device in runtime suspend
        // (or user-requested low power) is up for the ioctl's duration.
        VfioDevice device = df.Device;
        device.KasanCheck("vfio_device_fops_unl_ioctl");
        int ret = device.PmRuntimeGet();
        if (ret != 0)
        {
            return ret;
        }

        try
        {
            if (cmd == VfioIoctl.DeviceFeature)
            {
                return VfioDeviceFeatures.Ioctl(device, arg);
            }

            return (device.Ops.Provides & VfioOps.Ioctl) != 0
                ? device.Ops.Ioctl(device, cmd, arg)
                : ErrorReason.Fail(Errno.EINVAL, $"{VfioIoctl.Name(cmd)}: {device.Ops.Name} has no ioctls");
        }
        finally
        {
            device.PmRuntimePut();
        }
    }

    public override long Read(SimFile file, ulong buf, long count, ref long pos)
    {
        var df = (VfioDeviceFile)file.PrivateData!;
        if (!df.Accessible)
        {
            return df.Deny("read");
        }

        VfioDevice d = df.Device;
        d.KasanCheck("vfio_device_fops_read");
        return (d.Ops.Provides & VfioOps.Read) != 0 ? d.Ops.Read(d, buf, count, ref pos) : Errno.EINVAL.Negative();
    }

    public override long Write(SimFile file, ulong buf, long count, ref long pos)
    {
        var df = (VfioDeviceFile)file.PrivateData!;
        if (!df.Accessible)
        {
            return df.Deny("write");
        }

        VfioDevice d = df.Device;
        d.KasanCheck("vfio_device_fops_write");
        return (d.Ops.Provides & VfioOps.Write) != 0 ? d.Ops.Write(d, buf, count, ref pos) : Errno.EINVAL.Negative();
    }

    public override int Mmap(SimFile file, Vma vma)
    {
        var df = (VfioDeviceFile)file.PrivateData!;
        if (!df.Accessible)
        {
            return df.Deny("mmap");
        }

        VfioDevice d = df.Device;
        d.KasanCheck("vfio_device_fops_mmap");
        return (d.Ops.Provides & VfioOps.Mmap) != 0 ? d.Ops.Mmap(d, vma) : Errno.EINVAL.Negative();
    }
}

/// <summary>VFIO_DEVICE_FEATURE as the core handles it (vfio_ioctl_device_feature, vfio_check_feature).</summary>
public static class VfioDeviceFeatures
{
    private const string IoctlName = "VFIO_DEVICE_FEATURE";

    internal static long Ioctl(VfioDevice device, ulong arg)
    {
        int err = VfioArg.CopyIn(arg, VfioDeviceFeature.MinSz, out VfioDeviceFeature feature, IoctlName);
        if (err != 0)
        {
            return err;
        }

        const uint known = VfioFeature.Mask | VfioFeature.Get | VfioFeature.Set | VfioFeature.Probe;
        if ((feature.Flags & ~known) != 0)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{IoctlName}: unknown flags 0x{feature.Flags & ~known:x}");
        }

        if ((feature.Flags & VfioFeature.Probe) == 0 && (feature.Flags & VfioFeature.Get) != 0 && (feature.Flags & VfioFeature.Set) != 0)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{IoctlName}: GET and SET together without PROBE");
        }

        ulong data = arg + VfioDeviceFeature.MinSz;
        ulong dataSz = feature.Argsz - (ulong)VfioDeviceFeature.MinSz;
        if (VfioMigration.Handles(feature.Flags & VfioFeature.Mask))
        {
            // mig_ops / log_ops: ENOTTY for a driver without them (VfioMigration.cs).
            return VfioMigration.Feature(device, feature.Flags, data, dataSz);
        }

        return (device.Ops.Provides & VfioOps.DeviceFeature) != 0
            ? device.Ops.DeviceFeature(device, feature.Flags, data, dataSz)
            : ErrorReason.Fail(Errno.EINVAL, $"{IoctlName}: {device.Ops.Name} has no device features");
    }

    /// <summary>
    /// vfio_check_feature(): for a driver's feature handler. 1 to go on, 0 for a PROBE that
    /// succeeded (do nothing), or -EINVAL (an unsupported GET/SET, neither GET nor SET, or
    /// data shorter than <paramref name="minsz"/>).
    /// </summary>
    public static int Check(uint flags, ulong argsz, uint supported, ulong minsz)
    {
        if ((flags & (VfioFeature.Get | VfioFeature.Set) & ~supported) != 0)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{IoctlName}: feature {flags & VfioFeature.Mask} does not support {((flags & VfioFeature.Get & ~supported) != 0 ? "GET" : "SET")}");
        }

        if ((flags & VfioFeature.Probe) != 0)
        {
            return 0;
        }

        if ((flags & (VfioFeature.Get | VfioFeature.Set)) == 0)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{IoctlName}: neither GET nor SET");
        }

        return argsz < minsz
            ? ErrorReason.Fail(Errno.EINVAL, $"{IoctlName}: {argsz} data bytes, the feature needs {minsz}")
            : 1;
    }
}
