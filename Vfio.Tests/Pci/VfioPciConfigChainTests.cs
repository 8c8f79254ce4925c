// Tests Vfio.Pci/VfioPciCoreDevice.Config.cs and ConfigCaps.cs beyond the permission rows:
// hidden capabilities and the user's chain, raw bytes between capabilities, how accesses are
// cut into pieces, the FLR and VPD handlers, BAR sizing, per-profile differences, and the
// ported peer cases (ids in the names). Where a peer case comes from libvfio-user, whose
// server answers EPERM/EINVAL, the test checks what the kernel does and says so.

using NUnit.Framework;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Pci;
using Vfio.Platform;
using Vfio.Platform.Devices;
using Vfio.Platform.Machine;
using Vfio.Platform.Pci;

namespace Vfio.Tests.Pci;

[TestFixture]
public sealed class VfioPciConfigChainTests
{
    private const string P2p = "0000:07:00.0";

    private static IEnumerable<KernelProfile> Profiles() => [KernelProfile.Linux6_12, KernelProfile.Linux6_1];

    /// <summary>The user's standard chain: (id, offset) pairs from 0x34, as a guest driver walks it.</summary>
    private static List<(int Id, int At)> StdChain(CfgRig r)
    {
        var list = new List<(int, int)>();
        if ((r.Read(PciRegs.Status, 2) & PciRegs.StatusCapList) == 0)
        {
            return list;
        }

        for (int pos = (int)r.Read(PciRegs.CapabilityList, 1), ttl = 48; pos != 0 && ttl > 0; ttl--)
        {
            list.Add(((int)r.Read(pos, 1), pos));
            pos = (int)r.Read(pos + 1, 1);
        }

        return list;
    }

    /// <summary>The user's extended chain from 0x100: (id, version, offset).</summary>
    private static List<(int Id, int Version, int At)> ExtChain(CfgRig r)
    {
        var list = new List<(int, int, int)>();
        for (int pos = 0x100, ttl = 960; pos != 0 && ttl > 0; ttl--)
        {
            uint h = r.Read(pos, 4);
            if (h == 0)
            {
                break;
            }

            list.Add(((int)(h & 0xffff), (int)((h >> 16) & 0xf), pos));
            pos = (int)(h >> 20) & 0xffc;
        }

        return list;
    }

    private static CfgRig DefaultMachine(KernelProfile? profile = null)
        => new(File.ReadAllText(Path.Combine(Repository.Root, "Vfio.Platform", "Machine", "default-machine.json")), profile, P2p);

    // ---- Hidden capabilities.

    [Test]
    public void P2pTarget_UsersChainWalk_ShowsPmPcieVpdVendor_AndNeverSsvid()
    {
        using CfgRig r = DefaultMachine();
        r.Run(() =>
        {
            List<(int Id, int At)> chain = StdChain(r);
            Assert.That(chain.Select(c => c.Id), Is.EqualTo(new[] { PciCapRegs.IdPm, PciCapRegs.IdExp, PciCapRegs.IdVpd, PciCapRegs.IdVndr }));
            int ssvid = r.Pdev.Config.FindCapability(PciCapRegs.IdSsvid);
            Assert.That(ssvid, Is.Not.Zero, "the hardware has SSVID");
            int vendor = chain[^1].At;
            Assert.That(r.Pdev.ReadConfig(vendor + 1, 1), Is.EqualTo((uint)ssvid), "the hardware's vendor cap points at SSVID");
            Assert.That(r.Read(vendor + 1, 1), Is.Zero, "the user's points past it: SSVID was the last");
            Assert.That(r.Read(ssvid, 4), Is.EqualTo(r.Pdev.ReadConfig(ssvid, 4)), "a hidden capability's bytes are raw, unassigned space");
        });
    }

    [Test]
    public void P2pTarget_HiddenPasidAt0x100_BecomesAPlaceholderWhoseNextLeadsToAerAndTheVendorCap()
    {
        using CfgRig r = DefaultMachine();
        r.Run(() =>
        {
            Assert.That(r.Pdev.ReadConfig(0x100, 4) & 0xffff, Is.EqualTo((uint)PciCapRegs.ExtIdPasid), "the hardware starts with PASID");
            List<(int Id, int Version, int At)> chain = ExtChain(r);
            Assert.That(chain.Select(c => (c.Id, c.Version)), Is.EqualTo(new[] { (0, 0), (PciCapRegs.ExtIdErr, 2), (PciCapRegs.ExtIdVndr, 1) }));
            Assert.That(chain.Select(c => c.At), Is.EqualTo(new[] { 0x100, r.Pdev.Config.FindExtCapability(PciCapRegs.ExtIdErr), r.Pdev.Config.FindExtCapability(PciCapRegs.ExtIdVndr) }));
            Assert.That(r.Write(0x100, 4, 0xffffffff), Is.EqualTo(4), "a write to the placeholder succeeds");
            Assert.That(r.Read(0x100, 4) & 0xffff, Is.Zero, "and changes nothing");
            Assert.That(r.Pdev.ReadConfig(0x100, 4) & 0xffff, Is.EqualTo((uint)PciCapRegs.ExtIdPasid));
        });
    }

