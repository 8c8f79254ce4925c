// The mdma sample's device (no kernel counterpart; shaped like the vfio_device state of
// vfio-ccw and kvmgt, which pin guest pages): BAR0's registers, an emulated config space,
// the MSI trigger, and the DMA engine with its pin cache. A doorbell write runs the command
// in the writer's context: it pins the pages it needs with vfio_pin_pages (at most 512 a
// call), keeps every pin in a per-device table across commands, copies with vfio_dma_rw and
// reports the errno of the first failure in the status register. dma_unmap drops every
// cached pin inside the range; close drops them all.
//
// Lock order: _lock (the device's state lock) → type1's iommu->lock (taken inside
// vfio_pin_pages / vfio_unpin_pages / vfio_dma_rw). type1 calls dma_unmap with iommu->lock
// dropped and its device_list_lock held, so dma_unmap's order is device_list_lock → _lock →
// iommu->lock, the kernel's own inversion with register_device (lockdep reports it, as it
// would for kvmgt). Close runs under the device set's lock.

using System.Buffers.Binary;
using Vfio.Core;
using Vfio.Kernel;
using Vfio.Platform.Fs;
using Vfio.Platform.Iommu;

namespace Vfio.Mdev.Samples.Mdma;

/// <summary>An mdma device: the vfio_device an mdma instance registers.</summary>
public sealed class MdmaDevice : VfioDevice
{
    private const int PageShift = 12;
    private const ulong PageSize = 1UL << PageShift;
    private const int ConfigSize = 256;

    // Protects every register, the config space, the pin cache, the scratch buffers and _msi.
    private KMutex _lock = null!;
    private readonly byte[] _config = new byte[ConfigSize];
    private readonly Dictionary<ulong, PinEntry> _pins = [];
    private readonly List<ulong> _scratchIovas = [];
    private readonly ulong[] _scratchPfns = new ulong[PinPagesMaxEntries];
    private readonly byte[] _bounce = new byte[PageSize];
    private ulong _src;
    private ulong _dst;
    private uint _len;
    private uint _cmd;
    private uint _status;
    private uint _completions;
    private EventFdContext? _msi;
    private int _dmaUnmapCalls;
    private int _pinCalls;

    internal MdmaDevice(MdmaType type, MdmaOptions options)
    {
        Type = type;
        Options = options;
    }

    /// <summary>The instance's type.</summary>
    public MdmaType Type { get; }

    internal MdmaOptions Options { get; }

    /// <summary>Pages the device holds pinned now (its pin cache).</summary>
    public int PinnedPages
    {
        get
        {
            _lock.Lock();
            try
            {
                return _pins.Count;
            }
            finally
            {
                _lock.Unlock();
            }
        }
    }

    /// <summary>How many times type1 called the device's dma_unmap.</summary>
    public int DmaUnmapCalls => Volatile.Read(ref _dmaUnmapCalls);

    /// <summary>How many times the device called vfio_pin_pages.</summary>
    public int PinCalls => Volatile.Read(ref _pinCalls);

    /// <summary>The last status register value.</summary>
    public uint Status
    {
        get
        {
            _lock.Lock();
            try
            {
                return _status;
            }
            finally
            {
                _lock.Unlock();
            }
        }
    }

    /// <summary>The IOVAs of the pages the device holds pinned, ascending (a snapshot).</summary>
    public IReadOnlyList<ulong> PinnedIovas
    {
        get
        {
            _lock.Lock();
            try
            {
                var l = new List<ulong>(_pins.Keys);
                l.Sort();
                return l;
            }
            finally
            {
                _lock.Unlock();
            }
        }
    }

    internal void InitState()
    {
        _lock = new KMutex(Core.Kernel, $"mdma[{Index}].lock");
        InitConfig();
    }

