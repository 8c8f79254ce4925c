// Tests vfio-pci's SR-IOV support (Vfio.Pci/VfioPciCoreDevice.Sriov.cs and the SR-IOV bits
// of VfioPciDriver, VfioPciCoreDevice, Config, Ioctl and Rdwr) on the default machine's SR-IOV
// NIC PF: enable_sriov, sriov_configure's two "twice" errnos, the bus notifier capturing
// VFs, probe of a PF with VFs (EBUSY), the VF token at GET_DEVICE_FD (DF-05, DF-16, DF-17)
// and through VFIO_DEVICE_FEATURE_PCI_VF_TOKEN (DF-19), a VF's synthesised ids and BAR access
// without COMMAND.MEM, no INTx for VFs, and a PF unbind that waits for an open VF. After each
// rejected call the token, its user count, the open counts and the process's fds are as
// they were.

using System.Buffers.Binary;
using NUnit.Framework;
using Vfio.Core.Client;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Pci;
using Vfio.Platform.Pci;
using Vfio.Sim;
using Vfio.Tests.Platform;

namespace Vfio.Tests.Pci;

[TestFixture]
public sealed class VfioPciSriovTests
{
    private const string U1 = "bd8d9d2b-5a5f-4f5a-a211-f591514ba1f3";
    private const string U2 = "61d1a2a4-2a9a-4d1e-9c56-a0c5f3e1b7a0";
    private const string Unbind = "/sys/bus/pci/drivers/vfio-pci/unbind";

    private static readonly VfioPciOptions s_sriov = new() { EnableSriov = true };

    private static void Run(SchedulerMode mode, Action<VfioPciRig> body, ulong seed = 1, VfioPciOptions? options = null)
        => VfioPciRig.Run(mode, body, seed, options ?? s_sriov);

    private static string NumVfs(PciDevice pf) => $"/sys/bus/pci/devices/{pf.Name}/sriov_numvfs";

    /// <summary>Binds the PF to vfio-pci and enables <paramref name="n"/> VFs through sysfs.</summary>
    private static (PciDevice Pf, IReadOnlyList<PciDevice> Vfs) EnableVfs(VfioPciRig rig, int n)
    {
        PciDevice pf = SriovTests.Pf(rig.M);
        rig.BindToVfio(pf.Name);
        Assert.That(rig.M.Sysfs.Write(NumVfs(pf), n.ToString(System.Globalization.CultureInfo.InvariantCulture)), Is.GreaterThan(0), ErrorReason.Current);
        Assert.That(pf.NumVfs, Is.EqualTo(n));
        return (pf, pf.VirtualFunctions);
    }

    private static UInt128 Uuid(string s)
    {
        Assert.That(VfioPciCoreDevice.UuidParse(s, out UInt128 u), Is.True);
        return u;
    }

    /// <summary>What a rejected GET_DEVICE_FD must leave alone.</summary>
    private readonly record struct State(UInt128? Token, int Users, int PfOpen, int VfOpen, int Fds);

    private static State Snap(VfioPciRig rig, PciDevice pf, PciDevice vf)
    {
        VfioPciCoreDevice p = rig.Vdev(pf.Name);
        return new State(p.VfTokenForTest, p.VfTokenUsers, p.OpenCountUnlocked, rig.Vdev(vf.Name).OpenCountUnlocked, rig.P.Files.Open.Count);
    }

    [Test]
    public void SriovNumvfs_WithoutEnableSriov_IsEnoent([Values] SchedulerMode mode)
    {
        Run(mode, rig =>
        {
            PciDevice pf = SriovTests.Pf(rig.M);
            rig.BindToVfio(pf.Name);
            Assert.That(rig.M.Sysfs.Write(NumVfs(pf), "2"), Is.EqualTo(Errno.ENOENT.Negative()));
            Assert.That(ErrorReason.Current, Does.Contain("enable_sriov"));
            Assert.That(pf.NumVfs, Is.Zero);
            Assert.That(pf.VirtualFunctions, Is.Empty);
            Assert.That(rig.Vdev(pf.Name).HasVfToken, Is.True, "the token exists all the same");
        }, options: new VfioPciOptions());
    }

