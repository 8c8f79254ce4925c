// Models the emulated-IOMMU entry points of drivers/vfio/vfio.c as merged in v4.10 (the 2016
// "Add Mediated device support" series): vfio_register_notifier / vfio_unregister_notifier
// for VFIO_IOMMU_NOTIFY (a blocking notifier chain in the IOMMU backend that hears
// VFIO_IOMMU_NOTIFY_DMA_UNMAP), and vfio_pin_pages / vfio_unpin_pages taking arrays of user
// (IOVA) page frame numbers. Used only with VfioDesign.DmaUnmapNotifierChain (the 2016 mdev
// design); today's kernel has ops->dma_unmap and the (iova, npage) calls of VfioDevice.
//
// Each call takes the group's container as a container user for its duration
// (vfio_group_add_container_user: no container or no IOMMU driver → EINVAL, a noiommu group
// → EPERM), then calls the backend (no such op → ENOTTY).

using Vfio.Kernel;

namespace Vfio.Core;

/// <summary>enum vfio_notify_type of v4.10.</summary>
public enum VfioNotifyType
{
    /// <summary>VFIO_IOMMU_NOTIFY: events of the container's IOMMU backend.</summary>
    Iommu = 0,

    /// <summary>VFIO_GROUP_NOTIFY: events of the group (SET_KVM); not modelled: registration fails with EINVAL.</summary>
    Group = 1,
}

/// <summary>The events of <see cref="VfioNotifyType.Iommu"/>.</summary>
public static class VfioIommuNotify
{
    /// <summary>VFIO_IOMMU_NOTIFY_DMA_UNMAP (BIT(0)).</summary>
    public const ulong DmaUnmap = 1;
}

/// <summary>A notifier_block on the IOMMU backend's chain (VFIO_IOMMU_NOTIFY).</summary>
public interface IVfioIommuNotifier
{
    /// <summary>VFIO_IOMMU_NOTIFY_DMA_UNMAP with the mapping [<paramref name="iova"/>, +<paramref name="size"/>): unpin everything pinned in it.</summary>
    void DmaUnmap(ulong iova, ulong size);
}

/// <summary>The v4.10 vfio_iommu_driver_ops members the 2016 design added (pin/unpin by user PFN, register/unregister_notifier).</summary>
public interface IVfioIommuDriver2016
{
    /// <summary>-&gt;pin_pages(user_pfn[], npage, prot, phys_pfn[]): npage or -errno; nothing stays pinned on failure.</summary>
    int PinPagesByPfn(object? iommuData, ReadOnlySpan<ulong> userPfn, int prot, Span<ulong> physPfn);

    /// <summary>-&gt;unpin_pages(user_pfn[], npage): the pages unpinned or -errno.</summary>
    int UnpinPagesByPfn(object? iommuData, ReadOnlySpan<ulong> userPfn);

    /// <summary>-&gt;register_notifier(events, nb): 0 or -errno (EINVAL for an unknown event).</summary>
    int RegisterNotifier(object? iommuData, ref ulong events, IVfioIommuNotifier nb);

    /// <summary>-&gt;unregister_notifier(nb): 0, or -ENOENT when <paramref name="nb"/> is not registered.</summary>
    int UnregisterNotifier(object? iommuData, IVfioIommuNotifier nb);
}

