// Models the BAR mmap of drivers/vfio/pci/vfio_pci_core.c (v6.12, with the v6.1 design
// behind profile features): vfio_pci_core_mmap's checks, the fault handlers that map BAR
// pages lazily, and the zapping of every BAR mapping whenever memory decode goes away
// (COMMAND.MEM cleared, VFIO_DEVICE_RESET, D3hot, low-power entry) — the CVE-2020-12888
// fix: a fault while decode is off (or low power is engaged) is VM_FAULT_SIGBUS, so no
// user access reaches a device that does not decode.
//
// Two designs, chosen per profile (VfioPciFeatures.ZapBarsByMappingRange):
//   * v6.10+: every VMA mapping the device is on the device inode's address space (here
//     _inodeMappings, standing for i_mmap); a zap is unmap_mapping_range() over it under
//     memory_lock held for write. Faults take memory_lock for read and insert the faulting
//     page, or (v6.12, HugePfnmapFaults) one 2 MiB / 1 GiB leaf where aligned, or (v6.10–6.11)
//     every page of the VMA.
//   * v5.8–v6.9: a list of the VMAs faulted in since the last zap (vma_list under vma_lock).
//     A fault takes vma_lock, then memory_lock for read, remaps the whole VMA and lists it —
//     unless a racing fault already did (the v5.13 concurrent-fault fix). A zap walks the list
//     one mm at a time (mmap_lock must come before vma_lock), then takes memory_lock for write
//     with vma_lock still held so no fault can list a VMA in between.
// The design variants (VfioDesign) bring back the 5.8–5.12 fault handler (lists before it
// remaps, so a racing fault lists the VMA twice and its remap fails: a spurious SIGBUS) and
// the pre-5.8 driver (no zap, no SIGBUS: accesses reach a device whose decode is off).
//
// Lock order: mmap_lock → vma_lock → memory_lock → the inode's i_mmap lock → the
// page-table lock (Vma.ZapPfnRange). The fault path enters with mmap_lock held for read.

using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Mm;
using Vfio.Platform.Pci;

namespace Vfio.Pci;

public sealed partial class VfioPciCoreDevice
{
    private static readonly LockClass s_vmaLockClass = LockClass.Get("vfio_pci_core_device.vma_lock");
    private static readonly LockClass s_inodeMmapClass = LockClass.Get("vfio_device.inode.i_mmap_rwsem");

    // PCI_OFFSET_SHIFT - PAGE_SHIFT: the region index in vm_pgoff.
    private const int PgoffIndexShift = VfioPciIndex.OffsetShift - 12;

    // Protects _vmaList (vdev->vma_lock).
    private KMutex _vmaLock = null!;
    private readonly List<Vma> _vmaList = [];

    // The device inode's i_mmap: every VMA of this device's BARs (v6.10+ zaps through it).
    private RwSemaphore _inodeMmapLock = null!;
    private readonly List<Vma> _inodeMappings = [];

    // vdev->barmap[i] != NULL: the region is requested (pci_request_selected_regions).
    private readonly bool[] _barmap = new bool[PciDevice.RomBarIndex];

    private BarVmOps? _vmOps;

    /// <summary>vdev-&gt;vma_list (v6.1 design): the VMAs faulted in since the last zap, duplicates included. For tests.</summary>
    internal IReadOnlyList<Vma> VmaListSnapshot()
    {
        _vmaLock.Lock();
        try
        {
            return [.. _vmaList];
        }
        finally
        {
            _vmaLock.Unlock();
        }
    }

    /// <summary>How many VMAs map the device's BARs now.</summary>
    internal int MappingCount
    {
        get
        {
            _inodeMmapLock.DownRead();
            try
            {
                return _inodeMappings.Count;
            }
            finally
            {
                _inodeMmapLock.UpRead();
            }
        }
    }

    private bool UsesVmaList => !Core.Kernel.Profile.Has(VfioPciFeatures.ZapBarsByMappingRange) || !Core.Design.HandleConcurrentBarFaults;

    private bool BlocksMmio => Core.Design.BlockMmioWhileMemoryDisabled;

    private void InitMmap()
    {
        _vmaLock = new KMutex(Core.Kernel, $"vfio-pci[{Dev.Name}].vma_lock", s_vmaLockClass);
        _inodeMmapLock = new RwSemaphore(Core.Kernel, $"vfio-pci[{Dev.Name}].i_mmap_rwsem", s_inodeMmapClass);
        _vmOps = new BarVmOps(this);
    }

