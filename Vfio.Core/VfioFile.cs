// Models the vfio_file API of drivers/vfio/vfio_main.c and group.c (v6.12), used by KVM
// and by vfio-pci's hot reset, plus the ≤v5.18 external-user API kept as a design
// variant (vfio_group_get_external_user / _put_external_user).

using Vfio.Kernel;
using Vfio.Platform.Fs;
using Vfio.Platform.Iommu;

namespace Vfio.Core;

/// <summary>Kernel-side queries on files that may be vfio group or device files.</summary>
public static class VfioFile
{
    /// <summary>vfio_group_from_file(): the group behind a /dev/vfio/N file, or null.</summary>
    public static VfioGroup? GroupOf(SimFile file) => file.Ops is VfioGroupFops ? file.PrivateData as VfioGroup : null;

    /// <summary>vfio_file_is_group().</summary>
    public static bool IsGroup(SimFile file) => GroupOf(file) is not null;

    /// <summary>vfio_file_is_valid(): a group file or a device file.</summary>
    public static bool IsValid(SimFile file) => IsGroup(file) || file.Ops is VfioDeviceFops;

    /// <summary>vfio_file_enforced_coherent(): every device of the group (or the device) has IOMMU_CAP_ENFORCE_CACHE_COHERENCY; true for other files.</summary>
    public static bool EnforcedCoherent(SimFile file)
    {
        if (GroupOf(file) is { } group)
        {
            foreach (VfioDevice d in group.Devices)
            {
                if (d.Dev.IommuGroup is not { } ig || !ig.Core.Capable(d.Dev, IommuCap.EnforceCacheCoherency))
                {
                    return false;
                }
            }

            return true;
        }

        if (file.PrivateData is not VfioDeviceFile df)
        {
            return true;
        }

        df.Device.KasanCheck("vfio_file_enforced_coherent");
        return df.Device.Dev.IommuGroup is { } dg && dg.Core.Capable(df.Device.Dev, IommuCap.EnforceCacheCoherency);
    }

    /// <summary>vfio_file_set_kvm(): associates <paramref name="kvm"/> (or null) with a group file; devices take a reference at their first open.</summary>
    public static void SetKvm(SimFile file, IVfioKvm? kvm)
    {
        if (GroupOf(file) is { } group)
        {
            GroupSetKvm(group, kvm);
        }
    }

    /// <summary>vfio_group_set_kvm(): also the ≤v5.18 entry point, which KVM called with the group it took as an external user.</summary>
    internal static void GroupSetKvm(VfioGroup group, IVfioKvm? kvm)
    {
        // Before v6.3 (VfioDesign.KvmLocking) the group lock guarded group->kvm.
        if (group.Core.Design.KvmLocking != VfioKvmLocking.KvmRefLock)
        {
            group.GroupLock.Lock();
            group.Kvm = kvm;
            group.GroupLock.Unlock();
            return;
        }

        group.KvmRefLock.Lock();
        group.Kvm = kvm;
        group.KvmRefLock.Unlock();
    }

    /// <summary>vfio_file_has_dev(): the file is the group file of <paramref name="device"/>'s group.</summary>
    public static bool HasDev(SimFile file, VfioDevice device) => GroupOf(file) is { } g && g == device.Group;

    /// <summary>vfio_file_iommu_group(): SPAPR only, so always null here.</summary>
    public static IommuGroup? IommuGroupOf(SimFile file) => null;

    /// <summary>
    /// vfio_group_get_external_user() (≤v5.18, the <see cref="VfioExternalUsers.Checked"/>
    /// and <see cref="VfioExternalUsers.Unchecked"/> variants): takes the group for an
    /// external user such as KVM, counting it in container_users. 0 or -errno.
    /// </summary>
    public static int GetExternalUser(SimFile file, out VfioGroup? group)
    {
        group = GroupOf(file);
        if (group is null)
        {
            return ErrorReason.Fail(Errno.EINVAL, "vfio_group_get_external_user: not a vfio group file");
        }

        VfioGroup g = group;
        if (g.Core.Design.ExternalUsers == VfioExternalUsers.Unchecked)
        {
            // The first posting only took a reference: no lock, no check, no container use.
            g.Get();
            return 0;
        }

        g.GroupLock.Lock();
        try
        {
            if (g.Core.Design.ExternalUsers == VfioExternalUsers.Checked)
            {
                if (g.ContainerUsers == 0)
                {
                    group = null;
                    return ErrorReason.Fail(Errno.EINVAL, $"vfio_group_get_external_user: group {g.Name} is not in a container");
                }

                if (g.Type == VfioGroupType.NoIommu)
                {
                    group = null;
                    return ErrorReason.Fail(Errno.EPERM, $"vfio_group_get_external_user: group {g.Name} is a noiommu group");
                }

                if (!g.Container!.HasIommuDriver || !g.ViableLocked(out _))
                {
                    group = null;
                    return ErrorReason.Fail(Errno.EINVAL, $"vfio_group_get_external_user: group {g.Name} has no IOMMU driver or is not viable");
                }
            }

            if (g.ContainerUsers > 0)
            {
                g.ContainerUsers++;
            }

            g.Get();
            return 0;
        }
        finally
        {
            g.GroupLock.Unlock();
        }
    }

    /// <summary>
    /// vfio_external_check_extension() (≤v5.18): KVM's question to the container of a group it
    /// holds as an external user (<c>VFIO_DMA_CC_IOMMU</c> for the coherency check). As in the
    /// kernel it reads group-&gt;container without the group's lock: the checked API's container
    /// use keeps that container there; an unchecked external user may find none (a NULL
    /// dereference) or one freed after the group left it (a KASAN use-after-free).
    /// </summary>
    internal static long ExternalCheckExtension(VfioGroup group, uint extension)
    {
        VfioContainer? container = group.Container;
        Bug.On(container is null, $"BUG: kernel NULL pointer dereference in vfio_ioctl_check_extension: group {group.Name}, held by an external user, is in no container");
        return container!.CheckExtension(extension, "vfio_external_check_extension");
    }

    /// <summary>vfio_group_put_external_user(): the last container user dissolves the container.</summary>
    public static void PutExternalUser(VfioGroup group)
    {
        if (group.Core.Design.ExternalUsers != VfioExternalUsers.Checked)
        {
            // The first posting took no container use, so it gives none back.
            group.Put();
            return;
        }

        group.GroupLock.Lock();
        try
        {
            if (group.ContainerUsers == 1)
            {
                if (group.OpenedFile is null)
                {
                    group.DetachContainerLocked();
                }
            }
            else if (group.ContainerUsers > 1)
            {
                group.ContainerUsers--;
            }
        }
        finally
        {
            group.GroupLock.Unlock();
        }

        group.Put();
    }
}

/// <summary>What the core needs of a KVM instance that a group or device file was associated with (kvm_get_kvm_safe / kvm_put_kvm).</summary>
public interface IVfioKvm
{
    /// <summary>kvm_get_kvm_safe(): a reference unless the VM is being destroyed.</summary>
    bool TryGet();

    /// <summary>kvm_put_kvm().</summary>
    void Put();
}
