// Lab 5: the device life cycle's reference counts across close orders (drivers/vfio/group.c,
// container.c and vfio_main.c, v6.12 — the "seed 002" story of the vfio_device life cycle).
// The student predicts, for each step of three sequences of opens, dups and closes, the
// counts the kernel keeps: the f_count of the container, group and device files, the
// container's kref, the group's container_users, and the device's registration refcount and
// open_count. The grader performs each sequence as the student's process and reads the
// same counts off the kernel objects after every step.

using System.Globalization;
using System.Text;
using Vfio.Core;
using Vfio.Core.Client;
using Vfio.Core.Uapi;
using Vfio.Platform.Fs;
using Vfio.Platform.Proc;

namespace Vfio.Sim.Labs;

/// <summary>One step of a lab 5 sequence: a syscall of the process that holds edu.</summary>
public enum RefcountAction
{
    /// <summary><c>open("/dev/vfio/vfio")</c>: the container fd.</summary>
    OpenContainer,

    /// <summary><c>open("/dev/vfio/N")</c>: the group fd.</summary>
    OpenGroup,

    /// <summary><c>VFIO_GROUP_SET_CONTAINER</c> of the group into the container.</summary>
    SetContainer,

    /// <summary><c>VFIO_SET_IOMMU(VFIO_TYPE1v2_IOMMU)</c> on the container.</summary>
    SetIommu,

    /// <summary><c>VFIO_GROUP_GET_DEVICE_FD</c>: the device fd (the "first device fd").</summary>
    GetDeviceFd,

    /// <summary><c>dup()</c> of the first device fd.</summary>
    DupDeviceFd,

    /// <summary>A second <c>VFIO_GROUP_GET_DEVICE_FD</c> of the same device.</summary>
    GetSecondDeviceFd,

    /// <summary><c>close()</c> of the container fd.</summary>
    CloseContainer,

    /// <summary><c>close()</c> of the group fd.</summary>
    CloseGroup,

    /// <summary><c>close()</c> of the first device fd.</summary>
    CloseDevice,

    /// <summary><c>close()</c> of the dup of the first device fd.</summary>
    CloseDup,

    /// <summary><c>close()</c> of the second device fd.</summary>
    CloseSecondDevice,
}

/// <summary>A sequence of steps whose counts a lab 5 solution predicts.</summary>
/// <param name="Name">A short name (<c>A</c>, <c>B</c>, <c>C</c>).</param>
/// <param name="Description">What the sequence does.</param>
/// <param name="Steps">The steps, in order.</param>
public sealed record RefcountSequence(string Name, string Description, IReadOnlyList<RefcountAction> Steps);

/// <summary>The counts after one step (0 for an object that does not exist or was released).</summary>
/// <param name="ContainerFile">f_count of the container's file (<c>/dev/vfio/vfio</c>).</param>
/// <param name="GroupFile">f_count of the group's file (<c>/dev/vfio/N</c>).</param>
/// <param name="DeviceFile">f_count of the first device fd's file.</param>
/// <param name="Container">The container's kref (<c>struct vfio_container</c>).</param>
/// <param name="ContainerUsers">The group's <c>container_users</c>.</param>
/// <param name="Device">The device's registration refcount (<c>vfio_device.refcount</c>).</param>
/// <param name="OpenCount">The device's <c>open_count</c>.</param>
public sealed record RefcountState(int ContainerFile, int GroupFile, int DeviceFile, int Container, int ContainerUsers, int Device, int OpenCount)
{
    /// <summary>The counts before the first step: nothing open; the device registered by vfio-pci.</summary>
    public static RefcountState AtBoot { get; } = new(0, 0, 0, 0, 0, 1, 0);

    /// <inheritdoc/>
    public override string ToString()
        => string.Create(CultureInfo.InvariantCulture, $"container file {ContainerFile}, group file {GroupFile}, device file {DeviceFile}, container {Container}, container_users {ContainerUsers}, device {Device}, open_count {OpenCount}");
}

