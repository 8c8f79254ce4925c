// Models kernel/locking/lockdep.c (v6.12), reduced to what catches lock bugs in vfio:
// per-task held-lock stacks, the class dependency graph, and the reports — circular
// dependency (even when no deadlock happened in this run), recursive locking, bad unlock
// balance, locks held at task exit, sleeping in atomic context. As in the kernel, the
// first report turns the validator off (debug_locks_off) so one bug gives one splat.
//
// Graph rule (check_prevs_add): acquiring lock L while holding H1..Hn adds the edge
// Htop → L, and keeps walking down the stack while the held locks were trylocks. A new
// edge H → L closes a cycle when L already reaches H. Trylock acquisitions add no edges
// into themselves and are never checked.
//
// Concurrency: each task's held stack is touched only by that task. The graph is
// read without locking through copy-on-write successor arrays and mutated under
// _graphLock.

using System.Globalization;
using System.Text;

namespace Vfio.Kernel;

/// <summary>The lock validator of one <see cref="SimKernel"/>.</summary>
public sealed class Lockdep
{
    private readonly SimKernel _kernel;

    // Protects _nodes growth, edge insertion and _edgeInfo.
    private readonly Lock _graphLock = new();
    private Node?[] _nodes = new Node?[64];
    private readonly Dictionary<(int From, int To), EdgeInfo> _edgeInfo = [];
    private readonly List<(int From, int To)> _edgeOrder = [];
    private readonly Dictionary<int, string> _keyNames = [];

    // The graph's node of each lock class, by the class's process-wide id: this kernel
    // numbers classes densely in the order it first orders them, so that its graph, its
    // reports and their cost do not depend on what other kernels of the process did.
    // Copy-on-write under _graphLock; read without locking.
    private int[] _classSlots = new int[64];
    private int _nextSlot;

    internal Lockdep(SimKernel kernel) => _kernel = kernel;

    /// <summary>debug_locks: false once a report has turned validation off (or it was configured off).</summary>
    public bool Enabled => _kernel.LockdepActive;

    /// <summary>Every class dependency seen so far (held class → acquired class), in discovery order.</summary>
    public IReadOnlyList<(string Held, string Acquired)> Dependencies
    {
        get
        {
            lock (_graphLock)
            {
                return [.. _edgeOrder.Select(e => (_edgeInfo[e].From, _edgeInfo[e].To))];
            }
        }
    }

    /// <summary>The locks <paramref name="task"/> holds, outermost first, as lockdep prints them.</summary>
    public IReadOnlyList<string> HeldLocks(KTask task)
    {
        ArgumentNullException.ThrowIfNull(task);
        var list = new List<string>();
        for (int i = 0; i < task.HeldCount; i++)
        {
            list.Add(Describe(task.Held[i]));
        }

        return list;
    }

    /// <summary>debug_locks_off(): stops validation for the rest of this kernel's life.</summary>
    public void TurnOff() => _kernel.ClearFlag(SimKernel.FlagLockdep);

    /// <summary>True when <paramref name="task"/> holds <paramref name="lockObject"/> (lock_is_held).</summary>
    public bool IsHeld(KTask task, KernelObject lockObject)
    {
        for (int i = task.HeldCount - 1; i >= 0; i--)
        {
            if (ReferenceEquals(task.Held[i].Lock, lockObject))
            {
                return true;
            }
        }

        return false;
    }

    // ---- Acquire / release.

    internal void BeforeAcquire(KTask t, KernelObject lockObject, LockClass cls, int subclass, bool read, string caller, int line)
    {
        if (!Enabled || !cls.Validate)
        {
            return;
        }

        if ((uint)subclass >= LockClass.MaxSubclasses)
        {
            throw new ArgumentOutOfRangeException(nameof(subclass), subclass, $"lockdep subclass must be below {LockClass.MaxSubclasses}");
        }

        var next = new HeldLock { Lock = lockObject, Class = cls, Subclass = subclass, Read = read, Caller = caller, Line = line };
        int key = next.Key;
        for (int i = 0; i < t.HeldCount; i++)
        {
            if (t.Held[i].Key == key)
            {
                ReportRecursive(t, next, t.Held[i]);
                return;
            }
        }

        for (int i = t.HeldCount - 1; i >= 0; i--)
        {
            ref HeldLock prev = ref t.Held[i];
            if (prev.Class.Validate && !AddDependency(t, prev, next))
            {
                return;
            }

            if (!prev.Trylock)
            {
                break;
            }
        }
    }

