// Models the hardware of the capabilities a description can add beyond PM, PCI Express,
// ACS, MSI and MSI-X (PCI 3.0 §6.7, PCIe 6.0 §7): Vital Product Data with its address/data
// handshake over a small VPD store, vendor-specific standard and extended capabilities,
// DVSEC, PCI-X, Advanced Features with its FLR, AER, power budgeting, and capabilities of
// any other id with a plain payload (what vfio-pci hides: SSVID, Debug, PASID, …); and the
// PCI core's VPD access of drivers/pci/vpd.c (v6.12): pci_vpd_size over the resource tags,
// pci_read_vpd / pci_write_vpd through the capability's address and data registers.
//
// Lock rule: the VPD store and the capability registers change under ConfigLock (a config
// write); pci_read_vpd/pci_write_vpd hold the VPD mutex (vpd->lock) around their handshake,
// and take ConfigLock per register access, never the other way round.

using System.Buffers.Binary;
using Vfio.Kernel;
using Vfio.Platform.Machine;

namespace Vfio.Platform.Pci;

public partial class PciDevice
{
    /// <summary>PCI_VPD_MAX_SIZE: the VPD address register has 15 bits.</summary>
    public const int VpdMaxSize = 0x8000;

    private static readonly LockClass s_vpdLockClass = LockClass.Get("pci_vpd.lock");

    private int _vpdCap;
    private int _afCap;
    private byte[] _vpdStore = [];
    private KMutex? _vpdLock;

    // vpd->len: 0 until the first access sizes it (pci_vpd_available), -1 when the tags are bad.
    private int _vpdLen;

    /// <summary>Offset of the VPD capability, 0 if none.</summary>
    public int VpdCap => _vpdCap;

    /// <summary>Offset of the Advanced Features capability, 0 if none.</summary>
    public int AfCap => _afCap;

    /// <summary>The hardware's VPD store (what the device's EEPROM holds).</summary>
    public ReadOnlySpan<byte> VpdStore => _vpdStore;

    // ---- Construction.

    /// <summary>
    /// Adds a VPD capability (8 bytes) backed by a store of <paramref name="storeSize"/> bytes
    /// that starts with <paramref name="image"/>; the rest reads 0. Writing the address
    /// register runs the transfer at once: F clear fetches the dword into the data register
    /// and sets F, F set stores the data register and clears F.
    /// </summary>
    protected int AddVpdCapability(ReadOnlySpan<byte> image, int storeSize = 256)
    {
        CheckBuilding();
        ArgumentOutOfRangeException.ThrowIfLessThan(storeSize, 4);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(storeSize, VpdMaxSize);
        if (image.Length > storeSize)
        {
            throw new ArgumentException($"a VPD image of {image.Length} bytes does not fit a {storeSize}-byte store", nameof(image));
        }

        int cap = Config.AddCapability(PciCapRegs.IdVpd, PciCapRegs.VpdSizeof);
        Config.SetWritableWord(cap + PciCapRegs.VpdAddr, 0xffff);
        Config.SetWritableDword(cap + PciCapRegs.VpdData, 0xffffffff);
        _vpdStore = new byte[storeSize];
        image.CopyTo(_vpdStore);
        _vpdLock = new KMutex(Machine.Kernel, $"pci[{Name}].vpd", s_vpdLockClass);
        _vpdCap = cap;
        RecapturePowerOn();
        return cap;
    }

    /// <summary>
    /// Adds a vendor-specific capability (id 9): byte 2 is its length (3 + the payload), the
    /// payload follows. <paramref name="writable"/> makes the payload bytes writable.
    /// </summary>
    protected int AddVendorCapability(ReadOnlySpan<byte> payload, bool writable = true)
    {
        CheckBuilding();
        int len = 3 + payload.Length;
        if (len > 0xff)
        {
            throw new ArgumentException("a vendor-specific capability is at most 255 bytes", nameof(payload));
        }

        int cap = Config.AddCapability(PciCapRegs.IdVndr, len);
        Config.SetByte(cap + PciCapRegs.CapFlags, (byte)len);
        SetPayload(cap + 3, payload, writable);
        RecapturePowerOn();
        return cap;
    }

