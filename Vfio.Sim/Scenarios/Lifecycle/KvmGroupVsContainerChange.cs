// Seed 004 in docs/races.md: an external user (KVM) holding a vfio group while the group's
// container changes (virt/kvm/vfio.c and drivers/vfio/group.c, v6.12; the ≤v5.18 external-user
// API as design variants). User space has edu's group in container A (type1 set) and a VM with
// its kvm-vfio device, to which the group was added at set-up. One thread deletes the group
// from KVM and adds it again, four times; another
// closes its fd of A, moves the group to container B (UNSET_CONTAINER, SET_CONTAINER,
// SET_IOMMU) and maps and unmaps a buffer there. A is freed when the group leaves it.
//
// Today (ExternalUsers = FileApi) KVM holds the group *file* and never looks at the
// container: every ADD and DEL succeeds and the move is never held up. The ≤v5.18 API
// (Checked) counted KVM as a container user, so UNSET_CONTAINER is EBUSY while KVM holds the
// group (the mover waits and retries) and an ADD while the group is in no container with an
// IOMMU is EINVAL. The API as first posted (Unchecked, the fix off) took the group without
// the checks or the count; KVM's coherency check at each ADD and DEL then reads the group's
// container with nothing holding it: NULL while the group is between containers (an oops), or
// container A freed under it (a KASAN use-after-free).

using System.Runtime.InteropServices;
using Vfio.Core;
using Vfio.Core.Client;
using Vfio.Core.Kvm;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Mm;
using Vfio.Platform.Proc;
using Vfio.Sim.Races;
using static Vfio.Sim.Scenarios.ScenarioContext;

namespace Vfio.Sim.Scenarios.Lifecycle;

/// <summary><c>kvm-group-vs-container-change</c>: KVM adds and deletes a group while the group moves to another container.</summary>
internal sealed class KvmGroupVsContainerChange : LifecycleScenario
{
    private const int KvmRounds = 4;
    private const ulong BufferSize = 1 << 16;

    /// <inheritdoc/>
    public override string Name => "kvm-group-vs-container-change";

    /// <inheritdoc/>
    public override string Description =>
        "Seed 004: KVM_DEV_VFIO_FILE_ADD/DEL of edu's group while another thread moves the group from container A (closed) to " +
        "container B and maps there: KVM holds the group file and never touches the container (with the ≤v5.18 checked API, UNSET " +
        "is EBUSY while KVM holds it). With the fix off (the unchecked first posting) KVM uses the group's freed or missing container.";

    /// <inheritdoc/>
    public override RaceInfo Race { get; } = new()
    {
        Item = "seed 004",
        Kernels = "the external-user API as first posted (2013); the checked API v3.11–v5.18",
        FixCommits = "\"vfio: add external user support\" (v3.11, 2013): the container/viability checks and the container_users count " +
                     "(commit id not established here); since v5.19 KVM holds the group file through the vfio_file API",
        FixSwitch = "VfioDesign.ExternalUsers = Unchecked",
        Detectors = [RaceDetector.UseAfterFree, RaceDetector.WarnOrBug],
    };

    /// <inheritdoc/>
    public override void Configure(VfioSimBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        base.Configure(builder);
        builder.AddKvm();
    }

    /// <inheritdoc/>
    public override void ApplyFix(VfioSimBuilder builder, bool on)
    {
        ArgumentNullException.ThrowIfNull(builder);
        if (!on)
        {
            builder.UseDesign(d => d with { ExternalUsers = VfioExternalUsers.Unchecked });
        }
    }

