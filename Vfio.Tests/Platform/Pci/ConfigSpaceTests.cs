using NUnit.Framework;
using Vfio.Kernel;
using Vfio.Platform;
using Vfio.Platform.Devices;
using Vfio.Platform.Fs;
using Vfio.Platform.Pci;
using Vfio.Platform.Proc;

namespace Vfio.Tests.Platform.Pci;

/// <summary>Tests PciConfigSpace, PciDevice (config accessors), PciDevice.Bars and the config sysfs file of PciBus.</summary>
public sealed class ConfigSpaceTests
{
    private const string TwoOnRootJson = """
        {"memory":{"ram":"1G"},"iommu":null,"pci":[
          {"slot":2,"type":"generic","bars":[{"index":0,"size":"64K"}],"resets":["flr"]},
          {"slot":3,"type":"generic","bars":[{"index":0,"size":"64K"}],"resets":["flr"]},
          {"slot":4,"type":"generic","pcie":false,"bars":[{"index":0,"size":"4K"}],"msi":1,"resets":["pm"]}]}
        """;

    [Test]
    public void TheHeader_CarriesTheDescribedIdentity()
    {
        SimMachine m = PciMachines.OneDevice();
        GenericPciDevice d = m.Generic();

        Assert.That(d.ReadConfig(PciRegs.VendorId, 2), Is.EqualTo(0x8086));
        Assert.That(d.ReadConfig(PciRegs.DeviceId, 2), Is.EqualTo(0x1521));
        Assert.That(d.ReadConfig(PciRegs.RevisionId, 1), Is.EqualTo(0x03));
        Assert.That(d.ReadConfig(PciRegs.RevisionId, 4) >> 8, Is.EqualTo(0x020000), "class code in the upper three bytes");
        Assert.That(d.ReadConfig(PciRegs.SubsystemVendorId, 2), Is.EqualTo(0x8086));
        Assert.That(d.ReadConfig(PciRegs.SubsystemId, 2), Is.EqualTo(0x0001));
        Assert.That(d.ReadConfig(PciRegs.HeaderType, 1), Is.EqualTo(PciRegs.HeaderTypeNormal));
        Assert.That(d.ReadConfig(PciRegs.InterruptPin, 1), Is.EqualTo(1), "INTA#");
        Assert.That(d.ReadConfig(PciRegs.Command, 2), Is.Zero, "firmware leaves decode off");
        Assert.That(m.Sysfs.Read(PciMachines.Attr(PciMachines.Bdf, "irq")), Is.EqualTo($"{d.ReadConfig(PciRegs.InterruptLine, 1)}\n"));
        Assert.That(m.Bridge("0000:00:01.0").ReadConfig(PciRegs.HeaderType, 1), Is.EqualTo(PciRegs.HeaderTypeBridge));
    }

    [Test]
    public void TheCommandRegister_KeepsOnlyItsWritableBits()
    {
        GenericPciDevice d = PciMachines.OneDevice().Generic();

        d.WriteConfig(PciRegs.Command, 0xffff, 2);

        const ushort writable = PciRegs.CommandIo | PciRegs.CommandMemory | PciRegs.CommandMaster | 0x40 | PciRegs.CommandSerr | PciRegs.CommandIntxDisable;
        Assert.That(d.ReadConfig(PciRegs.Command, 2), Is.EqualTo(writable));
        d.WriteConfig(PciRegs.Command, 0, 2);
        Assert.That(d.ReadConfig(PciRegs.Command, 2), Is.Zero);
    }

    [Test]
    public void IdentityRegisters_IgnoreWrites()
    {
        GenericPciDevice d = PciMachines.OneDevice().Generic();

        d.WriteConfig(PciRegs.VendorId, 0x12345678, 4);
        d.WriteConfig(PciRegs.RevisionId, 0xffffffff, 4);

        Assert.That(d.ReadConfig(PciRegs.VendorId, 4), Is.EqualTo(0x15218086u));
        Assert.That(d.ReadConfig(PciRegs.RevisionId, 4), Is.EqualTo(0x02000003u));
    }

