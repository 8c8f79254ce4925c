using NUnit.Framework;
using Vfio.Kernel;
using Vfio.Platform;
using Vfio.Platform.Devices;
using Vfio.Platform.Machine;
using Vfio.Platform.Pci;

namespace Vfio.Tests.Platform.Pci;

/// <summary>Tests PciDevice.Reset: hardware resets, the PCI core's reset methods and the reset / reset_method sysfs files.</summary>
public sealed class ResetTests
{
    private static readonly string Reset = PciMachines.Attr(PciMachines.Bdf, "reset");
    private static readonly string ResetMethod = PciMachines.Attr(PciMachines.Bdf, "reset_method");

    private static string Json(string resets, string extra = "")
        => $$"""
            {"memory":{"ram":"1G"},"iommu":null,"pci":[{"slot":1,"type":"root-port","children":[
              {"slot":0,"type":"generic","bars":[{"index":0,"size":"1M"},{"index":2,"size":"256M","type":"mem64","prefetch":true}],
               "msix":{"vectors":4,"tableBar":0,"tableOffset":"0x10000","pbaBar":0,"pbaOffset":"0x20000"},"resets":[{{resets}}]{{extra}}}]}]}
            """;

    private const string MultifunctionJson = """
        {"memory":{"ram":"1G"},"iommu":null,"pci":[{"slot":1,"type":"root-port","children":[
          {"slot":0,"function":0,"type":"generic","multifunction":true,"bars":[{"index":0,"size":"4K"}]},
          {"slot":0,"function":1,"type":"generic","bars":[{"index":0,"size":"4K"}]}]}]}
        """;

    // 00:01.0 root port -> 01:00.0 switch up -> 02:00.0 down -> 03:00.0
    //                                        -> 02:01.0 down -> 04:00.0
    // 00:02.0 root port -> 05:00.0
    private const string TreeJson = """
        {"memory":{"ram":"1G"},"iommu":null,"pci":[
          {"slot":1,"type":"root-port","children":[{"slot":0,"type":"switch-upstream","children":[
            {"slot":0,"type":"switch-downstream","children":[{"slot":0,"type":"generic","bars":[{"index":0,"size":"4K"}]}]},
            {"slot":1,"type":"switch-downstream","children":[{"slot":0,"type":"generic","bars":[{"index":0,"size":"4K"}]}]}]}]},
          {"slot":2,"type":"root-port","children":[{"slot":0,"type":"generic","bars":[{"index":0,"size":"4K"}]}]}]}
        """;

    private static readonly string[] TreeBelowFirstPort = ["0000:01:00.0", "0000:02:00.0", "0000:02:01.0", "0000:03:00.0", "0000:04:00.0"];
    private static readonly string[] TreeOthers = ["0000:00:01.0", "0000:00:02.0", "0000:05:00.0"];

    private static long TotalResets(PciDevice d) => d.ResetCount(PciResetKind.Flr) + d.ResetCount(PciResetKind.Pm) + d.ResetCount(PciResetKind.Bus);

    /// <summary>Decode and bus master on, a mark in BAR 0, MSI-X entry 1 programmed and unmasked.</summary>
    private static void Dirty(SimMachine m, GenericPciDevice d)
    {
        d.EnableMemoryAndMaster();
        m.WriteMmio32(d.ResourceStart(0) + 0x40, 0xfeedface);
        long e = d.ResourceStart(0) + 0x10000 + 16;
        m.WriteMmio32(e, 0xfee00000);
        m.WriteMmio32(e + 8, 0x41);
        m.WriteMmio32(e + 12, 0);
        d.WriteConfig(d.MsixCap + PciRegs.MsixFlags, PciRegs.MsixFlagsEnable, 2);
    }

    // ---- reset_method contents.

    [Test]
    public void AFunctionAloneBehindAPort_OffersFlrPmAndBus()
    {
        SimMachine m = PciMachines.Build(Json("\"flr\",\"pm\",\"bus\""));

        Assert.That(m.Sysfs.Read(ResetMethod), Is.EqualTo("flr pm bus\n"));
        Assert.That(m.Generic().ResetMethods, Is.EqualTo(new[] { PciResetMethod.Flr, PciResetMethod.Pm, PciResetMethod.Bus }));
    }