    private const string OnlyHiddenExtJson = """
        {"memory":{"ram":"1G"},"iommu":{"pgsizes":["4K"],"addressWidth":48},"pci":[{"slot":1,"type":"root-port","acs":true,"children":[
          {"slot":0,"type":"generic","bars":[{"index":0,"size":"4K"}],
           "capabilities":[{"type":"raw-ext","id":"0x1b","size":8},{"type":"raw-ext","id":"0x05","size":8}]}]}]}
        """;

    [Test]
    public void NoExtendedCapabilitySurvives_Dword0x100ReadsZero()
    {
        using var r = new CfgRig(OnlyHiddenExtJson);
        r.Run(() =>
        {
            Assert.That(r.Pdev.ReadConfig(0x100, 4), Is.Not.Zero, "the hardware has PASID and RCLD");
            Assert.That(r.Read(0x100, 4), Is.Zero);
        });
    }

    private const string UnknownFirstExtJson = """
        {"memory":{"ram":"1G"},"iommu":{"pgsizes":["4K"],"addressWidth":48},"pci":[{"slot":1,"type":"root-port","acs":true,"children":[
          {"slot":0,"type":"generic","bars":[{"index":0,"size":"4K"}],
           "capabilities":[{"type":"raw-ext","id":"0x40","size":8},{"type":"aer"}]}]}]}
        """;

    [Test]
    public void AnUnknownExtendedIdAt0x100_AnchorsTheList_ReadOnly_WithoutAWarning()
    {
        // Id 0x40 is past PCI_EXT_CAP_ID_MAX: the map holds it, and the access uses the
        // direct read-only table (the 6.13 fix, in the 6.1.y and 6.12.y stable series).
        using var r = new CfgRig(UnknownFirstExtJson);
        r.Run(() =>
        {
            List<(int Id, int Version, int At)> chain = ExtChain(r);
            Assert.That(chain.Select(c => c.Id), Is.EqualTo(new[] { 0, PciCapRegs.ExtIdErr }));
            Assert.That(r.Write(0x104, 4, 0xffffffff), Is.EqualTo(4));
            Assert.That(r.Read(0x104, 4), Is.EqualTo(r.Pdev.ReadConfig(0x104, 4)), "the body reads the hardware");
        });
    }

    [Test]
    public void OnlyHiddenStandardCapabilities_StatusCapListReadsClear()
    {
        PciDeviceModels.Register(HiddenOnlyDevice.Model, static (m, a, d) => new HiddenOnlyDevice(m, a, d));
        using var r = new CfgRig("""
            {"memory":{"ram":"1G"},"iommu":{"pgsizes":["4K"],"addressWidth":48},"pci":[{"slot":1,"type":"root-port","acs":true,"children":[
              {"slot":0,"type":"cfg-test-hidden-only"}]}]}
            """);
        r.Run(() =>
        {
            Assert.That(r.Pdev.ReadConfig(PciRegs.Status, 2) & PciRegs.StatusCapList, Is.Not.Zero, "the hardware has a list (SSVID, Debug)");
            Assert.That(r.Read(PciRegs.Status, 2) & PciRegs.StatusCapList, Is.Zero);
            Assert.That(StdChain(r), Is.Empty);
            byte[] before = r.Vconfig();
            Assert.That(r.Write(PciRegs.Status, 2, 0xffff), Is.EqualTo(2));
            Assert.That(r.Vconfig(), Is.EqualTo(before), "STATUS is read-only to the user");
        });
    }

    /// <summary>A function whose only capabilities are ones vfio-pci hides (SSVID, Debug), no PM.</summary>
    private sealed class HiddenOnlyDevice : PciDevice
    {
        public const string Model = "cfg-test-hidden-only";

        public HiddenOnlyDevice(SimMachine machine, PciAddress address, PciFunctionDescription description)
            : base(machine, address, description, new PciIdentity(0x1b36, 0x0003, 0x1b36, 0x1100, 0xff0000))
        {
            AddBar(0, 4096, PciBarKind.Memory32);
            AddRawCapability(PciCapRegs.IdSsvid, new byte[6]);
            AddRawCapability(PciCapRegs.IdDbg, new byte[6]);
        }

