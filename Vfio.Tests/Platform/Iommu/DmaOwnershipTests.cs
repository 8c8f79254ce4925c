// Tests Vfio.Platform/Iommu/IommuCore.Ownership.cs (DMA ownership of drivers/iommu/iommu.c,
// v5.19+: iommu_device_use_default_domain, iommu_group_claim_dma_owner) and the DMA path of
// IommuCore: claims and their errnos, a kernel driver refused in a user-owned group,
// driver_managed_dma exemptions, domain attach/detach, and device DMA through the group's
// current domain with faults recorded.

using NUnit.Framework;
using Vfio.Kernel;
using Vfio.Platform;
using Vfio.Platform.Devices;
using Vfio.Platform.Iommu;
using Vfio.Platform.Pci;

namespace Vfio.Tests.Platform.Iommu;

[TestFixture]
public sealed class DmaOwnershipTests
{
    private const string TwoFunctions =
        "[{\"slot\":1,\"type\":\"root-port\",\"acs\":true,\"children\":[" +
        "{\"slot\":0,\"function\":0,\"type\":\"generic\",\"vendor\":\"0x8086\",\"device\":\"0x1521\",\"multifunction\":true,\"driver\":\"igb\"}," +
        "{\"slot\":0,\"function\":1,\"type\":\"generic\",\"vendor\":\"0x8086\",\"device\":\"0x1522\",\"multifunction\":true}]}]";

    private static readonly object s_owner = new();

    [Test]
    public void ABoundKernelDriver_CountsAsAUserOfTheGroup()
    {
        SimMachine m = Topologies.Build(TwoFunctions);
        IommuGroup g = Topologies.Dev(m, "0000:01:00.0").IommuGroup!;
        Assert.That(g.OwnerCount, Is.EqualTo(1));
        Assert.That(IommuCore.GroupDmaOwnerClaimed(g), Is.True);
    }

    [Test]
    public void ClaimingAGroupWithAKernelDriverBound_IsEpermAndChangesNothing()
    {
        SimMachine m = Topologies.Build(TwoFunctions);
        IommuGroup g = Topologies.Dev(m, "0000:01:00.0").IommuGroup!;
        IommuDomain? before = g.Domain;
        Assert.That(m.Iommu!.GroupClaimDmaOwner(g, s_owner), Is.EqualTo(Errno.EPERM.Negative()));
        Assert.That(g.Owner, Is.Null);
        Assert.That(g.OwnerCount, Is.EqualTo(1));
        Assert.That(g.Domain, Is.SameAs(before));
    }

    [Test]
    public void AClaimAfterUnbind_AttachesTheBlockingDomain_AndReleaseRestoresTheDefault()
    {
        SimMachine m = Topologies.Build(TwoFunctions);
        PciDevice f0 = Topologies.Dev(m, "0000:01:00.0");
        IommuGroup g = f0.IommuGroup!;
        Assert.That(m.Sysfs.Write("/sys/bus/pci/drivers/igb/unbind", f0.Name), Is.GreaterThan(0));
        Assert.That(g.OwnerCount, Is.Zero);

        Assert.That(m.Iommu!.GroupClaimDmaOwner(g, s_owner), Is.Zero);
        Assert.That(g.Domain!.Type, Is.EqualTo(IommuDomainType.Blocked));
        Assert.That(g.Owner, Is.SameAs(s_owner));
        Assert.That(m.Iommu.GroupClaimDmaOwner(g, new object()), Is.EqualTo(Errno.EPERM.Negative()));

        m.Iommu.GroupReleaseDmaOwner(g);
        Assert.That(g.Domain, Is.SameAs(g.DefaultDomain));
        Assert.That(g.OwnerCount, Is.Zero);
    }

