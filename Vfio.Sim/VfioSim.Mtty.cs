// The host's view of the mtty sample the builder loaded.

using Vfio.Mdev.Samples.Mtty;

namespace Vfio.Sim;

public sealed partial class VfioSim
{
    /// <summary>The mtty sample (types, pool, cables), or null when the builder did not load it (<see cref="VfioSimBuilder.AddMtty"/>).</summary>
    public MttyModule? Mtty { get; internal set; }
}
