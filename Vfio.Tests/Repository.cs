// Where the repository's own files are, for tests that read its sources and documents.

namespace Vfio.Tests;

internal static class Repository
{
    /// <summary>The repository root: the first directory above the test assembly that holds Vfio.slnx.</summary>
    public static string Root { get; } = Find();

    /// <summary>The text of <paramref name="relativePath"/> under the root.</summary>
    public static string ReadAllText(string relativePath) => File.ReadAllText(Path.Combine(Root, relativePath));

    private static string Find()
    {
        string start = AppContext.BaseDirectory;
        for (DirectoryInfo? d = new(start); d is not null; d = d.Parent)
        {
            if (File.Exists(Path.Combine(d.FullName, "Vfio.slnx")))
            {
                return d.FullName;
            }
        }

        throw new InvalidOperationException($"no directory above {start} holds Vfio.slnx: run the tests from a build inside the repository");
    }
}