        protected override void BarRead(int bar, long offset, Span<byte> data) => data.Clear();

        protected override void BarWrite(int bar, long offset, ReadOnlySpan<byte> data)
        {
        }
    }

    // ---- Raw bytes, pieces, alignment.

    [Test]
    public void BytesBetweenCapabilities_AreRawReadAndWrite()
    {
        // vfio gives AER 0x2c bytes (PCI_ERR_ROOT_COMMAND); this endpoint's AER is 0x38, so
        // 0x2c..0x37 belong to no capability the user sees: raw (be2net hides registers there).
        using var r = new CfgRig(VfioPciConfigTests.AllCapsJson);
        r.Run(() =>
        {
            // The device's registers there (set after open: the reset at open restores power-on values).
            int aer = r.Pdev.Config.FindExtCapability(PciCapRegs.ExtIdErr);
            r.Pdev.Config.SetDword(aer + 0x30, 0x11223344);
            r.Pdev.Config.SetWritableDword(aer + 0x30, 0xffffffff);
            Assert.That(r.Read(aer + 0x30, 4), Is.EqualTo(0x11223344u));
            Assert.That(r.Write(aer + 0x30, 4, 0xcafef00d), Is.EqualTo(4));
            Assert.That(r.Pdev.ReadConfig(aer + 0x30, 4), Is.EqualTo(0xcafef00du), "straight to the hardware");
            Assert.That(r.Read(aer + 0x31, 2), Is.EqualTo(0xfef0u), "at any alignment");
        });
    }

    [Test]
    public void ThePcieSlotRegisters2_PastTheEndpointLength_AreRawReadAndWrite()
    {
        // vfio sizes a v2 endpoint's PCIe capability PCI_CAP_EXP_ENDPOINT_SIZEOF_V2 (0x34):
        // Slot Capabilities/Control/Status 2 (0x34..0x3b) of the 60-byte structure are outside it.
        using var r = new CfgRig(VfioPciConfigTests.AllCapsJson);
        r.Run(() =>
        {
            int exp = r.Pdev.ExpCap;
            r.Pdev.Config.SetWritableDword(exp + 0x38, 0xffffffff);
            Assert.That(r.Write(exp + 0x38, 4, 0x5a5a0001), Is.EqualTo(4));
            Assert.That(r.Pdev.ReadConfig(exp + 0x38, 4), Is.EqualTo(0x5a5a0001u), "straight to the hardware");
            Assert.That(r.Read(exp + 0x38, 4), Is.EqualTo(0x5a5a0001u));
            Assert.That(r.Write(exp + 0x30, 2, 0xffff), Is.EqualTo(2));
            Assert.That(r.Read(exp + 0x30, 2), Is.EqualTo(r.Pdev.ReadConfig(exp + 0x30, 2)), "Link Control 2 is inside: the PCIe table (read-only for the user) applies");
        });
    }

    [Test]
    public void AReadAcrossACapabilityBoundary_IsCutThere_AndEachSideFollowsItsOwnTable()
    {
        using var r = new CfgRig(VfioPciConfigTests.AllCapsJson);
        r.Run(() =>
        {
            int exp = r.Pdev.Config.FindCapability(PciCapRegs.IdExp);
            int pm = r.Pdev.Config.FindCapability(PciCapRegs.IdPm);
            Assert.That(exp, Is.EqualTo(pm + 8), "PM and PCIe abut");

            // PM's PMCSR top half (hardware) and PCIe's id/next (next virtual) in one 4-byte read.
            uint whole = r.Read(exp - 2, 2) | (r.Read(exp, 2) << 16);
            byte[] b = new byte[4];
            Assert.That(r.ReadRaw(exp - 2, b), Is.EqualTo(4));
            Assert.That(BitConverter.ToUInt32(b), Is.EqualTo(whole));

            // An 8-byte unaligned read is the same as its bytes read one by one.
            byte[] eight = new byte[8];
            Assert.That(r.ReadRaw(pm + 3, eight), Is.EqualTo(8));
            for (int i = 0; i < 8; i++)
            {
                Assert.That(eight[i], Is.EqualTo((byte)r.Read(pm + 3 + i, 1)), $"byte {i}");
            }
        });
    }

