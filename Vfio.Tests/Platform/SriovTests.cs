// Tests SR-IOV on the simulated machine (Vfio.Platform/Pci/PciDevice.Sriov.cs,
// SriovCapability.cs, Devices/GenericVirtualFunction.cs): the PF of the default machine, the
// sriov_numvfs store's checks and errnos in the PCI core's order, VFs as functions on the
// PF's bus (ids, no COMMAND.MEM, decode by the PF's VF MSE, links, groups), VF Enable lost in
// a PF reset and given back by the PCI core's restore, sriov_drivers_autoprobe, and the
// machine description's "sriov" entry.

using NUnit.Framework;
using Vfio.Kernel;
using Vfio.Platform;
using Vfio.Platform.Devices;
using Vfio.Platform.Machine;
using Vfio.Platform.Pci;
using Vfio.Tests.Platform.Pci;

namespace Vfio.Tests.Platform;

[TestFixture]
public sealed class SriovTests
{
    /// <summary>The default machine's SR-IOV PF (looked up by its ids: its bus number depends on the ports before it).</summary>
    internal static PciDevice Pf(SimMachine m)
        => m.Pci.Devices.OfType<PciDevice>().Single(d => d.Identity is { Vendor: 0x8086, Device: 0x10c9 } && !d.IsVirtfn);

    private static string Attr(PciDevice d, string name) => PciMachines.Attr(d.Name, name);

    /// <summary>Builds the default machine on a <paramref name="mode"/> kernel and runs <paramref name="body"/> as its main task.</summary>
    private static void Run(SchedulerMode mode, Action<SimMachine> body, ulong seed = 1)
    {
        SimKernel k = Runs.Kernel(mode, seed);
        SimMachine m = MachineBuilder.Default(k);
        Runs.AssertPassed(k.Run("main", () => body(m)));
    }

    /// <summary>Binds a stand-in PF driver that enables VFs the way pci_sriov_configure_simple does.</summary>
    private static HostPciDriver BindSimplePfDriver(SimMachine m, PciDevice pf)
    {
        var drv = new HostPciDriver("pf-stub", new PciDeviceId(0x8086, 0x10c9)) { OnSriovConfigure = (d, n) => d.SriovConfigureSimple(n) };
        Assert.That(m.Pci.RegisterDriver(drv), Is.Zero);
        Assert.That(pf.Driver, Is.SameAs(drv));
        return drv;
    }

    [Test]
    public void ThePf_HasItsCapability_AndTheSriovAttributes()
    {
        SimMachine m = MachineBuilder.Default(Runs.Kernel(SchedulerMode.Real));
        PciDevice pf = Pf(m);
        int cap = pf.SriovCap;

        Assert.That(pf.IsPhysfn, Is.True);
        Assert.That(pf.Config.FindExtCapability(SriovRegs.ExtCapId), Is.EqualTo(cap).And.Not.Zero);
        Assert.That(pf.ReadConfig(cap + SriovRegs.TotalVf, 2), Is.EqualTo(7));
        Assert.That(pf.ReadConfig(cap + SriovRegs.VfDid, 2), Is.EqualTo(0x10ca));
        Assert.That(pf.ReadConfig(cap + SriovRegs.SysPgsize, 4), Is.EqualTo(1), "pci_iov_init chose 4K");
        Assert.That(pf.ReadConfig(cap + SriovRegs.Ctrl, 2), Is.Zero);
        Assert.That(pf.Driver, Is.Null, "no driver at boot");
        Assert.That(m.Sysfs.Read(Attr(pf, "sriov_totalvfs")), Is.EqualTo("7\n"));
        Assert.That(m.Sysfs.Read(Attr(pf, "sriov_numvfs")), Is.EqualTo("0\n"));
        Assert.That(m.Sysfs.Read(Attr(pf, "sriov_offset")), Is.EqualTo("1\n"));
        Assert.That(m.Sysfs.Read(Attr(pf, "sriov_stride")), Is.EqualTo("1\n"));
        Assert.That(m.Sysfs.Read(Attr(pf, "sriov_vf_device")), Is.EqualTo("10ca\n"));
        Assert.That(m.Sysfs.Read(Attr(pf, "sriov_drivers_autoprobe")), Is.EqualTo("1\n"));
        foreach (SriovBar? w in pf.SriovBars)
        {
            if (w is not null)
            {
                Assert.That(w.ResourceStart, Is.Not.Zero.And.EqualTo(w.ResourceStart & ~(w.VfSize - 1)), $"IOV window {w.Index} placed, aligned to the VF BAR size");
            }
        }

        Assert.That(m.Sysfs.Read("/sys/bus/pci/devices/0000:01:00.0/sriov_totalvfs", out int err), Is.Null, "edu is no PF");
        Assert.That(err, Is.Not.Zero);
        Assert.That(m.Pci.Find("0000:01:00.0")!.IsPhysfn, Is.False);
    }

