// Models drivers/vfio/pci/vfio_pci_config.c (v6.12, compared with v6.1): the config region
// of the device fd. At open (vfio_config_init) the device gets a virtual copy of its whole
// config space (vconfig) and a map saying which capability owns each byte
// (pci_config_map): the header is PCI_CAP_ID_BASIC, each capability the user may see its
// id, the rest PCI_CAP_ID_INVALID (raw access). Walking the hardware's chains
// (vfio_cap_init, vfio_ecap_init) hides the capabilities the length tables give 0 by
// relinking the previous next pointer in vconfig; a hidden extended capability at 0x100
// stays as a placeholder header (id 0, version 0, next kept).
//
// An access (vfio_pci_config_rw) is cut into naturally aligned pieces of 1, 2 or 4 bytes
// that never cross a dword or a capability boundary (vfio_config_do_rw); each piece goes to
// the handlers of its capability's permission table (VfioPciConfigPerms.cs): reads give
// (hardware & ~virt) | (vconfig & virt); writes put writable virtual bits into vconfig,
// read-modify-write writable hardware bits, and drop the rest — the write still succeeds.
// Handlers for COMMAND, BARs and INTx disable are here; PM, VPD, PCI Express, Advanced
// Features in ConfigCaps.cs; MSI in MsiConfig.cs.
//
// Life cycle: vconfig, the map and the MSI table exist from ConfigInit (first open) to
// ConfigFree (last close); the device fd cannot reach config space outside that window.
//
// Lock rule: _vconfigLock protects the bytes of _vconfig, _barDirty and _rbar (the kernel
// relies on the device's single user and takes no lock; the simulator's lock keeps each
// piece atomic). Handlers that change decode take memory_lock first (memory_lock → vconfig
// lock); hardware accesses and resets run with the vconfig lock dropped.

using System.Buffers.Binary;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Fs;
using Vfio.Platform.Pci;

namespace Vfio.Pci;

public sealed partial class VfioPciCoreDevice
{
    // Protects the bytes of _vconfig, _barDirty and _rbar (vconfig is per device, so is this lock).
    private KMutex _vconfigLock = null!;

    // vdev->vconfig and vdev->pci_config_map (null while the device is closed; the arrays
    // themselves are replaced only at open and close).
    private byte[]? _vconfig;
    private byte[]? _configMap;

    // vdev->msi_perm: the MSI permission table, built at open for the function's flags.
    private PermBits? _msiPerm;

    // vdev->extended_caps: the PCI Express (or PCI-X 2.0) capability saw a non-zero 0x100.
    private bool _extendedCaps;

    // vdev->bardirty: a BAR was written since vfio_bar_fixup last masked the virtual BARs.
    private bool _barDirty;

    // vdev->rbar[7]: the BARs and ROM BAR the hardware held at open (restored after a backdoor reset).
    private readonly uint[] _rbar = new uint[7];

    // vdev->pm_save: the state saved on entering D3hot (memory_lock held for write).
    private PciSavedState? _pmSave;

    // ---- vfio_config_init / vfio_config_free.

    /// <summary>
    /// vfio_config_init(): the map (header BASIC, the rest INVALID), vconfig filled from the
    /// header, the BARs saved for restore, INTERRUPT_PIN 0 when INTx is hidden, then the
    /// capability chains.
    /// </summary>
    private void ConfigInit()
    {
        int size = Pdev.ConfigSize;
        byte[] map = new byte[size];
        byte[] v = new byte[size];
        map.AsSpan(PciCapRegs.StdHeaderSizeof).Fill(VfioPciPermTables.CapIdInvalid);
        FillVconfigBytes(v, 0, PciCapRegs.StdHeaderSizeof);

        _vconfigLock.Lock();
        _barDirty = true;
        for (int i = 0; i < 6; i++)
        {
            _rbar[i] = BinaryPrimitives.ReadUInt32LittleEndian(v.AsSpan(PciRegs.BaseAddress0 + (4 * i)));
        }

        _rbar[6] = BinaryPrimitives.ReadUInt32LittleEndian(v.AsSpan(PciRegs.RomAddress));
        _vconfigLock.Unlock();

        if (NoIntx)
        {
            v[PciRegs.InterruptPin] = 0;
        }

        // A VF's vendor and device registers read 0xffff; the user sees the ids the PCI core
        // took from the PF's SR-IOV capability.
        if (Pdev.IsVirtfn)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(v.AsSpan(PciRegs.VendorId), (ushort)Pdev.Identity.Vendor);
            BinaryPrimitives.WriteUInt16LittleEndian(v.AsSpan(PciRegs.DeviceId), (ushort)Pdev.Identity.Device);
        }

