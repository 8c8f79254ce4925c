// One device opened by one process through the typed client: its container, group and
// device fds, closed in the order a careful program closes them (device, group, container).

using Vfio.Core.Client;

namespace Vfio.Sim;

/// <summary>
/// The container, group and device fds of one opened device (see <see cref="VfioSim.Open"/>).
/// <see cref="Dispose"/> closes the device, then the group, then the container.
/// </summary>
public sealed class VfioSession : IDisposable
{
    internal VfioSession(string bdf, int groupId, VfioContainerFd container, VfioGroupFd group, VfioDeviceFd device)
    {
        Bdf = bdf;
        GroupId = groupId;
        Container = container;
        Group = group;
        Device = device;
    }

    /// <summary>The function, <c>0000:01:00.0</c>.</summary>
    public string Bdf { get; }

    /// <summary>Its IOMMU group (<c>/dev/vfio/GroupId</c>).</summary>
    public int GroupId { get; }

    /// <summary>The container fd, with the IOMMU backend set: map and unmap DMA here.</summary>
    public VfioContainerFd Container { get; }

    /// <summary>The group fd.</summary>
    public VfioGroupFd Group { get; }

    /// <summary>The device fd: regions, IRQs, reset.</summary>
    public VfioDeviceFd Device { get; }

    /// <summary>Closes the device, group and container fds, in that order.</summary>
    public void Dispose()
    {
        Device.Dispose();
        Group.Dispose();
        Container.Dispose();
    }

    /// <inheritdoc/>
    public override string ToString() => $"{Bdf} (group {GroupId}) of {Container.Process}";
}
