// The builder's display samples: mdpy (a plain framebuffer) and mbochs (Bochs dispi with
// dma-buf), each a vendor driver on the mdev core.

using Vfio.Mdev.Samples.Mbochs;
using Vfio.Mdev.Samples.Mdpy;

namespace Vfio.Sim;

public sealed partial class VfioSimBuilder
{
    /// <summary>Loads the mdev core and the mdpy sample with its module parameter <paramref name="count"/> (live devices allowed).</summary>
    public VfioSimBuilder AddMdpy(int count = Mdpy.DefaultCount)
    {
        AddMdev();
        return AddModule(sim => sim.Mdpy = Mdpy.Load(sim.Machine, count));
    }

    /// <summary>Loads the mdev core and the mbochs sample with a video-memory pool of <paramref name="memoryMiB"/> MiB (its module parameter <c>count</c>).</summary>
    public VfioSimBuilder AddMbochs(int memoryMiB = Mbochs.DefaultMBytes)
    {
        AddMdev();
        return AddModule(sim => sim.Mbochs = Mbochs.Load(sim.Machine, memoryMiB));
    }
}