    [Test]
    public void AKernelDriverProbingIntoAUserOwnedGroup_FailsWithEbusy_ButDriverManagedDmaDriversBind()
    {
        SimMachine m = Topologies.Build(TwoFunctions);
        PciDevice f0 = Topologies.Dev(m, "0000:01:00.0");
        IommuGroup g = f0.IommuGroup!;
        m.Sysfs.Write("/sys/bus/pci/drivers/igb/unbind", f0.Name);
        Assert.That(m.Iommu!.GroupClaimDmaOwner(g, s_owner), Is.Zero);

        Assert.That(m.Sysfs.Write("/sys/bus/pci/drivers/igb/bind", f0.Name), Is.EqualTo(Errno.EBUSY.Negative()));
        Assert.That(f0.Driver, Is.Null);
        Assert.That(g.OwnerCount, Is.EqualTo(1));

        Assert.That(m.Sysfs.Write("/sys/bus/pci/devices/0000:01:00.1/driver_override", "pci-stub"), Is.GreaterThan(0));
        Assert.That(m.Sysfs.Write("/sys/bus/pci/drivers_probe", "0000:01:00.1"), Is.GreaterThan(0));
        Assert.That(Topologies.Dev(m, "0000:01:00.1").Driver?.Name, Is.EqualTo("pci-stub"));
        Assert.That(g.OwnerCount, Is.EqualTo(1));
    }

    [Test]
    public void DeviceClaims_NestForTheSameOwner_AndRefuseAnother()
    {
        SimMachine m = Topologies.Build(TwoFunctions);
        PciDevice f0 = Topologies.Dev(m, "0000:01:00.0"), f1 = Topologies.Dev(m, "0000:01:00.1");
        m.Sysfs.Write("/sys/bus/pci/drivers/igb/unbind", f0.Name);
        IommuCore iommu = m.Iommu!;
        Assert.That(iommu.DeviceClaimDmaOwner(f0, s_owner), Is.Zero);
        Assert.That(iommu.DeviceClaimDmaOwner(f1, s_owner), Is.Zero);
        Assert.That(f0.IommuGroup!.OwnerCount, Is.EqualTo(2));
        Assert.That(iommu.DeviceClaimDmaOwner(f1, new object()), Is.EqualTo(Errno.EPERM.Negative()));
        iommu.DeviceReleaseDmaOwner(f1);
        Assert.That(f0.IommuGroup.Domain!.Type, Is.EqualTo(IommuDomainType.Blocked));
        iommu.DeviceReleaseDmaOwner(f0);
        Assert.That(f0.IommuGroup.Domain, Is.SameAs(f0.IommuGroup.DefaultDomain));
        Assert.That(f0.IommuGroup.OwnerCount, Is.Zero);
    }

    [Test]
    public void AttachingASecondDomain_IsEbusy_AndDetachReturnsToBlocking()
    {
        SimMachine m = Topologies.Build(TwoFunctions);
        PciDevice f0 = Topologies.Dev(m, "0000:01:00.0");
        m.Sysfs.Write("/sys/bus/pci/drivers/igb/unbind", f0.Name);
        IommuCore iommu = m.Iommu!;
        IommuGroup g = f0.IommuGroup!;
        Assert.That(iommu.GroupClaimDmaOwner(g, s_owner), Is.Zero);
        IommuDomain d1 = iommu.DomainAlloc(), d2 = iommu.DomainAlloc();
        Assert.That(iommu.AttachGroup(d1, g), Is.Zero);
        Assert.That(g.Domain, Is.SameAs(d1));
        Assert.That(iommu.AttachGroup(d2, g), Is.EqualTo(Errno.EBUSY.Negative()));
        Assert.That(g.Domain, Is.SameAs(d1));

        // A claim while a user domain is attached is refused too.
        iommu.DetachGroup(d1, g);
        Assert.That(g.Domain, Is.SameAs(g.BlockingDomain));
        iommu.GroupReleaseDmaOwner(g);
        Assert.That(g.Domain, Is.SameAs(g.DefaultDomain));
    }

    [Test]
    public void CacheCoherency_IsReportedForGroupedDevices()
    {
        SimMachine m = Topologies.Build(TwoFunctions);
        PciDevice dev = Topologies.Dev(m, "0000:01:00.1");
        Assert.That(m.Iommu!.Capable(dev, IommuCap.CacheCoherency), Is.True);
        Assert.That(m.Iommu.Capable(dev, IommuCap.EnforceCacheCoherency), Is.True);
        Assert.That(m.Iommu.Capable(dev, IommuCap.NoExec), Is.False, "intel_iommu_capable answers no for NOEXEC");
    }

    // ---- DMA through the group's domain.

