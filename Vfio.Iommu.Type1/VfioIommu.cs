// Models struct vfio_iommu and the container-level entry points of
// drivers/vfio/vfio_iommu_type1.c (v6.12): the ioctl switch, CHECK_EXTENSION, device
// registration for dma_unmap notification, and release. Map, unmap, attach, info, dirty
// tracking and emulated-IOMMU pinning live in the partial files named after them.
//
// Locking: _lock (iommu->lock) protects everything in this object and every VfioDma of it.
// _deviceListLock (iommu->device_list_lock) protects _devices and nests inside _lock; the
// unmap path takes it, then drops _lock while drivers' dma_unmap run. Inside _lock, GUP takes
// the mapper's mmap_lock for reading and locked_vm accounting takes it for writing; the
// IOMMU domains' page-table locks nest inside all of them.

using Vfio.Core;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform;
using Vfio.Platform.Iommu;
using Vfio.Platform.Mm;

namespace Vfio.Iommu.Type1;

/// <summary>struct vfio_domain: one IOMMU domain of the container and the groups attached to it.</summary>
internal sealed class VfioDomain(IommuDomain domain)
{
    /// <summary>The IOMMU domain.</summary>
    public IommuDomain Domain { get; } = domain;

    /// <summary>group_list.</summary>
    public List<VfioIommuGroup> Groups { get; } = [];

    /// <summary>fgsp: unmapping one page of a superpage unmaps only that page (fine-grained superpages).</summary>
    public bool Fgsp { get; set; }

    /// <summary>enforce_cache_coherency: the domain blocks no-snoop DMA.</summary>
    public bool EnforceCacheCoherency { get; set; }
}

/// <summary>struct vfio_iommu_group.</summary>
internal sealed class VfioIommuGroup(IommuGroup group)
{
    /// <summary>The IOMMU group.</summary>
    public IommuGroup Group { get; } = group;

    /// <summary>pinned_page_dirty_scope: the group dirties memory only through vfio_pin_pages / vfio_dma_rw.</summary>
    public bool PinnedPageDirtyScope { get; set; }
}

/// <summary>struct vfio_iova: a usable IOVA range, both ends inclusive.</summary>
internal readonly record struct VfioIova(ulong Start, ulong End);

/// <summary>struct vfio_iommu: the type1 instance of one container.</summary>
internal sealed partial class VfioIommu
{
    /// <summary>VFIO_BATCH_MAX_CAPACITY: pages (here, contiguous runs) GUP fills per call.</summary>
    internal const int BatchCapacity = 512;

    /// <summary>VFIO_IOMMU_TLB_SYNC_MAX: unmapped regions gathered before an IOTLB sync and unpin.</summary>
    internal const int TlbSyncMax = 512;

    /// <summary>DIRTY_BITMAP_PAGES_MAX (INT_MAX).</summary>
    internal const ulong DirtyBitmapPagesMax = int.MaxValue;

    /// <summary>DIRTY_BITMAP_SIZE_MAX: ALIGN(INT_MAX, 64) / 8 bytes (256 MiB).</summary>
    internal const ulong DirtyBitmapSizeMax = (((ulong)int.MaxValue + 63) & ~63UL) / 8;

    private static readonly LockClass IommuLockClass = LockClass.Get("vfio_iommu.lock");
    private static readonly LockClass DeviceListLockClass = LockClass.Get("vfio_iommu.device_list_lock");
    private static readonly KernelIdSpace s_ids = new("vfio_iommu");

    // Protects every field below and every VfioDma in _dmas (iommu->lock).
    private readonly KMutex _lock;

    // Protects _devices (iommu->device_list_lock); nests inside _lock.
    private readonly KMutex _deviceListLock;

    private readonly List<VfioDomain> _domains = [];
    private readonly List<VfioIommuGroup> _emulatedGroups = [];
    private readonly List<VfioDevice> _devices = [];
    private readonly VfioDmaTree _dmas = new();
    private readonly Stack<VfioDma> _dmaPool = new();
    private readonly PfnRun[] _runs = new PfnRun[BatchCapacity];
    private List<VfioIova> _iovaList = [];
    private ulong _pgsizeBitmap = ~(ulong)(PhysMem.PageSize - 1);
    private uint _dmaAvail;
    private int _vaddrInvalidCount;
    private int _numNonPinnedGroups;
    private bool _dirtyTracking;

    internal VfioIommu(VfioIommuType1 module, bool v2, bool nesting)
    {
        Module = module;
        Kernel = module.Kernel;
        Machine = module.Machine;
        V2 = v2;
        Nesting = nesting;
        Id = Kernel.NextId(s_ids);
        _lock = new KMutex(Kernel, $"vfio_iommu[{Id}].lock", IommuLockClass);
        _deviceListLock = new KMutex(Kernel, $"vfio_iommu[{Id}].device_list_lock", DeviceListLockClass);
        _dmaAvail = EntryLimit = module.DmaEntryLimit;
    }

    /// <summary>dma_entry_limit as read when the container was created.</summary>
    internal uint EntryLimit { get; }

    /// <summary>The type1 module.</summary>
    public VfioIommuType1 Module { get; }

    /// <summary>The simulated kernel.</summary>
    public SimKernel Kernel { get; }

