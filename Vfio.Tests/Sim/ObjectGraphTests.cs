// Tests Vfio.Sim/Graphs: the object graph shows the counts the kernel layers keep — after
// the vfio.rst open sequence, and as they change when the fds close in different orders
// (the group file held by the open device, the container held by its group) — the DMA
// mappings with their owner and pins, and it renders as a tree, as DOT that parses and as
// SVG that is well-formed XML, byte for byte the same for the same seed. Capturing from a
// step observer does not change the run.

using System.Text.RegularExpressions;
using System.Xml.Linq;
using NUnit.Framework;
using Vfio.Platform.Proc;
using Vfio.Sim;
using Vfio.Sim.Graphs;
using Vfio.Sim.Scenarios;

namespace Vfio.Tests.Sim;

public sealed partial class ObjectGraphTests
{
    private const string Edu = "0000:01:00.0";

    private static (VfioSim Sim, SimProcess Process, VfioSession Session) OpenEdu(ulong seed = 1)
    {
        VfioSim sim = VfioSim.CreateDefault(seed);
        sim.Bind(Edu);
        SimProcess p = sim.Spawn("user");
        return (sim, p, sim.Open(p, Edu));
    }

    private static GraphNode Node(ObjectGraph g, string id)
        => g.Find(id) ?? throw new AssertionException($"the graph has no node {id}:\n{g.ToTree()}");

    private static string Prop(ObjectGraph g, string id, string name) => Node(g, id).Properties[name];

    private static string FileOf(ObjectGraph g, SimProcess p, int fd)
    {
        GraphEdge e = g.Edges.Single(e => e.From == "process:" + p.Pid && e.Label == "fd " + fd);
        return e.To;
    }

    [Test]
    public void AfterTheVfioRstOpenSequence_TheGraphShowsTheProcessItsThreeFds_AndTheKernelsCounts()
    {
        (VfioSim sim, SimProcess p, VfioSession s) = OpenEdu();
        ObjectGraph g = sim.Graph();

        GraphNode process = Node(g, "process:" + p.Pid);
        Assert.That(process.Kind, Is.EqualTo(GraphNodeKind.Process));
        Assert.That(g.Edges.Where(e => e.From == process.Id).Select(e => e.Label), Is.EqualTo(new[] { $"fd {s.Container.Fd}", $"fd {s.Group.Fd}", $"fd {s.Device.Fd}" }));

        // The container: its fd's reference and the attached group's.
        GraphNode container = Node(g, "container:1");
        Assert.That(container.RefCount, Is.EqualTo(2));
        Assert.That(container.Properties["iommu_driver"], Is.EqualTo("vfio-iommu-type1"));
        Assert.That(g.Edges, Has.Some.EqualTo(new GraphEdge(FileOf(g, p, s.Container.Fd), "container:1", "private_data")));

        // The group: attached (container_users 1) and used by one open device (+1), its file
        // held by the fd and by the device's use of the container.
        GraphNode group = Node(g, "group:2");
        Assert.That(group.Properties["container_users"], Is.EqualTo("2"));
        Assert.That(group.Properties["opened"], Is.EqualTo("yes"));
        Assert.That(group.Properties["viable"], Is.EqualTo("yes"));
        Assert.That(group.Properties["container"], Is.EqualTo("1"));
        Assert.That(group.Owner, Is.EqualTo($"user[{p.Pid}]"));
        Assert.That(Node(g, FileOf(g, p, s.Group.Fd)).RefCount, Is.EqualTo(2), "vfio_group_use_container takes a reference on the group file");
        Assert.That(g.Edges, Has.Some.EqualTo(new GraphEdge("group:2", "container:1", "container")));
        Assert.That(g.Edges, Has.Some.EqualTo(new GraphEdge("group:2", "iommu_group:2", "iommu_group")));

        // The device: registered (1) plus one open fd (+1), opened once.
        GraphNode device = Node(g, "device:" + Edu);
        Assert.That(device.Kind, Is.EqualTo(GraphNodeKind.Device));
        Assert.That(device.RefCount, Is.EqualTo(2));
        Assert.That(device.Properties["refcount"], Is.EqualTo("2"));
        Assert.That(device.Properties["open_count"], Is.EqualTo("1"));
        Assert.That(device.Properties["driver"], Is.EqualTo("vfio-pci"));
        Assert.That(Node(g, FileOf(g, p, s.Device.Fd)).Properties["type"], Is.EqualTo("device"));
        Assert.That(g.Edges, Has.Some.EqualTo(new GraphEdge("group:2", "device:" + Edu, "device")));
        Assert.That(g.Edges, Has.Some.EqualTo(new GraphEdge("device:" + Edu, "bus:" + Edu, "dev")));

        // The IOMMU group: claimed by the vfio group, in the container's unmanaged domain.
        Assert.That(Prop(g, "iommu_group:2", "owner"), Is.EqualTo("vfio group 2"));
        GraphEdge domain = g.Edges.Single(e => e.From == "container:1" && e.Label == "domain");
        Assert.That(Node(g, domain.To).Properties["type"], Is.EqualTo("unmanaged"));
        Assert.That(g.Edges, Has.Some.EqualTo(new GraphEdge(domain.To, "iommu_group:2", "attached group")));
        Assert.That(Prop(g, "bus:" + Edu, "driver"), Is.EqualTo("vfio-pci"));
        s.Dispose();
    }

