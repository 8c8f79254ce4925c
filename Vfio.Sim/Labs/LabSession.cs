// What a grader runs a solution in: a fresh simulation booted for the lab, the student's
// process traced from its first syscall, and the checks collected as the grader makes them.

using Vfio.Kernel;
using Vfio.Platform.Proc;

namespace Vfio.Sim.Labs;

/// <summary>
/// A grading run: <see cref="Sim"/> booted from the lab's builder, <see cref="Process"/> (the
/// student's, under strace), and the checks so far. Graders call <see cref="RunSolution"/>,
/// then <see cref="Check"/> per outcome, then <see cref="Grade"/>.
/// </summary>
public sealed class LabSession
{
    private readonly List<LabCheck> _checks = [];

    /// <summary>Boots <paramref name="builder"/> and spawns the student's process <paramref name="comm"/>, traced.</summary>
    public LabSession(VfioSimBuilder builder, string comm = "student")
    {
        ArgumentNullException.ThrowIfNull(builder);
        Sim = builder.Build();
        Process = Sim.Spawn(comm);
        Sim.Strace.Start(Process);
    }

    /// <summary>The simulation.</summary>
    public VfioSim Sim { get; }

    /// <summary>The student's process.</summary>
    public SimProcess Process { get; }

    /// <summary>The checks so far.</summary>
    public IReadOnlyList<LabCheck> Checks => _checks;

    /// <summary>The syscalls the student's process made.</summary>
    public IReadOnlyList<SyscallRecord> Strace => [.. Sim.Strace.Records.Where(r => r.Pid == Process.Pid)];

    /// <summary>
    /// Runs <paramref name="body"/> (the solution's code) as a task of the student's process.
    /// Returns null when it finished and the kernel stayed quiet, else what went wrong in
    /// words a student can act on: the exception the solution threw (a
    /// <c>VfioException</c> names the ioctl, the errno and the kernel's reason), a kernel
    /// WARN or BUG, a deadlock or a task that never finished.
    /// </summary>
    public string? RunSolution(Action body)
    {
        ArgumentNullException.ThrowIfNull(body);
        RunResult r = Sim.Run("student", body);
        return r.Outcome switch
        {
            RunOutcome.Completed => null,
            RunOutcome.Failed => r.Exception is { } e ? $"the solution threw {e.GetType().Name}: {e.Message}" : r.Describe(),
            RunOutcome.Deadlock => "the solution never finished: every task waits and nothing will wake them (a deadlock)\n" + r.Report,
            RunOutcome.Liveness => "the solution never finished: a task is still waiting (did it close what the kernel waits for?)\n" + r.Report,
            _ => r.Describe(),
        };
    }

    /// <summary>Records a check: <paramref name="passed"/>, worth <paramref name="points"/>; <paramref name="message"/> teaches when it failed.</summary>
    public bool Check(string name, int points, bool passed, string message)
    {
        _checks.Add(new LabCheck(name, points, passed, message));
        return passed;
    }

    /// <summary>The grade of <paramref name="lab"/> from the checks made.</summary>
    public LabGrade Grade(Lab lab) => new(lab, [.. _checks], Strace);
}
