// Tab completion: command names for a command's first word, then what each argument takes —
// uapi names (extensions, IRQ and region indexes), the shell's open fds and buffers, and
// paths looked up in the VFS (a directory completes with a trailing slash).

using System.Globalization;

namespace Vfio.Sim.Shell;

public sealed partial class SimShell
{
    /// <summary>Completions for the word at <paramref name="cursor"/> of <paramref name="line"/>: command names, then paths.</summary>
    public IReadOnlyList<string> Complete(string line, int cursor)
    {
        ArgumentNullException.ThrowIfNull(line);
        cursor = Math.Clamp(cursor, 0, line.Length);

        // The word under the cursor starts after the last blank or separator before it.
        int start = cursor;
        while (start > 0 && line[start - 1] is not (' ' or '\t' or ';' or '&' or '|' or '>'))
        {
            start--;
        }

        string prefix = line[start..cursor];
        int commandStart = start;
        while (commandStart > 0 && line[commandStart - 1] is not (';' or '&' or '|' or '\n'))
        {
            commandStart--;
        }

        bool afterRedirect = start > 0 && line[..start].TrimEnd().EndsWith('>');
        string[] before = line[commandStart..start].Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries);
        if (before.Length == 0 && !afterRedirect)
        {
            return [.. Commands.Where(c => c.StartsWith(prefix, StringComparison.Ordinal))];
        }

        var candidates = new List<string>();
        if (!afterRedirect)
        {
            candidates.AddRange(ArgumentWords(before[0], before.Length - 1, prefix));
        }

        if (candidates.Count == 0 || prefix.StartsWith('/') || prefix.StartsWith('.'))
        {
            candidates.AddRange(Paths(prefix));
        }

        return [.. candidates.Distinct(StringComparer.Ordinal).Where(c => c.StartsWith(prefix, StringComparison.Ordinal)).Order(StringComparer.Ordinal)];
    }

    // What argument number <paramref name="position"/> (0-based) of <paramref name="command"/> takes.
    private IEnumerable<string> ArgumentWords(string command, int position, string prefix)
    {
        IEnumerable<string> fds = Process.HasExited ? [] : Process.Files.Open.Select(f => f.Fd.ToString(CultureInfo.InvariantCulture));
        switch (command)
        {
            case "VFIO_CHECK_EXTENSION" or "VFIO_SET_IOMMU" when position == 1:
                return Extensions.Select(e => e.Name);
            case "VFIO_DEVICE_GET_IRQ_INFO" or "VFIO_DEVICE_SET_IRQS" when position == 1:
                return IrqNames;
            case "VFIO_DEVICE_GET_REGION_INFO" when position == 1:
                return RegionNames;
            case "VFIO_DEVICE_SET_IRQS" when position == 4:
                return ["eventfd=", "trigger", "mask", "unmask", "disable"];
            case "VFIO_IOMMU_MAP_DMA" when position == 1:
                return _buffers.Keys;
            case "VFIO_IOMMU_MAP_DMA" when position >= 2:
                return ["iova=", "size=", "r", "w", "rw"];
            case "VFIO_IOMMU_UNMAP_DMA" when position >= 1:
                return ["iova=", "size=", "all"];
            case "VFIO_GROUP_GET_DEVICE_FD" when position == 1:
                return AllFunctions().Select(d => d.Name);
            case "region" when position == 0:
                return ["read", "write"];
            case "region" when position == 1:
                return fds;
            case "region" when position == 2:
                return RegionNames;
            case "munmap":
                return _buffers.Keys;
            case "strace":
                return ["on", "off"];
            case "graph" when position == 0:
                return ["tree", "dot", "svg"];
            case "help":
                return Commands;
            case "close" or "read":
                return fds;
            case "lspci":
                return ["-k", "-n", "-nn", "-s", "-t", "-tv", "-D"];
            case "open" when position == 1:
                return ["ro", "wo", "rw"];
            case var c when c.StartsWith("VFIO_", StringComparison.Ordinal) && (position == 0 || (c == "VFIO_GROUP_SET_CONTAINER" && position == 1)):
                return fds;
            default:
                return [];
        }
    }

    // Paths under the directory part of <paramref name="prefix"/>, as the user typed them.
    private IEnumerable<string> Paths(string prefix)
    {
        int slash = prefix.LastIndexOf('/');
        string dirPart = slash < 0 ? "" : prefix[..(slash + 1)];
        string namePart = slash < 0 ? prefix : prefix[(slash + 1)..];
        string dir = FullPath(dirPart.Length == 0 ? "." : dirPart);
        IReadOnlyList<string>? names = Sim.Machine.Vfs.List(dir);
        if (names is null)
        {
            yield break;
        }

        foreach (string name in names)
        {
            if (!name.StartsWith(namePart, StringComparison.Ordinal))
            {
                continue;
            }

            string full = dir == "/" ? "/" + name : dir + "/" + name;
            bool isDir = Sim.Machine.Vfs.List(full) is not null;
            yield return dirPart + name + (isDir ? "/" : "");
        }
    }
}
