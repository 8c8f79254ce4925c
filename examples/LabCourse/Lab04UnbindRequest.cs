// Lab 4: hold edu open with a DMA mapping, and give it back when the kernel asks through
// the REQ eventfd, so that an administrator's unbind completes on the first request.

using Vfio.Core.Uapi;
using Vfio.Platform.Mm;
using Vfio.Platform.Proc;
using Vfio.Sim;
using Vfio.Sim.Labs;

namespace LabCourse;

/// <summary>Lab 4's solution.</summary>
internal sealed class UnbindRequestUser : UnbindRequestSolution
{
    private const ulong Iova = 0x10_0000;

    /// <inheritdoc/>
    public override void Start(LabEnvironment env)
    {
        ArgumentNullException.ThrowIfNull(env);
        SimProcess p = env.Process;
        VfioSession session = env.Sim.Open(p, env.Device!);
        UserBuffer buffer = VfioSim.Allocate(p, 64 * 1024, MapFlags.MAP_POPULATE);
        session.Container.MapDma(buffer.Address, Iova, buffer.Size);

        int req = p.Eventfd(0);
        session.Device.SetIrqEventfd(VfioPciIndex.IrqReq, req);
        p.SpawnThread("req-handler", () =>
        {
            // Blocks until vfio-pci relays the unbind's request, then gives everything back.
            byte[] count = new byte[8];
            p.Read(req, count);
            session.Container.UnmapDma(Iova, buffer.Size);
            session.Dispose();
            buffer.Dispose();
            p.Close(req);
        });
    }
}
