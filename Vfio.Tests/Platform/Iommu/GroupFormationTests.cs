// Tests Vfio.Platform/Iommu/IommuCore.Groups.cs and IommuCore.cs: groups formed from the
// topology as pci_device_group does, their ids, and the sysfs ABI that shows them.

using NUnit.Framework;
using Vfio.Kernel;
using Vfio.Platform;
using Vfio.Platform.Iommu;
using Vfio.Platform.Machine;
using Vfio.Platform.Pci;

namespace Vfio.Tests.Platform.Iommu;

internal static class Topologies
{
    public static SimMachine Build(string pciJson, SchedulerMode mode = SchedulerMode.Real)
        => MachineBuilder.Build(MachineDescriptionReader.Parse($"{{\"memory\":{{\"ram\":\"1G\"}},\"pci\":{pciJson}}}"), Runs.Kernel(mode));

    public static string Endpoint(int slot, int function = 0, bool multifunction = false, string extra = "")
        => $"{{\"slot\":{slot},\"function\":{function},\"type\":\"generic\",\"vendor\":\"0x8086\",\"device\":\"0x1521\",\"class\":\"0x020000\",\"multifunction\":{(multifunction ? "true" : "false")},\"bars\":[{{\"index\":0,\"size\":\"4K\"}}]{extra}}}";

    public static PciDevice Dev(SimMachine m, string name) => m.Pci.Find(name) ?? throw new AssertionException($"no device {name}");

    public static int GroupId(SimMachine m, string name) => Dev(m, name).IommuGroup?.Id ?? -1;

    public static string[] Members(SimMachine m, string name)
        => [.. Dev(m, name).IommuGroup!.Devices.Select(d => d.Name).Order(StringComparer.Ordinal)];
}

[TestFixture]
public sealed class GroupFormationTests
{
    [Test]
    public void AnEndpointBehindAnAcsRootPort_IsAloneInItsGroup()
    {
        SimMachine m = Topologies.Build($"[{{\"slot\":1,\"type\":\"root-port\",\"acs\":true,\"children\":[{Topologies.Endpoint(0)}]}}]");
        Assert.That(Topologies.Members(m, "0000:01:00.0"), Is.EqualTo(new[] { "0000:01:00.0" }));
        Assert.That(Topologies.GroupId(m, "0000:00:01.0"), Is.Not.EqualTo(Topologies.GroupId(m, "0000:01:00.0")));
    }

    [Test]
    public void AnEndpointBehindARootPortWithoutAcs_SharesTheRootPortsGroup()
    {
        SimMachine m = Topologies.Build($"[{{\"slot\":1,\"type\":\"root-port\",\"children\":[{Topologies.Endpoint(0)}]}}]");
        Assert.That(Topologies.Members(m, "0000:01:00.0"), Is.EqualTo(new[] { "0000:00:01.0", "0000:01:00.0" }));
    }

    [Test]
    public void AnAcsCapabilityWithTheControlsOff_IsNoIsolation()
    {
        SimMachine m = Topologies.Build($"[{{\"slot\":1,\"type\":\"root-port\",\"acs\":false,\"children\":[{Topologies.Endpoint(0)}]}}]");
        Assert.That(Topologies.Members(m, "0000:01:00.0"), Has.Length.EqualTo(2));
        Assert.That(IommuCore.AcsEnabled(Topologies.Dev(m, "0000:00:01.0"), PciRegs.ReqAcsFlags), Is.False);
    }

    [Test]
    public void TwoFunctionsOfAMultifunctionDeviceWithoutAcs_ShareOneGroup()
    {
        SimMachine m = Topologies.Build($"[{{\"slot\":1,\"type\":\"root-port\",\"acs\":true,\"children\":[{Topologies.Endpoint(0, 0, true)},{Topologies.Endpoint(0, 1, true)}]}}]");
        Assert.That(Topologies.Members(m, "0000:01:00.1"), Is.EqualTo(new[] { "0000:01:00.0", "0000:01:00.1" }));
    }

