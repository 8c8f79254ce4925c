// The vfio-sim command. Subcommands arrive with the layers they drive; today: demo.

using System.CommandLine;

namespace Vfio.Cli;

internal static class Program
{
    private static int Main(string[] args)
    {
        var root = new RootCommand("vfio-sim: an in-process simulator of the Linux VFIO subsystem");
        root.Subcommands.Add(DemoCommand.Create());
        return root.Parse(args).Invoke();
    }
}
