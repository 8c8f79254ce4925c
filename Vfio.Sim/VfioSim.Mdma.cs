// The host's view of the mdma sample: the loaded module, its parent, types and devices.

using Vfio.Mdev.Samples.Mdma;

namespace Vfio.Sim;

public sealed partial class VfioSim
{
    /// <summary>The mdma sample, or null when the builder did not load it (<see cref="VfioSimBuilder.AddMdma"/>).</summary>
    public MdmaSample? Mdma { get; internal set; }
}
