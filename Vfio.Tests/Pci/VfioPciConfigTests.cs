// Tests Vfio.Pci/VfioPciCoreDevice.Config.cs (drivers/vfio/pci/vfio_pci_config.c): one case
// per permission-table row — the rows written down here from the kernel's tables, not taken
// from the implementation — each writing all-ones and all-zeros through the device fd and
// checking what the user reads and what the hardware holds.

using System.Buffers.Binary;
using NUnit.Framework;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Machine;
using Vfio.Platform.Pci;
using Vfio.Sim;

namespace Vfio.Tests.Pci;

[TestFixture]
public sealed partial class VfioPciConfigTests
{
    internal const string Bdf = "0000:01:00.0";

    /// <summary>A function with every capability vfio-pci has a table for (conventional ones too: vfio does not care).</summary>
    internal const string AllCapsJson = """
        {"memory":{"ram":"1G"},"iommu":{"pgsizes":["4K"],"addressWidth":48},"pci":[{"slot":1,"type":"root-port","acs":true,"children":[
          {"slot":0,"type":"generic","vendor":"0x1b36","device":"0x0002","class":"0xff0000","resets":["flr"],
           "bars":[{"index":0,"size":"4K"},{"index":2,"size":"64K","type":"mem64"}],
           "msi":4,"msix":{"vectors":4,"tableBar":0,"tableOffset":"0x800","pbaBar":0,"pbaOffset":"0xc00"},
           "capabilities":[
             {"type":"vpd"},
             {"type":"vendor","text":"abcde"},
             {"type":"pcix"},
             {"type":"af","flr":true},
             {"type":"aer"},
             {"type":"power-budget"},
             {"type":"vendor-ext","id":"0x42","payload":"01 02 03 04"},
             {"type":"dvsec","id":"0x7","payload":"0a 0b 0c 0d 0e 0f"}
           ]}]}]}
        """;

    /// <summary>One register of a kernel permission table.</summary>
    /// <param name="Name">What the case is called.</param>
    /// <param name="Cap">Standard id (0 = the header), or the extended id when <paramref name="Ext"/>.</param>
    /// <param name="Ext">An extended capability.</param>
    /// <param name="Offset">Offset in the capability.</param>
    /// <param name="Size">1, 2 or 4.</param>
    /// <param name="Virt">Virtual bits.</param>
    /// <param name="Write">Bits the user may write.</param>
    /// <param name="Raw">The table writes raw (vendor-specific): the whole value goes to the hardware.</param>
    /// <param name="UserIgnore">Bits a handler changes on its own (checked by their own tests).</param>
    /// <param name="HwIgnore">Hardware bits a handler changes on its own.</param>
    /// <param name="ReadsZero">Virtual bits that always read 0 after the write (Initiate FLR).</param>
    public sealed record Row(string Name, int Cap, bool Ext, int Offset, int Size, uint Virt, uint Write, bool Raw = false, uint UserIgnore = 0, uint HwIgnore = 0, uint ReadsZero = 0)
    {
        public override string ToString() => Name;
    }

    private const uint All = 0xffffffff;

