// Release-dependent behaviour of drivers/vfio/pci/ as named profile features (see
// Vfio.Kernel/KernelFeature.cs). Gate on these with Core.Kernel.Profile.Has(...), never on a
// version number; docs/kernel-versions.md lists each one with its value per preset.

using Vfio.Kernel;

namespace Vfio.Pci;

/// <summary>Profile features of vfio-pci.</summary>
public static class VfioPciFeatures
{
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
}
