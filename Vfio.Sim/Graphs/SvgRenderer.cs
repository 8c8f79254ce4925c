// The object graph as SVG, laid out in-process: MSAGL's layered (Sugiyama) layout gives
// every box a position and every edge a curve with an arrowhead; this file sizes the boxes
// from their text and writes the SVG from that geometry. Nothing outside the process runs.
// The text is escaped for XML, so a path or a comm with <, & or quotes stays well-formed.

using System.Globalization;
using System.Text;
using Microsoft.Msagl.Core.Geometry;
using Microsoft.Msagl.Core.Geometry.Curves;
using Microsoft.Msagl.Core.Layout;
using Microsoft.Msagl.Core.Routing;
using Microsoft.Msagl.Layout.Layered;
using Microsoft.Msagl.Miscellaneous;
using MsaglEdge = Microsoft.Msagl.Core.Layout.Edge;
using MsaglNode = Microsoft.Msagl.Core.Layout.Node;

namespace Vfio.Sim.Graphs;

/// <summary>Lays an <see cref="ObjectGraph"/> out and writes it as an SVG document.</summary>
internal static class SvgRenderer
{
    private const double FontSize = 9;
    private const double CharWidth = 5.6; // monospace at 9px, a little generous
    private const double LineHeight = 11.5;
    private const double PadX = 6;
    private const double PadY = 4;
    private const double Margin = 12;

    internal static string Render(ObjectGraph graph)
    {
        var g = new GeometryGraph();
        var boxes = new Dictionary<string, (MsaglNode Node, List<string> Lines)>(StringComparer.Ordinal);
        foreach (GraphNode n in graph.Nodes)
        {
            List<string> lines = ObjectGraph.BoxLines(n);
            int chars = 0;
            foreach (string l in lines)
            {
                chars = Math.Max(chars, l.Length);
            }

            double w = (chars * CharWidth) + (2 * PadX);
            double h = (lines.Count * LineHeight) + (2 * PadY);
            var node = new MsaglNode(CurveFactory.CreateRectangle(w, h, new Point(0, 0)), n.Id);
            g.Nodes.Add(node);
            boxes[n.Id] = (node, lines);
        }

        var edges = new List<(GraphEdge Edge, MsaglEdge Geometry)>(graph.Edges.Count);
        foreach (GraphEdge e in graph.Edges)
        {
            MsaglNode from = boxes[e.From].Node;
            MsaglNode to = boxes[e.To].Node;
            var ge = new MsaglEdge(from, to)
            {
                Weight = 1,
                Label = new Label((e.Label.Length * CharWidth) + 2, LineHeight, null!),
            };
            ge.Label.GeometryParent = ge;
            ge.EdgeGeometry.TargetArrowhead = new Arrowhead { Length = 6 };
            g.Edges.Add(ge);
            edges.Add((e, ge));
        }

        if (graph.Nodes.Count > 0)
        {
            var settings = new SugiyamaLayoutSettings
            {
                LayerSeparation = 40,
                NodeSeparation = 14,
                Transformation = PlaneTransformation.Rotation(Math.PI / 2), // left to right, as the DOT
            };
            settings.EdgeRoutingSettings.EdgeRoutingMode = EdgeRoutingMode.SugiyamaSplines;
            LayoutHelpers.CalculateLayout(g, settings, null);
        }

        return Write(graph, g, boxes, edges);
    }

