// Models the group fd of drivers/vfio/group.c (v6.12): open (single opener), release, and
// the ioctls GET_STATUS, SET_CONTAINER, UNSET_CONTAINER and GET_DEVICE_FD.

using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Base;
using Vfio.Platform.Fs;
using Vfio.Platform.Proc;

namespace Vfio.Core;

public sealed partial class VfioGroup
{

    internal int OpenFile(SimFile file)
    {
        GroupLock.Lock();
        try
        {
            if (Drivers == 0 && Core.Design.GroupNodes != VfioGroupNodes.AllGroupsAtLoad)
            {
                return ErrorReason.Fail(Errno.ENODEV, $"open {DevPath}: the group's last device is being removed");
            }

            if (Type == VfioGroupType.NoIommu && !Capable(Capabilities.CAP_SYS_RAWIO))
            {
                return ErrorReason.Fail(Errno.EPERM, $"open {DevPath}: a noiommu group needs CAP_SYS_RAWIO");
            }

            if (CdevDeviceOpenCount > 0)
            {
                return ErrorReason.Fail(Errno.EBUSY, $"open {DevPath}: a device of the group is open through its cdev");
            }

            if (OpenedFile is not null)
            {
                return ErrorReason.Fail(Errno.EBUSY, $"open {DevPath}: the group is already open (single opener)");
            }

            if (Core.Design.GroupNodes == VfioGroupNodes.OpenRefusedUntilViable && !ViableLocked(out SimDevice? blocker))
            {
                return ErrorReason.Fail(Errno.EBUSY, $"open {DevPath}: the group is not viable ({Describe(blocker)})");
            }

            OpenedFile = file;
            file.PrivateData = this;
            return 0;
        }
        finally
        {
            GroupLock.Unlock();
        }
    }

    internal void ReleaseFile(SimFile file)
    {
        file.PrivateData = null;
        GroupLock.Lock();
        try
        {
            if (Container is not null)
            {
                if (ContainerUsers > 1 && Core.Design.ExternalUsers != VfioExternalUsers.FileApi)
                {
                    // ≤v5.18: an external user still holds the container; the last put dissolves it.
                    ContainerUsers--;
                }
                else
                {
                    DetachContainerLocked();
                }
            }

            OpenedFile = null;
        }
        finally
        {
            GroupLock.Unlock();
        }

        Put();
    }

    internal long Ioctl(uint cmd, ulong arg) => cmd switch
    {
        VfioIoctl.GroupGetDeviceFd => GetDeviceFd(arg),
        VfioIoctl.GroupGetStatus => GetStatus(arg),
        VfioIoctl.GroupSetContainer => SetContainer(arg),
        VfioIoctl.GroupUnsetContainer => UnsetContainer(),
        _ => ErrorReason.Fail(Errno.ENOTTY, $"{VfioIoctl.Name(cmd, "group")}: not a group ioctl"),
    };

    private const string GetStatusName = "VFIO_GROUP_GET_STATUS";
    private const string SetContainerName = "VFIO_GROUP_SET_CONTAINER";
    private const string UnsetContainerName = "VFIO_GROUP_UNSET_CONTAINER";
    private const string GetDeviceFdName = "VFIO_GROUP_GET_DEVICE_FD";

    private int GetStatus(ulong arg)
    {
        int err = VfioArg.CopyIn(arg, VfioGroupStatus.MinSz, out VfioGroupStatus status, GetStatusName);
        if (err != 0)
        {
            return err;
        }

        status.Flags = VfioGroupFlags.None;
        GroupLock.Lock();
        try
        {
            if (IommuGroupLocked("vfio_group_ioctl_get_status") is null)
            {
                return ErrorReason.Fail(Errno.ENODEV, $"{GetStatusName}: group {Name}'s last device was unregistered");
            }

            if (ViableLocked(out _))
            {
                status.Flags |= VfioGroupFlags.Viable;
            }

            if (HasIommuLocked())
            {
                status.Flags |= VfioGroupFlags.ContainerSet;
            }
        }
        finally
        {
            GroupLock.Unlock();
        }

        return VfioArg.CopyOut(arg, status, VfioGroupStatus.MinSz);
    }

