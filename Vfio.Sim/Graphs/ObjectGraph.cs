// The object graph of a booted simulation at one moment: processes, their fds and files,
// vfio groups, containers, devices, IOMMU groups, domains and DMA mappings, with their
// reference counts and owners, as a tree, DOT, or an SVG laid out in-process.

namespace Vfio.Sim.Graphs;

/// <summary>What a node of the object graph stands for.</summary>
public enum GraphNodeKind
{
    /// <summary>A simulated process.</summary>
    Process,

    /// <summary>An open file (<c>struct file</c>), reached from fds.</summary>
    File,

    /// <summary>A vfio group (<c>/dev/vfio/N</c>).</summary>
    VfioGroup,

    /// <summary>A vfio container (<c>/dev/vfio/vfio</c>).</summary>
    Container,

    /// <summary>A vfio device (<c>struct vfio_device</c>).</summary>
    Device,

    /// <summary>An IOMMU group.</summary>
    IommuGroup,

    /// <summary>An IOMMU domain.</summary>
    Domain,

    /// <summary>A DMA mapping of a container (<c>struct vfio_dma</c>).</summary>
    DmaMapping,

    /// <summary>A PCI function or mdev on its bus, with its driver.</summary>
    BusDevice,

    /// <summary>Anything else the graph shows (a KVM device, an eventfd).</summary>
    Other,
}

/// <summary>A node: one kernel object, with its reference count and owner where it has them.</summary>
/// <param name="Id">Stable id within the graph (<c>group:2</c>, <c>file:7</c>, <c>device:0000:01:00.0</c>).</param>
/// <param name="Kind">What it is.</param>
/// <param name="Label">What the picture shows.</param>
/// <param name="RefCount">Its reference count (the kernel's refcount_t / kref / f_count), when it has one.</param>
/// <param name="Owner">Who owns it (a process, a container), when it has an owner.</param>
/// <param name="Properties">Further values by name (<c>open_count</c>, <c>viable</c>, <c>iova</c>…).</param>
public sealed record GraphNode(string Id, GraphNodeKind Kind, string Label, long? RefCount, string? Owner, IReadOnlyDictionary<string, string> Properties);

/// <summary>An edge: <paramref name="From"/> holds or points at <paramref name="To"/>.</summary>
/// <param name="From">Source node id.</param>
/// <param name="To">Target node id.</param>
/// <param name="Label">What the edge is (<c>fd 4</c>, <c>container</c>, <c>holds ref</c>).</param>
public sealed record GraphEdge(string From, string To, string Label);

/// <summary>A snapshot of the simulation's objects and the references between them.</summary>
public sealed partial class ObjectGraph
{
    internal ObjectGraph(IReadOnlyList<GraphNode> nodes, IReadOnlyList<GraphEdge> edges)
    {
        Nodes = nodes;
        Edges = edges;
    }

    /// <summary>The nodes, in a stable order.</summary>
    public IReadOnlyList<GraphNode> Nodes { get; }

    /// <summary>The edges, in a stable order.</summary>
    public IReadOnlyList<GraphEdge> Edges { get; }

    /// <summary>Takes the graph of <paramref name="sim"/> now.</summary>
    /// <remarks>
    /// Takes no kernel lock, so capturing does not change a run: call it when no task runs
    /// (between runs), or from a <see cref="Scenarios.IScenarioObserver"/> under the
    /// controlled scheduler, as <see cref="GraphObserver"/> does.
    /// </remarks>
    public static ObjectGraph Capture(VfioSim sim)
    {
        ArgumentNullException.ThrowIfNull(sim);
        return new ObjectGraphBuilder(sim).Build();
    }

    /// <summary>
    /// Runs <paramref name="scenario"/> under the controlled scheduler (whatever
    /// <paramref name="options"/> says of the mode) and returns the graph after step
    /// <paramref name="step"/>: 0 is the booted machine before the first step, null the last
    /// step that ran (or, for a scenario without numbered steps, the machine after the run).
    /// </summary>
    /// <exception cref="InvalidOperationException">The machine cannot run the scenario.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The run ended before step <paramref name="step"/> (a step failed, or the scenario has fewer steps).</exception>
    public static ObjectGraph AtStep(Scenarios.Scenario scenario, int? step = null, Scenarios.ScenarioOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(scenario);
        Scenarios.ScenarioOptions o = (options ?? new Scenarios.ScenarioOptions()) with { Mode = Kernel.SchedulerMode.Controlled };
        VfioSim sim = scenario.Boot(o);
        var observer = new GraphObserver(sim, step, o.Observer);
        Scenarios.ScenarioResult result = scenario.Run(sim, o with { Observer = observer });
        if (result.UnmetReason is { } why)
        {
            throw new InvalidOperationException($"{scenario.Name} cannot run on this machine: {why}");
        }

        // A scenario without numbered steps (most races) is drawn when its run is over.
        if (observer.Graph is null && step is null && observer.StepsSeen == 0)
        {
            return Capture(sim);
        }

        return observer.Graph ?? throw new ArgumentOutOfRangeException(nameof(step), step, result.FailedStep is { } f
            ? $"{scenario.Name} stopped at step {f.Number} ({f.Title}: expected {f.Expected}; found {f.Found}) before step {step}"
            : $"{scenario.Name} has {observer.StepsSeen} steps, not {step}");
    }

    /// <summary>The node with <paramref name="id"/>, or null.</summary>
    public GraphNode? Find(string id)
    {
        foreach (GraphNode n in Nodes)
        {
            if (n.Id == id)
            {
                return n;
            }
        }

        return null;
    }

    /// <summary>
    /// The part of the graph a process reaches: every process that holds something and what
    /// its fds lead to, following references. Leaves out what no user holds (idle IOMMU
    /// groups, devices on their host drivers), which makes a smaller picture.
    /// </summary>
    public ObjectGraph ReachableFromProcesses()
    {
        var next = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        foreach (GraphEdge e in Edges)
        {
            if (!next.TryGetValue(e.From, out List<string>? to))
            {
                next[e.From] = to = [];
            }

            to.Add(e.To);
        }

        var keep = new HashSet<string>(StringComparer.Ordinal);
        var work = new Stack<string>();
        foreach (GraphNode n in Nodes)
        {
            if (n.Kind == GraphNodeKind.Process && next.ContainsKey(n.Id))
            {
                keep.Add(n.Id);
                work.Push(n.Id);
            }
        }

        while (work.Count > 0)
        {
            foreach (string to in next.GetValueOrDefault(work.Pop()) ?? [])
            {
                if (keep.Add(to))
                {
                    work.Push(to);
                }
            }
        }

        return new ObjectGraph(
            [.. Nodes.Where(n => keep.Contains(n.Id))],
            [.. Edges.Where(e => keep.Contains(e.From) && keep.Contains(e.To))]);
    }

    /// <summary>The graph as an SVG document, laid out in-process (no external program).</summary>
    public string ToSvg() => SvgRenderer.Render(this);
}
