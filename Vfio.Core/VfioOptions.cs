// The vfio module's parameters and the design variants (docs/design-variants.md): each variant
// switches the core to a design that was argued for (or shipped) in the past, so a user
// can watch what it does. The defaults are today's kernel.

namespace Vfio.Core;

/// <summary>What unregistering a device that user space holds open does.</summary>
public enum VfioUnbindPolicy
{
    /// <summary>Wait, uninterruptibly, without asking user space (the pre-2015 design).</summary>
    SilentBlock,

    /// <summary>Call the driver's request(count) and wait in 10 s slices until released (the kernel since 2015).</summary>
    RequestAndWait,

    /// <summary>Request, and after <see cref="VfioDesign.RevokeAfter"/> revoke the user's access: its fds stop working and the unbind completes.</summary>
    RequestThenRevoke,

    /// <summary>
    /// Do not wait (proposed, never merged): unregister hides the device, drops the
    /// registration reference and returns at once; the driver's last put then frees the
    /// device while the user's fds still point at it, and their next use is a
    /// use-after-free (a KASAN report).
    /// </summary>
    NoWait,
}

/// <summary>When the /dev/vfio/N node of a group exists, and whether opening it needs viability (the 2011 group-model debate).</summary>
public enum VfioGroupNodes
{
    /// <summary>When a device of the group binds to a vfio driver; open allowed, use refused until viable (the kernel).</summary>
    OnVfioBind,

    /// <summary>For every IOMMU group when vfio loads, whether or not a device is bound to vfio.</summary>
    AllGroupsAtLoad,

    /// <summary>As <see cref="OnVfioBind"/>, but open itself fails (EBUSY) while the group is not viable.</summary>
    OpenRefusedUntilViable,
}

/// <summary>How a group's viability is decided.</summary>
public enum VfioViabilityModel
{
    /// <summary>DMA ownership (v5.19+): viable unless a device is bound to a DMA-API kernel driver; enforced by the claim at SET_CONTAINER.</summary>
    DmaOwnership,

    /// <summary>The ≤v5.18 group notifier: vfio / pci-stub / bridges are viable, and a kernel driver binding into a live group is a kernel BUG.</summary>
    LegacyNotifier,
}

/// <summary>How external users (KVM) take hold of a group.</summary>
public enum VfioExternalUsers
{
    /// <summary>The vfio_file API (v5.19+): KVM holds a file reference; no checks.</summary>
    FileApi,

    /// <summary>vfio_group_get_external_user (≤v5.18): the group must be in a container with an IOMMU driver and viable.</summary>
    Checked,

    /// <summary>The first external-user design: the group is taken without checking its container or viability.</summary>
    Unchecked,
}

/// <summary>What vfio-pci does with a device's ERR and REQ eventfds when the device is closed (race 8 in docs/races.md).</summary>
public enum VfioErrReqRelease
{
    /// <summary>Drop and clear them under igate, which request() and the AER callback also hold (the kernel since v5.9).</summary>
    PutAndClearUnderIgate,

    /// <summary>Drop and clear them without igate (v5.8): a request() signalling at that moment uses a freed eventfd.</summary>
    PutAndClearUnlocked,

    /// <summary>Drop them but leave the pointers set (the first leak fix): a later signal or close uses a freed eventfd.</summary>
    PutWithoutClear,
}

/// <summary>How a group's KVM pointer and the VM reference of an open device are locked (race 7 in docs/races.md).</summary>
public enum VfioKvmLocking
{
    /// <summary>
    /// A spinlock (kvm_ref_lock) guards the group's KVM, and the vfio core takes a VM
    /// reference at a device's first open and drops it at its last close (v6.3,
    /// 2b48f52f2bff "vfio: fix deadlock between group lock and kvm lock").
    /// </summary>
    KvmRefLock,