    [Test]
    public void TheMethods_FollowWhatTheHardwareAdvertises()
    {
        SimMachine m = PciMachines.Build(Json("\"bus\",\"pm\""));

        Assert.That(m.Sysfs.Read(ResetMethod), Is.EqualTo("pm bus\n"), "kernel order, not the description's");
    }

    [Test]
    public void MultifunctionSiblings_CannotUseABusReset()
    {
        SimMachine m = PciMachines.Build(MultifunctionJson);

        Assert.That(m.Sysfs.Read(PciMachines.Attr("0000:01:00.1", "reset_method")), Is.EqualTo("flr pm\n"));
        Assert.That(m.Sysfs.Write(PciMachines.Attr("0000:01:00.0", "reset_method"), "bus"), Is.EqualTo(Errno.EINVAL.Negative()));
        Assert.That(m.Kernel.Log.Contains("pci 0000:01:00.0: Unsupported reset method 'bus'"), Is.True);
    }

    [Test]
    public void AFunctionWithoutResets_HasNoResetFiles()
    {
        SimMachine m = PciMachines.Build(Json(string.Empty));
        GenericPciDevice d = m.Generic();

        Assert.That(m.Sysfs.Exists(Reset), Is.False);
        Assert.That(m.Sysfs.Exists(ResetMethod), Is.False);
        Assert.That(m.Sysfs.Exists(PciMachines.Attr(PciMachines.Bdf, "config")), Is.True);
        Assert.That(d.ResetSupported, Is.False);
        Assert.That(d.ResetFunction(), Is.EqualTo(Errno.ENOTTY.Negative()));
        Assert.That(d.TryResetFunction(), Is.EqualTo(Errno.ENOTTY.Negative()));
    }

    [Test]
    public void AFunctionOnTheRootBus_HasNoBusReset()
    {
        SimMachine m = PciMachines.Build("""{"memory":{"ram":"1G"},"iommu":null,"pci":[{"slot":3,"type":"generic"}]}""");

        Assert.That(m.Sysfs.Read(PciMachines.Attr("0000:00:03.0", "reset_method")), Is.EqualTo("flr pm\n"));
    }

    [Test]
    public void Bridges_HaveNoResetMethodOfTheirOwn()
    {
        SimMachine m = PciMachines.Build(TreeJson);

        Assert.That(m.Sysfs.Exists(PciMachines.Attr("0000:02:00.0", "reset")), Is.False);
        Assert.That(m.Bridge("0000:02:00.0").ResetMethods, Is.Empty);
    }

    // ---- The reset file.

    [Test]
    public void WritingOneToReset_RunsTheFirstMethod_AndRestoresTheConfiguration()
    {
        SimMachine m = PciMachines.Build(Json("\"flr\",\"pm\",\"bus\""));
        GenericPciDevice d = m.Generic();
        Dirty(m, d);
        byte[] bars = d.Config.Bytes[PciRegs.BaseAddress0..PciRegs.CapabilityList].ToArray();

        long rc = m.Sysfs.Write(Reset, "1");

        Assert.That(rc, Is.EqualTo(2));
        Assert.That(d.ResetCount(PciResetKind.Flr), Is.EqualTo(1));
        Assert.That(TotalResets(d), Is.EqualTo(1), "only the first method ran");
        Assert.That(d.Config.Bytes[PciRegs.BaseAddress0..PciRegs.CapabilityList].ToArray(), Is.EqualTo(bars));
        Assert.That(d.ReadConfig(PciRegs.Command, 2), Is.EqualTo(PciRegs.CommandMemory | PciRegs.CommandMaster));
        Assert.That(d.Bars[0]!.RoutedAt, Is.EqualTo(d.ResourceStart(0)));
        Assert.That(d.Bars[2]!.RoutedAt, Is.EqualTo(d.ResourceStart(2)));
        Assert.That(m.ReadMmio32(d.ResourceStart(0) + 0x40), Is.Zero, "the device's own state was reset");
        Assert.That(d.MsixEnabled, Is.True);
        Assert.That(m.ReadMmio32(d.ResourceStart(0) + 0x10000 + 24), Is.EqualTo(0x41u), "the MSI-X table was restored");
        Assert.That(m.ReadMmio32(d.ResourceStart(0) + 0x10000 + 28), Is.Zero, "and the entry's mask");
    }

