// Tests Vfio.Platform/Pci/VgaArbiter.cs and the legacy VGA decode of PciDevice.Vga.cs: nothing
// decodes the legacy ranges at boot (firmware leaves VGA Enable clear), vga_get routes them
// to a function through its COMMAND bits and the bridges' VGA Enable, a second VGA function
// takes them away (its rival's decode and bridge turned off), waiting while they are locked.

using NUnit.Framework;
using Vfio.Kernel;
using Vfio.Platform;
using Vfio.Platform.Mm;
using Vfio.Platform.Pci;

namespace Vfio.Tests.Platform.Pci;

[TestFixture]
public sealed class VgaArbiterTests
{
    private const string TwoVga = """
        {"memory":{"ram":"1G"},"iommu":null,"pci":[
          {"slot":1,"type":"root-port","acs":true,"children":[{"slot":0,"type":"vga","rom":"64K"}]},
          {"slot":2,"type":"root-port","acs":true,"children":[{"slot":0,"type":"vga"}]}]}
        """;

    private static byte Inb(SimMachine m, int port)
    {
        byte[] b = new byte[1];
        m.IoPorts.Read(port, b);
        return b[0];
    }

    private static void Outb(SimMachine m, int port, byte value) => m.IoPorts.Write(port, [value]);

    [Test]
    public void AtBoot_NothingDecodesTheLegacyRanges_AndVgaGetRoutesThemThroughTheBridge()
    {
        SimMachine m = PciMachines.Build(TwoVga);
        PciDevice a = m.Pci.Find("0000:01:00.0")!;
        a.WriteConfig(PciRegs.Command, PciRegs.CommandIo | PciRegs.CommandMemory, 2);
        Assert.That(a.LegacyVgaIoDecoded, Is.False, "decode on, but the root port does not forward VGA");
        Assert.That(Inb(m, 0x3cc), Is.EqualTo(0xff), "nobody answers");
        Assert.That(m.Vgaarb.State(a)!.Value.Owns, Is.EqualTo(VgaResource.None));

        Assert.That(m.Vgaarb.Get(a, VgaResource.LegacyIo | VgaResource.LegacyMem, interruptible: false), Is.Zero);
        Assert.That(a.OnBus!.Self!.ReadConfig(PciRegs.BridgeControl, 2) & PciDevice.BridgeCtlVga, Is.Not.Zero);
        Assert.That(a.LegacyVgaIoDecoded && a.LegacyVgaMemoryDecoded, Is.True);
        Outb(m, 0x3c2, 0x01);
        Assert.That(Inb(m, 0x3cc), Is.EqualTo(0x01));
        m.Vgaarb.Put(a, VgaResource.LegacyIo | VgaResource.LegacyMem);
        Assert.That(m.Vgaarb.State(a)!.Value.Owns & VgaResource.LegacyMask, Is.EqualTo(VgaResource.LegacyMask), "ownership stays after vga_put");
        Assert.That(m.Vgaarb.Get(m.Pci.Find("0000:00:01.0")!, VgaResource.LegacyIo, interruptible: false), Is.EqualTo(Errno.ENODEV.Negative()), "a bridge is no VGA device");
    }

    [Test]
    public void ASecondVgaFunction_TakesTheLegacyRangesAway_OnceTheFirstHasPutThem([Values] SchedulerMode mode)
    {
        SimMachine m = PciMachines.Build(TwoVga, mode);
        PciDevice a = m.Pci.Find("0000:01:00.0")!, b = m.Pci.Find("0000:02:00.0")!;
        RunResult r = m.Kernel.Run(() =>
        {
            Assert.That(m.Vgaarb.Get(a, VgaResource.LegacyMem, interruptible: false), Is.Zero);
            bool got = false;
            KTask other = m.Kernel.Spawn("other", () =>
            {
                Assert.That(m.Vgaarb.Get(b, VgaResource.LegacyMem, interruptible: false), Is.Zero);
                Volatile.Write(ref got, true);
                m.Vgaarb.Put(b, VgaResource.LegacyMem);
            });
            KTask.Msleep(5);
            Assert.That(Volatile.Read(ref got), Is.False, "b waits while a holds the window locked");
            Assert.That(a.LegacyVgaMemoryDecoded, Is.True);
            m.Vgaarb.Put(a, VgaResource.LegacyMem);
            other.Join();
            Assert.That(Volatile.Read(ref got), Is.True);
            Assert.That((a.LegacyVgaMemoryDecoded, b.LegacyVgaMemoryDecoded), Is.EqualTo((false, true)));
            Assert.That(a.ReadConfig(PciRegs.Command, 2) & PciRegs.CommandMemory, Is.Zero, "a's memory decode was turned off");
            Assert.That(a.OnBus!.Self!.ReadConfig(PciRegs.BridgeControl, 2) & PciDevice.BridgeCtlVga, Is.Zero, "and its root port stops forwarding VGA");
            Assert.That(m.Vgaarb.State(a)!.Value.Owns & VgaResource.LegacyMem, Is.EqualTo(VgaResource.None));
        });
        Runs.AssertPassed(r);
        Assert.That(m.Memory.IsRam(PhysMem.LegacyVgaStart >> 12), Is.False);
    }
}
