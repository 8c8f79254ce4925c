// `vfio-sim lab`: the graded labs from the command line.
//   list                                  the labs: number, slug, title, kind (shell/code), story
//   show N                                lab N's handout (markdown)
//   check N|--all --reference             grade the reference solution(s)
//   check N|--all --solution DIR|DLL      grade a student's project: the newest built
//                                         bin/**/<project>.dll, or the dll given; a shell
//                                         lab's script is DIR/labNN.sh
// The output of check is the score table, as xv6's `make grade` prints it. Exit codes: 0
// every check passed, 1 some failed, 2 usage (no such lab, no such folder, a project that
// is not built).
//
// A student's assembly is loaded into a collectible AssemblyLoadContext that resolves the
// student's own dependencies (NUnit…) from its folder but shares every assembly the CLI
// itself ships (Vfio.Sim and below), so the student's class derives from the very
// DmaMappingSolution type the grader knows. The context is unloaded after grading.

using System.CommandLine;
using System.Globalization;
using System.Reflection;
using System.Runtime.Loader;
using Spectre.Console;
using Vfio.Sim.Labs;

namespace Vfio.Cli;

internal static class LabCommand
{
    public static Command Create()
    {
        var command = new Command("lab", "The graded labs: list them, show a handout, grade a solution");
        command.Subcommands.Add(List());
        command.Subcommands.Add(Show());
        command.Subcommands.Add(CheckCommand());
        return command;
    }

    private static Command List()
    {
        var list = new Command("list", "List the labs");
        list.SetAction(_ => ListLabs(CliConsole.Create()));
        return list;
    }

    internal static int ListLabs(IAnsiConsole console)
    {
        var table = new Table().Border(TableBorder.Rounded)
            .AddColumn("lab").AddColumn("slug").AddColumn("title").AddColumn("kind").AddColumn("story");
        foreach (Lab lab in LabCatalog.All)
        {
            table.AddRow(lab.Number.ToString(CultureInfo.InvariantCulture), Markup.Escape(lab.Slug), Markup.Escape(lab.Title),
                LabCatalog.IsShellLab(lab) ? "shell" : "code", Markup.Escape(lab.Story));
        }

        console.Write(table);
        return 0;
    }

    private static Command Show()
    {
        var number = new Argument<int>("number") { Description = "The lab's number (see `vfio-sim lab list`)" };
        var show = new Command("show", "Print a lab's handout") { number };
        show.SetAction(r => ShowLab(r.InvocationConfiguration.Output, r.InvocationConfiguration.Error, r.GetValue(number)));
        return show;
    }

    internal static int ShowLab(TextWriter output, TextWriter error, int number)
    {
        if (LabCatalog.Find(number) is not { } lab)
        {
            return NoSuchLab(error, number);
        }

        output.Write(lab.Handout);
        return 0;
    }

    private static Command CheckCommand()
    {
        var number = new Argument<int?>("number") { Description = "The lab to grade (or --all)", Arity = ArgumentArity.ZeroOrOne };
        var all = new Option<bool>("--all") { Description = "Grade every lab" };
        var reference = new Option<bool>("--reference") { Description = "Grade the reference solution" };
        var solution = new Option<string?>("--solution") { Description = "A student's project folder (built with dotnet build) or its built .dll" };
        var check = new Command("check", "Grade a solution and print the score table (exit 0 when every check passed, 1 when some failed)") { number, all, reference, solution };
        check.SetAction(r => Check(r.InvocationConfiguration.Output, r.InvocationConfiguration.Error, r.GetValue(number), r.GetValue(all), r.GetValue(reference), r.GetValue(solution)));
        return check;
    }

    internal static int Check(TextWriter output, TextWriter error, int? number, bool all, bool reference, string? solution)
    {
        if (all == number.HasValue)
        {
            return CliConsole.Usage(error, "lab check takes a lab number or --all, one of them");
        }

        if (reference == (solution is not null))
        {
            return CliConsole.Usage(error, "lab check takes --reference or --solution DIR, one of them");
        }

        IReadOnlyList<Lab> labs;
        if (all)
        {
            labs = LabCatalog.All;
        }
        else if (LabCatalog.Find(number!.Value) is { } one)
        {
            labs = [one];
        }
        else
        {
            return NoSuchLab(error, number.Value);
        }

        List<LabGrade> grades;
        if (reference)
        {
            grades = [.. labs.Select(l => LabCatalog.SafeGrade(l, l.CreateReferenceSolution()))];
        }
        else if (!TryGradeStudent(error, labs, solution!, out grades))
        {
            return 2;
        }

        output.Write(LabCatalog.ScoreTable(grades));
        return grades.All(g => g.Passed) ? 0 : 1;
    }

