// The object graph as text: an indented tree (what the command line and the shell print)
// and Graphviz DOT, one cluster per kind of object, each node labelled with its counts.

using System.Text;

namespace Vfio.Sim.Graphs;

public sealed partial class ObjectGraph
{
    // Properties the label already says; the tree and the pictures leave them out.
    private static readonly HashSet<string> s_inLabel = new(StringComparer.Ordinal) { "pid", "comm", "path", "name" };

    /// <summary>The graph as an indented text tree: each process, its fds and what they reach, then the objects no process reaches.</summary>
    /// <remarks>
    /// A line is <c>edge -&gt; node [properties]</c>. An object reached a second time is printed
    /// as <c>(above)</c> without its subtree, so a shared file or a container held by two
    /// groups shows once in full.
    /// </remarks>
    public string ToTree()
    {
        var sb = new StringBuilder();
        var outgoing = Outgoing();
        var printed = new HashSet<string>(StringComparer.Ordinal);
        bool othersHeader = false;
        foreach (GraphNode n in Nodes)
        {
            if (printed.Contains(n.Id))
            {
                continue;
            }

            if (n.Kind != GraphNodeKind.Process && !othersHeader)
            {
                sb.Append("not reached from a process:\n");
                othersHeader = true;
            }

            printed.Add(n.Id);
            sb.Append(Summary(n)).Append('\n');
            TreeChildren(sb, outgoing, printed, n.Id, "");
        }

        return sb.ToString();
    }

    private void TreeChildren(StringBuilder sb, Dictionary<string, List<GraphEdge>> outgoing, HashSet<string> printed, string id, string indent)
    {
        if (!outgoing.TryGetValue(id, out List<GraphEdge>? edges))
        {
            return;
        }

        for (int i = 0; i < edges.Count; i++)
        {
            GraphEdge e = edges[i];
            bool last = i == edges.Count - 1;
            GraphNode to = Find(e.To)!;
            sb.Append(indent).Append(last ? "`-- " : "|-- ").Append(e.Label).Append(" -> ");
            if (!printed.Add(to.Id))
            {
                sb.Append(to.Label).Append(" (above)\n");
                continue;
            }

            sb.Append(Summary(to)).Append('\n');
            TreeChildren(sb, outgoing, printed, to.Id, indent + (last ? "    " : "|   "));
        }
    }

    private Dictionary<string, List<GraphEdge>> Outgoing()
    {
        var outgoing = new Dictionary<string, List<GraphEdge>>(StringComparer.Ordinal);
        foreach (GraphEdge e in Edges)
        {
            if (!outgoing.TryGetValue(e.From, out List<GraphEdge>? list))
            {
                outgoing[e.From] = list = [];
            }

            list.Add(e);
        }

        return outgoing;
    }

    // "label [k=v k=v]".
    private static string Summary(GraphNode n)
    {
        var sb = new StringBuilder(n.Label);
        bool first = true;
        foreach (KeyValuePair<string, string> p in n.Properties)
        {
            if (s_inLabel.Contains(p.Key))
            {
                continue;
            }

            sb.Append(first ? " [" : " ").Append(p.Key).Append('=').Append(p.Value);
            first = false;
        }

        if (!first)
        {
            sb.Append(']');
        }

        return sb.ToString();
    }

    /// <summary>The lines a picture shows for <paramref name="n"/>: its label, then its properties a few to a line.</summary>
    internal static List<string> BoxLines(GraphNode n)
    {
        const int Width = 34;
        var lines = new List<string> { n.Label };
        var line = new StringBuilder();
        foreach (KeyValuePair<string, string> p in n.Properties)
        {
            if (s_inLabel.Contains(p.Key))
            {
                continue;
            }

            string item = p.Key + "=" + p.Value;
            if (line.Length > 0 && line.Length + 1 + item.Length > Width)
            {
                lines.Add(line.ToString());
                line.Clear();
            }

            if (line.Length > 0)
            {
                line.Append(' ');
            }

            line.Append(item);
        }

        if (line.Length > 0)
        {
            lines.Add(line.ToString());
        }

        return lines;
    }