    internal void Acquired(KTask t, KernelObject lockObject, LockClass cls, int subclass, bool read, bool trylock, string caller, int line)
    {
        if (!Enabled)
        {
            return;
        }

        if (t.HeldCount == KTask.MaxLockDepth)
        {
            Report(t, "BUG: MAX_LOCK_DEPTH too low!", $"BUG: MAX_LOCK_DEPTH too low!\nturning off the locking correctness validator.\ndepth: {KTask.MaxLockDepth}  max: {KTask.MaxLockDepth}!\n{HeldBlock(t)}");
            return;
        }

        t.Held[t.HeldCount++] = new HeldLock { Lock = lockObject, Class = cls, Subclass = subclass, Read = read, Trylock = trylock, Caller = caller, Line = line };
    }

    internal void Release(KTask t, KernelObject lockObject)
    {
        if (!Enabled)
        {
            return;
        }

        for (int i = t.HeldCount - 1; i >= 0; i--)
        {
            if (ReferenceEquals(t.Held[i].Lock, lockObject))
            {
                // Locks may be released out of order; close the gap (usually there is none).
                int after = t.HeldCount - i - 1;
                if (after > 0)
                {
                    Array.Copy(t.Held, i + 1, t.Held, i, after);
                }

                t.Held[--t.HeldCount] = default;
                return;
            }
        }

        string rule = new('=', 37);
        string dash = new('-', 37);
        Report(t, "WARNING: bad unlock balance detected!",
            $"{rule}\nWARNING: bad unlock balance detected!\n{Banner()}\n{dash}\n" +
            $"{t.DisplayName} is trying to release lock ({lockObject.Name}):\n" +
            "but there are no more locks to release!\n\n" +
            $"other info that might help us debug this:\n{HeldBlock(t)}");
    }

    /// <summary>lock_downgrade(): the task's hold on <paramref name="lockObject"/> becomes a read hold.</summary>
    internal void Downgrade(KTask t, KernelObject lockObject)
    {
        for (int i = t.HeldCount - 1; i >= 0; i--)
        {
            if (ReferenceEquals(t.Held[i].Lock, lockObject))
            {
                t.Held[i].Read = true;
                return;
            }
        }
    }

    /// <summary>might_sleep(): a task holding a spinlock (preempt count &gt; 0) must not sleep.</summary>
    internal void MightSleep(KTask t, KernelObject? on, string? function = null)
    {
        if (t.PreemptCount <= 0)
        {
            return;
        }

        string where = on is null ? function ?? "?" : $"{on.Kind} {on.Name}";
        string text =
            $"BUG: sleeping function called from invalid context at {where}\n" +
            $"in_atomic(): 1, irqs_disabled(): 0, non_block: 0, pid: {t.Id}, name: {t.Comm}\n" +
            $"preempt_count: {t.PreemptCount}, expected: 0\n" +
            HeldBlock(t);
        _kernel.ReportWarning(t, WarningKind.SleepInAtomic, $"BUG: sleeping function called from invalid context ({on?.Name ?? function})", text);
    }

    /// <summary>debug_check_no_locks_held() at task exit.</summary>
    internal void CheckNoLocksHeld(KTask t)
    {
        if (!Enabled || t.HeldCount == 0)
        {
            return;
        }

        string rule = new('=', 37);
        string dash = new('-', 37);
        Report(t, $"WARNING: {t.DisplayName} still has locks held!",
            $"{rule}\nWARNING: {t.DisplayName} still has locks held!\n{Banner()}\n{dash}\n{HeldBlock(t)}");
    }

    // ---- Dependency graph.

    private bool AddDependency(KTask t, in HeldLock prev, in HeldLock next)
    {
        int from = GraphKey(prev);
        int to = GraphKey(next);
        Node? node = NodeOrNull(from);
        if (node is not null && Contains(node.After, to))
        {
            return true;
        }

        List<int>? path;
        lock (_graphLock)
        {
            Node fromNode = NodeFor(from);
            if (Contains(fromNode.After, to))
            {
                return true;
            }

            path = FindPath(to, from);
            if (path is null)
            {
                fromNode.After = [.. fromNode.After, to];
                _edgeInfo[(from, to)] = new EdgeInfo(Describe(prev.Class, prev.Subclass), Describe(next.Class, next.Subclass), t.DisplayName, Site(prev), Site(next));
                _edgeOrder.Add((from, to));
                _keyNames[from] = Describe(prev.Class, prev.Subclass);
                _keyNames[to] = Describe(next.Class, next.Subclass);
                return true;
            }
        }

        ReportCircular(t, prev, next, path);
        return false;
    }

