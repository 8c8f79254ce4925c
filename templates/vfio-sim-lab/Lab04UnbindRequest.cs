// Lab 4: the unbind wait and a cooperative REQ handler.
// Read the handout first: vfio-sim lab show 4 (or docs/labs/lab04-unbind-request.md).
// The grader calls Start as your process, with edu (env.Device) bound to vfio-pci; when
// Start returns, an administrator's process unbinds edu. The kernel waits for your device
// fd and asks for it through the REQ eventfd: give everything back when it asks.

using Vfio.Sim.Labs;

namespace VfioSimLab;

public sealed class UnbindRequestUser : UnbindRequestSolution
{
    public override void Start(LabEnvironment env)
    {
        // TODO step 1: open edu (env.Sim.Open(env.Process, env.Device)), allocate a buffer
        //   (VfioSim.Allocate) and map it for DMA (session.Container.MapDma).
        // TODO step 2: create an eventfd (env.Process.Eventfd) and register it on the device
        //   request index (session.Device.SetIrqEventfd(VfioPciIndex.IrqReq, fd)).
        // TODO step 3: start a thread of your process (env.Process.SpawnThread(name, body))
        //   that blocks in env.Process.Read on that eventfd and, once it returns, releases what
        //   step 1 and 2 opened and mapped. Which fd is the kernel waiting for? (Hints.)
        // TODO step 4: return, so that the grader can start the unbind.
        throw new NotImplementedException("lab 4: Start is not written yet (handout steps 1 to 4)");
    }
}
