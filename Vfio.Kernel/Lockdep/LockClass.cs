// Models struct lock_class_key (include/linux/lockdep_types.h): the identity lockdep
// tracks ordering by. In the kernel a class is the static key of an init site; here it is
// a name, interned process-wide, so every vfio_group's group_lock shares one class.

using System.Collections.Concurrent;
using System.Text;

namespace Vfio.Kernel;

/// <summary>A lockdep lock class: all locks of one kind (<c>vfio_group.group_lock</c>).</summary>
public sealed class LockClass
{
    /// <summary>MAX_LOCKDEP_SUBCLASSES: nesting levels <c>mutex_lock_nested</c> may use.</summary>
    public const int MaxSubclasses = 8;

    private static readonly ConcurrentDictionary<string, LockClass> s_byName = new(StringComparer.Ordinal);
    private static int s_nextId;

    private LockClass(string name, bool validate)
    {
        Name = name;
        Validate = validate;
        Id = Interlocked.Increment(ref s_nextId);
    }

    /// <summary>The class name.</summary>
    public string Name { get; }

    /// <summary>
    /// False for <c>lockdep_set_novalidate_class()</c> locks (such as <c>device_lock</c>,
    /// nested parent-to-child in ways lockdep cannot express): they are tracked as held
    /// but take part in no dependency or recursion checks.
    /// </summary>
    public bool Validate { get; }

    internal int Id { get; }

    /// <summary>The class called <paramref name="name"/>, created on first use.</summary>
    public static LockClass Get(string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        LockClass c = s_byName.GetOrAdd(name, static n => new LockClass(n, validate: true));
        if (!c.Validate)
        {
            throw new InvalidOperationException($"lock class '{name}' was created as a novalidate class");
        }

        return c;
    }

    /// <summary>The novalidate class called <paramref name="name"/> (<c>lockdep_set_novalidate_class</c>).</summary>
    public static LockClass NoValidate(string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        LockClass c = s_byName.GetOrAdd(name, static n => new LockClass(n, validate: false));
        if (c.Validate)
        {
            throw new InvalidOperationException($"lock class '{name}' already exists as a validated class");
        }

        return c;
    }

    /// <summary>
    /// The class of an instance name: bracketed indices are dropped, so
    /// <c>vfio_group[26].group_lock</c> and <c>vfio_group[27].group_lock</c> share the
    /// class <c>vfio_group.group_lock</c>.
    /// </summary>
    public static LockClass ForInstanceName(string instanceName)
    {
        ArgumentException.ThrowIfNullOrEmpty(instanceName);
        if (!instanceName.Contains('[', StringComparison.Ordinal))
        {
            return Get(instanceName);
        }

        var sb = new StringBuilder(instanceName.Length);
        int depth = 0;
        foreach (char c in instanceName)
        {
            if (c == '[')
            {
                depth++;
            }
            else if (c == ']')
            {
                depth = Math.Max(0, depth - 1);
            }
            else if (depth == 0)
            {
                sb.Append(c);
            }
        }

        return Get(sb.ToString());
    }

    /// <inheritdoc/>
    public override string ToString() => Name;
}

/// <summary>One entry of a task's held-lock stack (<c>struct held_lock</c>).</summary>
internal struct HeldLock
{
    public KernelObject Lock;
    public LockClass Class;
    public int Subclass;
    public bool Read;
    public bool Trylock;
    public string Caller;
    public int Line;

    public readonly int Key => (Class.Id * LockClass.MaxSubclasses) + Subclass;
}