    /// <summary>Adds a PCI-X capability, version 2 (24 bytes: command, status, ECC registers).</summary>
    protected int AddPcixCapability()
    {
        CheckBuilding();
        int cap = Config.AddCapability(PciCapRegs.IdPcix, PciCapRegs.PcixSizeofV2);
        Config.SetWord(cap + PciCapRegs.XCmd, 0x2000);              // version 2 capability structure
        Config.SetWritableWord(cap + PciCapRegs.XCmd, 0x007f);      // parity, relaxed ordering, read count, split transactions
        Config.SetDword(cap + PciCapRegs.XStatus, ((uint)RequesterId << 0) | 0x00030000); // 64-bit, 133 MHz
        Config.SetWritableDword(cap + PciCapRegs.XEccCsr, 0x0000000f);
        RecapturePowerOn();
        return cap;
    }

    /// <summary>Adds an Advanced Features capability: transactions pending and, with <paramref name="flr"/>, function level reset.</summary>
    protected int AddAfCapability(bool flr)
    {
        CheckBuilding();
        int cap = Config.AddCapability(PciCapRegs.IdAf, PciCapRegs.AfSizeof);
        Config.SetByte(cap + PciCapRegs.AfLength, PciCapRegs.AfSizeof);
        Config.SetByte(cap + PciCapRegs.AfCap, (byte)(PciCapRegs.AfCapTp | (flr ? PciCapRegs.AfCapFlr : 0)));
        Config.SetWritableByte(cap + PciCapRegs.AfCtrl, flr ? PciCapRegs.AfCtrlFlr : (byte)0);
        _afCap = cap;
        RecapturePowerOn();
        return cap;
    }

    /// <summary>Adds a standard capability with any <paramref name="id"/> and a plain payload (writable when <paramref name="writable"/>).</summary>
    protected int AddRawCapability(byte id, ReadOnlySpan<byte> payload, bool writable = false)
    {
        CheckBuilding();
        int cap = Config.AddCapability(id, 2 + payload.Length);
        SetPayload(cap + 2, payload, writable);
        RecapturePowerOn();
        return cap;
    }

    /// <summary>
    /// Adds an AER extended capability (version 2, 0x38 bytes as an endpoint has it): the
    /// status registers are write-1-to-clear, mask and severity writable, ECRC generation and
    /// checking capable and enable bits writable.
    /// </summary>
    protected int AddAerCapability()
    {
        CheckBuilding();
        int cap = Config.AddExtCapability(PciCapRegs.ExtIdErr, 2, 0x38);
        const uint unc = PciCapRegs.ErrUncWritable, cor = PciCapRegs.ErrCorWritable;
        Config.SetW1cWord(cap + PciCapRegs.ErrUncorStatus, unchecked((ushort)unc));
        Config.SetW1cWord(cap + PciCapRegs.ErrUncorStatus + 2, (ushort)(unc >> 16));
        Config.SetWritableDword(cap + PciCapRegs.ErrUncorMask, unc);
        Config.SetDword(cap + PciCapRegs.ErrUncorSever, 0x00462030);  // the spec's default severities
        Config.SetWritableDword(cap + PciCapRegs.ErrUncorSever, unc);
        Config.SetW1cWord(cap + PciCapRegs.ErrCorStatus, unchecked((ushort)cor));
        Config.SetDword(cap + PciCapRegs.ErrCorMask, 0x00002000);     // Advisory Non-Fatal masked
        Config.SetWritableDword(cap + PciCapRegs.ErrCorMask, cor);
        Config.SetDword(cap + PciCapRegs.ErrCap, PciCapRegs.ErrCapEcrcGenc | PciCapRegs.ErrCapEcrcChkc);
        Config.SetWritableDword(cap + PciCapRegs.ErrCap, PciCapRegs.ErrCapEcrcGene | PciCapRegs.ErrCapEcrcChke);
        RecapturePowerOn();
        return cap;
    }

    /// <summary>Adds a power budgeting extended capability: a writable data select register and a read-only data register.</summary>
    protected int AddPowerBudgetCapability()
    {
        CheckBuilding();
        int cap = Config.AddExtCapability(PciCapRegs.ExtIdPwr, 1, PciCapRegs.PwrSizeof);
        Config.SetWritableByte(cap + PciCapRegs.PwrDsr, 0xff);
        Config.SetDword(cap + PciCapRegs.PwrData, 0x0000_4019);       // 25 W, D0, main power
        Config.SetByte(cap + PciCapRegs.PwrCap, 0x01);                 // included in the system budget
        RecapturePowerOn();
        return cap;
    }