    // The node key of a held lock: this kernel's slot of its class, and its subclass.
    private int GraphKey(in HeldLock h)
    {
        int id = h.Class.Id;
        int[] slots = Volatile.Read(ref _classSlots);
        int slot = id < slots.Length ? slots[id] : 0;
        if (slot == 0)
        {
            lock (_graphLock)
            {
                slots = _classSlots;
                if (id >= slots.Length)
                {
                    var grown = new int[Math.Max(id + 1, slots.Length * 2)];
                    Array.Copy(slots, grown, slots.Length);
                    slots = grown;
                }

                slot = slots[id];
                if (slot == 0)
                {
                    if (ReferenceEquals(slots, _classSlots))
                    {
                        slots = (int[])slots.Clone();
                    }

                    slot = slots[id] = ++_nextSlot;
                }

                Volatile.Write(ref _classSlots, slots);
            }
        }

        return ((slot - 1) * LockClass.MaxSubclasses) + h.Subclass;
    }

    private Node? NodeOrNull(int key)
    {
        Node?[] nodes = Volatile.Read(ref _nodes);
        return key < nodes.Length ? nodes[key] : null;
    }

    private Node NodeFor(int key)
    {
        if (key >= _nodes.Length)
        {
            var grown = new Node?[Math.Max(key + 1, _nodes.Length * 2)];
            Array.Copy(_nodes, grown, _nodes.Length);
            Volatile.Write(ref _nodes, grown);
        }

        return _nodes[key] ??= new Node();
    }