    private static (SimMachine M, GenericPciDevice Dev) DmaMachine()
    {
        SimMachine m = Topologies.Build("[{\"slot\":1,\"type\":\"root-port\",\"acs\":true,\"children\":[{\"slot\":0,\"type\":\"generic\",\"vendor\":\"0x1b36\",\"device\":\"0x0005\"}]}]");
        var dev = (GenericPciDevice)Topologies.Dev(m, "0000:01:00.0");
        dev.WriteConfig(PciRegs.Command, PciRegs.CommandMemory | PciRegs.CommandMaster, 2);
        return (m, dev);
    }

    [Test]
    public void DmaThroughTheDefaultDomainWithNothingMapped_FaultsAndIsLogged()
    {
        (SimMachine m, GenericPciDevice dev) = DmaMachine();
        Span<byte> buf = stackalloc byte[8];
        Assert.That(dev.DmaReadAs(0x10000, buf), Is.EqualTo(Errno.EFAULT.Negative()));
        IommuFault f = m.Iommu!.Hardware.Faults.Snapshot()[^1];
        Assert.That((f.Device, f.Iova, f.Access, f.Reason), Is.EqualTo(("0000:01:00.0", 0x10000UL, IommuAccess.Read, IommuFaultReason.NotPresent)));
    }

    [Test]
    public void DmaThroughAnUnmanagedDomain_ReachesTheMappedPage_AndFaultsAfterUnmap()
    {
        (SimMachine m, GenericPciDevice dev) = DmaMachine();
        IommuCore iommu = m.Iommu!;
        IommuGroup g = dev.IommuGroup!;
        Assert.That(iommu.GroupClaimDmaOwner(g, s_owner), Is.Zero);
        IommuDomain d = iommu.DomainAlloc();
        Assert.That(iommu.AttachGroup(d, g), Is.Zero);

        const long phys = 0x200000;
        byte[] data = [1, 2, 3, 4, 5, 6, 7, 8];
        Assert.That(d.Map(0x100000, phys, 4096, IommuProt.Read | IommuProt.Write), Is.Zero);
        Assert.That(dev.DmaWriteAs(0x100010, data), Is.Zero);
        byte[] back = new byte[8];
        m.Memory.Read(phys + 0x10, back);
        Assert.That(back, Is.EqualTo(data));

        Assert.That(d.Unmap(0x100000, 4096), Is.EqualTo(4096));
        Assert.That(dev.DmaWriteAs(0x100010, data), Is.EqualTo(Errno.EFAULT.Negative()));
        Assert.That(iommu.Hardware.Faults.Snapshot()[^1].Access, Is.EqualTo(IommuAccess.Write));
    }

    [Test]
    public void DmaWhileTheBlockingDomainIsAttached_IsBlocked()
    {
        (SimMachine m, GenericPciDevice dev) = DmaMachine();
        Assert.That(m.Iommu!.GroupClaimDmaOwner(dev.IommuGroup!, s_owner), Is.Zero);
        Assert.That(dev.DmaReadAs(0x200000, new byte[4]), Is.EqualTo(Errno.EFAULT.Negative()));
        Assert.That(m.Iommu.Hardware.Faults.Snapshot()[^1].Reason, Is.EqualTo(IommuFaultReason.Blocked));
    }

    [Test]
    public void DmaThroughAnIdentityDefaultDomain_IsPassThrough()
    {
        (SimMachine m, GenericPciDevice dev) = DmaMachine();
        Assert.That(m.Sysfs.Write($"/sys/kernel/iommu_groups/{dev.IommuGroup!.Id}/type", "identity"), Is.GreaterThan(0));
        byte[] data = [9, 8, 7];
        Assert.That(dev.DmaWriteAs(0x300000, data), Is.Zero);
        byte[] back = new byte[3];
        m.Memory.Read(0x300000, back);
        Assert.That(back, Is.EqualTo(data));
        Assert.That(m.Iommu!.Hardware.Faults.Total, Is.Zero);
    }

    [Test]
    public void DmaWithoutBusMastering_NeverReachesTheIommu()
    {
        (SimMachine m, GenericPciDevice dev) = DmaMachine();
        dev.WriteConfig(PciRegs.Command, PciRegs.CommandMemory, 2);
        Assert.That(dev.DmaReadAs(0x10000, new byte[4]), Is.EqualTo(Errno.EIO.Negative()));
        Assert.That(dev.DmaBlockedByCommand, Is.EqualTo(1));
        Assert.That(m.Iommu!.Hardware.Faults.Total, Is.Zero);
    }
}
