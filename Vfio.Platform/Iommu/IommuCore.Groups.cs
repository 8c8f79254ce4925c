// Models group formation for PCI of drivers/iommu/iommu.c (pci_device_group and its
// helpers) and the ACS checks of drivers/pci/pci.c (pci_acs_enabled,
// pci_acs_path_enabled) and drivers/pci/search.c (pci_for_each_dma_alias) (v6.12).
//
// In order: (1) walk the DMA-alias chain (the function, its quirk aliases, and bridges
// that take over requester ids — a PCIe-to-PCI bridge for everything behind it); the first
// alias with a group is the answer, otherwise continue from the last alias. (2) Walk up the
// buses to the root: stop at a bridge whose path to the root has SV|RR|CR|UF enabled;
// otherwise move to the bridge and join its group if it has one. (3) Join a group of a
// same-bus DMA alias. (4) For a multifunction function without ACS, join a group of a
// sibling function without ACS. (5) Otherwise a new group.

using Vfio.Platform.Pci;

namespace Vfio.Platform.Iommu;

public sealed partial class IommuCore
{
    /// <summary>pci_device_group(): the group <paramref name="pdev"/> joins (with a reference), or null for a new one.</summary>
    private IommuGroup? PciDeviceGroupLocked(PciDevice pdev)
    {
        _lock.AssertHeld();

        // (1) The DMA-alias walk.
        PciDevice last = pdev;
        foreach (PciDevice alias in DmaAliasChain(pdev))
        {
            last = alias;
            if (alias.IommuGroup is { } g)
            {
                return g.Get();
            }
        }

        // (2) Up the hierarchy until ACS isolates the path.
        PciDevice at = last;
        for (PciBusSegment? bus = at.OnBus; bus is not null && !bus.IsRoot; bus = bus.Parent)
        {
            if (bus.Self is not { } bridge)
            {
                continue;
            }

            if (AcsPathEnabled(bridge, PciRegs.ReqAcsFlags))
            {
                break;
            }

            at = bridge;
            if (bridge.IommuGroup is { } g)
            {
                return g.Get();
            }
        }

        // (3) Same-bus DMA aliases, (4) sibling functions without ACS.
        var visited = new bool[256];
        IommuGroup? found = AliasGroup(at, visited) ?? FunctionAliasGroup(at, visited);
        return found?.Get();
    }

    /// <summary>
    /// pci_for_each_dma_alias(): the function itself (and its quirk aliases, which name the
    /// same function), then each bridge above that rewrites the requester id: a PCIe-to-PCI
    /// bridge (as its secondary bus, devfn 0) and a conventional PCI bridge (as itself).
    /// PCI Express ports pass ids through unchanged.
    /// </summary>
    private static IEnumerable<PciDevice> DmaAliasChain(PciDevice pdev)
    {
        yield return pdev;
        for (PciBusSegment? bus = pdev.OnBus; bus is not null && !bus.IsRoot; bus = bus.Parent)
        {
            if (bus.Self is not { } bridge)
            {
                continue;
            }

            if (bridge.IsPcie)
            {
                int type = ExpType(bridge);
                if (type is PciRegs.ExpTypeRootPort or PciRegs.ExpTypeUpstream or PciRegs.ExpTypeDownstream)
                {
                    continue;
                }

                if (type == PciRegs.ExpTypePciBridge)
                {
                    yield return bridge;
                }

                continue;
            }

            yield return bridge;
        }
    }

    private static int ExpType(PciDevice dev)
        => dev.ExpCap == 0 ? -1 : (dev.Config.GetWord(dev.ExpCap + PciRegs.ExpFlags) >> 4) & 0xf;

    /// <summary>get_pci_alias_group(): a group among <paramref name="pdev"/> and the same-bus functions it aliases or that alias it.</summary>
    private static IommuGroup? AliasGroup(PciDevice pdev, bool[] visited)
    {
        if (visited[pdev.DevFn])
        {
            return null;
        }

        visited[pdev.DevFn] = true;
        if (pdev.IommuGroup is { } g)
        {
            return g;
        }

        foreach (PciDevice tmp in SameBus(pdev))
        {
            if (tmp != pdev && AreDmaAliases(pdev, tmp))
            {
                IommuGroup? found = AliasGroup(tmp, visited) ?? FunctionAliasGroup(tmp, visited);
                if (found is not null)
                {
                    return found;
                }
            }
        }

        return null;
    }