    /// <summary>Adds a vendor-specific extended capability (id 0x0b) with VSEC id <paramref name="vsecId"/>; its length (8 + payload) is in the VSEC header.</summary>
    protected int AddVendorExtCapability(ushort vsecId, ReadOnlySpan<byte> payload, bool writable = true)
    {
        CheckBuilding();
        int len = 8 + payload.Length;
        int cap = Config.AddExtCapability(PciCapRegs.ExtIdVndr, 1, len);
        Config.SetDword(cap + PciCapRegs.VsecHdr, vsecId | (1u << 16) | ((uint)len << PciCapRegs.VsecHdrLenShift));
        SetPayload(cap + 8, payload, writable);
        RecapturePowerOn();
        return cap;
    }

    /// <summary>Adds a designated vendor-specific extended capability (id 0x23) for <paramref name="vendor"/>, DVSEC id <paramref name="dvsecId"/>.</summary>
    protected int AddDvsecCapability(ushort vendor, ushort dvsecId, ReadOnlySpan<byte> payload, bool writable = true)
    {
        CheckBuilding();
        int len = 10 + payload.Length;
        int cap = Config.AddExtCapability(PciCapRegs.ExtIdDvsec, 1, len);
        Config.SetDword(cap + PciCapRegs.DvsecHeader1, vendor | (1u << 16) | ((uint)len << 20));
        Config.SetWord(cap + PciCapRegs.DvsecHeader2, dvsecId);
        SetPayload(cap + 10, payload, writable);
        RecapturePowerOn();
        return cap;
    }

    /// <summary>Adds an extended capability with any <paramref name="id"/> and a plain payload after its header.</summary>
    protected int AddRawExtCapability(ushort id, ReadOnlySpan<byte> payload, bool writable = false, byte version = 1)
    {
        CheckBuilding();
        int cap = Config.AddExtCapability(id, version, 4 + payload.Length);
        SetPayload(cap + 4, payload, writable);
        RecapturePowerOn();
        return cap;
    }

    private void SetPayload(int at, ReadOnlySpan<byte> payload, bool writable)
    {
        for (int i = 0; i < payload.Length; i++)
        {
            Config.SetByte(at + i, payload[i]);
            if (writable)
            {
                Config.SetWritableByte(at + i, 0xff);
            }
        }
    }

    /// <summary>Adds the <c>capabilities</c> of a machine description, in their order.</summary>
    protected void AddDescribedCapabilities(PciFunctionDescription description)
    {
        ArgumentNullException.ThrowIfNull(description);
        foreach (CapabilityDescription c in description.Capabilities)
        {
            byte[] payload = c.Payload;
            switch (c.Type)
            {
                case "vpd":
                    AddVpdCapability(c.Payload.Length == 0 ? DefaultVpdImage(Identity) : payload, c.Size ?? 256);
                    break;
                case "vendor":
                    AddVendorCapability(payload, c.Writable ?? true);
                    break;
                case "pcix":
                    AddPcixCapability();
                    break;
                case "af":
                    AddAfCapability(c.Flr ?? true);
                    break;
                case "aer":
                    AddAerCapability();
                    break;
                case "power-budget":
                    AddPowerBudgetCapability();
                    break;
                case "vendor-ext":
                    AddVendorExtCapability((ushort)(c.Id ?? 1), payload, c.Writable ?? true);
                    break;
                case "dvsec":
                    AddDvsecCapability((ushort)(c.Vendor ?? (int)Identity.Vendor), (ushort)(c.Id ?? 0), payload, c.Writable ?? true);
                    break;
                case "raw":
                    AddRawCapability((byte)(c.Id ?? 0), payload.Length == 0 ? new byte[(c.Size ?? 8) - 2] : payload, c.Writable ?? false);
                    break;
                case "raw-ext":
                    AddRawExtCapability((ushort)(c.Id ?? 0), payload.Length == 0 ? new byte[(c.Size ?? 8) - 4] : payload, c.Writable ?? false);
                    break;
                default:
                    throw new InvalidOperationException($"{Name}: capability type \"{c.Type}\" is not built here");
            }
        }
    }

