// Tests the map sweep (Vfio.Sim/Bench): size parsing, the counts a tiny sweep must show for
// 4 KiB and 2 MiB pages, modelled time only with a model and the same on every run, the
// hugetlb pools sized for the request, CSV and SVG output, and requests that cannot run.

using System.Xml.Linq;
using NUnit.Framework;
using Vfio.Kernel;
using Vfio.Platform.Mm;
using Vfio.Sim.Bench;

namespace Vfio.Tests.Sim;

public sealed class BenchTests
{
    private const long K = 1L << 10, M = 1L << 20, G = 1L << 30;

    private static MapBenchOptions Tiny(string sizes, string pages, string placements = "scattered", CostProfile? model = null) => new()
    {
        Sizes = MapBench.ParseSizes(sizes),
        PageSizes = MapBench.ParsePageSizes(pages),
        Placements = MapBench.ParsePlacements(placements),
        Model = model,
        Repetitions = 2,
        WarmUp = TimeSpan.Zero,
    };

    [Test]
    public void ARange_IsEveryPowerOfTwoFromItsStartToItsEnd()
    {
        Assert.That(MapBench.ParseSizes("4K..64K"), Is.EqualTo(new[] { 4 * K, 8 * K, 16 * K, 32 * K, 64 * K }));
        IReadOnlyList<long> wide = MapBench.ParseSizes("4K..16G");
        Assert.That((wide.Count, wide[^1]), Is.EqualTo((23, 16 * G)));
    }

    [Test]
    public void AList_MixesSizesAndRanges_SortedWithoutRepeats()
    {
        Assert.That(MapBench.ParseSizes("1G, 2M,2MiB,1t,4096,8K..16K"), Is.EqualTo(new[] { 4 * K, 8 * K, 16 * K, 2 * M, G, 1L << 40 }));
    }

    [TestCase("3K", "not a whole number of 4 KiB pages")]
    [TestCase("4X", "unknown unit 'X'")]
    [TestCase("big", "is not a size")]
    [TestCase("4K..12K", "both ends must be powers of two (12K is not)")]
    [TestCase("64K..4K", "ends below where it starts")]
    [TestCase("2T", "more than the 1T a sweep maps at most")]
    [TestCase("4K,,8K", "empty size")]
    public void NonsenseSizes_AreRefusedWithWhy(string text, string why)
    {
        Assert.That(() => MapBench.ParseSizes(text), Throws.TypeOf<FormatException>().With.Message.Contains(why));
    }

    [Test]
    public void PageSizesAndPlacements_AreTheMachines()
    {
        Assert.That(MapBench.ParsePageSizes("1G,4K,2M"), Is.EqualTo(new[] { 4 * K, 2 * M, G }));
        Assert.That(MapBench.ParsePlacements("contiguous,scattered"), Is.EqualTo(new[] { AllocationPolicy.Contiguous, AllocationPolicy.Scattered }));
        Assert.That(() => MapBench.ParsePageSizes("64K"), Throws.TypeOf<FormatException>().With.Message.Contains("not a page size of the machine"));
        Assert.That(() => MapBench.ParsePlacements("random"), Throws.TypeOf<FormatException>().With.Message.Contains("not a placement"));
    }

    [Test]
    public void A4KSweep_PinsAndWritesOneLeafPerPage_AndUnpinsThemAll()
    {
        MapBenchResult result = MapBench.Run(Tiny("4K..64K", "4K", "scattered,contiguous"));
        Assert.That(result.Rows, Has.Count.EqualTo(10));
        Assert.That(result.Rows.Select(r => r.Series).Distinct(), Is.EqualTo(new[] { "4K scattered", "4K contiguous" }));
        foreach (MapBenchRow r in result.Rows)
        {
            Assert.That((r.Pins, r.Unpins, r.PteWrites), Is.EqualTo((r.Pages, r.Pages, r.Pages)), $"{r.Series} {r.Size}");
            Assert.That(r.IotlbInvalidations, Is.GreaterThanOrEqualTo(1));
            Assert.That(r.Tables, Is.GreaterThan(0));
            Assert.That(r.MapNs, Is.GreaterThan(0));
            Assert.That((r.MapCost, r.ModelledMapNsPerPage), Is.EqualTo(((CostCounters?)null, (double?)null)), "no model, no modelled time");
        }
    }

    [Test]
    public void A2MSweep_WritesOneLeafPerHugePage_AndIsLabelledHugetlb()
    {
        MapBenchResult result = MapBench.Run(Tiny("2M..4M", "2M"));
        Assert.That(result.Rows.Select(r => (r.Series, r.Pages, r.PteWrites, r.Pins)), Is.EqualTo(new[]
        {
            ("2M hugetlb", 1L, 1L, 512L),
            ("2M hugetlb", 2L, 2L, 1024L),
        }));
        Assert.That(result.Notes, Has.Some.Contains("labelled hugetlb"));
    }

    [Test]
    public void HugetlbPools_AreSizedForTheRequest_256MOf2MPagesMaps()
    {
        // The default machine has 64 hugepages (128 MiB): the sweep's machine has what it needs.
        MapBenchResult result = MapBench.Run(Tiny("256M", "2M") with { Repetitions = 1 });
        Assert.That(result.Rows.Single().PteWrites, Is.EqualTo(128));
    }