    [TestCase("0")]
    [TestCase("2")]
    [TestCase("junk")]
    [TestCase("")]
    [TestCase(" 1")]
    [TestCase("1 ")]
    [TestCase("1\n")]
    [TestCase("0x")]
    [TestCase("0b1")]
    [TestCase("18446744073709551617")]
    public void WritingAnythingButOne_IsEinval_AndResetsNothing(string value)
    {
        SimMachine m = PciMachines.Build(Json("\"flr\",\"pm\",\"bus\""));
        GenericPciDevice d = m.Generic();
        Dirty(m, d);

        long rc = m.Sysfs.Write(Reset, value);

        Assert.That(rc, Is.EqualTo(Errno.EINVAL.Negative()));
        Assert.That(TotalResets(d), Is.Zero);
        Assert.That(m.ReadMmio32(d.ResourceStart(0) + 0x40), Is.EqualTo(0xfeedfaceu));
    }

    [TestCase("0x1")]
    [TestCase("0X01")]
    [TestCase("01")]
    [TestCase("+1")]
    public void OneInAnotherBase_IsStillOne(string value)
    {
        SimMachine m = PciMachines.Build(Json("\"flr\""));

        long rc = m.Sysfs.Write(Reset, value);

        Assert.That(rc, Is.EqualTo(value.Length + 1));
        Assert.That(m.Generic().ResetCount(PciResetKind.Flr), Is.EqualTo(1));
    }

    [Test]
    public void APmResetFromD3hot_IsEinval()
    {
        SimMachine m = PciMachines.Build(Json("\"pm\""));
        GenericPciDevice d = m.Generic();
        d.WriteConfig(d.PmCap + PciRegs.PmCtrl, 3, 2);
        d.Lock();
        int rc = d.ResetFunctionNoSaveLocked();
        d.Unlock();
        Assert.That(rc, Is.EqualTo(Errno.EINVAL.Negative()), "pci_pm_reset works from D0 only");
        Assert.That(d.ResetCount(PciResetKind.Pm), Is.Zero);
    }

    [Test]
    public void TheIrqFile_ShowsTheRoutedLine_AndSurvivesAHardwareReset()
    {
        SimMachine m = PciMachines.Build(Json("\"flr\""));
        GenericPciDevice d = m.Generic();
        string before = m.Sysfs.Read(PciMachines.Attr(PciMachines.Bdf, "irq"));
        Assert.That(before, Is.Not.EqualTo("0\n"));
        d.WriteConfig(d.ExpCap + PciRegs.ExpDevCtl, PciRegs.ExpDevCtlBcrFlr, 2);
        Assert.That(d.ReadConfig(PciRegs.InterruptLine, 1), Is.Zero, "the register is plain state a reset clears");
        Assert.That(m.Sysfs.Read(PciMachines.Attr(PciMachines.Bdf, "irq")), Is.EqualTo(before));
    }

    [Test]
    public void ResetOfAFunctionInD3hot_LeavesItInD0()
    {
        // pci_dev_save_and_disable() brings the function to D0 before saving its state.
        SimMachine m = PciMachines.Build(Json("\"flr\""));
        GenericPciDevice d = m.Generic();
        Dirty(m, d);
        d.WriteConfig(d.PmCap + PciRegs.PmCtrl, 3, 2);

        long rc = m.Sysfs.Write(Reset, "1");

        Assert.That(rc, Is.EqualTo(2));
        Assert.That(d.PowerState, Is.Zero);
        Assert.That(d.Bars[0]!.RoutedAt, Is.EqualTo(d.ResourceStart(0)), "decoding again");
    }

