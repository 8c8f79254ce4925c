// Tests the probe rules of Vfio.Pci/VfioPciDriver.cs (vfio_pci_probe and
// vfio_pci_core_register_device, drivers/vfio/pci/): binding only through
// driver_override or ids=, bridges refused, the QAT denylist and disable_denylist, and the
// device set a function joins.

using NUnit.Framework;
using Vfio.Core;
using Vfio.Kernel;
using Vfio.Pci;
using Vfio.Platform;
using Vfio.Platform.Machine;
using Vfio.Sim;

namespace Vfio.Tests.Pci;

[TestFixture]
public sealed class VfioPciProbeTests
{
    private const string QatJson = """
        {"memory":{"ram":"1G"},"pci":[{"slot":1,"type":"root-port","acs":true,"children":[
          {"slot":0,"type":"generic","vendor":"0x8086","device":"0x37c8","class":"0x0b4000","bars":[{"index":0,"size":"64K"}]}]}]}
        """;

    [Test]
    public void WithoutDriverOverride_VfioPciTakesNothing()
    {
        VfioPciRig.Run(SchedulerMode.Real, rig =>
        {
            Assert.That(rig.M.Sysfs.Write("/sys/bus/pci/drivers/edu/unbind", VfioPciRig.Edu), Is.GreaterThan(0));
            rig.M.Sysfs.Write("/sys/bus/pci/drivers_probe", VfioPciRig.Edu);
            Assert.That(rig.Dev(VfioPciRig.Edu).Driver?.Name, Is.Not.EqualTo(VfioPciDriver.DriverName));
        });
    }

    [Test]
    public void TheIdsOption_BindsMatchingUnboundFunctions()
    {
        // vfio-pci is loaded by hand here: its load-time binding is what is under test.
        VfioSim sim = VfioPciRig.Builder(SchedulerMode.Real).AddVfio().Build();
        SimMachine m = sim.Machine;
        Runs.AssertPassed(sim.Run(() =>
        {
            Assert.That(sim.Unbind(VfioPciRig.Edu), Is.EqualTo("edu"));
            VfioPciDriver drv = VfioPciDriver.Load(m, new VfioPciOptions { Ids = "1234:11e8,zz" });
            Assert.That(m.Pci.Find(VfioPciRig.Edu)!.Driver, Is.SameAs(drv));
            Assert.That(m.Kernel.Log.Contains("vfio_pci: add [1234:11e8[ffff:ffff]] class 000000/00000000"), Is.True, m.Kernel.Log.Dmesg());
            Assert.That(m.Kernel.Log.Contains("vfio_pci: invalid id string \"zz\""), Is.True);
        }));
    }

