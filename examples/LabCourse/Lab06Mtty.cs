// Lab 6: an mtty mediated device over its serial line — a solution on the public API
// (vfio-sim lab show 6). Create the instance through sysfs, drive port 0's UART through the
// vfio device with the receive interrupt on an MSI eventfd, and remove the instance.

using System.Text;
using Vfio.Core.Client;
using Vfio.Core.Uapi;
using Vfio.Platform.Fs;
using Vfio.Platform.Proc;
using Vfio.Sim;
using Vfio.Sim.Labs;

namespace LabCourse;

/// <summary>A solution of lab 6.</summary>
internal sealed class Lab06MttySolution : MttySolution
{
    // 16550A registers in BAR0 and the bits this solution uses.
    private const int Thr = 0, Rbr = 0, Ier = 1, Fcr = 2, Lcr = 3, Lsr = 5;
    private const byte IerRdi = 0x01, FcrEnableAndClear = 0x07, Lcr8N1 = 0x03, LsrDr = 0x01, LsrThre = 0x20;

    /// <inheritdoc/>
    public override void CreateInstance(LabEnvironment env)
        => env.Sim.SysfsWrite(Lab06Mtty.TypeDir + "/create", env.Device!, env.Process);

    /// <inheritdoc/>
    public override string Talk(LabEnvironment env, string line)
    {
        SimProcess p = env.Process;
        Guid uuid = Guid.Parse(env.Device!);
        int eventfd = p.Eventfd(0, EventFdContext.EFD_NONBLOCK);
        var reply = new StringBuilder();
        using (VfioSession s = env.Sim.OpenMdev(p, uuid))
        {
            VfioDeviceFd dev = s.Device;
            dev.GetInfo(); // mtty learns its IRQ count here, before any SET_IRQS
            SetReg(dev, Lcr, Lcr8N1);
            SetReg(dev, Fcr, FcrEnableAndClear);
            dev.SetIrqEventfd(VfioPciIndex.IrqMsi, eventfd);
            SetReg(dev, Ier, IerRdi);
            foreach (char c in line + "\n")
            {
                while ((Reg(dev, Lsr) & LsrThre) == 0)
                {
                    p.Poll([], 1); // the line is busy: wait a millisecond
                }

                SetReg(dev, Thr, (byte)c);
            }

            bool done = false;
            byte[] count = new byte[8];
            while (!done)
            {
                PollFd[] fds = [new PollFd(eventfd, PollEvents.POLLIN)];
                if (p.Poll(fds, 1000) <= 0)
                {
                    break; // no interrupt within a second: give up
                }

                p.Read(eventfd, count);
                while (!done && (Reg(dev, Lsr) & LsrDr) != 0)
                {
                    char c = (char)Reg(dev, Rbr);
                    if (c == '\n')
                    {
                        done = true;
                    }
                    else
                    {
                        reply.Append(c);
                    }
                }
            }

            SetReg(dev, Ier, 0);
            dev.DisableIrqs(VfioPciIndex.IrqMsi);
        }

        p.Close(eventfd);
        return reply.ToString();
    }

    /// <inheritdoc/>
    public override void RemoveInstance(LabEnvironment env)
        => env.Sim.SysfsWrite($"/sys/bus/mdev/devices/{env.Device}/remove", "1", env.Process);

    private static byte Reg(VfioDeviceFd dev, int reg)
    {
        byte[] b = new byte[1];
        dev.Read(VfioPciIndex.Bar0, reg, b);
        return b[0];
    }

    private static void SetReg(VfioDeviceFd dev, int reg, byte value) => dev.Write(VfioPciIndex.Bar0, reg, [value]);
}