    [Test]
    public void EnablingVfs_CapturesThemForVfioPci_EachInAGroupOfItsOwn([Values] SchedulerMode mode, [Values(1UL, 5UL)] ulong seed)
    {
        Run(mode, rig =>
        {
            (PciDevice pf, IReadOnlyList<PciDevice> vfs) = EnableVfs(rig, 3);
            VfioPciCoreDevice pfv = rig.Vdev(pf.Name);
            Assert.That(vfs, Has.Count.EqualTo(3));
            foreach (PciDevice vf in vfs)
            {
                Assert.That(vf.DriverOverride, Is.EqualTo(VfioPciDriver.DriverName), "the bus notifier set it at ADD_DEVICE");
                Assert.That(vf.Driver, Is.SameAs(rig.Driver));
                Assert.That(rig.Vdev(vf.Name).SriovPfCoreDev, Is.SameAs(pfv));
                Assert.That(rig.Vdev(vf.Name).HasVfToken, Is.False);
                Assert.That(rig.M.Kernel.Log.Contains($"vfio-pci {pf.Name}: Captured SR-IOV VF {vf.Name} driver_override"), Is.True);
                Assert.That(rig.Sim.GroupOf(vf.Name), Is.Not.EqualTo(rig.Sim.GroupOf(pf.Name)));
                Assert.That(rig.M.Sysfs.List($"/sys/kernel/iommu_groups/{rig.Sim.GroupOf(vf.Name)}/devices"), Is.EqualTo(new[] { vf.Name }));
            }

            Assert.That(vfs.Select(v => rig.Sim.GroupOf(v.Name)), Is.Unique);
            Assert.That(rig.M.Sysfs.Read(NumVfs(pf)), Is.EqualTo("3\n"));
        }, seed);
    }

