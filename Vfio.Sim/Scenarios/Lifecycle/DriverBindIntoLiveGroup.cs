// Race 1 in docs/races.md: a kernel (DMA-API) driver bound into an IOMMU group user space is
// taking (drivers/vfio/group.c and container.c with the DMA-ownership claim of
// drivers/iommu/iommu.c, v6.12; the ≤v5.18 group notifier as a design variant). The default
// machine's group 4 holds two functions of one igb card: 02:00.0 is bound to vfio-pci, 02:00.1
// is left without a driver at boot, so the group is viable. The user opens the group, attaches
// it to a container, sets type1 and gets the device fd, while an administrator binds 02:00.1
// back to igb.
//
// Today's kernel (Viability = DmaOwnership) gives one of two outcomes: igb's probe comes
// after SET_CONTAINER's claim and fails with EBUSY, vfio untouched; or it comes first, the
// group is not viable, and SET_CONTAINER is EPERM. The ≤v5.18 design (LegacyNotifier) did not
// claim the group: a bind after SET_CONTAINER hit BUG_ON in the notifier (the detector); a
// bind before it left a group whose device fd was refused (EINVAL, not viable).

using Vfio.Core;
using Vfio.Core.Client;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Proc;
using Vfio.Sim.Races;
using static Vfio.Sim.Scenarios.ScenarioContext;

namespace Vfio.Sim.Scenarios.Lifecycle;

/// <summary><c>driver-bind-into-live-group</c>: igb binds a sibling function while user space takes the group.</summary>
internal sealed class DriverBindIntoLiveGroup : LifecycleScenario
{
    /// <summary>The function of group 4 user space takes.</summary>
    public const string Function0 = "0000:02:00.0";

    /// <summary>Its sibling, bound back to igb during the race.</summary>
    public const string Function1 = "0000:02:00.1";

    private const string HostDriver = "igb";

    /// <inheritdoc/>
    public override string Name => "driver-bind-into-live-group";

    /// <inheritdoc/>
    public override string Description =>
        "Race 1: user space opens group 4, attaches it to a container, sets type1 and gets 02:00.0's device fd while an administrator " +
        "binds the sibling 02:00.1 to igb: the probe fails with EBUSY (vfio untouched), or it wins and SET_CONTAINER is EPERM. With the " +
        "fix off (the ≤v5.18 group notifier) a bind into the live group is a kernel BUG.";

    /// <inheritdoc/>
    public override RaceInfo Race { get; } = new()
    {
        Item = "1",
        Kernels = "≤ v5.18",
        FixCommits = "70693f470848 vfio: Set DMA ownership for VFIO devices; 3b86f317c9c7 vfio: Remove iommu group notifier; " +
                     "18c7a349d072 / c7d469849747 driver_managed_dma for pci-stub and pcieport (v5.19)",
        FixSwitch = "VfioDesign.Viability = LegacyNotifier",
        Detectors = [RaceDetector.WarnOrBug],
    };

    /// <inheritdoc/>
    protected override IReadOnlyList<string> Functions => [Function0];

    /// <inheritdoc/>
    public override void Configure(VfioSimBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        base.Configure(builder);
        builder.AddModule(sim =>
        {
            if (Unmet(sim) is null)
            {
                sim.Unbind(Function1);
            }
        });
    }