    /// <summary>
    /// A small, well-formed VPD image: the identifier string (tag 0x82), a read-only section
    /// (tag 0x90) with the part number and the RV checksum keyword, a writable section (tag
    /// 0x91) with 16 bytes of the V0 keyword, and the end tag.
    /// </summary>
    public static byte[] DefaultVpdImage(PciIdentity identity)
    {
        var b = new List<byte>(96);
        byte[] name = System.Text.Encoding.ASCII.GetBytes($"vfio-sim {identity.Vendor:x4}:{identity.Device:x4}");
        b.Add(0x82);
        b.Add((byte)name.Length);
        b.Add(0);
        b.AddRange(name);

        // VPD-R: PN (8 bytes), then RV whose first byte makes the sum of all bytes so far 0.
        int roStart = b.Count;
        b.AddRange([0x90, 0, 0]);
        b.AddRange("PN"u8.ToArray());
        b.Add(8);
        b.AddRange("SIM-0001"u8.ToArray());
        b.AddRange("RV"u8.ToArray());
        b.Add(1);
        b.Add(0);
        int roLen = b.Count - roStart - 3;
        b[roStart + 1] = (byte)roLen;
        byte sum = 0;
        foreach (byte x in b)
        {
            sum += x;
        }

        b[^1] = (byte)(0 - sum);

        // VPD-W: 16 writable bytes.
        b.AddRange([0x91, 19, 0]);
        b.AddRange("V0"u8.ToArray());
        b.Add(16);
        b.AddRange(new byte[16]);
        b.Add(0x78);
        return [.. b];
    }

    /// <summary>Whether the config dword at <paramref name="off"/> holds VPD registers (address, data).</summary>
    private bool IsVpdCapDword(int off) => _vpdCap != 0 && off >= (_vpdCap & ~3) && off < _vpdCap + 8;

    // ---- Hardware.

    /// <summary>
    /// Register effects of the capabilities built here, after a config write (the lock is
    /// held): the VPD handshake, and Advanced Features' Initiate FLR, which reads as zero.
    /// </summary>
    private void CapabilityRegisterWrittenLocked(int offset, int size, ref PendingEffects fx)
    {
        ConfigLock.AssertHeld();
        if (_vpdCap != 0 && Overlaps(offset, size, _vpdCap + PciCapRegs.VpdAddr, 2))
        {
            ushort addr = Config.GetWord(_vpdCap + PciCapRegs.VpdAddr);
            int at = addr & PciCapRegs.VpdAddrMask;
            if ((addr & PciCapRegs.VpdAddrF) != 0)
            {
                uint data = Config.GetDword(_vpdCap + PciCapRegs.VpdData);
                for (int i = 0; i < 4 && at + i < _vpdStore.Length; i++)
                {
                    _vpdStore[at + i] = (byte)(data >> (8 * i));
                }

                Config.SetWord(_vpdCap + PciCapRegs.VpdAddr, (ushort)(addr & ~PciCapRegs.VpdAddrF));
            }
            else
            {
                uint data = 0;
                for (int i = 0; i < 4 && at + i < _vpdStore.Length; i++)
                {
                    data |= (uint)_vpdStore[at + i] << (8 * i);
                }

                Config.SetDword(_vpdCap + PciCapRegs.VpdData, data);
                Config.SetWord(_vpdCap + PciCapRegs.VpdAddr, (ushort)(addr | PciCapRegs.VpdAddrF));
            }
        }

        if (_afCap != 0 && Overlaps(offset, size, _afCap + PciCapRegs.AfCtrl, 1)
            && (Config.GetByte(_afCap + PciCapRegs.AfCtrl) & PciCapRegs.AfCtrlFlr) != 0)
        {
            Config.SetByte(_afCap + PciCapRegs.AfCtrl, (byte)(Config.GetByte(_afCap + PciCapRegs.AfCtrl) & ~PciCapRegs.AfCtrlFlr));
            fx.Reset = PciResetKind.Flr;
        }
    }

    // ---- PCI core: drivers/pci/vpd.c.

    /// <summary>
    /// pci_read_vpd(): up to <paramref name="buf"/>.Length bytes from VPD offset
    /// <paramref name="pos"/>, clamped to the VPD's size; the count read, 0 past the end,
    /// -EINVAL for a negative offset, -ENODEV without (valid) VPD.
    /// </summary>
    public int ReadVpd(long pos, Span<byte> buf)
    {
        if (pos < 0)
        {
            return Errno.EINVAL.Negative();
        }

        if (!VpdAvailable())
        {
            return Errno.ENODEV.Negative();
        }

        if (pos >= _vpdLen)
        {
            return 0;
        }

        int count = (int)Math.Min(buf.Length, _vpdLen - pos);
        _vpdLock!.Lock();
        try
        {
            for (int done = 0; done < count;)
            {
                int at = (int)pos + done;
                uint data = VpdTransfer(at & ~3, write: false, 0);
                for (int skip = at & 3; skip < 4 && done < count; skip++)
                {
                    buf[done++] = (byte)(data >> (8 * skip));
                }
            }
        }
        finally
        {
            _vpdLock.Unlock();
        }

        return count;
    }

