// Keeps README.md's "Examples" section and examples/ from drifting apart: the section's
// csharp block is the smallest example's file, byte for byte, and every example folder is
// listed there and built and run by .ci/run.

using NUnit.Framework;

namespace Vfio.Tests.Docs;

public sealed class ExamplesTests
{
    private const string Section = "## Examples";
    private const string ShownInFull = "examples/RaceRegression/LifecycleRaceTests.cs";

    [Test]
    public void TheReadmesCsharpBlock_IsTheSmallestExample_Exactly()
    {
        string root = Repository.Root;
        string block = FirstCsharpBlockOfExamplesSection(File.ReadAllText(Path.Combine(root, "README.md")));
        string file = File.ReadAllText(Path.Combine(root, ShownInFull)).Replace("\r\n", "\n", StringComparison.Ordinal).TrimEnd('\n');
        Assert.That(block, Is.EqualTo(file), $"README.md's {Section} block must be {ShownInFull} as it is; copy the file into the block");
    }

    [Test]
    public void EveryExample_IsListedInTheReadme_AndBuiltAndRunByCi()
    {
        string root = Repository.Root;
        string readme = File.ReadAllText(Path.Combine(root, "README.md"));
        string section = readme[readme.IndexOf(Section, StringComparison.Ordinal)..];
        string ci = File.ReadAllText(Path.Combine(root, ".ci", "run"));
        string[] examples = [.. Directory.GetDirectories(Path.Combine(root, "examples"))
            .Where(d => Directory.EnumerateFiles(d, "*.csproj").Any())
            .Select(Path.GetFileName)
            .OfType<string>()
            .Order(StringComparer.Ordinal)];
        Assert.That(examples, Has.Length.GreaterThanOrEqualTo(4));
        Assert.Multiple(() =>
        {
            foreach (string name in examples)
            {
                Assert.That(section, Does.Contain($"[`{name}`](examples/{name}/"), $"README.md's {Section} lists {name}");
                Assert.That(ci, Does.Match($@"example_(programs|tests)=\([^)]*\b{name}\b"), $".ci/run builds and runs examples/{name}");
            }
        });
    }

    /// <summary>The first ```csharp block after the Examples heading, lines joined with \n.</summary>
    private static string FirstCsharpBlockOfExamplesSection(string markdown)
    {
        string[] lines = markdown.Replace("\r\n", "\n", StringComparison.Ordinal).Split('\n');
        int i = Array.IndexOf(lines, Section);
        Assert.That(i, Is.GreaterThanOrEqualTo(0), $"README.md has a '{Section}' heading");
        while (++i < lines.Length && lines[i] != "```csharp")
        {
            Assert.That(lines[i], Does.Not.StartWith("## "), $"the {Section} section has a ```csharp block");
        }

        int start = i + 1;
        int end = Array.IndexOf(lines, "```", start);
        Assert.That(end, Is.GreaterThan(start), $"the {Section} section's ```csharp block is closed");
        return string.Join('\n', lines[start..end]);
    }
}