    // The rows, from init_pci_cap_*_perm / init_pci_ext_cap_*_perm of vfio_pci_config.c (v6.12).
    private static readonly Row[] s_rows =
    [
        // init_pci_cap_basic_perm (the BARs have their own sizing tests).
        new("header VENDOR_ID", 0, false, 0x00, 2, 0xffff, 0),
        new("header DEVICE_ID", 0, false, 0x02, 2, 0xffff, 0),
        // With INTx not in use the physical DisINTx follows the virtual one (__vfio_pci_intx_mask).
        new("header COMMAND", 0, false, 0x04, 2, 0x0400, 0xffff, HwIgnore: 0x0400),
        new("header STATUS", 0, false, 0x06, 2, 0x0010, 0),
        new("header CLASS_REVISION", 0, false, 0x08, 4, 0, 0),
        new("header CACHE_LINE_SIZE", 0, false, 0x0c, 1, 0, 0xff),
        new("header LATENCY_TIMER", 0, false, 0x0d, 1, 0, 0xff),
        new("header HEADER_TYPE", 0, false, 0x0e, 1, 0, 0),
        new("header BIST", 0, false, 0x0f, 1, 0, 0xff),
        new("header CARDBUS_CIS", 0, false, 0x28, 4, 0, 0),
        new("header SUBSYSTEM", 0, false, 0x2c, 4, 0, 0),
        new("header CAPABILITY_LIST", 0, false, 0x34, 1, 0xff, 0),
        new("header INTERRUPT_LINE", 0, false, 0x3c, 1, 0xff, 0xff),
        new("header INTERRUPT_PIN", 0, false, 0x3d, 1, 0xff, 0),
        new("header MIN_GNT_MAX_LAT", 0, false, 0x3e, 2, 0, 0),

        // init_pci_cap_pm_perm: the state bits ask vfio for a power change (own tests).
        new("PM id/next", PciCapRegs.IdPm, false, 0, 2, 0xff00, 0),
        new("PM PMC", PciCapRegs.IdPm, false, 2, 2, 0xf800, 0),
        new("PM PMCSR", PciCapRegs.IdPm, false, 4, 4, 0x8100, ~0x8103u, HwIgnore: 0x3),

        // init_pci_cap_vpd_perm: the address write runs a VPD transfer (own tests).
        new("VPD id/next", PciCapRegs.IdVpd, false, 0, 2, 0xff00, 0),
        new("VPD ADDR", PciCapRegs.IdVpd, false, 2, 2, 0xffff, 0xffff, UserIgnore: 0x8000, HwIgnore: 0xffff), // vfio's pci_read_vpd/pci_write_vpd drive the hardware's address register
        new("VPD DATA", PciCapRegs.IdVpd, false, 4, 4, All, All),

        // init_pci_cap_pcix_perm.
        new("PCI-X id/next", PciCapRegs.IdPcix, false, 0, 2, 0xff00, 0),
        new("PCI-X CMD", PciCapRegs.IdPcix, false, 2, 2, 0, 0xffff),
        new("PCI-X STATUS", PciCapRegs.IdPcix, false, 4, 4, 0, 0),
        new("PCI-X ECC_CSR", PciCapRegs.IdPcix, false, 8, 4, 0, All),

        // init_pci_cap_exp_perm: FLR and MRRS have own tests.
        new("PCIe id/next", PciCapRegs.IdExp, false, 0, 2, 0xff00, 0),
        new("PCIe FLAGS", PciCapRegs.IdExp, false, 2, 2, 0, 0),
        new("PCIe DEVCAP", PciCapRegs.IdExp, false, 4, 4, 0, 0),
        new("PCIe DEVCTL", PciCapRegs.IdExp, false, 8, 2, 0x8000 | 0x00e0 | 0x7000, 0xfdff, HwIgnore: 0x7000, ReadsZero: 0x8000),
        new("PCIe DEVSTA", PciCapRegs.IdExp, false, 0x0a, 2, 0, 0),
        new("PCIe LNKCAP", PciCapRegs.IdExp, false, 0x0c, 4, 0, 0),
        new("PCIe LNKCTL", PciCapRegs.IdExp, false, 0x10, 2, 0, 0),
        new("PCIe SLTCTL", PciCapRegs.IdExp, false, 0x18, 2, 0, 0),
        new("PCIe RTCTL", PciCapRegs.IdExp, false, 0x1c, 2, 0, 0),
        new("PCIe DEVCAP2", PciCapRegs.IdExp, false, 0x24, 4, 0, 0),
        new("PCIe DEVCTL2", PciCapRegs.IdExp, false, 0x28, 2, 0, 0xffdf),
        new("PCIe LNKCTL2", PciCapRegs.IdExp, false, 0x30, 2, 0, 0),

        // MSI-X has no table of its own: read-only, next virtual.
        new("MSI-X id/next", PciCapRegs.IdMsix, false, 0, 2, 0xff00, 0),
        new("MSI-X FLAGS", PciCapRegs.IdMsix, false, 2, 2, 0, 0),
        new("MSI-X TABLE", PciCapRegs.IdMsix, false, 4, 4, 0, 0),
        new("MSI-X PBA", PciCapRegs.IdMsix, false, 8, 4, 0, 0),

        // init_pci_cap_msi_perm for a 64-bit, per-vector-masking function (flags have own tests).
        new("MSI id/next", PciCapRegs.IdMsi, false, 0, 2, 0xff00, 0),
        new("MSI FLAGS", PciCapRegs.IdMsi, false, 2, 2, 0x00ff, 0x00ff, UserIgnore: 0x71, HwIgnore: 0xffff),
        new("MSI ADDRESS_LO", PciCapRegs.IdMsi, false, 4, 4, All, All),
        new("MSI ADDRESS_HI", PciCapRegs.IdMsi, false, 8, 4, All, All),
        new("MSI DATA_64", PciCapRegs.IdMsi, false, 12, 2, 0xffff, 0xffff),
        new("MSI reserved", PciCapRegs.IdMsi, false, 14, 2, 0, 0),
        new("MSI MASK_64", PciCapRegs.IdMsi, false, 16, 4, 0, All),
        new("MSI PENDING_64", PciCapRegs.IdMsi, false, 20, 4, 0, All),

        // init_pci_cap_af_perm.
        new("AF id/next", PciCapRegs.IdAf, false, 0, 2, 0xff00, 0),
        new("AF LENGTH/CAP", PciCapRegs.IdAf, false, 2, 2, 0, 0),
        new("AF CTRL", PciCapRegs.IdAf, false, 4, 1, 0x01, 0x01, ReadsZero: 0x01),
        new("AF STATUS", PciCapRegs.IdAf, false, 5, 1, 0, 0),

        // cap_perms[PCI_CAP_ID_VNDR].writefn = raw.
        new("vendor id/next", PciCapRegs.IdVndr, false, 0, 2, 0xff00, 0xffff, Raw: true),
        new("vendor payload", PciCapRegs.IdVndr, false, 4, 4, 0, All, Raw: true),

        // init_pci_ext_cap_err_perm.
        new("AER header", PciCapRegs.ExtIdErr, true, 0, 4, All, 0),
        new("AER UNCOR_STATUS", PciCapRegs.ExtIdErr, true, 4, 4, 0, PciCapRegs.ErrUncWritable),
        new("AER UNCOR_MASK", PciCapRegs.ExtIdErr, true, 8, 4, 0, PciCapRegs.ErrUncWritable),
        new("AER UNCOR_SEVER", PciCapRegs.ExtIdErr, true, 0x0c, 4, 0, PciCapRegs.ErrUncWritable),
        new("AER COR_STATUS", PciCapRegs.ExtIdErr, true, 0x10, 4, 0, PciCapRegs.ErrCorWritable),
        new("AER COR_MASK", PciCapRegs.ExtIdErr, true, 0x14, 4, 0, PciCapRegs.ErrCorWritable),
        new("AER CAP", PciCapRegs.ExtIdErr, true, 0x18, 4, 0, 0x40 | 0x100),
        new("AER HEADER_LOG", PciCapRegs.ExtIdErr, true, 0x1c, 4, 0, 0),

        // init_pci_ext_cap_pwr_perm: the writable byte is PCI_PWR_DATA (0x08), as the kernel has it.
        new("power budget header", PciCapRegs.ExtIdPwr, true, 0, 4, All, 0),
        new("power budget DSR", PciCapRegs.ExtIdPwr, true, 4, 1, 0, 0),
        new("power budget DATA", PciCapRegs.ExtIdPwr, true, 8, 1, 0, 0xff),
        new("power budget CAP", PciCapRegs.ExtIdPwr, true, 0x0c, 4, 0, 0),

        // ecap_perms[VNDR] and [DVSEC] (v6.4+) write raw; the header dword reads virtual.
        new("vendor-ext header", PciCapRegs.ExtIdVndr, true, 0, 4, All, All, Raw: true),
        new("vendor-ext payload", PciCapRegs.ExtIdVndr, true, 8, 4, 0, All, Raw: true),
        new("DVSEC payload", PciCapRegs.ExtIdDvsec, true, 0x0c, 4, 0, All, Raw: true),
    ];

