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
    /// list of the VMAs it had faulted in (vma_lock, vma_list) and zapped by walking it. The
    /// hot reset follows: one loop (in the groups, memory_lock try-locked, zap) instead of a
    /// zap-under-vma_lock loop over every device followed by a memory_lock loop.
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
        CommitNotEstablished = "the commit ids could not be looked up here. Mainline added 8-byte accesses in 2024 (\"vfio/pci: Support 8-byte PCI loads and stores\") behind #ifdef ioread64/iowrite64, which x86 did not satisfy there; a December 2024 series (Ramesh Thomas) removed those #ifdefs. The linux-6.12 profile follows the 6.12.y stable kernel, which does the 8-byte access: an 8-byte pread of edu's register 0 returns all-ones (one 8-byte read) on the real 6.12.118 and the two 4-byte registers on 6.1.192",
    };

    /// <summary>
    /// MSI-X vectors can be added while MSI-X is enabled (pci_msix_alloc_irq_at), GET_IRQ_INFO
    /// reports MSI-X without NORESIZE, and loopback triggers skip vectors that have no eventfd
    /// instead of refusing a range past the vectors allocated (v6.5); before, the vector count
    /// was fixed at enable and a range past it was EINVAL.
    /// </summary>
    public static KernelFeature DynamicMsix { get; } = new()
    {
        Name = nameof(DynamicMsix),
        Description = "MSI-X vectors can be added while MSI-X is enabled, GET_IRQ_INFO reports MSI-X without NORESIZE, and loopback triggers skip vectors without an eventfd; before, the vectors were fixed at enable and a range past them was EINVAL.",
        Since = new(6, 5),
        Commits =
        [
            new("63972f63a63f", "vfio/pci: Remove interrupt context counter"),
            new("dd27a7070038", "vfio/pci: Probe and store ability to support dynamic MSI-X"),
            new("e4163438e015", "vfio/pci: Support dynamic MSI-X"),
            new("6c8017c6a58d", "vfio/pci: Clear VFIO_IRQ_INFO_NORESIZE for MSI-X"),
        ],
    };

    /// <summary>
    /// The INTx handler is requested once when INTx is enabled and stays until it is disabled;
    /// SET_IRQS swaps the trigger eventfd under it (a missing trigger is skipped) and releases
    /// the old one only after synchronize_irq (v6.9, CVE-2024-26812); before, changing the
    /// trigger freed and re-requested the IRQ with the eventfd as handler data, and a loopback
    /// or unmask with no trigger dereferenced NULL.
    /// </summary>
    public static KernelFeature PersistentIntxHandler { get; } = new()
    {
        Name = nameof(PersistentIntxHandler),
        Description = "The INTx handler lives from INTx enable to disable and the trigger eventfd is swapped under it (NULL tolerated), the old one released after synchronize_irq; before, the IRQ was freed and re-requested on every trigger change and a NULL trigger was signalled.",
        Since = new(6, 9),
        Commits = [new("18c198c96a81", "vfio/pci: Create persistent INTx handler")],
    };

    /// <summary>
    /// Before releasing a replaced INTx trigger, vfio-pci flushes inject work the unmask
    /// virqfd already scheduled (vfio_virqfd_flush_thread, v6.9); before, that work could
    /// signal the trigger after it was released.
    /// </summary>
    public static KernelFeature VirqfdFlushBeforeTriggerRelease { get; } = new()
    {
        Name = nameof(VirqfdFlushBeforeTriggerRelease),
        Description = "A replaced INTx trigger is released only after the unmask virqfd's scheduled inject work has run (vfio_virqfd_flush_thread); before, that work could signal a released trigger.",
        Since = new(6, 9),
        Commits = [new("b620ecbd17a0", "vfio: Introduce interface to flush virqfd inject workqueue")],
    };

    /// <summary>
    /// An exclusive INTx line (no DisINTx) is requested with IRQF_NO_AUTOEN and enabled only
    /// when the user's mask is clear (v6.9, CVE-2024-27437); before, request_irq enabled it and
    /// vfio disabled it afterwards, so an interrupt in between disabled it twice for good.
    /// </summary>
    public static KernelFeature ExclusiveIntxNoAutoEnable { get; } = new()
    {
        Name = nameof(ExclusiveIntxNoAutoEnable),
        Description = "An exclusive INTx line is requested without auto-enable and enabled only when not masked; before, it was enabled by request_irq and disabled afterwards, and an interrupt in that window left it disabled twice (lost for good).",
        Since = new(6, 9),
        Commits = [new("fe9a7082684e", "vfio/pci: Disable auto-enable of exclusive INTx IRQ")],
    };

    /// <summary>
    /// INTx masking from outside the interrupt code (the virtual COMMAND.INTX_DISABLE bit)
    /// takes igate (v6.9, CVE-2024-26810); before, it ran unlocked and could touch INTx state
    /// SET_IRQS was tearing down.
    /// </summary>
    public static KernelFeature LockedIntxMaskingOps { get; } = new()
    {
        Name = nameof(LockedIntxMaskingOps),
        Description = "Masking and unmasking INTx through the virtual COMMAND.INTX_DISABLE bit holds igate; before, it ran unlocked against SET_IRQS changing the INTx configuration.",
        Since = new(6, 9),
        Commits = [new("810cd4bb5345", "vfio/pci: Lock external INTx masking ops")],
    };

    /// <summary>
    /// SET_IRQS(ERR or REQ, TRIGGER, DATA_EVENTFD) with a negative fd other than -1 is EINVAL;
    /// before, it was accepted and changed nothing. It came with the RCU-protected ERR/REQ
    /// triggers (upstream in November 2025) and is in the 6.12.y stable series the linux-6.12
    /// profile follows (the real 6.12.118 answers EINVAL; 6.1.192 answers 0).
    /// </summary>
    public static KernelFeature ErrReqNegativeFdIsEinval { get; } = new()
    {
        Name = nameof(ErrReqNegativeFdIsEinval),
        Description = "SET_IRQS on ERR or REQ with DATA_EVENTFD and a negative fd other than -1 fails EINVAL; before, it succeeded and changed nothing. Upstream in November 2025; the linux-6.12 profile follows the 6.12.y stable series that carries it.",
        Since = new(6, 12),
        Commits = [new("98693e0897f7", "vfio/pci: Use RCU for error/request triggers to avoid circular locking")],
    };

    /// <summary>
    /// VFIO_DEVICE_PCI_HOT_RESET accepts a zero-length group-fd array from cdev-opened devices
    /// only: from a group-opened device, count 0 is EINVAL right after the flags check, before
    /// the reset is probed (v6.6); before, count 0 was EINVAL only after the slot/bus probe
    /// (ENODEV first), together with a count above the number of affected functions.
    /// </summary>
    public static KernelFeature HotResetZeroLengthFdArray { get; } = new()
    {
        Name = nameof(HotResetZeroLengthFdArray),
        Description = "VFIO_DEVICE_PCI_HOT_RESET with count 0 from a group-opened device is EINVAL before the reset is probed (the zero-length array is the cdev form); before, count 0 was EINVAL after the probe, so a device no reset can reach answered ENODEV.",
        Since = new(6, 6),
        Commits = [new("71791b9246c7", "vfio/pci: Allow passing zero-length fd array in VFIO_DEVICE_PCI_HOT_RESET")],
    };

    /// <summary>
    /// The designated vendor-specific extended capability (DVSEC, id 0x23) is shown to the user
    /// with its length from DVSEC header 1 and raw writes, as the vendor-specific one is (v6.4);
    /// before, it was hidden like every extended capability the length table did not name.
    /// </summary>
    public static KernelFeature DvsecVisible { get; } = new()
    {
        Name = nameof(DvsecVisible),
        Description = "The DVSEC extended capability (0x23) is in the user's chain, sized by DVSEC header 1, written raw; before, vfio-pci hid it.",
        Since = new(6, 4),
        Commits = [new("6467d0740a2b", "vfio/pci: Add DVSEC PCI Extended Config Capability to user visible list.")],
    };

    /// <summary>
    /// "hiding cap"/"hiding ecap" at open are debug messages (v6.5); before, every hidden
    /// capability printed an info line.
    /// </summary>
    public static KernelFeature HidingCapMessagesAtDebug { get; } = new()
    {
        Name = nameof(HidingCapMessagesAtDebug),
        Description = "vfio_cap_init/vfio_ecap_init log the capabilities they hide at debug level; before, at info level.",
        Since = new(6, 5),
        Commits =
        [
            new("912b625b4dcf", "vfio/pci: demote hiding ecap messages to debug level"),
            new("d9824f70e52c", "vfio/pci: Also demote hiding standard cap messages"),
        ],
    };
}