    [Test]
    public void StatusErrorBits_AreWriteOneToClear_AndCapListStays()
    {
        GenericPciDevice d = PciMachines.OneDevice().Generic();
        ushort errors = PciRegs.StatusRecMasterAbort | PciRegs.StatusSigSystemError;
        d.Config.SetWord(PciRegs.Status, (ushort)(d.Config.GetWord(PciRegs.Status) | errors));

        d.WriteConfig(PciRegs.Status, 0, 2);
        Assert.That(d.ReadConfig(PciRegs.Status, 2) & errors, Is.EqualTo(errors), "writing zeros clears nothing");

        d.WriteConfig(PciRegs.Status, PciRegs.StatusRecMasterAbort, 2);
        Assert.That(d.ReadConfig(PciRegs.Status, 2), Is.EqualTo(PciRegs.StatusCapList | PciRegs.StatusSigSystemError));

        d.WriteConfig(PciRegs.Status, 0xffff, 2);
        Assert.That(d.ReadConfig(PciRegs.Status, 2), Is.EqualTo(PciRegs.StatusCapList), "read-only bits survive an all-ones write");
    }

    [Test]
    public void Sizing32BitBar_ReadsTheSizeMask_AndRestoringPutsTheBarBack()
    {
        SimMachine m = PciMachines.OneDevice();
        GenericPciDevice d = m.Generic();
        uint orig = d.ReadConfig(PciRegs.BaseAddress0, 4);

        d.WriteConfig(PciRegs.BaseAddress0, 0xffffffff, 4);
        uint sz = d.ReadConfig(PciRegs.BaseAddress0, 4);
        d.WriteConfig(PciRegs.BaseAddress0, orig, 4);

        Assert.That(orig, Is.EqualTo((uint)d.ResourceStart(0)), "firmware programmed the assigned address, type bits 0");
        Assert.That(sz, Is.EqualTo(0xfff00000u));
        Assert.That(~(sz & ~0xfu) + 1, Is.EqualTo(1u << 20), "__pci_read_base: size = ~mask + 1");
        Assert.That(d.ReadConfig(PciRegs.BaseAddress0, 4), Is.EqualTo(orig));
        d.EnableMemoryAndMaster();
        Assert.That(d.Bars[0]!.RoutedAt, Is.EqualTo(d.ResourceStart(0)));
    }

    [Test]
    public void Sizing64BitPrefetchableBar_ReadsBothDwords()
    {
        GenericPciDevice d = PciMachines.OneDevice().Generic();
        int lo = PciRegs.BaseAddress0 + 8, hi = lo + 4;
        uint origLo = d.ReadConfig(lo, 4), origHi = d.ReadConfig(hi, 4);

        d.WriteConfig(lo, 0xffffffff, 4);
        d.WriteConfig(hi, 0xffffffff, 4);
        uint szLo = d.ReadConfig(lo, 4), szHi = d.ReadConfig(hi, 4);
        d.WriteConfig(lo, origLo, 4);
        d.WriteConfig(hi, origHi, 4);

        Assert.That(origLo & 0xf, Is.EqualTo(PciRegs.BarMemType64 | PciRegs.BarMemPrefetch));
        Assert.That(((ulong)origHi << 32) | (origLo & ~0xfu), Is.EqualTo((ulong)d.ResourceStart(2)));
        Assert.That(d.ResourceStart(2), Is.GreaterThanOrEqualTo(1L << 32), "a 256M 64-bit BAR is placed above 4G");
        Assert.That(szLo, Is.EqualTo(0xf000000cu));
        Assert.That(szHi, Is.EqualTo(0xffffffffu));
        ulong mask = ((ulong)szHi << 32) | (szLo & ~0xfu);
        Assert.That(~mask + 1, Is.EqualTo(256UL << 20));
        Assert.That(d.ReadConfig(lo, 4), Is.EqualTo(origLo));
        Assert.That(d.ReadConfig(hi, 4), Is.EqualTo(origHi));
        Assert.That(d.Bars[3], Is.Null, "the upper half of a 64-bit BAR is not a BAR of its own");
    }