    [Test]
    public void MultifunctionSiblingsWithAcsEnabled_AreSeparateGroups()
    {
        string acs = ",\"acs\":true";
        SimMachine m = Topologies.Build($"[{{\"slot\":1,\"type\":\"root-port\",\"acs\":true,\"children\":[{Topologies.Endpoint(0, 0, true, acs)},{Topologies.Endpoint(0, 1, true, acs)}]}}]");
        Assert.That(Topologies.GroupId(m, "0000:01:00.0"), Is.Not.EqualTo(Topologies.GroupId(m, "0000:01:00.1")));
    }

    [Test]
    public void AnAcsQuirk_SeparatesSiblingsThatHaveNoAcsCapability()
    {
        string quirk = ",\"acsQuirk\":true";
        SimMachine m = Topologies.Build($"[{{\"slot\":1,\"type\":\"root-port\",\"acs\":true,\"children\":[{Topologies.Endpoint(0, 0, true, quirk)},{Topologies.Endpoint(0, 1, true, quirk)}]}}]");
        Assert.That(Topologies.GroupId(m, "0000:01:00.0"), Is.Not.EqualTo(Topologies.GroupId(m, "0000:01:00.1")));
    }

    [Test]
    public void DevicesBehindAPcieToPciBridge_ShareTheBridgesGroup()
    {
        string conv1 = "{\"slot\":1,\"type\":\"generic\",\"vendor\":\"0x1af4\",\"device\":\"0x1000\"}";
        string conv2 = "{\"slot\":2,\"type\":\"generic\",\"vendor\":\"0x1af4\",\"device\":\"0x1001\"}";
        SimMachine m = Topologies.Build($"[{{\"slot\":1,\"type\":\"root-port\",\"acs\":true,\"children\":[{{\"slot\":0,\"type\":\"pcie-to-pci-bridge\",\"children\":[{conv1},{conv2}]}}]}}]");
        Assert.That(Topologies.Members(m, "0000:02:01.0"), Is.EqualTo(new[] { "0000:01:00.0", "0000:02:01.0", "0000:02:02.0" }));
        Assert.That(Topologies.Dev(m, "0000:02:01.0").IsPcie, Is.False);
    }

    [Test]
    public void EndpointsBelowSwitchDownstreamPortsWithAcs_AreIsolatedFromEachOther()
    {
        string down(int slot, bool acs) => $"{{\"slot\":{slot},\"type\":\"switch-downstream\",\"acs\":{(acs ? "true" : "false")},\"children\":[{Topologies.Endpoint(0)}]}}";
        SimMachine m = Topologies.Build($"[{{\"slot\":1,\"type\":\"root-port\",\"acs\":true,\"children\":[{{\"slot\":0,\"type\":\"switch-upstream\",\"children\":[{down(0, true)},{down(1, true)}]}}]}}]");

        // 00:01.0 → 01:00.0 (upstream) → 02:00.0, 02:01.0 (downstream) → 03:00.0, 04:00.0.
        Assert.That(Topologies.Members(m, "0000:03:00.0"), Is.EqualTo(new[] { "0000:03:00.0" }));
        Assert.That(Topologies.Members(m, "0000:04:00.0"), Is.EqualTo(new[] { "0000:04:00.0" }));
    }

    [Test]
    public void ASwitchDownstreamPortWithoutAcs_SharesAGroupWithWhatIsBelowIt()
    {
        string down(int slot) => $"{{\"slot\":{slot},\"type\":\"switch-downstream\",\"children\":[{Topologies.Endpoint(0)}]}}";
        SimMachine m = Topologies.Build($"[{{\"slot\":1,\"type\":\"root-port\",\"acs\":true,\"children\":[{{\"slot\":0,\"type\":\"switch-upstream\",\"children\":[{down(0)},{down(1)}]}}]}}]");

        // The walk for 03:00.0 starts at its bus, whose bridge (02:00.0) lacks ACS: the
        // endpoint joins the port's group. The ports themselves sit below the single-function
        // upstream port, which counts as isolated, so each port has its own group.
        Assert.That(Topologies.Members(m, "0000:03:00.0"), Is.EqualTo(new[] { "0000:02:00.0", "0000:03:00.0" }));
        Assert.That(Topologies.Members(m, "0000:04:00.0"), Is.EqualTo(new[] { "0000:02:01.0", "0000:04:00.0" }));
        Assert.That(Topologies.Members(m, "0000:01:00.0"), Is.EqualTo(new[] { "0000:01:00.0" }));
    }

