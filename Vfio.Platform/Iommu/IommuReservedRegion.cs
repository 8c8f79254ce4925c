// Models struct iommu_resv_region and the list merging of iommu_insert_resv_region() and
// iommu_get_group_resv_regions() in drivers/iommu/iommu.c (v6.12): regions sorted by start
// (ties by type), overlapping or adjacent regions of the same type merged into one.

using System.Globalization;

namespace Vfio.Platform.Iommu;

/// <summary>enum iommu_resv_type, in the kernel's order.</summary>
public enum IommuResvType
{
    /// <summary>IOMMU_RESV_DIRECT: must stay identity mapped (RMRR).</summary>
    Direct = 0,

    /// <summary>IOMMU_RESV_DIRECT_RELAXABLE.</summary>
    DirectRelaxable = 1,

    /// <summary>IOMMU_RESV_RESERVED: may not be mapped.</summary>
    Reserved = 2,

    /// <summary>IOMMU_RESV_MSI: the hardware MSI window.</summary>
    Msi = 3,

    /// <summary>IOMMU_RESV_SW_MSI: a software-managed MSI window.</summary>
    SwMsi = 4,
}

/// <summary>struct iommu_resv_region.</summary>
/// <param name="Start">First address.</param>
/// <param name="Length">Length in bytes.</param>
/// <param name="Type">What it is reserved for.</param>
public readonly record struct IommuReservedRegion(ulong Start, ulong Length, IommuResvType Type)
{
    /// <summary>The x86 MSI window every device has: 0xfee00000–0xfeefffff.</summary>
    public static IommuReservedRegion X86MsiWindow { get; } = new(0xfee00000, 0x100000, IommuResvType.Msi);

    /// <summary>Last address (inclusive).</summary>
    public ulong End => Start + Length - 1;

    /// <summary>The type as sysfs prints it (both MSI kinds print "msi").</summary>
    public string TypeName => Type switch
    {
        IommuResvType.Direct => "direct",
        IommuResvType.DirectRelaxable => "direct-relaxable",
        IommuResvType.Reserved => "reserved",
        _ => "msi",
    };

    /// <summary>The reserved_regions line: start, inclusive end, type.</summary>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"0x{Start:x16} 0x{End:x16} {TypeName}");

    /// <summary>iommu_insert_resv_region(): adds <paramref name="region"/> to the sorted list, merging it with same-type neighbours.</summary>
    public static void Insert(List<IommuReservedRegion> regions, IommuReservedRegion region)
    {
        ArgumentNullException.ThrowIfNull(regions);
        int at = 0;
        while (at < regions.Count && !(region.Start < regions[at].Start || (region.Start == regions[at].Start && region.Type <= regions[at].Type)))
        {
            at++;
        }

        regions.Insert(at, region);

        // One pass in order: a region of the new region's type folds into the last kept
        // region of that type when it starts at most one past its end.
        var kept = new List<IommuReservedRegion>(regions.Count);
        foreach (IommuReservedRegion r in regions)
        {
            if (r.Type != region.Type)
            {
                kept.Add(r);
                continue;
            }

            int top = kept.FindLastIndex(k => k.Type == r.Type);
            if (top < 0 || r.Start > kept[top].End + 1)
            {
                kept.Add(r);
                continue;
            }

            IommuReservedRegion t = kept[top];
            ulong end = Math.Max(t.End, r.End);
            kept[top] = t with { Length = end - t.Start + 1 };
        }

        regions.Clear();
        regions.AddRange(kept);
    }
}