    private void InitConfig()
    {
        Span<byte> c = _config;
        c.Clear();
        BinaryPrimitives.WriteUInt16LittleEndian(c[0x00..], MdmaRegs.VendorId);
        BinaryPrimitives.WriteUInt16LittleEndian(c[0x02..], MdmaRegs.DeviceId);
        BinaryPrimitives.WriteUInt16LittleEndian(c[0x06..], 0x0010); // capability list
        c[0x08] = 0x01; // revision
        c[0x09] = (byte)(MdmaRegs.ClassCode & 0xff);
        c[0x0a] = (byte)((MdmaRegs.ClassCode >> 8) & 0xff);
        c[0x0b] = (byte)((MdmaRegs.ClassCode >> 16) & 0xff);
        BinaryPrimitives.WriteUInt32LittleEndian(c[0x10..], 0); // BAR0: 32-bit memory, not prefetchable
        BinaryPrimitives.WriteUInt16LittleEndian(c[0x2c..], MdmaRegs.VendorId);
        BinaryPrimitives.WriteUInt16LittleEndian(c[0x2e..], MdmaRegs.DeviceId);
        c[0x34] = MdmaRegs.MsiCap;
        c[0x3d] = 0; // no INTx pin: the device interrupts by MSI only
        c[MdmaRegs.MsiCap] = 0x05; // PCI_CAP_ID_MSI, last in the list
        BinaryPrimitives.WriteUInt16LittleEndian(c[(MdmaRegs.MsiCap + 2)..], 0x0080); // 64-bit, one vector
    }

    // ---- Config space.

    internal int ConfigRead(int offset, Span<byte> data)
    {
        _lock.Lock();
        try
        {
            _config.AsSpan(offset, data.Length).CopyTo(data);
            return 0;
        }
        finally
        {
            _lock.Unlock();
        }
    }

    /// <summary>Writes: command (memory, bus master, INTx disable), BAR0 with sizing, interrupt line, the MSI enable/address/data; the rest is dropped.</summary>
    internal void ConfigWrite(int offset, ReadOnlySpan<byte> data)
    {
        _lock.Lock();
        try
        {
            for (int i = 0; i < data.Length; i++)
            {
                ConfigWriteByteLocked(offset + i, data[i]);
            }
        }
        finally
        {
            _lock.Unlock();
        }
    }

    private void ConfigWriteByteLocked(int at, byte v)
    {
        _lock.AssertHeld();
        const int msiCtl = MdmaRegs.MsiCap + 2;
        switch (at)
        {
            case 0x04:
                _config[at] = (byte)(v & 0x06); // memory space, bus master
                break;
            case 0x05:
                _config[at] = (byte)(v & 0x04); // INTx disable
                break;
            case 0x10:
                // BAR0 is BAR0Size bytes: the low address bits read back 0 (so all-ones sizes it).
                _config[at] = (byte)(v & ~(MdmaRegs.Bar0Size - 1) & 0xf0);
                break;
            case 0x11 or 0x12 or 0x13:
                _config[at] = v;
                break;
            case 0x3c:
                _config[at] = v;
                break;
            case msiCtl:
                _config[at] = (byte)((_config[at] & 0x80) | (v & 0x01)); // MSI enable; one vector
                break;
            case >= MdmaRegs.MsiCap + 4 and < MdmaRegs.MsiCap + 14:
                _config[at] = v; // address (low, high) and data
                break;
            default:
                break;
        }
    }

    // ---- BAR0.

    internal ulong BarRead(int offset)
    {
        _lock.Lock();
        try
        {
            return offset switch
            {
                MdmaRegs.Id => MdmaRegs.IdValue,
                MdmaRegs.MaxPages => (uint)Type.MaxPages,
                MdmaRegs.Src => _src,
                MdmaRegs.Src + 4 => _src >> 32,
                MdmaRegs.Dst => _dst,
                MdmaRegs.Dst + 4 => _dst >> 32,
                MdmaRegs.Len => _len,
                MdmaRegs.Cmd => _cmd,
                MdmaRegs.Status => _status,
                MdmaRegs.Pinned => (uint)_pins.Count,
                MdmaRegs.Completions => _completions,
                _ => 0,
            };
        }
        finally
        {
            _lock.Unlock();
        }
    }

