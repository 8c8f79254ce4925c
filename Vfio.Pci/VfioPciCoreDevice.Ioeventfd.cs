// Models the ioeventfds of drivers/vfio/pci/vfio_pci_rdwr.c (vfio_pci_ioeventfd, its handler,
// thread and do_write) and vfio_pci_ioctl_ioeventfd() of vfio_pci_core.c (v6.12; v6.1 is the
// same as far as user space can tell — the real 6.1.192 and 6.12.118 answer every check
// alike, 8-byte entries included). An ioeventfd is a virqfd (Vfio.Core/VfioVirqfd.cs) on a
// user eventfd: each signal writes a fixed value of 1, 2, 4 or 8 bytes at a fixed offset of
// a BAR, as one device access, without a trip through user space (KVM registers the same
// eventfd as an ioeventfd for a guest's MMIO doorbell).
//
// The handler runs in the signaller's wake-up (atomic in the kernel: under the eventfd's
// wait-queue lock with interrupts off), so for a memory BAR it only *tries* memory_lock for
// read: taken, it writes if memory decode is on and drops the write if not (what the EIO of
// the read/write path becomes here); contended (a COMMAND write, a reset or a D3hot entry
// holds it for write), it defers to the virqfd's inject work, whose thread takes the lock
// blocking and then writes under the same decode check — deferred, never dropped
// (38565c93c8a1, race 11 in docs/races.md). I/O BARs are not gated by memory decode.
// The design variant VfioDesign.DeferContendedIoeventfdWrites = false runs the v5.8–v5.10-rc2
// handler, which took memory_lock with a blocking down_read inside the wake-up.
//
// Life cycle: entries live on _ioeventfds from VFIO_DEVICE_IOEVENTFD until the same
// (BAR, offset, size, data) is given fd -1, or until the last close (vfio_pci_core_disable
// drops them all, waiting for each one's wake-up and inject work). A user closing the
// eventfd deactivates the virqfd; its entry stays until removed or the device closes.
//
// Lock order: ioeventfds_lock → virqfd_lock. The handler and thread take memory_lock (read)
// only, never ioeventfds_lock, so disabling a virqfd under ioeventfds_lock cannot deadlock.

using System.Numerics;
using Vfio.Core;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Pci;

namespace Vfio.Pci;

public sealed partial class VfioPciCoreDevice
{
    /// <summary>VFIO_PCI_IOEVENTFD_MAX: ioeventfds per device.</summary>
    internal const int IoeventfdMax = 1000;

    private const string IoeventfdName = "VFIO_DEVICE_IOEVENTFD";

    private static readonly LockClass s_ioeventfdsClass = LockClass.Get("vfio_pci_core_device.ioeventfds_lock");
    private static readonly LockClass s_wakeContextClass = LockClass.Get("eventfd_ctx.wqh.lock");

    // Protects _ioeventfds (vdev->ioeventfds_lock; its length is ioeventfds_nr).
    private KMutex _ioeventfdsLock = null!;

    // vdev->ioeventfds_list (ioeventfds_lock).
    private readonly List<Ioeventfd> _ioeventfds = [];

    // Stands for the eventfd's wait-queue lock that the kernel holds around a wake function;
    // taken only by the pre-fix handler of the design variant, to put it in atomic context.
    private KSpinLock _wakeContext = null!;

    // Writes the handler found memory_lock contended for and handed to the thread.
    private long _ioeventfdsDeferred;

    /// <summary>How many ioeventfds the device has now (ioeventfds_nr).</summary>
    internal int IoeventfdCount
    {
        get
        {
            _ioeventfdsLock.Lock();
            try
            {
                return _ioeventfds.Count;
            }
            finally
            {
                _ioeventfdsLock.Unlock();
            }
        }
    }

    /// <summary>Signalled writes the handler deferred to the thread because memory_lock was contended.</summary>
    internal long IoeventfdsDeferred => Interlocked.Read(ref _ioeventfdsDeferred);

    private bool DefersContendedIoeventfdWrites => Core.Design.DeferContendedIoeventfdWrites;

    /// <summary>The ioeventfd locks; called from InitDev.</summary>
    private void InitIoeventfds(SimKernel k)
    {
        _ioeventfdsLock = new KMutex(k, $"vfio-pci[{Dev.Name}].ioeventfds_lock", s_ioeventfdsClass);
        _wakeContext = new KSpinLock(k, $"vfio-pci[{Dev.Name}].ioeventfd wake-up", s_wakeContextClass);
    }