    /// <inheritdoc/>
    public override void ApplyFix(VfioSimBuilder builder, bool on)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.UseDesign(d => d with { Viability = on ? VfioViabilityModel.DmaOwnership : VfioViabilityModel.LegacyNotifier });
    }

    /// <inheritdoc/>
    public override string? Unmet(VfioSim sim)
    {
        ArgumentNullException.ThrowIfNull(sim);
        if (base.Unmet(sim) is { } why)
        {
            return why;
        }

        return sim.Machine.Pci.Find(Function1) is { } f1 && f1.IommuGroup == sim.Machine.Pci.Find(Function0)!.IommuGroup
            ? null
            : $"the machine has no {Function1} in {Function0}'s IOMMU group: {Name} runs on the default machine's group 4";
    }

    /// <inheritdoc/>
    public override void Execute(ScenarioContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        VfioSim sim = context.Sim;
        bool legacy = sim.Vfio.Design.Viability == VfioViabilityModel.LegacyNotifier;
        SimProcess user = sim.Spawn("qemu");
        SimProcess admin = sim.Spawn("admin");
        VfioGroup group = ((VfioDevice)sim.Device(Function0).DriverData!).Group!;
        long bind = 1;
        KTask binder = admin.SpawnThread("bind", () => bind = sim.Machine.Sysfs.Write($"/sys/bus/pci/drivers/{HostDriver}/bind", Function1, admin));
        using var container = new VfioContainerFd(user);
        using var groupFd = new VfioGroupFd(user, sim.GroupOf(Function0));

        Errno setContainer = ErrnoOf(() => groupFd.SetContainer(container));
        Errno? getDeviceFd = null;
        VfioDeviceFd? device = null;
        if (setContainer == 0)
        {
            container.SetIommu(VfioExtension.Type1v2);
            try
            {
                device = groupFd.GetDeviceFd(Function0);
                getDeviceFd = 0;
            }
            catch (VfioException e)
            {
                getDeviceFd = e.Errno;
            }
        }

        binder.Join();
        string? f1Driver = sim.DriverOf(Function1);
        string outcome = $"bind {(bind < 0 ? ErrnoExtensions.FromReturn(bind).Describe() : "succeeded")}, SET_CONTAINER " +
                         $"{(setContainer == 0 ? "succeeded" : setContainer.ToString())}, GET_DEVICE_FD {(getDeviceFd is null ? "not tried" : getDeviceFd == 0 ? "succeeded" : getDeviceFd.ToString())}, " +
                         $"02:00.1 on {f1Driver ?? "no driver"}";

        context.Step("the race's outcome", () => outcome);

        // The kernel's outcomes: the claim first (bind EBUSY, vfio untouched), or the bind first
        // (ownership: SET_CONTAINER EPERM; the legacy notifier: the device fd refused, EINVAL).
        bool claimFirst = bind == Errno.EBUSY.Negative() && f1Driver is null && setContainer == 0 && getDeviceFd == 0;
        bool bindFirst = bind >= 0 && f1Driver == HostDriver &&
                         (legacy ? setContainer == 0 && getDeviceFd == Errno.EINVAL : setContainer == Errno.EPERM);
        Detect(RaceDetector.WrongErrno, claimFirst || bindFirst,
            "igb's probe fails with EBUSY after SET_CONTAINER, or it binds first and the group is refused (SET_CONTAINER EPERM)", outcome);

        if (claimFirst)
        {
            VfioGroupFlags flags = groupFd.GetStatus();
            Detect(RaceDetector.Invariant, flags == (VfioGroupFlags.Viable | VfioGroupFlags.ContainerSet),
                "the group still VIABLE | CONTAINER_SET after the refused bind", flags.ToString());
            Detect(RaceDetector.Invariant, device!.GetInfo().Info.NumRegions > 0, "the device fd still answers GET_INFO", "it does not");
            CheckEqual(group.ContainerUsersSnapshot, 2, "the group's container users (the attach and the open device)");
        }

        device?.Dispose();
        groupFd.Dispose();
        container.Dispose();
        Detect(RaceDetector.Leak, group.ContainerUsersSnapshot == 0 && group.ReferenceCount == 1,
            "the group out of its container, held only by its registered device", $"container users {group.ContainerUsersSnapshot}, references {group.ReferenceCount}");

        // With everything closed vfio no longer owns the group: igb may have 02:00.1.
        if (f1Driver is null)
        {
            long again = sim.Machine.Sysfs.Write($"/sys/bus/pci/drivers/{HostDriver}/bind", Function1, admin);
            Detect(RaceDetector.Leak, again >= 0, "igb binds 02:00.1 once the group is released", ErrnoExtensions.FromReturn(again).Describe());
        }
    }

    private static Errno ErrnoOf(Action call)
    {
        try
        {
            call();
            return 0;
        }
        catch (VfioException e)
        {
            return e.Errno;
        }
    }
}