    [Test]
    public void InsideADword_EveryWidthAtEveryAlignment_ReadsAndWritesTheSameBytes()
    {
        using var r = new CfgRig(VfioPciConfigTests.AllCapsJson);
        r.Run(() =>
        {
            int at = r.Pdev.MsiCap + PciRegs.MsiAddressLo;   // virtual and writable in all 32 bits
            Assert.That(r.Write(at, 4, 0x44332211), Is.EqualTo(4));
            for (int off = 0; off < 4; off++)
            {
                Assert.That(r.Read(at + off, 1), Is.EqualTo((0x44332211u >> (8 * off)) & 0xff), $"byte {off}");
            }

            Assert.That((r.Read(at, 2), r.Read(at + 2, 2)), Is.EqualTo((0x2211u, 0x4433u)));
            byte[] odd = new byte[2];
            Assert.That(r.ReadRaw(at + 1, odd), Is.EqualTo(2), "a 2-byte read at +1 is cut into two bytes");
            Assert.That(BitConverter.ToUInt16(odd), Is.EqualTo(0x3322));

            Assert.That(r.Write(at + 1, 1, 0xaa), Is.EqualTo(1));
            Assert.That(r.Read(at, 4), Is.EqualTo(0x4433aa11u));
            Assert.That(r.WriteRaw(at + 1, new byte[] { 0xbb, 0xcc }), Is.EqualTo(2));
            Assert.That(r.Read(at, 4), Is.EqualTo(0x44ccbb11u));
            Assert.That(r.Write(at + 2, 2, 0x5566), Is.EqualTo(2));
            Assert.That(r.Read(at, 4), Is.EqualTo(0x5566bb11u));
        });
    }

    [Test]
    public void AnAccessReachingPastConfigSpace_IsEfault_AndWritesNothing()
    {
        using var r = new CfgRig(VfioPciConfigTests.AllCapsJson);
        r.Run(() =>
        {
            byte[] before = r.Vconfig();
            Assert.That(r.WriteRaw(0xffe, new byte[4]), Is.EqualTo(Errno.EFAULT.Negative()));
            Assert.That(r.Vconfig(), Is.EqualTo(before));
        });
    }

    // ---- FLR, AF FLR, VPD.

    private static void FillBar2(CfgRig r)
    {
        Assert.That(r.Rig.P.Pwrite(r.Fd, new byte[] { 1, 2, 3, 4 }, VfioPciIndex.IndexToOffset(2)), Is.EqualTo(4));
        Assert.That(((GenericPciDevice)r.Pdev).BarBytesBacked(2), Is.Not.Zero);
    }

    [Test]
    public void BcrFlrWrite_ResetsTheFunction_AndReadsBackZero()
    {
        using CfgRig r = DefaultMachine();
        r.Run(() =>
        {
            int devctl = r.Pdev.ExpCap + PciRegs.ExpDevCtl;
            FillBar2(r);
            long flrs = r.Pdev.ResetCount(PciResetKind.Flr);
            uint ctl = r.Read(devctl, 2);
            Assert.That(r.Write(devctl, 2, ctl | PciRegs.ExpDevCtlBcrFlr), Is.EqualTo(2));
            Assert.That(r.Pdev.ResetCount(PciResetKind.Flr), Is.EqualTo(flrs + 1));
            Assert.That(((GenericPciDevice)r.Pdev).BarBytesBacked(2), Is.Zero, "the device's memory was reset");
            Assert.That(r.Read(devctl, 2) & PciRegs.ExpDevCtlBcrFlr, Is.Zero, "Initiate FLR reads 0");
            Assert.That(r.Rig.Read32(r.Fd, 2, 0), Is.Zero, "the BAR decodes again after the reset's restore");
        });
    }

    [Test]
    public void RS_08_AByteWriteOf0x80AtDevctlPlusOne_AlsoResets()
    {
        // libvfio-user refuses an FLR write at offset ±1 (EINVAL); the kernel cuts the write
        // into pieces and acts on the virtual Initiate FLR bit wherever the piece lands.
        using CfgRig r = DefaultMachine();
        r.Run(() =>
        {
            int devctl = r.Pdev.ExpCap + PciRegs.ExpDevCtl;
            long flrs = r.Pdev.ResetCount(PciResetKind.Flr);
            Assert.That(r.Write(devctl + 1, 1, 0x80), Is.EqualTo(1));
            Assert.That(r.Pdev.ResetCount(PciResetKind.Flr), Is.EqualTo(flrs + 1));
            Assert.That(r.Write(devctl, 4, PciRegs.ExpDevCtlBcrFlr), Is.EqualTo(4), "a 4-byte write over DEVCTL and DEVSTA");
            Assert.That(r.Pdev.ResetCount(PciResetKind.Flr), Is.EqualTo(flrs + 2));
        });
    }

    private const string NoFlrJson = """
        {"memory":{"ram":"1G"},"iommu":{"pgsizes":["4K"],"addressWidth":48},"pci":[{"slot":1,"type":"root-port","acs":true,"children":[
          {"slot":0,"type":"generic","resets":["pm"],"bars":[{"index":0,"size":"4K"},{"index":2,"size":"64K","type":"mem64"}],
           "capabilities":[{"type":"af","flr":false}]}]}]}
        """;