    /// <summary>The graph in Graphviz DOT (<c>dot -Tsvg</c> draws it): a cluster per kind of object, each node labelled with its counts, each edge with what it is.</summary>
    public string ToDot()
    {
        var sb = new StringBuilder();
        sb.Append("digraph \"vfio-sim\" {\n");
        sb.Append("  graph [rankdir=LR, fontname=\"Helvetica\", fontsize=10, nodesep=0.25, ranksep=0.6];\n");
        sb.Append("  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\", fontsize=9];\n");
        sb.Append("  edge [fontname=\"Helvetica\", fontsize=8];\n");
        GraphNodeKind? open = null;
        foreach (GraphNode n in Nodes)
        {
            if (open != n.Kind)
            {
                if (open is not null)
                {
                    sb.Append("  }\n");
                }

                open = n.Kind;
                sb.Append("  subgraph \"cluster_").Append(KindName(n.Kind)).Append("\" {\n");
                sb.Append("    label=\"").Append(Dot(KindTitle(n.Kind))).Append("\"; style=dashed; color=\"#9e9e9e\";\n");
            }

            sb.Append("    ").Append(Quote(n.Id)).Append(" [label=\"");
            List<string> lines = BoxLines(n);
            for (int i = 0; i < lines.Count; i++)
            {
                sb.Append(i == 0 ? "" : "\\n").Append(Dot(lines[i]));
            }

            sb.Append("\", fillcolor=\"").Append(KindColor(n.Kind)).Append("\"];\n");
        }

        if (open is not null)
        {
            sb.Append("  }\n");
        }

        foreach (GraphEdge e in Edges)
        {
            sb.Append("  ").Append(Quote(e.From)).Append(" -> ").Append(Quote(e.To)).Append(" [label=\"").Append(Dot(e.Label)).Append("\"];\n");
        }

        sb.Append("}\n");
        return sb.ToString();
    }

    private static string Quote(string id) => "\"" + Dot(id) + "\"";

    // A DOT double-quoted string: only the quote and the backslash need escaping.
    private static string Dot(string s) => s.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal);

    internal static string KindName(GraphNodeKind kind) => kind switch
    {
        GraphNodeKind.Process => "process",
        GraphNodeKind.File => "file",
        GraphNodeKind.VfioGroup => "vfio_group",
        GraphNodeKind.Container => "container",
        GraphNodeKind.Device => "device",
        GraphNodeKind.IommuGroup => "iommu_group",
        GraphNodeKind.Domain => "domain",
        GraphNodeKind.DmaMapping => "dma",
        GraphNodeKind.BusDevice => "bus_device",
        _ => "other",
    };

    private static string KindTitle(GraphNodeKind kind) => kind switch
    {
        GraphNodeKind.Process => "processes",
        GraphNodeKind.File => "open files (struct file)",
        GraphNodeKind.VfioGroup => "vfio groups",
        GraphNodeKind.Container => "vfio containers",
        GraphNodeKind.Device => "vfio devices",
        GraphNodeKind.IommuGroup => "IOMMU groups",
        GraphNodeKind.Domain => "IOMMU domains",
        GraphNodeKind.DmaMapping => "DMA mappings (type1)",
        GraphNodeKind.BusDevice => "PCI functions and mdevs",
        _ => "eventfds and KVM",
    };

    internal static string KindColor(GraphNodeKind kind) => kind switch
    {
        GraphNodeKind.Process => "#e3f2fd",
        GraphNodeKind.File => "#f5f5f5",
        GraphNodeKind.VfioGroup => "#fff3e0",
        GraphNodeKind.Container => "#e8f5e9",
        GraphNodeKind.Device => "#fce4ec",
        GraphNodeKind.IommuGroup => "#ede7f6",
        GraphNodeKind.Domain => "#e0f7fa",
        GraphNodeKind.DmaMapping => "#f1f8e9",
        GraphNodeKind.BusDevice => "#fffde7",
        _ => "#eceff1",
    };
}