    internal void BarWrite(int offset, ulong value, int size)
    {
        _lock.Lock();
        try
        {
            switch (offset)
            {
                case MdmaRegs.Src:
                    _src = size == 8 ? value : (_src & ~0xffffffffUL) | (uint)value;
                    break;
                case MdmaRegs.Src + 4:
                    _src = (_src & 0xffffffffUL) | (value << 32);
                    break;
                case MdmaRegs.Dst:
                    _dst = size == 8 ? value : (_dst & ~0xffffffffUL) | (uint)value;
                    break;
                case MdmaRegs.Dst + 4:
                    _dst = (_dst & 0xffffffffUL) | (value << 32);
                    break;
                case MdmaRegs.Len:
                    _len = (uint)value;
                    break;
                case MdmaRegs.Cmd:
                    _cmd = (uint)value;
                    break;
                case MdmaRegs.Doorbell:
                    RunCommandLocked();
                    break;
                default:
                    break; // read-only or reserved
            }
        }
        finally
        {
            _lock.Unlock();
        }
    }

    /// <summary>VFIO_DEVICE_RESET: the registers go back to their reset values; the pin cache and MSI trigger stay (they are the driver's).</summary>
    internal void ResetRegisters()
    {
        _lock.Lock();
        try
        {
            ResetRegistersLocked();
        }
        finally
        {
            _lock.Unlock();
        }
    }

    private void ResetRegistersLocked()
    {
        _lock.AssertHeld();
        _src = _dst = 0;
        _len = _cmd = _status = _completions = 0;
    }

    // ---- Interrupts.

    /// <summary>Replaces the MSI trigger with <paramref name="ctx"/> (whose reference the caller took), or clears it.</summary>
    internal void SetMsiTrigger(EventFdContext? ctx)
    {
        EventFdContext? old;
        _lock.Lock();
        try
        {
            old = _msi;
            _msi = ctx;
        }
        finally
        {
            _lock.Unlock();
        }

        old?.Put();
    }

    /// <summary>The MSI fires through its eventfd, if one is set (loopback trigger or completion).</summary>
    internal void FireMsi()
    {
        _lock.Lock();
        try
        {
            _msi?.Signal();
        }
        finally
        {
            _lock.Unlock();
        }
    }

    // ---- The DMA engine.

    private void RunCommandLocked()
    {
        _lock.AssertHeld();
        int err;
        ErrorReason.Clear();
        if (_len == 0 || _len > (ulong)Type.MaxPages << PageShift)
        {
            err = ErrorReason.Fail(Errno.EINVAL, $"mdma {Dev.Name}: length {_len} is not in [1, {(ulong)Type.MaxPages << PageShift}]");
        }
        else
        {
            err = _cmd switch
            {
                MdmaRegs.CmdCopy => CopyLocked(pin: true),
                MdmaRegs.CmdCopyRw => CopyLocked(pin: false),
                MdmaRegs.CmdUnpin => UnpinRangeLocked(_src, _len),
                _ => ErrorReason.Fail(Errno.EINVAL, $"mdma {Dev.Name}: unknown command {_cmd}"),
            };
        }

        _status = MdmaRegs.StatusDone;
        if (err < 0)
        {
            _status |= MdmaRegs.StatusError | ((uint)-err << MdmaRegs.StatusErrnoShift);
        }

        _completions++;
        _msi?.Signal();
    }

    private int CopyLocked(bool pin)
    {
        _lock.AssertHeld();
        if (pin)
        {
            int err = PinRangeLocked(_src, _len, (int)IommuProt.Read);
            if (err == 0)
            {
                err = PinRangeLocked(_dst, _len, (int)IommuProt.Write);
            }

            if (err != 0)
            {
                return err;
            }
        }

        // Forward, a page at a time, as the engine's bounce buffer holds one page.
        ulong done = 0;
        while (done < _len)
        {
            int n = (int)Math.Min(PageSize, _len - done);
            Span<byte> chunk = _bounce.AsSpan(0, n);
            int err = DmaRw(_src + done, chunk, write: false);
            if (err == 0)
            {
                err = DmaRw(_dst + done, chunk, write: true);
            }

            if (err != 0)
            {
                return err;
            }

            done += (ulong)n;
        }

        return 0;
    }

