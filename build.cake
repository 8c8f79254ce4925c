// vfio-sim build script. `dotnet tool restore && dotnet cake` runs the CI target.
//
//   dotnet cake --target=Test                 build and run the tests
//   dotnet cake --target=Bench                the full BenchmarkDotNet suites (minutes)
//   dotnet cake --target=Bench --bench-job=dry --bench-filter='*KMutex*'
//   dotnet cake --target=Demo                 vfio-sim demo on the embedded default machine
//   dotnet cake --target=Examples             build examples/ warning-free, run the programs, test RaceRegression

using System.Xml.Linq;

var target = Argument("target", "CI");
var configuration = Argument("configuration", "Release");
var benchJob = Argument("bench-job", target == "CI" ? "dry" : "default");
var benchFilter = Argument("bench-filter", "*");

var solution = File("./Vfio.slnx");
var artifacts = Directory("./artifacts");
var testResults = artifacts + Directory("test-results");

Task("Clean")
    .Does(() =>
{
    CleanDirectory(artifacts);
    DotNetClean(solution, new DotNetCleanSettings { Configuration = configuration });
});

Task("Restore")
    .Does(() => DotNetRestore(solution));

Task("Build")
    .IsDependentOn("Restore")
    .Does(() =>
{
    DotNetBuild(solution, new DotNetBuildSettings
    {
        Configuration = configuration,
        NoRestore = true,
        MSBuildSettings = new DotNetMSBuildSettings { TreatAllWarningsAs = MSBuildTreatAllWarningsAs.Error },
    });
});

Task("Test")
    .IsDependentOn("Build")
    .Does(() =>
{
    CleanDirectory(testResults);
    try
    {
        DotNetTest(solution, new DotNetTestSettings
        {
            Configuration = configuration,
            NoBuild = true,
            Loggers = { "trx;LogFileName=results.trx" },
            ResultsDirectory = testResults,
        });
    }
    finally
    {
        foreach (var trx in GetFiles($"{testResults}/**/*.trx"))
        {
            var counters = XDocument.Load(trx.FullPath).Descendants().First(e => e.Name.LocalName == "Counters");
            int passed = (int)counters.Attribute("passed");
            int failed = (int)counters.Attribute("failed") + (int)counters.Attribute("error") + (int)counters.Attribute("timeout") + (int)counters.Attribute("aborted");
            int skipped = (int)counters.Attribute("notExecuted") + (int)counters.Attribute("inconclusive");
            Information(skipped > 0 ? $"{passed} passed, {failed} failed, {skipped} skipped" : $"{passed} passed, {failed} failed");
        }
    }
});

Task("Bench")
    .IsDependentOn("Build")
    .Does(() =>
{
    var args = new ProcessArgumentBuilder().Append("--filter").AppendQuoted(benchFilter);
    if (benchJob != "default")
    {
        args.Append("--job").Append(benchJob);
    }

    if (benchJob == "dry")
    {
        // A quick check that every benchmark still runs, without per-benchmark builds.
        args.Append("--inProcess");
    }

    DotNetRun("./Vfio.Benchmarks/Vfio.Benchmarks.csproj", args, new DotNetRunSettings { Configuration = configuration, NoBuild = true });
});

Task("Demo")
    .IsDependentOn("Build")
    .Does(() =>
{
    DotNetRun("./Vfio.Cli/Vfio.Cli.csproj", new ProcessArgumentBuilder().Append("demo"), new DotNetRunSettings { Configuration = configuration, NoBuild = true });
});

// The examples build as users' own projects do (their own Directory.Build.props), so each
// is built on its own, warnings as errors, and run: a program's exit code says whether what
// it checked held.
Task("Examples")
    .IsDependentOn("Build")
    .Does(() =>
{
    foreach (var project in GetFiles("./examples/*/*.csproj"))
    {
        DotNetBuild(project.FullPath, new DotNetBuildSettings
        {
            Configuration = configuration,
            MSBuildSettings = new DotNetMSBuildSettings { TreatAllWarningsAs = MSBuildTreatAllWarningsAs.Error },
        });
        if (project.GetFilenameWithoutExtension().ToString() == "RaceRegression")
        {
            DotNetTest(project.FullPath, new DotNetTestSettings { Configuration = configuration, NoBuild = true });
        }
        else
        {
            DotNetRun(project.FullPath, new ProcessArgumentBuilder(), new DotNetRunSettings { Configuration = configuration, NoBuild = true });
        }
    }
});

Task("CI")
    .IsDependentOn("Test")
    .IsDependentOn("Bench")
    .IsDependentOn("Demo")
    .IsDependentOn("Examples");

RunTarget(target);
