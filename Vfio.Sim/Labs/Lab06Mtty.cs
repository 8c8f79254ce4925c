// Lab 6 (the mdev story, seed 003): create an instance of the kernel's mtty sample through
// sysfs, open it through vfio, program its 16550A UART, send a line that the grader reads at
// the far end of a cable, receive the grader's reply on an interrupt (an MSI or INTx
// eventfd), close everything and remove the instance. The grader runs the solution in three
// phases — create, talk, remove — with the cable attached between the first two and a
// far-end task answering during the second, and judges what the kernel and the far end saw.

using System.Globalization;
using System.Text;
using Vfio.Kernel;
using Vfio.Mdev.Samples.Mtty;
using Vfio.Platform.Fs;
using Vfio.Platform.Proc;

namespace Vfio.Sim.Labs;

/// <summary>
/// A solution of lab 6: the three phases of using an mtty instance from user space. Each
/// runs in the student's process (<see cref="LabEnvironment.Process"/>); the instance's UUID
/// is <see cref="LabEnvironment.Device"/>.
/// </summary>
public abstract class MttySolution
{
    /// <summary>Creates the instance: writes <see cref="LabEnvironment.Device"/> to the <c>mtty-1</c> type's <c>create</c> file.</summary>
    public abstract void CreateInstance(LabEnvironment env);

    /// <summary>
    /// Opens the instance through vfio, programs port 0's UART, transmits <paramref name="line"/>
    /// followed by a newline, waits on an interrupt eventfd for the reply, closes every fd and
    /// returns the reply line without its newline.
    /// </summary>
    public abstract string Talk(LabEnvironment env, string line);

    /// <summary>Removes the instance: writes <c>1</c> to its <c>remove</c> file.</summary>
    public abstract void RemoveInstance(LabEnvironment env);
}

/// <summary>Lab 6: an mtty mediated device over its serial line.</summary>
public sealed class Lab06Mtty : Lab
{
    /// <summary>The UUID the student creates the instance with.</summary>
    public static readonly Guid InstanceUuid = new("6d747479-0003-4c61-8206-6c6162303036");

    /// <summary>The line the student transmits (a newline follows it on the wire).</summary>
    public const string Line = "hello from the guest";

    /// <summary>The type the student creates.</summary>
    public const string TypeDir = "/sys/class/mdev_bus/mtty/mdev_supported_types/mtty-1";

    private const int FarEndRounds = 4000;

    /// <inheritdoc/>
    public override int Number => 6;

    /// <inheritdoc/>
    public override string Slug => "mtty";

    /// <inheritdoc/>
    public override string Title => "mdev: an mtty over its serial line";

    /// <inheritdoc/>
    public override string Story => "seed 003: a mediated device end to end (mtty-demo)";

    /// <inheritdoc/>

    public override string Summary =>
        "Create a mediated device through sysfs, drive its UART through vfio with an interrupt eventfd, talk to the far end of its cable, and remove it cleanly.";

    /// <inheritdoc/>
    public override Type SolutionType => typeof(MttySolution);

    /// <inheritdoc/>
    public override object CreateReferenceSolution() => new LabCourse.Lab06MttySolution();