    [Test]
    public void SizingIoBar_KeepsTheIoSpaceBit()
    {
        GenericPciDevice d = PciMachines.OneDevice().Generic();
        int reg = PciRegs.BaseAddress0 + 16;

        uint placed = d.ReadConfig(reg, 4);
        Assert.That(placed, Is.EqualTo((uint)d.ResourceStart(4) | PciRegs.BarSpaceIo), "firmware placed the I/O BAR in the port space");
        Assert.That(d.ResourceStart(4), Is.InRange(IoPortSpace.PciStart, IoPortSpace.Size - 32));
        d.WriteConfig(reg, 0xffffffff, 4);
        uint sz = d.ReadConfig(reg, 4);
        d.WriteConfig(reg, placed, 4);

        Assert.That(sz, Is.EqualTo(0xffffffe1u));
        Assert.That(~(sz & ~0x3u) + 1, Is.EqualTo(32u));
        Assert.That(d.ReadConfig(reg, 4), Is.EqualTo(placed));
    }

    [Test]
    public void SizingTheRom_ReadsItsSizeMask_AndTheEnableBitStaysAsWritten()
    {
        GenericPciDevice d = PciMachines.OneDevice().Generic();
        uint orig = d.ReadConfig(PciRegs.RomAddress, 4);

        d.WriteConfig(PciRegs.RomAddress, orig | 0xfffff800, 4);
        uint sz = d.ReadConfig(PciRegs.RomAddress, 4);
        d.WriteConfig(PciRegs.RomAddress, orig, 4);

        Assert.That(orig, Is.EqualTo((uint)d.ResourceStart(PciDevice.RomBarIndex)), "assigned, not enabled");
        Assert.That(sz, Is.EqualTo(0xffff0000u));
        Assert.That(~(sz & 0xfffff800u) + 1, Is.EqualTo(64u << 10));
        Assert.That(d.ReadConfig(PciRegs.RomAddress, 4), Is.EqualTo(orig));
    }

    [Test]
    public void AnUnimplementedBar_ReadsZeroAfterTheSizingWrite()
    {
        GenericPciDevice d = PciMachines.OneDevice().Generic();
        int reg = PciRegs.BaseAddress0 + 20;

        d.WriteConfig(reg, 0xffffffff, 4);

        Assert.That(d.ReadConfig(reg, 4), Is.Zero);
        Assert.That(d.ResourceLength(5), Is.Zero);
    }

    [Test]
    public void MemoryDecode_RoutesTheBar_AndAnUndecodedBarReadsAllOnes()
    {
        SimMachine m = PciMachines.OneDevice();
        GenericPciDevice d = m.Generic();
        long bar0 = d.ResourceStart(0);

        m.WriteMmio32(bar0 + 0x100, 0x12345678);
        Assert.That(m.ReadMmio32(bar0 + 0x100), Is.EqualTo(0xffffffffu), "decode off at boot: the write went nowhere");

        d.WriteConfig(PciRegs.Command, PciRegs.CommandMemory, 2);
        m.WriteMmio32(bar0 + 0x100, 0x12345678);
        Assert.That(m.ReadMmio32(bar0 + 0x100), Is.EqualTo(0x12345678u));

        d.WriteConfig(PciRegs.Command, 0, 2);
        Assert.That(m.ReadMmio32(bar0 + 0x100), Is.EqualTo(0xffffffffu));
        Assert.That(d.Bars[0]!.RoutedAt, Is.EqualTo(-1));

        d.WriteConfig(PciRegs.Command, PciRegs.CommandMemory, 2);
        Assert.That(m.ReadMmio32(bar0 + 0x100), Is.EqualTo(0x12345678u), "the device kept its contents");
    }

    [Test]
    public void The64BitBar_DecodesAtItsAddressAbove4G()
    {
        SimMachine m = PciMachines.OneDevice();
        GenericPciDevice d = m.Generic();
        d.EnableMemoryAndMaster();
        long bar2 = d.ResourceStart(2);

        m.WriteMmio32(bar2 + 0x40, 0xcafef00d);

        Assert.That(m.ReadMmio32(bar2 + 0x40), Is.EqualTo(0xcafef00du));
        Assert.That(d.Bars[2]!.RoutedAt, Is.EqualTo(bar2));
    }

