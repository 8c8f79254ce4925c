// Models struct vfio_dma of drivers/vfio/vfio_iommu_type1.c (v6.12):
// one user mapping [iova, iova+size) of vaddr with its protection, the task and mm that
// own its pins and locked_vm charge, the pages emulated-IOMMU drivers pinned in it, and its
// dirty bitmap. A VfioDma is also its own node in the container's tree (VfioDmaTree) and
// is pooled: the map/unmap hot path allocates nothing once the pool is warm. struct vfio_pfn
// and the pfn_list are in VfioPfnList.cs.

using Vfio.Platform.Iommu;
using Vfio.Platform.Mm;
using Vfio.Platform.Proc;

namespace Vfio.Iommu.Type1;

/// <summary>struct vfio_dma: one mapping of a type1 container. Fields are guarded by the container's lock (iommu-&gt;lock).</summary>
internal sealed class VfioDma
{
    // Tree links (VfioDmaTree); Red is the node colour.
    internal VfioDma? Left;
    internal VfioDma? Right;
    internal VfioDma? Parent;
    internal bool Red;

    /// <summary>First IOVA.</summary>
    public ulong Iova;

    /// <summary>Process virtual address the IOVA maps (meaningless while <see cref="VaddrInvalid"/>).</summary>
    public ulong Vaddr;

    /// <summary>Size in bytes; grows chunk by chunk while a map pins.</summary>
    public ulong Size;

    /// <summary>IOMMU_READ | IOMMU_WRITE.</summary>
    public IommuProt Prot;

    /// <summary>iommu_mapped: the pages are in every domain.</summary>
    public bool IommuMapped;

    /// <summary>lock_cap: the mapping task had CAP_IPC_LOCK at map time (no RLIMIT_MEMLOCK check).</summary>
    public bool LockCap;

    /// <summary>vaddr_invalid: UNMAP_DMA with VADDR took the vaddr away; MAP_DMA with VADDR gives one back.</summary>
    public bool VaddrInvalid;

    /// <summary>task: the mapping process (its group leader), whose RLIMIT_MEMLOCK applies.</summary>
    public SimProcess? Task;

    /// <summary>mm: the mapping process's address space, grabbed (mmgrab) for the life of the dma.</summary>
    public MmStruct? Mm;

    /// <summary>locked_vm: pages this dma charged to <see cref="Mm"/>.</summary>
    public long LockedVm;

    /// <summary>pfn_list: pages pinned through vfio_pin_pages, by IOVA; null until the first pin, then kept (emptied) across pool reuse.</summary>
    public VfioPfnList? PfnList;

    /// <summary>bitmap: one dirty bit per minimum page while dirty tracking is on; null otherwise.</summary>
    public ulong[]? Bitmap;

    /// <summary>Pins taken through this dma and tracked per address space (<c>VfioDesign.ExternalPinsPerAddressSpace</c>); 0 otherwise.</summary>
    public int ExternalRefs;

    /// <summary>Consecutive dma_unmap notifications that left pages pinned (the kernel BUGs past 10).</summary>
    public int UnmapRetries;

    /// <summary>End of the range (exclusive); wraps to 0 for a dma ending at 2^64.</summary>
    public ulong End => Iova + Size;

    /// <summary>Last byte of the range.</summary>
    public ulong Last => Iova + Size - 1;

    /// <summary>Pages pinned through vfio_pin_pages (per-address-space pins count once per pin taken through this dma).</summary>
    public int PfnCount => (PfnList?.Count ?? 0) + ExternalRefs;

    /// <summary>Clears every field for reuse from the pool.</summary>
    public void Reset()
    {
        Left = Right = Parent = null;
        Red = false;
        Iova = Vaddr = Size = 0;
        Prot = IommuProt.None;
        IommuMapped = LockCap = VaddrInvalid = false;
        Task = null;
        Mm = null;
        LockedVm = 0;
        PfnList?.Clear();
        Bitmap = null;
        UnmapRetries = 0;
        ExternalRefs = 0;
    }

    /// <inheritdoc/>
    public override string ToString() => $"[0x{Iova:x}, +0x{Size:x}) vaddr 0x{Vaddr:x} {Prot}{(VaddrInvalid ? " vaddr-invalid" : string.Empty)}";
}
