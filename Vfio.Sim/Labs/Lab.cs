// The labs: graded exercises on the simulated machine, each with a handout (docs/labs/),
// a reference solution and a grader. A grader boots its own machine, runs the student's
// solution as a user process under strace, and checks outcomes — what the device did,
// what is still pinned or open, WARNs, errnos — never the solution's code text.

using Vfio.Platform.Proc;

namespace Vfio.Sim.Labs;

/// <summary>
/// One lab. Its solution is an instance of <see cref="SolutionType"/>: a class the student
/// derives from it (code labs) or a <see cref="ShellScript"/> (shell labs).
/// </summary>
public abstract class Lab
{
    /// <summary>The lab's number, 1…N, as <c>vfio-sim lab show N</c> takes it.</summary>
    public abstract int Number { get; }

    /// <summary>A short name, <c>iommu-groups</c>.</summary>
    public abstract string Slug { get; }

    /// <summary>The title.</summary>
    public abstract string Title { get; }

    /// <summary>One sentence: what the student learns.</summary>
    public abstract string Summary { get; }

    /// <summary>
    /// What the lab builds on, as <c>vfio-sim lab list</c> shows it: the scenario or story and
    /// the seed of the grader's machine (empty when it builds on nothing in particular).
    /// </summary>
    public virtual string Story => "";

    /// <summary>The type a solution is: an abstract class the student derives from, or <see cref="ShellScript"/>.</summary>
    public abstract Type SolutionType { get; }

    /// <summary>The handout (markdown), as in <c>docs/labs/</c>.</summary>
    public string Handout => LabCatalog.ReadHandout(this);

    /// <summary>The reference solution.</summary>
    public abstract object CreateReferenceSolution();

    /// <summary>
    /// Grades <paramref name="solution"/> (an instance of <see cref="SolutionType"/>) on a
    /// fresh machine. Never throws for what the solution does wrong (an exception it throws,
    /// a kernel WARN, a hang): those are failed checks with a message that teaches.
    /// </summary>
    public abstract LabGrade Grade(object solution);

    /// <inheritdoc/>
    public override string ToString() => $"lab {Number} ({Slug}): {Title}";
}

/// <summary>One check of a grader.</summary>
/// <param name="Name">What is checked, as the score table shows it.</param>
/// <param name="Points">What it is worth.</param>
/// <param name="Passed">Whether the solution passed it.</param>
/// <param name="Message">For a failed check, what went wrong and what to look at; for a passed one, what was seen.</param>
public sealed record LabCheck(string Name, int Points, bool Passed, string Message);

/// <summary>A graded solution: the checks, the score, and the solution's strace.</summary>
public sealed class LabGrade
{
    /// <summary>A grade of <paramref name="lab"/> from <paramref name="checks"/>.</summary>
    public LabGrade(Lab lab, IReadOnlyList<LabCheck> checks, IReadOnlyList<SyscallRecord>? strace = null)
    {
        ArgumentNullException.ThrowIfNull(lab);
        ArgumentNullException.ThrowIfNull(checks);
        Lab = lab;
        Checks = checks;
        Strace = strace ?? [];
    }

    /// <summary>The lab.</summary>
    public Lab Lab { get; }

    /// <summary>The checks, in the order they ran.</summary>
    public IReadOnlyList<LabCheck> Checks { get; }

    /// <summary>The syscalls the solution made.</summary>
    public IReadOnlyList<SyscallRecord> Strace { get; }

    /// <summary>Points earned.</summary>
    public int Score => Checks.Where(c => c.Passed).Sum(c => c.Points);

    /// <summary>Points possible.</summary>
    public int MaxScore => Checks.Sum(c => c.Points);

    /// <summary>True when every check passed.</summary>
    public bool Passed => Checks.All(c => c.Passed);

    /// <inheritdoc/>
    public override string ToString()
        => $"lab {Lab.Number} {Lab.Slug}: {Score}/{MaxScore}" + string.Concat(Checks.Where(c => !c.Passed).Select(c => $"\n  FAIL {c.Name}: {c.Message}"));
}

/// <summary>A shell lab's solution: a script of shell commands (see <see cref="Shell.SimShell"/>).</summary>
/// <param name="Text">The script.</param>
public sealed record ShellScript(string Text)
{
    /// <summary>The script in <paramref name="path"/>.</summary>
    public static ShellScript FromFile(string path) => new(File.ReadAllText(path));
}
