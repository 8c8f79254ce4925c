// `vfio-sim demo mtty`: the kernel's mtty sample driven the way its documentation
// (Documentation/driver-api/vfio-mediated-device.rst) drives it — create an instance through
// sysfs, open it through vfio, and use its UART through region reads and writes — then the
// simulator's addition, a cable on the port, and removal leaving nothing behind. Each step
// checks its result against what the kernel does; the steps live in MttyDemoRun.

namespace Vfio.Sim.Scenarios;

/// <summary>The mtty mediated-device demo (<c>mtty-demo</c>).</summary>
internal sealed class MttyDemo : Scenario
{
    /// <summary>The instance's UUID: the one vfio-mediated-device.rst uses in its example.</summary>
    public static readonly Guid Uuid = new("83b8f4f2-509f-382f-3c1e-e6bfe0fa1001");

    /// <inheritdoc/>
    public override string Name => "mtty-demo";

    /// <inheritdoc/>
    public override string Description =>
        "The mtty mediated device: create an mtty-2 instance through sysfs, open it through vfio, loop bytes through its " +
        "UART, then attach a cable and talk to the far end with the MSI eventfd firing, and remove the instance.";

    /// <inheritdoc/>
    public override ScenarioKind Kind => ScenarioKind.Demo;

    /// <inheritdoc/>
    public override void Configure(VfioSimBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        base.Configure(builder);
        builder.AddMtty();
    }

    /// <inheritdoc/>
    public override string? Unmet(VfioSim sim)
    {
        ArgumentNullException.ThrowIfNull(sim);
        return sim.Mtty is null ? "the mtty sample is not loaded (AddMtty() on the builder)" : null;
    }

    /// <inheritdoc/>
    public override void Execute(ScenarioContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        new MttyDemoRun(context).Run();
    }
}