    [Test]
    public void ResetOfAFunctionThatLosesStateInD3hot_WakesItAndRestoresItsBars()
    {
        // pci_set_full_power_state(): the D3hot->D0 wake reset the function, pci_restore_bars() reprograms the BARs.
        SimMachine m = PciMachines.Build(Json("\"flr\",\"pm\""));
        GenericPciDevice d = m.Generic();
        Dirty(m, d);
        d.WriteConfig(d.PmCap + PciRegs.PmCtrl, 3, 2);

        long rc = m.Sysfs.Write(Reset, "1");

        Assert.That(rc, Is.EqualTo(2));
        Assert.That(d.PowerState, Is.Zero);
        Assert.That(d.ResetCount(PciResetKind.Pm), Is.EqualTo(1), "the wake");
        Assert.That(d.ResetCount(PciResetKind.Flr), Is.EqualTo(1), "the reset");
        Assert.That(d.ReadConfig(PciRegs.BaseAddress0, 4), Is.EqualTo((uint)d.ResourceStart(0)));
        Assert.That(d.ReadConfig(PciRegs.BaseAddress0 + 12, 4), Is.EqualTo((uint)(d.ResourceStart(2) >> 32)));
        Assert.That(d.ReadConfig(PciRegs.Command, 2), Is.Zero, "the wake cleared the command register before it was saved");
    }

    // ---- reset_method store.

    [Test]
    public void AnEmptyResetMethod_DisablesResets()
    {
        SimMachine m = PciMachines.Build(Json("\"flr\",\"pm\",\"bus\""));
        GenericPciDevice d = m.Generic();

        long rc = m.Sysfs.Write(ResetMethod, string.Empty);

        Assert.That(rc, Is.EqualTo(1));
        Assert.That(m.Sysfs.Read(ResetMethod), Is.Empty);
        Assert.That(m.Kernel.Log.Contains("pci 0000:01:00.0: All device reset methods disabled by user"), Is.True);
        Assert.That(m.Sysfs.Write(Reset, "1"), Is.EqualTo(Errno.ENOTTY.Negative()));
        Assert.That(TotalResets(d), Is.Zero);

        Assert.That(m.Sysfs.Write(ResetMethod, "default"), Is.EqualTo(8));
        Assert.That(m.Sysfs.Read(ResetMethod), Is.EqualTo("flr pm bus\n"));
        Assert.That(m.Sysfs.Write(Reset, "1"), Is.EqualTo(2));
        Assert.That(d.ResetCount(PciResetKind.Flr), Is.EqualTo(1));
    }

    [Test]
    public void Reordering_MakesTheResetUseTheFirstListedMethod()
    {
        SimMachine m = PciMachines.Build(Json("\"flr\",\"pm\",\"bus\""));
        GenericPciDevice d = m.Generic();
        Dirty(m, d);

        Assert.That(m.Sysfs.Write(ResetMethod, "pm flr"), Is.EqualTo(7));
        Assert.That(m.Sysfs.Read(ResetMethod), Is.EqualTo("pm flr\n"));
        Assert.That(m.Sysfs.Write(Reset, "1"), Is.EqualTo(2));

        Assert.That(d.ResetCount(PciResetKind.Pm), Is.EqualTo(1));
        Assert.That(d.ResetCount(PciResetKind.Flr), Is.Zero);
        Assert.That(d.PowerState, Is.Zero, "back in D0");
        Assert.That(d.ReadConfig(PciRegs.Command, 2), Is.EqualTo(PciRegs.CommandMemory | PciRegs.CommandMaster));
        Assert.That(m.ReadMmio32(d.ResourceStart(0) + 0x40), Is.Zero);

        Assert.That(m.Sysfs.Write(ResetMethod, "bus"), Is.EqualTo(4));
        Assert.That(m.Sysfs.Write(Reset, "1"), Is.EqualTo(2));
        Assert.That(d.ResetCount(PciResetKind.Bus), Is.EqualTo(1));
        Assert.That(m.Bridge("0000:00:01.0").ReadConfig(PciRegs.BridgeControl, 2) & PciRegs.BridgeCtlBusReset, Is.Zero, "the bridge released the bus");
    }

