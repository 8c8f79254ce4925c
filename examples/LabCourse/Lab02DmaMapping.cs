// Lab 2: container, mapping and the IOMMU fault after unmap — a solution on the public API
// (vfio-sim lab show 2). Map opens the container and edu's group, gives the container the
// type1 v2 IOMMU and maps a buffer for the device to read and write; Unmap removes exactly
// that mapping, so the grader's next DMA faults; Close closes the group, then the container.

using Vfio.Core.Client;
using Vfio.Core.Uapi;
using Vfio.Sim;
using Vfio.Sim.Labs;

namespace LabCourse;

/// <summary>A solution of lab 2.</summary>
internal sealed class DmaMapping : DmaMappingSolution
{
    private VfioContainerFd? _container;
    private VfioGroupFd? _group;
    private UserBuffer? _buffer;

    /// <inheritdoc/>
    public override ulong Map(LabEnvironment env)
    {
        // The device's group, as user space finds it: the iommu_group link in sysfs.
        string link = env.Sim.Machine.Sysfs.ReadLink($"/sys/bus/pci/devices/{env.Device}/iommu_group")
            ?? throw new InvalidOperationException($"{env.Device} has no IOMMU group");
        int groupId = int.Parse(link[(link.LastIndexOf('/') + 1)..], System.Globalization.CultureInfo.InvariantCulture);

        _container = new VfioContainerFd(env.Process);
        _group = new VfioGroupFd(env.Process, groupId);
        if ((_group.GetStatus() & VfioGroupFlags.Viable) == 0)
        {
            throw new InvalidOperationException($"group {groupId} is not viable: bind every device in it to vfio-pci");
        }

        // The group first, then the IOMMU model: a container without a group has no IOMMU to set.
        _group.SetContainer(_container);
        _container.SetIommu(VfioExtension.Type1v2);

        // edu reads the buffer and writes into it: the mapping must allow both.
        _buffer = VfioSim.Allocate(env.Process, Lab02DmaMapping.BufferSize);
        _container.MapDma(_buffer.Address, Lab02DmaMapping.Iova, Lab02DmaMapping.BufferSize,
            VfioType1Flags.MapRead | VfioType1Flags.MapWrite);
        return _buffer.Address;
    }

    /// <inheritdoc/>
    public override void Unmap(LabEnvironment env)
    {
        // Exactly the mapping: type1 v2 refuses an unmap that would cut it in two (EINVAL),
        // and an unmap of an IOVA where nothing is mapped "succeeds" and unmaps nothing.
        ulong unmapped = _container!.UnmapDma(Lab02DmaMapping.Iova, Lab02DmaMapping.BufferSize);
        if (unmapped != Lab02DmaMapping.BufferSize)
        {
            throw new InvalidOperationException($"UNMAP_DMA unmapped {unmapped} bytes, not {Lab02DmaMapping.BufferSize}");
        }
    }

    /// <inheritdoc/>
    public override void Close(LabEnvironment env)
    {
        _group?.Dispose();
        _container?.Dispose();
        _buffer?.Dispose();
        (_group, _container, _buffer) = (null, null, null);
    }
}
