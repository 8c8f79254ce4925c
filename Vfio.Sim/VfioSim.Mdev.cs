// The host's view of mediated devices: the mdev core and the sample vendor drivers the
// builder loaded, and the sysfs writes an administrator makes to create and remove an
// mdev (echo <uuid> > .../mdev_supported_types/<type>/create, echo 1 > .../remove).
// Every helper goes through sysfs, so it runs the kernel's paths and errnos.

using System.Globalization;
using Vfio.Core.Client;
using Vfio.Core.Uapi;
using Vfio.Mdev;
using Vfio.Platform.Proc;

namespace Vfio.Sim;

public sealed partial class VfioSim
{
    /// <summary>The mdev core, or null when the builder did not load it (<see cref="VfioSimBuilder.AddMdev"/>).</summary>
    public MdevCore? Mdev { get; internal set; }

    /// <summary>
    /// Creates an mdev: writes its UUID to
    /// <c>/sys/class/mdev_bus/<paramref name="parent"/>/mdev_supported_types/<paramref name="type"/>/create</c>.
    /// <paramref name="parent"/> is the parent device's name (<c>mtty</c>), <paramref name="type"/>
    /// the type's directory (<c>mtty-1</c>). Without <paramref name="uuid"/> a random one comes
    /// from the kernel's seeded generator, so a run replays. Returns the UUID (the device's
    /// name). A refused write throws <see cref="VfioException"/> with the errno and the
    /// kernel's reason (EEXIST, EUSERS, ENODEV, the vendor's probe errno…).
    /// </summary>
    public Guid CreateMdev(string parent, string type, Guid? uuid = null, SimProcess? caller = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(parent);
        ArgumentException.ThrowIfNullOrEmpty(type);
        Guid id = uuid ?? RandomUuid();
        SysfsWrite($"/sys/class/mdev_bus/{parent}/mdev_supported_types/{type}/create", id.ToString("D"), caller);
        return id;
    }

    /// <summary>
    /// Removes an mdev: <c>echo 1 &gt; /sys/bus/mdev/devices/&lt;uuid&gt;/remove</c>. Blocks while
    /// user space holds its vfio device open, as on Linux. A refused write throws
    /// <see cref="VfioException"/> (ENOENT when there is no such device or its removal already
    /// started, EAGAIN while it is still being created, ENODEV while its parent unregisters).
    /// </summary>
    public void RemoveMdev(Guid uuid, SimProcess? caller = null)
        => SysfsWrite($"/sys/bus/mdev/devices/{uuid:D}/remove", "1", caller);

    /// <summary>The vfio group of mdev <paramref name="uuid"/> (<c>readlink /sys/bus/mdev/devices/&lt;uuid&gt;/iommu_group</c>, <c>/dev/vfio/N</c>); throws when it has none.</summary>
    public int MdevGroupOf(Guid uuid)
    {
        string link = Machine.Sysfs.ReadLink($"/sys/bus/mdev/devices/{uuid:D}/iommu_group")
            ?? throw new InvalidOperationException($"mdev {uuid:D} has no IOMMU group (no such device, or its vendor driver registered no vfio device)");
        return int.Parse(link.AsSpan(link.LastIndexOf('/') + 1), CultureInfo.InvariantCulture);
    }

    /// <summary>
    /// Opens mdev <paramref name="uuid"/> for <paramref name="process"/> as <see cref="Open(SimProcess, string, uint)"/>
    /// opens a PCI function: its group <c>/dev/vfio/N</c>, a new container with
    /// <paramref name="iommuType"/>, and VFIO_GROUP_GET_DEVICE_FD with the UUID as the device name.
    /// </summary>
    public VfioSession OpenMdev(SimProcess process, Guid uuid, uint iommuType = VfioExtension.Type1v2)
        => OpenInGroup(process, uuid.ToString("D"), MdevGroupOf(uuid), iommuType);

    // A version-4 UUID from the kernel's seeded random (uuid_gen()).
    private Guid RandomUuid()
    {
        Span<byte> b = stackalloc byte[16];
        BitConverter.TryWriteBytes(b, Kernel.Random.NextU64());
        BitConverter.TryWriteBytes(b[8..], Kernel.Random.NextU64());
        b[7] = (byte)((b[7] & 0x0F) | 0x40); // version 4 (Guid's little-endian time_hi_and_version)
        b[8] = (byte)((b[8] & 0x3F) | 0x80); // RFC 4122 variant
        return new Guid(b);
    }
}