    [Test]
    public void AnUnknownMethod_IsEinval_LogsIt_AndChangesNothing()
    {
        SimMachine m = PciMachines.Build(Json("\"flr\",\"pm\",\"bus\""));

        long rc = m.Sysfs.Write(ResetMethod, "pm reboot");

        Assert.That(rc, Is.EqualTo(Errno.EINVAL.Negative()));
        Assert.That(m.Kernel.Log.Messages.Where(x => x.Text == "pci 0000:01:00.0: Invalid reset method 'reboot'").Select(x => x.Level), Is.EqualTo(new[] { LogLevel.Err }));
        Assert.That(m.Sysfs.Read(ResetMethod), Is.EqualTo("flr pm bus\n"));
    }

    [Test]
    public void AnUnsupportedMethod_IsEinval_AndChangesNothing()
    {
        SimMachine m = PciMachines.Build(Json("\"flr\",\"bus\""));

        long rc = m.Sysfs.Write(ResetMethod, "flr pm");
        long rc2 = m.Sysfs.Write(ResetMethod, "acpi");

        Assert.That(rc, Is.EqualTo(Errno.EINVAL.Negative()));
        Assert.That(rc2, Is.EqualTo(Errno.EINVAL.Negative()));
        Assert.That(m.Kernel.Log.Messages.Where(x => x.Text == "pci 0000:01:00.0: Unsupported reset method 'pm'").Select(x => x.Level), Is.EqualTo(new[] { LogLevel.Err }));
        Assert.That(m.Kernel.Log.Contains("pci 0000:01:00.0: Unsupported reset method 'acpi'"), Is.True);
        Assert.That(m.Sysfs.Read(ResetMethod), Is.EqualTo("flr bus\n"));
    }

    [Test]
    public void SevenNamesFit_AndAnEighthIsTooMany()
    {
        SimMachine m = PciMachines.Build(Json("\"flr\",\"pm\",\"bus\""));
        string seven = string.Join(' ', Enumerable.Repeat("flr", 7));

        Assert.That(m.Sysfs.Write(ResetMethod, seven), Is.EqualTo(seven.Length + 1), "PCI_NUM_RESET_METHODS - 1, duplicates allowed");
        Assert.That(m.Sysfs.Read(ResetMethod), Is.EqualTo(seven + "\n"));
        Assert.That(m.Sysfs.Write(ResetMethod, "pm " + seven), Is.EqualTo(Errno.EINVAL.Negative()));
        Assert.That(m.Kernel.Log.Contains("pci 0000:01:00.0: Too many reset methods"), Is.True);
        Assert.That(m.Sysfs.Read(ResetMethod), Is.EqualTo(seven + "\n"));
    }

    [Test]
    public void ExtraSpaces_BetweenNamesAreSkipped()
    {
        SimMachine m = PciMachines.Build(Json("\"flr\",\"pm\",\"bus\""));

        Assert.That(m.Sysfs.Write(ResetMethod, "bus  flr "), Is.EqualTo(10));

        Assert.That(m.Sysfs.Read(ResetMethod), Is.EqualTo("bus flr\n"));
    }

    // ---- Hardware resets.