    /// <inheritdoc/>
    public override LabGrade Grade(object solution)
    {
        var s = solution as MttySolution
            ?? throw new ArgumentException($"lab 6 takes an {nameof(MttySolution)}, not {solution?.GetType().Name ?? "null"}", nameof(solution));
        var session = new LabSession(VfioSim.CreateBuilder().UseSeed(3).AddMtty());
        VfioSim sim = session.Sim;
        var env = new LabEnvironment(sim, session.Process, InstanceUuid.ToString("D"));
        int availableBefore = Available(sim);

        // Phase 1: create.
        string? createProblem = session.RunSolution(() => s.CreateInstance(env));
        bool created = Exists(sim);
        CheckCreate(session, created, createProblem);

        // Phase 2: talk, with the cable on port 0 and the grader at its far end.
        string reply = string.Format(CultureInfo.InvariantCulture, "ack {0:x4}", sim.Kernel.Random.NextU64() & 0xffff);
        var heard = new StringBuilder();
        string? got = null;
        string? talkProblem = "not reached: the instance was never created";
        int eventfdReads = 0;
        if (created)
        {
            MttyCable cable = sim.Mtty!.Attach(InstanceUuid, port: 0);
            SimProcess farProcess = sim.Spawn("far-end");
            int before = session.Strace.Count;
            talkProblem = session.RunSolution(() =>
            {
                farProcess.SpawnThread("far-end", () => FarEnd(cable, heard, reply));
                got = s.Talk(env, Line);
            });
            MttyModule.Detach(cable);
            eventfdReads = InterruptsTaken(session.Strace, before);
        }

        string wire = heard.ToString();
        session.Check("the far end got the line", 2, wire == Line + "\n",
            created
                ? $"the far end of the cable read {Quote(wire)}, not {Quote(Line + "\n")}: transmit each byte of the line and then '\\n' through THR (BAR0 offset 0) of port 0, " +
                  "with LCR set for 8N1 and the FIFO enabled (handout step 3)." + Problem(talkProblem)
                : "the instance was never created, so nothing could be sent (see the first check).");
        session.Check("the reply came back", 2, got == reply,
            created
                ? $"Talk returned {Quote(got)}; the far end answered {Quote(reply + "\n")} once it had the whole line. Read RBR while LSR shows data ready (bit 0) " +
                  "each time the interrupt fires, until the newline, and return the line without it (handout step 4)." + Problem(talkProblem)
                : "the instance was never created, so no reply could come.");
        session.Check("the reply was interrupt-driven", 2, eventfdReads > 0,
            created
                ? "no interrupt was taken: no successful VFIO_DEVICE_SET_IRQS with an eventfd followed by a poll() or read() of that eventfd that saw it fire. " +
                  "Polling LSR in a loop works on a real UART only by burning a CPU; the lab asks for the receive interrupt: set IER's receive-data bit (0x01), " +
                  "give vfio an eventfd for MSI (index 1) or INTx (index 0) with VFIO_DEVICE_SET_IRQS, and sleep in poll() on it (handout step 4)."
                : "the instance was never created, so no interrupt could be taken.");

        // Phase 3: remove.
        string? removeProblem = created ? session.RunSolution(() => s.RemoveInstance(env)) : "not reached";
        CheckRemove(session, created, removeProblem, availableBefore);
        return session.Grade(this);
    }

    private static void CheckCreate(LabSession session, bool created, string? problem)
    {
        if (created)
        {
            session.Check("the instance was created", 2, true, $"{InstanceUuid:D} exists under the mtty parent");
            return;
        }

        SyscallRecord? write = LastWriteTo(session.Strace, TypeDir + "/create");
        string why = write switch
        {
            null => $"no write to {TypeDir}/create was made: an mdev is created by writing its UUID to the type's create file (handout step 1).",
            { Error: Errno.EINVAL } => $"{write} — the create file takes exactly one UUID: 36 characters, 8-4-4-4-12 hex digits with hyphens at 8, 13, 18 and 23 " +
                                       "(either case, an optional trailing newline as echo writes); braces, a missing hyphen or the 32-digit form are EINVAL. " +
                                       $"Write {InstanceUuid:D} (Guid.ToString(\"D\")).",
            { Error: Errno.EEXIST } => $"{write} — an mdev with that UUID already exists.",
            _ => $"{write}: the create did not succeed.",
        };
        session.Check("the instance was created", 2, false, why + Problem(problem));
    }

    private void CheckRemove(LabSession session, bool created, string? problem, int availableBefore)
    {
        VfioSim sim = session.Sim;
        if (!created)
        {
            session.Check("the instance was removed", 1, false, "the instance was never created, so it could not be removed.");
            session.Check("nothing is left open", 1, false, "the lab did not get this far.");
            return;
        }

        List<(int Fd, string Path)> open = OpenFds(session.Process);
        bool gone = !Exists(sim);
        if (problem is not null && !gone)
        {
            string held = open.Count == 0 ? "" : $" Your process still had {string.Join(", ", open.Select(o => $"fd {o.Fd} ({o.Path})"))} open.";
            session.Check("the instance was removed", 1, false,
                "echo 1 > remove never returned: removing an mdev runs mtty's remove, which waits in vfio_unregister_group_dev until every fd of the vfio " +
                "device is closed, and mtty has no request callback to ask the user to let go, so the wait is silent and forever." + held +
                " Close the device, group and container fds (and the eventfd) at the end of Talk, before removing the instance (handout step 5).\n" + problem);
        }
        else
        {
            int available = gone ? Available(sim) : -1;
            session.Check("the instance was removed", 1, gone && available == availableBefore,
                gone
                    ? $"available_instances of mtty-1 is {available} after the removal, {availableBefore} before the create: the port was not given back."
                    : $"/sys/bus/mdev/devices/{InstanceUuid:D} still exists: write 1 to its remove file (handout step 5)." + Problem(problem));
        }

        IReadOnlyList<KernelWarning> warns = sim.UnexpectedWarnings;
        bool clean = open.Count == 0 && warns.Count == 0 && sim.PinnedPages == 0;
        session.Check("nothing is left open", 1, clean,
            open.Count > 0
                ? $"at the end your process still has {string.Join(", ", open.Select(o => $"fd {o.Fd} ({o.Path})"))} open: close every fd you opened."
                : warns.Count > 0
                    ? $"the kernel warned: {warns[0].Title}"
                    : $"{sim.PinnedPages} page(s) are still pinned.");
    }

