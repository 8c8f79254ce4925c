// What the lifecycle scenarios share: they run on the default machine's edu function
// (0000:01:00.0, alone in its IOMMU group) and NIC (0000:05:00.0), bound to vfio-pci
// before the body starts, so the schedule the seed explores is only the race itself.

using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Pci;
using Vfio.Platform.Mm;
using Vfio.Platform.Proc;

namespace Vfio.Sim.Scenarios.Lifecycle;

/// <summary>A lifecycle scenario on functions bound to vfio-pci at boot.</summary>
internal abstract class LifecycleScenario : Scenario
{
    /// <summary>QEMU's edu on the default machine.</summary>
    public const string Edu = "0000:01:00.0";

    /// <summary>The NIC on the default machine.</summary>
    public const string Nic = "0000:05:00.0";

    /// <inheritdoc/>
    public override ScenarioKind Kind => ScenarioKind.Race;

    /// <summary>
    /// A user (<c>qemu</c>) holding edu open the way the unbind scenarios need it: container,
    /// group and device fds, 64 KiB mapped for DMA (16 pinned pages), and an eventfd on
    /// vfio-pci's REQ index for the unbind wait to ask through.
    /// </summary>
    protected static (SimProcess User, VfioSession Session, UserBuffer Buffer, int Req) OpenWithRequestChannel(VfioSim sim)
    {
        ArgumentNullException.ThrowIfNull(sim);
        SimProcess user = sim.Spawn("qemu");
        VfioSession session = sim.Open(user, Edu);
        UserBuffer buffer = VfioSim.Allocate(user, 1 << 16, MapFlags.MAP_POPULATE);
        session.Container.MapDma(buffer.Address, 0, buffer.Size);
        int req = user.Eventfd(0);
        ScenarioContext.Check(req >= 0, "eventfd() succeeds", ErrnoExtensions.FromReturn(req).Describe());
        session.Device.SetIrqEventfd(VfioPciIndex.IrqReq, req);
        return (user, session, buffer, req);
    }

    /// <summary>The functions the body needs bound to vfio-pci.</summary>
    protected virtual IReadOnlyList<string> Functions => [Edu];

    /// <inheritdoc/>
    public override void Configure(VfioSimBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.AddVfioPci().AddModule(sim =>
        {
            // On a machine that lacks what the body needs, bind nothing: Unmet says why.
            if (Unmet(sim) is null)
            {
                foreach (string bdf in Functions)
                {
                    sim.Bind(bdf, VfioPciDriver.DriverName);
                }
            }
        });
    }

    /// <inheritdoc/>
    public override string? Unmet(VfioSim sim)
    {
        ArgumentNullException.ThrowIfNull(sim);
        foreach (string bdf in Functions)
        {
            if (sim.Machine.Pci.Find(bdf) is not { } function)
            {
                return $"the machine has no {bdf}: {Name} runs on the default machine's functions ({string.Join(", ", Functions)})";
            }

            if (function.IommuGroup is null)
            {
                return $"{bdf} is in no IOMMU group (the machine has {(sim.Machine.Iommu is null ? "no IOMMU" : "an IOMMU that does not group it")}): vfio-pci cannot take it";
            }
        }

        return null;
    }
}