/// <summary>
/// Lab 5's solution: predictions. For each sequence the grader gives, return the counts
/// after each step (one <see cref="RefcountState"/> per step, in order).
/// </summary>
public abstract class RefcountSolution
{
    /// <summary>The counts after each step of <paramref name="sequence"/>.</summary>
    public abstract IReadOnlyList<RefcountState> Predict(RefcountSequence sequence);
}

/// <summary>Lab 5: predict the device life cycle's reference counts across close orders.</summary>
internal sealed class Lab05Refcounts : Lab
{
    /// <summary>edu on the default machine.</summary>
    internal const string Edu = "0000:01:00.0";

    private static readonly RefcountAction[] s_open =
        [RefcountAction.OpenContainer, RefcountAction.OpenGroup, RefcountAction.SetContainer, RefcountAction.SetIommu, RefcountAction.GetDeviceFd];

    /// <summary>The sequences, as the handout lists them.</summary>
    internal static IReadOnlyList<RefcountSequence> Sequences { get; } =
    [
        new("A", "vfio.rst's order, closed device, group, container",
            [.. s_open, RefcountAction.CloseDevice, RefcountAction.CloseGroup, RefcountAction.CloseContainer]),
        new("B", "the group fd closed first, then the container fd, the device fd last",
            [.. s_open, RefcountAction.CloseGroup, RefcountAction.CloseContainer, RefcountAction.CloseDevice]),
        new("C", "a dup'd device fd and a second VFIO_GROUP_GET_DEVICE_FD",
            [.. s_open, RefcountAction.DupDeviceFd, RefcountAction.GetSecondDeviceFd, RefcountAction.CloseDevice, RefcountAction.CloseGroup,
             RefcountAction.CloseDup, RefcountAction.CloseSecondDevice, RefcountAction.CloseContainer]),
    ];

    private static readonly int[] s_points = [30, 35, 35];

    /// <inheritdoc/>
    public override int Number => 5;

    /// <inheritdoc/>
    public override string Slug => "refcounts";

    /// <inheritdoc/>
    public override string Title => "The device life cycle: predict the reference counts";

    /// <inheritdoc/>
    public override string Story => "seed 002: the vfio_device life cycle (teardown-vs-device-set-walk), seed 2";

    /// <inheritdoc/>

    public override string Summary => "Predict the file, container, group and device counts across opens, dups and three close orders; the grader reads the kernel's.";

    /// <inheritdoc/>
    public override Type SolutionType => typeof(RefcountSolution);

    /// <inheritdoc/>
    public override object CreateReferenceSolution() => new LabCourse.RefcountModel();

    /// <summary>The machine: the default one (seed 2, the "seed 002" story), vfio-pci loaded, edu bound to it.</summary>
    internal static VfioSimBuilder Builder()
        => VfioSim.CreateBuilder().UseSeed(2).AddVfioPci().AddModule(sim => sim.Bind(Edu));

    /// <inheritdoc/>
    public override LabGrade Grade(object solution)
    {
        if (solution is not RefcountSolution predictor)
        {
            throw new ArgumentException($"lab 5 grades a {nameof(RefcountSolution)}, not {solution?.GetType().Name ?? "null"}", nameof(solution));
        }

        var session = new LabSession(Builder());
        VfioSim sim = session.Sim;
        SimProcess p = session.Process;
        var actual = new List<RefcountState>[Sequences.Count];
        var predicted = new IReadOnlyList<RefcountState>?[Sequences.Count];
        var thrown = new string?[Sequences.Count];
        string? failure = session.RunSolution(() =>
        {
            for (int i = 0; i < Sequences.Count; i++)
            {
                try
                {
                    predicted[i] = predictor.Predict(Sequences[i]);
                }
                catch (Exception e) when (e is not OutOfMemoryException)
                {
                    thrown[i] = $"Predict threw {e.GetType().Name}: {e.Message}";
                }

                actual[i] = Perform(sim, p, Sequences[i]);
            }
        });

        if (failure is not null)
        {
            session.Check("the sequences run", 0, false, $"the grader's own run failed: {failure}");
        }

        for (int i = 0; i < Sequences.Count; i++)
        {
            RefcountSequence seq = Sequences[i];
            string name = $"sequence {seq.Name}: {seq.Description}";
            if (thrown[i] is { } t)
            {
                session.Check(name, s_points[i], false, t);
                continue;
            }

            IReadOnlyList<RefcountState>? mine = predicted[i];
            List<RefcountState> real = actual[i] ?? [];
            if (mine is null || mine.Count != seq.Steps.Count)
            {
                session.Check(name, s_points[i], false,
                    string.Create(CultureInfo.InvariantCulture, $"Predict returned {(mine is null ? "null" : $"{mine.Count} states")} for {seq.Steps.Count} steps: return one RefcountState per step, the counts after that step."));
                continue;
            }

            int wrong = -1;
            for (int s = 0; s < real.Count && wrong < 0; s++)
            {
                if (mine[s] != real[s])
                {
                    wrong = s;
                }
            }

            session.Check(name, s_points[i], wrong < 0,
                wrong < 0
                    ? string.Create(CultureInfo.InvariantCulture, $"all {seq.Steps.Count} steps as the kernel counts them")
                    : Explain(seq, wrong, wrong == 0 ? RefcountState.AtBoot : real[wrong - 1], mine[wrong], real[wrong]));
        }

        return session.Grade(this);
    }

