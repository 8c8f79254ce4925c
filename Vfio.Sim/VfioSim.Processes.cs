// User space: processes with the credentials and limits a lab or an experiment needs,
// the vfio.rst sequence that takes a process from nothing to an open device (container,
// group, SET_CONTAINER, SET_IOMMU, GET_DEVICE_FD) through the typed client, and user
// memory to map for DMA.

using Vfio.Core.Client;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Mm;
using Vfio.Platform.Proc;

namespace Vfio.Sim;

public sealed partial class VfioSim
{
    /// <summary>
    /// A new process (what <c>fork</c> + <c>exec</c> of a new program gives): a fresh address
    /// space and no open files. Root with every capability unless <paramref name="credentials"/>
    /// says otherwise (<see cref="Credentials.User"/> is uid 1000 with none); Linux's default
    /// limits (RLIMIT_MEMLOCK 8 MiB, 1024 fds) unless <paramref name="limits"/> says otherwise.
    /// </summary>
    public SimProcess Spawn(string comm, Credentials? credentials = null, ResourceLimits? limits = null)
        => Machine.CreateProcess(comm, credentials ?? Credentials.Root, limits);

    /// <summary>
    /// Opens <paramref name="bdf"/> for <paramref name="process"/> the way vfio.rst does:
    /// <c>/dev/vfio/vfio</c>, the function's group <c>/dev/vfio/N</c>, VFIO_GROUP_SET_CONTAINER,
    /// VFIO_SET_IOMMU(<paramref name="iommuType"/>) and VFIO_GROUP_GET_DEVICE_FD. The device
    /// must be bound to a vfio driver (see <see cref="Bind"/>). Any step the kernel refuses
    /// throws <see cref="VfioException"/>, after closing what was opened. <paramref name="bdf"/>
    /// may carry vfio-pci's option, as GET_DEVICE_FD takes it: <c>"0000:08:00.1 vf_token=&lt;uuid&gt;"</c>
    /// opens a VF of a PF bound to vfio-pci.
    /// </summary>
    public VfioSession Open(SimProcess process, string bdf, uint iommuType = VfioExtension.Type1v2)
    {
        ArgumentNullException.ThrowIfNull(process);
        ArgumentException.ThrowIfNullOrEmpty(bdf);
        int space = bdf.IndexOf(' ', StringComparison.Ordinal);
        string name = space < 0 ? bdf : bdf[..space];
        return OpenInGroup(process, bdf, GroupOf(name), iommuType);
    }

    // The vfio.rst sequence on group /dev/vfio/<group>, GET_DEVICE_FD with <deviceName>.
    private static VfioSession OpenInGroup(SimProcess process, string deviceName, int group, uint iommuType)
    {
        ArgumentNullException.ThrowIfNull(process);
        int space = deviceName.IndexOf(' ', StringComparison.Ordinal);
        string name = space < 0 ? deviceName : deviceName[..space];
        VfioContainerFd? container = null;
        VfioGroupFd? groupFd = null;
        try
        {
            container = new VfioContainerFd(process);
            groupFd = new VfioGroupFd(process, group);
            groupFd.SetContainer(container);
            container.SetIommu(iommuType);
            VfioDeviceFd device = groupFd.GetDeviceFd(deviceName);
            return new VfioSession(name, group, container, groupFd, device);
        }
        catch (VfioException)
        {
            groupFd?.Dispose();
            container?.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Anonymous, private, read-write memory of <paramref name="size"/> bytes in
    /// <paramref name="process"/> (<c>mmap(NULL, size, PROT_READ|PROT_WRITE,
    /// MAP_PRIVATE|MAP_ANONYMOUS|extra)</c>), for instance to map for DMA. Add
    /// <see cref="MapFlags.MAP_POPULATE"/> to fault it in now, <see cref="MapFlags.MAP_HUGETLB"/>
    /// for huge pages. A refused mmap throws <see cref="VfioException"/> with the errno.
    /// </summary>
    public static UserBuffer Allocate(SimProcess process, ulong size, MapFlags extra = MapFlags.None)
    {
        ArgumentNullException.ThrowIfNull(process);
        long va = process.Mmap(0, size, Prot.PROT_READ | Prot.PROT_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | extra);
        if (va < 0)
        {
            throw new VfioException(ErrnoExtensions.FromReturn(va), $"mmap(NULL, {size}, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS{(extra == MapFlags.None ? "" : "|" + extra)})", ErrorReason.Current);
        }

        return new UserBuffer(process, (ulong)va, size);
    }
}
