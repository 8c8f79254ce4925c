// Models DMA ownership and domain attachment of drivers/iommu/iommu.c (v6.12):
// iommu_device_use_default_domain / _unuse_ (a kernel driver's probe and remove),
// iommu_group_claim_dma_owner / _release_ (the legacy vfio container path),
// iommu_device_claim_dma_owner / _release_ (the cdev path), iommu_attach_group /
// iommu_detach_group, and domain allocation. Every call takes group->mutex.

using Vfio.Kernel;
using Vfio.Platform.Base;

namespace Vfio.Platform.Iommu;

public sealed partial class IommuCore
{
    /// <summary>
    /// iommu_device_use_default_domain(): a kernel driver is about to use DMA. -EBUSY when
    /// the group is owned by user space (an owner is set, or a domain other than the default
    /// is attached while others use it); otherwise owner_cnt++.
    /// </summary>
    public int DeviceUseDefaultDomain(SimDevice dev)
    {
        ArgumentNullException.ThrowIfNull(dev);
        IommuGroup? group = dev.IommuGroup;
        if (group is null)
        {
            return 0;
        }

        group.Mutex.Lock();
        try
        {
            if (group.OwnerCount != 0 && (group.Owner is not null || group.Domain != group.DefaultDomain))
            {
                return Errno.EBUSY.Negative();
            }

            group.OwnerCount++;
            return 0;
        }
        finally
        {
            group.Mutex.Unlock();
        }
    }

    /// <summary>iommu_device_unuse_default_domain(): the kernel driver is done (owner_cnt--).</summary>
    public void DeviceUnuseDefaultDomain(SimDevice dev)
    {
        ArgumentNullException.ThrowIfNull(dev);
        IommuGroup? group = dev.IommuGroup;
        if (group is null)
        {
            return;
        }

        group.Mutex.Lock();
        try
        {
            if (!Warn.On(group.OwnerCount == 0, $"iommu_device_unuse_default_domain: {group} has no users"))
            {
                group.OwnerCount--;
            }
        }
        finally
        {
            group.Mutex.Unlock();
        }
    }

    /// <summary>
    /// iommu_group_claim_dma_owner(): user space takes the whole group. -EINVAL without an
    /// owner cookie, -EPERM while anyone uses the group (a kernel driver is bound, or it is
    /// already claimed), -EBUSY when a non-default domain is attached; otherwise the blocking
    /// domain is attached and the owner recorded.
    /// </summary>
    public int GroupClaimDmaOwner(IommuGroup group, object owner)
    {
        ArgumentNullException.ThrowIfNull(group);
        if (Warn.On(owner is null, "iommu_group_claim_dma_owner: no owner"))
        {
            return Errno.EINVAL.Negative();
        }

        group.Mutex.Lock();
        try
        {
            return group.OwnerCount != 0 ? Errno.EPERM.Negative() : TakeDmaOwnershipLocked(group, owner!);
        }
        finally
        {
            group.Mutex.Unlock();
        }
    }

    /// <summary>iommu_group_release_dma_owner(): the owner lets go; the default domain comes back.</summary>
    public void GroupReleaseDmaOwner(IommuGroup group)
    {
        ArgumentNullException.ThrowIfNull(group);
        group.Mutex.Lock();
        try
        {
            ReleaseDmaOwnershipLocked(group);
        }
        finally
        {
            group.Mutex.Unlock();
        }
    }

    /// <summary>
    /// iommu_device_claim_dma_owner(): as the group claim but per device; the same owner may
    /// claim again (owner_cnt++), another owner gets -EPERM; -ENODEV without a group.
    /// </summary>
    public int DeviceClaimDmaOwner(SimDevice dev, object owner)
    {
        ArgumentNullException.ThrowIfNull(dev);
        if (Warn.On(owner is null, "iommu_device_claim_dma_owner: no owner"))
        {
            return Errno.EINVAL.Negative();
        }

        IommuGroup? group = dev.IommuGroup;
        if (group is null)
        {
            return Errno.ENODEV.Negative();
        }

        group.Mutex.Lock();
        try
        {
            if (group.OwnerCount != 0)
            {
                if (!ReferenceEquals(group.Owner, owner))
                {
                    return Errno.EPERM.Negative();
                }

                group.OwnerCount++;
                return 0;
            }

            return TakeDmaOwnershipLocked(group, owner!);
        }
        finally
        {
            group.Mutex.Unlock();
        }
    }

