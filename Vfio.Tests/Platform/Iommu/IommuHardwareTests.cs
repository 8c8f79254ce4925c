using NUnit.Framework;
using Vfio.Kernel;
using Vfio.Platform;
using Vfio.Platform.Iommu;
using static Vfio.Tests.Platform.Iommu.IommuTestKit;

namespace Vfio.Tests.Platform.Iommu;

public sealed class IommuHardwareTests
{
    private const string Dev = "0000:01:00.0";
    private const ulong Iova = 0x10_0000UL;
    private const long P1 = 0x4000_0000L;
    private const long P2 = 0x5000_0000L;

    private static byte[] Pattern(int n)
    {
        byte[] b = new byte[n];
        for (int i = 0; i < n; i++)
        {
            b[i] = (byte)((i * 7) + 3);
        }

        return b;
    }

    private static byte[] ReadPhys(SimMachine m, long pa, int n)
    {
        byte[] b = new byte[n];
        m.Memory.Read(pa, b);
        return b;
    }

    [Test]
    public void DmaThroughAnIdentityDomain_ReachesThePhysicalAddress()
    {
        (SimMachine m, IommuHardware hw) = Create();
        IommuDomain id = hw.AllocDomain(IommuDomainType.Identity);
        byte[] data = Pattern(6000);
        Assert.That(hw.DmaWrite(id, Dev, (ulong)P1 + 100, data), Is.Zero);
        Assert.That(ReadPhys(m, P1 + 100, data.Length), Is.EqualTo(data));
        Assert.That(id.IovaToPhys(0x1234), Is.EqualTo(0x1234));
    }

    [Test]
    public void DmaThroughABlockingDomainOrNone_FaultsAsBlocked()
    {
        (_, IommuHardware hw) = Create();
        IommuDomain blocked = hw.AllocDomain(IommuDomainType.Blocked);
        Assert.That(hw.DmaRead(blocked, Dev, Iova, new byte[8]), Is.EqualTo(Errno.EFAULT.Negative()));
        Assert.That(hw.DmaWrite(null, Dev, Iova, new byte[8]), Is.EqualTo(Errno.EFAULT.Negative()));
        IReadOnlyList<IommuFault> faults = hw.Faults.Snapshot();
        Assert.That(faults, Has.Count.EqualTo(2));
        Assert.That(faults[0] with { TimeNs = 0 }, Is.EqualTo(new IommuFault(0, Dev, Iova, IommuAccess.Read, IommuFaultReason.Blocked, blocked.Id)));
        Assert.That(faults[1].DomainId, Is.Zero, "no domain attached");
        Assert.That(blocked.IovaToPhys(Iova), Is.Zero);
    }

    [Test]
    public void DmaThroughAnUnmanagedDomain_FollowsThePageTableAcrossPages()
    {
        (SimMachine m, IommuHardware hw) = Create();
        IommuDomain d = hw.AllocDomain(IommuDomainType.Unmanaged);
        Assert.That(d.Map(Iova, P1, K4, RW), Is.Zero);
        Assert.That(d.Map(Iova + (ulong)K4, P2, K4, RW), Is.Zero);
        byte[] data = Pattern(5000);
        Assert.That(hw.DmaWrite(d, Dev, Iova + 1000, data), Is.Zero);
        Assert.That(ReadPhys(m, P1 + 1000, 3096), Is.EqualTo(data[..3096]));
        Assert.That(ReadPhys(m, P2, 1904), Is.EqualTo(data[3096..]));

        byte[] back = new byte[5000];
        Assert.That(hw.DmaRead(d, Dev, Iova + 1000, back), Is.Zero);
        Assert.That(back, Is.EqualTo(data));
        Assert.That(hw.Faults.Total, Is.Zero);
    }

    [Test]
    public void DmaToAnUnmappedIova_IsEfault_AfterTheMappedPagesWereTransferred()
    {
        (SimMachine m, IommuHardware hw) = Create();
        IommuDomain d = hw.AllocDomain(IommuDomainType.Unmanaged);
        Assert.That(d.Map(Iova, P1, K4, RW), Is.Zero);
        byte[] data = Pattern(2 * (int)K4);
        Assert.That(hw.DmaWrite(d, Dev, Iova, data), Is.EqualTo(Errno.EFAULT.Negative()));
        Assert.That(ReadPhys(m, P1, (int)K4), Is.EqualTo(data[..(int)K4]), "the first page went through");
        IommuFault f = hw.Faults.Snapshot().Single();
        Assert.That((f.Device, f.Iova, f.Access, f.Reason, f.DomainId), Is.EqualTo((Dev, Iova + (ulong)K4, IommuAccess.Write, IommuFaultReason.NotPresent, d.Id)));
    }

