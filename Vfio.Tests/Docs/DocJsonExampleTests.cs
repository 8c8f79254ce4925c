// Every ```json block of README.md and docs/**/*.md, run as written: a machine description
// (a top-level "pci" or "memory") is parsed by MachineDescriptionReader and built by
// MachineBuilder on a fresh kernel; any other block must at least be valid JSON. One test
// case per block, named by file and line, so a broken example names itself.

using System.Text.Json;
using NUnit.Framework;
using Vfio.Kernel;
using Vfio.Platform;
using Vfio.Platform.Machine;

namespace Vfio.Tests.Docs;

public sealed class DocJsonExampleTests
{
    /// <summary>A fenced json block: where it is (repository-relative path and the fence's 1-based line) and its text.</summary>
    public sealed record JsonBlock(string File, int Line, string Text)
    {
        /// <inheritdoc/>
        public override string ToString() => $"{File}:{Line}";
    }

    private static readonly JsonDocumentOptions s_lenient = new() { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true };

    /// <summary>The fenced json blocks of <paramref name="markdown"/>, with the 1-based line of each opening fence.</summary>
    public static IEnumerable<(int Line, string Text)> Blocks(string markdown)
    {
        string[] lines = markdown.Split('\n');
        for (int i = 0; i < lines.Length; i++)
        {
            string open = lines[i].Trim();
            if (!open.StartsWith("```json", StringComparison.Ordinal) || open.Length > 7 && !char.IsWhiteSpace(open[7]))
            {
                continue;
            }

            int start = i;
            var body = new List<string>();
            for (i++; i < lines.Length && lines[i].Trim() != "```"; i++)
            {
                body.Add(lines[i].TrimEnd('\r'));
            }

            if (i == lines.Length)
            {
                throw new InvalidOperationException($"line {start + 1}: a ```json block is never closed");
            }

            yield return (start + 1, string.Join('\n', body));
        }
    }

    public static IEnumerable<TestCaseData> AllBlocks()
    {
        string root = Repository.Root;
        var files = new List<string> { Path.Combine(root, "README.md") };
        string docs = Path.Combine(root, "docs");
        if (Directory.Exists(docs))
        {
            List<string> found = [.. Directory.EnumerateFiles(docs, "*.md", SearchOption.AllDirectories)];
            found.Sort(StringComparer.Ordinal);
            files.AddRange(found);
        }

        foreach (string file in files)
        {
            string rel = Path.GetRelativePath(root, file).Replace('\\', '/');
            foreach ((int line, string text) in Blocks(File.ReadAllText(file)))
            {
                yield return new TestCaseData(new JsonBlock(rel, line, text)).SetArgDisplayNames($"{rel}:{line}");
            }
        }
    }

    [TestCaseSource(nameof(AllBlocks))]
    public void AJsonExampleInTheDocs_WorksAsWritten(JsonBlock block)
    {
        bool description;
        using (JsonDocument doc = JsonDocument.Parse(block.Text, s_lenient))
        {
            description = doc.RootElement.ValueKind == JsonValueKind.Object
                          && (doc.RootElement.TryGetProperty("pci", out _) || doc.RootElement.TryGetProperty("memory", out _));
        }

        if (description)
        {
            MachineDescription d = MachineDescriptionReader.Parse(block.Text);
            SimMachine m = MachineBuilder.Build(d, Runs.Kernel(SchedulerMode.Real));
            Assert.That(m.Pci.Devices, Has.Count.EqualTo(Count(d.Pci)), $"{block}: every described function is on the bus");
        }
        else
        {
            // Not a machine description: plain JSON, no comments or trailing commas.
            Assert.DoesNotThrow(() => JsonDocument.Parse(block.Text).Dispose(), block.ToString());
        }
    }

    [Test]
    public void TheBlockFinder_FindsFencesWithTheirLines_AndSkipsOtherLanguages()
    {
        const string md = "# t\n```json\n{\"a\":1}\n```\ntext\n```jsonc\n{}\n```\n  ```json\n  [1,\n  2]\n  ```\n```csharp\nx\n```\n";
        (int, string)[] blocks = [.. Blocks(md)];
        Assert.That(blocks, Is.EqualTo(new[] { (2, "{\"a\":1}"), (9, "  [1,\n  2]") }));
    }

    [Test]
    public void TheDocs_HaveAtLeastTheMachineDescriptionExample()
        => Assert.That(AllBlocks().Select(c => ((JsonBlock)c.Arguments[0]!).File), Does.Contain("docs/platform.md"));

    private static int Count(IEnumerable<PciFunctionDescription> functions)
    {
        int n = 0;
        foreach (PciFunctionDescription f in functions)
        {
            n += 1 + Count(f.Children);
        }

        return n;
    }
}