    [Test]
    public void SizesBelowAPageSize_AreSkippedWithANote()
    {
        MapBenchResult result = MapBench.Run(Tiny("4K,2M", "4K,2M", "contiguous"));
        Assert.That(result.Rows.Select(r => (r.Series, r.Size)), Is.EqualTo(new[] { ("4K contiguous", 4 * K), ("4K contiguous", 2 * M), ("2M hugetlb", 2 * M) }));
        Assert.That(result.Notes, Has.Some.Contains("2M pages: 4K skipped"));
        Assert.That(result.Notes, Has.None.Contains("labelled hugetlb"), "contiguous was asked: nothing relabelled");
    }

    [Test]
    public void WithAModel_ModelledTimeIsReported_AndTheSameOnTwoRuns()
    {
        MapBenchOptions options = Tiny("4K..16K,2M", "4K,2M", model: CostProfile.LinuxX86);
        MapBenchResult a = MapBench.Run(options), b = MapBench.Run(options);
        Assert.That(a.Rows.Select(r => r.ModelledMapNsPerPage), Is.All.GreaterThan(0));
        Assert.That(a.Rows.Select(r => r.ModelledUnmapNsPerPage), Is.All.GreaterThan(0));
        Assert.That(a.Rows.Select(r => (r.MapCost, r.UnmapCost)), Is.EqualTo(b.Rows.Select(r => (r.MapCost, r.UnmapCost))));
        MapBenchRow fourK = a.Rows.First(r => r.PageSize == MapBench.Page4K && r.Size == 16 * K);
        Assert.That(fourK.MapCost!.Value[CostOp.GupPage], Is.EqualTo(4));
        Assert.That(fourK.MapCost!.Value[CostOp.PteWrite], Is.EqualTo(4));
    }

    [Test]
    public void Csv_HasTheHeaderAndOneLinePerRow()
    {
        MapBenchResult result = MapBench.Run(Tiny("4K..8K", "4K", model: CostProfile.LinuxX86));
        string[] lines = MapBench.ToCsv(result).TrimEnd('\n').Split('\n');
        Assert.That(lines[0], Is.EqualTo(MapBench.CsvHeader));
        Assert.That(lines, Has.Length.EqualTo(3));
        string[] cells = lines[2].Split(',');
        Assert.That(cells, Has.Length.EqualTo(MapBench.CsvHeader.Split(',').Length));
        Assert.That(cells[..4], Is.EqualTo(new[] { "8192", "4096", "scattered", "2" }));
        Assert.That(cells[8], Is.Not.Empty, "modelled map per page");
        Assert.That(cells[12], Is.EqualTo("2"), "PTE writes");
    }

    [Test]
    public void Svg_IsWellFormedXml_WithTheSeriesNames()
    {
        MapBenchResult result = MapBench.Run(Tiny("4K..8K,2M", "4K,2M", model: CostProfile.LinuxX86));
        string svg = MapBench.ToSvg(result);
        XDocument doc = XDocument.Parse(svg);
        Assert.That(doc.Root!.Name.LocalName, Is.EqualTo("svg"));
        string text = string.Join("\n", doc.Descendants().Where(e => e.Name.LocalName == "text").Select(e => e.Value));
        Assert.That(text, Does.Contain("4K scattered map").And.Contain("2M hugetlb unmap").And.Contain("4K scattered map (model)"));
        Assert.That(text, Does.Contain("mapped size"));
    }

    [Test]
    public void ImpossibleRequests_SayWhy()
    {
        Assert.That(MapBench.Check(Tiny("4K", "2M")), Does.StartWith("no point of the sweep can run").And.Contains("2M pages: 4K skipped"));
        const long Host = 16 * G;
        Assert.That(MapBench.Check(Tiny("1T", "4K"), Host), Is.EqualTo(
            "mapping 1T of 4K pages needs about 10304 MiB of this host's memory (268,435,456 pages x 40 B (frame metadata, process and I/O page tables, type1's bookkeeping) + 64 MiB for the machine), "
            + "twice that while the previous machine is collected, and a sweep may use half of the 16384 MiB available: use smaller sizes or larger pages"));
        Assert.That(MapBench.Check(Tiny("16G", "4K"), Host), Is.Null, "16 GiB of 4 KiB pages: about 224 MiB");
        Assert.That(MapBench.Check(Tiny("4K", "4K") with { Repetitions = 0 }), Does.Contain("repetitions must be at least 1"));
        Assert.That(MapBench.Check(Tiny("4K", "4K") with { Designs = ["Nonsense=1"] }), Does.Contain("no design variant is called 'Nonsense'"));
        Assert.That(MapBench.Check(Tiny("4K", "4K") with { Sizes = [4097] }), Does.Contain("not a whole number of 4 KiB pages"));
        Assert.That(() => MapBench.Run(Tiny("4K", "2M")), Throws.ArgumentException);
        Assert.That(MapBench.Check(Tiny("1T", "1G"), Host), Is.Null, "1 TiB of 1 GiB pages costs the host little");
    }
}