    [Test]
    public void SriovNumvfs_ChecksInTheKernelsOrder([Values] SchedulerMode mode)
    {
        Run(mode, m =>
        {
            PciDevice pf = Pf(m);
            string numvfs = Attr(pf, "sriov_numvfs");
            Assert.That(m.Sysfs.Write(numvfs, "two"), Is.EqualTo(Errno.EINVAL.Negative()), "kstrtou16");
            Assert.That(m.Sysfs.Write(numvfs, "70000"), Is.EqualTo(Errno.EINVAL.Negative()), "kstrtou16 overflow: every parse failure is EINVAL");
            Assert.That(m.Sysfs.Write(numvfs, "8"), Is.EqualTo(Errno.ERANGE.Negative()), "above sriov_totalvfs, before any driver check");
            Assert.That(m.Sysfs.Write(numvfs, "0"), Is.EqualTo(2), "the current count is a no-op, even without a driver");
            Assert.That(m.Sysfs.Write(numvfs, "2"), Is.EqualTo(Errno.ENOENT.Negative()), "no driver bound");

            var plain = new HostPciDriver("pf-plain", new PciDeviceId(0x8086, 0x10c9));
            Assert.That(m.Pci.RegisterDriver(plain), Is.Zero);
            Assert.That(m.Sysfs.Write(numvfs, "2"), Is.EqualTo(Errno.ENOENT.Negative()), "a driver without sriov_configure");
            Assert.That(m.Kernel.Log.Contains("driver does not support SR-IOV configuration via sysfs"), Is.True);
            m.Pci.UnregisterDriver(plain);

            BindSimplePfDriver(m, pf);
            Assert.That(m.Sysfs.Write(numvfs, "3"), Is.EqualTo(2));
            Assert.That(pf.NumVfs, Is.EqualTo(3));
            Assert.That(m.Sysfs.Read(numvfs), Is.EqualTo("3\n"));
            Assert.That(m.Sysfs.Write(numvfs, "3"), Is.EqualTo(2), "the same count again is a no-op");
            Assert.That(m.Sysfs.Write(numvfs, "2"), Is.EqualTo(Errno.EBUSY.Negative()), "another count while enabled");
            Assert.That(pf.NumVfs, Is.EqualTo(3), "the refused write changed nothing");
            Assert.That(pf.VirtualFunctions, Has.Count.EqualTo(3));
            Assert.That(pf.EnableSriov(2), Is.EqualTo(Errno.EINVAL.Negative()), "pci_enable_sriov twice");

            Assert.That(m.Sysfs.Write(numvfs, "0"), Is.EqualTo(2));
            Assert.That(pf.NumVfs, Is.Zero);
            Assert.That(pf.VirtualFunctions, Is.Empty);
            Assert.That(m.Sysfs.Write(numvfs, "0x7"), Is.EqualTo(4), "base 0: hex");
            Assert.That(pf.NumVfs, Is.EqualTo(7));
            Assert.That(m.Sysfs.Write(numvfs, "0"), Is.EqualTo(2));
        });
    }

