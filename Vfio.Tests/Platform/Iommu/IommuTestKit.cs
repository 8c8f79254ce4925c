// Helpers shared by the IOMMU tests: a machine with an emulated IOMMU.

using NUnit.Framework;
using Vfio.Kernel;
using Vfio.Platform;
using Vfio.Platform.Iommu;

namespace Vfio.Tests.Platform.Iommu;

internal static class IommuTestKit
{
    public const long K4 = 4096;
    public const long M2 = 2L << 20;
    public const long G1 = 1L << 30;
    public const IommuProt RW = IommuProt.Read | IommuProt.Write;

    public static (SimMachine Machine, IommuHardware Hw) Create(IommuHardwareConfig? config = null, SchedulerMode mode = SchedulerMode.Real, ulong seed = 1)
    {
        SimMachine m = Machines.Create(mode, ramGiB: 4, seed: seed);
        return (m, new IommuHardware(m.Kernel, m.Memory, config));
    }

    public static IommuDomain Paging(IommuHardwareConfig? config = null)
        => Create(config).Hw.AllocDomain(IommuDomainType.Unmanaged);

    public static void AssertConsistent(IommuDomain d)
        => Assert.That(d.CheckInvariants(), Is.Null, "page-table counters against a recount of the tree");
}