    private static IEnumerable<Row> Rows() => s_rows;

    [TestCaseSource(nameof(Rows))]
    public void PermissionRow_AllOnesThenAllZeros_ChangeOnlyWhatTheKernelTableAllows(Row row)
    {
        using var rig = new CfgRig(AllCapsJson);
        rig.Run(() =>
        {
            int abs = rig.CapOffset(row.Cap, row.Ext) + row.Offset;
            foreach (uint value in new[] { 0xffffffffu, 0u })
            {
                uint mask = row.Size == 4 ? All : (1u << (8 * row.Size)) - 1;
                uint v = value & mask;
                uint userBefore = rig.Read(abs, row.Size);
                uint hwBefore = rig.Pdev.ReadConfig(abs, row.Size);
                byte[] vconfigBefore = rig.Vconfig();

                // What the hardware itself makes of the write vfio should pass it.
                var scratch = new PciConfigSpace(rig.Pdev.ConfigSize);
                scratch.Restore(rig.Pdev.Config.Snapshot());
                uint toHw = row.Raw ? v : (hwBefore & ~(row.Write & ~row.Virt)) | (v & row.Write & ~row.Virt);
                if (row.Raw || (row.Write & ~row.Virt) != 0)
                {
                    scratch.Write(abs, toHw, row.Size);
                }

                uint hwWant = scratch.Read(abs, row.Size);

                Assert.That(rig.Write(abs, row.Size, v), Is.EqualTo(row.Size), $"{row}: the write succeeds even where bits are dropped");
                uint hwAfter = rig.Pdev.ReadConfig(abs, row.Size);
                Assert.That(hwAfter & ~row.HwIgnore, Is.EqualTo(hwWant & ~row.HwIgnore), $"{row} <- 0x{v:x}: hardware");

                uint virt = row.Raw ? row.Virt & (row.Ext ? All : 0xff00) : row.Virt;
                uint userWant = (hwAfter & ~virt) | (v & virt & row.Write & ~row.ReadsZero) | (userBefore & virt & ~row.Write);
                if (row.Raw)
                {
                    // A raw write is not virtual: the next pointer (ext: header) still reads vconfig.
                    userWant = (hwAfter & ~virt) | (userBefore & virt);
                }

                uint userAfter = rig.Read(abs, row.Size);
                Assert.That(userAfter & ~row.UserIgnore, Is.EqualTo(userWant & ~row.UserIgnore), $"{row} <- 0x{v:x}: the user's view");

                if (row.Write == 0)
                {
                    Assert.That(rig.Vconfig(), Is.EqualTo(vconfigBefore), $"{row}: a dropped write leaves vconfig as it was");
                    Assert.That(hwAfter, Is.EqualTo(hwBefore), $"{row}: a dropped write leaves the hardware as it was");
                }
            }
        });
    }