    /// <summary>
    /// vfio_pci_core_mmap(): index ≥ the regions EINVAL; not MAP_SHARED EINVAL; ROM, config
    /// and VGA EINVAL; a BAR that cannot be mmapped EINVAL; a window past the page-aligned BAR
    /// EINVAL; the region reserved by someone else EBUSY. Nothing is mapped yet: pages come in
    /// on fault.
    /// </summary>
    internal int Mmap(Vma vma)
    {
        ulong index = vma.PgOff >> PgoffIndexShift;
        if (index >= NumRegions)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"mmap: offset 0x{vma.PgOff << 12:x} is in region {index}, {Pname} has {NumRegions}");
        }

        if ((vma.Flags & VmFlags.VM_SHARED) == 0)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"mmap: region {index} of {Pname} can only be mapped MAP_SHARED");
        }

        if (index >= VfioPciIndex.Rom)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"mmap: region {index} of {Pname} ({(index == VfioPciIndex.Rom ? "ROM" : index == VfioPciIndex.Config ? "config space" : "VGA")}) cannot be mmapped");
        }

        int bar = (int)index;
        if (!_barMmapSupported[bar])
        {
            return ErrorReason.Fail(Errno.EINVAL, $"mmap: BAR{bar} of {Pname} cannot be mmapped (no MMAP flag: absent, I/O, or smaller than a page)");
        }

        ulong physLen = (ulong)((Pdev.ResourceLength(bar) + PageSize - 1) & ~(PageSize - 1));
        ulong pgoff = vma.PgOff & ((1UL << PgoffIndexShift) - 1);
        ulong reqStart = pgoff << 12;
        if (reqStart + vma.Length > physLen)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"mmap: [0x{reqStart:x}, 0x{reqStart + vma.Length:x}) of BAR{bar} of {Pname} is past its page-aligned length 0x{physLen:x}");
        }

        int ret = SetupBarmap(bar, "mmap");
        if (ret != 0)
        {
            return ret;
        }

        vma.PrivateData = this;
        if (UsesVmaList)
        {
            // The vma-list kernels store the BAR's frame in vm_pgoff.
            vma.PgOff = (ulong)(Pdev.ResourceStart(bar) >> 12) + pgoff;
        }

        vma.Flags |= VmFlags.VM_IO | VmFlags.VM_PFNMAP | VmFlags.VM_DONTEXPAND | VmFlags.VM_DONTDUMP;
        vma.Ops = _vmOps;
        AddInodeMapping(vma);
        return 0;
    }

    /// <summary>
    /// vfio_pci_core_setup_barmap(): request the BAR's region for vfio-pci once (-EBUSY when
    /// another owner holds it) and map it.
    /// </summary>
    private int SetupBarmap(int bar, string op)
    {
        if (Volatile.Read(ref _barmap[bar]))
        {
            return 0;
        }

        int ret = Pdev.RequestRegion(bar, VfioPciDriver.DriverName);
        if (ret == Errno.EBUSY.Negative() && Pdev.RegionOwner(bar) == VfioPciDriver.DriverName)
        {
            // A racing first access requested it for this device.
            ret = 0;
        }

        if (ret != 0)
        {
            return ErrorReason.Fail(Errno.EBUSY, $"{op}: BAR{bar} of {Pname} is reserved by {Pdev.RegionOwner(bar)}");
        }

        Volatile.Write(ref _barmap[bar], true);
        return 0;
    }

    /// <summary>The region releases of vfio_pci_core_disable(): every BAR vfio-pci requested.</summary>
    private void ReleaseBarmaps()
    {
        for (int bar = 0; bar < _barmap.Length; bar++)
        {
            if (_barmap[bar])
            {
                Pdev.ReleaseRegion(bar, VfioPciDriver.DriverName);
                _barmap[bar] = false;
            }
        }
    }

    private void AddInodeMapping(Vma vma)
    {
        _inodeMmapLock.DownWrite();
        _inodeMappings.Add(vma);
        _inodeMmapLock.UpWrite();
    }

    private void RemoveInodeMapping(Vma vma)
    {
        _inodeMmapLock.DownWrite();
        _inodeMappings.Remove(vma);
        _inodeMmapLock.UpWrite();
    }

    /// <summary>vma_to_pfn(): the frame behind the VMA's first page.</summary>
    private long VmaToPfn(Vma vma)
    {
        if (UsesVmaList)
        {
            return (long)vma.PgOff;
        }

        int bar = (int)(vma.PgOff >> PgoffIndexShift);
        return (Pdev.ResourceStart(bar) >> 12) + (long)(vma.PgOff & ((1UL << PgoffIndexShift) - 1));
    }

    /// <summary>
    /// What a fault checks under memory_lock: not in low power (pm_runtime_engaged) and
    /// __vfio_pci_memory_enabled() — always true in the pre-5.8 design.
    /// </summary>
    private bool FaultMayMap() => !BlocksMmio || (!_pmRuntimeEngaged && MemoryEnabled());

    // ---- Zapping.

    /// <summary>
    /// vfio_pci_zap_and_down_write_memory_lock(): every BAR mapping is zapped and memory_lock
    /// is held for write on return, so nothing maps a BAR again until it is released.
    /// </summary>
    internal void ZapAndDownWriteMemoryLock()
    {
        if (!BlocksMmio)
        {
            MemoryLock.DownWrite();
            return;
        }

        if (!UsesVmaList)
        {
            MemoryLock.DownWrite();
            ZapBarsLocked();
            return;
        }

        ZapAndVmaLock();
        MemoryLock.DownWrite();
        _vmaLock.Unlock();
    }

    /// <summary>vfio_pci_zap_bars(): unmap_mapping_range() over the BAR offsets of the device inode.</summary>
    private void ZapBarsLocked()
    {
        MemoryLock.AssertHeld();
        _inodeMmapLock.DownRead();
        try
        {
            foreach (Vma vma in _inodeMappings)
            {
                vma.ZapPfnRange(vma.Start, vma.Length);
            }
        }
        finally
        {
            _inodeMmapLock.UpRead();
        }
    }

    /// <summary>
    /// vfio_pci_zap_and_vma_lock(vdev, false): empty vma_list one mm at a time — take the
    /// first listed VMA's mm (dropping entries whose mm is gone), drop vma_lock to take that
    /// mm's mmap_lock for read, retake vma_lock and zap and unlist that mm's VMAs — and return
    /// with vma_lock held and the list empty.
    /// </summary>
    private void ZapAndVmaLock()
    {
        while (true)
        {
            _vmaLock.Lock();
            MmStruct? mm = null;
            while (_vmaList.Count != 0)
            {
                Vma first = _vmaList[0];
                if (first.Mm.GetNotZero())
                {
                    mm = first.Mm;
                    break;
                }

                _vmaList.RemoveAt(0);
            }

            if (mm is null)
            {
                return;
            }

            _vmaLock.Unlock();
            mm.MmapLock.DownRead();
            _vmaLock.Lock();
            for (int i = _vmaList.Count - 1; i >= 0; i--)
            {
                Vma vma = _vmaList[i];
                if (vma.Mm != mm)
                {
                    continue;
                }

                _vmaList.RemoveAt(i);
                vma.ZapPfnRange(vma.Start, vma.Length);
            }

            _vmaLock.Unlock();
            mm.MmapLock.UpRead();
            mm.Put();
        }
    }

    // ---- Faults.

    /// <summary>
    /// vfio_pci_mmap_fault() of the vma-list kernels: under vma_lock and memory_lock (read),
    /// SIGBUS while decode is off; a VMA already listed (a racing fault mapped it) is done;
    /// else remap the whole VMA and list it.
    /// </summary>
    private VmFault FaultVmaList(Vma vma)
    {
        if (!Core.Design.HandleConcurrentBarFaults)
        {
            return FaultVmaListPre513(vma);
        }

        _vmaLock.Lock();
        MemoryLock.DownRead();
        try
        {
            if (!FaultMayMap())
            {
                return VmFault.SigBus;
            }

            if (_vmaList.Contains(vma))
            {
                return VmFault.NoPage;
            }

            if (vma.RemapPfnRange(vma.Start, VmaToPfn(vma), vma.Length) != 0)
            {
                vma.ZapPfnRange(vma.Start, vma.Length);
                return VmFault.SigBus;
            }

            _vmaList.Add(vma);
            return VmFault.NoPage;
        }
        finally
        {
            MemoryLock.UpRead();
            _vmaLock.Unlock();
        }
    }

    /// <summary>
    /// The v5.8–v5.12 handler (design variant): the VMA is listed under vma_lock, which is
    /// dropped before the remap, so two racing faults list it twice and the second remap
    /// finds the pages present and fails: SIGBUS for a perfectly good access.
    /// </summary>
    private VmFault FaultVmaListPre513(Vma vma)
    {
        _vmaLock.Lock();
        MemoryLock.DownRead();
        try
        {
            if (!FaultMayMap())
            {
                _vmaLock.Unlock();
                return VmFault.SigBus;
            }

            _vmaList.Add(vma);
            _vmaLock.Unlock();
            return vma.RemapPfnRange(vma.Start, VmaToPfn(vma), vma.Length) != 0 ? VmFault.SigBus : VmFault.NoPage;
        }
        finally
        {
            MemoryLock.UpRead();
        }
    }

    /// <summary>
    /// The v6.10+ page fault: under memory_lock (read), SIGBUS while decode is off, else map
    /// the page (v6.12), or every page of the VMA starting with the faulting one (v6.10–6.11,
    /// d71a989cf5d9). A page a racing fault mapped first is fine (VM_FAULT_NOPAGE).
    /// </summary>
    private VmFault FaultPage(Vma vma, ulong address)
    {
        long pfn0 = VmaToPfn(vma);
        MemoryLock.DownRead();
        try
        {
            if (!FaultMayMap())
            {
                return VmFault.SigBus;
            }

            _ = vma.InsertPfn(address, pfn0 + (long)((address - vma.Start) >> 12));
            if (!Core.Kernel.Profile.Has(VfioPciFeatures.HugePfnmapFaults))
            {
                for (ulong a = vma.Start; a < vma.End; a += (ulong)PageSize)
                {
                    _ = vma.InsertPfn(a, pfn0 + (long)((a - vma.Start) >> 12));
                }
            }

            return VmFault.NoPage;
        }
        finally
        {
            MemoryLock.UpRead();
        }
    }

    /// <summary>
    /// vfio_pci_mmap_huge_fault() (v6.12): a leaf of <paramref name="order"/> whose frame is
    /// aligned to it, under memory_lock (read); FALLBACK when the BAR frame is not aligned.
    /// </summary>
    private VmFault HugeFault(Vma vma, ulong address, int order)
    {
        if (UsesVmaList || !Core.Kernel.Profile.Has(VfioPciFeatures.HugePfnmapFaults))
        {
            return VmFault.Fallback;
        }

        ulong size = (ulong)PageSize << order;
        ulong leaf = address & ~(size - 1);
        long pfn = VmaToPfn(vma) + (long)((leaf - vma.Start) >> 12);
        if (leaf < vma.Start || leaf + size > vma.End || (pfn & ((1L << order) - 1)) != 0)
        {
            return VmFault.Fallback;
        }

        MemoryLock.DownRead();
        try
        {
            if (!FaultMayMap())
            {
                return VmFault.SigBus;
            }

            // Mapped by a racing fault (or partly, by 4 KiB faults): the kernel's pmd/pud is
            // no longer none and the access retries.
            return vma.InsertPfnLeaf(leaf, pfn, order) == Errno.EINVAL.Negative() ? VmFault.Fallback : VmFault.NoPage;
        }
        finally
        {
            MemoryLock.UpRead();
        }
    }

    /// <summary>vfio_pci_mmap_ops: the operations of every BAR VMA.</summary>
    private sealed class BarVmOps(VfioPciCoreDevice vdev) : IVmOperations
    {
        /// <summary>
        /// vfio_pci_mmap_open() (vma-list kernels): a copy of the VMA (split, fork) starts
        /// unmapped, so it is listed by its own first fault. It maps the same inode either way.
        /// </summary>
        public void Open(Vma vma)
        {
            if (vdev.UsesVmaList)
            {
                vma.ZapPfnRange(vma.Start, vma.Length);
            }

            vdev.AddInodeMapping(vma);
        }

        /// <summary>vfio_pci_mmap_close(): unlist the VMA (once; the kernel drops the first match).</summary>
        public void Close(Vma vma)
        {
            if (vdev.UsesVmaList)
            {
                vdev.KasanCheck("vfio_pci_mmap_close");
                vdev._vmaLock.Lock();
                vdev._vmaList.Remove(vma);
                vdev._vmaLock.Unlock();
            }

            vdev.RemoveInodeMapping(vma);
        }

        // vma->vm_private_data is the vfio_pci_core_device, held by nothing but the unbind wait.
        public VmFault Fault(Vma vma, ulong address, bool write)
        {
            vdev.KasanCheck(vdev.UsesVmaList ? "vfio_pci_mmap_fault" : "vfio_pci_mmap_huge_fault");
            return vdev.UsesVmaList ? vdev.FaultVmaList(vma) : vdev.FaultPage(vma, address);
        }

        public VmFault HugeFault(Vma vma, ulong address, int order, bool write)
        {
            vdev.KasanCheck("vfio_pci_mmap_huge_fault");
            return vdev.HugeFault(vma, address, order);
        }
    }
}