    /// <inheritdoc/>
    public override void Execute(ScenarioContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        VfioSim sim = context.Sim;
        VfioExternalUsers api = sim.Vfio.Design.ExternalUsers;
        SimProcess user = sim.Spawn("qemu");
        VfioGroup group = ((VfioDevice)sim.Device(Edu).DriverData!).Group!;
        var a = new VfioContainerFd(user);
        using var b = new VfioContainerFd(user);
        using var groupFd = new VfioGroupFd(user, sim.GroupOf(Edu));
        groupFd.SetContainer(a);
        a.SetIommu(VfioExtension.Type1v2);
        VfioContainer containerA = group.Container!;
        (int vm, int kvmVfio) = CreateVmWithKvmVfio(user);
        ulong fdArg = WriteFdArgument(user, groupFd.Fd);
        UserBuffer buffer = VfioSim.Allocate(user, BufferSize, MapFlags.MAP_POPULATE);
        long pinnedBefore = sim.PinnedPages;

        // QEMU hands the group to KVM when it sets the VM up, while the group is in A.
        long first = Attr(user, kvmVfio, KvmDevVfio.FileAdd, fdArg);
        Check(first == 0, "KVM_DEV_VFIO_FILE_ADD of a group in a container with an IOMMU succeeds", Describe(first));
        bool kvmHolds = true;
        int unsetBusy = 0;
        var kvmAnswers = new List<string>();
        KTask kvm = user.SpawnThread("kvm-vfio", () =>
        {
            for (int i = 0; i < KvmRounds; i++)
            {
                long del = Attr(user, kvmVfio, KvmDevVfio.FileDel, fdArg);
                long add = Attr(user, kvmVfio, KvmDevVfio.FileAdd, fdArg);
                kvmAnswers.Add($"DEL {Describe(del)}, ADD {Describe(add)}");
                Detect(RaceDetector.WrongErrno, del == (kvmHolds ? 0 : Errno.ENOENT.Negative()),
                    kvmHolds ? "DEL of the group KVM holds succeeds" : "DEL of a group KVM does not hold is ENOENT", kvmAnswers[^1]);

                // The checked API refuses a group in no container with an IOMMU; the others take any group.
                Detect(RaceDetector.WrongErrno, add == 0 || api == VfioExternalUsers.Checked && add == Errno.EINVAL.Negative(),
                    api == VfioExternalUsers.Checked ? "ADD succeeds, or is EINVAL while the group is in no container with an IOMMU" : "KVM_DEV_VFIO_FILE_ADD succeeds",
                    kvmAnswers[^1]);
                kvmHolds = add == 0;
                KTask.Schedule();
            }
        });

        KTask mover = user.SpawnThread("move", () =>
        {
            a.Dispose(); // container A now lives only through the group's attachment
            while (true)
            {
                try
                {
                    groupFd.UnsetContainer();
                    break;
                }
                catch (VfioException e)
                {
                    // Only the checked API counts KVM as a container user.
                    Detect(RaceDetector.WrongErrno, api == VfioExternalUsers.Checked && e.Errno == Errno.EBUSY,
                        "UNSET_CONTAINER succeeds (EBUSY only while a checked external user holds the group)", e.Message);
                    unsetBusy++;
                    KTask.Msleep(1);
                }
            }

            groupFd.SetContainer(b);
            b.SetIommu(VfioExtension.Type1v2);
            b.MapDma(buffer.Address, 0, BufferSize);
            ulong unmapped = b.UnmapDma(0, BufferSize);
            CheckEqual(unmapped, BufferSize, "the bytes UNMAP_DMA unmapped in container B");
        });

        kvm.Join();

        // The checked API's mover waits for KVM to let go; so does the end of the run.
        if (kvmHolds)
        {
            long del = Attr(user, kvmVfio, KvmDevVfio.FileDel, fdArg);
            Check(del == 0, "KVM lets go of the group (DEL)", Describe(del));
        }

        mover.Join();
        context.Step("what KVM and the mover saw", () =>
            $"{string.Join("; ", kvmAnswers)}; UNSET_CONTAINER EBUSY {unsetBusy} time(s) while KVM held the group");

        Detect(RaceDetector.Invariant, group.Container is { } now && now != containerA && group.ContainerUsersSnapshot == 1,
            "the group in container B, its only user the attachment", $"container users {group.ContainerUsersSnapshot}");
        Detect(RaceDetector.Leak, containerA.ReferenceCount == 0, "container A freed once the group left it", $"{containerA.ReferenceCount} reference(s) left");
        Detect(RaceDetector.Leak, sim.PinnedPages == pinnedBefore, "no page left pinned by container B's mapping", $"{sim.PinnedPages - pinnedBefore} page(s)");
        int groupRefs = group.ReferenceCount;
        Check(user.Close(kvmVfio) == 0 && user.Close(vm) == 0, "the kvm-vfio device and the VM close", "a close failed");
        Detect(RaceDetector.Leak, group.ReferenceCount == groupRefs, "KVM holds no reference to the group once its list is empty", $"{group.ReferenceCount} against {groupRefs}");
        groupFd.UnsetContainer();
        buffer.Dispose();
    }

    private static string Describe(long ret) => ret == 0 ? "0" : ErrnoExtensions.FromReturn(ret).ToString();

    /// <summary>A VM (KVM_CREATE_VM) and its kvm-vfio device (KVM_CREATE_DEVICE).</summary>
    private static (int Vm, int Device) CreateVmWithKvmVfio(SimProcess user)
    {
        int kvm = user.Open("/dev/kvm");
        Check(kvm >= 0, "open(/dev/kvm) succeeds", ErrnoExtensions.FromReturn(kvm).Describe());
        int vm = (int)user.Ioctl(kvm, KvmIoctl.CreateVm);
        user.Close(kvm);
        Check(vm >= 0, "KVM_CREATE_VM succeeds", ErrnoExtensions.FromReturn(vm).Describe());
        var cd = new KvmCreateDevice { Type = (uint)KvmDeviceType.Vfio };
        long r = user.Ioctl(vm, KvmIoctl.CreateDevice, MemoryMarshal.AsBytes(MemoryMarshal.CreateSpan(ref cd, 1)));
        Check(r == 0, "KVM_CREATE_DEVICE(kvm-vfio) succeeds", ErrnoExtensions.FromReturn(r).Describe());
        return (vm, (int)cd.Fd);
    }

    /// <summary>The int32 fd KVM_DEV_VFIO_FILE_ADD/DEL read through attr.addr, in a page of the user's memory.</summary>
    private static ulong WriteFdArgument(SimProcess user, int fd)
    {
        long page = user.Mmap(0, PhysMem.PageSize, Prot.PROT_READ | Prot.PROT_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS);
        Check(page > 0, "mmap of a page succeeds", ErrnoExtensions.FromReturn(page).Describe());
        Check(user.Mm.WriteUser((ulong)page, BitConverter.GetBytes(fd)) == 0, "the fd is written to user memory", "the write failed");
        return (ulong)page;
    }

    private static long Attr(SimProcess user, int device, ulong attr, ulong addr)
    {
        var a = new KvmDeviceAttr { Group = KvmDevVfio.File, Attr = attr, Addr = addr };
        return user.Ioctl(device, KvmIoctl.SetDeviceAttr, MemoryMarshal.AsBytes(MemoryMarshal.CreateSpan(ref a, 1)));
    }
}
