// Tests Vfio.Kernel/KernelFeature.cs and KernelProfile.Has, and holds every declared profile
// feature (found by reflection over the simulator's assemblies) to three rules: it gates
// something a preset can observe (on in one preset, off in another), it says what it is
// (description, version, commit), and docs/kernel-versions.md lists it as it is.

using System.Reflection;
using NUnit.Framework;
using Vfio.Core;
using Vfio.Kernel;
using Vfio.Platform;

namespace Vfio.Tests.Kernel;

public sealed class KernelFeatureTests
{
    private const string DocPath = "docs/kernel-versions.md";

    /// <summary>A declared feature and the static class that declares it.</summary>
    public sealed record Declared(string Catalogue, string Member, KernelFeature Feature)
    {
        public string QualifiedName => $"{Catalogue}.{Member}";

        public override string ToString() => QualifiedName;
    }

    /// <summary>Every static KernelFeature property or field of every type in the simulator's assemblies.</summary>
    public static IReadOnlyList<Declared> AllDeclared { get; } = FindDeclared();

    private static List<Declared> FindDeclared()
    {
        var found = new List<Declared>();
        const BindingFlags Statics = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static | BindingFlags.DeclaredOnly;
        foreach (Assembly assembly in SimulatorAssemblies())
        {
            foreach (Type type in assembly.GetTypes())
            {
                foreach (PropertyInfo p in type.GetProperties(Statics))
                {
                    if (p.PropertyType == typeof(KernelFeature) && p.GetIndexParameters().Length == 0)
                    {
                        found.Add(new Declared(type.Name, p.Name, (KernelFeature)p.GetValue(null)!));
                    }
                }

                foreach (FieldInfo f in type.GetFields(Statics))
                {
                    if (f.FieldType == typeof(KernelFeature) && !f.Name.Contains('<', StringComparison.Ordinal))
                    {
                        found.Add(new Declared(type.Name, f.Name, (KernelFeature)f.GetValue(null)!));
                    }
                }
            }
        }

        found.Sort((a, b) => string.CompareOrdinal(a.QualifiedName, b.QualifiedName));
        return found;
    }

    // The simulator's own assemblies next to the tests (Vfio.*, and the CLI's vfio-sim),
    // loaded by name so they are the instances the tests already use.
    private static IEnumerable<Assembly> SimulatorAssemblies()
    {
        foreach (string file in Directory.EnumerateFiles(TestContext.CurrentContext.TestDirectory, "*.dll"))
        {
            AssemblyName name = AssemblyName.GetAssemblyName(file);
            bool ours = name.Name == "vfio-sim" || (name.Name!.StartsWith("Vfio.", StringComparison.Ordinal) && name.Name != "Vfio.Tests");
            if (ours)
            {
                yield return Assembly.Load(name);
            }
        }
    }

    [Test]
    public void TheCataloguesOfEveryLayerAreFound()
    {
        Assert.That(AllDeclared.Select(d => d.Catalogue).Distinct(), Is.SupersetOf(new[] { nameof(PlatformFeatures), nameof(VfioCoreFeatures) }));
        Assert.That(AllDeclared.Select(d => d.Feature), Does.Contain(VfioCoreFeatures.UnregisterHidesDeviceBeforeWaiting));
    }

    [Test]
    public void EveryFeature_IsNamedAfterItsDeclaration_AndNamesAreUnique()
    {
        Assert.Multiple(() =>
        {
            foreach (Declared d in AllDeclared)
            {
                Assert.That(d.Feature.Name, Is.EqualTo(d.Member), $"{d.QualifiedName}: Name must be nameof(the property)");
            }

            Assert.That(AllDeclared.Select(d => d.Member), Is.Unique, "feature names are unique across catalogues");
            Assert.That(AllDeclared.Select(d => d.Feature), Is.Unique, "a feature is declared once");
        });
    }

    [TestCaseSource(nameof(AllDeclared))]
    public void EveryFeature_IsOnInOnePresetAndOffInAnother_SoItGatesSomethingObservable(Declared d)
    {
        string[] on = [.. KernelProfile.Presets.Where(p => p.Has(d.Feature)).Select(p => p.Name)];
        string[] off = [.. KernelProfile.Presets.Where(p => !p.Has(d.Feature)).Select(p => p.Name)];
        Assert.That(on, Is.Not.Empty, $"{d.Feature} is off in every preset: the gate is unreachable; drop it or add a preset that has it");
        Assert.That(off, Is.Not.Empty, $"{d.Feature} is on in every preset: the gate never switches; drop it (keep the behaviour) or add a preset without it");
    }

    [TestCaseSource(nameof(AllDeclared))]
    public void EveryFeature_SaysWhatItIs_WhenItCame_AndFromWhichCommit(Declared d)
    {
        KernelFeature f = d.Feature;
        Assert.Multiple(() =>
        {
            Assert.That(f.Description, Is.Not.Null.And.Not.Empty.And.Not.Contain('\n'), "a one-line description of the behaviour");
            Assert.That(f.Since.Major, Is.GreaterThanOrEqualTo(3), "the mainline release it appeared in (VFIO is 3.6+)");
            if (f.RemovedIn is { } removed)
            {
                Assert.That(removed, Is.GreaterThan(f.Since), "it went away after it came");
            }

            if (f.Commits.Count == 0)
            {
                Assert.That(f.CommitNotEstablished, Is.Not.Null.And.Not.Empty, "name the upstream commit, or say why it could not be established");
            }
            else
            {
                Assert.That(f.CommitNotEstablished, Is.Null, "a feature with a commit does not also say it has none");
            }

        });
    }