    [Test]
    public void ClosingTheDeviceFirst_DropsOpenCountAndAContainerUser_ThenTheGroupLetsGoOfTheContainer()
    {
        (VfioSim sim, SimProcess p, VfioSession s) = OpenEdu();
        string groupFile = FileOf(sim.Graph(), p, s.Group.Fd);

        s.Device.Dispose();
        ObjectGraph g = sim.Graph();
        Assert.That(Prop(g, "device:" + Edu, "open_count"), Is.EqualTo("0"));
        Assert.That(Node(g, "device:" + Edu).RefCount, Is.EqualTo(1), "only the registration is left");
        Assert.That(Prop(g, "group:2", "container_users"), Is.EqualTo("1"));
        Assert.That(Node(g, groupFile).RefCount, Is.EqualTo(1));

        s.Group.Dispose();
        g = sim.Graph();
        Assert.That(g.Find(groupFile), Is.Null, "the group file was released");
        Assert.That(Prop(g, "group:2", "opened"), Is.EqualTo("no"));
        Assert.That(Prop(g, "group:2", "container_users"), Is.EqualTo("0"));
        Assert.That(Prop(g, "group:2", "container"), Is.EqualTo("none"));
        Assert.That(Node(g, "container:1").RefCount, Is.EqualTo(1), "only the container's own fd holds it");
        Assert.That(g.Edges.Any(e => e.From == "container:1" && e.Label is "domain" or "group"), Is.False, "the last group took the type1 backend with it");

        s.Container.Dispose();
        g = sim.Graph();
        Assert.That(g.Find("container:1"), Is.Null);
        Assert.That(g.Edges.Any(e => e.From == "process:" + p.Pid), Is.False);
    }

    [Test]
    public void ClosingTheGroupFdFirst_LeavesTheGroupOpened_BecauseTheOpenDeviceHoldsItsFile()
    {
        (VfioSim sim, SimProcess p, VfioSession s) = OpenEdu();
        string groupFile = FileOf(sim.Graph(), p, s.Group.Fd);

        s.Group.Dispose();
        ObjectGraph g = sim.Graph();
        Assert.That(g.Edges.Count(e => e.From == "process:" + p.Pid), Is.EqualTo(2));
        Assert.That(Node(g, groupFile).RefCount, Is.EqualTo(1), "no fd, but the device's use of the container holds it");
        Assert.That(Prop(g, "group:2", "opened"), Is.EqualTo("yes"));
        Assert.That(Prop(g, "group:2", "container_users"), Is.EqualTo("2"));
        Assert.That(Prop(g, "group:2", "container"), Is.EqualTo("1"));

        s.Device.Dispose();
        g = sim.Graph();
        Assert.That(g.Find(groupFile), Is.Null, "the device's close dropped the last reference: the group file is released");
        Assert.That(Prop(g, "group:2", "opened"), Is.EqualTo("no"));
        Assert.That(Prop(g, "group:2", "container"), Is.EqualTo("none"));
        Assert.That(Node(g, "container:1").RefCount, Is.EqualTo(1));
        s.Container.Dispose();
    }

