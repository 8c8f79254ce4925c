// VFIO_GROUP_SET_CONTAINER of one group racing VFIO_GROUP_UNSET_CONTAINER of another on the
// same container (container.c, container->group_lock): either the new group joins the
// container while its IOMMU backend is live (and is attached to the backend's domain), or
// the unset emptied the container first and released the backend, leaving the new group
// in a container with no backend. Never a backend without groups, or a group in a domain
// of a released backend.

using Vfio.Core;
using Vfio.Core.Client;
using Vfio.Kernel;
using Vfio.Platform.Iommu;
using Vfio.Platform.Proc;
using static Vfio.Sim.Scenarios.ScenarioContext;

namespace Vfio.Sim.Scenarios.Lifecycle;

/// <summary><c>set-container-vs-unset</c>: two groups join and leave one container at once.</summary>
internal sealed class SetContainerVsUnset : LifecycleScenario
{
    /// <inheritdoc/>
    public override string Name => "set-container-vs-unset";

    /// <inheritdoc/>
    public override string Description =>
        "SET_CONTAINER of the NIC's group racing UNSET_CONTAINER of edu's group on one type1 container: the container " +
        "ends with the NIC's group only, attached to a live backend's domain or in a container whose backend was released.";

    /// <inheritdoc/>
    protected override IReadOnlyList<string> Functions => [Edu, Nic];

    /// <inheritdoc/>
    public override void Execute(ScenarioContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        VfioSim sim = context.Sim;
        SimProcess user = sim.Spawn("user");
        using var container = new VfioContainerFd(user);
        using var g1 = new VfioGroupFd(user, sim.GroupOf(Edu));
        using var g2 = new VfioGroupFd(user, sim.GroupOf(Nic));
        g1.SetContainer(container);
        container.SetIommu(Core.Uapi.VfioExtension.Type1v2);

        KTask set = user.SpawnThread("set", () => g2.SetContainer(container));
        KTask unset = user.SpawnThread("unset", g1.UnsetContainer);
        set.Join();
        unset.Join();

        VfioGroup nicGroup = ((VfioDevice)sim.Device(Nic).DriverData!).Group!;
        VfioContainer c = nicGroup.Container!;
        CheckEqual(string.Join(",", c.Groups.Select(g => g.Id)), nicGroup.Id.ToString(System.Globalization.CultureInfo.InvariantCulture), "the container's groups");
        bool attached = sim.Device(Nic).IommuGroup!.Domain?.Type == IommuDomainType.Unmanaged;
        Check(attached == c.HasIommuDriver,
            "the NIC's group is in the backend's domain exactly when the container still has its backend",
            $"backend {(c.HasIommuDriver ? "live" : "released")}, group {(attached ? "in an unmanaged domain" : "in no vfio domain")}");
        Check(sim.Device(Edu).IommuGroup!.Domain?.Type != IommuDomainType.Unmanaged, "edu's group left vfio's domain", "it is still attached");
    }
}