    [Test]
    public void TheRom_DecodesOnlyWithItsEnableBitAndMemoryDecode()
    {
        SimMachine m = PciMachines.OneDevice();
        GenericPciDevice d = m.Generic();
        long rom = d.ResourceStart(PciDevice.RomBarIndex);
        d.EnableMemoryAndMaster();
        Assert.That(d.Bars[PciDevice.RomBarIndex]!.RoutedAt, Is.EqualTo(-1));

        d.WriteConfig(PciRegs.RomAddress, (uint)rom | PciRegs.RomEnable, 4);
        Assert.That(d.Bars[PciDevice.RomBarIndex]!.RoutedAt, Is.EqualTo(rom));
        Assert.That(m.ReadMmio32(rom) & 0xffff, Is.EqualTo(0xaa55u), "the option-ROM image's signature, not the hole");

        d.WriteConfig(PciRegs.Command, 0, 2);
        Assert.That(d.Bars[PciDevice.RomBarIndex]!.RoutedAt, Is.EqualTo(-1));
    }

    [Test]
    public void WritingANewAddress_MovesTheBar()
    {
        SimMachine m = PciMachines.OneDevice();
        GenericPciDevice d = m.Generic();
        d.EnableMemoryAndMaster();
        long old = d.ResourceStart(0);
        const long moved = 0xe8000000;
        m.WriteMmio32(old + 0x200, 0xabcdef01);

        d.WriteConfig(PciRegs.BaseAddress0, (uint)moved, 4);

        Assert.That(d.ReadConfig(PciRegs.BaseAddress0, 4), Is.EqualTo((uint)moved));
        Assert.That(d.Bars[0]!.RoutedAt, Is.EqualTo(moved));
        Assert.That(m.ReadMmio32(moved + 0x200), Is.EqualTo(0xabcdef01u));
        Assert.That(m.ReadMmio32(old + 0x200), Is.EqualTo(0xffffffffu), "nothing decodes the old address");
    }

    [Test]
    public void ABarProgrammedOverAnotherDevicesBar_IsNotRouted()
    {
        SimMachine m = PciMachines.Build(TwoOnRootJson);
        GenericPciDevice a = m.Generic("0000:00:02.0");
        GenericPciDevice b = m.Generic("0000:00:03.0");
        a.EnableMemoryAndMaster();
        b.EnableMemoryAndMaster();
        long aBar = a.ResourceStart(0);
        m.WriteMmio32(aBar, 0xaaaa5555);
        Assert.That(b.Bars[0]!.RoutedAt, Is.EqualTo(b.ResourceStart(0)));

        b.WriteConfig(PciRegs.BaseAddress0, (uint)aBar, 4);
        m.WriteMmio32(aBar + 4, 0x11112222);

        Assert.That(b.Bars[0]!.RoutedAt, Is.EqualTo(-1));
        Assert.That(a.Bars[0]!.RoutedAt, Is.EqualTo(aBar));
        Assert.That(m.ReadMmio32(aBar), Is.EqualTo(0xaaaa5555u), "the first device still answers");
        Assert.That(m.ReadMmio32(aBar + 4), Is.EqualTo(0x11112222u));
        Assert.That(m.ReadMmio32(b.ResourceStart(0)), Is.EqualTo(0xffffffffu), "the second left its old place");
    }

