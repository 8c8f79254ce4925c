// Not a kernel file: a scenario made from a body of the caller's own (Scenario.Create), so
// a CI author explores it with the race lab as the catalogue's scenarios are, and a replay
// file of it replays through a catalogue that holds it (ScenarioCatalog.Default.With(...)).

using Vfio.Sim.Scenarios;

namespace Vfio.Sim.Races;

/// <summary>A race scenario whose configuration and body are delegates.</summary>
internal sealed class BodyScenario(string name, string description, Action<VfioSimBuilder>? configure, Action<ScenarioContext> body) : Scenario
{
    public override string Name => name;

    public override string Description => description;

    public override ScenarioKind Kind => ScenarioKind.Race;

    public override void Configure(VfioSimBuilder builder)
    {
        if (configure is null)
        {
            base.Configure(builder);
        }
        else
        {
            ArgumentNullException.ThrowIfNull(builder);
            configure(builder);
        }
    }

    public override void Execute(ScenarioContext context) => body(context);
}