    /// <summary>The machine.</summary>
    public SimMachine Machine { get; }

    /// <summary>A number for names and traces.</summary>
    public long Id { get; }

    /// <summary>v2: TYPE1v2 semantics (unmap may not bisect a mapping; pinning and dirty tracking allowed).</summary>
    public bool V2 { get; }

    /// <summary>nesting: opened as TYPE1_NESTING (which v6.13 removed; every profile here still has it).</summary>
    public bool Nesting { get; }

    private IommuCore IommuCore => Machine.Iommu ?? throw new InvalidOperationException("this machine has no IOMMU subsystem");

    /// <summary>The smallest page size of the container (1 &lt;&lt; __ffs(pgsize_bitmap)).</summary>
    private ulong MinPgsize => _pgsizeBitmap & (0 - _pgsizeBitmap);

    private int MinPgshift => System.Numerics.BitOperations.TrailingZeroCount(_pgsizeBitmap);

    // ---- ioctl.

    /// <summary>vfio_iommu_type1_ioctl() for everything but CHECK_EXTENSION.</summary>
    internal long Ioctl(uint cmd, ulong arg) => cmd switch
    {
        VfioIoctl.IommuGetInfo => GetInfoIoctl(arg),
        VfioIoctl.IommuMapDma => MapDmaIoctl(arg),
        VfioIoctl.IommuUnmapDma => UnmapDmaIoctl(arg),
        VfioIoctl.IommuDirtyPages => DirtyPagesIoctl(arg),
        _ => Errno.ENOTTY.Negative(),
    };

    /// <summary>vfio_iommu_type1_check_extension(); <paramref name="iommu"/> is null before SET_IOMMU.</summary>
    internal static long CheckExtension(VfioIommu? iommu, ulong arg)
    {
        switch (arg)
        {
            case VfioExtension.Type1:
            case VfioExtension.Type1v2:
            case VfioExtension.Type1Nesting:
            case VfioExtension.UnmapAll:
                return 1;
            case VfioExtension.UpdateVaddr:
                return iommu is not null && !iommu.HasEmulated() ? 1 : 0;
            case VfioExtension.DmaCcIommu:
                return iommu is null ? 0 : iommu.DomainsEnforceCacheCoherency() ? 1 : 0;
            default:
                return 0;
        }
    }

    private bool HasEmulated()
    {
        _lock.Lock();
        try
        {
            return _emulatedGroups.Count != 0;
        }
        finally
        {
            _lock.Unlock();
        }
    }

    /// <summary>vfio_domains_have_enforce_cache_coherency(): 1 when every domain blocks no-snoop (also with no domain).</summary>
    private bool DomainsEnforceCacheCoherency()
    {
        _lock.Lock();
        try
        {
            foreach (VfioDomain d in _domains)
            {
                if (!d.EnforceCacheCoherency)
                {
                    return false;
                }
            }

            return true;
        }
        finally
        {
            _lock.Unlock();
        }
    }

    // ---- Device registration (for dma_unmap notification).

    /// <summary>vfio_iommu_type1_register_device(): a device with a dma_unmap op joins the notification list.</summary>
    internal void RegisterDevice(VfioDevice device)
    {
        if ((device.Ops.Provides & VfioOps.DmaUnmap) == 0)
        {
            return;
        }

        _lock.Lock();
        _deviceListLock.Lock();
        _devices.Add(device);
        _deviceListLock.Unlock();
        _lock.Unlock();
    }

    /// <summary>vfio_iommu_type1_unregister_device().</summary>
    internal void UnregisterDevice(VfioDevice device)
    {
        if ((device.Ops.Provides & VfioOps.DmaUnmap) == 0)
        {
            return;
        }

        _lock.Lock();
        _deviceListLock.Lock();
        _devices.Remove(device);
        _deviceListLock.Unlock();
        _lock.Unlock();
    }

    // ---- Release.

    /// <summary>vfio_iommu_type1_release(): the container's last group went; everything is unmapped, unpinned and freed.</summary>
    internal void Release()
    {
        _lock.Lock();
        try
        {
            _emulatedGroups.Clear();
            UnmapUnpinAllLocked();
            foreach (VfioDomain d in _domains)
            {
                foreach (VfioIommuGroup g in d.Groups)
                {
                    IommuCore.DetachGroup(d.Domain, g.Group);
                }

                d.Groups.Clear();
                d.Domain.Free();
            }

            _domains.Clear();
            _iovaList = [];
            Kernel.Trace.Event(KTask.CurrentOrNull, "vfio_iommu_type1_release", $"container iommu {Id}");
        }
        finally
        {
            _lock.Unlock();
        }
    }

    // ---- Pool.

    private VfioDma AllocDma()
    {
        if (_dmaPool.TryPop(out VfioDma? dma))
        {
            return dma;
        }

        return new VfioDma();
    }

    private void FreeDma(VfioDma dma)
    {
        dma.Reset();
        if (_dmaPool.Count < 1024)
        {
            _dmaPool.Push(dma);
        }
    }

    /// <inheritdoc/>
    public override string ToString() => $"vfio_iommu {Id} ({(V2 ? "TYPE1v2" : "TYPE1")})";
}