    [Test]
    public void ClosingTheContainerFdFirst_KeepsTheContainerAlive_ThroughItsGroup()
    {
        (VfioSim sim, SimProcess p, VfioSession s) = OpenEdu();
        s.Container.Dispose();
        ObjectGraph g = sim.Graph();
        Assert.That(Node(g, "container:1").RefCount, Is.EqualTo(1), "the attached group's reference");
        Assert.That(g.Edges.Any(e => e.To == "container:1" && e.From.StartsWith("file:", StringComparison.Ordinal)), Is.False, "no file refers to it any more");
        Assert.That(g.Edges, Has.Some.EqualTo(new GraphEdge("group:2", "container:1", "container")));
        Assert.That(Prop(g, "container:1", "iommu_driver"), Is.EqualTo("vfio-iommu-type1"));

        s.Device.Dispose();
        s.Group.Dispose();
        g = sim.Graph();
        Assert.That(g.Find("container:1"), Is.Null, "the group's detach dropped the last reference");
        Assert.That(Prop(g, "group:2", "container_users"), Is.EqualTo("0"));
    }

    [Test]
    public void ADmaMapping_ShowsItsIovaPinsAndOwner_AndGoesWithTheUnmap()
    {
        (VfioSim sim, SimProcess p, VfioSession s) = OpenEdu();
        using UserBuffer buffer = VfioSim.Allocate(p, 1 << 20);
        s.Container.MapDma(buffer.Address, 0x100000, buffer.Size);

        ObjectGraph g = sim.Graph();
        GraphNode dma = Node(g, "dma:1:0x100000");
        Assert.That(dma.Kind, Is.EqualTo(GraphNodeKind.DmaMapping));
        Assert.That(dma.Owner, Is.EqualTo($"user[{p.Pid}]"));
        Assert.That(dma.Properties["size"], Is.EqualTo("0x100000"));
        Assert.That(dma.Properties["vaddr"], Is.EqualTo($"0x{buffer.Address:x}"));
        Assert.That(dma.Properties["prot"], Is.EqualTo("rw"));
        Assert.That(dma.Properties["pinned_pages"], Is.EqualTo("256"));
        Assert.That(long.Parse(dma.Properties["pinned_pages"], System.Globalization.CultureInfo.InvariantCulture), Is.EqualTo(sim.PinnedPages), "the mapping holds every pinned page");
        Assert.That(g.Edges, Has.Some.EqualTo(new GraphEdge("container:1", dma.Id, "dma")));
        Assert.That(g.Edges, Has.Some.EqualTo(new GraphEdge(dma.Id, "process:" + p.Pid, "task")));
        Assert.That(Prop(g, "process:" + p.Pid, "locked_vm"), Is.EqualTo("256"));

        s.Container.UnmapDma(0x100000, buffer.Size);
        g = sim.Graph();
        Assert.That(g.Nodes.Any(n => n.Kind == GraphNodeKind.DmaMapping), Is.False);
        Assert.That(Prop(g, "process:" + p.Pid, "locked_vm"), Is.EqualTo("0"));
        s.Dispose();
    }

    [Test]
    public void TheTree_StartsWithTheProcesses_AndPrintsASharedObjectOnce()
    {
        (VfioSim sim, SimProcess p, VfioSession s) = OpenEdu();
        string tree = sim.Graph().ToTree();
        string[] lines = tree.Split('\n');
        Assert.That(lines[0], Does.StartWith("process init[1]"));
        Assert.That(tree, Does.Contain($"process user[{p.Pid}]"));
        Assert.That(tree, Does.Contain($"|-- fd {s.Container.Fd} -> file "));
        Assert.That(tree, Does.Contain("private_data -> container 1 [refcount=2"));
        Assert.That(tree, Does.Contain("open_count=1"));
        Assert.That(lines.Count(l => l.Contains("-> vfio group 2 [", StringComparison.Ordinal)), Is.EqualTo(1), "printed in full once");
        Assert.That(tree, Does.Contain("-> vfio group 2 (above)"));
        Assert.That(tree, Does.Contain("not reached from a process:"));
        s.Dispose();
    }