    /// <summary>
    /// vfio_file_set_kvm takes the group lock; the KVM-VFIO device lets go of its files at its
    /// fd release, under kvm-&gt;lock; a driver that wants the VM takes its own reference in
    /// open_device (51cdc8bc120e without 2b48f52f2bff). A driver whose open_device takes
    /// kvm-&gt;lock (vfio-ap) inverts kvm-&gt;lock and the group lock.
    /// </summary>
    GroupLockAtKvmVfioRelease,

    /// <summary>
    /// As <see cref="GroupLockAtKvmVfioRelease"/>, but the KVM-VFIO device lets go of its files
    /// only when the VM is destroyed (before 51cdc8bc120e "kvm/vfio: Fix potential deadlock on
    /// vfio group_lock"): a driver dropping the VM's last reference at close, under the group
    /// lock, re-enters the group lock.
    /// </summary>
    GroupLockAtVmDestroy,
}

/// <summary>The design variants of the vfio core (docs/design-variants.md). Defaults are the current kernel's.</summary>
public sealed record VfioDesign
{
    /// <summary>The kernel's current design.</summary>
    public static VfioDesign Default { get; } = new();

    /// <summary>Unbind of an in-use device.</summary>
    public VfioUnbindPolicy Unbind { get; init; } = VfioUnbindPolicy.RequestAndWait;