    private int SetContainer(ulong arg)
    {
        // Since iommufd can stand in for a container (v6.2), a file that is neither is
        // EBADFD; before, EINVAL.
        bool ebadfd = Core.Kernel.Profile.Has(VfioCoreFeatures.SetContainerUnknownFileIsEbadfd);
        if (UserMemory.Get(arg, out int fd) != 0)
        {
            return ErrorReason.Fail(Errno.EFAULT, $"{SetContainerName}: cannot read the fd argument at 0x{arg:x}");
        }

        SimProcess proc = SimProcess.Current!;
        SimFile? f = proc.Files.Get(fd);
        if (f is null)
        {
            return ErrorReason.Fail(Errno.EBADF, $"{SetContainerName}: fd {fd} is not open");
        }

        try
        {
            GroupLock.Lock();
            try
            {
                if (HasIommuLocked())
                {
                    return ErrorReason.Fail(Errno.EINVAL, $"{SetContainerName}: group {Name} already has a container");
                }

                if (IommuGroupLocked("vfio_group_ioctl_set_container") is null)
                {
                    return ErrorReason.Fail(Errno.ENODEV, $"{SetContainerName}: group {Name}'s last device was unregistered");
                }

                if (VfioContainer.FromFile(f) is { } container)
                {
                    return container.AttachGroupLocked(this);
                }

                // No iommufd in this simulator: any other file is not recognised.
                return ebadfd
                    ? ErrorReason.Fail(Errno.EBADFD, $"{SetContainerName}: fd {fd} ({f.Path}) is neither a vfio container nor an iommufd")
                    : ErrorReason.Fail(Errno.EINVAL, $"{SetContainerName}: fd {fd} ({f.Path}) is not a vfio container");
            }
            finally
            {
                GroupLock.Unlock();
            }
        }
        finally
        {
            f.Put();
        }
    }

    private int UnsetContainer()
    {
        GroupLock.Lock();
        try
        {
            if (!HasIommuLocked())
            {
                return ErrorReason.Fail(Errno.EINVAL, $"{UnsetContainerName}: group {Name} has no container");
            }

            if (ContainerUsers != 1)
            {
                return ErrorReason.Fail(Errno.EBUSY, $"{UnsetContainerName}: group {Name}'s container has {ContainerUsers - 1} other user(s) (open device fds or external users)");
            }

            DetachContainerLocked();
            return 0;
        }
        finally
        {
            GroupLock.Unlock();
        }
    }

    /// <summary>vfio_group_detach_container() (caller holds group_lock).</summary>
    internal void DetachContainerLocked()
    {
        GroupLock.AssertHeld();
        Warn.On(Core.Kernel, ContainerUsers != 1, $"vfio_group_detach_container: group {Name} has container_users {ContainerUsers}");
        VfioContainer container = Container!;

        // The group forgets its container before the container's last reference can go.
        Container = null;
        ContainerUsers = 0;
        container.DetachGroupLocked(this);
    }

    private long GetDeviceFd(ulong arg)
    {
        int err = UserMemory.StrndupUser(arg, (int)Platform.Mm.PhysMem.PageSize, out string name);
        if (err != 0)
        {
            return ErrorReason.Fail(ErrnoExtensions.FromReturn(err), err == Errno.EFAULT.Negative()
                ? $"{GetDeviceFdName}: cannot read the device name at 0x{arg:x}"
                : $"{GetDeviceFdName}: the device name is not NUL-terminated within a page");
        }

        int lookup = GetDeviceFromName(name, out VfioDevice? device);
        if (lookup != 0)
        {
            return lookup;
        }

        SimProcess proc = SimProcess.Current!;
        int fdno = proc.GetUnusedFd(cloexec: true);
        if (fdno < 0)
        {
            device!.PutRegistration();
            return ErrorReason.Fail(ErrnoExtensions.FromReturn(fdno), $"{GetDeviceFdName}: no free fd");
        }

        int ret = VfioDeviceFile.OpenGroupPath(device!, this, out SimFile? file);
        if (ret != 0)
        {
            proc.PutUnusedFd(fdno);
            device!.PutRegistration();
            return ret;
        }

        proc.FdInstall(fdno, file!);
        return fdno;
    }