    /// <summary>
    /// vfio_pci_ioctl_ioeventfd(): argsz at least 28, no flag but one size bit (8, 16, 32 or
    /// 64 bits), fd -1 (remove) or an eventfd; then <see cref="SetIoeventfd"/>.
    /// </summary>
    private long IoeventfdIoctl(ulong arg)
    {
        int err = VfioArg.CopyIn(arg, VfioDeviceIoeventfd.MinSz, out VfioDeviceIoeventfd req, IoeventfdName);
        if (err != 0)
        {
            return err;
        }

        if ((req.Flags & ~VfioPciFlags.IoeventfdSizeMask) != 0)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{IoeventfdName}: flags 0x{req.Flags:x} has bits other than a size (0x{VfioPciFlags.IoeventfdSizeMask:x})");
        }

        uint count = req.Flags & VfioPciFlags.IoeventfdSizeMask;
        if (BitOperations.PopCount(count) != 1 || req.Fd < -1)
        {
            return BitOperations.PopCount(count) != 1
                ? ErrorReason.Fail(Errno.EINVAL, $"{IoeventfdName}: flags 0x{req.Flags:x} must name exactly one size (1 = 8, 2 = 16, 4 = 32, 8 = 64 bits)")
                : ErrorReason.Fail(Errno.EINVAL, $"{IoeventfdName}: fd {req.Fd} is neither an eventfd nor -1");
        }