    [Test]
    public void TheCapabilityList_ChainsPmExpressMsiAndMsix()
    {
        GenericPciDevice d = PciMachines.OneDevice().Generic();
        var ids = new List<uint>();
        for (int pos = (int)d.ReadConfig(PciRegs.CapabilityList, 1); pos != 0 && ids.Count < 48; pos = (int)d.ReadConfig(pos + 1, 1))
        {
            ids.Add(d.ReadConfig(pos, 1));
        }

        Assert.That(ids, Is.EqualTo(new uint[] { PciRegs.CapIdPm, PciRegs.CapIdExp, PciRegs.CapIdMsi, PciRegs.CapIdMsix }));
        Assert.That(d.Config.FindCapability(PciRegs.CapIdPm), Is.EqualTo(d.PmCap).And.Not.Zero);
        Assert.That(d.Config.FindCapability(PciRegs.CapIdExp), Is.EqualTo(d.ExpCap).And.Not.Zero);
        Assert.That(d.Config.FindCapability(PciRegs.CapIdMsi), Is.EqualTo(d.MsiCap).And.Not.Zero);
        Assert.That(d.Config.FindCapability(PciRegs.CapIdMsix), Is.EqualTo(d.MsixCap).And.Not.Zero);
        Assert.That(d.Config.FindCapability(PciRegs.CapIdVendor), Is.Zero);
        Assert.That(d.ReadConfig(d.MsixCap + PciRegs.MsixFlags, 2) & PciRegs.MsixFlagsQsize, Is.EqualTo(7), "table size is N-1");
        Assert.That(d.ReadConfig(d.MsixCap + PciRegs.MsixTable, 4), Is.EqualTo(0x10000u), "offset 0x10000 in BAR 0");
        Assert.That(d.ReadConfig(d.MsiCap + PciRegs.MsiFlags, 2) & PciRegs.MsiFlagsQmask, Is.EqualTo(2 << 1), "4 vectors requested");
        Assert.That(d.Config.FindExtCapability(PciRegs.ExtCapIdAcs), Is.Zero, "a single-function endpoint has no ACS");
    }

    [Test]
    public void ARootPortWithAcs_HasTheExtendedCapabilityEnabled()
    {
        PciBridge port = PciMachines.OneDevice().Bridge("0000:00:01.0");

        int acs = port.Config.FindExtCapability(PciRegs.ExtCapIdAcs);

        Assert.That(acs, Is.EqualTo(port.AcsCap).And.GreaterThanOrEqualTo(PciRegs.StdConfigSpaceSize));
        Assert.That(port.ReadConfig(acs + PciRegs.AcsCtrl, 2), Is.EqualTo(PciRegs.ReqAcsFlags));
        Assert.That(port.Config.FindCapability(PciRegs.CapIdExp), Is.EqualTo(port.ExpCap).And.Not.Zero);
        Assert.That((port.ReadConfig(port.ExpCap + PciRegs.ExpFlags, 2) >> 4) & 0xf, Is.EqualTo(PciRegs.ExpTypeRootPort));
    }

    [Test]
    public void TheConfigFile_GivesRootTheWholeSpace()
    {
        SimMachine m = PciMachines.OneDevice();
        GenericPciDevice d = m.Generic();

        byte[] all = m.ReadConfigFile(PciMachines.Bdf, 0, 8192)!;

        Assert.That(all, Has.Length.EqualTo(4096));
        Assert.That(all, Is.EqualTo(d.Config.Bytes.ToArray()));
        Assert.That(m.ReadConfigFile(PciMachines.Bdf, 4096, 16), Is.Empty, "end of file");
    }

    [Test]
    public void TheConfigFile_OfAConventionalFunctionIs256Bytes()
    {
        SimMachine m = PciMachines.Build(TwoOnRootJson);
        GenericPciDevice d = m.Generic("0000:00:04.0");

        byte[] all = m.ReadConfigFile("0000:00:04.0", 0, 4096)!;

        Assert.That(d.ConfigSize, Is.EqualTo(256));
        Assert.That(all, Has.Length.EqualTo(256));
        Assert.That(all[PciRegs.VendorId], Is.EqualTo(0x36), "vendor 0x1b36, the generic default");
        Assert.That(d.IsPcie, Is.False);
        Assert.That(d.ReadConfig(0x100, 4), Is.EqualTo(0xffffffffu));
    }

    [Test]
    public void TheConfigFile_GivesAUserWithoutCapSysAdminOnly64Bytes()
    {
        SimMachine m = PciMachines.OneDevice();
        GenericPciDevice d = m.Generic();
        SimProcess user = m.CreateProcess("user", Credentials.User);

        byte[] head = m.ReadConfigFile(PciMachines.Bdf, 0, 4096, user)!;
        byte[] past = m.ReadConfigFile(PciMachines.Bdf, 64, 16, user)!;
        byte[] tail = m.ReadConfigFile(PciMachines.Bdf, 60, 16, user)!;

        Assert.That(head, Is.EqualTo(d.Config.Bytes[..64].ToArray()));
        Assert.That(past, Is.Empty);
        Assert.That(tail, Has.Length.EqualTo(4));
        Assert.That(m.Sysfs.Read(PciMachines.Attr(PciMachines.Bdf, "vendor"), out int err, user), Is.EqualTo("0x8086\n"));
        Assert.That(err, Is.Zero);
    }