    /// <summary>
    /// pci_write_vpd(): dword-aligned, whole dwords, inside the VPD's size (else -EINVAL;
    /// -ENODEV without VPD); the count written.
    /// </summary>
    public int WriteVpd(long pos, ReadOnlySpan<byte> buf)
    {
        if (pos < 0 || (pos & 3) != 0 || (buf.Length & 3) != 0)
        {
            return Errno.EINVAL.Negative();
        }

        if (!VpdAvailable())
        {
            return Errno.ENODEV.Negative();
        }

        if (pos + buf.Length > _vpdLen)
        {
            return Errno.EINVAL.Negative();
        }

        _vpdLock!.Lock();
        try
        {
            for (int done = 0; done < buf.Length; done += 4)
            {
                VpdTransfer((int)pos + done, write: true, BinaryPrimitives.ReadUInt32LittleEndian(buf[done..]));
            }
        }
        finally
        {
            _vpdLock.Unlock();
        }

        return buf.Length;
    }

    /// <summary>One handshake on the capability: address (and data) written, F polled until the device flips it.</summary>
    private uint VpdTransfer(int addr, bool write, uint data)
    {
        int cap = _vpdCap;
        if (write)
        {
            WriteConfig(cap + PciCapRegs.VpdData, data, 4);
            WriteConfig(cap + PciCapRegs.VpdAddr, (uint)addr | PciCapRegs.VpdAddrF, 2);
        }
        else
        {
            WriteConfig(cap + PciCapRegs.VpdAddr, (uint)addr, 2);
        }

        // The device completes at once: one poll sees F flipped.
        uint flag = ReadConfig(cap + PciCapRegs.VpdAddr, 2) & PciCapRegs.VpdAddrF;
        Warn.On(Machine.Kernel, (flag != 0) == write, $"pci {Name}: VPD {(write ? "write" : "read")} at 0x{addr:x} did not complete");
        return write ? 0 : ReadConfig(cap + PciCapRegs.VpdData, 4);
    }

    /// <summary>pci_vpd_available(): the VPD size, worked out on first use by walking the resource tags (pci_vpd_size).</summary>
    private bool VpdAvailable()
    {
        if (_vpdCap == 0)
        {
            return false;
        }

        if (_vpdLen == 0)
        {
            _vpdLock!.Lock();
            try
            {
                if (_vpdLen == 0)
                {
                    _vpdLen = VpdSize();
                }
            }
            finally
            {
                _vpdLock.Unlock();
            }
        }

        return _vpdLen > 0;
    }

    /// <summary>
    /// pci_vpd_size(): large resource tags (bit 7) carry a 16-bit length, small ones 3 bits;
    /// the end tag (0x78) ends the VPD. A first byte of 0x00 or 0xff means no VPD (-1).
    /// </summary>
    private int VpdSize()
    {
        int off = 0;
        while (off < VpdMaxSize)
        {
            byte tag = (byte)VpdTransferByte(off);
            if (off == 0 && tag is 0x00 or 0xff)
            {
                Machine.Kernel.Log.Info($"pci {Name}: invalid VPD tag 0x{tag:x2} (size 0) at offset 0, assume no VPD");
                return -1;
            }

            if ((tag & 0x80) != 0)
            {
                int size = (int)(VpdTransferByte(off + 1) | (VpdTransferByte(off + 2) << 8));
                if (off + size > VpdMaxSize)
                {
                    break;
                }

                off += 3 + size;
            }
            else
            {
                int size = tag & 0x07;
                off += 1 + size;
                if ((tag & 0x78) == 0x78)
                {
                    return off;
                }
            }
        }

        return off == 0 ? -1 : Math.Min(off, VpdMaxSize);
    }

    private uint VpdTransferByte(int at) => (VpdTransfer(at & ~3, write: false, 0) >> (8 * (at & 3))) & 0xff;
}
