// The builder's mtty module: the mdev core, then samples/vfio-mdev/mtty.c's parent with
// its two types (Vfio.Mdev.Samples.Mtty).

using Vfio.Mdev.Samples.Mtty;

namespace Vfio.Sim;

public sealed partial class VfioSimBuilder
{
    private bool _mtty;

    /// <summary>
    /// Loads the mdev core and the mtty sample: /sys/devices/virtual/mtty/mtty offers
    /// mtty-1 and mtty-2 from 24 ports. The loaded module is <see cref="VfioSim.Mtty"/>.
    /// </summary>
    public VfioSimBuilder AddMtty()
    {
        AddMdev();
        if (!_mtty)
        {
            _mtty = true;
            AddModule(static sim => sim.Mtty = MttyModule.Load(sim.Machine));
        }

        return this;
    }
}