    [Test]
    public void Has_IsOnFromSince_AndOffFromRemovedIn()
    {
        var from62 = new KernelFeature { Name = "From62", Description = "x", Since = new(6, 2), Commits = [new("84209e87c696", "mm/gup: reliable R/O long-term pinning in COW mappings")] };
        var from66To613 = new KernelFeature { Name = "From66To613", Description = "x", Since = new(6, 6), RemovedIn = new(6, 13), CommitNotEstablished = "test" };
        var until612 = new KernelFeature { Name = "Until612", Description = "x", Since = new(3, 6), RemovedIn = new(6, 12), CommitNotEstablished = "test" };
        var custom = new KernelProfile("linux-6.13", 6, 13);

        Assert.Multiple(() =>
        {
            Assert.That(KernelProfile.Linux6_1.Has(from62), Is.False);
            Assert.That(KernelProfile.Linux6_12.Has(from62), Is.True);
            Assert.That(KernelProfile.Linux6_12.Has(from66To613), Is.True);
            Assert.That(custom.Has(from66To613), Is.False, "gone in the release it was removed in");
            Assert.That(KernelProfile.Linux6_1.Has(until612), Is.True);
            Assert.That(KernelProfile.Linux6_12.Has(until612), Is.False);
            Assert.That(from62.ToString(), Is.EqualTo("From62 (6.2, 84209e87c696)"));
            Assert.That(from66To613.ToString(), Is.EqualTo("From66To613 (6.6–6.13, commit not established)"));
        });
    }

    [Test]
    public void KernelVersion_OrdersByMajorThenMinor()
    {
        Assert.That(new KernelVersion(6, 12), Is.GreaterThan(new KernelVersion(6, 2)));
        Assert.That(new KernelVersion(6, 1) < new KernelVersion(6, 2), Is.True);
        Assert.That(new KernelVersion(5, 19) < new KernelVersion(6, 0), Is.True);
        Assert.That(new KernelVersion(6, 12) >= new KernelVersion(6, 12), Is.True);
        Assert.That(new KernelVersion(6, 12).ToString(), Is.EqualTo("6.12"));
        Assert.That(KernelProfile.Linux6_12.Version, Is.EqualTo(new KernelVersion(6, 12)));
    }

    [Test]
    public void KernelCommit_WantsTheTwelveDigitShortIdAndASubject()
    {
        Assert.That(new KernelCommit("7e89efc6e9e4", "PCI: Lock upstream bridge for pci_reset_function()").ToString(),
            Is.EqualTo("7e89efc6e9e4 (\"PCI: Lock upstream bridge for pci_reset_function()\")"));
        Assert.That(() => new KernelCommit("7e89efc", "short"), Throws.ArgumentException.With.Message.Contains("12-digit"));
        Assert.That(() => new KernelCommit("7E89EFC6E9E4", "upper case"), Throws.ArgumentException);
        Assert.That(() => new KernelCommit("7e89efc6e9e4", " "), Throws.ArgumentException);
    }

    [Test]
    public void TheKernelVersionsDoc_ListsEveryFeature_AsItIs()
    {
        (string[] header, List<string[]> rows) = FeatureTable(File.ReadAllLines(Path.Combine(Repository.Root, DocPath)));
        int Column(string name)
        {
            int i = Array.IndexOf(header, name);
            Assert.That(i, Is.GreaterThanOrEqualTo(0), $"{DocPath}: the feature table has no '{name}' column");
            return i;
        }

        int since = Column("since");
        int commit = Column("commit");
        var byName = rows.ToDictionary(r => r[0].Trim('`'), StringComparer.Ordinal);
        Assert.Multiple(() =>
        {
            Assert.That(byName.Keys, Is.EquivalentTo(AllDeclared.Select(d => d.QualifiedName)), $"{DocPath} lists exactly the declared features");
            foreach (Declared d in AllDeclared)
            {
                if (!byName.TryGetValue(d.QualifiedName, out string[]? row))
                {
                    continue;
                }

                foreach (KernelProfile p in KernelProfile.Presets)
                {
                    string cell = row[Column(p.Name)];
                    Assert.That(cell, Does.StartWith(p.Has(d.Feature) ? "on" : "off"), $"{d.QualifiedName} under {p.Name}");
                }

                Assert.That(row[since], Does.StartWith(d.Feature.Since.ToString()), $"{d.QualifiedName}: since");
                foreach (KernelCommit c in d.Feature.Commits)
                {
                    Assert.That(row[commit], Does.Contain(c.Id), $"{d.QualifiedName}: commit");
                }
            }
        });
    }

    // The first table whose header starts with "feature": its header cells and its rows.
    private static (string[] Header, List<string[]> Rows) FeatureTable(string[] lines)
    {
        static string[] Cells(string line) => [.. line.Trim().Trim('|').Split('|').Select(c => c.Trim())];
        for (int i = 0; i + 1 < lines.Length; i++)
        {
            if (!lines[i].TrimStart().StartsWith('|') || !string.Equals(Cells(lines[i])[0], "feature", StringComparison.Ordinal))
            {
                continue;
            }

            string[] header = Cells(lines[i]);
            var rows = new List<string[]>();
            for (int j = i + 2; j < lines.Length && lines[j].TrimStart().StartsWith('|'); j++)
            {
                string[] row = Cells(lines[j]);
                Assert.That(row, Has.Length.EqualTo(header.Length), $"{DocPath} line {j + 1}: {row.Length} cells, the header has {header.Length}");
                rows.Add(row);
            }

            return (header, rows);
        }

        Assert.Fail($"{DocPath} has no table whose first column is 'feature'");
        throw new InvalidOperationException();
    }
}