    /// <summary>Runs <paramref name="seq"/> as <paramref name="p"/> and reads the counts after each step.</summary>
    private static List<RefcountState> Perform(VfioSim sim, SimProcess p, RefcountSequence seq)
    {
        int groupId = sim.GroupOf(Edu);
        VfioGroup group = sim.Vfio.Groups.First(g => g.Id == groupId);
        VfioDevice device = group.Devices.First(d => d.Dev.Name == Edu);
        VfioContainerFd? container = null;
        VfioGroupFd? groupFd = null;
        VfioDeviceFd? deviceFd = null, second = null;
        int dup = -1;
        SimFile? containerFile = null, groupFile = null, deviceFile = null;
        VfioContainer? kcontainer = null;
        var states = new List<RefcountState>(seq.Steps.Count);
        foreach (RefcountAction a in seq.Steps)
        {
            switch (a)
            {
                case RefcountAction.OpenContainer:
                    container = new VfioContainerFd(p);
                    containerFile = FileOf(p, container.Fd);
                    kcontainer = VfioContainer.FromFile(containerFile!);
                    break;
                case RefcountAction.OpenGroup:
                    groupFd = new VfioGroupFd(p, groupId);
                    groupFile = FileOf(p, groupFd.Fd);
                    break;
                case RefcountAction.SetContainer:
                    groupFd!.SetContainer(container!);
                    break;
                case RefcountAction.SetIommu:
                    container!.SetIommu(VfioExtension.Type1v2);
                    break;
                case RefcountAction.GetDeviceFd:
                    deviceFd = groupFd!.GetDeviceFd(Edu);
                    deviceFile = FileOf(p, deviceFd.Fd);
                    break;
                case RefcountAction.DupDeviceFd:
                    dup = p.Dup(deviceFd!.Fd);
                    break;
                case RefcountAction.GetSecondDeviceFd:
                    second = groupFd!.GetDeviceFd(Edu);
                    break;
                case RefcountAction.CloseContainer:
                    container!.Dispose();
                    break;
                case RefcountAction.CloseGroup:
                    groupFd!.Dispose();
                    break;
                case RefcountAction.CloseDevice:
                    deviceFd!.Dispose();
                    break;
                case RefcountAction.CloseDup:
                    p.Close(dup);
                    break;
                case RefcountAction.CloseSecondDevice:
                    second!.Dispose();
                    break;
                default:
                    throw new InvalidOperationException($"unknown step {a}");
            }

            states.Add(new RefcountState(
                containerFile?.ReferenceCount ?? 0,
                groupFile?.ReferenceCount ?? 0,
                deviceFile?.ReferenceCount ?? 0,
                kcontainer?.ReferenceCount ?? 0,
                group.ContainerUsersSnapshot,
                device.RegistrationCount,
                device.OpenCountUnlocked));
        }

        return states;
    }

    private static SimFile? FileOf(SimProcess p, int fd)
    {
        foreach ((int n, SimFile f) in p.Files.Open)
        {
            if (n == fd)
            {
                return f;
            }
        }

        return null;
    }

