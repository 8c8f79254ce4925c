// `--strace` and `--strace-reasons` on `demo` and `scenario run`: the simulated processes'
// syscalls after the run, in strace -f -tt's format with virtual time since boot.

using System.CommandLine;
using Spectre.Console;
using Vfio.Platform.Proc;

namespace Vfio.Cli;

internal static class StraceOutput
{
    public static Option<bool> Option() => new("--strace")
    {
        Description = "Print every syscall of the simulated processes after the run, as `strace -f -tt` would (virtual time since boot)",
    };

    public static Option<bool> ReasonsOption() => new("--strace-reasons")
    {
        Description = "As --strace, and end each failed syscall's line with the kernel's reason as a /* comment */",
    };

    /// <summary>A heading, then one line per syscall, written as plain text (no markup, no wrapping when redirected).</summary>
    public static void Print(IAnsiConsole console, SyscallTracer strace, bool reasons)
    {
        IReadOnlyList<SyscallRecord> records = strace.Records;
        console.WriteLine();
        console.MarkupLine($"[bold]strace[/] of the simulated processes ({records.Count} syscalls; time is virtual time since boot)");
        string text = SyscallTracer.Format(records, new StraceFormat { Reasons = reasons });
        foreach (string line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            console.Profile.Out.Writer.WriteLine(line);
        }
    }
}