    [GeneratedRegex("^    \"(?<id>(?:[^\"\\\\]|\\\\.)*)\" \\[label=", RegexOptions.Multiline)]
    private static partial Regex DotNode();

    [GeneratedRegex("^  \"(?<from>(?:[^\"\\\\]|\\\\.)*)\" -> \"(?<to>(?:[^\"\\\\]|\\\\.)*)\" \\[label=\"(?:[^\"\\\\]|\\\\.)*\"\\];$", RegexOptions.Multiline)]
    private static partial Regex DotEdge();

    [Test]
    public void TheDot_HasBalancedBracesAndQuotes_AndDeclaresEveryNodeAnEdgeUses()
    {
        (VfioSim sim, SimProcess p, VfioSession s) = OpenEdu();
        ObjectGraph g = sim.Graph();
        string dot = g.ToDot();
        Assert.That(dot, Does.StartWith("digraph \"vfio-sim\" {"));
        Assert.That(dot.TrimEnd(), Does.EndWith("}"));

        // Braces balance outside strings; every string closes.
        int depth = 0;
        bool inString = false;
        for (int i = 0; i < dot.Length; i++)
        {
            char c = dot[i];
            if (inString)
            {
                if (c == '\\')
                {
                    i++;
                }
                else if (c == '"')
                {
                    inString = false;
                }
                else
                {
                    Assert.That(c, Is.Not.EqualTo('\n'), "a string runs past its line");
                }
            }
            else if (c == '"')
            {
                inString = true;
            }
            else if (c is '{' or '}')
            {
                depth += c == '{' ? 1 : -1;
                Assert.That(depth, Is.GreaterThanOrEqualTo(0));
            }
        }

        Assert.That((depth, inString), Is.EqualTo((0, false)));
        var declared = DotNode().Matches(dot).Select(m => m.Groups["id"].Value).ToHashSet();
        Assert.That(declared, Is.EquivalentTo(g.Nodes.Select(n => n.Id)));
        MatchCollection edges = DotEdge().Matches(dot);
        Assert.That(edges, Has.Count.EqualTo(g.Edges.Count));
        foreach (Match m in edges)
        {
            Assert.That(declared, Does.Contain(m.Groups["from"].Value).And.Contain(m.Groups["to"].Value));
        }

        Assert.That(dot, Does.Contain("subgraph \"cluster_container\""));
        Assert.That(dot, Does.Contain("refcount=2"));
        s.Dispose();
    }

    [Test]
    public void TheSvg_IsWellFormedXml_WithOneBoxPerNode_AndOneArrowPerEdge_EvenForAwkwardNames()
    {
        (VfioSim sim, SimProcess p, VfioSession s) = OpenEdu();
        sim.Spawn("a<b>&\"c'");
        ObjectGraph g = sim.Graph();
        XDocument svg = XDocument.Parse(g.ToSvg());
        XNamespace ns = "http://www.w3.org/2000/svg";
        Assert.That(svg.Root!.Name, Is.EqualTo(ns + "svg"));
        var nodes = svg.Descendants(ns + "g").Where(e => ((string?)e.Attribute("class"))?.StartsWith("node ", StringComparison.Ordinal) == true).ToList();
        Assert.That(nodes.Select(n => (string)n.Attribute("id")!), Is.EqualTo(g.Nodes.Select(n => n.Id)));
        foreach (XElement n in nodes)
        {
            Assert.That(n.Elements(ns + "rect").Count(), Is.EqualTo(1));
            GraphNode node = g.Find((string)n.Attribute("id")!)!;
            Assert.That(n.Elements(ns + "text").First().Value, Is.EqualTo(node.Label));
        }

        var edges = svg.Descendants(ns + "g").Where(e => (string?)e.Attribute("class") == "edge").ToList();
        Assert.That(edges, Has.Count.EqualTo(g.Edges.Count));
        Assert.That(edges.All(e => (string?)e.Element(ns + "path")!.Attribute("marker-end") == "url(#arrow)"), Is.True);
        Assert.That(svg.Descendants(ns + "text").Any(t => t.Value.Contains("a<b>&\"c'", StringComparison.Ordinal)), Is.True, "the awkward comm survives escaping");
        s.Dispose();
    }

