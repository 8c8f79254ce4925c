// The labs by number, their handouts (embedded from docs/labs/), and the score table.

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
        => All.FirstOrDefault(l => l.Number == number) ?? throw new ArgumentOutOfRangeException(nameof(number), number, $"there is no lab {number} (labs are 1–{All.Count})");

    /// <summary>Grades <paramref name="solution"/> for lab <paramref name="number"/>.</summary>
    public static LabGrade Check(int number, object solution) => Get(number).Grade(solution);

    /// <summary>The score table of <paramref name="grades"/>, as <c>make grade</c> prints it.</summary>
    public static string ScoreTable(IEnumerable<LabGrade> grades)
    {
        ArgumentNullException.ThrowIfNull(grades);
        var sb = new System.Text.StringBuilder();
        int score = 0, max = 0;
        foreach (LabGrade g in grades)
        {
            foreach (LabCheck c in g.Checks)
            {
                sb.Append(System.Globalization.CultureInfo.InvariantCulture, $"lab {g.Lab.Number} {c.Name}: {(c.Passed ? "OK" : "FAIL")} ({(c.Passed ? c.Points : 0)}/{c.Points})\n");
                if (!c.Passed)
                {
                    sb.Append(System.Globalization.CultureInfo.InvariantCulture, $"    {c.Message.Replace("\n", "\n    ", StringComparison.Ordinal)}\n");
                }
            }

            score += g.Score;
            max += g.MaxScore;
        }

        sb.Append(System.Globalization.CultureInfo.InvariantCulture, $"Score: {score}/{max}\n");
        return sb.ToString();
    }

    // Handouts are docs/labs/labNN-<slug>.md, embedded as labs/labNN-<slug>.md.
    internal static string ReadHandout(Lab lab)
    {
        string name = $"labs/lab{lab.Number:00}-{lab.Slug}.md";
        using Stream? s = typeof(Lab).Assembly.GetManifestResourceStream(name)
            ?? throw new InvalidOperationException($"the handout {name} is not embedded (docs/labs/lab{lab.Number:00}-{lab.Slug}.md)");
        using var reader = new StreamReader(s);
        return reader.ReadToEnd();
    }
}
