// The loaded 2016-design pinning sample (VfioSimBuilder.AddLegacyPinSample).

using Vfio.Mdev.Design2016;

namespace Vfio.Sim;

public sealed partial class VfioSim
{
    /// <summary>The 2016-API pinning sample, or null unless the builder added it (<see cref="VfioSimBuilder.AddLegacyPinSample"/>).</summary>
    public LegacyPinSample? LegacyPin { get; internal set; }
}
