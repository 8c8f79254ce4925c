// Lab 7 (seed 004: KVM as an external user of a vfio group), after virt/kvm/vfio.c (v6.12)
// and the ≤v5.18 external-user API of drivers/vfio/vfio.c. The student sets up edu's group
// in a type1 container, creates a VM and its KVM-VFIO device, hands the group to KVM
// (KVM_DEV_VFIO_FILE_ADD) and opens the device; then tears it all down. The grader runs the
// solution twice: on linux-6.12, where KVM holds the group *file* (the vfio_file API), and
// on the checked external-user API of v3.11–v5.18, the answer to seed 004, where KVM counts
// as a user of the group's container — so an order that worked by luck on today's kernel
// (the group leaving its container while KVM holds it) is refused there, as it must be.

using Vfio.Core;
using Vfio.Core.Kvm;
using Vfio.Kernel;
using Vfio.Pci;
using Vfio.Platform.Fs;
using Vfio.Platform.Proc;

namespace Vfio.Sim.Labs;

/// <summary>
/// A solution of lab 7: hand a vfio group to a VM's KVM-VFIO device and take it back. Both
/// run in the student's process; <see cref="LabEnvironment.Device"/> is edu's PCI address,
/// bound to vfio-pci. Keep what <see cref="Attach"/> opens in fields for <see cref="Detach"/>.
/// </summary>
public abstract class KvmExternalUserSolution
{
    /// <summary>
    /// Opens the container and the device's group, attaches the group with type1, creates a VM
    /// (KVM_CREATE_VM) and its KVM-VFIO device (KVM_CREATE_DEVICE), adds the group to it
    /// (KVM_DEV_VFIO_FILE_ADD) and opens the device (VFIO_GROUP_GET_DEVICE_FD).
    /// </summary>
    public abstract void Attach(LabEnvironment env);

    /// <summary>Undoes <see cref="Attach"/>: every fd closed, KVM no longer holding the group.</summary>
    public abstract void Detach(LabEnvironment env);
}

/// <summary>Lab 7: KVM as an external user of a vfio group.</summary>
public sealed class Lab07KvmExternalUser : Lab
{
    /// <summary>The device the lab hands to the VM: edu on the default machine.</summary>
    public const string Edu = "0000:01:00.0";

    /// <inheritdoc/>
    public override int Number => 7;

    /// <inheritdoc/>
    public override string Slug => "kvm";

    /// <inheritdoc/>
    public override string Title => "KVM as an external user of a group";

    /// <inheritdoc/>
    public override string Story => "seed 004: KVM holding a group (kvm-group-vs-container-change)";

    /// <inheritdoc/>

    public override string Summary =>
        "Hand a vfio group to a VM's KVM-VFIO device and take it back in an order that is safe on every kernel since the external-user API was fixed (seed 004).";

    /// <inheritdoc/>
    public override Type SolutionType => typeof(KvmExternalUserSolution);

    /// <inheritdoc/>
    public override object CreateReferenceSolution() => new LabCourse.Lab07KvmExternalUserSolution();

    /// <inheritdoc/>
    public override LabGrade Grade(object solution)
    {
        var s = solution as KvmExternalUserSolution
            ?? throw new ArgumentException($"lab 7 takes a {nameof(KvmExternalUserSolution)}, not {solution?.GetType().Name ?? "null"}", nameof(solution));
        var checks = new List<LabCheck>();
        var strace = new List<SyscallRecord>();
        GradeOn(s, "linux-6.12", checked_: false, checks, strace);
        GradeOn(s, "v5.18 API", checked_: true, checks, strace);
        return new LabGrade(this, checks, strace);
    }

