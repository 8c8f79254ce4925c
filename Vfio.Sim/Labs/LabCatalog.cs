// The labs by number, their handouts (embedded from docs/labs/), where a student's solution
// is (a class in their assembly, or labNN.sh for a shell lab), and the score table as xv6's
// `make grade` prints it: one line per check, then "Score: N/M".

using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Reflection;
using System.Text;

namespace Vfio.Sim.Labs;

/// <summary>The built-in labs.</summary>
public static class LabCatalog
{
    /// <summary>Every lab, by number.</summary>
    public static IReadOnlyList<Lab> All { get; } =
        [.. typeof(Lab).Assembly.GetTypes()
            .Where(t => t.IsSubclassOf(typeof(Lab)) && !t.IsAbstract && t.GetConstructor(Type.EmptyTypes) is not null)
            .Select(t => (Lab)Activator.CreateInstance(t)!)
            .OrderBy(l => l.Number)];

    /// <summary>Lab <paramref name="number"/>; throws <see cref="ArgumentOutOfRangeException"/> for a number with no lab.</summary>
    public static Lab Get(int number)
        => All.FirstOrDefault(l => l.Number == number) ?? throw new ArgumentOutOfRangeException(nameof(number), number, $"there is no lab {number} (labs are {Numbers()})");

    /// <summary>Lab <paramref name="number"/>, or null when there is none.</summary>
    public static Lab? Find(int number) => All.FirstOrDefault(l => l.Number == number);

    /// <summary>Grades <paramref name="solution"/> for lab <paramref name="number"/>.</summary>
    public static LabGrade Check(int number, object solution) => Get(number).Grade(solution);

    /// <summary>True for a lab whose solution is a shell script (<see cref="ShellScript"/>) rather than a class.</summary>
    public static bool IsShellLab(Lab lab)
    {
        ArgumentNullException.ThrowIfNull(lab);
        return lab.SolutionType == typeof(ShellScript);
    }

    /// <summary>The file a shell lab's solution is read from: <c>lab01.sh</c> for lab 1.</summary>
    public static string ScriptFileName(Lab lab)
    {
        ArgumentNullException.ThrowIfNull(lab);
        return string.Create(CultureInfo.InvariantCulture, $"lab{lab.Number:00}.sh");
    }

    /// <summary>
    /// Finds a student's solution of a code lab in <paramref name="assembly"/>: the one
    /// non-abstract class that derives from the lab's <see cref="Lab.SolutionType"/> and has a
    /// public parameterless constructor, created. When there is none, or more than one,
    /// returns false and says in <paramref name="problem"/> what to do.
    /// </summary>
    public static bool TryFindSolution(Lab lab, Assembly assembly, [NotNullWhen(true)] out object? solution, out string problem)
    {
        ArgumentNullException.ThrowIfNull(lab);
        ArgumentNullException.ThrowIfNull(assembly);
        solution = null;
        if (IsShellLab(lab))
        {
            problem = $"lab {lab.Number} is a shell lab: its solution is the script {ScriptFileName(lab)}, not a class";
            return false;
        }

        Type[] types;
        try
        {
            types = assembly.GetTypes();
        }
        catch (ReflectionTypeLoadException e)
        {
            types = [.. e.Types.OfType<Type>()];
        }

        Type[] found = [.. types.Where(t => t.IsClass && !t.IsAbstract && lab.SolutionType.IsAssignableFrom(t) && t.GetConstructor(Type.EmptyTypes) is not null)
            .OrderBy(t => t.FullName, StringComparer.Ordinal)];
        if (found.Length == 0)
        {
            problem = $"no solution for lab {lab.Number} in {assembly.GetName().Name}: add a public class with a parameterless constructor that derives from {lab.SolutionType.FullName}";
            return false;
        }

        if (found.Length > 1)
        {
            problem = $"{found.Length} classes in {assembly.GetName().Name} derive from {lab.SolutionType.Name} ({string.Join(", ", found.Select(t => t.FullName))}): keep one, or make the others abstract";
            return false;
        }

        solution = Activator.CreateInstance(found[0])!;
        problem = "";
        return true;
    }

    /// <summary>
    /// Finds a shell lab's solution, <see cref="ScriptFileName"/> in <paramref name="directory"/>.
    /// Returns false and says where it was looked for when there is no such file.
    /// </summary>
    public static bool TryFindScript(Lab lab, string directory, [NotNullWhen(true)] out ShellScript? script, out string problem)
    {
        ArgumentNullException.ThrowIfNull(lab);
        ArgumentNullException.ThrowIfNull(directory);
        string path = Path.Combine(directory, ScriptFileName(lab));
        if (!File.Exists(path))
        {
            script = null;
            problem = $"no solution for lab {lab.Number}: {path} does not exist (a shell lab's solution is the script {ScriptFileName(lab)} in the project's folder)";
            return false;
        }

        script = ShellScript.FromFile(path);
        problem = "";
        return true;
    }

