// The parsed reply of VFIO_IOMMU_GET_INFO (drivers/vfio/vfio_iommu_type1.c): page sizes
// and the IOVA_RANGE, MIGRATION and DMA_AVAIL capabilities.

using Vfio.Core.Uapi;

namespace Vfio.Core.Client;

/// <summary>What VFIO_IOMMU_GET_INFO reported.</summary>
public sealed class VfioIommuInfo
{
    private VfioIommuInfo(VfioIommuType1Info info, IReadOnlyList<VfioInfoCap> caps)
    {
        Info = info;
        Caps = caps;
    }

    /// <summary>The fixed struct as returned.</summary>
    public VfioIommuType1Info Info { get; }

    /// <summary>flags (<see cref="VfioType1Flags.InfoPgsizes"/>, <see cref="VfioType1Flags.InfoCaps"/>).</summary>
    public uint Flags => Info.Flags;

    /// <summary>iova_pgsizes: the bitmap of supported IOMMU page sizes.</summary>
    public ulong IovaPgsizes => Info.IovaPgsizes;

    /// <summary>The usable IOVA ranges (inclusive ends), or an empty list when the capability is absent.</summary>
    public IReadOnlyList<VfioIovaRange> IovaRanges { get; private init; } = [];

    /// <summary>The DMA_AVAIL capability's count of further mappings allowed, or null when absent.</summary>
    public uint? DmaAvail { get; private init; }

    /// <summary>The MIGRATION capability (dirty-tracking page sizes, largest bitmap), or null when absent.</summary>
    public VfioIommuType1InfoCapMigration? Migration { get; private init; }

    /// <summary>Every capability, in chain order.</summary>
    public IReadOnlyList<VfioInfoCap> Caps { get; }

    internal static VfioIommuInfo From(VfioIommuType1Info info, IReadOnlyList<VfioInfoCap> caps)
    {
        VfioIovaRange[] ranges = [];
        uint? avail = null;
        VfioIommuType1InfoCapMigration? migration = null;
        foreach (VfioInfoCap c in caps)
        {
            switch (c.Id)
            {
                case VfioCapId.Type1IovaRange:
                    ranges = c.ReadIovaRanges();
                    break;
                case VfioCapId.Type1Migration:
                    migration = c.Read<VfioIommuType1InfoCapMigration>();
                    break;
                case VfioCapId.Type1DmaAvail:
                    avail = c.Read<VfioIommuType1InfoDmaAvail>().Avail;
                    break;
            }
        }

        return new VfioIommuInfo(info, caps) { IovaRanges = ranges, DmaAvail = avail, Migration = migration };
    }
}
