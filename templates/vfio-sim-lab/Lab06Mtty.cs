// Lab 6: mdev — an mtty over its serial line.
// Read the handout first: vfio-sim lab show 6 (or docs/labs/lab06-mtty.md).
// The grader calls CreateInstance, then Talk (with a cable on port 0 and the grader at its
// far end), then RemoveInstance, each as your process. env.Device is the instance's UUID.

using Vfio.Sim.Labs;

namespace VfioSimLab;

public sealed class MttyUser : MttySolution
{
    public override void CreateInstance(LabEnvironment env)
    {
        // TODO step 1: write the UUID to the create file of the mtty-1 type
        //   (Lab06Mtty.TypeDir) with env.Sim.SysfsWrite(path, value, env.Process).
        throw new NotImplementedException("lab 6: CreateInstance is not written yet (handout step 1)");
    }

    public override string Talk(LabEnvironment env, string line)
    {
        // TODO step 2: open the instance through vfio (env.Sim.OpenMdev) and call GetInfo on
        //   its device before anything else.
        // TODO step 3: program port 0's UART in BAR0 (session.Device.Read/Write of one byte at
        //   the register's offset) and transmit line and a newline, one byte when THRE says so.
        // TODO step 4: an eventfd (env.Process.Eventfd) on MSI or INTx
        //   (session.Device.SetIrqEventfd), the UART's receive interrupt on, then sleep in
        //   env.Process.Poll until it fires; read the eventfd, then the received bytes up to
        //   the newline.
        // TODO step 5: interrupt off (IER and session.Device.DisableIrqs), dispose the session,
        //   close the eventfd; return the reply without its newline.
        throw new NotImplementedException("lab 6: Talk is not written yet (handout steps 2 to 5)");
    }

    public override void RemoveInstance(LabEnvironment env)
    {
        // TODO step 5: write 1 to the instance's remove file under /sys/bus/mdev/devices
        //   (env.Sim.SysfsWrite), once everything of it is closed.
        throw new NotImplementedException("lab 6: RemoveInstance is not written yet (handout step 5)");
    }
}