    [Test]
    public void Vfs_AreFunctionsOnThePfsBus_WithTheirIdsFromThePf([Values] SchedulerMode mode)
    {
        Run(mode, m =>
        {
            PciDevice pf = Pf(m);
            BindSimplePfDriver(m, pf);
            Assert.That(m.Sysfs.Write(Attr(pf, "sriov_numvfs"), "2"), Is.EqualTo(2));

            IReadOnlyList<PciDevice> vfs = pf.VirtualFunctions;
            Assert.That(vfs.Select(v => v.Name), Is.EqualTo(new[] { PciDevice.FormatName(0, pf.BusNumber, 0, 1), PciDevice.FormatName(0, pf.BusNumber, 0, 2) }));
            PciDevice vf = vfs[0];
            Assert.That(vf, Is.InstanceOf<GenericVirtualFunction>());
            Assert.That(vf.IsVirtfn, Is.True);
            Assert.That(vf.Physfn, Is.SameAs(pf));
            Assert.That(vf.VfId, Is.Zero);
            Assert.That(vf.OnBus, Is.SameAs(pf.OnBus));
            Assert.That(m.Pci.Find(vf.Name), Is.SameAs(vf));

            // The hardware: all-ones ids, no INTx pin, not multifunction, COMMAND.MEM hardwired 0.
            Assert.That(vf.ReadConfig(PciRegs.VendorId, 4), Is.EqualTo(0xffffffffu));
            Assert.That(vf.ReadConfig(PciRegs.ClassDevice, 2), Is.EqualTo(0x0200));
            Assert.That(vf.ReadConfig(PciRegs.InterruptPin, 1), Is.Zero);
            Assert.That(vf.IsMultifunction, Is.False);
            vf.WriteConfig(PciRegs.Command, 0xffff, 2);
            Assert.That(vf.ReadConfig(PciRegs.Command, 2) & (PciRegs.CommandMemory | PciRegs.CommandIo | PciRegs.CommandIntxDisable), Is.Zero);
            Assert.That(vf.ReadConfig(PciRegs.Command, 2) & PciRegs.CommandMaster, Is.Not.Zero);
            Assert.That(vf.NoCommandMemory, Is.True);
            Assert.That(vf.MsixVectors, Is.EqualTo(3));

            // The PCI core's view: vendor from the PF, device from the VF Device ID; the links.
            Assert.That(m.Sysfs.Read(Attr(vf, "vendor")), Is.EqualTo("0x8086\n"));
            Assert.That(m.Sysfs.Read(Attr(vf, "device")), Is.EqualTo("0x10ca\n"));
            Assert.That(m.Sysfs.ReadLink(Attr(pf, "virtfn1")), Does.EndWith(vfs[1].Name));
            Assert.That(m.Sysfs.ReadLink(Attr(vf, "physfn")), Does.EndWith(pf.Name));
            Assert.That(m.Sysfs.Read(Attr(vf, "sriov_numvfs"), out _), Is.Null, "a VF has no SR-IOV attributes");

            // BARs: VF n's slice of the IOV window.
            SriovBar w0 = pf.SriovBars[0]!;
            Assert.That(vfs[1].ResourceStart(0), Is.EqualTo(w0.ResourceStart + w0.VfSize));
            Assert.That(vfs[1].ResourceLength(0), Is.EqualTo(w0.VfSize));
            Assert.That(vf.ReadConfig(PciRegs.BaseAddress0, 4), Is.Zero, "a VF's BAR registers read 0");

            m.Sysfs.Write(Attr(pf, "sriov_numvfs"), "0");
        }, seed: 3);
    }