    [Test]
    public void WriteToAReadOnlyMapping_AndReadOfAWriteOnlyOne_ArePermissionFaults()
    {
        (_, IommuHardware hw) = Create();
        IommuDomain d = hw.AllocDomain(IommuDomainType.Unmanaged);
        Assert.That(d.Map(Iova, P1, K4, IommuProt.Read), Is.Zero);
        Assert.That(d.Map(Iova + (ulong)K4, P2, K4, IommuProt.Write), Is.Zero);
        Assert.That(hw.DmaRead(d, Dev, Iova, new byte[4]), Is.Zero);
        Assert.That(hw.DmaWrite(d, Dev, Iova, new byte[4]), Is.EqualTo(Errno.EFAULT.Negative()));
        Assert.That(hw.DmaRead(d, Dev, Iova + (ulong)K4, new byte[4]), Is.EqualTo(Errno.EFAULT.Negative()));
        Assert.That(hw.Faults.Snapshot().Select(f => f.Reason), Is.All.EqualTo(IommuFaultReason.Permission));
        Assert.That(hw.Faults.Total, Is.EqualTo(2));
    }

    [Test]
    public void DmaBeyondTheAddressWidth_IsAddressBeyondWidth()
    {
        (_, IommuHardware hw) = Create();
        IommuDomain d = hw.AllocDomain(IommuDomainType.Unmanaged);
        Assert.That(d.Geometry, Is.EqualTo(new IommuDomainGeometry(0, (1UL << 48) - 1, true)));
        Assert.That(hw.DmaRead(d, Dev, 1UL << 48, new byte[4]), Is.EqualTo(Errno.EFAULT.Negative()));
        Assert.That(hw.Faults.Snapshot().Single().Reason, Is.EqualTo(IommuFaultReason.AddressBeyondWidth));
    }

    [Test]
    public void FaultLog_KeepsTheLastFaults_AndCountsAll()
    {
        (_, IommuHardware hw) = Create(new IommuHardwareConfig { FaultLogCapacity = 2 });
        for (int i = 0; i < 3; i++)
        {
            hw.DmaRead(null, Dev, (ulong)i * 0x1000, new byte[1]);
        }

        Assert.That(hw.Faults.Total, Is.EqualTo(3));
        Assert.That(hw.Faults.Snapshot().Select(f => f.Iova), Is.EqualTo(new ulong[] { 0x1000, 0x2000 }));
        hw.Faults.Clear();
        Assert.That((hw.Faults.Total, hw.Faults.Snapshot().Count), Is.EqualTo((0L, 0)));
    }

    [Test]
    public void EnforceCacheCoherency_FollowsTheCapability_AndMakesMappingsSnooped()
    {
        (_, IommuHardware hw) = Create();
        IommuDomain d = hw.AllocDomain(IommuDomainType.Unmanaged);
        Assert.That(d.EnforceCacheCoherency(), Is.True);
        Assert.That(d.Map(Iova, P1, K4, IommuProt.Read), Is.Zero);
        Assert.That(d.PageTable!.Walk(Iova, out _, out IommuProt prot, out _), Is.True);
        Assert.That(prot, Is.EqualTo(IommuProt.Read | IommuProt.Cache));

        (_, IommuHardware incoherent) = Create(new IommuHardwareConfig { CacheCoherent = false });
        Assert.That(incoherent.AllocDomain(IommuDomainType.Unmanaged).EnforceCacheCoherency(), Is.False);
    }

    [Test]
    public void ACoherentIommuWithoutSnoopControl_CannotEnforceCoherency_AndMapsWithoutForcingSnoop()
    {
        (_, IommuHardware hw) = Create(new IommuHardwareConfig { CacheCoherent = true, SnoopControl = false });
        Assert.That((hw.Config.CacheCoherent, hw.Config.CanEnforceCacheCoherency), Is.EqualTo((true, false)));
        IommuDomain d = hw.AllocDomain(IommuDomainType.Unmanaged);
        Assert.That(d.EnforceCacheCoherency(), Is.False);
        Assert.That(d.EnforcesCacheCoherency, Is.False);
        Assert.That(d.Map(Iova, P1, K4, IommuProt.Read), Is.Zero);
        Assert.That(d.PageTable!.Walk(Iova, out _, out IommuProt prot, out _), Is.True);
        Assert.That(prot, Is.EqualTo(IommuProt.Read), "no forced snoop");
        Assert.That(new IommuHardwareConfig().SnoopControl, Is.True, "server VT-d has snoop control");
    }

    [Test]
    public void DomainTypes_HaveTheKernelsSysfsNames()
    {
        Assert.That(Enum.GetValues<IommuDomainType>().Select(t => t.SysfsName()),
            Is.EqualTo(new[] { "blocked", "identity", "unmanaged", "DMA", "DMA-FQ" }));
        Assert.That((int)(IommuProt.Read | IommuProt.Write | IommuProt.Cache | IommuProt.NoExec | IommuProt.Mmio | IommuProt.Priv), Is.EqualTo(0x3f));
    }

    [Test]
    public void DomainIds_AreTheLowestFree()
    {
        (_, IommuHardware hw) = Create();
        IommuDomain a = hw.AllocDomain(IommuDomainType.Unmanaged);
        IommuDomain b = hw.AllocDomain(IommuDomainType.Identity);
        Assert.That((a.Id, b.Id), Is.EqualTo((1, 2)));
        a.Free();
        Assert.That(hw.AllocDomain(IommuDomainType.Blocked).Id, Is.EqualTo(1));
        Assert.That(hw.AllocDomain(IommuDomainType.DmaFq).Id, Is.EqualTo(3));
    }
}