    [Test]
    public void WithoutDevcapFlr_TheFlrBitDoesNothing_AndStillReadsZero()
    {
        using var r = new CfgRig(NoFlrJson);
        r.Run(() =>
        {
            FillBar2(r);
            int devctl = r.Pdev.ExpCap + PciRegs.ExpDevCtl;
            long resets = r.Pdev.ResetCount(PciResetKind.Flr) + r.Pdev.ResetCount(PciResetKind.Pm);
            Assert.That(r.Write(devctl, 2, r.Read(devctl, 2) | PciRegs.ExpDevCtlBcrFlr), Is.EqualTo(2));
            Assert.That(r.Write(r.Pdev.AfCap + PciCapRegs.AfCtrl, 1, PciCapRegs.AfCtrlFlr), Is.EqualTo(1), "AF without its FLR bit");
            Assert.That(r.Pdev.ResetCount(PciResetKind.Flr) + r.Pdev.ResetCount(PciResetKind.Pm), Is.EqualTo(resets));
            Assert.That(((GenericPciDevice)r.Pdev).BarBytesBacked(2), Is.Not.Zero);
            Assert.That(r.Read(devctl, 2) & PciRegs.ExpDevCtlBcrFlr, Is.Zero);
            Assert.That(r.Read(r.Pdev.AfCap + PciCapRegs.AfCtrl, 1), Is.Zero);
        });
    }

    [Test]
    public void AfFlrWrite_WithTpAndFlr_ResetsTheFunction_AndReadsBackZero()
    {
        using var r = new CfgRig(VfioPciConfigTests.AllCapsJson);
        r.Run(() =>
        {
            FillBar2(r);
            long flrs = r.Pdev.ResetCount(PciResetKind.Flr);
            Assert.That(r.Write(r.Pdev.AfCap + PciCapRegs.AfCtrl, 1, PciCapRegs.AfCtrlFlr), Is.EqualTo(1));
            Assert.That(r.Pdev.ResetCount(PciResetKind.Flr), Is.EqualTo(flrs + 1));
            Assert.That(((GenericPciDevice)r.Pdev).BarBytesBacked(2), Is.Zero);
            Assert.That(r.Read(r.Pdev.AfCap + PciCapRegs.AfCtrl, 1), Is.Zero);
        });
    }

    [Test]
    public void Vpd_ReadAndWriteThroughTheVirtualRegisters_FlipTheFFlag()
    {
        using CfgRig r = DefaultMachine();
        r.Run(() =>
        {
            int vpd = r.Pdev.VpdCap;
            int addr = vpd + PciCapRegs.VpdAddr, data = vpd + PciCapRegs.VpdData;

            // Read: address with F clear; vfio runs pci_read_vpd and sets F.
            Assert.That(r.Write(addr, 2, 0), Is.EqualTo(2));
            Assert.That(r.Read(addr, 2), Is.EqualTo((uint)PciCapRegs.VpdAddrF));
            Assert.That(r.Read(data, 4), Is.EqualTo(BitConverter.ToUInt32(r.Pdev.VpdStore[..4])));
            Assert.That(r.Read(data, 1), Is.EqualTo(0x82u), "the identifier-string tag");

            // Write: data, then address with F set; vfio runs pci_write_vpd and clears F.
            const int at = 0x20;
            Assert.That(r.Write(data, 4, 0xdeadbeef), Is.EqualTo(4));
            Assert.That(r.Write(addr, 2, at | PciCapRegs.VpdAddrF), Is.EqualTo(2));
            Assert.That(r.Read(addr, 2), Is.EqualTo((uint)at), "F cleared: done");
            Assert.That(BitConverter.ToUInt32(r.Pdev.VpdStore.Slice(at, 4)), Is.EqualTo(0xdeadbeefu));

            // A write the PCI core refuses (not dword aligned) leaves F set: the user times out.
            Assert.That(r.Write(addr, 2, 0x21 | PciCapRegs.VpdAddrF), Is.EqualTo(2));
            Assert.That(r.Read(addr, 2), Is.EqualTo((uint)(0x21 | PciCapRegs.VpdAddrF)));

            // Read it back through VPD: the round trip.
            Assert.That(r.Write(addr, 2, at), Is.EqualTo(2));
            Assert.That(r.Read(data, 4), Is.EqualTo(0xdeadbeefu));
        });
    }

    // ---- Peer cases.