    private static void GradeOn(KvmExternalUserSolution s, string kernel, bool checked_, List<LabCheck> checks, List<SyscallRecord> strace)
    {
        VfioSimBuilder b = VfioSim.CreateBuilder().UseSeed(4).AddVfioPci().AddKvm()
            .AddModule(sim => sim.Bind(Edu, VfioPciDriver.DriverName));
        if (checked_)
        {
            b.UseDesign(d => d with { ExternalUsers = VfioExternalUsers.Checked });
        }

        var session = new LabSession(b);
        VfioSim sim = session.Sim;
        var env = new LabEnvironment(sim, session.Process, Edu);
        VfioGroup group = ((VfioDevice)sim.Device(Edu).DriverData!).Group!;
        string api = checked_
            ? "the checked external-user API of v3.11–v5.18 (KVM takes the group itself and counts as a user of its container)"
            : "linux-6.12 (KVM holds the group file through the vfio_file API)";

        // Attach, then look at what the kernel holds.
        string? attachProblem = session.RunSolution(() => s.Attach(env));
        IReadOnlyList<SyscallRecord> attachTrace = session.Strace;
        IReadOnlyList<KvmVm> vms = sim.Kvm!.Vms;
        bool holds = vms.Count == 1 && ReferenceEquals(group.Kvm, vms[0]);
        session.Check($"{kernel}: KVM holds the group", 2, holds, holds
            ? ""
            : AssociationProblem(attachTrace, vms.Count, group, api, checked_) + Problem(attachProblem));

        // Detach, then look again.
        int detachFrom = attachTrace.Count;
        string? detachProblem = session.RunSolution(() => s.Detach(env));
        IReadOnlyList<SyscallRecord> all = session.Strace;
        List<(int Fd, string Path)> open = OpenFds(session.Process);
        bool released = holds && group.Kvm is null && group.OpenedFile is null && sim.Kvm.Vms.Count == 0;
        session.Check($"{kernel}: KVM let go of the group", 2, released, released
            ? ""
            : !holds ? "not graded: KVM never held the group, so there was nothing to let go of (see the first check)."
            : ReleaseProblem(sim, group, open) + Problem(detachProblem));

        SyscallRecord? failed = FirstFailure(all, detachFrom);
        IReadOnlyList<KernelWarning> warns = sim.UnexpectedWarnings;
        bool clean = holds && failed is null && open.Count == 0 && warns.Count == 0 && sim.PinnedPages == 0;
        session.Check($"{kernel}: the teardown was clean", 1, clean,
            !holds ? "the group was never handed to KVM, so there was nothing to take back (see the first check)."
            : failed is not null ? TeardownProblem(failed, checked_)
            : warns.Count > 0 ? $"the kernel warned: {warns[0].Title}"
            : open.Count > 0 ? $"your process still has {Fds(open)} open at the end: close everything Attach opened."
            : $"{sim.PinnedPages} page(s) are still pinned.");
        checks.AddRange(session.Checks);
        strace.AddRange(all);
    }

    private static string AssociationProblem(IReadOnlyList<SyscallRecord> trace, int vms, VfioGroup group, string api, bool checked_)
    {
        SyscallRecord? add = null;
        foreach (SyscallRecord r in trace)
        {
            if (r.Request == "KVM_SET_DEVICE_ATTR")
            {
                add = r;
            }
        }

        if (vms == 0)
        {
            return "no VM existed after Attach: open /dev/kvm, KVM_CREATE_VM gives the VM fd, and KVM_CREATE_DEVICE with type KVM_DEV_TYPE_VFIO (5) on it gives the KVM-VFIO device (handout step 2).";
        }

        if (add is null)
        {
            return "no KVM_SET_DEVICE_ATTR was made: the group reaches KVM through the KVM-VFIO device's attribute KVM_DEV_VFIO_FILE_ADD, with attr.addr pointing at an int holding the group fd (handout step 3).";
        }

        if (add.Error == Errno.EINVAL && add.Reason is { } reason && reason.Contains("neither a vfio group", StringComparison.Ordinal))
        {
            return $"{add} — {reason}. KVM_DEV_VFIO_FILE_ADD takes a vfio group fd (/dev/vfio/{group.Name}) or a vfio device fd, never the container (/dev/vfio/vfio): " +
                   "KVM needs the group to learn which devices the VM may use and whether their DMA is cache-coherent; the container only holds mappings (handout step 3).";
        }

        if (checked_ && add.Error == Errno.EINVAL)
        {
            return $"{add} — {add.Reason}. On {api} KVM takes a group only when it is in a container with an IOMMU driver set and is viable: that check is what " +
                   "closed seed 004. Attach the group to its container (VFIO_GROUP_SET_CONTAINER) and call VFIO_SET_IOMMU before KVM_DEV_VFIO_FILE_ADD; today's " +
                   "kernel does not check, but a program written in that order runs on every kernel (handout step 3).";
        }

        return add.Return < 0
            ? $"{add} — {add.Reason ?? add.Error.Describe()}: the group was not added to KVM."
            : $"KVM_SET_DEVICE_ATTR succeeded but the group fd was not what was added (group {group.Name} has no VM): pass the group fd, read by KVM from attr.addr (handout step 3).";
    }

