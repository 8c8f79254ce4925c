// The builder's entry point for the mdma sample: the mdev core, then the sample module
// that registers the mdma parent and its two types.

using Vfio.Mdev.Samples.Mdma;

namespace Vfio.Sim;

public sealed partial class VfioSimBuilder
{
    /// <summary>
    /// Loads the mdev core (and vfio and type1), then the mdma sample with
    /// <paramref name="options"/>: a mediated DMA engine that pins guest pages with
    /// vfio_pin_pages, copies with vfio_dma_rw and unpins in its dma_unmap callback
    /// (<see cref="MdmaOptions.IgnoreDmaUnmap"/> loads the driver that does not).
    /// Its parent is <c>/sys/devices/virtual/mdma/mdma</c>; see <see cref="VfioSim.Mdma"/>.
    /// </summary>
    public VfioSimBuilder AddMdma(MdmaOptions? options = null)
    {
        AddMdev();
        MdmaOptions o = options ?? new MdmaOptions();
        return AddModule(sim => sim.Mdma = MdmaSample.Load(sim.Machine, o));
    }
}