        return SetIoeventfd((long)req.Offset, req.Data, (int)count, req.Fd);
    }

    /// <summary>
    /// vfio_pci_ioeventfd(): only BARs, the access within the BAR and clear of the MSI-X
    /// table; the BAR requested for vfio-pci; then under ioeventfds_lock the entry with the
    /// same BAR, offset, data and size is removed (fd -1) or is -EEXIST; otherwise fd -1 is
    /// -ENODEV, the 1000th entry -ENOSPC, and a new entry watches the eventfd.
    /// </summary>
    private int SetIoeventfd(long offset, ulong data, int count, int fd)
    {
        long pos = offset & VfioPciIndex.OffsetMask;
        ulong index = (ulong)offset >> VfioPciIndex.OffsetShift;
        if (index > VfioPciIndex.Bar5)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{IoeventfdName}: offset 0x{offset:x} is in region {index}; ioeventfds go into BARs 0-5 only");
        }

        int bar = (int)index;
        long len = Pdev.ResourceLength(bar);
        if (pos + count > len)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{IoeventfdName}: [0x{pos:x}, 0x{pos + count:x}) is not inside BAR{bar} of {Pname} (0x{len:x} bytes)");
        }

        if (bar == MsixBar && !(pos + count <= MsixOffset || pos >= MsixOffset + MsixSize))
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{IoeventfdName}: [0x{pos:x}, 0x{pos + count:x}) of BAR{bar} overlaps the MSI-X table [0x{MsixOffset:x}, 0x{MsixOffset + MsixSize:x})");
        }

        // x86-64 has iowrite64, so 8-byte entries are allowed (the #ifndef iowrite64 -EINVAL
        // never applies): the real 6.1 and 6.12 both accept them and write 8 bytes at once.
        int ret = SetupBarmap(bar, IoeventfdName);
        if (ret != 0)
        {
            return ret;
        }

        _ioeventfdsLock.Lock();
        try
        {
            return SetIoeventfdLocked(bar, pos, data, count, fd);
        }
        finally
        {
            _ioeventfdsLock.Unlock();
        }
    }

    private int SetIoeventfdLocked(int bar, long pos, ulong data, int count, int fd)
    {
        _ioeventfdsLock.AssertHeld();
        for (int i = 0; i < _ioeventfds.Count; i++)
        {
            Ioeventfd e = _ioeventfds[i];
            if (e.Pos != pos || e.Bar != bar || e.Data != data || e.Count != count)
            {
                continue;
            }

            if (fd != -1)
            {
                return ErrorReason.Fail(Errno.EEXIST, $"{IoeventfdName}: BAR{bar} offset 0x{pos:x} size {count} data 0x{data:x} already has an ioeventfd (remove it with fd -1 first)");
            }

            _virqfds.Disable(e.Slot);
            _ioeventfds.RemoveAt(i);
            return 0;
        }

        if (fd < 0)
        {
            return ErrorReason.Fail(Errno.ENODEV, $"{IoeventfdName}: no ioeventfd at BAR{bar} offset 0x{pos:x} size {count} data 0x{data:x} to remove");
        }

        if (_ioeventfds.Count >= IoeventfdMax)
        {
            return ErrorReason.Fail(Errno.ENOSPC, $"{IoeventfdName}: {Pname} already has {IoeventfdMax} ioeventfds (VFIO_PCI_IOEVENTFD_MAX)");
        }

        bool port = Pdev.Bars[bar]?.Kind == PciBarKind.Io;
        var entry = new Ioeventfd(this, bar, pos, data, count, Pdev.ResourceStart(bar) + pos, port, testMem: !port && BlocksMmio);
        int ret = DefersContendedIoeventfdWrites
            ? _virqfds.Enable(entry.Handler, entry.Thread, entry.Slot, fd, IoeventfdName)
            : _virqfds.Enable(entry.PreFixHandler, null, entry.Slot, fd, IoeventfdName);
        if (ret != 0)
        {
            return ret;
        }

        _ioeventfds.Add(entry);
        return 0;
    }

    /// <summary>The ioeventfd part of vfio_pci_core_disable(): every entry's virqfd disabled and the list emptied.</summary>
    private void ReleaseIoeventfds()
    {
        _ioeventfdsLock.Lock();
        try
        {
            foreach (Ioeventfd e in _ioeventfds)
            {
                _virqfds.Disable(e.Slot);
            }

            _ioeventfds.Clear();
        }
        finally
        {
            _ioeventfdsLock.Unlock();
        }
    }

    /// <summary>
    /// vfio_pci_ioeventfd_do_write(): one device write of the entry's size; with
    /// <paramref name="testMem"/>, under memory_lock (read, blocking) and only while memory
    /// decode is on (else the write is dropped, the -EIO of vfio_pci_iowriteN).
    /// </summary>
    private void IoeventfdDoWrite(Ioeventfd e, bool testMem)
    {
        if (testMem)
        {
            MemoryLock.DownRead();
        }

        try
        {
            if (!testMem || MemoryEnabled())
            {
                IoeventfdWriteDevice(e);
            }
        }
        finally
        {
            if (testMem)
            {
                MemoryLock.UpRead();
            }
        }
    }

    /// <summary>The device write itself: the entry's data, little-endian, as one access of its size.</summary>
    private void IoeventfdWriteDevice(Ioeventfd e)
    {
        Span<byte> v = stackalloc byte[8];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(v, e.Data);
        DeviceWrite(e.Port, e.Addr, v[..e.Count]);
    }

    /// <summary>
    /// vfio_pci_ioeventfd_handler(), in the signaller's wake-up: true asks for the thread.
    /// A memory BAR's write needs memory_lock, which the wake-up may only try.
    /// </summary>
    private bool IoeventfdHandler(Ioeventfd e)
    {
        if (e.TestMem)
        {
            if (!MemoryLock.DownReadTrylock())
            {
                Interlocked.Increment(ref _ioeventfdsDeferred);
                return true;
            }

            if (!MemoryEnabled())
            {
                MemoryLock.UpRead();
                return false;
            }
        }

        IoeventfdWriteDevice(e);
        if (e.TestMem)
        {
            MemoryLock.UpRead();
        }

        return false;
    }

    /// <summary>
    /// The v5.8–v5.10-rc2 handler (before 38565c93c8a1), for the design variant: the write
    /// with its blocking down_read, straight from the wake-up — sleeping in atomic context
    /// (might_sleep reports it; a contended lock puts the signaller to sleep under the
    /// wait-queue lock).
    /// </summary>
    private bool IoeventfdPreFixHandler(Ioeventfd e)
    {
        _wakeContext.Lock();
        try
        {
            IoeventfdDoWrite(e, e.TestMem);
        }
        finally
        {
            _wakeContext.Unlock();
        }

        return false;
    }

    /// <summary>struct vfio_pci_ioeventfd.</summary>
    private sealed class Ioeventfd
    {
        public readonly VfioVirqfdSlot Slot = new();
        public readonly Func<bool> Handler;
        public readonly Func<bool> PreFixHandler;
        public readonly Action Thread;

        public Ioeventfd(VfioPciCoreDevice vdev, int bar, long pos, ulong data, int count, long addr, bool port, bool testMem)
        {
            Bar = bar;
            Pos = pos;
            Data = data;
            Count = count;
            Addr = addr;
            Port = port;
            TestMem = testMem;

            // Made once per entry: a signal calls them without allocating.
            Handler = () => vdev.IoeventfdHandler(this);
            PreFixHandler = () => vdev.IoeventfdPreFixHandler(this);
            Thread = () => vdev.IoeventfdDoWrite(this, TestMem);
        }

        public int Bar { get; }

        public long Pos { get; }

        public ulong Data { get; }

        public int Count { get; }

        /// <summary>barmap[bar] + pos: the physical address (or port) written.</summary>
        public long Addr { get; }

        public bool Port { get; }

        /// <summary>A memory BAR: the write is gated by memory decode (under memory_lock).</summary>
        public bool TestMem { get; }
    }
}
