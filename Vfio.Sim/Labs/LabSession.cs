// What a grader runs a solution in: a fresh simulation booted for the lab, the student's
// process traced from its first syscall, and the checks collected as the grader makes them.
//
// Life cycle: the constructor boots the machine and spawns the student's process under
// strace; the grader alternates RunSolution (the student's code, as a task of that process)
// and RunGrader (the grader's own code: the device side, the wait for a transfer); then
// ExitStudent ends the process as exit_group() would — mm first, then every fd — so what
// the solution leaked shows: fds it left open, pins a dead process still holds, WARNs on
// the release paths. Grade exits the process if the grader has not, and collects the checks.
// A solution's failure (an exception, a WARN, a hang) never escapes: RunSolution turns it
// into a message a student can act on.

using System.Globalization;
using System.Text;
using Vfio.Core.Client;
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
    private const int StraceLinesShown = 4;

    private readonly List<LabCheck> _checks = [];
    private IReadOnlyList<string>? _openAtExit;

    /// <summary>Boots <paramref name="builder"/> and spawns the student's process <paramref name="comm"/>, traced.</summary>
    public LabSession(VfioSimBuilder builder, string comm = "student")
    {
        ArgumentNullException.ThrowIfNull(builder);
        Sim = builder.Build();
        PinnedAtStart = Sim.PinnedPages;
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

    /// <summary>Pages pinned when the session started, before the student's code ran.</summary>
    public long PinnedAtStart { get; }

    /// <summary>Pages pinned now beyond <see cref="PinnedAtStart"/>: what the student's mappings hold.</summary>
    public long PinnedByStudent => Sim.PinnedPages - PinnedAtStart;

    /// <summary>True once <see cref="ExitStudent"/> has ended the student's process.</summary>
    public bool StudentExited => _openAtExit is not null;

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
        if (StudentExited)
        {
            throw new InvalidOperationException("the student's process has exited: run the solution's steps before ExitStudent or Grade");
        }

        RunResult r = Sim.Run("student", body);
        return r.Outcome switch
        {
            RunOutcome.Completed => null,
            RunOutcome.Failed when r.Exception is VfioException ve => DescribeRefusal(ve),
            RunOutcome.Failed when r.Exception is { } e => DescribeException(e),
            RunOutcome.UnexpectedWarning => DescribeWarnings("the solution's calls made the kernel print a warning", r.Warnings),
            RunOutcome.Panic => "the kernel panicked (BUG) while the solution ran: a kernel bug your calls reached; this is not your fault, but report it with the strace below\n"
                + r.Report + StraceTail(),
            RunOutcome.Deadlock => "the solution never finished: every task sleeps and nothing will wake it (a deadlock). "
                + "Who waits for what:\n" + r.Report + StraceTail(),
            RunOutcome.Liveness => "the solution never finished: a task still waits or spins after the step budget ran out. "
                + "The device and the timers run on virtual time, which moves only while every task sleeps: wait for the device in poll() or msleep, never in a busy loop; "
                + "and a wait that needs another fd closed never ends while your process holds it\n" + r.Report + StraceTail(),
            _ => r.Describe(),
        };
    }

    /// <summary>
    /// Runs <paramref name="body"/>, the grader's own code (the device side: programming a
    /// transfer and waiting for it), as the task <c>grader</c>. Returns null when it finished,
    /// else a description of what went wrong (the run's outcome and report).
    /// </summary>
    public string? RunGrader(Action body)
    {
        ArgumentNullException.ThrowIfNull(body);
        RunResult r = Sim.Run("grader", body);
        return r.Passed ? null : "the grader's own step failed after the solution's code: " + r.Describe();
    }

    /// <summary>
    /// Ends the student's process as <c>exit_group()</c> does (its address space, then every
    /// fd) and returns the fds that were still open, as <c>"fd 3 (/dev/vfio/vfio)"</c>: what
    /// the solution did not close. A second call returns the first call's list.
    /// </summary>
    public IReadOnlyList<string> ExitStudent()
    {
        if (_openAtExit is not null)
        {
            return _openAtExit;
        }

        var open = new List<string>();
        foreach ((int fd, Vfio.Platform.Fs.SimFile file) in Process.Files.Open)
        {
            open.Add(string.Create(CultureInfo.InvariantCulture, $"fd {fd} ({file.Path})"));
        }

        _openAtExit = open;
        if (!Process.HasExited)
        {
            RunResult r = Sim.Run("exit", () => Process.Exit());
            if (!r.Passed)
            {
                _checks.Add(new LabCheck("the process exits cleanly", 0, false,
                    "when the student's process exited, the kernel's release paths did not finish cleanly: " + r.Describe()));
            }
        }

        return _openAtExit;
    }

    /// <summary>Records a check: <paramref name="passed"/>, worth <paramref name="points"/>; <paramref name="message"/> teaches when it failed.</summary>
    public bool Check(string name, int points, bool passed, string message)
    {
        _checks.Add(new LabCheck(name, points, passed, message));
        return passed;
    }

    /// <summary>Records a check that could not be made because an earlier step failed: it fails and says why.</summary>
    public bool Skip(string name, int points, string why) => Check(name, points, false, $"not checked: {why}");

    /// <summary>
    /// Records the check that the kernel printed no WARN, BUG or lockdep report no one
    /// expected; a failure lists them.
    /// </summary>
    public bool CheckQuiet(int points, string name = "the kernel printed no warning")
    {
        IReadOnlyList<KernelWarning> w = Sim.UnexpectedWarnings;
        return Check(name, points, w.Count == 0, w.Count == 0
            ? "dmesg has no WARN, BUG or lockdep report"
            : DescribeWarnings("the kernel printed a warning", w));
    }

    /// <summary>The student's syscalls whose ioctl request (or, for other syscalls, syscall name) is <paramref name="requestOrSyscall"/>, in order.</summary>
    public IReadOnlyList<SyscallRecord> Calls(string requestOrSyscall)
    {
        ArgumentException.ThrowIfNullOrEmpty(requestOrSyscall);
        var found = new List<SyscallRecord>();
        foreach (SyscallRecord r in Sim.Strace.Records)
        {
            if (r.Pid == Process.Pid && (r.Request == requestOrSyscall || (r.Request is null && r.Syscall == requestOrSyscall)))
            {
                found.Add(r);
            }
        }

        return found;
    }

    /// <summary>The grade of <paramref name="lab"/> from the checks made; ends the student's process first if it still runs.</summary>
    public LabGrade Grade(Lab lab)
    {
        ExitStudent();
        return new(lab, [.. _checks], Strace);
    }

    // ---- Messages.

    private string DescribeRefusal(VfioException e)
    {
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"the kernel refused {e.Ioctl} with {e.Errno.Name()} ({e.Errno.Message()})");
        sb.Append(e.Reason is null ? "" : $": {e.Reason}");
        sb.Append(CultureInfo.InvariantCulture, $"\nThe typed client threw a VfioException for it and your code did not expect it. The reason says which of the kernel's rules the call broke; the strace shows the arguments you passed.");
        return sb.Append(StraceTail()).ToString();
    }

    private string DescribeException(Exception e)
    {
        string where = e.StackTrace?.Split('\n', 2)[0].Trim() ?? "";
        string inner = e is System.Reflection.TargetInvocationException { InnerException: { } ie } ? $" ({ie.GetType().Name}: {ie.Message})" : "";
        return $"the solution threw {e.GetType().Name}: {e.Message}{inner}" + (where.Length > 0 ? $"\n{where}" : "") + StraceTail();
    }

    private string DescribeWarnings(string what, IReadOnlyList<KernelWarning> warnings)
    {
        var sb = new StringBuilder(what).Append(':');
        foreach (KernelWarning w in warnings.Take(3))
        {
            sb.Append("\n  ").Append(w.ToString().Split('\n', 2)[0]);
        }

        sb.Append("\nA WARN means the kernel reached a state it considers a bug; the calls just before it (below) are where to look.");
        return sb.Append(StraceTail()).ToString();
    }

    // The last few syscalls of the student's process, as strace prints them.
    private string StraceTail()
    {
        IReadOnlyList<SyscallRecord> all = Strace;
        if (all.Count == 0)
        {
            return "\n(the process made no syscall)";
        }

        var sb = new StringBuilder("\nthe process's last syscalls:");
        for (int i = Math.Max(0, all.Count - StraceLinesShown); i < all.Count; i++)
        {
            sb.Append("\n  ").Append(all[i].ToString());
        }

        return sb.ToString();
    }
}