    /// <summary>
    /// Grades a student's solution of <paramref name="lab"/>: for a code lab the class found
    /// in <paramref name="assembly"/>, for a shell lab the script in <paramref name="directory"/>.
    /// A missing solution, or a grader that fails, gives a grade with one failed check that
    /// says so, never an exception.
    /// </summary>
    public static LabGrade GradeStudent(Lab lab, Assembly? assembly, string? directory)
    {
        ArgumentNullException.ThrowIfNull(lab);
        object? solution = null;
        string problem;
        bool found = IsShellLab(lab)
            ? TryFindScriptIn(lab, directory, out solution, out problem)
            : TryFindSolutionIn(lab, assembly, out solution, out problem);
        return found ? SafeGrade(lab, solution!) : Unsolved(lab, problem);
    }

    /// <summary>Grades <paramref name="solution"/>; a grader that throws gives a failed grade saying so instead.</summary>
    public static LabGrade SafeGrade(Lab lab, object solution)
    {
        ArgumentNullException.ThrowIfNull(lab);
        ArgumentNullException.ThrowIfNull(solution);
        try
        {
            return lab.Grade(solution);
        }
#pragma warning disable CA1031 // A grader must not take the score table down with it: its failure is a grade.
        catch (Exception e)
#pragma warning restore CA1031
        {
            return new LabGrade(lab, [new LabCheck("the grader ran", MaxScoreOf(lab), false,
                $"the grader of lab {lab.Number} failed with {e.GetType().Name}: {e.Message} (a bug in the lab, not in your solution: please report it)")]);
        }
    }

    /// <summary>A grade of <paramref name="lab"/> with no solution: one failed check worth the lab's points, saying <paramref name="why"/>.</summary>
    public static LabGrade Unsolved(Lab lab, string why)
    {
        ArgumentNullException.ThrowIfNull(lab);
        return new LabGrade(lab, [new LabCheck("a solution exists", MaxScoreOf(lab), false, why)]);
    }

    /// <summary>The points lab <paramref name="lab"/> is worth: its reference solution's maximum score (graded once, then remembered).</summary>
    public static int MaxScoreOf(Lab lab)
    {
        ArgumentNullException.ThrowIfNull(lab);
        if (MaxScores.TryGetValue(lab.Number, out int known))
        {
            return known;
        }

        int max = lab.Grade(lab.CreateReferenceSolution()).MaxScore;
        MaxScores[lab.Number] = max;
        return max;
    }

    /// <summary>
    /// The score table of <paramref name="grades"/>, as <c>make grade</c> prints it: one line
    /// per check (<c>lab 2 MAP_DMA maps the buffer: OK (15/15)</c>), a failed check's message
    /// indented under it, and a last line <c>Score: N/M</c>.
    /// </summary>
    public static string ScoreTable(IEnumerable<LabGrade> grades)
    {
        ArgumentNullException.ThrowIfNull(grades);
        var sb = new StringBuilder();
        int score = 0, max = 0;
        foreach (LabGrade g in grades)
        {
            foreach (LabCheck c in g.Checks)
            {
                sb.Append(CultureInfo.InvariantCulture, $"lab {g.Lab.Number} {c.Name}: {(c.Passed ? "OK" : "FAIL")} ({(c.Passed ? c.Points : 0)}/{c.Points})\n");
                if (!c.Passed)
                {
                    sb.Append(CultureInfo.InvariantCulture, $"    {c.Message.TrimEnd().Replace("\n", "\n    ", StringComparison.Ordinal)}\n");
                }
            }

            score += g.Score;
            max += g.MaxScore;
        }

        sb.Append(CultureInfo.InvariantCulture, $"Score: {score}/{max}\n");
        return sb.ToString();
    }

    /// <summary>The score table of one grade.</summary>
    public static string ScoreTable(LabGrade grade) => ScoreTable([grade]);

    // Handouts are docs/labs/labNN-<slug>.md, embedded as labs/labNN-<slug>.md.
    internal static string ReadHandout(Lab lab)
    {
        string name = $"labs/lab{lab.Number:00}-{lab.Slug}.md";
        using Stream? s = typeof(Lab).Assembly.GetManifestResourceStream(name)
            ?? throw new InvalidOperationException($"the handout {name} is not embedded (docs/labs/lab{lab.Number:00}-{lab.Slug}.md)");
        using var reader = new StreamReader(s);
        return reader.ReadToEnd();
    }

    // Maximum scores learnt from the reference solutions, by lab number.
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<int, int> MaxScores = new();

    private static string Numbers() => All.Count == 0 ? "none" : string.Join(", ", All.Select(l => l.Number));

    private static bool TryFindSolutionIn(Lab lab, Assembly? assembly, out object? solution, out string problem)
    {
        if (assembly is null)
        {
            solution = null;
            problem = $"lab {lab.Number} is a code lab and no assembly was given to look for its solution in";
            return false;
        }

        return TryFindSolution(lab, assembly, out solution, out problem);
    }

    private static bool TryFindScriptIn(Lab lab, string? directory, out object? solution, out string problem)
    {
        bool found = TryFindScript(lab, directory ?? Directory.GetCurrentDirectory(), out ShellScript? script, out problem);
        solution = script;
        return found;
    }
}