    // Grades the student's project at `path` (a folder or a built dll); false after a usage error.
    private static bool TryGradeStudent(TextWriter error, IReadOnlyList<Lab> labs, string path, out List<LabGrade> grades)
    {
        grades = [];
        string? dll;
        string folder;
        if (File.Exists(path) && path.EndsWith(".dll", StringComparison.OrdinalIgnoreCase))
        {
            dll = Path.GetFullPath(path);
            folder = FindProjectFolder(Path.GetDirectoryName(dll)!) ?? Path.GetDirectoryName(dll)!;
        }
        else if (Directory.Exists(path))
        {
            folder = Path.GetFullPath(path);
            dll = FindBuiltAssembly(folder);
        }
        else
        {
            CliConsole.Usage(error, $"{path} is neither a folder nor a .dll");
            return false;
        }

        bool needsAssembly = labs.Any(l => !LabCatalog.IsShellLab(l));
        if (needsAssembly && dll is null)
        {
            if (labs.Count == 1)
            {
                CliConsole.Usage(error, $"{folder} has no built assembly: build it first: dotnet build {path}");
                return false;
            }

            error.WriteLine($"vfio-sim: {folder} has no built assembly (build it first: dotnet build {path}); grading the shell labs only");
        }

        StudentLoadContext? context = dll is null ? null : new StudentLoadContext(dll);
        try
        {
            Assembly? assembly = context?.LoadFromAssemblyPath(dll!);
            foreach (Lab lab in labs)
            {
                grades.Add(!LabCatalog.IsShellLab(lab) && assembly is null
                    ? LabCatalog.Unsolved(lab, $"no built assembly in {folder}: build it first: dotnet build {path}")
                    : LabCatalog.GradeStudent(lab, assembly, folder));
            }
        }
        finally
        {
            context?.Unload();
        }

        return true;
    }

    /// <summary>The newest <c>bin/**/&lt;project&gt;.dll</c> of the project in <paramref name="folder"/>, or null.</summary>
    internal static string? FindBuiltAssembly(string folder)
    {
        string? project = Directory.EnumerateFiles(folder, "*.csproj").Order(StringComparer.Ordinal).FirstOrDefault();
        string bin = Path.Combine(folder, "bin");
        if (project is null || !Directory.Exists(bin))
        {
            return null;
        }

        string name = Path.GetFileNameWithoutExtension(project) + ".dll";
        return Directory.EnumerateFiles(bin, name, SearchOption.AllDirectories)
            .Where(f => !f.Contains($"{Path.DirectorySeparatorChar}ref{Path.DirectorySeparatorChar}", StringComparison.Ordinal))
            .OrderByDescending(File.GetLastWriteTimeUtc)
            .FirstOrDefault();
    }

    // The folder above a built dll that holds a project file (bin/Debug/net10.0/x.dll -> the project), or null.
    private static string? FindProjectFolder(string start)
    {
        for (DirectoryInfo? d = new(start); d is not null; d = d.Parent)
        {
            if (d.EnumerateFiles("*.csproj").Any())
            {
                return d.FullName;
            }
        }

        return null;
    }

    private static int NoSuchLab(TextWriter error, int number)
        => CliConsole.Usage(error, $"there is no lab {number} (labs: {string.Join(", ", LabCatalog.All.Select(l => l.Number))}; see vfio-sim lab list)");

    /// <summary>
    /// Loads a student's assembly and its own dependencies from its folder, sharing with the
    /// CLI every assembly the CLI ships (so Vfio.Sim's types are the same types on both sides).
    /// </summary>
    private sealed class StudentLoadContext(string mainAssembly) : AssemblyLoadContext("student", isCollectible: true)
    {
        private readonly AssemblyDependencyResolver _resolver = new(mainAssembly);

        protected override Assembly? Load(AssemblyName assemblyName)
        {
            if (File.Exists(Path.Combine(AppContext.BaseDirectory, assemblyName.Name + ".dll")))
            {
                return null; // the CLI's own copy, from the default context
            }

            string? path = _resolver.ResolveAssemblyToPath(assemblyName);
            return path is null ? null : LoadFromAssemblyPath(path);
        }
    }
}
