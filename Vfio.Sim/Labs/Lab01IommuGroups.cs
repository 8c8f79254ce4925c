// Lab 1: IOMMU groups and viability, in the shell (drivers/vfio/group.c and
// drivers/iommu/iommu.c, v6.12: a group is viable for user space only when no function in
// it is driven by a kernel driver that does DMA). The student's solution is a shell script
// run in a SimShell as the traced student process on the default machine (seed 1); the
// grader checks what the machine and the kernel's replies show afterwards.

using Vfio.Core.Uapi;
using Vfio.Platform.Base;
using Vfio.Kernel;
using Vfio.Platform.Pci;
using Vfio.Platform.Proc;
using Vfio.Sim.Shell;

namespace Vfio.Sim.Labs;

/// <summary>
/// Lab 1: hand the second port of the dual-port NIC, <c>0000:02:00.1</c>, to user space.
/// Its IOMMU group also holds port 0; igb drives both at boot. The script must find the group,
/// see it is not viable, bind every function of it to vfio-pci, see VIABLE, and close what it opened.
/// </summary>
public sealed class Lab01IommuGroups : Lab
{
    /// <summary>The function the student is asked to hand to user space.</summary>
    internal const string Target = "0000:02:00.1";

    /// <summary>The seed every grading run uses.</summary>
    internal const ulong Seed = 1;

    /// <inheritdoc/>
    public override int Number => 1;

    /// <inheritdoc/>
    public override string Slug => "iommu-groups";

    /// <inheritdoc/>
    public override string Title => "IOMMU groups and viability, in the shell";

    /// <inheritdoc/>
    public override string Story => "the default machine: igb's two ports share IOMMU group 4, seed 1";

    /// <inheritdoc/>

    public override string Summary => "Why vfio hands out whole IOMMU groups: find a device's group, see it is not viable while a kernel driver holds another function, and bind the whole group to vfio-pci.";

    /// <inheritdoc/>
    public override Type SolutionType => typeof(ShellScript);

    /// <inheritdoc/>
    public override object CreateReferenceSolution() => new ShellScript(ReferenceScript);

    /// <inheritdoc/>
    public override LabGrade Grade(object solution)
    {
        if (solution is not ShellScript script)
        {
            throw new ArgumentException($"lab 1's solution is a {nameof(ShellScript)}, not {solution?.GetType().Name ?? "null"}", nameof(solution));
        }

        var session = new LabSession(VfioSim.CreateBuilder().UseSeed(Seed).AddVfioPci(), "sh");
        var shell = new SimShell(session.Sim, session.Process);
        var output = new StringWriter();
        shell.ExecuteScript(script.Text, output);

        VfioSim sim = session.Sim;
        IReadOnlyList<SyscallRecord> strace = session.Strace;
        PciDevice target = sim.Machine.PciRootBus.AllDevicesBelow().First(d => d.Name == Target);
        int group = target.IommuGroup!.Id;
        IReadOnlyList<SimDevice> members = target.IommuGroup.Devices;

        // 1. Every function of the group is bound to vfio-pci.
        string[] notBound = [.. members.Where(d => d.Driver?.Name != "vfio-pci").Select(d => Why(d))];
        session.Check("every function of the group bound to vfio-pci", 10, notBound.Length == 0, notBound.Length == 0
            ? $"all {members.Count} functions of group {group} are bound to vfio-pci"
            : $"group {group} holds {string.Join(" and ", members.Select(m => m.Name))}, and {string.Join("; ", notBound)}. "
              + "vfio hands out whole IOMMU groups: the devices of a group can reach each other's DMA, so the group is viable only when every "
              + "function in it is bound to vfio-pci (or to no driver). Bind each one: unbind it from its driver, write vfio-pci to its "
              + "driver_override, then write its address to /sys/bus/pci/drivers_probe (handout steps 2 and 4)."
              + BindWriteHint(strace));

        // 2. The group was seen not viable first (while a function was still on its kernel driver).
        IReadOnlyList<VfioGroupFlags> statuses = shell.GroupStatuses;
        int firstViable = statuses.ToList().FindIndex(f => (f & VfioGroupFlags.Viable) != 0);
        bool sawNotViable = statuses.Take(firstViable < 0 ? statuses.Count : firstViable).Any(f => (f & VfioGroupFlags.Viable) == 0);
        session.Check("group seen not viable", 5, sawNotViable, sawNotViable
            ? $"VFIO_GROUP_GET_STATUS returned flags without VFIO_GROUP_FLAGS_VIABLE while port 0 was still on its kernel driver"
            : statuses.Count == 0
                ? $"VFIO_GROUP_GET_STATUS never succeeded: open /dev/vfio/{group} once {Target} is bound to vfio-pci (the node appears when the first function of the group binds) and ask for the status before binding the rest (handout step 3)"
                : "every VFIO_GROUP_GET_STATUS already returned VFIO_GROUP_FLAGS_VIABLE: the point of step 3 is to see the group refused while another function of it is still on igb — bind the target first, open the group, ask, and only then bind port 0");

        // 3. The group ended viable, as the kernel said.
        bool viable = statuses.Count > 0 && (statuses[^1] & VfioGroupFlags.Viable) != 0;
        session.Check("group viable", 10, viable, viable
            ? "the last VFIO_GROUP_GET_STATUS returned VFIO_GROUP_FLAGS_VIABLE"
            : statuses.Count == 0
                ? $"VFIO_GROUP_GET_STATUS was never answered: /dev/vfio/{group} exists only once a function of group {group} is bound to vfio-pci, and the status ioctl needs an open group fd (handout steps 3 and 5){OpenHint(strace, group)}"
                : $"the last VFIO_GROUP_GET_STATUS returned flags={SimShell.GroupFlags(statuses[^1])}, without VFIO_GROUP_FLAGS_VIABLE: "
                  + "the kernel counts the group viable only when no function of it is driven by a kernel driver that does DMA; ask again after binding every function (handout step 5)");

        // 4. Nothing left open: only the terminal on fds 0-2.
        string[] open = [.. session.Process.Files.Open.Where(f => f.Fd > 2).Select(f => $"fd {f.Fd} ({f.File.Path})")];
        bool opened = strace.Any(r => r.Syscall == "openat" && r.Return >= 0 && r.Arguments.Contains("\"/dev/vfio/", StringComparison.Ordinal));
        session.Check("fds closed", 5, opened && open.Length == 0, !opened
            ? "not graded: the script never opened a vfio group, so there was nothing to close (handout step 3)"
            : open.Length == 0
            ? "the script closed every fd it opened"
            : $"{string.Join(", ", open)} still open when the script ends: an open group fd keeps the group claimed for user space "
              + "(no kernel driver can bind to its functions until it is closed) — close what you open (handout step 6)");

        // 5. The kernel stayed quiet.
        session.Check("no kernel warning", 5, sim.UnexpectedWarnings.Count == 0, sim.UnexpectedWarnings.Count == 0
            ? "the kernel logged no WARN"
            : $"the kernel logged {sim.UnexpectedWarnings[0].Kind}: {sim.UnexpectedWarnings[0].Title} — see dmesg");

        return session.Grade(this);
    }