    /// <summary>
    /// Pins every page of [iova, iova + len) with <paramref name="prot"/> that the cache does not
    /// hold with it yet: runs of new pages in calls of at most 512, a cached page that lacks
    /// the protection pinned once more. 0 or -errno (pages pinned before the failure stay cached).
    /// </summary>
    private int PinRangeLocked(ulong iova, ulong len, int prot)
    {
        _lock.AssertHeld();
        ulong first = iova & ~(PageSize - 1);
        ulong npages = ((iova & (PageSize - 1)) + len + PageSize - 1) >> PageShift;
        ulong runStart = 0;
        int run = 0;
        for (ulong i = 0; i < npages; i++)
        {
            // The engine adds as the hardware would: an address past the top wraps to 0.
            ulong page = unchecked(first + (i << PageShift));
            if (_pins.TryGetValue(page, out PinEntry e))
            {
                int err = FlushRunLocked(runStart, ref run, prot);
                if (err != 0)
                {
                    return err;
                }

                if ((e.Prot & prot) != prot)
                {
                    Span<ulong> one = _scratchPfns.AsSpan(0, 1);
                    Interlocked.Increment(ref _pinCalls);
                    int r = PinPages(page, prot, one);
                    if (r < 0)
                    {
                        return r;
                    }

                    _pins[page] = new PinEntry(e.Pfn, e.Prot | prot, e.Pins + 1);
                }

                continue;
            }

            if (run == 0)
            {
                runStart = page;
            }

            run++;
            if (run == PinPagesMaxEntries)
            {
                int err = FlushRunLocked(runStart, ref run, prot);
                if (err != 0)
                {
                    return err;
                }
            }
        }

        return FlushRunLocked(runStart, ref run, prot);
    }

    private int FlushRunLocked(ulong runStart, ref int run, int prot)
    {
        _lock.AssertHeld();
        if (run == 0)
        {
            return 0;
        }

        Span<ulong> pfns = _scratchPfns.AsSpan(0, run);
        Interlocked.Increment(ref _pinCalls);
        int r = PinPages(runStart, prot, pfns);
        int n = run;
        run = 0;
        if (r < 0)
        {
            return r;
        }

        for (int i = 0; i < n; i++)
        {
            _pins[runStart + ((ulong)i << PageShift)] = new PinEntry(pfns[i], prot, 1);
        }

        return 0;
    }

    /// <summary>Drops every cached pin of a page in [iova, iova + len); 0.</summary>
    private int UnpinRangeLocked(ulong iova, ulong len)
    {
        _lock.AssertHeld();
        List<ulong> victims = _scratchIovas;
        victims.Clear();
        ulong first = iova & ~(PageSize - 1);
        ulong last = len == 0 ? first : iova + len - 1;
        if (len != 0 && last < iova)
        {
            last = ulong.MaxValue; // a range that wraps past 2^64 covers the rest of the space, as the pins did
        }
        foreach (ulong a in _pins.Keys)
        {
            if (a >= first && a <= last)
            {
                victims.Add(a);
            }
        }

        foreach (ulong a in victims)
        {
            PinEntry e = _pins[a];
            _pins.Remove(a);
            for (int i = 0; i < e.Pins; i++)
            {
                UnpinPages(a, 1);
            }
        }

        victims.Clear();
        return 0;
    }

    /// <summary>The dma_unmap callback: every cached pin inside the range goes (unless the misbehaving variant is loaded).</summary>
    internal void DmaUnmapped(ulong iova, ulong length)
    {
        Interlocked.Increment(ref _dmaUnmapCalls);
        if (Options.IgnoreDmaUnmap)
        {
            return;
        }

        _lock.Lock();
        try
        {
            UnpinRangeLocked(iova, length);
        }
        finally
        {
            _lock.Unlock();
        }
    }

    /// <summary>close_device: every pin and the MSI trigger go, the registers reset.</summary>
    internal void Closed()
    {
        EventFdContext? msi;
        _lock.Lock();
        try
        {
            if (_pins.Count != 0)
            {
                UnpinRangeLocked(0, ulong.MaxValue);
            }

            ResetRegistersLocked();
            msi = _msi;
            _msi = null;
        }
        finally
        {
            _lock.Unlock();
        }

        msi?.Put();
    }

    /// <summary>One page of the pin cache: the frame, the protections pinned, and how many vfio_pin_pages pins the device holds on it.</summary>
    private readonly record struct PinEntry(ulong Pfn, int Prot, int Pins);
}