    [Test]
    public void RC_02_TwoByteReadsAt0And2_AreTheVendorAndDeviceIds()
    {
        using CfgRig r = DefaultMachine();
        r.Run(() =>
        {
            Assert.That(r.Read(0, 2), Is.EqualTo(0x1b36u));
            Assert.That(r.Read(2, 2), Is.EqualTo(0x00f0u));
        });
    }

    private static long[] SizeBars(CfgRig r)
    {
        long[] sizes = new long[6];
        for (int i = 0; i < 6; i++)
        {
            int reg = PciRegs.BaseAddress0 + (4 * i);
            uint saved = r.Read(reg, 4);
            Assert.That(r.Write(reg, 4, 0xffffffff), Is.EqualTo(4));
            uint lo = r.Read(reg, 4);
            Assert.That(r.Write(reg, 4, saved), Is.EqualTo(4));
            Assert.That(r.Read(reg, 4), Is.EqualTo(saved), $"BAR{i} restored");
            if (lo == 0)
            {
                continue;
            }

            ulong mask = lo & ~0xfu;
            if ((lo & PciRegs.BarMemType64) != 0)
            {
                uint savedHi = r.Read(reg + 4, 4);
                Assert.That(r.Write(reg + 4, 4, 0xffffffff), Is.EqualTo(4));
                mask |= (ulong)r.Read(reg + 4, 4) << 32;
                Assert.That(r.Write(reg + 4, 4, savedHi), Is.EqualTo(4));
                sizes[i] = (long)(~mask + 1);
                i++;
            }
            else
            {
                sizes[i] = (long)((~mask + 1) & 0xffffffff);
            }
        }

        return sizes;
    }

    [Test]
    public void RC_13_ThirtyTwoBitBarSizing_DecodesFourEightAndSixteenKiB()
    {
        using var r = new CfgRig("""
            {"memory":{"ram":"1G"},"iommu":{"pgsizes":["4K"],"addressWidth":48},"pci":[{"slot":1,"type":"root-port","acs":true,"children":[
              {"slot":0,"type":"generic","bars":[{"index":1,"size":"4K"},{"index":2,"size":"8K"},{"index":3,"size":"16K"}]}]}]}
            """);
        r.Run(() =>
        {
            uint[] hw = Enumerable.Range(0, 6).Select(i => r.Pdev.ReadConfig(PciRegs.BaseAddress0 + (4 * i), 4)).ToArray();
            Assert.That(SizeBars(r), Is.EqualTo(new long[] { 0, 4096, 8192, 16384, 0, 0 }));
            Assert.That(Enumerable.Range(0, 6).Select(i => r.Pdev.ReadConfig(PciRegs.BaseAddress0 + (4 * i), 4)), Is.EqualTo(hw), "the hardware BARs never moved");
        });
    }

    [Test]
    public void RC_14_SixtyFourBitBarSizing_DecodesBothHalves_AndNoOddSlotIsALowHalf()
    {
        using var r = new CfgRig("""
            {"memory":{"ram":"1G"},"iommu":{"pgsizes":["4K"],"addressWidth":48},"pci":[{"slot":1,"type":"root-port","acs":true,"children":[
              {"slot":0,"type":"generic","bars":[{"index":0,"size":"4G","type":"mem64"},{"index":2,"size":"8G","type":"mem64"},{"index":4,"size":"16G","type":"mem64"}]}]}]}
            """);
        r.Run(() =>
        {
            Assert.That(SizeBars(r), Is.EqualTo(new long[] { 4L << 30, 0, 8L << 30, 0, 16L << 30, 0 }), "upper halves at the odd slots size as 0 on their own");
        });
    }

    [Test]
    public void RC_17_AByteWriteToACapabilityIdSucceeds_AndChangesNothing()
    {
        // libvfio-user answers EPERM; the kernel drops the bits no table makes writable and
        // reports the byte written.
        using CfgRig r = DefaultMachine();
        r.Run(() =>
        {
            int pm = r.Pdev.PmCap;
            byte[] v = r.Vconfig();
            uint hw = r.Pdev.ReadConfig(pm, 4);
            Assert.That(r.Write(pm, 1, 0x42), Is.EqualTo(1));
            Assert.That(r.Read(pm, 1), Is.EqualTo((uint)PciCapRegs.IdPm));
            Assert.That(r.Vconfig(), Is.EqualTo(v));
            Assert.That(r.Pdev.ReadConfig(pm, 4), Is.EqualTo(hw));
        });
    }

