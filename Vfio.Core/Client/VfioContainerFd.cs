// The typed user-space client for /dev/vfio/vfio (the container ioctls of
// drivers/vfio/container.c and the type1 ioctls of drivers/vfio/vfio_iommu_type1.c),
// built only on a SimProcess's syscalls.

using Vfio.Core.Uapi;
using Vfio.Platform.Proc;

namespace Vfio.Core.Client;

/// <summary>A container fd (<c>/dev/vfio/vfio</c>) of one process. Every failed call throws <see cref="VfioException"/>.</summary>
public sealed class VfioContainerFd : VfioFd
{
    /// <summary>The container's path.</summary>
    public const string DefaultPath = "/dev/vfio/vfio";

    /// <summary>Opens <paramref name="path"/> (normally <c>/dev/vfio/vfio</c>) in <paramref name="process"/>.</summary>
    public VfioContainerFd(SimProcess process, string path = DefaultPath)
        : base(process, VfioSyscalls.Open(process, path), "container")
    {
    }

    /// <summary>VFIO_GET_API_VERSION: the API version (<see cref="VfioExtension.ApiVersion"/>).</summary>
    public int GetApiVersion() => (int)Ioctl(VfioIoctl.GetApiVersion);

    /// <summary>VFIO_CHECK_EXTENSION: whether <paramref name="extension"/> (a <see cref="VfioExtension"/> id) is supported.</summary>
    public bool CheckExtension(uint extension) => Ioctl(VfioIoctl.CheckExtension, extension) > 0;

    /// <summary>VFIO_SET_IOMMU: selects the IOMMU backend <paramref name="type"/> (<see cref="VfioExtension.Type1v2"/>…).</summary>
    public void SetIommu(uint type) => Ioctl(VfioIoctl.SetIommu, type);

    /// <summary>VFIO_IOMMU_GET_INFO, with the capability chain parsed.</summary>
    public VfioIommuInfo GetIommuInfo()
    {
        ThrowIfDisposed();
        (VfioIommuType1Info info, IReadOnlyList<VfioInfoCap> caps) = VfioInfoCall.Get(
            Process, Fd, VfioIoctl.IommuGetInfo, Kind, new VfioIommuType1Info(), VfioType1Flags.InfoCaps, CapOffsetOfType1Info);
        return VfioIommuInfo.From(info, caps);
    }

    /// <summary>VFIO_IOMMU_MAP_DMA: maps <paramref name="size"/> bytes of this process at <paramref name="vaddr"/> at <paramref name="iova"/>.</summary>
    /// <param name="vaddr">The process virtual address.</param>
    /// <param name="iova">The I/O virtual address.</param>
    /// <param name="size">The size in bytes.</param>
    /// <param name="flags"><see cref="VfioType1Flags.MapRead"/>, <see cref="VfioType1Flags.MapWrite"/>, <see cref="VfioType1Flags.MapVaddr"/>.</param>
    public void MapDma(ulong vaddr, ulong iova, ulong size, uint flags = VfioType1Flags.MapRead | VfioType1Flags.MapWrite)
    {
        ThrowIfDisposed();
        var map = new VfioIommuType1DmaMap { Argsz = (uint)VfioArg.SizeOf<VfioIommuType1DmaMap>(), Flags = flags, Vaddr = vaddr, Iova = iova, Size = size };
        VfioSyscalls.Ioctl(Process, Fd, VfioIoctl.IommuMapDma, Kind, ref map);
    }

    /// <summary>VFIO_IOMMU_UNMAP_DMA: unmaps [<paramref name="iova"/>, +<paramref name="size"/>) and returns the size actually unmapped.</summary>
    /// <param name="iova">The first I/O virtual address.</param>
    /// <param name="size">The size in bytes (0 with <see cref="VfioType1Flags.UnmapAll"/>).</param>
    /// <param name="flags"><see cref="VfioType1Flags.UnmapAll"/>, <see cref="VfioType1Flags.UnmapVaddr"/>; dirty bitmaps need a raw <see cref="VfioFd.Ioctl(uint, Span{byte})"/>.</param>
    public ulong UnmapDma(ulong iova, ulong size, uint flags = 0)
    {
        ThrowIfDisposed();
        var unmap = new VfioIommuType1DmaUnmap { Argsz = (uint)VfioArg.SizeOf<VfioIommuType1DmaUnmap>(), Flags = flags, Iova = iova, Size = size };
        VfioSyscalls.Ioctl(Process, Fd, VfioIoctl.IommuUnmapDma, Kind, ref unmap);
        return unmap.Size;
    }

    // offsetof(struct vfio_iommu_type1_info, cap_offset).
    private const int CapOffsetOfType1Info = 16;
}