    [Test]
    public void AnFlrThroughDeviceControl_ClearsTheFunction_WithNothingRestored()
    {
        SimMachine m = PciMachines.Build(Json("\"flr\""));
        GenericPciDevice d = m.Generic();
        Dirty(m, d);
        int devctl = d.ExpCap + PciRegs.ExpDevCtl;

        d.WriteConfig(devctl, d.ReadConfig(devctl, 2) | PciRegs.ExpDevCtlBcrFlr, 2);

        Assert.That(d.ResetCount(PciResetKind.Flr), Is.EqualTo(1));
        Assert.That(d.ReadConfig(devctl, 2) & PciRegs.ExpDevCtlBcrFlr, Is.Zero, "Initiate FLR reads as zero");
        Assert.That(d.ReadConfig(PciRegs.Command, 2), Is.Zero);
        Assert.That(d.ReadConfig(PciRegs.BaseAddress0, 4), Is.Zero);
        Assert.That(d.ReadConfig(PciRegs.BaseAddress0 + 8, 4), Is.EqualTo(PciRegs.BarMemType64 | PciRegs.BarMemPrefetch));
        Assert.That(d.Bars[0]!.RoutedAt, Is.EqualTo(-1));
        Assert.That(d.MsixEnabled, Is.False);
        Assert.That(d.ResourceStart(0), Is.Not.Zero, "the kernel's resource is untouched");
        Assert.That(m.ReadMmio32(d.ResourceStart(0) + 0x40), Is.EqualTo(0xffffffffu));
    }

    [Test]
    public void TheFlrBit_DoesNothingWithoutTheCapability()
    {
        SimMachine m = PciMachines.Build(Json("\"pm\""));
        GenericPciDevice d = m.Generic();
        Dirty(m, d);
        int devctl = d.ExpCap + PciRegs.ExpDevCtl;

        d.WriteConfig(devctl, PciRegs.ExpDevCtlBcrFlr, 2);

        Assert.That(TotalResets(d), Is.Zero);
        Assert.That(d.ReadConfig(devctl, 2) & PciRegs.ExpDevCtlBcrFlr, Is.Zero);
        Assert.That(d.ReadConfig(PciRegs.Command, 2), Is.EqualTo(PciRegs.CommandMemory | PciRegs.CommandMaster));
    }

    [Test]
    public void D3hot_StopsDecode_AndD0ResetsWithoutNoSoftReset()
    {
        SimMachine m = PciMachines.Build(Json("\"pm\""));
        GenericPciDevice d = m.Generic();
        Dirty(m, d);
        int pmctrl = d.PmCap + PciRegs.PmCtrl;
        Assert.That(d.ReadConfig(pmctrl, 2) & PciRegs.PmCtrlNoSoftReset, Is.Zero);

        d.WriteConfig(pmctrl, 3, 2);

        Assert.That(d.PowerState, Is.EqualTo(3));
        Assert.That(d.Bars[0]!.RoutedAt, Is.EqualTo(-1));
        Assert.That(m.ReadMmio32(d.ResourceStart(0) + 0x40), Is.EqualTo(0xffffffffu));
        Assert.That(TotalResets(d), Is.Zero, "entering D3hot is not a reset");

        d.WriteConfig(pmctrl, 0, 2);

        Assert.That(d.ResetCount(PciResetKind.Pm), Is.EqualTo(1));
        Assert.That(TotalResets(d), Is.EqualTo(1));
        Assert.That(d.PowerState, Is.Zero);
        Assert.That(d.ReadConfig(PciRegs.BaseAddress0, 4), Is.Zero);
        Assert.That(d.ReadConfig(PciRegs.Command, 2), Is.Zero);
    }

    [Test]
    public void D3hotToD0_WithNoSoftReset_KeepsTheState()
    {
        SimMachine m = PciMachines.Build(Json("\"flr\""));
        GenericPciDevice d = m.Generic();
        Dirty(m, d);
        int pmctrl = d.PmCap + PciRegs.PmCtrl;
        uint bar0 = d.ReadConfig(PciRegs.BaseAddress0, 4);

        d.WriteConfig(pmctrl, 3, 2);
        d.WriteConfig(pmctrl, 0, 2);

        Assert.That(d.ReadConfig(pmctrl, 2) & PciRegs.PmCtrlNoSoftReset, Is.EqualTo(PciRegs.PmCtrlNoSoftReset));
        Assert.That(TotalResets(d), Is.Zero);
        Assert.That(d.ReadConfig(PciRegs.BaseAddress0, 4), Is.EqualTo(bar0));
        Assert.That(m.ReadMmio32(d.ResourceStart(0) + 0x40), Is.EqualTo(0xfeedfaceu), "decoding again, contents kept");
    }