    [Test]
    public void EnablingAgain_IsEbusyInThePciCore_AndEinvalInVfioPciItself([Values] SchedulerMode mode)
    {
        Run(mode, rig =>
        {
            (PciDevice pf, IReadOnlyList<PciDevice> vfs) = EnableVfs(rig, 2);
            VfioPciCoreDevice pfv = rig.Vdev(pf.Name);

            // The sysfs path: sriov_numvfs_store refuses another count while VFs are enabled.
            Assert.That(rig.M.Sysfs.Write(NumVfs(pf), "3"), Is.EqualTo(Errno.EBUSY.Negative()));
            Assert.That(rig.M.Sysfs.Write(NumVfs(pf), "8"), Is.EqualTo(Errno.ERANGE.Negative()));
            Assert.That(rig.M.Sysfs.Write(NumVfs(pf), "2"), Is.GreaterThan(0), "the same count: nothing to do");

            // vfio_pci_core_sriov_configure itself (as a variant driver would call it): the PF is on the list.
            pf.Lock();
            int twice = pfv.SriovConfigure(3);
            pf.Unlock();
            Assert.That(twice, Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That(pf.NumVfs, Is.EqualTo(2));
            Assert.That(pf.VirtualFunctions, Is.EqualTo(vfs), "nothing changed");

            string vfName = vfs[0].Name;
            Assert.That(rig.M.Sysfs.Write(NumVfs(pf), "0"), Is.GreaterThan(0));
            Assert.That(pf.NumVfs, Is.Zero);
            Assert.That(rig.M.Pci.Find(vfName), Is.Null, "the VFs left the bus");
            Assert.That(rig.Driver.SriovPfs.List, Is.Empty, "off vfio-pci's list of SR-IOV PFs");

            Assert.That(rig.M.Sysfs.Write(NumVfs(pf), "4"), Is.GreaterThan(0), "enabling after a disable works");
            Assert.That(pf.VirtualFunctions, Has.Count.EqualTo(4));
        });
    }

    [Test]
    public void ProbingAPfWithVfsEnabled_IsEbusy([Values] SchedulerMode mode)
    {
        Run(mode, rig =>
        {
            PciDevice pf = SriovTests.Pf(rig.M);
            var stub = new HostPciDriver("pf-stub", new PciDeviceId(0x8086, 0x10c9)) { OnSriovConfigure = (d, n) => d.SriovConfigureSimple(n) };
            Assert.That(rig.M.Pci.RegisterDriver(stub), Is.Zero);
            Assert.That(rig.M.Sysfs.Write(NumVfs(pf), "2"), Is.GreaterThan(0));
            Assert.That(rig.M.Sysfs.Write($"/sys/bus/pci/drivers/pf-stub/unbind", pf.Name), Is.GreaterThan(0));
            Assert.That(pf.NumVfs, Is.EqualTo(2), "the stub leaves its VFs enabled");

            Assert.That(rig.M.Sysfs.Write($"/sys/bus/pci/devices/{pf.Name}/driver_override", "vfio-pci"), Is.GreaterThan(0));
            Assert.That(rig.M.Sysfs.Write("/sys/bus/pci/drivers/vfio-pci/bind", pf.Name), Is.EqualTo(Errno.EBUSY.Negative()));
            Assert.That(pf.Driver, Is.Null);
            Assert.That(rig.M.Kernel.Log.Contains($"vfio-pci {pf.Name}: Cannot bind to PF with SR-IOV enabled"), Is.True);
        });
    }

    [Test]
    public void DF_05_AVfTokenForAVfWhosePfIsNotVfioPci_IsEinval_AndMalformedTokensAreEinval([Values] SchedulerMode mode)
    {
        Run(mode, rig =>
        {
            PciDevice pf = SriovTests.Pf(rig.M);
            var stub = new HostPciDriver("pf-stub", new PciDeviceId(0x8086, 0x10c9)) { OnSriovConfigure = (d, n) => d.SriovConfigureSimple(n) };
            Assert.That(rig.M.Pci.RegisterDriver(stub), Is.Zero);
            Assert.That(rig.M.Sysfs.Write(NumVfs(pf), "1"), Is.GreaterThan(0));
            PciDevice vf = pf.VirtualFunctions[0];
            Assert.That(vf.Driver, Is.Null, "no override from vfio-pci, no VF driver");
            rig.BindToVfio(vf.Name);
            Assert.That(rig.Vdev(vf.Name).SriovPfCoreDev, Is.Null);

            (int c, int g) = rig.OpenContainerAndGroup(vf.Name);
            int fds = rig.P.Files.Open.Count;
            Assert.That(rig.GetDeviceFd(g, $"{vf.Name} vf_token={U1}"), Is.EqualTo(Errno.EINVAL.Negative()), "PF not bound to vfio-pci");
            Assert.That(rig.M.Kernel.Log.Contains("VF token incorrectly provided, PF not bound to vfio-pci"), Is.True);
            Assert.That(rig.GetDeviceFd(g, $"{vf.Name} vf_token={U1[..35]}"), Is.EqualTo(Errno.EINVAL.Negative()), "shorter than a UUID");
            Assert.That(rig.GetDeviceFd(g, $"{vf.Name} vf_token={U1.Replace('-', 'x')}"), Is.EqualTo(Errno.EINVAL.Negative()), "uuid_parse");
            Assert.That(rig.GetDeviceFd(g, $"{vf.Name} vf_token={U1} vf_token={U1}"), Is.EqualTo(Errno.EINVAL.Negative()), "a repeated option");
            Assert.That(rig.GetDeviceFd(g, $"{vf.Name}x"), Is.EqualTo(Errno.ENODEV.Negative()), "DF-04: a name followed by a non-space");
            Assert.That(rig.P.Files.Open.Count, Is.EqualTo(fds));
            Assert.That(rig.Vdev(vf.Name).OpenCountUnlocked, Is.Zero);

            long d = rig.GetDeviceFd(g, vf.Name);
            Assert.That(d, Is.GreaterThanOrEqualTo(0), "without a token the VF of a non-vfio PF opens");
            rig.CloseAll((c, g, (int)d));
        });
    }

    [Test]
    public void DF_16_AVfOpensOnlyWithThePfsToken_OnTheContainerPath([Values] SchedulerMode mode, [Values(1UL, 9UL)] ulong seed)
    {
        Run(mode, rig =>
        {
            (PciDevice pf, IReadOnlyList<PciDevice> vfs) = EnableVfs(rig, 2);
            PciDevice vf = vfs[0];

            // A PF without VF users takes the token it is opened with.
            using VfioSession pfs = rig.Sim.Open(rig.P, $"{pf.Name} vf_token={U1}");
            Assert.That(rig.Vdev(pf.Name).VfTokenForTest, Is.EqualTo(Uuid(U1)));

            (int c, int g) = rig.OpenContainerAndGroup(vf.Name);
            State before = Snap(rig, pf, vf);
            Assert.That(rig.GetDeviceFd(g, $"{vf.Name} vf_token={U2}"), Is.EqualTo(Errno.EACCES.Negative()), "the wrong token");
            Assert.That(rig.M.Kernel.Log.Contains($"vfio-pci {vf.Name}: Incorrect VF token provided for device"), Is.True);
            Assert.That(Snap(rig, pf, vf), Is.EqualTo(before));
            Assert.That(rig.GetDeviceFd(g, vf.Name), Is.EqualTo(Errno.EACCES.Negative()), "no token");
            Assert.That(rig.M.Kernel.Log.Contains($"vfio-pci {vf.Name}: VF token required to access device"), Is.True);
            Assert.That(Snap(rig, pf, vf), Is.EqualTo(before));

            long d = rig.GetDeviceFd(g, $"{vf.Name} vf_token={U1.ToUpperInvariant()}");
            Assert.That(d, Is.GreaterThanOrEqualTo(0), "the PF's token (uuid_parse takes either case)");
            Assert.That(rig.Vdev(pf.Name).VfTokenUsers, Is.EqualTo(1));

            // A PF with VF users opens only with the current token, and no longer sets it.
            State open = Snap(rig, pf, vf);
            Assert.That(rig.GetDeviceFd(pfs.Group.Fd, pf.Name), Is.EqualTo(Errno.EACCES.Negative()));
            Assert.That(rig.GetDeviceFd(pfs.Group.Fd, $"{pf.Name} vf_token={U2}"), Is.EqualTo(Errno.EACCES.Negative()));
            Assert.That(Snap(rig, pf, vf), Is.EqualTo(open), "the token stays U1");
            long pf2 = rig.GetDeviceFd(pfs.Group.Fd, $"{pf.Name} vf_token={U1}");
            Assert.That(pf2, Is.GreaterThanOrEqualTo(0));
            Assert.That(rig.P.Close((int)pf2), Is.Zero);

            rig.CloseAll((c, g, (int)d));
            Assert.That(rig.Vdev(pf.Name).VfTokenUsers, Is.Zero, "close_device dropped the user");
            long pf3 = rig.GetDeviceFd(pfs.Group.Fd, $"{pf.Name} vf_token={U2}");
            Assert.That(pf3, Is.GreaterThanOrEqualTo(0), "no VF users: the PF sets the token again");
            Assert.That(rig.Vdev(pf.Name).VfTokenForTest, Is.EqualTo(Uuid(U2)));
            Assert.That(rig.P.Close((int)pf3), Is.Zero);
        }, seed);
    }

    [Test]
    public void DF_17_TheTokenOutlivesThePfsUser([Values] SchedulerMode mode)
    {
        Run(mode, rig =>
        {
            (PciDevice pf, IReadOnlyList<PciDevice> vfs) = EnableVfs(rig, 1);
            PciDevice vf = vfs[0];
            rig.Sim.Open(rig.P, $"{pf.Name} vf_token={U1}").Dispose();
            Assert.That(rig.Vdev(pf.Name).OpenCountUnlocked, Is.Zero, "the PF's user is gone");

            (int c, int g) = rig.OpenContainerAndGroup(vf.Name);
            State before = Snap(rig, pf, vf);
            Assert.That(rig.GetDeviceFd(g, $"{vf.Name} vf_token={U2}"), Is.EqualTo(Errno.EACCES.Negative()));
            Assert.That(rig.GetDeviceFd(g, vf.Name), Is.EqualTo(Errno.EACCES.Negative()));
            Assert.That(Snap(rig, pf, vf), Is.EqualTo(before));
            Assert.That(rig.P.Close(g), Is.Zero);
            Assert.That(rig.P.Close(c), Is.Zero);

            // The typed client end to end: the name with its option.
            using VfioSession s = rig.Sim.Open(rig.P, $"{vf.Name} vf_token={U1}");
            Assert.That(s.Bdf, Is.EqualTo(vf.Name));
            Assert.That(rig.Vdev(pf.Name).VfTokenUsers, Is.EqualTo(1));
        });
    }

    [Test]
    public void DF_19_TheVfTokenFeature_IsSetOnly_AndSetsTheToken([Values] SchedulerMode mode)
    {
        Run(mode, rig =>
        {
            (PciDevice pf, IReadOnlyList<PciDevice> vfs) = EnableVfs(rig, 1);
            using VfioSession pfs = rig.Sim.Open(rig.P, pf.Name);
            UInt128 token = rig.Vdev(pf.Name).VfTokenForTest!.Value;

            long Feature(int fd, uint argsz, uint flags, string? uuid = null)
            {
                byte[] b = new byte[8 + 16];
                BitConverter.TryWriteBytes(b.AsSpan(0), argsz);
                BitConverter.TryWriteBytes(b.AsSpan(4), flags | VfioFeature.PciVfToken);
                if (uuid is not null)
                {
                    BinaryPrimitives.WriteUInt128BigEndian(b.AsSpan(8), Uuid(uuid));
                }

                return rig.P.Ioctl(fd, VfioIoctl.DeviceFeature, b);
            }

            int d = pfs.Device.Fd;
            Assert.That(Feature(d, 24, VfioFeature.Get), Is.EqualTo(Errno.EINVAL.Negative()), "never readable");
            Assert.That(Feature(d, 24, VfioFeature.Get | VfioFeature.Probe), Is.EqualTo(Errno.EINVAL.Negative()), "no GET to probe for");
            Assert.That(Feature(d, 8, VfioFeature.Set | VfioFeature.Probe), Is.Zero, "PROBE of SET");
            Assert.That(Feature(d, 24, 0, U1), Is.EqualTo(Errno.EINVAL.Negative()), "neither SET nor PROBE");
            Assert.That(Feature(d, 8 + 15, VfioFeature.Set, U1), Is.EqualTo(Errno.EINVAL.Negative()), "argsz short of 16 bytes of data");
            Assert.That(rig.Vdev(pf.Name).VfTokenForTest, Is.EqualTo(token), "rejected calls changed nothing");

            Assert.That(Feature(d, 24, VfioFeature.Set, U2), Is.Zero);
            Assert.That(rig.Vdev(pf.Name).VfTokenForTest, Is.EqualTo(Uuid(U2)));

            using VfioSession vfs0 = rig.Sim.Open(rig.P, $"{vfs[0].Name} vf_token={U2}");
            Assert.That(Feature(vfs0.Device.Fd, 24, VfioFeature.Set, U1), Is.EqualTo(Errno.ENOTTY.Negative()), "a VF has no token of its own");
            Assert.That(Feature(d, 24, VfioFeature.Set, U1), Is.Zero, "SET does not ask the VFs' users");
            Assert.That(rig.Vdev(pf.Name).VfTokenForTest, Is.EqualTo(Uuid(U1)));
        });
    }

    [Test]
    public void TheTypedClientsSetVfToken_WritesTheUuidInItsTextOrder([Values] SchedulerMode mode)
    {
        Run(mode, rig =>
        {
            (PciDevice pf, IReadOnlyList<PciDevice> vfs) = EnableVfs(rig, 1);
            using VfioSession pfs = rig.Sim.Open(rig.P, pf.Name);
            pfs.Device.SetVfToken(Guid.Parse(U2));
            Assert.That(rig.Vdev(pf.Name).VfTokenForTest, Is.EqualTo(Uuid(U2)));
            Assert.That(() => rig.Sim.Open(rig.P, $"{vfs[0].Name} vf_token={U1}"), Throws.InstanceOf<VfioException>().With.Property(nameof(VfioException.Errno)).EqualTo(Errno.EACCES));
            rig.Sim.Open(rig.P, $"{vfs[0].Name} vf_token={U2}").Dispose();
        });
    }

    [Test]
    public void AVf_ShowsItsSynthesisedIds_HasNoIntx_AndItsBarsWorkThoughCommandMemIsHardwiredZero([Values] SchedulerMode mode)
    {
        Run(mode, rig =>
        {
            (PciDevice pf, IReadOnlyList<PciDevice> vfs) = EnableVfs(rig, 2);
            PciDevice vf = vfs[1];
            rig.Sim.Open(rig.P, $"{pf.Name} vf_token={U1}").Dispose();
            using VfioSession s = rig.Sim.Open(rig.P, $"{vf.Name} vf_token={U1}");
            VfioDeviceFd dev = s.Device;

            Assert.That(vf.ReadConfig(PciRegs.VendorId, 4), Is.EqualTo(0xffffffffu), "the hardware");
            Assert.That(dev.ReadConfig32(PciRegs.VendorId), Is.EqualTo(0x10ca8086u), "vfio synthesises the ids");
            Assert.That(dev.ReadConfig8(PciRegs.InterruptPin), Is.Zero);
            Assert.That(dev.GetIrqInfo(VfioPciIndex.IrqIntx).Count, Is.Zero, "no INTx for a VF");
            Assert.That(dev.GetIrqInfo(VfioPciIndex.IrqMsix).Count, Is.EqualTo(3));

            // COMMAND.MEM: hardwired 0 in the VF; the user's value lives in vconfig, which
            // vfio_config_init starts with MEM set, as a physical function's would be after enable.
            Assert.That(vf.ReadConfig(PciRegs.Command, 2) & PciRegs.CommandMemory, Is.Zero, "0 in hardware");
            Assert.That(dev.ReadConfig16(PciRegs.Command) & PciRegs.CommandMemory, Is.EqualTo(PciRegs.CommandMemory), "set in vconfig at open");
            dev.WriteConfig16(PciRegs.Command, 0);
            Assert.That(dev.ReadConfig16(PciRegs.Command) & PciRegs.CommandMemory, Is.Zero, "the user cleared it");
            dev.WriteRegion32(0, 0x40, 0xcafe0001);
            Assert.That(dev.ReadRegion32(0, 0x40), Is.EqualTo(0xcafe0001u), "decoded by the PF's VF MSE though MEM reads 0");
            dev.WriteConfig16(PciRegs.Command, PciRegs.CommandMemory | PciRegs.CommandMaster);
            Assert.That(dev.ReadConfig16(PciRegs.Command) & PciRegs.CommandMemory, Is.EqualTo(PciRegs.CommandMemory), "from vconfig");
            Assert.That(vf.ReadConfig(PciRegs.Command, 2) & PciRegs.CommandMemory, Is.Zero, "still 0 in hardware");
            dev.WriteConfig16(PciRegs.Command, 0);
            Assert.That(dev.ReadRegion32(0, 0x40), Is.EqualTo(0xcafe0001u), "no_command_memory: MEM off in vconfig does not block a VF");

            using VfioRegionMapping map = dev.MmapRegion(0, 0, 4096);
            Assert.That(map.Read32(0x40), Is.EqualTo(0xcafe0001u), "the mapping faults in too");
        });
    }

    [Test]
    public void APfWithVfs_StaysInD0_WhenTheUserAsksForD3hot([Values] SchedulerMode mode)
    {
        Run(mode, rig =>
        {
            (PciDevice pf, _) = EnableVfs(rig, 1);
            using VfioSession s = rig.Sim.Open(rig.P, pf.Name);
            int pmcsr = pf.PmCap + PciRegs.PmCtrl;
            s.Device.WriteConfig16(pmcsr, 3);
            Assert.That(pf.PowerState, Is.Zero, "vfio_pci_set_power_state: -EBUSY for a PF with VFs, the write is dropped");
            Assert.That(pf.VirtualFunctions[0].Bars[0]!.RoutedAt, Is.Not.EqualTo(-1), "the VF still decodes");

            Assert.That(rig.M.Sysfs.Write(NumVfs(pf), "0"), Is.GreaterThan(0));
            s.Device.WriteConfig16(pmcsr, 3);
            Assert.That(pf.PowerState, Is.EqualTo(3), "without VFs the PF goes to D3hot");
            s.Device.WriteConfig16(pmcsr, 0);
        });
    }

    [Test]
    public void VfsEnabledWhileThePfIsOpen_SurviveAPfReset_AndEveryoneCloses([Values] SchedulerMode mode, [Values(1UL, 3UL)] ulong seed)
    {
        Run(mode, rig =>
        {
            PciDevice pf = SriovTests.Pf(rig.M);
            rig.BindToVfio(pf.Name);
            VfioSession pfs = rig.Sim.Open(rig.P, $"{pf.Name} vf_token={U1}");
            Assert.That(rig.M.Sysfs.Write(NumVfs(pf), "2"), Is.GreaterThan(0), "enabled while the PF is open");
            VfioSession vfs = rig.Sim.Open(rig.P, $"{pf.VirtualFunctions[1].Name} vf_token={U1}");
            vfs.Device.WriteRegion32(0, 0, 0xabcd);

            // VFIO_DEVICE_RESET of the PF: its FLR clears VF Enable; pci_try_reset_function's
            // restore brings the VFs back, reset.
            pfs.Device.Reset();
            Assert.That(pf.ReadConfig(pf.SriovCap + SriovRegs.Ctrl, 2) & SriovRegs.CtrlVfe, Is.EqualTo(SriovRegs.CtrlVfe));
            Assert.That(vfs.Device.ReadRegion32(0, 0), Is.Zero, "the VF went through the PF's reset");
            vfs.Device.WriteRegion32(0, 0, 0x1234);
            Assert.That(vfs.Device.ReadRegion32(0, 0), Is.EqualTo(0x1234u));

            pfs.Dispose();
            Assert.That(rig.Vdev(pf.Name).VfTokenUsers, Is.EqualTo(1));
            vfs.Dispose();
            Assert.That(rig.Vdev(pf.Name).VfTokenUsers, Is.Zero);
            Assert.That(rig.M.Sysfs.Write(NumVfs(pf), "0"), Is.GreaterThan(0));
        }, seed);
    }

    [Test]
    public void AVfBoundToAnotherDriver_IsWorthAWarning()
    {
        Run(SchedulerMode.Controlled, rig =>
        {
            (PciDevice pf, IReadOnlyList<PciDevice> vfs) = EnableVfs(rig, 1);
            PciDevice vf = vfs[0];
            rig.Sim.Bind(vf.Name, "pci-stub");
            Assert.That(vf.Driver?.Name, Is.EqualTo("pci-stub"));
            Assert.That(rig.M.Kernel.Log.Contains($"vfio-pci {pf.Name}: VF {vf.Name} bound to driver pci-stub while PF bound to driver vfio-pci"), Is.True, rig.M.Kernel.Log.Dmesg());
        });
    }

    [Test]
    public void UnbindingThePf_WithAVfOpen_WaitsForTheVfsUser([Values] SchedulerMode mode, [Values(1UL, 7UL)] ulong seed)
    {
        Run(mode, rig =>
        {
            (PciDevice pf, IReadOnlyList<PciDevice> vfs) = EnableVfs(rig, 2);
            PciDevice vf = vfs[0];
            string vfName = vf.Name;
            rig.Sim.Open(rig.P, $"{pf.Name} vf_token={U1}").Dispose();
            VfioSession s = rig.Sim.Open(rig.P, $"{vfName} vf_token={U1}");

            bool done = false;
            KTask unbinder = rig.M.Kernel.Spawn("unbinder", () =>
            {
                rig.M.Sysfs.Write(Unbind, pf.Name);
                Volatile.Write(ref done, true);
            });

            // Three 10 s slices of the VF's unregister wait: still bound, still waiting.
            KTask.Msleep(35_000);
            Assert.That(Volatile.Read(ref done), Is.False);
            Assert.That(pf.Driver, Is.SameAs(rig.Driver), "the PF's remove is stuck in disabling SR-IOV");
            Assert.That(vf.Driver, Is.SameAs(rig.Driver));
            Assert.That(rig.M.Kernel.Log.Contains($"vfio-pci {vfName}: No device request channel registered, blocked until released by user"), Is.True, rig.M.Kernel.Log.Dmesg());
            Assert.That(s.Device.ReadRegion32(0, 0), Is.Zero, "the VF's user is still served");

            s.Dispose();
            unbinder.Join();
            Assert.That(Volatile.Read(ref done), Is.True);
            Assert.That(pf.Driver, Is.Null);
            Assert.That(pf.NumVfs, Is.Zero);
            Assert.That(rig.M.Pci.Find(vfName), Is.Null);
            Assert.That(rig.Driver.SriovPfs.List, Is.Empty);
        }, seed);
    }

    [Test]
    public void TheInitialToken_ComesFromTheSeed()
    {
        UInt128 TokenOf(ulong seed)
        {
            UInt128 t = 0;
            Run(SchedulerMode.Controlled, rig =>
            {
                PciDevice pf = SriovTests.Pf(rig.M);
                rig.BindToVfio(pf.Name);
                t = rig.Vdev(pf.Name).VfTokenForTest!.Value;
            }, seed);
            return t;
        }

        UInt128 a = TokenOf(11);
        Assert.That(TokenOf(11), Is.EqualTo(a), "same seed, same UUID");
        Assert.That(TokenOf(12), Is.Not.EqualTo(a));
        string text = VfioPciCoreDevice.UuidFormat(a);
        Assert.That(text[14], Is.EqualTo('4'), "version 4");
        Assert.That(text[19], Is.AnyOf('8', '9', 'a', 'b'), "RFC 4122 variant");
        Assert.That(Uuid(text), Is.EqualTo(a));
    }
}