    [Test]
    public void RC_17_AVendorCapabilityPayload_IsWrittenRaw_AndARead_OnlyOneKeepsItsBytes()
    {
        // libvfio-user refuses writes to a read-only vendor payload (EPERM); the kernel writes
        // vendor-specific capabilities raw, so the hardware decides: read-only bytes stay.
        using var r = new CfgRig("""
            {"memory":{"ram":"1G"},"iommu":{"pgsizes":["4K"],"addressWidth":48},"pci":[{"slot":1,"type":"root-port","acs":true,"children":[
              {"slot":0,"type":"generic","bars":[{"index":0,"size":"4K"}],
               "capabilities":[{"type":"vendor","text":"abc","writable":false},{"type":"vendor","text":"xyz"}]}]}]}
            """);
        r.Run(() =>
        {
            int ro = r.Pdev.Config.FindCapability(PciCapRegs.IdVndr);
            int rw = (int)r.Pdev.ReadConfig(ro + 1, 1);
            Assert.That(r.Write(ro + 3, 2, 0x5a5a), Is.EqualTo(2));
            Assert.That((r.Read(ro + 3, 1), r.Read(ro + 4, 1), r.Read(ro + 5, 1)), Is.EqualTo(((uint)'a', (uint)'b', (uint)'c')));
            Assert.That(r.Write(rw + 3, 1, 'Q'), Is.EqualTo(1));
            Assert.That(r.Pdev.ReadConfig(rw + 3, 1), Is.EqualTo((uint)'Q'), "raw: straight to the hardware");
            Assert.That(r.Read(rw + 3, 1), Is.EqualTo((uint)'Q'));
        });
    }

    private const string SixteenMsiJson = """
        {"memory":{"ram":"1G"},"iommu":{"pgsizes":["4K"],"addressWidth":48},"pci":[{"slot":1,"type":"root-port","acs":true,"children":[
          {"slot":0,"type":"generic","bars":[{"index":0,"size":"4K"}],"msi":16,
           "msix":{"vectors":1,"tableBar":0,"tableOffset":"0x800","pbaBar":0,"pbaOffset":"0xc00"}}]}]}
        """;

    [Test]
    public void RC_19_MsiFlags_AreVirtual_EnableOnlyWithMsiActive_AndQsizeClampedToTheEnabledVectors()
    {
        // libvfio-user answers EINVAL for 0xffff and for MME > MMC; the kernel takes the write:
        // the low byte is virtual and writable (QMASK included: the user reads what it wrote,
        // since the kernel's msi_qmax update lands on the capability's id word), Enable is
        // cleared unless MSI is active, QSIZE is clamped to msi_qmax, and the flags go to the
        // hardware too. The real 6.1.192 and 6.12.118 agree: edu's flags read 0x8e after a
        // byte write of 0xff, 0 after a write of 0.
        using var r = new CfgRig(SixteenMsiJson);
        r.Run(() =>
        {
            int flags = r.Pdev.MsiCap + PciRegs.MsiFlags;
            Assert.That(r.Read(flags, 2) & PciRegs.MsiFlagsQmask, Is.EqualTo(4u << 1), "MMC 16 as copied at open");
            Assert.That(r.Write(flags, 2, 0xffff), Is.EqualTo(2));
            uint f = r.Read(flags, 2);
            Assert.That(f & 0xff, Is.EqualTo(0x8eu), "64-bit and QMASK as written; no Enable, QSIZE 0 (msi_qmax 0 before SET_IRQS)");
            Assert.That(r.Pdev.ReadConfig(flags, 2) & (PciRegs.MsiFlagsEnable | PciRegs.MsiFlagsQsize), Is.Zero, "the hardware got the same");
            Assert.That(r.Write(flags, 2, 0), Is.EqualTo(2));
            Assert.That(r.Read(flags, 2) & 0xff, Is.Zero, "QMASK too reads what was written");

            int[] efds = Enumerable.Range(0, 16).Select(_ => r.Rig.P.Eventfd(0)).ToArray();
            Assert.That(SetMsi(r, efds), Is.Zero, ErrorReason.Current);
            Assert.That(r.Write(flags, 1, (uint)(PciRegs.MsiFlagsEnable | (5 << 4))), Is.EqualTo(1), "MME 32 > the 16 enabled");
            Assert.That(r.Read(flags, 1) & (PciRegs.MsiFlagsEnable | PciRegs.MsiFlagsQsize), Is.EqualTo((uint)(PciRegs.MsiFlagsEnable | (4 << 4))));
            Assert.That(r.Pdev.ReadConfig(flags, 2) & (PciRegs.MsiFlagsEnable | PciRegs.MsiFlagsQsize), Is.EqualTo((uint)(PciRegs.MsiFlagsEnable | (4 << 4))));
        });
    }

    private static long SetMsi(CfgRig r, int[] efds)
    {
        byte[] data = efds.SelectMany(BitConverter.GetBytes).ToArray();
        return r.Rig.SetIrqs(r.Fd, (uint)(20 + data.Length), VfioIrqSetFlags.DataEventfd | VfioIrqSetFlags.ActionTrigger, VfioPciIndex.IrqMsi, 0, (uint)efds.Length, data);
    }