    private static string Problem(string? problem) => problem is null ? "" : "\n" + problem;

    private static string Quote(string? s) => s is null ? "nothing" : "\"" + s.Replace("\n", "\\n", StringComparison.Ordinal) + "\"";

    private static bool Exists(VfioSim sim)
    {
        foreach (var d in sim.Mdev!.Devices)
        {
            if (d.Uuid == InstanceUuid)
            {
                return true;
            }
        }

        return false;
    }

    private static int Available(VfioSim sim)
        => int.Parse(sim.SysfsRead(TypeDir + "/available_instances"), CultureInfo.InvariantCulture);

    // The grader at the far end: collects what the guest transmits and answers once the line is whole.
    // It yields often (a student that spins on LSR still gets its reply) and sleeps a millisecond of
    // virtual time now and then (a student asleep in poll lets the clock move), and gives up after a while.
    private static void FarEnd(MttyCable cable, StringBuilder heard, string reply)
    {
        for (int i = 0; i < FarEndRounds; i++)
        {
            byte[] bytes = cable.ReadAvailable();
            heard.Append(Encoding.Latin1.GetString(bytes));
            if (heard.Length > 0 && heard[^1] == '\n')
            {
                cable.Send(Encoding.ASCII.GetBytes(reply + "\n"));
                return;
            }

            if (i % 8 == 7)
            {
                KTask.Msleep(1);
            }
            else
            {
                KTask.Schedule();
            }
        }
    }

    // Interrupts the solution saw: reads of 8 bytes, or polls that returned ready, on an fd
    // that eventfd2 gave it, after it registered an eventfd with SET_IRQS.
    private static int InterruptsTaken(IReadOnlyList<SyscallRecord> strace, int from)
    {
        var eventfds = new HashSet<int>();
        bool registered = false;
        int taken = 0;
        for (int i = from; i < strace.Count; i++)
        {
            SyscallRecord r = strace[i];
            switch (r.Syscall)
            {
                case "eventfd2" when r.Return >= 0:
                    eventfds.Add((int)r.Return);
                    break;
                case "close":
                    eventfds.Remove(r.Fd);
                    break;
                case "ioctl" when r.Request == "VFIO_DEVICE_SET_IRQS" && r.Return == 0 && eventfds.Count > 0:
                    registered = true;
                    break;
                case "read" when registered && r.Return == 8 && eventfds.Contains(r.Fd):
                    taken++;
                    break;
                case "poll" when registered && r.Return > 0 && ContainsAnyFd(r.Arguments, eventfds):
                    taken++;
                    break;
            }
        }

        return taken;
    }

    private static bool ContainsAnyFd(string pollArguments, HashSet<int> fds)
    {
        foreach (int fd in fds)
        {
            if (pollArguments.Contains($"fd={fd.ToString(CultureInfo.InvariantCulture)},", StringComparison.Ordinal))
            {
                return true;
            }
        }

        return false;
    }

    // The last write(2) on an fd opened from path, following openat/close through the trace.
    private static SyscallRecord? LastWriteTo(IReadOnlyList<SyscallRecord> strace, string path)
    {
        var fds = new HashSet<int>();
        SyscallRecord? last = null;
        foreach (SyscallRecord r in strace)
        {
            if (r.Syscall == "openat" && r.Return >= 0 && r.Arguments.Contains("\"" + path + "\"", StringComparison.Ordinal))
            {
                fds.Add((int)r.Return);
            }
            else if (r.Syscall == "close")
            {
                fds.Remove(r.Fd);
            }
            else if (r.Syscall == "write" && fds.Contains(r.Fd))
            {
                last = r;
            }
        }

        return last;
    }

    private static List<(int Fd, string Path)> OpenFds(SimProcess p)
    {
        var list = new List<(int Fd, string Path)>();
        foreach ((int fd, SimFile file) in p.Files.Open)
        {
            list.Add((fd, file.Path));
        }

        return list;
    }

}
