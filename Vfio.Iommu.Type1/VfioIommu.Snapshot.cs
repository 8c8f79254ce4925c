// Read-only views of a type1 instance (struct vfio_iommu of drivers/vfio/vfio_iommu_type1.c,
// v6.12) for the object graph: its domains, emulated groups and mappings, read without
// iommu->lock. Only for a moment when no task runs (between runs, or from a step observer
// under the controlled scheduler), where nothing can change them underneath.

using Vfio.Platform.Iommu;

namespace Vfio.Iommu.Type1;

internal sealed partial class VfioIommu
{
    /// <summary>domain_list: each IOMMU domain with the IOMMU groups attached to it.</summary>
    internal IReadOnlyList<(IommuDomain Domain, IReadOnlyList<IommuGroup> Groups)> DomainsUnlocked
    {
        get
        {
            var list = new List<(IommuDomain, IReadOnlyList<IommuGroup>)>(_domains.Count);
            foreach (VfioDomain d in _domains)
            {
                var groups = new List<IommuGroup>(d.Groups.Count);
                foreach (VfioIommuGroup g in d.Groups)
                {
                    groups.Add(g.Group);
                }

                list.Add((d.Domain, groups));
            }

            return list;
        }
    }

    /// <summary>emulated_iommu_groups: groups without a domain (mdevs that pin through vfio_pin_pages).</summary>
    internal IReadOnlyList<IommuGroup> EmulatedGroupsUnlocked
    {
        get
        {
            var list = new List<IommuGroup>(_emulatedGroups.Count);
            foreach (VfioIommuGroup g in _emulatedGroups)
            {
                list.Add(g.Group);
            }

            return list;
        }
    }

    /// <summary>dma_list in IOVA order.</summary>
    internal IReadOnlyList<VfioDma> DmasUnlocked
    {
        get
        {
            var list = new List<VfioDma>(_dmas.Count);
            for (VfioDma? d = _dmas.First(); d is not null; d = VfioDmaTree.Next(d))
            {
                list.Add(d);
            }

            return list;
        }
    }

    /// <summary>dma_avail: how many more mappings the container may make.</summary>
    internal uint DmaAvailUnlocked => _dmaAvail;
}