    [Test]
    public void RC_20_MsixMessageControl_IsReadOnlyToTheUser_EnableComesOnlyFromSetIrqs()
    {
        // libvfio-user lets the user set MASKALL|ENABLE; the kernel has no MSI-X table: the
        // capability reads the hardware and drops writes, even a 2-byte write at control+1.
        using var r = new CfgRig(SixteenMsiJson);
        r.Run(() =>
        {
            int ctl = r.Pdev.MsixCap + PciRegs.MsixFlags;
            uint hw = r.Pdev.ReadConfig(ctl, 2);
            byte[] v = r.Vconfig();
            Assert.That(r.Write(ctl, 2, 0xffff), Is.EqualTo(2));
            Assert.That(r.Read(ctl, 2), Is.EqualTo(hw));
            Assert.That(r.Write(ctl, 2, 0), Is.EqualTo(2));
            Assert.That(r.WriteRaw(ctl + 1, new byte[] { 0xc0, 0x00 }), Is.EqualTo(2));
            Assert.That(r.Read(ctl, 2), Is.EqualTo(hw));
            Assert.That(r.Pdev.ReadConfig(ctl, 2), Is.EqualTo(hw));
            Assert.That(r.Vconfig(), Is.EqualTo(v));

            int efd = r.Rig.P.Eventfd(0);
            Assert.That(r.Rig.SetIrqEventfd(r.Fd, VfioPciIndex.IrqMsix, efd), Is.Zero, ErrorReason.Current);
            Assert.That(r.Read(ctl, 2) & PciRegs.MsixFlagsEnable, Is.EqualTo((uint)PciRegs.MsixFlagsEnable), "the hardware's Enable, passed through");
        });
    }

    // ---- COMMAND and backdoor resets.

    [Test]
    public void EnablingMemoryAfterABackdoorReset_RestoresTheSavedBars()
    {
        using CfgRig r = DefaultMachine();
        r.Run(() =>
        {
            uint bar0 = r.Pdev.ReadConfig(PciRegs.BaseAddress0, 4);
            uint cmd = r.Read(PciRegs.Command, 2);
            r.Pdev.WriteConfig(PciRegs.BaseAddress0, 0, 4);   // the device lost its BARs behind vfio's back
            Assert.That(r.Write(PciRegs.Command, 2, cmd | PciRegs.CommandMemory), Is.EqualTo(2));
            Assert.That(r.Pdev.ReadConfig(PciRegs.BaseAddress0, 4), Is.EqualTo(bar0));
            Assert.That(r.Rig.M.Kernel.Log.Contains("reset recovery - restoring BARs"), Is.True);
        });
    }

    // ---- Per profile.

    [TestCaseSource(nameof(Profiles))]
    public void Dvsec_IsInTheUsersChainFrom64_AndHiddenBefore(KernelProfile profile)
    {
        using var r = new CfgRig(VfioPciConfigTests.AllCapsJson, profile);
        r.Run(() =>
        {
            bool shown = ExtChain(r).Any(c => c.Id == PciCapRegs.ExtIdDvsec);
            Assert.That(shown, Is.EqualTo(profile.Has(VfioPciFeatures.DvsecVisible)));
            int dvsec = r.Pdev.Config.FindExtCapability(PciCapRegs.ExtIdDvsec);
            Assert.That(r.Write(dvsec + 0x0c, 1, 0x77), Is.EqualTo(1));
            Assert.That(r.Pdev.ReadConfig(dvsec + 0x0c, 1), Is.EqualTo(0x77u), "shown: raw write; hidden: unassigned bytes, raw too");
        });
    }

    [TestCaseSource(nameof(Profiles))]
    public void HidingMessages_AreInfoOn61_AndDebugFrom65(KernelProfile profile)
    {
        using CfgRig r = DefaultMachine(profile);
        r.Run(() =>
        {
            KernelMessage[] hiding = r.Rig.M.Kernel.Log.Messages.Where(m => m.Text.Contains("hiding", StringComparison.Ordinal)).ToArray();
            Assert.That(hiding.Select(m => m.Text), Has.Some.Contains("vfio_cap_init: hiding cap 0xd@").And.Some.Contains("vfio_ecap_init: hiding ecap 0x1b@0x100"));
            LogLevel want = profile.Has(VfioPciFeatures.HidingCapMessagesAtDebug) ? LogLevel.Debug : LogLevel.Info;
            Assert.That(hiding.Select(m => m.Level), Is.All.EqualTo(want));
        });
    }
}