    private static string Write(
        ObjectGraph graph,
        GeometryGraph g,
        Dictionary<string, (MsaglNode Node, List<string> Lines)> boxes,
        List<(GraphEdge Edge, MsaglEdge Geometry)> edges)
    {
        Rectangle bb = graph.Nodes.Count > 0 ? g.BoundingBox : new Rectangle(0, 0, 1, 1);
        double width = bb.Width + (2 * Margin);
        double height = bb.Height + (2 * Margin);

        // SVG's y grows downwards; MSAGL's upwards.
        double X(double x) => x - bb.Left + Margin;
        double Y(double y) => bb.Top - y + Margin;

        var sb = new StringBuilder();
        sb.Append("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        sb.Append("<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"").Append(F(width)).Append("\" height=\"").Append(F(height))
          .Append("\" viewBox=\"0 0 ").Append(F(width)).Append(' ').Append(F(height)).Append("\" font-family=\"monospace\" font-size=\"").Append(F(FontSize)).Append("\">\n");
        sb.Append("  <title>vfio-sim object graph</title>\n");
        sb.Append("  <defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"6\" markerHeight=\"6\" orient=\"auto-start-reverse\"><path d=\"M 0 0 L 10 5 L 0 10 z\" fill=\"#555\"/></marker></defs>\n");
        sb.Append("  <rect x=\"0\" y=\"0\" width=\"").Append(F(width)).Append("\" height=\"").Append(F(height)).Append("\" fill=\"white\"/>\n");

        sb.Append("  <g class=\"edges\" fill=\"none\" stroke=\"#555\" stroke-width=\"1\">\n");
        foreach ((GraphEdge e, MsaglEdge ge) in edges)
        {
            sb.Append("    <g class=\"edge\" data-from=\"").Append(Xml(e.From)).Append("\" data-to=\"").Append(Xml(e.To)).Append("\">");
            sb.Append("<title>").Append(Xml(e.From + " -> " + e.To + ": " + e.Label)).Append("</title>");
            sb.Append("<path d=\"");
            AppendCurve(sb, ge, X, Y);
            sb.Append("\" marker-end=\"url(#arrow)\"/>");
            if (ge.Label is { } label && !string.IsNullOrEmpty(e.Label))
            {
                sb.Append("<text x=\"").Append(F(X(label.Center.X))).Append("\" y=\"").Append(F(Y(label.Center.Y) + 3))
                  .Append("\" text-anchor=\"middle\" stroke=\"none\" fill=\"#333\" font-size=\"8\">").Append(Xml(e.Label)).Append("</text>");
            }

            sb.Append("</g>\n");
        }

        sb.Append("  </g>\n");
        sb.Append("  <g class=\"nodes\">\n");
        foreach (GraphNode n in graph.Nodes)
        {
            (MsaglNode node, List<string> lines) = boxes[n.Id];
            Rectangle r = node.BoundingBox;
            double left = X(r.Left);
            double top = Y(r.Top);
            sb.Append("    <g class=\"node ").Append(ObjectGraph.KindName(n.Kind)).Append("\" id=\"").Append(Xml(n.Id)).Append("\">");
            sb.Append("<title>").Append(Xml(n.Id)).Append("</title>");
            sb.Append("<rect x=\"").Append(F(left)).Append("\" y=\"").Append(F(top)).Append("\" width=\"").Append(F(r.Width)).Append("\" height=\"").Append(F(r.Height))
              .Append("\" rx=\"4\" ry=\"4\" fill=\"").Append(ObjectGraph.KindColor(n.Kind)).Append("\" stroke=\"#333\"/>");
            for (int i = 0; i < lines.Count; i++)
            {
                sb.Append("<text x=\"").Append(F(left + PadX)).Append("\" y=\"").Append(F(top + PadY + ((i + 1) * LineHeight) - 3))
                  .Append(i == 0 ? "\" font-weight=\"bold\">" : "\">").Append(Xml(lines[i])).Append("</text>");
            }

            sb.Append("</g>\n");
        }

        sb.Append("  </g>\n");
        sb.Append("</svg>\n");
        return sb.ToString();
    }

    // The edge's curve as path data: lines and cubic Béziers as they are, anything else sampled.
    private static void AppendCurve(StringBuilder sb, MsaglEdge ge, Func<double, double> x, Func<double, double> y)
    {
        ICurve? curve = ge.Curve;
        Point? tip = ge.EdgeGeometry.TargetArrowhead?.TipPosition;
        if (curve is null)
        {
            Point s = ge.Source.Center;
            Point t = ge.Target.Center;
            sb.Append("M ").Append(P(s, x, y)).Append(" L ").Append(P(t, x, y));
            return;
        }

        sb.Append("M ").Append(P(curve.Start, x, y));
        if (curve is Curve c)
        {
            foreach (ICurve seg in c.Segments)
            {
                AppendSegment(sb, seg, x, y);
            }
        }
        else
        {
            AppendSegment(sb, curve, x, y);
        }

        // The curve stops where the arrowhead starts; the marker draws from there to the tip.
        if (tip is { } p)
        {
            sb.Append(" L ").Append(P(p, x, y));
        }
    }

    private static void AppendSegment(StringBuilder sb, ICurve seg, Func<double, double> x, Func<double, double> y)
    {
        switch (seg)
        {
            case LineSegment l:
                sb.Append(" L ").Append(P(l.End, x, y));
                break;
            case CubicBezierSegment b:
                sb.Append(" C ").Append(P(b.B(1), x, y)).Append(' ').Append(P(b.B(2), x, y)).Append(' ').Append(P(b.B(3), x, y));
                break;
            default:
                const int Steps = 8;
                for (int i = 1; i <= Steps; i++)
                {
                    double t = seg.ParStart + ((seg.ParEnd - seg.ParStart) * i / Steps);
                    sb.Append(" L ").Append(P(seg[t], x, y));
                }

                break;
        }
    }

    private static string P(Point p, Func<double, double> x, Func<double, double> y) => F(x(p.X)) + " " + F(y(p.Y));

    private static string F(double v) => Math.Round(v, 2).ToString("0.##", CultureInfo.InvariantCulture);

    // Text content and attribute values: the five XML specials, and no control characters.
    internal static string Xml(string s)
    {
        var sb = new StringBuilder(s.Length);
        foreach (char ch in s)
        {
            switch (ch)
            {
                case '&': sb.Append("&amp;"); break;
                case '<': sb.Append("&lt;"); break;
                case '>': sb.Append("&gt;"); break;
                case '"': sb.Append("&quot;"); break;
                case '\'': sb.Append("&apos;"); break;
                default:
                    sb.Append(ch < ' ' ? '?' : ch);
                    break;
            }
        }

        return sb.ToString();
    }
}