    [Test]
    public void TheSameSeed_GivesTheSameTreeDotAndSvg_ByteForByte()
    {
        (string, string, string) Draw()
        {
            (VfioSim sim, SimProcess p, VfioSession s) = OpenEdu(seed: 7);
            using UserBuffer b = VfioSim.Allocate(p, 64 << 10);
            s.Container.MapDma(b.Address, 0, b.Size);
            ObjectGraph g = sim.Graph();
            return (g.ToTree(), g.ToDot(), g.ToSvg());
        }

        (string, string, string) first = Draw();
        (string, string, string) second = Draw();
        Assert.That(second, Is.EqualTo(first));
    }

    [Test]
    public void AtStep_OfVfioRstDemo_DrawsTheMachineAsItWasAfterThatStep()
    {
        var demo = ScenarioCatalog.Default.Get("vfio-rst-demo");

        ObjectGraph boot = ObjectGraph.AtStep(demo, 0);
        Assert.That(boot.Nodes.Any(n => n.Kind is GraphNodeKind.Container or GraphNodeKind.Device), Is.False, "before the first step nothing is open");
        Assert.That(Prop(boot, "bus:" + Edu, "driver"), Is.EqualTo("edu"));

        ObjectGraph mapped = ObjectGraph.AtStep(demo, 9);
        Assert.That(mapped.Nodes.Count(n => n.Kind == GraphNodeKind.DmaMapping), Is.EqualTo(1));
        Assert.That(mapped.Nodes.Any(n => n.Kind == GraphNodeKind.Device), Is.True, "vfio-pci registered edu");
        Assert.That(Prop(mapped, "device:" + Edu, "open_count"), Is.EqualTo("0"), "no GET_DEVICE_FD yet");

        ObjectGraph msi = ObjectGraph.AtStep(demo, 15);
        GraphEdge trigger = msi.Edges.Single(e => e.From == "device:" + Edu && e.Label == "msi[0] trigger");
        Assert.That(Node(msi, trigger.To).RefCount, Is.EqualTo(2), "the eventfd's file and vfio-pci's trigger");

        ObjectGraph last = ObjectGraph.AtStep(demo);
        Assert.That(last.Nodes.Any(n => n.Kind is GraphNodeKind.Container or GraphNodeKind.DmaMapping or GraphNodeKind.Device), Is.False, "the last step closed everything and gave edu back");
        Assert.That(Prop(last, "bus:" + Edu, "driver"), Is.EqualTo("edu"));

        Assert.That(() => ObjectGraph.AtStep(demo, 99), Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("has 21 steps"));
    }

    [Test]
    public void CapturingAfterEveryStep_DoesNotChangeTheRun()
    {
        foreach (string name in new[] { "vfio-rst-demo", "mtty-demo", "kvm-group-vs-container-change", "mdev-create-remove-vs-unregister" })
        {
            Scenario scenario = ScenarioCatalog.Default.Get(name);
            var options = new ScenarioOptions { Seed = 3 };
            ScenarioResult plain = scenario.Run(options);

            VfioSim sim = scenario.Boot(options);
            var observer = new GraphObserver(sim);
            ScenarioResult graphed = scenario.Run(sim, options with { Observer = observer });

            Assert.That(graphed.Passed, Is.EqualTo(plain.Passed), name);
            Assert.That(observer.Graph, Is.Not.Null, name);
            Assert.That(graphed.Trace!.ToJson(), Is.EqualTo(plain.Trace!.ToJson()), $"{name}: the capture took a lock or yielded");
        }
    }

    [Test]
    public void AGraphObserver_RefusesRealThreads()
    {
        VfioSim sim = VfioSim.CreateBuilder().UseScheduler(Vfio.Kernel.SchedulerMode.Real).AddVfioPci().Build();
        Assert.That(() => new GraphObserver(sim), Throws.ArgumentException.With.Message.Contains("controlled scheduler"));
    }
}
