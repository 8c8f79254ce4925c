// Lab 4: the unbind wait and a cooperative REQ handler (vfio_unregister_group_dev in
// drivers/vfio/vfio_main.c and vfio_pci_core_request in drivers/vfio/pci/vfio_pci_core.c,
// v6.12). The student's process holds edu open with a DMA mapping and an eventfd on
// VFIO_PCI_REQ_IRQ_INDEX; an administrator's process unbinds edu from vfio-pci. The unbind
// cannot finish while a device fd is open: it signals the REQ eventfd, then waits in 10 s
// slices, asking again at each. A cooperative user closes its fds when asked and the unbind
// completes within the first slice. The grader waits up to Deadline of virtual time; a
// solution that has not let go by then is killed (as an administrator would kill -9 it) so
// that the unbind can finish, and the grade says what was still open.

using System.Globalization;
using Vfio.Kernel;
using Vfio.Platform.Proc;

namespace Vfio.Sim.Labs;

/// <summary>
/// Lab 4's solution: a user of edu that gives the device back when the kernel asks.
/// <see cref="Start"/> runs as the student's process; edu (<see cref="LabEnvironment.Device"/>)
/// is bound to vfio-pci already.
/// </summary>
public abstract class UnbindRequestSolution
{
    /// <summary>
    /// Opens edu, maps a buffer for DMA, registers an eventfd on <c>VFIO_PCI_REQ_IRQ_INDEX</c>
    /// and starts a thread (<see cref="SimProcess.SpawnThread"/>) that waits on it and releases
    /// the device when it fires. Returns once set up; the grader then unbinds edu from another
    /// process.
    /// </summary>
    public abstract void Start(LabEnvironment env);
}

/// <summary>Lab 4: the unbind wait and a cooperative REQ handler.</summary>
internal sealed class Lab04UnbindRequest : Lab
{
    /// <summary>edu on the default machine.</summary>
    internal const string Edu = "0000:01:00.0";

