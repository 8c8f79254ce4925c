// The host's view of the display samples the builder loaded.

using Vfio.Mdev.Samples.Mbochs;
using Vfio.Mdev.Samples.Mdpy;

namespace Vfio.Sim;

public sealed partial class VfioSim
{
    /// <summary>The mdpy sample, or null when the builder did not load it (<see cref="VfioSimBuilder.AddMdpy"/>).</summary>
    public Mdpy? Mdpy { get; internal set; }

    /// <summary>The mbochs sample, or null when the builder did not load it (<see cref="VfioSimBuilder.AddMbochs"/>).</summary>
    public Mbochs? Mbochs { get; internal set; }
}