    /// <summary>get_pci_function_alias_group(): for a multifunction function without ACS, a group of a sibling without ACS.</summary>
    private static IommuGroup? FunctionAliasGroup(PciDevice pdev, bool[] visited)
    {
        if (!pdev.IsMultifunction || AcsEnabled(pdev, PciRegs.ReqAcsFlags))
        {
            return null;
        }

        foreach (PciDevice tmp in SameBus(pdev))
        {
            if (tmp == pdev || tmp.Slot != pdev.Slot || AcsEnabled(tmp, PciRegs.ReqAcsFlags))
            {
                continue;
            }

            IommuGroup? found = AliasGroup(tmp, visited);
            if (found is not null)
            {
                return found;
            }
        }

        return null;
    }

    private static IReadOnlyList<PciDevice> SameBus(PciDevice pdev) => pdev.OnBus?.Devices ?? [];

    /// <summary>pci_devs_are_dma_aliases().</summary>
    private static bool AreDmaAliases(PciDevice a, PciDevice b)
        => a.OnBus == b.OnBus && (a.DmaAliasDevFns.Contains(b.DevFn) || b.DmaAliasDevFns.Contains(a.DevFn));

    /// <summary>
    /// pci_acs_enabled(): whether <paramref name="pdev"/> provides the isolation of
    /// <paramref name="flags"/> — by quirk, by its ACS control for root and downstream ports
    /// and multifunction devices, vacuously for single-function endpoints; never for
    /// conventional PCI or PCIe-to-PCI bridges.
    /// </summary>
    public static bool AcsEnabled(PciDevice pdev, ushort flags)
    {
        ArgumentNullException.ThrowIfNull(pdev);
        if (pdev.AcsQuirkFlags is { } quirk)
        {
            return (quirk & flags) == flags;
        }

        if (!pdev.IsPcie)
        {
            return false;
        }

        switch (ExpType(pdev))
        {
            case PciRegs.ExpTypePciBridge:
            case PciRegs.ExpTypePcieBridge:
            case PciRegs.ExpTypeRcEventCollector:
                return false;
            case PciRegs.ExpTypeDownstream:
            case PciRegs.ExpTypeRootPort:
                return AcsFlagsEnabled(pdev, flags);
            case PciRegs.ExpTypeEndpoint:
            case PciRegs.ExpTypeUpstream:
            case PciRegs.ExpTypeLegacyEndpoint:
            case PciRegs.ExpTypeRcEndpoint:
                return !pdev.IsMultifunction || AcsFlagsEnabled(pdev, flags);
            default:
                return true;
        }
    }

    /// <summary>pci_acs_flags_enabled(): the controls for the flags the capability implements (and EC) are on.</summary>
    private static bool AcsFlagsEnabled(PciDevice pdev, ushort flags)
    {
        if (pdev.AcsCap == 0)
        {
            return false;
        }

        ushort cap = pdev.Config.GetWord(pdev.AcsCap + PciRegs.AcsCap);
        int want = flags & (cap | PciRegs.AcsEc);
        ushort ctrl = pdev.Config.GetWord(pdev.AcsCap + PciRegs.AcsCtrl);
        return (ctrl & want) == want;
    }

    /// <summary>pci_acs_path_enabled(start, NULL, flags): ACS holds at <paramref name="start"/> and every bridge above it up to the root bus.</summary>
    public static bool AcsPathEnabled(PciDevice start, ushort flags)
    {
        ArgumentNullException.ThrowIfNull(start);
        for (PciDevice? pdev = start; pdev is not null;)
        {
            if (!AcsEnabled(pdev, flags))
            {
                return false;
            }

            if (pdev.OnBus is null || pdev.OnBus.IsRoot)
            {
                return true;
            }

            pdev = pdev.OnBus.Self;
        }

        return true;
    }
}
