// The builder's switch to the 2016 mdev design (docs/mdev.md, "The 2016 design"): the mdev
// core with the 2016 vendor API and vfio_mdev bridge, and type1 with the 2016 notifier chain,
// per-address-space external pins and the mapping-mm unmap rule. AddLegacyPinSample loads the
// 2016-API pinning sample on top.

using Vfio.Mdev;
using Vfio.Mdev.Design2016;

namespace Vfio.Sim;

public sealed partial class VfioSimBuilder
{
    /// <summary>
    /// Runs the 2016 mdev design (the "Add Mediated device support" series): vendors register
    /// parent_ops with <see cref="Mdev2016Core"/>, the vfio_mdev bridge forwards to them, a
    /// vendor may refuse removal (EBUSY); type1 notifies DMA_UNMAP through registered
    /// notifiers (pinning needs one), tracks external pins per address space, and lets only
    /// the mapping address space unmap. Today's design stays the default.
    /// </summary>
    public VfioSimBuilder UseMdevDesign2016()
    {
        MdevOptions options = _mdev ?? new MdevOptions();
        AddMdev(options with { Design = options.Design with { Api = MdevApi.Series2016 } });
        UseDesign(d => d with { UnmapOnlyByMappingMm = true, DmaUnmapNotifierChain = true, ExternalPinsPerAddressSpace = true });
        if (!_mdev2016)
        {
            _mdev2016 = true;
            AddModule(sim => Mdev2016Core.Load(sim.Machine));
        }

        return this;
    }

    /// <summary>Loads the 2016-API pinning sample (<see cref="LegacyPinSample"/>, type <c>legacy_pin-1</c>); implies <see cref="UseMdevDesign2016"/>.</summary>
    public VfioSimBuilder AddLegacyPinSample()
    {
        UseMdevDesign2016();
        AddModule(sim => sim.LegacyPin = LegacyPinSample.Load(sim.Machine));
        return this;
    }

    private bool _mdev2016;
}
