// The labs by number, their handouts (embedded from docs/labs/), and the score table.

namespace Vfio.Sim.Labs;

/// <summary>The built-in labs.</summary>
public static class LabCatalog
{
    /// <summary>Every lab, by number.</summary>
    public static IReadOnlyList<Lab> All { get; } = [];

    /// <summary>Lab <paramref name="number"/>; throws <see cref="ArgumentOutOfRangeException"/> for a number with no lab.</summary>
    public static Lab Get(int number)
        => All.FirstOrDefault(l => l.Number == number) ?? throw new ArgumentOutOfRangeException(nameof(number), number, $"there is no lab {number} (labs are 1–{All.Count})");

    /// <summary>Grades <paramref name="solution"/> for lab <paramref name="number"/>.</summary>
    public static LabGrade Check(int number, object solution) => Get(number).Grade(solution);

    /// <summary>The score table of <paramref name="grades"/>, as <c>make grade</c> prints it.</summary>
    public static string ScoreTable(IEnumerable<LabGrade> grades) => throw new NotImplementedException();

    internal static string ReadHandout(Lab lab) => throw new NotImplementedException();
}