        // no_command_memory (VFs): the hardware has no MEM bit, so it is never set after
        // pci_enable_device; the virtual one starts set, as a physical function's would be.
        if (Pdev.NoCommandMemory)
        {
            v[PciRegs.Command] |= (byte)PciRegs.CommandMemory;
        }

        _extendedCaps = false;
        _msiPerm = null;
        CapInit(map, v);
        EcapInit(map, v);

        _vconfigLock.Lock();
        _vconfig = v;
        _configMap = map;
        _vconfigLock.Unlock();
    }

    /// <summary>vfio_config_free().</summary>
    private void ConfigFree()
    {
        _vconfigLock.Lock();
        _vconfig = null;
        _configMap = null;
        _msiPerm = null;
        _vconfigLock.Unlock();
    }

    /// <summary>vfio_fill_vconfig_bytes(): vconfig[offset, offset+size) from the hardware, in the widest aligned pieces.</summary>
    private void FillVconfigBytes(byte[] v, int offset, int size)
    {
        while (size > 0)
        {
            int n = size >= 4 && offset % 4 == 0 ? 4 : size >= 2 && offset % 2 == 0 ? 2 : 1;
            WriteLe(v.AsSpan(offset, n), Pdev.ReadConfig(offset, n));
            offset += n;
            size -= n;
        }
    }

    /// <summary>
    /// vfio_cap_init(): walks the standard chain (at most 48 entries). A capability of length
    /// 0 (hidden, id 0 or above PCI_CAP_ID_MAX) is unlinked by pointing the previous next
    /// byte (or the list pointer) past it; the others are mapped and copied. No survivor
    /// clears STATUS.CAP_LIST in vconfig.
    /// </summary>
    private void CapInit(byte[] map, byte[] v)
    {
        if ((Pdev.ReadConfig(PciRegs.Status, 2) & PciRegs.StatusCapList) == 0)
        {
            return;
        }

        int pos = (int)Pdev.ReadConfig(PciRegs.CapabilityList, 1);
        int prev = PciRegs.CapabilityList;
        int caps = 0;
        for (int loops = (PciRegs.StdConfigSpaceSize - PciCapRegs.StdHeaderSizeof) / 4; pos != 0 && loops > 0; loops--)
        {
            byte cap = (byte)Pdev.ReadConfig(pos, 1);
            byte next = (byte)Pdev.ReadConfig(pos + PciCapRegs.CapListNext, 1);
            int len = 0;

            // Id 0 is the NULL capability, which collides with the header's fake id: hidden.
            if (cap != 0 && cap <= PciCapRegs.IdMax)
            {
                len = VfioPciPermTables.CapLength[cap];
                if (len == VfioPciPermTables.VariableLength)
                {
                    len = CapLen(cap, pos);
                }
            }

            if (len == 0)
            {
                LogHiding($"vfio_cap_init: hiding cap 0x{cap:x}@0x{pos:x}");
                v[prev] = next;
                pos = next;
                continue;
            }

            MapCapability(map, v, pos, len, cap, "cap");
            if (cap == PciCapRegs.IdPm)
            {
                // vfio_update_pm_vconfig_bytes(): the user cannot take PME, so PME_Support, PME_En and PME_Status read 0.
                ushort pmc = BinaryPrimitives.ReadUInt16LittleEndian(v.AsSpan(pos + PciRegs.PmPmc));
                BinaryPrimitives.WriteUInt16LittleEndian(v.AsSpan(pos + PciRegs.PmPmc), (ushort)(pmc & ~PciCapRegs.PmCapPmeMask));
                ushort ctrl = BinaryPrimitives.ReadUInt16LittleEndian(v.AsSpan(pos + PciRegs.PmCtrl));
                BinaryPrimitives.WriteUInt16LittleEndian(v.AsSpan(pos + PciRegs.PmCtrl), (ushort)(ctrl & ~(PciCapRegs.PmCtrlPmeEnable | PciCapRegs.PmCtrlPmeStatus)));
            }

            prev = pos + PciCapRegs.CapListNext;
            pos = next;
            caps++;
        }

        if (caps == 0)
        {
            ushort status = BinaryPrimitives.ReadUInt16LittleEndian(v.AsSpan(PciRegs.Status));
            BinaryPrimitives.WriteUInt16LittleEndian(v.AsSpan(PciRegs.Status), (ushort)(status & ~PciRegs.StatusCapList));
        }
    }

    /// <summary>
    /// vfio_ecap_init(): walks the extended chain from 0x100 when the PCI Express capability
    /// saw one. A hidden capability after the first is unlinked through the previous header's
    /// next field; a hidden first one stays as a 4-byte placeholder whose id and version read
    /// 0. No survivor makes dword 0x100 read 0.
    /// </summary>
    private void EcapInit(byte[] map, byte[] v)
    {
        if (!_extendedCaps)
        {
            return;
        }

        int epos = PciRegs.StdConfigSpaceSize;
        int prev = -1;
        int ecaps = 0;
        for (int loops = (Pdev.ConfigSize - PciRegs.StdConfigSpaceSize) / 4; loops > 0 && epos >= PciRegs.StdConfigSpaceSize; loops--)
        {
            uint header = Pdev.ReadConfig(epos, 4);
            ushort ecap = (ushort)header;
            int len = 0;
            bool hidden = false;
            if (ecap <= PciCapRegs.ExtIdMax)
            {
                len = ExtCapLengthOf(ecap);
                if (len == VfioPciPermTables.VariableLength)
                {
                    len = ExtCapLen(ecap, epos);
                }
            }

            if (len == 0)
            {
                LogHiding($"vfio_ecap_init: hiding ecap 0x{ecap:x}@0x{epos:x}");
                if (prev >= 0)
                {
                    epos = (int)(header >> 20) & 0xffc;
                    uint p = BinaryPrimitives.ReadUInt32LittleEndian(v.AsSpan(prev));
                    BinaryPrimitives.WriteUInt32LittleEndian(v.AsSpan(prev), (p & ~(0xffcu << 20)) | ((uint)epos << 20));
                    continue;
                }

                len = 4;
                hidden = true;
            }

            MapCapability(map, v, epos, len, (byte)ecap, "ecap");

            // The placeholder keeps only its next pointer; only real capabilities count.
            if (hidden)
            {
                uint h = BinaryPrimitives.ReadUInt32LittleEndian(v.AsSpan(epos));
                BinaryPrimitives.WriteUInt32LittleEndian(v.AsSpan(epos), h & (0xffcu << 20));
            }
            else
            {
                ecaps++;
            }

            prev = epos;
            epos = (int)(header >> 20) & 0xffc;
        }

        if (ecaps == 0)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(v.AsSpan(PciRegs.StdConfigSpaceSize), 0);
        }
    }

    /// <summary>Marks [pos, pos+len) as capability <paramref name="id"/> (warning about overlaps, as the kernel does) and copies it into vconfig.</summary>
    private void MapCapability(byte[] map, byte[] v, int pos, int len, byte id, string kind)
    {
        len = Math.Min(len, map.Length - pos);
        for (int i = 0; i < len; i++)
        {
            if (map[pos + i] != VfioPciPermTables.CapIdInvalid)
            {
                Core.Kernel.Log.Warn($"{VfioPciDriver.DriverName} {Pname}: vfio_{kind}_init: PCI config conflict @0x{pos + i:x}, was {kind} 0x{map[pos + i]:x} now {kind} 0x{id:x}");
            }
        }

        map.AsSpan(pos, len).Fill(id);
        FillVconfigBytes(v, pos, len);
    }

    private void LogHiding(string text)
        => Core.Kernel.Log.Printk(Has(VfioPciFeatures.HidingCapMessagesAtDebug) ? LogLevel.Debug : LogLevel.Info, $"{VfioPciDriver.DriverName} {Pname}: {text}");

    private int ExtCapLengthOf(ushort ecap)
        => ecap == PciCapRegs.ExtIdDvsec && !Has(VfioPciFeatures.DvsecVisible) ? 0 : VfioPciPermTables.ExtCapLength[ecap];

    /// <summary>vfio_cap_len(): the length of a variable-length standard capability, read from the hardware.</summary>
    private int CapLen(byte cap, int pos)
    {
        switch (cap)
        {
            case PciCapRegs.IdMsi:
                return MsiCapLen(pos);
            case PciCapRegs.IdPcix:
                if (((Pdev.ReadConfig(pos + PciCapRegs.XCmd, 2) >> 12) & 3) != 0)
                {
                    NoteExtendedCaps();
                    return PciCapRegs.PcixSizeofV2;
                }

                return PciCapRegs.PcixSizeofV0;
            case PciCapRegs.IdVndr:
                return (int)Pdev.ReadConfig(pos + PciCapRegs.CapFlags, 1);
            case PciCapRegs.IdExp:
            {
                NoteExtendedCaps();
                uint flags = Pdev.ReadConfig(pos + PciRegs.ExpFlags, 2);
                bool rcEnd = ((flags >> 4) & 0xf) == PciRegs.ExpTypeRcEndpoint;
                return (flags & PciCapRegs.ExpFlagsVers) == 1
                    ? rcEnd ? 0xc : PciCapRegs.ExpEndpointSizeofV1
                    : rcEnd ? 0x2c : PciCapRegs.ExpEndpointSizeofV2;
            }

            case PciCapRegs.IdHt:
                return (Pdev.ReadConfig(pos + 3, 1) & 0xe0) != 0 ? 24 : 28;
            case PciCapRegs.IdSata:
                return (Pdev.ReadConfig(pos + 4, 1) & 0xf) == 0xf ? 16 : 8;
            default:
                Core.Kernel.Log.Warn($"{VfioPciDriver.DriverName} {Pname}: vfio_cap_len: unknown length for PCI cap 0x{cap:x}@0x{pos:x}");
                return 0;
        }
    }

    private void NoteExtendedCaps()
    {
        if (Pdev.ConfigSize > PciRegs.StdConfigSpaceSize)
        {
            _extendedCaps = Pdev.ReadConfig(PciRegs.StdConfigSpaceSize, 4) != 0;
        }
    }

    /// <summary>vfio_ext_cap_len(): the length of a variable-length extended capability, read from the hardware.</summary>
    private int ExtCapLen(ushort ecap, int epos)
    {
        switch (ecap)
        {
            case PciCapRegs.ExtIdVndr:
                return (int)(Pdev.ReadConfig(epos + PciCapRegs.VsecHdr, 4) >> PciCapRegs.VsecHdrLenShift);
            case PciCapRegs.ExtIdVc:
            case PciCapRegs.ExtIdVc9:
            case PciCapRegs.ExtIdMfvc:
            {
                // vfio_vc_cap_len(): base, one entry per VC, then the arbitration table.
                int evcc = (int)(Pdev.ReadConfig(epos + 4, 4) & 0x7);
                uint cap2 = Pdev.ReadConfig(epos + 8, 4);
                int phases = (cap2 & 0x8) != 0 ? 128 : (cap2 & 0x4) != 0 ? 64 : (cap2 & 0x2) != 0 ? 32 : 0;
                int len = 0x10 + ((1 + evcc) * 0xc);
                if (phases != 0)
                {
                    len = ((len + 15) & ~15) + (phases * 4 / 8);
                }

                return len;
            }

            case PciCapRegs.ExtIdAcs:
            {
                if ((Pdev.ReadConfig(epos + PciRegs.AcsCap, 1) & PciRegs.AcsEc) == 0)
                {
                    return 8;
                }

                int bits = (int)Pdev.ReadConfig(epos + 5, 1);
                bits = bits != 0 ? (bits + 31) & ~31 : 256;
                return 8 + (bits / 8);
            }

            case PciCapRegs.ExtIdRebar:
                return 4 + ((int)((Pdev.ReadConfig(epos + 8, 1) & 0xe0) >> 5) * 8);
            case PciCapRegs.ExtIdDpa:
                return 16 + (int)(Pdev.ReadConfig(epos + 4, 1) & 0x1f) + 1;
            case PciCapRegs.ExtIdTph:
            {
                uint cap = Pdev.ReadConfig(epos + 4, 4);
                return (cap & 0x600) == 0x200 ? 12 + ((int)((cap & 0x07ff0000) >> 16) * 2) + 2 : 12;
            }

            case PciCapRegs.ExtIdDvsec:
                return (int)(Pdev.ReadConfig(epos + PciCapRegs.DvsecHeader1, 4) >> 20) & 0xfff;
            default:
                Core.Kernel.Log.Warn($"{VfioPciDriver.DriverName} {Pname}: vfio_ext_cap_len: unknown length for PCI ecap 0x{ecap:x}@0x{epos:x}");
                return 0;
        }
    }

    // ---- The config region: vfio_pci_config_rw / vfio_config_do_rw.

    /// <summary>A copy of vconfig (null while the device is closed), for tests and tools that check what the user's view holds.</summary>
    internal byte[]? VconfigSnapshot()
    {
        _vconfigLock.Lock();
        try
        {
            return (byte[]?)_vconfig?.Clone();
        }
        finally
        {
            _vconfigLock.Unlock();
        }
    }

    /// <summary>The virtual COMMAND register (0 when the device is closed).</summary>
    private ushort VirtualCommand()
    {
        byte[]? v = Volatile.Read(ref _vconfig);
        return v is null ? (ushort)0 : BinaryPrimitives.ReadUInt16LittleEndian(v.AsSpan(PciRegs.Command));
    }

    /// <summary>vfio_pci_config_rw(): piece by piece until done or a piece fails.</summary>
    private long ConfigRw(ulong buf, long count, ref long ppos, bool write)
    {
        long pos = ppos & VfioPciIndex.OffsetMask;
        long done = 0;
        while (count > 0)
        {
            long ret = ConfigDoRw(buf, count, pos, write);
            if (ret < 0)
            {
                return ret;
            }

            count -= ret;
            done += ret;
            buf += (ulong)ret;
            pos += ret;
        }

        ppos += done;
        return done;
    }

    /// <summary>
    /// vfio_config_do_rw(): one piece — the whole access must lie in [0, cfg_size) (else
    /// -EFAULT); the piece stops at the dword or where the owning capability ends, and is
    /// 4, 2 or 1 bytes as alignment allows; its capability's handlers do it.
    /// </summary>
    private long ConfigDoRw(ulong buf, long count, long pos, bool write)
    {
        if (pos < 0 || pos >= Pdev.ConfigSize || pos + count > Pdev.ConfigSize)
        {
            return ErrorReason.Fail(Errno.EFAULT, $"{(write ? "write" : "read")}: config bytes [0x{pos:x}, 0x{pos + count:x}) are outside {Pname}'s {Pdev.ConfigSize}-byte config space");
        }

        byte[] map = Volatile.Read(ref _configMap) ?? throw new InvalidOperationException($"vfio-pci: config access to {Pname} while it is closed");
        int p = (int)pos;
        byte capId = map[p];
        int n = 1;
        while ((p + n) % 4 != 0 && map[p + n] == capId)
        {
            n++;
        }

        n = (int)Math.Min(count, n);
        n = n >= 4 && p % 4 == 0 ? 4 : n >= 2 && p % 2 == 0 ? 2 : 1;

        PermBits perm;
        int capStart = 0;
        if (capId == VfioPciPermTables.CapIdInvalid)
        {
            perm = VfioPciPermTables.Unassigned;
            capStart = p;
        }
        else if (capId == VfioPciPermTables.CapIdInvalidVirt)
        {
            perm = VfioPciPermTables.VirtOnly;
            capStart = p;
        }
        else if (p >= PciRegs.StdConfigSpaceSize)
        {
            // An id past PCI_EXT_CAP_ID_MAX only anchors the list (a hidden unknown capability
            // at 0x100): read-only, header virtual.
            perm = capId > PciCapRegs.ExtIdMax ? VfioPciPermTables.DirectRo : VfioPciPermTables.EcapPerms[capId];
            capStart = FindCapStart(map, p);
        }
        else
        {
            Warn.On(Core.Kernel, capId > PciCapRegs.IdMax, $"vfio-pci: {Pname}: config map names cap 0x{capId:x} at 0x{p:x}");
            perm = capId == PciCapRegs.IdMsi ? _msiPerm! : VfioPciPermTables.CapPerms[capId];
            if (capId > VfioPciPermTables.CapIdBasic)
            {
                capStart = FindCapStart(map, p);
            }
        }

        Warn.On(Core.Kernel, capStart == 0 && capId != VfioPciPermTables.CapIdBasic, $"vfio-pci: {Pname}: no start for cap 0x{capId:x} at 0x{p:x}");
        int offset = p - capStart;
        Span<byte> b = stackalloc byte[4];
        Span<byte> piece = b[..n];
        if (write)
        {
            if (perm.WriteFn == ConfigWriteFn.None)
            {
                return n;
            }

            if (UserMemory.CopyFromUser(piece, buf) != 0)
            {
                return ErrorReason.Fail(Errno.EFAULT, $"write: cannot copy from 0x{buf:x}");
            }

            ConfigWritePiece(perm, p, n, offset, ReadLe(piece));
            return n;
        }

        uint val = perm.Read == ConfigReadFn.None ? 0 : ConfigReadPiece(perm, p, n, offset);
        WriteLe(piece, val);
        return UserMemory.CopyToUser(buf, piece) != 0 ? ErrorReason.Fail(Errno.EFAULT, $"read: cannot copy to 0x{buf:x}") : n;
    }

    /// <summary>vfio_find_cap_start(): back to the first byte of the capability owning <paramref name="pos"/> (0 for the header).</summary>
    private static int FindCapStart(byte[] map, int pos)
    {
        byte cap = map[pos];
        if (cap == VfioPciPermTables.CapIdBasic)
        {
            return 0;
        }

        // Two abutting capabilities of one id would merge here, as they do in the kernel.
        int floor = pos >= PciRegs.StdConfigSpaceSize ? PciRegs.StdConfigSpaceSize : PciCapRegs.StdHeaderSizeof;
        while (pos - 1 >= floor && map[pos - 1] == cap)
        {
            pos--;
        }

        return pos;
    }

    private uint ConfigReadPiece(PermBits perm, int pos, int count, int offset) => perm.Read switch
    {
        ConfigReadFn.Default => DefaultConfigRead(perm, pos, count, offset),
        ConfigReadFn.Direct => DirectConfigRead(pos, count, offset),
        ConfigReadFn.Raw => Pdev.ReadConfig(pos, count),
        ConfigReadFn.Virt => VconfigRead(pos, count),
        ConfigReadFn.Basic => BasicConfigRead(perm, pos, count, offset),
        ConfigReadFn.Msi => MsiConfigRead(perm, pos, count, offset),
        _ => 0,
    };

    private void ConfigWritePiece(PermBits perm, int pos, int count, int offset, uint val)
    {
        switch (perm.WriteFn)
        {
            case ConfigWriteFn.Default:
                DefaultConfigWrite(perm, pos, count, offset, val);
                break;
            case ConfigWriteFn.Raw:
                Pdev.WriteConfig(pos, val, count);
                break;
            case ConfigWriteFn.Virt:
                VconfigWrite(pos, count, val);
                break;
            case ConfigWriteFn.Basic:
                BasicConfigWrite(perm, pos, count, offset, val);
                break;
            case ConfigWriteFn.Pm:
                PmConfigWritePiece(perm, pos, count, offset, val);
                break;
            case ConfigWriteFn.Vpd:
                VpdConfigWrite(perm, pos, count, offset, val);
                break;
            case ConfigWriteFn.Exp:
                ExpConfigWrite(perm, pos, count, offset, val);
                break;
            case ConfigWriteFn.Af:
                AfConfigWrite(perm, pos, count, offset, val);
                break;
            case ConfigWriteFn.Msi:
                MsiConfigWrite(perm, pos, count, offset, val);
                break;
        }
    }

    // ---- The generic handlers.

    private uint VconfigRead(int pos, int count)
    {
        _vconfigLock.Lock();
        try
        {
            return VconfigReadLocked(pos, count);
        }
        finally
        {
            _vconfigLock.Unlock();
        }
    }

    private uint VconfigReadLocked(int pos, int count)
    {
        _vconfigLock.AssertHeld();
        return _vconfig is { } v ? ReadLe(v.AsSpan(pos, count)) : 0;
    }

    private void VconfigWrite(int pos, int count, uint val)
    {
        _vconfigLock.Lock();
        try
        {
            VconfigWriteLocked(pos, count, val);
        }
        finally
        {
            _vconfigLock.Unlock();
        }
    }

    private void VconfigWriteLocked(int pos, int count, uint val)
    {
        _vconfigLock.AssertHeld();
        if (_vconfig is { } v)
        {
            WriteLe(v.AsSpan(pos, count), val);
        }
    }

    /// <summary>vfio_default_config_read(): vconfig for the virtual bits, the hardware for the rest.</summary>
    private uint DefaultConfigRead(PermBits perm, int pos, int count, int offset)
    {
        uint val = VconfigRead(pos, count);
        uint virt = perm.VirtBits(offset, count);
        uint all = count == 4 ? 0xffffffff : (1u << (8 * count)) - 1;
        if (virt != all)
        {
            uint phys = Pdev.ReadConfig(pos, count);
            val = (phys & ~virt) | (val & virt);
        }

        return val;
    }

    /// <summary>
    /// vfio_default_config_write(): nothing writable drops the write; writable virtual bits go
    /// to vconfig, writable hardware bits are read-modify-written to the hardware.
    /// </summary>
    private void DefaultConfigWrite(PermBits perm, int pos, int count, int offset, uint val)
    {
        uint write = perm.WriteBits(offset, count);
        if (write == 0)
        {
            return;
        }

        uint virt = perm.VirtBits(offset, count);
        if ((write & virt) != 0)
        {
            _vconfigLock.Lock();
            try
            {
                uint v = VconfigReadLocked(pos, count);
                VconfigWriteLocked(pos, count, (v & ~(write & virt)) | (val & write & virt));
            }
            finally
            {
                _vconfigLock.Unlock();
            }
        }

        if ((write & ~virt) != 0)
        {
            uint phys = Pdev.ReadConfig(pos, count);
            phys = (phys & ~(write & ~virt)) | (val & write & ~virt);
            Pdev.WriteConfig(pos, phys, count);
        }
    }

    /// <summary>
    /// vfio_direct_config_read(): the hardware, except that an extended capability's header
    /// dword and a standard capability's id and next bytes come from vconfig (where hidden
    /// capabilities were unlinked).
    /// </summary>
    private uint DirectConfigRead(int pos, int count, int offset)
    {
        uint val = Pdev.ReadConfig(pos, count);
        if (pos >= PciRegs.StdConfigSpaceSize)
        {
            if (offset < 4)
            {
                val = VconfigRead(pos, count);
            }
        }
        else if (pos >= PciCapRegs.StdHeaderSizeof)
        {
            if (offset == PciCapRegs.CapListId && count > 1)
            {
                uint idNext = VconfigRead(pos, 2);
                val = (val & 0xffff0000) | idNext;
            }
            else if (offset == PciCapRegs.CapListNext)
            {
                val = (val & ~0xffu) | VconfigRead(pos, 1);
            }
        }

        return val;
    }

    // ---- The header: vfio_basic_config_read / vfio_basic_config_write.

    private static bool IsBar(int offset)
        => (offset >= PciRegs.BaseAddress0 && offset < PciRegs.BaseAddress0 + 24) || (offset >= PciRegs.RomAddress && offset < PciRegs.RomAddress + 4);

    /// <summary>vfio_basic_config_read(): a BAR read first masks the virtual BARs by their sizes (BAR sizing).</summary>
    private uint BasicConfigRead(PermBits perm, int pos, int count, int offset)
    {
        if (IsBar(offset))
        {
            _vconfigLock.Lock();
            try
            {
                BarFixupLocked();
            }
            finally
            {
                _vconfigLock.Unlock();
            }
        }

        uint val = DefaultConfigRead(perm, pos, count, offset);

        // no_command_memory: COMMAND.MEM is the virtual one (the hardware's is always 0).
        if (offset == PciRegs.Command && Pdev.NoCommandMemory)
        {
            val |= VirtualCommand() & (uint)PciRegs.CommandMemory;
        }

        return val;
    }

    /// <summary>
    /// vfio_bar_fixup(): each virtual BAR keeps only the bits its size allows, with the type
    /// bits of its resource; a 64-bit BAR's upper half is masked by the size's upper bits;
    /// BARs the host did not assign read 0; the ROM BAR keeps its enable bit.
    /// </summary>
    private void BarFixupLocked()
    {
        _vconfigLock.AssertHeld();
        if (!_barDirty || _vconfig is not { } v)
        {
            return;
        }

        for (int i = 0; i < 6; i++)
        {
            Span<byte> vbar = v.AsSpan(PciRegs.BaseAddress0 + (4 * i), 4);
            if (Pdev.ResourceStart(i) == 0 || Pdev.Bars[i] is not { } bar)
            {
                vbar.Clear();
                continue;
            }

            ulong mask = ~(ulong)(Pdev.ResourceLength(i) - 1);
            uint value = (BinaryPrimitives.ReadUInt32LittleEndian(vbar) & (uint)mask) | bar.FlagBits;
            BinaryPrimitives.WriteUInt32LittleEndian(vbar, value);
            if ((value & PciRegs.BarMemType64) != 0 && i < 5)
            {
                i++;
                Span<byte> upper = v.AsSpan(PciRegs.BaseAddress0 + (4 * i), 4);
                BinaryPrimitives.WriteUInt32LittleEndian(upper, BinaryPrimitives.ReadUInt32LittleEndian(upper) & (uint)(mask >> 32));
            }
        }

        Span<byte> rom = v.AsSpan(PciRegs.RomAddress, 4);
        if (Pdev.ResourceStart(PciDevice.RomBarIndex) != 0)
        {
            uint mask = ~(uint)(Pdev.ResourceLength(PciDevice.RomBarIndex) - 1) | PciRegs.RomEnable;
            BinaryPrimitives.WriteUInt32LittleEndian(rom, BinaryPrimitives.ReadUInt32LittleEndian(rom) & mask);
        }
        else
        {
            rom.Clear();
        }

        _barDirty = false;
    }

    /// <summary>vfio_need_bar_restore(): a saved BAR the hardware no longer holds.</summary>
    private bool NeedBarRestore()
    {
        for (int i = 0; i < 6; i++)
        {
            if (_rbar[i] != 0 && Pdev.ReadConfig(PciRegs.BaseAddress0 + (4 * i), 4) != _rbar[i])
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>vfio_bar_restore(): after a reset vfio did not see, the saved BARs and ROM BAR go back; nointx keeps DisINTx set.</summary>
    private void BarRestore()
    {
        // A VF's BARs have no registers: they follow the PF's SR-IOV capability.
        if (Pdev.IsVirtfn)
        {
            return;
        }

        Core.Kernel.Log.Info($"{VfioPciDriver.DriverName} {Pname}: vfio_bar_restore: reset recovery - restoring BARs");
        for (int i = 0; i < 6; i++)
        {
            Pdev.WriteConfig(PciRegs.BaseAddress0 + (4 * i), _rbar[i], 4);
        }

        Pdev.WriteConfig(PciRegs.RomAddress, _rbar[6], 4);
        if (NoIntx)
        {
            Pdev.WriteConfig(PciRegs.Command, Pdev.ReadConfig(PciRegs.Command, 2) | PciRegs.CommandIntxDisable, 2);
        }
    }

    /// <summary>
    /// vfio_basic_config_write(). A piece starting at COMMAND holds memory_lock for write
    /// (zapping the BAR mappings first when the new value has memory decode off), restores the
    /// BARs when the user enables decode that vfio saw on but the hardware has off (or the
    /// BARs moved), writes, and mirrors MEM/IO into vconfig. Then the virtual INTX_DISABLE
    /// masks or unmasks INTx, and a BAR write marks the BARs for fixup.
    /// </summary>
    private void BasicConfigWrite(PermBits perm, int pos, int count, int offset, uint val)
    {
        ushort newCmd = 0;
        if (offset == PciRegs.Command)
        {
            ushort phys = (ushort)Pdev.ReadConfig(PciRegs.Command, 2);
            ushort virtCmd = VirtualCommand();
            newCmd = (ushort)val;
            bool newMem = (newCmd & PciRegs.CommandMemory) != 0, newIo = (newCmd & PciRegs.CommandIo) != 0;
            if (!newMem)
            {
                ZapAndDownWriteMemoryLock();
            }
            else
            {
                MemoryLock.DownWrite();
            }

            // A VF's MEM bit is always 0 in hardware: that is no sign of a reset.
            if ((newMem && (virtCmd & PciRegs.CommandMemory) != 0 && (phys & PciRegs.CommandMemory) == 0 && !Pdev.NoCommandMemory)
                || (newIo && (virtCmd & PciRegs.CommandIo) != 0 && (phys & PciRegs.CommandIo) == 0)
                || NeedBarRestore())
            {
                BarRestore();
            }
        }

        try
        {
            DefaultConfigWrite(perm, pos, count, offset, val);
            if (offset == PciRegs.Command)
            {
                // Mirror the decode enables so the next write can tell a backdoor reset.
                const ushort mirrored = PciRegs.CommandMemory | PciRegs.CommandIo;
                _vconfigLock.Lock();
                try
                {
                    uint vcmd = VconfigReadLocked(PciRegs.Command, 2);
                    VconfigWriteLocked(PciRegs.Command, 2, (vcmd & ~(uint)mirrored) | (newCmd & (uint)mirrored));
                }
                finally
                {
                    _vconfigLock.Unlock();
                }
            }
        }
        finally
        {
            if (offset == PciRegs.Command)
            {
                MemoryLock.UpWrite();
            }
        }

        if (offset is PciRegs.Command or PciRegs.Command + 1)
        {
            EmulateIntxDisable();
        }

        if (IsBar(offset))
        {
            _vconfigLock.Lock();
            _barDirty = true;
            _vconfigLock.Unlock();
        }
    }

    private static uint ReadLe(ReadOnlySpan<byte> b) => b.Length switch
    {
        4 => BinaryPrimitives.ReadUInt32LittleEndian(b),
        2 => BinaryPrimitives.ReadUInt16LittleEndian(b),
        _ => b[0],
    };

    private static void WriteLe(Span<byte> b, uint v)
    {
        for (int i = 0; i < b.Length; i++)
        {
            b[i] = (byte)(v >> (8 * i));
        }
    }
}