    /// <summary>How long <see cref="VfioUnbindPolicy.RequestThenRevoke"/> waits before revoking (virtual time).</summary>
    public TimeSpan RevokeAfter { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Group device nodes.</summary>
    public VfioGroupNodes GroupNodes { get; init; } = VfioGroupNodes.OnVfioBind;

    /// <summary>The viability model.</summary>
    public VfioViabilityModel Viability { get; init; } = VfioViabilityModel.DmaOwnership;

    /// <summary>Legacy model only: a device being unbound from vfio still counts as viable (the unbound_list fix).</summary>
    public bool TrackDevicesDuringUnbind { get; init; } = true;

    /// <summary>The vfio group holds a reference on its iommu_group (on), or borrows the device's (off: removing the device strands the group).</summary>
    public bool GroupHoldsIommuGroupReference { get; init; } = true;

    /// <summary>External users (KVM).</summary>
    public VfioExternalUsers ExternalUsers { get; init; } = VfioExternalUsers.FileApi;

    /// <summary>vfio-pci: how a close releases the ERR and REQ eventfds.</summary>
    public VfioErrReqRelease ErrReqRelease { get; init; } = VfioErrReqRelease.PutAndClearUnderIgate;

    /// <summary>Type1 (mdev era, v4.10–v5.18): only the mapping task, or one sharing its mm, may unmap.</summary>
    public bool UnmapOnlyByMappingMm { get; init; }

    /// <summary>
    /// vfio-pci blocks MMIO while a device's memory decode is off (v5.8, the CVE-2020-12888
    /// fix): BAR mappings are zapped when decode goes away, a fault then is SIGBUS and a
    /// read/write of a BAR is EIO. Off: the earlier driver, whose accesses reach a device that
    /// does not decode (an Unsupported Request; a machine check on many hosts).
    /// </summary>
    public bool BlockMmioWhileMemoryDisabled { get; init; } = true;

    /// <summary>
    /// vfio-pci's BAR fault handler sees a VMA a racing fault already mapped (v5.13) — or, on
    /// kernels since v6.10, has no per-VMA list at all. Off: the v5.8–v5.12 handler on the
    /// vma-list design, whose racing faults list a VMA twice and get a spurious SIGBUS.
    /// </summary>
    public bool HandleConcurrentBarFaults { get; init; } = true;

    /// <summary>
    /// vfio-pci's ioeventfd handler, which runs in the eventfd's wake-up (atomic context), only
    /// tries memory_lock and hands a contended write to a thread that takes it blocking
    /// (v5.10, 38565c93c8a1). Off: the v5.8–v5.10-rc2 handler, which took memory_lock with a
    /// blocking down_read inside the wake-up — sleeping in atomic context.
    /// </summary>
    public bool DeferContendedIoeventfdWrites { get; init; } = true;

    /// <summary>
    /// Type1 (the 2016 mdev design, v4.10–v5.19): emulated-IOMMU drivers hear of unmaps
    /// through a VFIO_IOMMU_NOTIFY notifier they register (<see cref="Vfio2016.RegisterNotifier"/>),
    /// not through ops-&gt;dma_unmap; pinning fails with EINVAL while no notifier is registered
    /// in the container, and pins are made by arrays of user PFNs (<see cref="Vfio2016.PinPages"/>).
    /// </summary>
    public bool DmaUnmapNotifierChain { get; init; }

    /// <summary>
    /// The ≤v6.0 teardown order of a vfio device (the life-cycle series of v6.1 changed it):
    /// the driver's release tears its private state down (vfio-pci: mutex_destroy of igate,
    /// ioeventfds_lock and vma_lock in vfio_pci_core_uninit_device) while the device is still
    /// on its device set's list, and the device leaves the set only afterwards. A sibling of
    /// the set walking it in between (VFIO_DEVICE_PCI_HOT_RESET, which try-locks every
    /// member's vma_lock) touches the torn-down state: a KASAN report. Off (the kernel since
    /// v6.1): the last vfio_put_device leaves the set first, then calls release, then frees.
    /// </summary>
    public bool TeardownBeforeLeavingDeviceSet { get; init; }

    /// <summary>
    /// Type1 (the pre-merge revisions of the 2016 series): pages pinned through
    /// vfio_pin_pages are tracked per address space (mm) and user page, not per mapping, so
    /// two mappings of the same user page share one pin and one locked_vm charge.
    /// </summary>
    public bool ExternalPinsPerAddressSpace { get; init; }

    /// <summary>
    /// Type1: when replaying the container's mappings into a new IOMMU domain fails half-way
    /// (an attach over RLIMIT_MEMLOCK), everything the replay pinned, charged and mapped is
    /// undone (v5.9, aae7a75a821a "vfio/type1: Add proper error unwind for
    /// vfio_iommu_replay()"). Off: the ≤ v5.8 replay, which returns the error as it stands —
    /// the chunks already pinned stay pinned and charged to locked_vm with the domain they were
    /// mapped into discarded, and the mappings replayed before are marked IOMMU-mapped (race 13
    /// in docs/races.md).
    /// </summary>
    public bool UnwindFailedReplay { get; init; } = true;

    /// <summary>
    /// Type1 (v6.2: 18e292705ba2 "vfio/type1: track locked_vm per dma", 046eca5018f8
    /// "vfio/type1: prevent underflow of locked_vm via exec()", 90fdd158a695 "vfio/type1:
    /// restore locked_vm"): each mapping records the mm it charged and how much, every later
    /// charge or uncharge goes to that mm, and a MAP_DMA with VFIO_DMA_MAP_FLAG_VADDR from
    /// another process moves the charge to it. Off: the ≤ v6.1 accounting as this simulator
    /// models it — the process making the call is charged or uncharged, and a new vaddr moves
    /// nothing, so after a hand-over the new owner's unmap uncharges what it was never charged
    /// (a locked_vm underflow WARN) while the old owner keeps the charge (race 14).
    /// </summary>
    public bool LockedVmPerDma { get; init; } = true;

    /// <summary>
    /// How the group's KVM pointer and an open device's VM reference are locked: today's
    /// kvm_ref_lock, or one of the two v6.2-cycle orders that deadlocked with KVM (race 7).
    /// </summary>
    public VfioKvmLocking KvmLocking { get; init; } = VfioKvmLocking.KvmRefLock;
}

/// <summary>vfio module parameters plus the design variants.</summary>
public sealed record VfioOptions
{
    /// <summary>vfio.enable_unsafe_noiommu_mode.</summary>
    public bool EnableUnsafeNoiommuMode { get; init; }

    /// <summary>The design variants.</summary>
    public VfioDesign Design { get; init; } = VfioDesign.Default;
}