    [Test]
    public void D1AndD2_AreNotImplemented_AndTheStateStays()
    {
        SimMachine m = PciMachines.Build(Json("\"pm\""));
        GenericPciDevice d = m.Generic();
        int pmctrl = d.PmCap + PciRegs.PmCtrl;

        d.WriteConfig(pmctrl, 2, 2);
        Assert.That(d.PowerState, Is.Zero);
        d.WriteConfig(pmctrl, 3, 2);
        d.WriteConfig(pmctrl, 1, 2);
        Assert.That(d.PowerState, Is.EqualTo(3));
        Assert.That(TotalResets(d), Is.Zero);
    }

    [Test]
    public void SecondaryBusReset_ResetsEveryFunctionBelowTheBridge_AndNothingElse()
    {
        SimMachine m = PciMachines.Build(TreeJson);

        int rc = m.Bridge("0000:00:01.0").SecondaryBusReset();

        Assert.That(rc, Is.Zero);
        foreach (string bdf in TreeBelowFirstPort)
        {
            Assert.That(m.Pci.Find(bdf)!.ResetCount(PciResetKind.Bus), Is.EqualTo(1), bdf);
        }

        foreach (string bdf in TreeOthers)
        {
            Assert.That(TotalResets(m.Pci.Find(bdf)!), Is.Zero, bdf);
        }
    }

    [Test]
    public void TheBusResetBitInBridgeControl_ResetsTheBusBelow_OnItsRisingEdge()
    {
        SimMachine m = PciMachines.Build(TreeJson);
        PciBridge down = m.Bridge("0000:02:01.0");
        GenericPciDevice ep = m.Generic("0000:04:00.0");
        GenericPciDevice other = m.Generic("0000:03:00.0");
        ep.EnableMemoryAndMaster();

        down.WriteConfig(PciRegs.BridgeControl, PciRegs.BridgeCtlBusReset, 2);
        down.WriteConfig(PciRegs.BridgeControl, PciRegs.BridgeCtlBusReset, 2);

        Assert.That(ep.ResetCount(PciResetKind.Bus), Is.EqualTo(1), "held, not pulsed again");
        Assert.That(ep.ReadConfig(PciRegs.Command, 2), Is.Zero);
        Assert.That(TotalResets(other), Is.Zero);
        Assert.That(TotalResets(down), Is.Zero, "the bridge itself is not reset");

        down.WriteConfig(PciRegs.BridgeControl, 0, 2);
        down.WriteConfig(PciRegs.BridgeControl, PciRegs.BridgeCtlBusReset, 2);
        Assert.That(ep.ResetCount(PciResetKind.Bus), Is.EqualTo(2));
    }

    [Test]
    public void SecondaryBusResetOnAnEndpoint_IsEnotty()
    {
        SimMachine m = PciMachines.Build(TreeJson);

        Assert.That(m.Generic("0000:03:00.0").SecondaryBusReset(), Is.EqualTo(Errno.ENOTTY.Negative()));
    }

    // ---- Locking and scheduler modes.

    [Test]
    public void TryResetFunction_IsEagainWhileAnotherTaskHoldsDeviceLock()
    {
        SimMachine m = PciMachines.Build(Json("\"flr\""), SchedulerMode.Controlled, seed: 7);
        GenericPciDevice d = m.Generic();
        SimKernel k = m.Kernel;
        int whileHeld = 0, afterRelease = -1;
        long resetsWhileHeld = -1;

        RunResult r = k.Run(() =>
        {
            var held = new Completion(k, "held");
            var release = new Completion(k, "release");
            KTask holder = k.Spawn("holder", () =>
            {
                d.Lock();
                held.Complete();
                release.Wait();
                d.Unlock();
            });
            held.Wait();
            whileHeld = d.TryResetFunction();
            resetsWhileHeld = TotalResets(d);
            release.Complete();
            holder.Join();
            afterRelease = d.TryResetFunction();
        });

        Runs.AssertPassed(r);
        Assert.That(whileHeld, Is.EqualTo(Errno.EAGAIN.Negative()));
        Assert.That(resetsWhileHeld, Is.Zero);
        Assert.That(afterRelease, Is.Zero);
        Assert.That(d.ResetCount(PciResetKind.Flr), Is.EqualTo(1));
    }

