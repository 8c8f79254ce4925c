// The calibrated cost profiles and the sources of their figures. docs/cost-model.md lists
// them and shows how the per-operation costs compose into the published per-page figures.

namespace Vfio.Kernel;

internal static class CostProfiles
{
    // linux-x86: the composed figures the calibration meets (CostModelTests checks them):
    //   type1 map, scattered 4 KiB pages, per page:
    //     GupFolio 31.5 + GupPage 5.75 + PteWrite 22 + PageTableAlloc 250/512 + LockedVmAccount 100/512
    //     = 59.9 ns                                          (published: about 60 ns, 16 ms per GiB)
    //   type1 unmap, scattered 4 KiB pages, per page:
    //     UnpinFolio 30 + UnpinPage 5.75 + PteClear 32 + IotlbFlush 1000/512
    //     = 69.7 ns                                          (published: about 70 ns)
    //   type1 map, 2 MiB hugetlb page:
    //     GupFolio 31.5 + 512 x GupPage 5.75 + PteWrite 22     = 3.0 µs (published: 16 GiB in 25-30 ms)
    //   a syscall with nothing to copy (VFIO_GET_API_VERSION): SyscallEntry 90 ns.
    private const string Type1Map4K =
        "composed with the other map costs to the ~60 ns per 4 KiB page (~16 ms per GiB) a type1 VFIO_IOMMU_MAP_DMA of populated 4 KiB pages takes on current x86 servers";

    private const string Type1Map2M =
        "the per-4 KiB-subpage work of pinning a hugetlb folio (page pointers handed back and checked one by one before folio batching): a 2 MiB page maps in ~3 µs, 16 GiB of 2 MiB pages in 25-30 ms on current x86 servers";

    private const string Type1Unmap4K =
        "composed with the other unmap costs to the ~70 ns per 4 KiB page a type1 VFIO_IOMMU_UNMAP_DMA takes (iommu_unmap_fast per page, unpin with set_page_dirty_lock, one IOTLB sync per 512 pages)";

    internal static CostProfile CreateLinuxX86() => new(
        "linux-x86",
        "Linux 6.x on an x86-64 server with VT-d/AMD-Vi: type1 map ~60 ns per 4 KiB page, unmap ~70 ns, ~3 µs per 2 MiB page, a syscall ~90 ns",
        new Dictionary<CostOp, double>
        {
            [CostOp.SyscallEntry] = 90,
            [CostOp.IoctlCopy] = 25,
            [CostOp.GupPage] = 5.75,
            [CostOp.GupFolio] = 31.5,
            [CostOp.UnpinPage] = 5.75,
            [CostOp.UnpinFolio] = 30,
            [CostOp.PteWrite] = 22,
            [CostOp.PteClear] = 32,
            [CostOp.PageTableAlloc] = 250,
            [CostOp.IotlbFlush] = 1000,
            [CostOp.IotlbInvalidate] = 0,
            [CostOp.IotlbHit] = 0,
            [CostOp.IotlbWalk] = 300,
            [CostOp.LockHandoff] = 1500,
            [CostOp.EventfdSignal] = 150,
            [CostOp.InterruptDelivery] = 1000,
            [CostOp.MmioAccess] = 800,
            [CostOp.MmioWrite] = 100,
            [CostOp.LockedVmAccount] = 100,
        },
        new Dictionary<CostOp, string>
        {
            [CostOp.SyscallEntry] =
                "a null system call (syscall/sysret with entry work) on a current x86-64 CPU not needing KPTI: ~90 ns; getpid loops measure 100-200 ns on older parts and ~300-500 ns with KPTI (Skylake, Zen 2 blog measurements, 2019-2021). Target figure of the model, not one machine's",
            [CostOp.IoctlCopy] =
                "estimate: copy_from_user/copy_to_user of a small struct (access_ok, STAC/CLAC, a few cache lines) ~20-30 ns on x86-64",
            [CostOp.GupPage] = Type1Map2M,
            [CostOp.GupFolio] =
                "per folio pinned by pin_user_pages(FOLL_LONGTERM) (walk, try_grab_folio, longterm check): the remainder of the ~60 ns 4 KiB type1 map once GupPage, PteWrite and the amortised table and accounting costs are taken out; " + Type1Map4K,
            [CostOp.UnpinPage] = "as GupPage: per 4 KiB subpage released by unpin_user_page_range_dirty_lock",
            [CostOp.UnpinFolio] = "per folio unpinned (dirtied with set_page_dirty_lock for a writable mapping): " + Type1Unmap4K,
            [CostOp.PteWrite] =
                "per I/O page-table leaf written by the Intel VT-d driver's map (iommu_map of one 4 KiB run: pfn_to_dma_pte walk, store, no flush on a non-caching-mode IOMMU); " + Type1Map4K,
            [CostOp.PteClear] = "per leaf cleared by iommu_unmap_fast (walk, clear, gather); " + Type1Unmap4K,
            [CostOp.PageTableAlloc] =
                "estimate: allocating and zeroing one 4 KiB I/O page-table page (page allocator plus clear_page at ~20-30 GB/s); amortised over 512 leaves it adds ~0.5 ns per mapped page",
            [CostOp.IotlbFlush] =
                "estimate: one VT-d queued-invalidation command with its wait descriptor, of the order of 1,000-2,000 cycles reported for IOTLB invalidation in the IOMMU literature (Peleg et al., USENIX ATC 2015; Malka et al., ASPLOS 2015); type1 issues one per 512 unmapped pages",
            [CostOp.IotlbInvalidate] =
                "0: the entries an invalidation drops are dropped by the hardware while the command runs; its time is IotlbFlush. Counted, not charged",
            [CostOp.IotlbHit] = "0: a translation served by the IOTLB adds no measurable latency to a DMA. Counted, not charged",
            [CostOp.IotlbWalk] =
                "approximate: an IOTLB miss adds ~300 ns to a DMA with 4 KiB pages (page walk from memory; Neugebauer et al., 'Understanding PCIe performance for end host networking', SIGCOMM 2018; Amit et al., 'IOMMU: strategies for mitigating the IOTLB bottleneck', 2010)",
            [CostOp.LockHandoff] =
                "estimate: waking a sleeping task and switching to it when a mutex, rwsem or completion is handed over: thread context switches measure ~1-3 µs on x86-64 Linux",
            [CostOp.EventfdSignal] =
                "estimate: eventfd_signal with its spinlock, counter update and wake-up of the wait queue, ~100-200 ns without a sleeper to run",
            [CostOp.InterruptDelivery] =
                "estimate: an MSI or INTx interrupt from the device to its handler (APIC delivery, IDT entry, irq entry and exit): hundreds of ns to ~1 µs on real hardware",
            [CostOp.MmioAccess] =
                "estimate: an uncached CPU read of a device register is a non-posted PCIe round trip, ~0.5-1 µs (PCIe latency measurements, Neugebauer et al., SIGCOMM 2018)",
            [CostOp.MmioWrite] = "estimate: a posted (uncached) write leaves the CPU in ~100 ns; the device completes it later",
            [CostOp.LockedVmAccount] =
                "estimate: __account_locked_vm under mmap_lock held for writing (uncontended lock and unlock, the RLIMIT_MEMLOCK check); type1 accounts once per pinned batch of up to 512 pages",
        });
}
