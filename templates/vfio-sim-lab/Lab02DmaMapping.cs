// Lab 2: container, mapping and the IOMMU fault after unmap.
// Read the handout first: vfio-sim lab show 2 (or docs/labs/lab02-dma-mapping.md).
// The grader calls Map, then lets edu DMA through your mapping, then Unmap, then tries the
// DMA again (it must fault), then Close. Keep what you open in fields.

using Vfio.Core.Client;
using Vfio.Core.Uapi;
using Vfio.Sim;
using Vfio.Sim.Labs;

namespace VfioSimLab;

public sealed class DmaMapping : DmaMappingSolution
{
    // Keep here what Map opens, for Unmap and Close, e.g.
    //   private VfioContainerFd? _container;
    //   private VfioGroupFd? _group;
    //   private UserBuffer? _buffer;

    public override ulong Map(LabEnvironment env)
    {
        // TODO step 1: open the container (new VfioContainerFd(env.Process)) and the group of
        //   env.Device (env.Sim.GroupOf), put the group in the container, choose
        //   VfioExtension.Type1v2 as the container's IOMMU.
        // TODO step 2: allocate Lab02DmaMapping.BufferSize bytes (VfioSim.Allocate) and map
        //   them at Lab02DmaMapping.Iova so that edu may read AND write them.
        //   Return the buffer's address.
        throw new NotImplementedException("lab 2: Map is not written yet (handout steps 1 and 2)");
    }

    public override void Unmap(LabEnvironment env)
    {
        // TODO step 3: unmap exactly what Map mapped.
        throw new NotImplementedException("lab 2: Unmap is not written yet (handout step 3)");
    }

    public override void Close(LabEnvironment env)
    {
        // TODO step 4: close the group, then the container, and free the buffer.
        throw new NotImplementedException("lab 2: Close is not written yet (handout step 4)");
    }
}