    [Test]
    public void ADmaAliasQuirkOnTheSameBus_JoinsTheAliasedFunctionsGroup()
    {
        SimMachine m = Topologies.Build($"[{{\"slot\":1,\"type\":\"root-port\",\"acs\":true,\"children\":[{Topologies.Endpoint(0)},{Topologies.Endpoint(1, 0, false, ",\"dmaAliases\":[0]")}]}}]");
        Assert.That(Topologies.Members(m, "0000:01:01.0"), Is.EqualTo(new[] { "0000:01:00.0", "0000:01:01.0" }));
    }

    [Test]
    public void RootBusEndpoints_AreSingletons()
    {
        SimMachine m = Topologies.Build($"[{Topologies.Endpoint(2)},{Topologies.Endpoint(3)}]");
        Assert.That(Topologies.Members(m, "0000:00:02.0"), Has.Length.EqualTo(1));
        Assert.That(Topologies.GroupId(m, "0000:00:02.0"), Is.Not.EqualTo(Topologies.GroupId(m, "0000:00:03.0")));
    }

    [Test]
    public void GroupIds_AreTheLowestFreeNumbers_AndComeBackAfterTheLastMemberLeaves()
    {
        SimMachine m = Topologies.Build($"[{Topologies.Endpoint(2)},{Topologies.Endpoint(3)},{Topologies.Endpoint(4)}]");
        Assert.That(new[] { Topologies.GroupId(m, "0000:00:02.0"), Topologies.GroupId(m, "0000:00:03.0"), Topologies.GroupId(m, "0000:00:04.0") }, Is.EqualTo(new[] { 0, 1, 2 }));
        PciDevice mid = Topologies.Dev(m, "0000:00:03.0");
        IommuGroup g = mid.IommuGroup!;
        m.Pci.Remove(mid);
        Assert.That(g.IsReleased, Is.True);
        Assert.That(m.Sysfs.Exists("/sys/kernel/iommu_groups/1"), Is.False);
        Assert.That(m.Iommu!.Groups.Select(x => x.Id), Is.EqualTo(new[] { 0, 2 }));

        var again = new PciDevice(m, 0, 0, 3, 0, new PciIdentity(0x8086, 0x1521, 0, 0, 0x020000));
        Assert.That(m.Pci.Add(again), Is.Zero);
        Assert.That(again.IommuGroup!.Id, Is.EqualTo(1));
    }

    [Test]
    public void AGroupWhoseLastDeviceLeft_LosesItsDomains_AndANewDeviceGetsANewGroup()
    {
        SimMachine m = Topologies.Build($"[{Topologies.Endpoint(2)}]");
        PciDevice dev = Topologies.Dev(m, "0000:00:02.0");
        IommuGroup g = IommuCore.GroupGet(dev)!;
        IommuDomain old = g.DefaultDomain!;
        m.Pci.Remove(dev);
        Assert.That(old.IsFreed, Is.True, "iommu_deinit_device frees the domains with the last member");
        Assert.That(g.Domain, Is.Null);
        Assert.That(m.Sysfs.Read("/sys/kernel/iommu_groups/0/type"), Is.EqualTo("unknown\n"));
        Assert.That(m.Sysfs.Write("/sys/kernel/iommu_groups/0/type", "identity"), Is.EqualTo(Errno.EINVAL.Negative()));

        var again = new PciDevice(m, 0, 0, 2, 0, new PciIdentity(0x8086, 0x1521, 0, 0, 0x020000));
        Assert.That(m.Pci.Add(again), Is.Zero);
        Assert.That(again.IommuGroup!.Id, Is.EqualTo(1), "nothing leads to an empty group: the id is still taken");
        Assert.That(again.IommuGroup.Domain, Is.SameAs(again.IommuGroup.DefaultDomain));
        Assert.That(g.Domain, Is.Null);
        g.Put();
        Assert.That(m.Sysfs.Exists("/sys/kernel/iommu_groups/0"), Is.False);
    }

    [Test]
    public void AGroupReference_KeepsTheGroupAfterItsLastDeviceLeaves()
    {
        SimMachine m = Topologies.Build($"[{Topologies.Endpoint(2)}]");
        PciDevice dev = Topologies.Dev(m, "0000:00:02.0");
        IommuGroup g = IommuCore.GroupGet(dev)!;
        m.Pci.Remove(dev);
        Assert.That(g.IsReleased, Is.False);
        Assert.That(g.Devices, Is.Empty);
        Assert.That(m.Sysfs.Exists("/sys/kernel/iommu_groups/0"), Is.True);
        g.Put();
        Assert.That(g.IsReleased, Is.True);
        Assert.That(m.Sysfs.Exists("/sys/kernel/iommu_groups/0"), Is.False);
    }

    [Test]
    public void Sysfs_ShowsEachGroupsMembers_AndEachDevicesGroupLink()
    {
        SimMachine m = Topologies.Build($"[{{\"slot\":1,\"type\":\"root-port\",\"acs\":true,\"children\":[{Topologies.Endpoint(0, 0, true)},{Topologies.Endpoint(0, 1, true)}]}}]");
        int id = Topologies.GroupId(m, "0000:01:00.0");
        Assert.That(m.Sysfs.List($"/sys/kernel/iommu_groups/{id}/devices"), Is.EquivalentTo(new[] { "0000:01:00.0", "0000:01:00.1" }));
        Assert.That(m.Sysfs.ReadLink("/sys/bus/pci/devices/0000:01:00.1/iommu_group"), Does.EndWith($"kernel/iommu_groups/{id}"));
        Assert.That(m.Sysfs.Read($"/sys/kernel/iommu_groups/{id}/reserved_regions"), Is.EqualTo("0x00000000fee00000 0x00000000feefffff msi\n"));
        Assert.That(m.Sysfs.Read($"/sys/kernel/iommu_groups/{id}/type"), Is.EqualTo("DMA\n"));
        Assert.That(m.Sysfs.Exists($"/sys/kernel/iommu_groups/{id}/name"), Is.False);
    }

    [Test]
    public void RemovingADevice_RemovesItsLinks()
    {
        SimMachine m = Topologies.Build($"[{{\"slot\":1,\"type\":\"root-port\",\"acs\":true,\"children\":[{Topologies.Endpoint(0, 0, true)},{Topologies.Endpoint(0, 1, true)}]}}]");
        int id = Topologies.GroupId(m, "0000:01:00.0");
        m.Pci.Remove(Topologies.Dev(m, "0000:01:00.1"));
        Assert.That(m.Sysfs.List($"/sys/kernel/iommu_groups/{id}/devices"), Is.EqualTo(new[] { "0000:01:00.0" }));
    }

    [Test]
    public void ReservedRegions_MergeOverlappingAndAdjacentRegionsOfOneTypeOnly()
    {
        SimMachine m = Topologies.Build($"[{{\"slot\":1,\"type\":\"root-port\",\"acs\":true,\"children\":[{Topologies.Endpoint(0, 0, true)},{Topologies.Endpoint(0, 1, true)}]}}]");
        IommuCore iommu = m.Iommu!;
        PciDevice f0 = Topologies.Dev(m, "0000:01:00.0"), f1 = Topologies.Dev(m, "0000:01:00.1");
        iommu.AddDeviceReservedRegion(f0, new IommuReservedRegion(0x1000, 0x1000, IommuResvType.Direct));
        iommu.AddDeviceReservedRegion(f1, new IommuReservedRegion(0x2000, 0x1000, IommuResvType.Direct));
        iommu.AddDeviceReservedRegion(f1, new IommuReservedRegion(0x2800, 0x1000, IommuResvType.Reserved));
        iommu.AddDeviceReservedRegion(f1, new IommuReservedRegion(0xfef00000, 0x1000, IommuResvType.Msi));
        Assert.That(m.Sysfs.Read($"/sys/kernel/iommu_groups/{f0.IommuGroup!.Id}/reserved_regions"), Is.EqualTo(
            "0x0000000000001000 0x0000000000002fff direct\n" +
            "0x0000000000002800 0x00000000000037ff reserved\n" +
            "0x00000000fee00000 0x00000000fef00fff msi\n"));
    }

    [Test]
    public void WritingTheTypeAttribute_FollowsTheKernelsChecks()
    {
        SimMachine m = Topologies.Build($"[{Topologies.Endpoint(2)}]");
        string path = "/sys/kernel/iommu_groups/0/type";
        var noRawio = m.CreateProcess("root-without-rawio", new Vfio.Platform.Proc.Credentials(0, 0, Vfio.Platform.Proc.Capabilities.All & ~(1UL << Vfio.Platform.Proc.Capabilities.CAP_SYS_RAWIO)));
        Assert.That(m.Sysfs.Write(path, "identity", noRawio), Is.EqualTo(Errno.EACCES.Negative()));
        Assert.That(m.Sysfs.Read(path), Is.EqualTo("DMA\n"));
        Assert.That(m.Sysfs.Write(path, "bogus"), Is.EqualTo(Errno.EINVAL.Negative()));
        Assert.That(m.Sysfs.Write(path, "identity"), Is.GreaterThan(0));
        Assert.That(m.Sysfs.Read(path), Is.EqualTo("identity\n"));
        m.Iommu!.DeviceUseDefaultDomain(Topologies.Dev(m, "0000:00:02.0"));
        Assert.That(m.Sysfs.Write(path, "DMA"), Is.EqualTo(Errno.EPERM.Negative()));
        Assert.That(m.Sysfs.Read(path), Is.EqualTo("identity\n"));
    }

    [Test]
    public void DmaToDmaFq_SwitchesTheLiveDomainInPlace_EvenWithADriverBound()
    {
        SimMachine m = Topologies.Build($"[{Topologies.Endpoint(2)}]");
        PciDevice dev = Topologies.Dev(m, "0000:00:02.0");
        IommuDomain before = dev.IommuGroup!.DefaultDomain!;
        m.Iommu!.DeviceUseDefaultDomain(dev);
        Assert.That(m.Sysfs.Write("/sys/kernel/iommu_groups/0/type", "DMA-FQ"), Is.GreaterThan(0));
        Assert.That(m.Sysfs.Read("/sys/kernel/iommu_groups/0/type"), Is.EqualTo("DMA-FQ\n"));
        Assert.That(dev.IommuGroup.DefaultDomain, Is.SameAs(before));
        Assert.That(dev.IommuGroup.Domain, Is.SameAs(before));
    }

    [Test]
    public void ChangingTheDefaultDomainType_LeavesAnAttachedForeignDomainAttached()
    {
        SimMachine m = Topologies.Build($"[{Topologies.Endpoint(2)}]");
        PciDevice dev = Topologies.Dev(m, "0000:00:02.0");
        IommuGroup g = dev.IommuGroup!;
        IommuDomain mine = m.Iommu!.DomainAlloc();
        Assert.That(m.Iommu.AttachGroup(mine, g), Is.Zero);
        Assert.That(m.Sysfs.Write("/sys/kernel/iommu_groups/0/type", "identity"), Is.GreaterThan(0));
        Assert.That(g.DefaultDomain!.Type, Is.EqualTo(IommuDomainType.Identity));
        Assert.That(g.Domain, Is.SameAs(mine));
    }
}