    /// <summary>vfio_device_get_from_name(): a registered device matching <paramref name="name"/>, with a registration reference.</summary>
    private int GetDeviceFromName(string name, out VfioDevice? device)
    {
        device = null;
        DeviceLock.Lock();
        try
        {
            foreach (VfioDevice it in _devices)
            {
                int ret = (it.Ops.Provides & VfioOps.Match) != 0
                    ? it.Ops.Match(it, name)
                    : string.Equals(it.Dev.Name, name, StringComparison.Ordinal) ? 1 : 0;
                if (ret < 0)
                {
                    return ErrorReason.Current is null
                        ? ErrorReason.Fail(ErrnoExtensions.FromReturn(ret), $"{GetDeviceFdName}: {it.Ops.Name} refused \"{name}\"")
                        : ret;
                }

                if (ret > 0 && it.TryGetRegistration())
                {
                    device = it;
                    return 0;
                }
            }

            return ErrorReason.Fail(Errno.ENODEV, $"{GetDeviceFdName}: no registered device \"{name}\" in group {Name}");
        }
        finally
        {
            DeviceLock.Unlock();
        }
    }

    /// <summary>vfio_group_use_container(): a device of the group is being opened (caller holds group_lock).</summary>
    internal int UseContainerLocked()
    {
        GroupLock.AssertHeld();
        if (Container is null || !Container.HasIommuDriver || Warn.On(Core.Kernel, ContainerUsers == 0, "vfio_group_use_container: no container users"))
        {
            return ErrorReason.Fail(Errno.EINVAL, Container is null
                ? $"{GetDeviceFdName}: group {Name} is not in a container (VFIO_GROUP_SET_CONTAINER first)"
                : $"{GetDeviceFdName}: group {Name}'s container has no IOMMU driver (VFIO_SET_IOMMU first)");
        }

        if (Type == VfioGroupType.NoIommu && !Capable(Capabilities.CAP_SYS_RAWIO))
        {
            return ErrorReason.Fail(Errno.EPERM, $"{GetDeviceFdName}: a noiommu device needs CAP_SYS_RAWIO");
        }

        if (Core.Design.Viability == VfioViabilityModel.LegacyNotifier && !ViableLocked(out SimDevice? blocker))
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{GetDeviceFdName}: group {Name} is not viable ({Describe(blocker)})");
        }

        OpenedFile!.Get();
        ContainerUsers++;
        return 0;
    }

    /// <summary>vfio_group_unuse_container() (caller holds group_lock).</summary>
    internal void UnuseContainerLocked()
    {
        GroupLock.AssertHeld();
        Warn.On(Core.Kernel, ContainerUsers <= 1, $"vfio_group_unuse_container: group {Name} has container_users {ContainerUsers}");
        ContainerUsers--;
        OpenedFile!.Put();
    }

    internal static string Describe(SimDevice? dev)
        => dev is null ? "no iommu group" : $"{dev.Name} is bound to {dev.Driver?.Name ?? "no driver"}";

    internal static bool Capable(int cap) => SimProcess.Current?.Credentials.Capable(cap) ?? true;
}

/// <summary>vfio_group_fops: the /dev/vfio/N char device.</summary>
internal sealed class VfioGroupFops(VfioCore core) : FileOperations
{
    public override int Open(VfsNode? node, SimFile file)
    {
        if (node is not VfsCharDevice cdev || core.GroupByMinorGet(cdev.Minor) is not { } group)
        {
            return Errno.ENXIO.Negative();
        }

        int err = group.OpenFile(file);
        if (err != 0)
        {
            group.Put();
        }

        return err;
    }

    public override void Release(SimFile file) => ((VfioGroup)file.PrivateData!).ReleaseFile(file);

    public override long Ioctl(SimFile file, uint cmd, ulong arg) => ((VfioGroup)file.PrivateData!).Ioctl(cmd, arg);
}
