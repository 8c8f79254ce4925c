// A shell on a booted simulation: the commands a student types on a real machine to look
// around /sys and /dev (ls, cat, echo > for sysfs writes, readlink, tree, lspci, dmesg,
// ps, lsof) and the VFIO ioctls by their uapi names, run as one shell process whose
// syscalls strace sees. Errors print as the kernel returned them, with the reason.

namespace Vfio.Sim.Shell;

/// <summary>
/// A shell process on <see cref="Sim"/>. <see cref="Execute"/> runs one line
/// (<c>cmd; cmd</c>), writing what the commands print.
/// </summary>
public sealed class SimShell
{
    /// <summary>A shell on <paramref name="sim"/>, as a new root process named <c>sh</c>.</summary>
    public SimShell(VfioSim sim)
    {
        ArgumentNullException.ThrowIfNull(sim);
        Sim = sim;
        throw new NotImplementedException();
    }

    /// <summary>The simulation.</summary>
    public VfioSim Sim { get; }

    /// <summary>The shell's process: every fd it opens and syscall it makes are its.</summary>
    public Vfio.Platform.Proc.SimProcess Process { get; } = null!;

    /// <summary>The commands the shell knows, sorted.</summary>
    public IReadOnlyList<string> Commands => throw new NotImplementedException();

    /// <summary>
    /// Runs <paramref name="line"/> (commands separated by <c>;</c> or new lines, <c>#</c>
    /// comments), writing their output to <paramref name="output"/>. Returns the exit status
    /// of the last command: 0 for success, 1 for a failed command (the error printed as
    /// <c>cmd: reason — EPERM (Operation not permitted)</c>), 2 for a usage error.
    /// </summary>
    public int Execute(string line, TextWriter output) => throw new NotImplementedException();

    /// <summary>Runs a script (a file's text): every line, in order, as <see cref="Execute"/>.</summary>
    public int ExecuteScript(string script, TextWriter output) => throw new NotImplementedException();

    /// <summary>Completions for the word at <paramref name="cursor"/> of <paramref name="line"/>: command names, then paths.</summary>
    public IReadOnlyList<string> Complete(string line, int cursor) => throw new NotImplementedException();
}