    private static bool Contains(int[] set, int key)
    {
        foreach (int k in set)
        {
            if (k == key)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>Breadth-first path of class keys from <paramref name="source"/> to <paramref name="target"/>, or null.</summary>
    private List<int>? FindPath(int source, int target)
    {
        if (source == target)
        {
            return [source];
        }

        var parent = new Dictionary<int, int> { [source] = -1 };
        var queue = new Queue<int>();
        queue.Enqueue(source);
        while (queue.Count > 0)
        {
            int k = queue.Dequeue();
            if (k >= _nodes.Length || _nodes[k] is not { } n)
            {
                continue;
            }

            foreach (int nxt in n.After)
            {
                if (parent.ContainsKey(nxt))
                {
                    continue;
                }

                parent[nxt] = k;
                if (nxt == target)
                {
                    var path = new List<int>();
                    for (int c = nxt; c != -1; c = parent[c])
                    {
                        path.Add(c);
                    }

                    path.Reverse();
                    return path;
                }

                queue.Enqueue(nxt);
            }
        }

        return null;
    }

    // ---- Reports.

    private void ReportCircular(KTask t, in HeldLock held, in HeldLock next, List<int> path)
    {
        string rule = new('=', 54);
        string dash = new('-', 54);
        var sb = new StringBuilder();
        sb.Append(rule).Append('\n')
          .Append("WARNING: possible circular locking dependency detected\n")
          .Append(Banner()).Append('\n')
          .Append(dash).Append('\n')
          .Append(t.DisplayName).Append(" is trying to acquire lock:\n")
          .Append(Describe(next)).Append("\n\n")
          .Append("but task is already holding lock:\n")
          .Append(Describe(held)).Append("\n\n")
          .Append("which lock already depends on the new lock.\n\n\n")
          .Append("the existing dependency chain (in reverse order) is:\n");

        // path runs new lock → … → held lock; print it from the held end, as lockdep does.
        lock (_graphLock)
        {
            for (int i = path.Count - 1; i >= 1; i--)
            {
                EdgeInfo e = _edgeInfo[(path[i - 1], path[i])];
                sb.Append('\n').Append(CultureInfo.InvariantCulture, $"-> #{i} ({e.To}):\n")
                  .Append(CultureInfo.InvariantCulture, $"       {e.Task} acquired ({e.To}) at {e.ToSite}\n")
                  .Append(CultureInfo.InvariantCulture, $"       while holding ({e.From}), acquired at {e.FromSite}\n");
            }
        }

        sb.Append('\n').Append(CultureInfo.InvariantCulture, $"-> #0 ({Describe(next.Class, next.Subclass)}):\n")
          .Append(CultureInfo.InvariantCulture, $"       {t.DisplayName} acquires it at {Site(next)} while holding ({Describe(held.Class, held.Subclass)})\n\n")
          .Append("other info that might help us debug this:\n\n");

        string a = Describe(held.Class, held.Subclass);
        string b = Describe(next.Class, next.Subclass);
        if (path.Count > 2)
        {
            sb.Append("Chain exists of:\n  ");
            var names = new List<string> { b };
            for (int i = 1; i < path.Count; i++)
            {
                names.Add(ClassName(path[i]));
            }

            sb.Append(string.Join(" --> ", names)).Append("\n\n");
        }

        sb.Append(" Possible unsafe locking scenario:\n\n")
          .Append("       CPU0                    CPU1\n")
          .Append("       ----                    ----\n")
          .Append(CultureInfo.InvariantCulture, $"  lock({a});\n")
          .Append(CultureInfo.InvariantCulture, $"                               lock({b});\n")
          .Append(CultureInfo.InvariantCulture, $"                               lock({a});\n")
          .Append(CultureInfo.InvariantCulture, $"  lock({b});\n\n")
          .Append(" *** DEADLOCK ***\n\n")
          .Append(HeldBlock(t));
        Report(t, "WARNING: possible circular locking dependency detected", sb.ToString());
    }

    private void ReportRecursive(KTask t, in HeldLock next, in HeldLock held)
    {
        string rule = new('=', 44);
        string dash = new('-', 44);
        string name = Describe(next.Class, next.Subclass);
        string text =
            $"{rule}\nWARNING: possible recursive locking detected\n{Banner()}\n{dash}\n" +
            $"{t.DisplayName} is trying to acquire lock:\n{Describe(next)}\n\n" +
            $"but task is already holding lock:\n{Describe(held)}\n\n" +
            "other info that might help us debug this:\n" +
            " Possible unsafe locking scenario:\n\n" +
            "       CPU0\n" +
            "       ----\n" +
            $"  lock({name});\n" +
            $"  lock({name});\n\n" +
            " *** DEADLOCK ***\n\n" +
            " May be due to missing lock nesting notation\n\n" +
            HeldBlock(t);
        Report(t, "WARNING: possible recursive locking detected", text);
    }

    private void Report(KTask t, string title, string text)
    {
        TurnOff();
        _kernel.ReportWarning(t, WarningKind.Lockdep, title, text);
    }

    private string Banner() => $"{_kernel.Profile.Release} #1 Not tainted";

    private static string HeldBlock(KTask t)
    {
        var sb = new StringBuilder();
        if (t.HeldCount == 0)
        {
            sb.Append(CultureInfo.InvariantCulture, $"no locks held by {t.DisplayName}.\n");
            return sb.ToString();
        }

        sb.Append(CultureInfo.InvariantCulture, $"{t.HeldCount} lock{(t.HeldCount == 1 ? "" : "s")} held by {t.DisplayName}:\n");
        for (int i = 0; i < t.HeldCount; i++)
        {
            sb.Append(CultureInfo.InvariantCulture, $" #{i}: {Describe(t.Held[i])}\n");
        }

        return sb.ToString();
    }

    private static string Describe(in HeldLock h)
        => $"{h.Lock.Name} ({Describe(h.Class, h.Subclass)}){(h.Read ? " [read]" : "")}, at: {Site(h)}";

    private static string Describe(LockClass c, int subclass) => subclass == 0 ? c.Name : $"{c.Name}/{subclass}";

    private static string Site(in HeldLock h) => h.Line == 0 ? h.Caller : $"{h.Caller}+{h.Line}";

    private string ClassName(int key)
    {
        lock (_graphLock)
        {
            return _keyNames.TryGetValue(key, out string? n) ? n : key.ToString(CultureInfo.InvariantCulture);
        }
    }

    private sealed class Node
    {
        // Successor class keys; replaced, never mutated, so readers need no lock.
        public volatile int[] After = [];
    }

    private sealed record EdgeInfo(string From, string To, string Task, string FromSite, string ToSite);
}