/// <summary>The v4.10 vfio.c API for emulated-IOMMU (mdev) vendor drivers.</summary>
public static class Vfio2016
{
    /// <summary>vfio_register_notifier(dev, type, required_events, nb): 0 or -errno; <paramref name="events"/> keeps the events nobody knew.</summary>
    public static int RegisterNotifier(VfioDevice? device, VfioNotifyType type, ref ulong events, IVfioIommuNotifier? nb)
    {
        if (device is null || nb is null || events == 0)
        {
            return ErrorReason.Fail(Errno.EINVAL, "vfio_register_notifier: no device, notifier or events");
        }

        if (type != VfioNotifyType.Iommu)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"vfio_register_notifier: notify type {type} is not modelled");
        }

        int ret = UseContainer(device, "vfio_register_notifier", out VfioContainer? c, out IVfioIommuDriver2016? d);
        if (ret != 0)
        {
            return ret == Errno.ENOTTY.Negative() ? ret : Errno.EINVAL.Negative();
        }

        return d!.RegisterNotifier(c!.IommuData, ref events, nb);
    }

    /// <summary>vfio_unregister_notifier(dev, type, nb): 0 or -errno.</summary>
    public static int UnregisterNotifier(VfioDevice? device, VfioNotifyType type, IVfioIommuNotifier? nb)
    {
        if (device is null || nb is null)
        {
            return ErrorReason.Fail(Errno.EINVAL, "vfio_unregister_notifier: no device or notifier");
        }

        if (type != VfioNotifyType.Iommu)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"vfio_unregister_notifier: notify type {type} is not modelled");
        }

        int ret = UseContainer(device, "vfio_unregister_notifier", out VfioContainer? c, out IVfioIommuDriver2016? d);
        if (ret != 0)
        {
            return ret == Errno.ENOTTY.Negative() ? ret : Errno.EINVAL.Negative();
        }

        return d!.UnregisterNotifier(c!.IommuData, nb);
    }

    /// <summary>vfio_pin_pages(dev, user_pfn, npage, prot, phys_pfn): pins the pages at IOVA <c>user_pfn[i] &lt;&lt; PAGE_SHIFT</c>; npage or -errno.</summary>
    public static int PinPages(VfioDevice? device, ReadOnlySpan<ulong> userPfn, int prot, Span<ulong> physPfn)
    {
        if (device is null || userPfn.Length == 0 || physPfn.Length < userPfn.Length)
        {
            return ErrorReason.Fail(Errno.EINVAL, "vfio_pin_pages: no device, no pages, or phys_pfn shorter than user_pfn");
        }

        if (userPfn.Length > VfioDevice.PinPagesMaxEntries)
        {
            return ErrorReason.Fail(Errno.E2BIG, $"vfio_pin_pages: {userPfn.Length} pages (at most {VfioDevice.PinPagesMaxEntries})");
        }

        int ret = UseContainer(device, "vfio_pin_pages", out VfioContainer? c, out IVfioIommuDriver2016? d);
        return ret != 0 ? ret : d!.PinPagesByPfn(c!.IommuData, userPfn, prot, physPfn[..userPfn.Length]);
    }

    /// <summary>vfio_unpin_pages(dev, user_pfn, npage): the pages unpinned or -errno.</summary>
    public static int UnpinPages(VfioDevice? device, ReadOnlySpan<ulong> userPfn)
    {
        if (device is null || userPfn.Length == 0)
        {
            return ErrorReason.Fail(Errno.EINVAL, "vfio_unpin_pages: no device or no pages");
        }

        if (userPfn.Length > VfioDevice.PinPagesMaxEntries)
        {
            return ErrorReason.Fail(Errno.E2BIG, $"vfio_unpin_pages: {userPfn.Length} pages (at most {VfioDevice.PinPagesMaxEntries})");
        }

        int ret = UseContainer(device, "vfio_unpin_pages", out VfioContainer? c, out IVfioIommuDriver2016? d);
        return ret != 0 ? ret : d!.UnpinPagesByPfn(c!.IommuData, userPfn);
    }

    /// <summary>vfio_group_add_container_user() and the backend lookup.</summary>
    private static int UseContainer(VfioDevice device, string op, out VfioContainer? container, out IVfioIommuDriver2016? driver)
    {
        container = null;
        driver = null;
        VfioGroup? group = device.Group;
        // container_users was an atomic in v4.10: read without the group lock, which device open holds.
        if (group is null || group.ContainerUsers == 0 || group.Container is not { } c)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{op}: {device.Name}'s group is not in a container");
        }

        if (group.Type == VfioGroupType.NoIommu)
        {
            return ErrorReason.Fail(Errno.EPERM, $"{op}: {device.Name}'s group is a noiommu group");
        }

        if (c.IommuDriver is null)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{op}: the container of {device.Name} has no IOMMU driver");
        }

        if (c.IommuDriver is not IVfioIommuDriver2016 d)
        {
            return ErrorReason.Fail(Errno.ENOTTY, $"{op}: IOMMU driver {c.IommuDriver.Name} has no such op");
        }

        container = c;
        driver = d;
        return 0;
    }
}
