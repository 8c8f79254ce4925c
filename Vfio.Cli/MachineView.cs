// Shows a simulated machine the way an administrator looks at a host before passing a
// device through: the PCI tree with drivers (lspci -tv), and the IOMMU groups with their
// members and whether user space could take each group now (who uses it for kernel DMA).

using Spectre.Console;
using Vfio.Platform;
using Vfio.Platform.Iommu;
using Vfio.Platform.Pci;

namespace Vfio.Cli;

internal static class MachineView
{
    /// <summary>The PCI hierarchy as a tree: function, ids, model, driver, group.</summary>
    public static Tree PciTree(SimMachine m)
    {
        var tree = new Tree($"[bold]{Markup.Escape(m.Description?.Name ?? "machine")}[/]: PCI domain 0000, root bus 00");
        AddBus(tree.AddNode("[grey]bus 00[/]"), m.PciRootBus);
        return tree;
    }

    private static void AddBus(TreeNode node, PciBusSegment bus)
    {
        foreach (PciDevice d in bus.Devices.OrderBy(x => x.DevFn))
        {
            TreeNode child = node.AddNode(Describe(d));
            if (d.Subordinate is { } sub)
            {
                AddBus(child, sub);
            }
        }
    }

    private static string Describe(PciDevice d)
    {
        string driver = d.Driver is { } drv ? $"[green]{Markup.Escape(drv.Name)}[/]" : "[grey]no driver[/]";
        string group = d.IommuGroup is { } g ? $"group {g.Id}" : "no group";
        return $"{Markup.Escape(d.Name)} [[{d.Identity.Vendor:x4}:{d.Identity.Device:x4}]] {Markup.Escape(d.GetType().Name)} · {driver} · {group}";
    }

    /// <summary>One row per group: members, drivers, and whether a user owner could claim it now.</summary>
    public static Table GroupTable(SimMachine m)
    {
        var table = new Table().Border(TableBorder.Rounded)
            .AddColumn("group").AddColumn("devices").AddColumn("drivers").AddColumn("could user space claim it now?");
        if (m.Iommu is null)
        {
            return table.AddRow("-", "no IOMMU on this machine", "", "");
        }

        foreach (IommuGroup g in m.Iommu.Groups)
        {
            IReadOnlyList<Vfio.Platform.Base.SimDevice> devs = g.Devices;
            string names = string.Join("\n", devs.Select(d => d.Name));
            string drivers = string.Join("\n", devs.Select(d => d.Driver?.Name ?? "-"));
            // iommu_group_claim_dma_owner() succeeds only while owner_cnt is 0.
            string verdict = g.OwnerCount == 0
                ? "[green]yes[/]: no kernel driver uses DMA in it"
                : g.Owner is not null
                    ? "[yellow]no[/]: user space owns it"
                    : $"[yellow]no[/]: {Markup.Escape(string.Join("; ", devs.Where(d => d.Driver is { DriverManagedDma: false }).Select(d => $"{d.Name} is bound to {d.Driver!.Name}")))}";
            table.AddRow(g.Id.ToString(System.Globalization.CultureInfo.InvariantCulture), Markup.Escape(names), Markup.Escape(drivers), verdict);
        }

        return table;
    }
}
