// Tests what the boot shares or defers to build the default machine quickly (Vfio.Platform
// Pci/OptionRom.cs, Pci/PciConfigSpace.cs): option-ROM images shared between machines stay
// read-only, the write masks of the configuration space grow where a bit is made writable,
// and the power-on state kept copy-on-write is what a reset puts back.

using NUnit.Framework;
using Vfio.Kernel;
using Vfio.Platform;
using Vfio.Platform.Devices;
using Vfio.Platform.Machine;
using Vfio.Platform.Pci;

namespace Vfio.Tests.Platform.Machine;

[TestFixture]
public sealed class BootSharingTests
{
    private static VgaDevice Vga(SimMachine m) => m.Pci.Devices.OfType<VgaDevice>().Single();

    [Test]
    public void TwoMachines_ReadTheSameRomBytes_AndACpuWriteToOnesRomChangesNeither()
    {
        SimMachine a = MachineBuilder.Default(Runs.Kernel(SchedulerMode.Real));
        SimMachine b = MachineBuilder.Default(Runs.Kernel(SchedulerMode.Real, seed: 2));
        VgaDevice va = Vga(a), vb = Vga(b);
        byte[] fresh = OptionRom.Build(va.Identity, va.RomContent!.Value.Length, 1);
        Assert.That(va.RomContent!.Value.ToArray(), Is.EqualTo(fresh), "the image a fresh build gives");
        Assert.That(vb.RomContent!.Value.ToArray(), Is.EqualTo(fresh));

        byte[] junk = [0xde, 0xad, 0xbe, 0xef];
        va.BarAccess(PciDevice.RomBarIndex, 0, (ReadOnlySpan<byte>)junk);
        byte[] readA = new byte[4], readB = new byte[4];
        va.BarAccess(PciDevice.RomBarIndex, 0, readA.AsSpan());
        vb.BarAccess(PciDevice.RomBarIndex, 0, readB.AsSpan());
        Assert.That(readA, Is.EqualTo(fresh[..4]), "CPU writes to a ROM are ignored");
        Assert.That(readB, Is.EqualTo(fresh[..4]));
    }

    [Test]
    public void AWritableRegisterDeepInTheExtendedSpace_TakesWrites_AndItsNeighboursStayReadOnly()
    {
        var c = new PciConfigSpace(PciRegs.ConfigSpaceSize);
        c.Write(0xe00, 0xffffffff, 4);
        Assert.That(c.GetDword(0xe00), Is.Zero, "nothing is writable before a mask says so");
        Assert.That(c.WritableDword(0xe00), Is.Zero);

        c.SetWritableDword(0xe00, 0xff00ff00);
        c.Write(0xe00, 0xffffffff, 4);
        c.Write(0xe04, 0xffffffff, 4);
        c.Write(0xf00, 0xffffffff, 4);
        Assert.That(c.GetDword(0xe00), Is.EqualTo(0xff00ff00u));
        Assert.That(c.WritableDword(0xe00), Is.EqualTo(0xff00ff00u));
        Assert.That(c.GetDword(0xe04), Is.Zero);
        Assert.That(c.GetDword(0xf00), Is.Zero, "beyond the grown mask");
        Assert.That(c.WritableDword(0xffc), Is.Zero);

        (byte[] data, byte[] wmask, byte[] w1c) = c.Snapshot();
        Assert.That((data.Length, wmask.Length, w1c.Length), Is.EqualTo((4096, 4096, 4096)), "a snapshot covers the whole space");
    }

    [Test]
    public void AReset_PutsBackThePowerOnRegistersAndMasks_ChangedAfterBoot_OnThatMachineOnly()
    {
        SimMachine a = MachineBuilder.Default(Runs.Kernel(SchedulerMode.Real));
        SimMachine b = MachineBuilder.Default(Runs.Kernel(SchedulerMode.Real));
        PciDevice da = a.Pci.Devices.OfType<PciDevice>().First(d => d.ConfigSize == PciRegs.ConfigSpaceSize && !d.IsBridge && d.Bars[0] is { Kind: not PciBarKind.Io });
        PciDevice db = b.Pci.Find(da.Name)!;
        uint bar0 = db.Config.GetDword(PciRegs.BaseAddress0);
        Assert.That(bar0 & 0xfffffff0, Is.Not.Zero, "the firmware assigned BAR 0");

        da.Config.SetWritableDword(0xe00, 0xffffffff);
        da.Config.Write(0xe00, 0x12345678, 4);
        da.Config.Write(PciRegs.Command, PciRegs.CommandMemory | PciRegs.CommandMaster, 2);
        da.HardwareReset(PciResetKind.Flr);

        Assert.That(da.Config.GetDword(0xe00), Is.Zero, "the register is back at its power-on value");
        Assert.That(da.Config.WritableDword(0xe00), Is.Zero, "and the mask made writable after boot is gone");
        Assert.That(da.Config.GetWord(PciRegs.Command), Is.Zero);
        Assert.That(da.Config.GetDword(PciRegs.BaseAddress0) & 0xfffffff0, Is.Zero, "power-on BARs are unassigned");
        Assert.That(da.Config.GetWord(PciRegs.VendorId), Is.EqualTo(db.Config.GetWord(PciRegs.VendorId)));

        Assert.That(db.Config.GetDword(PciRegs.BaseAddress0), Is.EqualTo(bar0), "the other machine's function is untouched");
        Assert.That(db.Config.WritableDword(0xe00), Is.Zero);

        da.Config.Write(0xe00, 0xffffffff, 4);
        da.HardwareReset(PciResetKind.Flr);
        Assert.That(da.Config.GetDword(0xe00), Is.Zero, "a second reset restores the same state");
    }
}