    [Test]
    public void AUserCannotOpenTheConfigFileForWriting()
    {
        SimMachine m = PciMachines.OneDevice();
        GenericPciDevice d = m.Generic();
        SimProcess user = m.CreateProcess("user", Credentials.User);

        int fd = user.Open(PciMachines.Attr(PciMachines.Bdf, "config"), OpenFlags.O_WRONLY);

        Assert.That(fd, Is.EqualTo(Errno.EACCES.Negative()));
        Assert.That(d.ReadConfig(PciRegs.Command, 2), Is.Zero);
    }

    [Test]
    public void AConfigWriteThroughSysfs_ReachesTheRegisterWithItsEffects()
    {
        SimMachine m = PciMachines.OneDevice();
        GenericPciDevice d = m.Generic();

        long n = m.WriteConfigFile(PciMachines.Bdf, PciRegs.Command, [(byte)PciRegs.CommandMemory, 0]);

        Assert.That(n, Is.EqualTo(2));
        Assert.That(d.ReadConfig(PciRegs.Command, 2), Is.EqualTo(PciRegs.CommandMemory));
        Assert.That(d.Bars[0]!.RoutedAt, Is.EqualTo(d.ResourceStart(0)), "the write enabled decode");

        n = m.WriteConfigFile(PciMachines.Bdf, PciRegs.BaseAddress0 + 1, [0x11, 0x22, 0x33]);
        Assert.That(n, Is.EqualTo(3), "an unaligned write is split into byte and word accesses");
        Assert.That(d.ReadConfig(PciRegs.BaseAddress0, 4), Is.EqualTo(0x33200000u), "only the writable bits of a 1M BAR took the value");
    }

    [Test]
    public void AccessesOutsideTheSpaceOrMisaligned_ReadAllOnes_AndWritesAreDropped()
    {
        GenericPciDevice d = PciMachines.OneDevice().Generic();
        byte[] before = d.Config.Bytes.ToArray();

        Assert.That(d.ReadConfig(4096, 4), Is.EqualTo(0xffffffffu));
        Assert.That(d.ReadConfig(4094, 4), Is.EqualTo(0xffffffffu));
        Assert.That(d.ReadConfig(-4, 4), Is.EqualTo(0xffffffffu));
        Assert.That(d.ReadConfig(PciRegs.Command + 1, 2), Is.EqualTo(0xffffu));
        Assert.That(d.ReadConfig(PciRegs.VendorId + 2, 4), Is.EqualTo(0xffffffffu));
        d.WriteConfig(PciRegs.Command + 1, 0xffff, 2);
        d.WriteConfig(PciRegs.BaseAddress0 + 2, 0xffffffff, 4);
        d.WriteConfig(4096, 0xffffffff, 4);

        Assert.That(d.Config.Bytes.ToArray(), Is.EqualTo(before));
    }

    [Test]
    public void ADisconnectedDevice_ReadsAllOnes_AndItsBarsStopDecoding()
    {
        SimMachine m = PciMachines.OneDevice();
        GenericPciDevice d = m.Generic();
        d.EnableMemoryAndMaster();
        m.WriteMmio32(d.ResourceStart(0), 0x5a5a5a5a);

        d.MarkDisconnected();
        d.WriteConfig(PciRegs.Command, 0, 2);

        Assert.That(d.ReadConfig(PciRegs.VendorId, 2), Is.EqualTo(0xffffu));
        Assert.That(d.ReadConfig(PciRegs.Command, 4), Is.EqualTo(0xffffffffu));
        Assert.That(d.Config.GetWord(PciRegs.Command), Is.EqualTo(PciRegs.CommandMemory | PciRegs.CommandMaster), "the write never reached the device");
        Assert.That(m.ReadMmio32(d.ResourceStart(0)), Is.EqualTo(0xffffffffu));
        Assert.That(m.ReadConfigFile(PciMachines.Bdf, 0, 8), Is.All.EqualTo(0xff));
    }
}