    // What a function that is not on vfio-pci is doing instead, in words that say what to do.
    private static string Why(SimDevice d)
        => d.Driver is { } drv
            ? $"{d.Name} is bound to {drv.Name}"
            : d.DriverOverride is { } ov
                ? $"{d.Name} has driver_override={ov} but no driver: setting driver_override does not bind — write {d.Name} to /sys/bus/pci/drivers_probe"
                : $"{d.Name} has no driver";

    // A failed write to a driver's bind file: what the kernel returned and why.
    private static string BindWriteHint(IReadOnlyList<SyscallRecord> strace)
    {
        var paths = new Dictionary<int, string>();
        foreach (SyscallRecord r in strace)
        {
            if (r.Syscall == "openat" && r.Return >= 0)
            {
                int q = r.Arguments.IndexOf('"', StringComparison.Ordinal);
                int e = q < 0 ? -1 : r.Arguments.IndexOf('"', q + 1);
                paths[(int)r.Return] = e < 0 ? "" : r.Arguments[(q + 1)..e];
            }
            else if (r.Syscall == "write" && r.Return < 0 && paths.TryGetValue(r.Fd, out string? path) && path.EndsWith("/bind", StringComparison.Ordinal))
            {
                return $" Your write to {path} failed with {r.Error.Describe()}: vfio-pci has no device ids of its own, so bind matches a device "
                    + "only when the device's driver_override names vfio-pci — write vfio-pci to driver_override first (or let drivers_probe do the bind).";
            }
        }

        return "";
    }

    // A failed open of the group's node.
    private static string OpenHint(IReadOnlyList<SyscallRecord> strace, int group)
    {
        string node = $"\"/dev/vfio/{group}\"";
        SyscallRecord? failed = strace.LastOrDefault(r => r.Syscall == "openat" && r.Return < 0 && r.Arguments.Contains(node, StringComparison.Ordinal));
        return failed is null ? "" : $"; your open of /dev/vfio/{group} failed with {failed.Error.Describe()}";
    }

    /// <summary>The reference script: the finished student project's lab01.sh, embedded.</summary>
    internal static string ReferenceScript
    {
        get
        {
            using Stream stream = typeof(Lab01IommuGroups).Assembly.GetManifestResourceStream("labs/lab01.sh")
                ?? throw new InvalidOperationException("examples/LabCourse/lab01.sh is not embedded");
            using var reader = new StreamReader(stream);
            return reader.ReadToEnd();
        }
    }
}
