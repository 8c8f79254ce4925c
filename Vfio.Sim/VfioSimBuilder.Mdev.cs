// The builder's mediated-device modules: the mdev core, then the sample vendor drivers
// (each in its own file) that register parents on it.

using Vfio.Mdev;

namespace Vfio.Sim;

public sealed partial class VfioSimBuilder
{
    private MdevOptions? _mdev;

    /// <summary>Loads the mdev core (and vfio and type1) with <paramref name="options"/> (its design variants): /sys/bus/mdev, ready for parents.</summary>
    public VfioSimBuilder AddMdev(MdevOptions? options = null)
    {
        AddType1();
        _mdev = options ?? _mdev ?? new MdevOptions();
        return this;
    }

    /// <summary>Loads the mdev core with the design variants <paramref name="design"/> applies to its current ones.</summary>
    public VfioSimBuilder UseMdevDesign(Func<MdevDesign, MdevDesign> design)
    {
        ArgumentNullException.ThrowIfNull(design);
        MdevOptions options = _mdev ?? new MdevOptions();
        AddMdev(options with { Design = design(options.Design) });
        return this;
    }
}
