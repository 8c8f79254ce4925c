// The mdma sample's instance types (no kernel counterpart): mdma-1 moves up to 64 pages a
// command, mdma-2 up to 1024, so one command needs more than one vfio_pin_pages call.

namespace Vfio.Mdev.Samples.Mdma;

/// <summary>An mdma instance type: how many pages one command may move.</summary>
public sealed class MdmaType : MdevType
{
    internal MdmaType(string sysfsName, string prettyName, int maxPages)
        : base(sysfsName, prettyName)
    {
        MaxPages = maxPages;
    }

    /// <summary>The largest transfer of one command, in pages.</summary>
    public int MaxPages { get; }
}