    [Test]
    public void VfMemoryDecode_FollowsThePfsVfMse()
    {
        Run(SchedulerMode.Controlled, m =>
        {
            PciDevice pf = Pf(m);
            BindSimplePfDriver(m, pf);
            Assert.That(pf.SriovConfigureSimple(1), Is.EqualTo(1));
            PciDevice vf = pf.VirtualFunctions[0];
            long bar0 = vf.ResourceStart(0);
            Assert.That(vf.Bars[0]!.RoutedAt, Is.EqualTo(bar0), "VF MSE on: decoded though COMMAND.MEM is 0");
            m.Memory.Write(bar0 + 0x100, BitConverter.GetBytes(0xfeedf00du));
            byte[] b = new byte[4];
            m.Memory.Read(bar0 + 0x100, b);
            Assert.That(BitConverter.ToUInt32(b), Is.EqualTo(0xfeedf00du));

            int ctrl = pf.SriovCap + SriovRegs.Ctrl;
            pf.WriteConfig(ctrl, SriovRegs.CtrlVfe, 2);
            Assert.That(vf.Bars[0]!.RoutedAt, Is.EqualTo(-1), "VF MSE off: no decode");
            Assert.That(vf.ReadConfig(PciRegs.ClassDevice, 2), Is.EqualTo(0x0200), "still enabled: config answers");
            pf.WriteConfig(ctrl, SriovRegs.CtrlVfe | SriovRegs.CtrlMse, 2);
            Assert.That(vf.Bars[0]!.RoutedAt, Is.EqualTo(bar0));
            pf.DisableSriov();
            Assert.That(vf.Bars[0]!.RoutedAt, Is.EqualTo(-1));
        });
    }

    [Test]
    public void APfReset_ClearsVfEnable_AndTheRestoreBringsTheVfsBack()
    {
        Run(SchedulerMode.Controlled, m =>
        {
            PciDevice pf = Pf(m);
            BindSimplePfDriver(m, pf);
            Assert.That(pf.SriovConfigureSimple(2), Is.EqualTo(2));
            PciDevice vf = pf.VirtualFunctions[1];
            long bar0 = vf.ResourceStart(0);
            m.Memory.Write(bar0, BitConverter.GetBytes(0x12345678u));
            PciSavedState saved = pf.StoreSavedState();

            // A bare FLR: VF Enable goes, the VFs stop answering and forget their state.
            pf.WriteConfig(pf.ExpCap + PciRegs.ExpDevCtl, PciRegs.ExpDevCtlBcrFlr, 2);
            Assert.That(vf.ReadConfig(PciRegs.ClassDevice, 2), Is.EqualTo(0xffff));
            Assert.That(vf.Bars[0]!.RoutedAt, Is.EqualTo(-1));

            // pci_restore_state() puts VF Enable back from the PCI core's own state.
            pf.LoadAndRestoreState(saved);
            Assert.That(pf.ReadConfig(pf.SriovCap + SriovRegs.NumVf, 2), Is.EqualTo(2));
            Assert.That(vf.ReadConfig(PciRegs.ClassDevice, 2), Is.EqualTo(0x0200));
            Assert.That(vf.Bars[0]!.RoutedAt, Is.EqualTo(bar0));
            byte[] b = new byte[4];
            m.Memory.Read(bar0, b);
            Assert.That(BitConverter.ToUInt32(b), Is.Zero, "the VF went through a reset");

            // pci_reset_function() on the PF: save, reset, restore.
            Assert.That(pf.ResetFunction(), Is.Zero);
            Assert.That(vf.ReadConfig(PciRegs.ClassDevice, 2), Is.EqualTo(0x0200));
            pf.SriovConfigureSimple(0);
        });
    }

    [Test]
    public void EachVf_GetsAGroupOfItsOwn_BehindTheAcsPort_AndLosesItWhenDisabled()
    {
        Run(SchedulerMode.Controlled, m =>
        {
            PciDevice pf = Pf(m);
            BindSimplePfDriver(m, pf);
            Assert.That(pf.SriovConfigureSimple(3), Is.EqualTo(3));
            var groups = pf.VirtualFunctions.Select(v => v.IommuGroup!.Id).ToList();
            groups.Add(pf.IommuGroup!.Id);
            Assert.That(groups, Is.Unique);
            foreach (PciDevice vf in pf.VirtualFunctions)
            {
                Assert.That(vf.IommuGroup!.Devices, Has.Count.EqualTo(1));
                Assert.That(m.Sysfs.ReadLink(Attr(vf, "iommu_group")), Does.EndWith($"/{vf.IommuGroup.Id}"));
            }

            int first = groups[0];
            pf.SriovConfigureSimple(0);
            Assert.That(m.Iommu!.Groups.Select(g => g.Id), Does.Not.Contain(first), "the VF's group went with it");
        });
    }