    [TestCase("linux-6.12", true)]
    [TestCase("linux-6.1", false)]
    public void ResetFunction_TakesTheUpstreamBridgesDeviceLockFromLinux6_10(string profile, bool waitsForBridge)
    {
        var k = new SimKernel(new KernelConfig { Mode = SchedulerMode.Controlled, Seed = 5, Profile = KernelProfile.Parse(profile), StepBudget = 200_000 });
        SimMachine m = MachineBuilder.Build(MachineDescriptionReader.Parse(Json("\"flr\"")), k);
        GenericPciDevice d = m.Generic();
        PciDevice bridge = d.OnBus!.Self!;
        long resetsWhileBridgeHeld = -1;
        int rc = -1;

        RunResult r = k.Run(() =>
        {
            var held = new Completion(k, "held");
            var release = new Completion(k, "release");
            KTask holder = k.Spawn("bridge-holder", () =>
            {
                bridge.Lock();
                held.Complete();
                release.Wait();
                resetsWhileBridgeHeld = TotalResets(d);
                bridge.Unlock();
            });
            held.Wait();
            KTask resetter = k.Spawn("resetter", () => rc = d.ResetFunction());

            // Let the resetter run as far as it can while the bridge is held.
            for (int i = 0; i < 50; i++)
            {
                KTask.Schedule();
            }

            release.Complete();
            resetter.Join();
            holder.Join();
        });

        Runs.AssertPassed(r);
        Assert.That(rc, Is.Zero);
        Assert.That(resetsWhileBridgeHeld, Is.EqualTo(waitsForBridge ? 0 : 1));
        Assert.That(d.ResetCount(PciResetKind.Flr), Is.EqualTo(1));
    }

    [Test]
    public void ResetFunctionLocked_NeedsTheCallerToHoldDeviceLock()
    {
        SimMachine m = PciMachines.Build(Json("\"flr\""));
        GenericPciDevice d = m.Generic();

        d.Lock();
        int rc = d.ResetFunctionLocked();
        d.Unlock();

        Assert.That(rc, Is.Zero);
        Assert.That(d.ResetCount(PciResetKind.Flr), Is.EqualTo(1));
    }

    [TestCase(SchedulerMode.Real)]
    [TestCase(SchedulerMode.Controlled)]
    public void EveryMethod_ResetsInBothSchedulerModes_AndSleepsOnTheVirtualClock(SchedulerMode mode)
    {
        SimMachine m = PciMachines.Build(Json("\"flr\",\"pm\",\"bus\""), mode);
        GenericPciDevice d = m.Generic();
        SimKernel k = m.Kernel;
        var rcs = new List<long>();
        long start = 0, end = 0;

        RunResult r = k.Run(() =>
        {
            Dirty(m, d);
            start = k.Clock.NowNs;
            foreach (string method in new[] { "flr", "pm", "bus" })
            {
                rcs.Add(m.Sysfs.Write(ResetMethod, method));
                rcs.Add(m.Sysfs.Write(Reset, "1"));
            }

            end = k.Clock.NowNs;
        });

        Runs.AssertPassed(r);
        Assert.That(rcs, Is.EqualTo(new long[] { 4, 2, 3, 2, 4, 2 }));
        Assert.That((d.ResetCount(PciResetKind.Flr), d.ResetCount(PciResetKind.Pm), d.ResetCount(PciResetKind.Bus)), Is.EqualTo((1L, 1L, 1L)));
        Assert.That(end - start, Is.GreaterThanOrEqualTo((100L + 20 + 102) * 1_000_000), "flr 100 ms, pm 2 x 10 ms, bus 2 + 100 ms");
        Assert.That(d.ReadConfig(PciRegs.Command, 2), Is.EqualTo(PciRegs.CommandMemory | PciRegs.CommandMaster));
    }
}
