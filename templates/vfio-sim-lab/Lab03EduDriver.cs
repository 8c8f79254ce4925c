// Lab 3: a user-space edu driver — registers, DMA and an interrupt.
// Read the handout first: vfio-sim lab show 3 (or docs/labs/lab03-edu-driver.md).
// The grader calls Run once, as your process, with edu (env.Device) already bound to
// vfio-pci. edu's registers are in the handout's table. The device works only while your
// process sleeps: wait for its interrupts in poll() or read(), never in a busy loop.

using Vfio.Sim.Labs;

namespace VfioSimLab;

public sealed class EduDriver : EduDriverSolution
{
    public override EduDriverResult Run(LabEnvironment env, EduAssignment assignment)
    {
        // TODO step 1: open the container, the group and the device of env.Device as
        //   env.Process (env.Sim.Open gives you a VfioSession with all three).
        // TODO step 2: reset the device, then turn on memory decoding and bus mastering in
        //   PCI_COMMAND (session.Device.ReadConfig16/WriteConfig16 with PciRegs.Command).
        // TODO step 3: map BAR0 (session.Device.MmapRegion(VfioPciIndex.Bar0, ...)), read the
        //   identification register, write assignment.LivenessProbe to the liveness register
        //   and read it back.
        // TODO step 4: an eventfd (env.Process.Eventfd) on edu's MSI
        //   (session.Device.SetIrqEventfd(VfioPciIndex.IrqMsi, fd)); ask edu for an interrupt
        //   when the factorial of assignment.FactorialOperand is done, sleep in
        //   env.Process.Poll until the eventfd fires, env.Process.Read its count, acknowledge
        //   edu and read the result.
        // TODO step 5: a buffer (VfioSim.Allocate), mapped for DMA (session.Container.MapDma)
        //   at an IOVA below 256 MiB; put assignment.Payload in it, have edu's DMA engine copy
        //   it to edu's buffer and back to another place of yours (IOVAs, not addresses),
        //   waiting for the completion interrupt each time; read what came back.
        // TODO step 6: clean up: UnmapDma what you mapped, free the buffer, disable the MSI
        //   (session.Device.DisableIrqs), close the eventfd and dispose the session.
        // TODO step 7: return new EduDriverResult(identification, liveness, factorial, bytesBack).
        throw new NotImplementedException("lab 3: Run is not written yet (handout steps 1 to 7)");
    }
}
