// A snapshot of who waits for what, taken when a run deadlocks or runs out of budget:
// task → object it sleeps on → tasks holding that object.

using System.Text;

namespace Vfio.Kernel;

/// <summary>One sleeping (or runnable) task and what it waits for.</summary>
/// <param name="Task">The task (<c>comm/pid</c>).</param>
/// <param name="State">Blocked or runnable.</param>
/// <param name="Operation">The kernel function it is in (<c>mutex_lock</c>).</param>
/// <param name="ObjectKind">The kind of object (<c>mutex</c>), or null.</param>
/// <param name="ObjectName">The object's name, or null.</param>
/// <param name="Holders">Tasks that hold the object.</param>
/// <param name="Hint">What would wake the task when nobody holds the object ("complete()").</param>
/// <param name="DeadlineNs">Virtual deadline of a timed sleep, or null.</param>
public sealed record WaitEdge(
    string Task,
    TaskState State,
    string Operation,
    string? ObjectKind,
    string? ObjectName,
    IReadOnlyList<string> Holders,
    string Hint,
    long? DeadlineNs);

/// <summary>The wait-for graph of a run at the moment it failed.</summary>
public sealed class WaitForGraph
{
    internal WaitForGraph(IReadOnlyList<WaitEdge> edges, IReadOnlyList<string> cycle)
    {
        Edges = edges;
        Cycle = cycle;
    }

    /// <summary>One entry per live task, in task-id order.</summary>
    public IReadOnlyList<WaitEdge> Edges { get; }

    /// <summary>
    /// A cycle task → object → holder → … → task when one exists (a true deadlock among
    /// lock holders), as alternating task and object names; empty otherwise.
    /// </summary>
    public IReadOnlyList<string> Cycle { get; }

    /// <summary>The edge of <paramref name="task"/> (<c>comm/pid</c> or bare comm), or null.</summary>
    public WaitEdge? For(string task)
    {
        foreach (WaitEdge e in Edges)
        {
            if (e.Task == task || e.Task.StartsWith(task + "/", StringComparison.Ordinal))
            {
                return e;
            }
        }

        return null;
    }

    internal static WaitForGraph Capture(IEnumerable<KTask> tasks)
    {
        var edges = new List<WaitEdge>();
        var holders = new List<KTask>();
        var waitsOn = new Dictionary<KTask, List<KTask>>();
        var objectOf = new Dictionary<KTask, string>();
        foreach (KTask t in tasks)
        {
            if (t.State is TaskState.Exited)
            {
                continue;
            }

            KernelObject? obj = t.State == TaskState.Blocked ? t.WaitObject : t.LastObject;
            string op = t.State == TaskState.Blocked ? t.WaitOp.KernelName() : t.LastOp.KernelName();
            holders.Clear();
            obj?.CollectHolders(holders);
            if (t.State == TaskState.Blocked)
            {
                waitsOn[t] = [.. holders];
                objectOf[t] = obj is null ? op : $"{obj.Kind} {obj.Name}";
            }

            string hint = obj?.WakeHint ?? (t.WaitOp == SchedOp.Msleep ? "its timeout" : "a wake-up");
            long? deadline = t.State == TaskState.Blocked && t.WaitDeadlineNs != long.MaxValue ? t.WaitDeadlineNs : null;
            edges.Add(new WaitEdge(
                t.DisplayName,
                t.State == TaskState.Blocked ? TaskState.Blocked : TaskState.Runnable,
                op,
                obj?.Kind,
                obj?.Name,
                [.. holders.Select(h => h.DisplayName)],
                hint,
                deadline));
        }

        return new WaitForGraph(edges, FindCycle(waitsOn, objectOf));
    }

    private static List<string> FindCycle(Dictionary<KTask, List<KTask>> waitsOn, Dictionary<KTask, string> objectOf)
    {
        // Follow first-holder edges from each task in id order; a revisit is a cycle.
        foreach (KTask start in waitsOn.Keys.OrderBy(t => t.Id))
        {
            var path = new List<KTask>();
            var seen = new HashSet<KTask>();
            KTask? cur = start;
            while (cur is not null && waitsOn.TryGetValue(cur, out List<KTask>? hs) && seen.Add(cur))
            {
                path.Add(cur);
                cur = hs.Count > 0 ? hs.OrderBy(h => h.Id).First() : null;
            }

            if (cur is not null && seen.Contains(cur))
            {
                int from = path.IndexOf(cur);
                var cycle = new List<string>();
                for (int i = from; i < path.Count; i++)
                {
                    cycle.Add(path[i].DisplayName);
                    cycle.Add(objectOf[path[i]]);
                }

                cycle.Add(cur.DisplayName);
                return cycle;
            }
        }

        return [];
    }

    /// <summary>Renders the graph, one task per line, then the cycle if any.</summary>
    public string Render()
    {
        var sb = new StringBuilder();
        sb.AppendLine("wait-for graph (task -> object -> holder):");
        foreach (WaitEdge e in Edges)
        {
            sb.Append("  ").Append(e.Task);
            if (e.State == TaskState.Runnable)
            {
                sb.Append(" is runnable, last at ").Append(e.Operation);
                if (e.ObjectName is not null)
                {
                    sb.Append('(').Append(e.ObjectName).Append(')');
                }

                sb.AppendLine();
                continue;
            }

            sb.Append(" --").Append(e.Operation).Append("--> ");
            if (e.ObjectName is not null)
            {
                sb.Append(e.ObjectKind).Append(' ').Append(e.ObjectName);
            }
            else
            {
                sb.Append("(sleep)");
            }

            if (e.Holders.Count > 0)
            {
                sb.Append(" --held by--> ").Append(string.Join(", ", e.Holders));
            }
            else
            {
                sb.Append(" (no holder; needs ").Append(e.Hint).Append(')');
            }

            if (e.DeadlineNs is long d)
            {
                sb.Append(" until t=").Append(SimClock.FormatNs(d));
            }

            sb.AppendLine();
        }

        if (Cycle.Count > 0)
        {
            sb.Append("cycle: ").AppendLine(string.Join(" -> ", Cycle));
        }

        return sb.ToString().TrimEnd();
    }

    /// <inheritdoc/>
    public override string ToString() => Render();
}