    private static string ReleaseProblem(VfioSim sim, VfioGroup group, List<(int Fd, string Path)> open)
    {
        bool kvmFdOpen = open.Exists(o => o.Path.StartsWith("anon_inode:kvm", StringComparison.Ordinal) || o.Path.Contains("kvm", StringComparison.Ordinal));
        if (group.Kvm is not null || (group.OpenedFile is not null && !open.Exists(o => o.Path == group.DevPath)))
        {
            return $"after Detach KVM still holds /dev/vfio/{group.Name}: the KVM-VFIO device keeps its own reference to the group file until the group is " +
                   "deleted (KVM_DEV_VFIO_FILE_DEL) or the device fd is closed, and the device fd keeps the VM alive even after the VM fd is closed" +
                   (kvmFdOpen ? $" — your process still has {Fds(open)} open" : "") +
                   ". While KVM holds it the group stays open: no other process can open it (EBUSY). Delete the group from KVM, then close the KVM-VFIO device and the VM (handout step 4).";
        }

        if (group.OpenedFile is not null)
        {
            return $"/dev/vfio/{group.Name} is still open in your process: close the group fd (handout step 4).";
        }

        return $"{sim.Kvm!.Vms.Count} VM(s) still exist after Detach: close the KVM-VFIO device fd and the VM fd (handout step 4).";
    }

    private static string TeardownProblem(SyscallRecord failed, bool checked_)
    {
        if (checked_ && failed.Request == "VFIO_GROUP_UNSET_CONTAINER" && failed.Error == Errno.EBUSY)
        {
            return $"{failed} — {failed.Reason}. On the ≤v5.18 API KVM counts as a user of the group's container, so the group cannot leave its container while KVM " +
                   "holds it. That EBUSY is the guard added for seed 004: the API as first posted let the group leave, and KVM's next coherency check read a " +
                   "container that was gone (a NULL dereference, or a use-after-free of the freed container — `vfio-sim race run kvm-group-vs-container-change --fix off`). " +
                   "Delete the group from KVM (KVM_DEV_VFIO_FILE_DEL) before UNSET_CONTAINER or closing the group (handout step 4).";
        }

        return $"{failed} — {failed.Reason ?? failed.Error.Describe()}: a call of the teardown failed (handout step 4).";
    }

    private static SyscallRecord? FirstFailure(IReadOnlyList<SyscallRecord> trace, int from)
    {
        for (int i = from; i < trace.Count; i++)
        {
            if (trace[i].Return < 0)
            {
                return trace[i];
            }
        }

        return null;
    }

    private static string Problem(string? problem) => problem is null ? "" : "\n" + problem;

    private static string Fds(List<(int Fd, string Path)> open) => string.Join(", ", open.Select(o => $"fd {o.Fd} ({o.Path})"));

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
