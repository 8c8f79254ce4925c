// The host's view of mediated devices: the mdev core and the sample vendor drivers the
// builder loaded.

using Vfio.Mdev;

namespace Vfio.Sim;

public sealed partial class VfioSim
{
    /// <summary>The mdev core, or null when the builder did not load it (<see cref="VfioSimBuilder.AddMdev"/>).</summary>
    public MdevCore? Mdev { get; internal set; }
}
