// Tests Vfio.Platform/Pci/PciDevice.Caps.cs: the described capabilities land in the chains
// in order with their registers, the VPD hardware handshake and the PCI core's VPD access,
// and the reader's checks of the "capabilities" field.

using NUnit.Framework;
using Vfio.Kernel;
using Vfio.Platform;
using Vfio.Platform.Machine;
using Vfio.Platform.Pci;

namespace Vfio.Tests.Platform.Pci;

public sealed class CapabilityBuilderTests
{
    private static string Machine(string caps) => $$"""
        {"memory":{"ram":"1G"},"iommu":null,"pci":[{"slot":1,"type":"generic","bars":[{"index":0,"size":"4K"}],"capabilities":[{{caps}}]}]}
        """;

    private static PciDevice Build(string caps)
    {
        SimMachine m = MachineBuilder.Build(MachineDescriptionReader.Parse(Machine(caps)), Runs.Kernel(SchedulerMode.Real));
        return m.Pci.Find("0000:00:01.0")!;
    }

    [Test]
    public void DescribedCapabilities_FollowPmAndPcie_InTheirOrder_StandardAndExtended()
    {
        PciDevice d = Build("""{"type":"vpd"},{"type":"raw","id":"0x0d","size":8},{"type":"raw-ext","id":"0x1b","size":8},{"type":"aer"},{"type":"vendor","text":"abc"}""");
        var std = new List<int>();
        for (int pos = d.Config.GetByte(PciRegs.CapabilityList); pos != 0; pos = d.Config.GetByte(pos + 1))
        {
            std.Add(d.Config.GetByte(pos));
        }

        Assert.That(std, Is.EqualTo(new[] { PciCapRegs.IdPm, PciCapRegs.IdExp, PciCapRegs.IdVpd, PciCapRegs.IdSsvid, PciCapRegs.IdVndr }));
        Assert.That(d.Config.GetDword(0x100) & 0xffff, Is.EqualTo((uint)PciCapRegs.ExtIdPasid), "the first extended one sits at 0x100");
        int vendor = d.Config.FindCapability(PciCapRegs.IdVndr);
        Assert.That(d.Config.GetByte(vendor + 2), Is.EqualTo(6), "the vendor capability's length byte");
        Assert.That(d.Config.FindExtCapability(PciCapRegs.ExtIdErr), Is.Not.Zero);
    }

    [Test]
    public void VpdCapability_AddressWrites_RunTheHandshake_AndThePciCoreReadsAndWritesThroughIt()
    {
        PciDevice d = Build("""{"type":"vpd"}""");
        int cap = d.VpdCap;
        d.WriteConfig(cap + PciCapRegs.VpdAddr, 4, 2);
        Assert.That(d.ReadConfig(cap + PciCapRegs.VpdAddr, 2), Is.EqualTo(4u | PciCapRegs.VpdAddrF), "a read completes at once: F set");
        Assert.That(d.ReadConfig(cap + PciCapRegs.VpdData, 4), Is.EqualTo(BitConverter.ToUInt32(d.VpdStore.Slice(4, 4))));

        byte[] id = new byte[3];
        Assert.That(d.ReadVpd(0, id), Is.EqualTo(3));
        Assert.That(id[0], Is.EqualTo(0x82), "the identifier-string tag");
        Assert.That(d.WriteVpd(0x20, new byte[] { 1, 2, 3, 4 }), Is.EqualTo(4));
        Assert.That(d.VpdStore.Slice(0x20, 4).ToArray(), Is.EqualTo(new byte[] { 1, 2, 3, 4 }));
        Assert.That(d.WriteVpd(0x21, new byte[4]), Is.EqualTo(Errno.EINVAL.Negative()), "pci_write_vpd: dword aligned only");
        Assert.That(d.WriteVpd(0x1000, new byte[4]), Is.EqualTo(Errno.EINVAL.Negative()), "past the VPD's end (its tags)");
        Assert.That(d.ReadVpd(0x1000, new byte[4]), Is.Zero, "a read past the end reads nothing");
    }

    [Test]
    public void AVpdStoreWithoutTags_IsNoVpd_ForThePciCore()
    {
        PciDevice d = Build("""{"type":"vpd","payload":"00 00 00 00"}""");
        Assert.That(d.ReadVpd(0, new byte[4]), Is.EqualTo(Errno.ENODEV.Negative()));
    }

    [TestCase("""{"type":"bogus"}""", "pci[0].capabilities[0].type", "is not one of")]
    [TestCase("""{"type":"raw","size":8}""", "pci[0].capabilities[0].id", "needs its id")]
    [TestCase("""{"type":"raw","id":"0x0d"}""", "pci[0].capabilities[0].size", "a payload or a size")]
    [TestCase("""{"type":"vendor","payload":"zz"}""", "pci[0].capabilities[0].payload", "is not hex bytes")]
    public void ABadCapability_NamesItsField(string cap, string field, string fragment)
    {
        MachineDescriptionException e = Assert.Throws<MachineDescriptionException>(() => MachineDescriptionReader.Parse(Machine(cap)))!;
        Assert.That(e.Field, Is.EqualTo(field));
        Assert.That(e.Message, Does.Contain(fragment));
    }
}