    [Test]
    public void EveryCapabilityWithATable_IsInTheRowList()
    {
        // The rows cover each table the kernel builds (vfio_pci_init_perm_bits plus MSI).
        int[] std = [0, PciCapRegs.IdPm, PciCapRegs.IdVpd, PciCapRegs.IdPcix, PciCapRegs.IdExp, PciCapRegs.IdAf, PciCapRegs.IdMsi, PciCapRegs.IdVndr];
        int[] ext = [PciCapRegs.ExtIdErr, PciCapRegs.ExtIdPwr, PciCapRegs.ExtIdVndr, PciCapRegs.ExtIdDvsec];
        Assert.That(std.All(c => s_rows.Any(r => !r.Ext && r.Cap == c)), Is.True);
        Assert.That(ext.All(c => s_rows.Any(r => r.Ext && r.Cap == c)), Is.True);
    }
}

/// <summary>A host on a machine description with the one function <see cref="VfioPciConfigTests.Bdf"/> open through vfio-pci.</summary>
internal sealed class CfgRig : IDisposable
{
    private readonly VfioPciRig _rig;
    private readonly string _bdf;
    private (int Container, int Group, int Device) _fds;

    public CfgRig(string json, KernelProfile? profile = null, string bdf = VfioPciConfigTests.Bdf)
    {
        VfioSimBuilder b = VfioPciRig.Builder(SchedulerMode.Controlled).UseMachine(MachineDescriptionReader.Parse(json));
        if (profile is not null)
        {
            b = b.UseProfile(profile);
        }

        _rig = new VfioPciRig(b.AddVfioPci().Build());
        _bdf = bdf;
    }

    public VfioPciRig Rig => _rig;

    public PciDevice Pdev => _rig.Dev(_bdf);

    public int Fd => _fds.Device;

    /// <summary>Opens the device, runs <paramref name="body"/> as the machine's main task, closes.</summary>
    public void Run(Action body)
        => Runs.AssertPassed(_rig.Sim.Run(() =>
        {
            _fds = _rig.Open(_bdf);
            body();
            _rig.CloseAll(_fds);
        }));

    /// <summary>The hardware offset of standard capability <paramref name="id"/> (0: the header) or extended <paramref name="id"/>.</summary>
    public int CapOffset(int id, bool ext)
    {
        int off = ext ? Pdev.Config.FindExtCapability((ushort)id) : id == 0 ? 0 : Pdev.Config.FindCapability((byte)id);
        Assert.That(off != 0 || (!ext && id == 0), $"the test function has capability 0x{id:x}");
        return off;
    }

    public long ReadRaw(long offset, Span<byte> into) => _rig.P.Pread(Fd, into, VfioPciIndex.IndexToOffset(VfioPciIndex.Config) + offset);

    public long WriteRaw(long offset, ReadOnlySpan<byte> data) => _rig.P.Pwrite(Fd, data, VfioPciIndex.IndexToOffset(VfioPciIndex.Config) + offset);

    /// <summary>A <paramref name="size"/>-byte read of config space through the device fd.</summary>
    public uint Read(int offset, int size)
    {
        Span<byte> b = stackalloc byte[4];
        Assert.That(ReadRaw(offset, b[..size]), Is.EqualTo(size), ErrorReason.Current);
        return size switch
        {
            1 => b[0],
            2 => BinaryPrimitives.ReadUInt16LittleEndian(b),
            _ => BinaryPrimitives.ReadUInt32LittleEndian(b),
        };
    }

    /// <summary>A <paramref name="size"/>-byte write of config space through the device fd; its return value.</summary>
    public long Write(int offset, int size, uint value)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, value);
        return WriteRaw(offset, b[..size]);
    }

    public byte[] Vconfig() => _rig.Vdev(_bdf).VconfigSnapshot() ?? throw new AssertionException("the device is closed");

    public void Dispose()
    {
    }
}
