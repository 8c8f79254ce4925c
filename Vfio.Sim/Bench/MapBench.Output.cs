// Not a kernel model: a map sweep's result as CSV and as an SVG plot (OxyPlot's managed
// SVG exporter: no native library, text measured with built-in font metrics).

using System.Globalization;
using System.Text;
using OxyPlot;
using OxyPlot.Axes;
using OxyPlot.Legends;
using OxyPlot.Series;

namespace Vfio.Sim.Bench;

public static partial class MapBench
{
    /// <summary>The CSV header <see cref="ToCsv"/> writes.</summary>
    public const string CsvHeader =
        "size_bytes,page_bytes,placement,pages,map_ns,unmap_ns,map_ns_per_page,unmap_ns_per_page,"
        + "modelled_map_ns_per_page,modelled_unmap_ns_per_page,pins,unpins,pte_writes,tables,"
        + "iotlb_invalidations,iotlb_entries_invalidated,iotlb_flushes";

    /// <summary>
    /// The rows as CSV (<see cref="CsvHeader"/>, then one line per row; invariant culture;
    /// modelled columns empty without a cost model). Wall times are the best of the repetitions.
    /// </summary>
    public static string ToCsv(MapBenchResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        var sb = new StringBuilder();
        sb.Append(CsvHeader).Append('\n');
        foreach (MapBenchRow r in result.Rows)
        {
            sb.Append(CultureInfo.InvariantCulture,
                $"{r.Size},{r.PageSize},{r.Placement},{r.Pages},{r.MapNs:0},{r.UnmapNs:0},{r.MapNsPerPage:0.###},{r.UnmapNsPerPage:0.###},"
                + $"{r.ModelledMapNsPerPage:0.###},{r.ModelledUnmapNsPerPage:0.###},{r.Pins},{r.Unpins},{r.PteWrites},{r.Tables},"
                + $"{r.IotlbInvalidations},{r.IotlbEntriesInvalidated},{r.IotlbFlushes}\n");
        }

        return sb.ToString();
    }

    /// <summary>
    /// The sweep as an SVG plot: nanoseconds per page (of the row's page size, log scale) against
    /// the mapped size (log2 scale), one colour per page size and placement; solid lines map
    /// and dotted unmap wall time, dashed and dash-dotted the modelled map and unmap when the
    /// sweep ran with a cost model.
    /// </summary>
    public static string ToSvg(MapBenchResult result, int width = 1100, int height = 600)
    {
        ArgumentNullException.ThrowIfNull(result);
        string model = result.Options.Model is { } m ? $", modelled with {m.Name}" : "";
        var plot = new PlotModel
        {
            Title = "vfio-sim bench map: VFIO_IOMMU_MAP_DMA and UNMAP_DMA (type1)",
            Subtitle = $"{result.Options.Profile.Name}, wall time best of {result.Options.Repetitions}{model}",
            Background = OxyColors.White,
            TitlePadding = 10,
        };
        plot.Legends.Add(new Legend { LegendPosition = LegendPosition.RightTop, LegendPlacement = LegendPlacement.Outside, LegendTitle = "series", LegendItemSpacing = 4, LegendLineSpacing = 4, LegendSymbolLength = 28 });
        plot.Axes.Add(new LogarithmicAxis
        {
            Position = AxisPosition.Bottom,
            Base = 2,
            Title = "mapped size",
            LabelFormatter = v => FormatSize((long)Math.Round(v)),
            MajorGridlineStyle = LineStyle.Solid,
            MajorGridlineColor = OxyColor.FromRgb(230, 230, 230),
        });
        plot.Axes.Add(new LogarithmicAxis
        {
            Position = AxisPosition.Left,
            Base = 10,
            Title = "ns per page (of the series' page size)",
            MajorGridlineStyle = LineStyle.Solid,
            MajorGridlineColor = OxyColor.FromRgb(230, 230, 230),
        });

        OxyColor[] palette = [OxyColors.SteelBlue, OxyColors.Firebrick, OxyColors.ForestGreen, OxyColors.DarkOrange, OxyColors.Purple, OxyColors.Teal];
        int colour = 0;
        foreach (IGrouping<string, MapBenchRow> series in result.Rows.GroupBy(r => r.Series))
        {
            OxyColor c = palette[colour++ % palette.Length];
            plot.Series.Add(Line($"{series.Key} map", c, LineStyle.Solid, series, r => r.MapNsPerPage));
            plot.Series.Add(Line($"{series.Key} unmap", c, LineStyle.Dot, series, r => r.UnmapNsPerPage));
            if (result.Options.Model is not null)
            {
                plot.Series.Add(Line($"{series.Key} map (model)", c, LineStyle.Dash, series, r => r.ModelledMapNsPerPage ?? 0));
                plot.Series.Add(Line($"{series.Key} unmap (model)", c, LineStyle.DashDot, series, r => r.ModelledUnmapNsPerPage ?? 0));
            }
        }

        // Baselines written out: not every SVG renderer honours dominant-baseline.
        var exporter = new SvgExporter { Width = width, Height = height, UseVerticalTextAlignmentWorkaround = true };
        return exporter.ExportToString(plot);
    }

    private static LineSeries Line(string title, OxyColor colour, LineStyle style, IEnumerable<MapBenchRow> rows, Func<MapBenchRow, double> y)
    {
        var line = new LineSeries { Title = title, Color = colour, LineStyle = style, StrokeThickness = 2, MarkerType = MarkerType.Circle, MarkerSize = 2.5, MarkerFill = colour };
        foreach (MapBenchRow r in rows)
        {
            double v = y(r);
            if (v > 0)
            {
                line.Points.Add(new DataPoint(r.Size, v));
            }
        }

        return line;
    }
}
