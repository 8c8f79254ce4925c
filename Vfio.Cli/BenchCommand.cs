// `vfio-sim bench`: measured sweeps of the simulator's hot paths.
//   bench map --size 4K..16G --page 4K,2M,1G --placement scattered,contiguous
//             [--design KEY=VALUE]... [--profile P] [--model linux-x86] [--repeat N]
//             [--warmup MS] [--csv FILE] [--svg FILE]
// VFIO_IOMMU_MAP_DMA and UNMAP_DMA (type1) of a populated buffer, one machine per page size
// and placement sized for the largest point (hugetlb pools included). Prints a table: wall
// time per page (best of --repeat), modelled time per page with --model, and the counts.
// Progress goes to stderr. Exit codes: 0 measured; 2 a request that cannot run, with why.

using System.CommandLine;
using System.Globalization;
using Spectre.Console;
using Vfio.Kernel;
using Vfio.Sim.Bench;
using Vfio.Sim.Races;

namespace Vfio.Cli;

internal static class BenchCommand
{
    public static Command Create()
    {
        var command = new Command("bench", "Measured sweeps of the simulator's hot paths (wall time, modelled time and counts)");
        command.Subcommands.Add(MapCommand());
        return command;
    }

    private static Command MapCommand()
    {
        var size = new Option<string>("--size") { Description = "Sizes to map: a range of powers of two (4K..16G) and/or a comma list (2M,1G); units K, M, G, T", DefaultValueFactory = _ => "4K..1G" };
        var page = new Option<string>("--page") { Description = "Page sizes backing the buffer: 4K (anonymous), 2M, 1G (hugetlb, pools sized automatically)", DefaultValueFactory = _ => "4K" };
        var placement = new Option<string>("--placement") { Description = "Placement of 4 KiB pages: scattered, contiguous (hugetlb pages come from their pool in address order)", DefaultValueFactory = _ => "scattered" };
        var design = new Option<string[]>("--design") { Description = "A design variant KEY=VALUE; repeat for more", DefaultValueFactory = _ => [] };
        Option<KernelProfile> profile = CliConsole.ProfileOption();
        var model = new Option<string?>("--model") { Description = $"Charge a cost model and report modelled time: {string.Join(", ", CostProfile.Presets.Select(p => p.Name))}" };
        var repeat = new Option<int>("--repeat") { Description = "Timed map + unmap pairs per point (the best is reported)", DefaultValueFactory = _ => 5 };
        var warmup = new Option<int>("--warmup") { Description = "Milliseconds of mapping before the first measurement, so the hot path runs optimised code", DefaultValueFactory = _ => 500 };
        var csv = new Option<string?>("--csv") { Description = "Also write the rows as CSV to this file" };
        var svg = new Option<string?>("--svg") { Description = "Also plot ns per page against size to this SVG file" };

        size.Validators.Add(r => AddError(r, () => MapBench.ParseSizes(r.GetValueOrDefault<string>() ?? "")));
        page.Validators.Add(r => AddError(r, () => MapBench.ParsePageSizes(r.GetValueOrDefault<string>() ?? "")));
        placement.Validators.Add(r => AddError(r, () => MapBench.ParsePlacements(r.GetValueOrDefault<string>() ?? "")));
        design.Validators.Add(r =>
        {
            foreach (string setting in r.GetValueOrDefault<string[]>() ?? [])
            {
                if (DesignSettings.Validate(setting) is { } why)
                {
                    r.AddError(why);
                    return;
                }
            }
        });
        model.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<string?>() is { } name && CostProfile.Find(name) is null)
            {
                r.AddError($"--model takes {string.Join(" or ", CostProfile.Presets.Select(p => p.Name))}, not '{name}'");
            }
        });
        repeat.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<int>() < 1)
            {
                r.AddError("--repeat takes a whole number, 1 or more");
            }
        });
        warmup.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<int>() < 0)
            {
                r.AddError("--warmup takes milliseconds, 0 or more");
            }
        });

        var map = new Command("map", "Sweep VFIO_IOMMU_MAP_DMA and UNMAP_DMA (type1) over sizes, page sizes and placements")
        {
            size, page, placement, design, profile, model, repeat, warmup, csv, svg,
        };
        map.SetAction(r =>
        {
            TextWriter output = r.InvocationConfiguration.Output;
            IAnsiConsole console = ReferenceEquals(output, Console.Out) ? CliConsole.Create() : CliConsole.Create(output, noColor: true, AnsiSupport.No);
            var options = new MapBenchOptions
            {
                Sizes = MapBench.ParseSizes(r.GetValue(size)!),
                PageSizes = MapBench.ParsePageSizes(r.GetValue(page)!),
                Placements = MapBench.ParsePlacements(r.GetValue(placement)!),
                Designs = r.GetValue(design) ?? [],
                Profile = r.GetValue(profile)!,
                Model = r.GetValue(model) is { } name ? CostProfile.Find(name) : null,
                Repetitions = r.GetValue(repeat),
                WarmUp = TimeSpan.FromMilliseconds(r.GetValue(warmup)),
            };
            return RunMap(console, r.InvocationConfiguration.Error, options, r.GetValue(csv), r.GetValue(svg));
        });
        return map;
    }

    private static void AddError(System.CommandLine.Parsing.OptionResult r, Action parse)
    {
        try
        {
            parse();
        }
        catch (FormatException e)
        {
            r.AddError($"{r.Option.Name}: {e.Message}");
        }
    }

    internal static int RunMap(IAnsiConsole console, TextWriter error, MapBenchOptions options, string? csvFile, string? svgFile)
    {
        if (MapBench.Check(options) is { } why)
        {
            return CliConsole.Usage(error, why);
        }

        MapBenchResult result = MapBench.Run(options, line => error.WriteLine($"bench map: {line}"));
        bool modelled = options.Model is not null;
        var table = new Table().Border(TableBorder.Rounded)
            .AddColumn("series").AddColumn(new TableColumn("size").RightAligned()).AddColumn(new TableColumn("pages").RightAligned())
            .AddColumn(new TableColumn("map ns/page").RightAligned()).AddColumn(new TableColumn("unmap ns/page").RightAligned());
        if (modelled)
        {
            table.AddColumn(new TableColumn("modelled map").RightAligned()).AddColumn(new TableColumn("modelled unmap").RightAligned());
        }

        table.AddColumn(new TableColumn("pins").RightAligned()).AddColumn(new TableColumn("PTE writes").RightAligned())
            .AddColumn(new TableColumn("tables").RightAligned()).AddColumn(new TableColumn("IOTLB inval").RightAligned());
        foreach (MapBenchRow row in result.Rows)
        {
            var cells = new List<string>
            {
                row.Series, MapBench.FormatSize(row.Size), N(row.Pages), Ns(row.MapNsPerPage), Ns(row.UnmapNsPerPage),
            };
            if (modelled)
            {
                cells.Add(Ns(row.ModelledMapNsPerPage ?? 0));
                cells.Add(Ns(row.ModelledUnmapNsPerPage ?? 0));
            }

            cells.AddRange([N(row.Pins), N(row.PteWrites), N(row.Tables), N(row.IotlbInvalidations)]);
            table.AddRow(cells.Select(Markup.Escape).ToArray());
        }

        console.Write(table);
        console.WriteLine($"wall time: best of {options.Repetitions} per point on this machine (it varies run to run){(modelled ? $"; modelled time: {options.Model!.Name}, the same on every machine" : "")}; {options.Profile.Name}");
        foreach (string note in result.Notes)
        {
            console.WriteLine($"note: {note}");
        }

        return Write(error, csvFile, () => MapBench.ToCsv(result)) ?? Write(error, svgFile, () => MapBench.ToSvg(result)) ?? 0;
    }

    private static int? Write(TextWriter error, string? file, Func<string> text)
    {
        if (file is null)
        {
            return null;
        }

        try
        {
            File.WriteAllText(file, text());
            error.WriteLine($"bench map: wrote {file}");
            return null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return CliConsole.Usage(error, $"cannot write {file}: {e.Message}");
        }
    }

    private static string N(long v) => v.ToString("N0", CultureInfo.InvariantCulture);

    private static string Ns(double v) => v.ToString(v >= 100 ? "N0" : "0.0", CultureInfo.InvariantCulture);
}
