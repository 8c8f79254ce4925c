// The graders, as `make grade` runs them in an xv6 course: one test per lab, each running
// that lab's grader on your solution (the class in this project that derives from the lab's
// base type, or labNN.sh for a shell lab). A failed test's message is the lab's score table
// with what went wrong and where to look; the whole table is printed at the end.
// You do not need to change this file.

using NUnit.Framework;
using Vfio.Sim.Labs;

namespace VfioSimLab;

public sealed class GradeTests
{
    private static readonly List<LabGrade> Grades = [];

    /// <summary>Every lab of the Vfio.Sim this project references.</summary>
    public static IEnumerable<TestCaseData> Labs()
        => LabCatalog.All.Select(l => new TestCaseData(l.Number).SetName($"Lab{l.Number:00}_{l.Slug}"));

    [TestCaseSource(nameof(Labs))]
    public void Grade(int number)
    {
        Lab lab = LabCatalog.Get(number);
        LabGrade grade = LabCatalog.GradeStudent(lab, typeof(GradeTests).Assembly, TestContext.CurrentContext.TestDirectory);
        lock (Grades)
        {
            Grades.Add(grade);
        }

        string table = LabCatalog.ScoreTable(grade);
        TestContext.Out.Write(table);
        Assert.That(grade.Passed, Is.True, $"{lab}\n{table}");
    }

    [OneTimeTearDown]
    public void PrintScoreTable()
    {
        lock (Grades)
        {
            TestContext.Progress.Write("\n" + LabCatalog.ScoreTable(Grades.OrderBy(g => g.Lab.Number)));
        }
    }
}
