// The typed user-space client for a vfio group fd, /dev/vfio/<N> (the group ioctls of
// drivers/vfio/group.c), built only on a SimProcess's syscalls.

using System.Text;
using Vfio.Core.Uapi;
using Vfio.Platform.Proc;

namespace Vfio.Core.Client;

/// <summary>A group fd (<c>/dev/vfio/&lt;N&gt;</c>) of one process. Every failed call throws <see cref="VfioException"/>.</summary>
public sealed class VfioGroupFd : VfioFd
{
    /// <summary>Opens <c>/dev/vfio/<paramref name="groupId"/></c> in <paramref name="process"/>.</summary>
    public VfioGroupFd(SimProcess process, int groupId)
        : this(process, $"/dev/vfio/{groupId}")
    {
    }

    /// <summary>Opens the group node at <paramref name="path"/> (for instance <c>/dev/vfio/noiommu-0</c>) in <paramref name="process"/>.</summary>
    public VfioGroupFd(SimProcess process, string path)
        : base(process, VfioSyscalls.Open(process, path), "group")
    {
        Path = path;
    }

    /// <summary>The path the group was opened at.</summary>
    public string Path { get; }

    /// <summary>VFIO_GROUP_GET_STATUS: <see cref="VfioGroupFlags.Viable"/> and <see cref="VfioGroupFlags.ContainerSet"/>.</summary>
    public VfioGroupFlags GetStatus()
    {
        ThrowIfDisposed();
        var status = new VfioGroupStatus { Argsz = (uint)VfioArg.SizeOf<VfioGroupStatus>() };
        VfioSyscalls.Ioctl(Process, Fd, VfioIoctl.GroupGetStatus, Kind, ref status);
        return status.Flags;
    }

    /// <summary>VFIO_GROUP_SET_CONTAINER with <paramref name="container"/>'s fd.</summary>
    public void SetContainer(VfioContainerFd container)
    {
        ArgumentNullException.ThrowIfNull(container);
        SetContainer(container.Fd);
    }

    /// <summary>VFIO_GROUP_SET_CONTAINER with a raw fd (a container, an iommufd, or anything, to test the checks).</summary>
    public void SetContainer(int containerFd)
    {
        ThrowIfDisposed();
        VfioSyscalls.Ioctl(Process, Fd, VfioIoctl.GroupSetContainer, Kind, ref containerFd);
    }

    /// <summary>VFIO_GROUP_UNSET_CONTAINER.</summary>
    public void UnsetContainer() => Ioctl(VfioIoctl.GroupUnsetContainer);

    /// <summary>VFIO_GROUP_GET_DEVICE_FD: opens the device named <paramref name="name"/> (vfio-pci: <c>"0000:02:00.0"</c>, optionally with <c>" vf_token=&lt;uuid&gt;"</c>).</summary>
    public VfioDeviceFd GetDeviceFd(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        ThrowIfDisposed();
        byte[] arg = new byte[Encoding.UTF8.GetByteCount(name) + 1];
        Encoding.UTF8.GetBytes(name, arg);
        int fd = (int)VfioSyscalls.Ioctl(Process, Fd, VfioIoctl.GroupGetDeviceFd, Kind, arg);
        return new VfioDeviceFd(Process, fd);
    }

    /// <inheritdoc/>
    public override string ToString() => $"group fd {Fd} ({Path}) of {Process}";
}