    /// <summary>iommu_device_release_dma_owner().</summary>
    public void DeviceReleaseDmaOwner(SimDevice dev)
    {
        ArgumentNullException.ThrowIfNull(dev);
        IommuGroup? group = dev.IommuGroup;
        if (group is null)
        {
            return;
        }

        group.Mutex.Lock();
        try
        {
            if (group.OwnerCount > 1)
            {
                group.OwnerCount--;
            }
            else
            {
                ReleaseDmaOwnershipLocked(group);
            }
        }
        finally
        {
            group.Mutex.Unlock();
        }
    }

    /// <summary>iommu_group_dma_owner_claimed(): owner_cnt != 0.</summary>
    public static bool GroupDmaOwnerClaimed(IommuGroup group)
    {
        ArgumentNullException.ThrowIfNull(group);
        group.Mutex.Lock();
        try
        {
            return group.OwnerCount != 0;
        }
        finally
        {
            group.Mutex.Unlock();
        }
    }

    private int TakeDmaOwnershipLocked(IommuGroup group, object owner)
    {
        group.Mutex.AssertHeld();
        if (group.Domain is not null && group.Domain != group.DefaultDomain)
        {
            return Errno.EBUSY.Negative();
        }

        group.BlockingDomain ??= Hardware.AllocDomain(IommuDomainType.Blocked);
        SetDomainLocked(group, group.BlockingDomain);
        group.Owner = owner;
        group.OwnerCount++;
        return 0;
    }

    /// <summary>__iommu_release_dma_ownership(): WARNs (and does nothing) unless the group is owned.</summary>
    private void ReleaseDmaOwnershipLocked(IommuGroup group)
    {
        group.Mutex.AssertHeld();
        if (Warn.On(Machine.Kernel, group.OwnerCount == 0 || group.Owner is null, $"__iommu_release_dma_ownership: {group} is not owned"))
        {
            return;
        }

        group.OwnerCount = 0;
        group.Owner = null;
        SetDomainLocked(group, group.DefaultDomain);
    }

    // ---- Domains.

    /// <summary>iommu_paging_domain_alloc(): an unmanaged paging domain for user space (vfio type1, iommufd).</summary>
    public IommuDomain DomainAlloc() => Hardware.AllocDomain(IommuDomainType.Unmanaged);

    /// <summary>
    /// iommu_attach_group(): the group translates through <paramref name="domain"/>. -EBUSY
    /// when another caller's domain is attached (anything but the default or blocking domain).
    /// </summary>
    public int AttachGroup(IommuDomain domain, IommuGroup group)
    {
        ArgumentNullException.ThrowIfNull(domain);
        ArgumentNullException.ThrowIfNull(group);
        group.Mutex.Lock();
        try
        {
            if (group.Domain is not null && group.Domain != group.DefaultDomain && group.Domain != group.BlockingDomain)
            {
                return Errno.EBUSY.Negative();
            }

            if (group.CountLocked == 0 || domain.Hardware != Hardware || (group.NoSnoopControl && domain.EnforcesCacheCoherency))
            {
                return Errno.EINVAL.Negative();
            }

            SetDomainLocked(group, domain);
            return 0;
        }
        finally
        {
            group.Mutex.Unlock();
        }
    }

    /// <summary>iommu_detach_group(): back to the blocking domain if the group is owned, else to the default domain.</summary>
    public void DetachGroup(IommuDomain domain, IommuGroup group)
    {
        ArgumentNullException.ThrowIfNull(domain);
        ArgumentNullException.ThrowIfNull(group);
        group.Mutex.Lock();
        try
        {
            SetDomainLocked(group, group.Owner is not null ? group.BlockingDomain : group.DefaultDomain);
        }
        finally
        {
            group.Mutex.Unlock();
        }
    }

    /// <summary>__iommu_group_set_domain(): every member's context entry now points at <paramref name="domain"/>.</summary>
    private void SetDomainLocked(IommuGroup group, IommuDomain? domain)
    {
        group.Mutex.AssertHeld();
        if (group.Domain == domain)
        {
            return;
        }

        if (group.NoSnoopControl)
        {
            group.Domain?.AddNoSnoopGroup(-1);
            domain?.AddNoSnoopGroup(1);
        }

        group.Domain = domain;
        if (Machine.Kernel.Trace.Enabled)
        {
            Machine.Kernel.Trace.Event(KTask.CurrentOrNull, "iommu_group_set_domain", group.ToString(), domain is null ? "none" : $"{domain.Type.SysfsName()} #{domain.Id}");
        }
    }
}