    [Test]
    public void DriversAutoprobeOff_LeavesNewVfsUnbound_UnlessTheyHaveADriverOverride()
    {
        Run(SchedulerMode.Controlled, m =>
        {
            PciDevice pf = Pf(m);
            BindSimplePfDriver(m, pf);
            var vfDriver = new HostPciDriver("igbvf", new PciDeviceId(0x8086, 0x10ca));
            Assert.That(m.Pci.RegisterDriver(vfDriver), Is.Zero);

            Assert.That(pf.SriovConfigureSimple(1), Is.EqualTo(1));
            Assert.That(pf.VirtualFunctions[0].Driver, Is.SameAs(vfDriver), "autoprobe on: the VF driver takes it");
            pf.SriovConfigureSimple(0);

            Assert.That(m.Sysfs.Write(Attr(pf, "sriov_drivers_autoprobe"), "maybe"), Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That(m.Sysfs.Write(Attr(pf, "sriov_drivers_autoprobe"), "0"), Is.EqualTo(2));
            Assert.That(pf.SriovConfigureSimple(1), Is.EqualTo(1));
            PciDevice vf = pf.VirtualFunctions[0];
            Assert.That(vf.Driver, Is.Null, "pci_device_can_probe() refuses");
            Assert.That(m.Sysfs.Write("/sys/bus/pci/drivers_probe", vf.Name), Is.GreaterThan(0));
            Assert.That(vf.Driver, Is.Null);
            pf.SriovConfigureSimple(0);
        });
    }

    [Test]
    public void EnablingWithAnUnassignedIovWindow_IsEnomem()
    {
        const string json = """
            {"memory":{"ram":"1G"},"iommu":null,"pci":[{"slot":1,"type":"root-port","acs":true,"children":[
              {"slot":0,"type":"generic","vendor":"0x8086","device":"0x10c9","bars":[{"index":0,"size":"16K"}],
               "sriov":{"totalVfs":2,"vfDevice":"0x10ca","bars":[{"index":0,"size":"16K"}]}}]}]}
            """;
        SimMachine m = PciMachines.Build(json, SchedulerMode.Controlled);
        PciDevice pf = m.Pci.Find(PciMachines.Bdf)!;
        pf.SriovBars[0]!.ResourceStart = 0;
        Runs.AssertPassed(m.Kernel.Run("main", () =>
        {
            Assert.That(pf.EnableSriov(1), Is.EqualTo(Errno.ENOMEM.Negative()));
            Assert.That(pf.ReadConfig(pf.SriovCap + SriovRegs.Ctrl, 2), Is.Zero, "nothing was enabled");
            Assert.That(m.Pci.Find(PciDevice.FormatName(0, 1, 0, 1)), Is.Null);
            Assert.That(m.Pci.Find("0000:01:00.1")?.Name, Is.Null);
        }));
    }

    [TestCase("""{"slot":0,"type":"edu","sriov":{"totalVfs":1,"vfDevice":1}}""", "sriov", "only the generic model")]
    [TestCase("""{"slot":0,"type":"generic","sriov":{"totalVfs":1}}""", "sriov.vfDevice", "VF device id")]
    [TestCase("""{"slot":0,"type":"generic","sriov":{"totalVfs":200,"vfDevice":1,"offset":128}}""", "sriov.totalVfs", "beyond the PF's bus")]
    [TestCase("""{"slot":0,"type":"generic","sriov":{"totalVfs":2,"vfDevice":1,"bars":[{"index":0,"size":"1K"}]}}""", "sriov.bars", "at least 4K")]
    [TestCase("""{"slot":0,"type":"generic","sriov":{"totalVfs":2,"vfDevice":1,"colour":"red"}}""", "sriov.colour", "")]
    public void TheSriovEntry_IsChecked(string function, string field, string fragment)
    {
        string json = $$"""{"pci":[{"slot":1,"type":"root-port","children":[{{function}}]}]}""";
        var e = Assert.Throws<MachineDescriptionException>(() => MachineDescriptionReader.Parse(json))!;
        Assert.That(e.Field, Does.EndWith(field));
        Assert.That(e.Message, Does.Contain(fragment));
    }
}