    /// <summary>The teaching message for the first step predicted wrong.</summary>
    private static string Explain(RefcountSequence seq, int step, RefcountState before, RefcountState mine, RefcountState real)
    {
        RefcountAction a = seq.Steps[step];
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"step {step + 1} ({Describe(a)}): ");
        var wrong = new List<string>();
        void Field(string name, int m, int r)
        {
            if (m != r)
            {
                wrong.Add(string.Create(CultureInfo.InvariantCulture, $"{name}: you predicted {m}, the kernel has {r}"));
            }
        }

        Field("container file", mine.ContainerFile, real.ContainerFile);
        Field("group file", mine.GroupFile, real.GroupFile);
        Field("device file", mine.DeviceFile, real.DeviceFile);
        Field("container", mine.Container, real.Container);
        Field("container_users", mine.ContainerUsers, real.ContainerUsers);
        Field("device", mine.Device, real.Device);
        Field("open_count", mine.OpenCount, real.OpenCount);
        sb.AppendJoin("; ", wrong).Append(".\nBefore this step: ").Append(before).Append(".\n");

        // One explanation, for the count a student most likely misunderstood.
        if (a == RefcountAction.CloseGroup && real.GroupFile > 0 && mine.GroupFile != real.GroupFile)
        {
            sb.Append("Closing the group fd drops only the fd's reference: the device's first open took a reference on the group's file (vfio_group_use_container), held until the device's last close. So the group stays in its container and the device stays open — the device fd holds the group, not the other way round.");
        }
        else if (mine.Device != real.Device)
        {
            sb.Append("The registration refcount is 1 from the moment vfio-pci registers the device (vfio_register_group_dev), plus one per open device *file*: a dup'd fd shares its file and adds nothing, a second VFIO_GROUP_GET_DEVICE_FD adds one. The unbind drops the 1 and waits for the rest.");
        }
        else if (mine.OpenCount != real.OpenCount)
        {
            sb.Append("open_count counts device files opened through VFIO_GROUP_GET_DEVICE_FD: each one adds one, dup() adds nothing. Its first open (0 -> 1) enables the device, its last close (1 -> 0) resets it.");
        }
        else if (mine.ContainerUsers != real.ContainerUsers)
        {
            sb.Append("container_users is 1 while the group is in a container, plus 1 while the device is open — taken at the device's first open and dropped at its last close, not per fd. When the group's file is released the group leaves its container: 0.");
        }
        else if (mine.Container != real.Container)
        {
            sb.Append("The container's kref is 1 for its file plus 1 per attached group: the container outlives its fd while a group is attached, and is freed (0) when the last of them goes.");
        }
        else if (mine.GroupFile != real.GroupFile)
        {
            sb.Append("A file's f_count is the fds that point at it plus the kernel's references: the device's first open holds the group's file until the device's last close (once, however many device fds).");
        }
        else
        {
            sb.Append("A file's f_count is the number of fds that point at it (dup adds one) plus the kernel's references to it; a released file counts 0.");
        }

        sb.Append("\nCheck your model on a machine of your own: sim.Graph() (or `vfio-sim graph`) shows each object's counts after each step.");
        return sb.ToString();
    }

    internal static string Describe(RefcountAction a) => a switch
    {
        RefcountAction.OpenContainer => "open /dev/vfio/vfio",
        RefcountAction.OpenGroup => "open /dev/vfio/N",
        RefcountAction.SetContainer => "VFIO_GROUP_SET_CONTAINER",
        RefcountAction.SetIommu => "VFIO_SET_IOMMU",
        RefcountAction.GetDeviceFd => "VFIO_GROUP_GET_DEVICE_FD",
        RefcountAction.DupDeviceFd => "dup the device fd",
        RefcountAction.GetSecondDeviceFd => "a second VFIO_GROUP_GET_DEVICE_FD",
        RefcountAction.CloseContainer => "close the container fd",
        RefcountAction.CloseGroup => "close the group fd",
        RefcountAction.CloseDevice => "close the first device fd",
        RefcountAction.CloseDup => "close the dup",
        RefcountAction.CloseSecondDevice => "close the second device fd",
        _ => a.ToString(),
    };
}

