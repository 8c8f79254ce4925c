// Release-dependent behaviour of drivers/vfio/pci/ as named profile features (see
// Vfio.Kernel/KernelFeature.cs). Gate on these with Core.Kernel.Profile.Has(...), never on a
// version number; docs/kernel-versions.md lists each one with its value per preset.

using Vfio.Kernel;

namespace Vfio.Pci;

/// <summary>Profile features of vfio-pci.</summary>
public static class VfioPciFeatures
{
    /// <summary>
    /// VFIO_DEVICE_GET_PCI_HOT_RESET_INFO that fails while it fills the device list (an
    /// affected function without an IOMMU group: EPERM) writes nothing back (v6.6); before,
    /// it still copied the header back, with flags cleared and count as the caller passed it.
    /// </summary>
    public static KernelFeature HotResetInfoFailedFillWritesNothing { get; } = new()
    {
        Name = nameof(HotResetInfoFailedFillWritesNothing),
        Description = "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO that fails while filling the device list (EPERM for a function without an IOMMU group) writes nothing back; before, it copied the header back with flags cleared and the caller's count.",
        Since = new(6, 6),
        Commits = [new("b56b7aabcf3c", "vfio/pci: Copy hot-reset device info to userspace in the devices loop")],
    };

    /// <summary>
    /// BAR mmaps are zapped with unmap_mapping_range() on the address space of a per-device
    /// inode and every fault inserts under memory_lock alone (v6.10); before, vfio-pci kept a
    /// list of the VMAs it had faulted in (vma_lock, vma_list) and zapped by walking it.
    /// </summary>
    public static KernelFeature ZapBarsByMappingRange { get; } = new()
    {
        Name = nameof(ZapBarsByMappingRange),
        Description = "BAR mmaps are zapped with unmap_mapping_range() on a per-device inode's address space; before, vfio-pci tracked the VMAs it had faulted in on a vma_list (vma_lock) and zapped by walking that list.",
        Since = new(6, 10),
        Commits =
        [
            new("b7c5e64fecfa", "vfio: Create vfio_fs_type with inode per device"),
            new("aac6db75a9fc", "vfio/pci: Use unmap_mapping_range()"),
        ],
    };

    /// <summary>
    /// A fault on a BAR mmap maps a 1 GiB (PUD) or 2 MiB (PMD) leaf where the VMA and the BAR
    /// are aligned for it, else the single page (v6.12); before, the fault mapped the whole
    /// VMA at once (io_remap_pfn_range in the vma-list design, v6.10's full-vma insert).
    /// </summary>
    public static KernelFeature HugePfnmapFaults { get; } = new()
    {
        Name = nameof(HugePfnmapFaults),
        Description = "A fault on a BAR mmap maps one 1 GiB (PUD) or 2 MiB (PMD) leaf where the VMA and the BAR allow it, else the one page; before, a fault mapped the whole VMA at once.",
        Since = new(6, 12),
        Commits = [new("f9e54c3a2f5b", "vfio/pci: implement huge_fault support")],
    };

    /// <summary>
    /// read/write of a BAR through the device fd makes an aligned 8-byte piece one 8-byte
    /// device access; before, the widest access was 4 bytes, so 8 bytes were two accesses.
    /// </summary>
    public static KernelFeature BarRdwrQwordAccess { get; } = new()
    {
        Name = nameof(BarRdwrQwordAccess),
        Description = "pread/pwrite of a BAR through the device fd does an aligned 8-byte piece as one 8-byte device access; before, as two 4-byte accesses.",
        Since = new(6, 12),
        CommitNotEstablished = "the upstream commit (\"vfio/pci: Support 8-byte PCI loads and stores\", 2024) could not be looked up here; the behaviour was checked on the real kernels: an 8-byte pread of edu's register 0 returns all-ones (one 8-byte read) on 6.12.118 and the two 4-byte registers on 6.1.192",
    };
}