    [Test]
    public void ABridge_IsRefusedWithEinval()
    {
        VfioPciRig.Run(SchedulerMode.Real, rig =>
        {
            const string bridge = "0000:03:00.0";
            Assert.That(rig.Dev(bridge).Driver, Is.Null);
            Assert.That(rig.M.Sysfs.Write($"/sys/bus/pci/devices/{bridge}/driver_override", VfioPciDriver.DriverName), Is.GreaterThan(0));
            Assert.That(rig.M.Sysfs.Write("/sys/bus/pci/drivers/vfio-pci/bind", bridge), Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That(rig.Dev(bridge).Driver, Is.Null);
        });
    }

    [Test]
    public void ADenylistedQatFunction_IsRefused_UnlessTheDenylistIsDisabled([Values] bool disable)
    {
        VfioSim sim = VfioPciRig.Builder(SchedulerMode.Real)
            .UseMachine(MachineDescriptionReader.Parse(QatJson))
            .AddVfioPci(new VfioPciOptions { DisableDenylist = disable })
            .Build();
        SimMachine m = sim.Machine;
        Runs.AssertPassed(sim.Run(() =>
        {
            // Written by hand, not with sim.Bind: the errno of the bind attribute is what is under test.
            const string bdf = "0000:01:00.0";
            Assert.That(m.Sysfs.Write($"/sys/bus/pci/devices/{bdf}/driver_override", VfioPciDriver.DriverName), Is.GreaterThan(0));
            long rc = m.Sysfs.Write("/sys/bus/pci/drivers/vfio-pci/bind", bdf);
            if (disable)
            {
                Assert.That(rc, Is.GreaterThan(0), ErrorReason.Current);
                Assert.That(m.Kernel.Log.Contains($"vfio-pci {bdf}: device denylist disabled - allowing device 8086:37c8."), Is.True, m.Kernel.Log.Dmesg());
            }
            else
            {
                Assert.That(rc, Is.EqualTo(Errno.EINVAL.Negative()));
                Assert.That(m.Kernel.Log.Contains($"vfio-pci {bdf}: 8086:37c8 exists in vfio-pci device denylist, driver probing disallowed."), Is.True, m.Kernel.Log.Dmesg());
            }
        }));
    }

    [Test]
    public void Registration_NeedsACoherentIommu_ButNotSnoopControl_OnBothProfiles(
        [Values("linux-6.12", "linux-6.1")] string profile,
        [Values("coherent, no snoop control", "not coherent")] string iommu)
    {
        bool coherent = iommu == "coherent, no snoop control";
        MachineDescription machine = MachineDescriptionReader.Default with
        {
            Iommu = new Vfio.Platform.Iommu.IommuHardwareConfig { CacheCoherent = coherent, SnoopControl = false },
        };
        VfioSim sim = VfioPciRig.Builder(SchedulerMode.Real).UseProfile(KernelProfile.Parse(profile)).UseMachine(machine).AddVfioPci().Build();
        SimMachine m = sim.Machine;
        Runs.AssertPassed(sim.Run(() =>
        {
            const string bdf = VfioPciRig.Edu;
            Assert.That(m.Sysfs.Write($"/sys/bus/pci/drivers/edu/unbind", bdf), Is.GreaterThan(0));
            Assert.That(m.Sysfs.Write($"/sys/bus/pci/devices/{bdf}/driver_override", VfioPciDriver.DriverName), Is.GreaterThan(0));
            long rc = m.Sysfs.Write("/sys/bus/pci/drivers/vfio-pci/bind", bdf);
            if (coherent)
            {
                Assert.That(rc, Is.GreaterThan(0), "IOMMU_CAP_CACHE_COHERENCY is all vfio asks for: " + ErrorReason.Current);
                Assert.That(m.Pci.Find(bdf)!.Driver?.Name, Is.EqualTo(VfioPciDriver.DriverName));
            }
            else
            {
                Assert.That(rc, Is.EqualTo(Errno.EINVAL.Negative()), "vfio_register_group_dev refuses an IOMMU without IOMMU_CAP_CACHE_COHERENCY");
                Assert.That(m.Pci.Find(bdf)!.Driver, Is.Null);
            }
        }));
    }

    [Test]
    public void TheTwoFunctionsOfOneCard_ShareTheDeviceSetOfTheirBus()
    {
        VfioPciRig.Run(SchedulerMode.Real, rig =>
        {
            rig.BindToVfio("0000:02:00.0");
            rig.BindToVfio("0000:02:00.1");
            VfioDeviceSet a = rig.Vdev("0000:02:00.0").DevSet!, b = rig.Vdev("0000:02:00.1").DevSet!;
            Assert.That(a, Is.SameAs(b));
            Assert.That(a.SetId, Is.SameAs(rig.Dev("0000:02:00.0").OnBus));
            Assert.That(a.DeviceCount, Is.EqualTo(2));
            rig.BindToVfio(VfioPciRig.Nic);
            Assert.That(rig.Vdev(VfioPciRig.Nic).DevSet, Is.Not.SameAs(a));
        });
    }
}