    /// <summary>How long the grader lets the unbind wait before it kills the student's process.</summary>
    internal static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);

    /// <summary>The slice vfio_unregister_group_dev waits between two requests (10 * HZ).</summary>
    internal static readonly TimeSpan RequestInterval = TimeSpan.FromSeconds(10);

    /// <inheritdoc/>
    public override int Number => 4;

    /// <inheritdoc/>
    public override string Slug => "unbind-request";

    /// <inheritdoc/>
    public override string Title => "The unbind wait and a cooperative REQ handler";

    /// <inheritdoc/>
    public override string Story => "seed 000: the unbind wait and its REQ (unbind-group-lifetime, unbind-request), seed 0";

    /// <inheritdoc/>

    public override string Summary => "Hold edu open while an administrator unbinds it: the kernel waits for your device fd and asks for it through the REQ eventfd; give it back so the unbind completes.";

    /// <inheritdoc/>
    public override Type SolutionType => typeof(UnbindRequestSolution);

    /// <inheritdoc/>
    public override object CreateReferenceSolution() => new LabCourse.UnbindRequestUser();

    /// <summary>The machine: the default one (seed 0, the "seed 000" story), vfio-pci loaded, edu bound to it.</summary>
    internal static VfioSimBuilder Builder()
        => VfioSim.CreateBuilder().UseSeed(0).AddVfioPci().AddModule(sim => sim.Bind(Edu));

    /// <inheritdoc/>
    public override LabGrade Grade(object solution)
    {
        if (solution is not UnbindRequestSolution user)
        {
            throw new ArgumentException($"lab 4 grades an {nameof(UnbindRequestSolution)}, not {solution?.GetType().Name ?? "null"}", nameof(solution));
        }

        var session = new LabSession(Builder());
        VfioSim sim = session.Sim;
        SimProcess p = session.Process;
        var env = new LabEnvironment(sim, p, Edu);
        int groupId = sim.GroupOf(Edu);
        long pinned0 = sim.PinnedPages;
        var o = new Observed();

        string? failure = session.RunSolution(() =>
        {
            user.Start(env);
            Vfio.Core.VfioDevice? device = sim.Vfio.Groups.FirstOrDefault(g => g.Id == groupId)?.Devices.FirstOrDefault();
            o.DeviceFdsAtUnbind = device is null ? 0 : device.RegistrationCount - 1;
            o.PinnedAtUnbind = sim.PinnedPages - pinned0;

            SimProcess admin = sim.Spawn("admin");
            long start = sim.Kernel.Clock.NowNs;
            o.StartNs = start;
            KTask unbinder = admin.SpawnThread("unbind", () =>
            {
                sim.Unbind(Edu, admin);
                o.FinishNs = sim.Kernel.Clock.NowNs;
            });
            long deadline = start + (long)Deadline.TotalNanoseconds;
            while (!unbinder.HasExited && sim.Kernel.Clock.NowNs < deadline)
            {
                KTask.Msleep(250);
            }

            if (!unbinder.HasExited)
            {
                o.FdsAtDeadline = LabEvidence.OpenVfioFds(p);
                o.DeviceFdsAtDeadline = LabEvidence.OpenFds(p, LabFdKind.Device).Count;
                o.Killed = true;
                p.Exit(137);
            }

            unbinder.Join();

            // Give the student's threads a moment to finish what they do after the device is gone.
            for (int i = 0; i < 20 && !AllExited(p); i++)
            {
                KTask.Msleep(50);
            }

            o.FdsAfter = LabEvidence.OpenVfioFds(p);
            o.PinnedAfter = sim.PinnedPages - pinned0;
            if (!AllExited(p))
            {
                p.Exit(137); // A thread still waiting after the device is gone: end it, it has nothing left to do.
            }
        });

        string dmesg = sim.Dmesg();
        bool noChannel = dmesg.Contains("No device request channel registered", StringComparison.Ordinal);
        int relayed = CountOccurrences(dmesg, "Relaying device request to user (#0)");

        bool setUp = o.DeviceFdsAtUnbind > 0 && o.PinnedAtUnbind > 0;
        session.Check("edu held open with a DMA mapping", 10, setUp,
            setUp
                ? string.Create(CultureInfo.InvariantCulture, $"when the unbind started: {o.DeviceFdsAtUnbind} device fd(s) open, {o.PinnedAtUnbind} page(s) pinned")
                : o.DeviceFdsAtUnbind == 0
                    ? $"no device fd was open when the grader unbound edu{(failure is null ? "" : $" ({failure})")}: the lab is about a user who holds the device. Open it (VfioSim.Open) and map a buffer before Start returns."
                    : "nothing was pinned when the unbind started: map a buffer with VFIO_IOMMU_MAP_DMA so that there is something to give back.");

        session.Check("a REQ eventfd is registered", 15, !noChannel && relayed > 0,
            !noChannel && relayed > 0
                ? "vfio-pci relayed the request to your eventfd (dmesg: \"Relaying device request to user (#0)\")"
                : noChannel
                    ? "dmesg says \"vfio-pci 0000:01:00.0: No device request channel registered, blocked until released by user\": vfio-pci had no way to ask you. Give VFIO_PCI_REQ_IRQ_INDEX (4) an eventfd with VFIO_DEVICE_SET_IRQS (ACTION_TRIGGER | DATA_EVENTFD, start 0, count 1) while you hold the device."
                    : "vfio-pci never relayed a request: the unbind did not have to wait (was the device open?).");

        // With nothing held there was nothing to wait for and nothing to release: the checks
        // below only mean something once the device was held.
        const string NotHeld = "not graded: your process held no device when the unbind started (see the first check)";
        if (!setUp)
        {
            session.Check("the unbind completes once asked", 35, false, NotHeld);
            session.Check("edu unbound, its group gone", 10, false, NotHeld);
            session.Check("the process released everything itself", 20, false, NotHeld);
            int quiet = sim.UnexpectedWarnings.Count;
            session.Check("the kernel stayed quiet", 10, quiet == 0, quiet == 0 ? "no WARN" : $"the kernel reported {quiet} WARN(s): {sim.UnexpectedWarnings[0]}");
            return session.Grade(this);
        }

        CheckUnbind(session, o, failure, noChannel);

        bool gone = sim.DriverOf(Edu) is null && !sim.Machine.Vfs.Exists($"/dev/vfio/{groupId}");
        session.Check("edu unbound, its group gone", 10, gone,
            gone ? $"edu has no driver and /dev/vfio/{groupId} is gone" : $"after the unbind edu is bound to {sim.DriverOf(Edu) ?? "no driver"} and /dev/vfio/{groupId} {(sim.Machine.Vfs.Exists($"/dev/vfio/{groupId}") ? "still exists" : "is gone")}");

        bool clean = !o.Killed && o.FdsAfter.Count == 0 && o.PinnedAfter == 0;
        session.Check("the process released everything itself", 20, clean,
            clean
                ? "after the unbind: no vfio fd open, nothing pinned"
                : o.Killed
                    ? "the grader had to kill your process to end the unbind, so what it held was released by exit(), not by your handler"
                    : string.Create(CultureInfo.InvariantCulture, $"after the unbind: {(o.FdsAfter.Count == 0 ? "no vfio fd open" : "still open: " + string.Join(", ", o.FdsAfter))}; {o.PinnedAfter} page(s) pinned. ") +
                      (o.FdsAfter.Count > 0 ? "The unbind only waited for the device fd, but a group fd whose device is gone is useless (its ioctls answer ENODEV) and the container keeps its type1 instance: when asked for the device, release everything you opened for it — unmap, close the device, the group and the container." : "Unmap what you mapped (VFIO_IOMMU_UNMAP_DMA) when you release the device."));

        int warnings = sim.UnexpectedWarnings.Count;
        session.Check("the kernel stayed quiet", 10, warnings == 0,
            warnings == 0 ? "no WARN" : $"the kernel reported {warnings} WARN(s): {sim.UnexpectedWarnings[0]}");
        return session.Grade(this);
    }

    private static void CheckUnbind(LabSession session, Observed o, string? failure, bool noChannel)
    {
        const string name = "the unbind completes once asked";
        if (o.Killed)
        {
            int requests = (int)(Deadline / RequestInterval);
            string held = o.FdsAtDeadline.Count == 0 ? "nothing vfio" : string.Join(", ", o.FdsAtDeadline);
            string askedText = noChannel
                ? "you registered no REQ eventfd, so vfio-pci had no way to ask you (dmesg: \"No device request channel registered\")"
                : string.Create(CultureInfo.InvariantCulture, $"it signalled your REQ eventfd {requests} times (requests #0 to #{requests - 1}; dmesg prints only every tenth, so you see \"#0\" once)");
            string what = noChannel
                ? "Register an eventfd on VFIO_PCI_REQ_IRQ_INDEX and release the device when it fires."
                : o.DeviceFdsAtDeadline == 0
                ? "No device fd was open, yet the unbind waited: another reference to the device is still held (a dup'd or passed-on device fd?)."
                : o.FdsAtDeadline.Any(f => f.Contains("the group", StringComparison.Ordinal))
                    ? o.FdsAtDeadline.Any(f => f.Contains("the container", StringComparison.Ordinal))
                        ? "Your process did not react to the request at all: read() the REQ eventfd in a thread of your process and release the device when it fires."
                        : "You closed the container but not the device fd: the unbind waits for device fds only (each holds a registration reference on the vfio_device), and the device fd keeps the group and its container alive anyway."
                    : "You closed the group fd but not the device fd: a device fd holds a reference on the group's file, so closing the group fd released nothing; the unbind waits for the device fd itself.";
            session.Check(name, 35, false,
                string.Create(CultureInfo.InvariantCulture, $"after {Deadline.TotalSeconds} s of virtual time the unbind was still waiting. vfio_unregister_group_dev() waits until every device fd is closed, and asks again every {RequestInterval.TotalSeconds} s: {askedText}. Still open at the deadline: {held}. {what} The grader killed your process so the unbind could finish.{(failure is null ? "" : "\n" + failure)}"));
            return;
        }

        long took = o.FinishNs - o.StartNs;
        bool inFirst = took < (long)RequestInterval.TotalNanoseconds;
        int asked = 1 + (int)(took / (long)RequestInterval.TotalNanoseconds);
        session.Check(name, 35, inFirst,
            inFirst
                ? $"the unbind completed after {LabEvidence.Seconds(took)} of virtual time, on the first request"
                : string.Create(CultureInfo.InvariantCulture, $"the unbind took {LabEvidence.Seconds(took)} of virtual time: the kernel asked {asked} times (once every {RequestInterval.TotalSeconds} s) before your process let go. Release the device as soon as the REQ eventfd fires."));
    }

    private static bool AllExited(SimProcess p) => p.HasExited || p.Threads.All(t => t.HasExited);

    private static int CountOccurrences(string text, string what)
    {
        int n = 0;
        for (int i = text.IndexOf(what, StringComparison.Ordinal); i >= 0; i = text.IndexOf(what, i + what.Length, StringComparison.Ordinal))
        {
            n++;
        }

        return n;
    }

    // What the grader saw, written by the run's tasks and read after it.
    private sealed class Observed
    {
        public int DeviceFdsAtUnbind;
        public long PinnedAtUnbind;
        public long StartNs;
        public long FinishNs;
        public bool Killed;
        public List<string> FdsAtDeadline = [];
        public int DeviceFdsAtDeadline;
        public List<string> FdsAfter = [];
        public long PinnedAfter;
    }
}

