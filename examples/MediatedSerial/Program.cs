// MediatedSerial: a mediated device from creation to removal, as an administrator and a
// user-space driver see it, on the kernel's mtty sample (a PCI serial card whose UARTs are
// emulated by the host).
//
//   * create an mtty-1 instance by writing a UUID to its type's sysfs `create` file, and see
//     available_instances drop;
//   * open it through vfio like any device: its group /dev/vfio/N, a type1 container, the
//     device fd by UUID;
//   * drive its 16550A through region reads and writes: the sample loops every byte back;
//   * attach a cable (the simulator's addition): the far end is a System.IO.Pipelines duplex
//     pipe; a modem on it answers "AT" with "OK", and the guest's MSI eventfd fires;
//   * remove the instance while the device is still open: the write blocks until the user
//     closes it, as vfio's unregister path does on Linux.
// Every step checks what the kernel answers; the exit code is 0 only when all held.

using System.Buffers;
using System.IO.Pipelines;
using System.Text;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Mdev.Samples.Mtty;
using Vfio.Platform.Fs;
using Vfio.Platform.Proc;
using Vfio.Sim;

const string Types = "/sys/class/mdev_bus/mtty/mdev_supported_types";
const int Thr = 0, Rbr = 0, Ier = 1, Fcr = 2, Lcr = 3, Lsr = 5;
int failed = 0;

VfioSim sim = VfioSim.CreateBuilder().UseSeed(3).AddMtty().Build();
RunResult run = sim.Run(() =>
{
    SimProcess driver = sim.Spawn("serial-driver");

    // The administrator: one single-port instance (the UUID comes from the seeded kernel).
    Guid uuid = sim.CreateMdev("mtty", "mtty-1");
    Check(sim.SysfsRead($"{Types}/mtty-1/available_instances") == "23", $"created {uuid}: mtty-1 has 23 instances left");
    int group = sim.MdevGroupOf(uuid);
    Check(sim.Machine.Vfs.Exists($"/dev/vfio/{group}"), $"its vfio group is /dev/vfio/{group}");

    // The user-space driver: the usual vfio sequence, with the UUID as the device name.
    VfioSession session = sim.OpenMdev(driver, uuid);
    var uart = session.Device;
    // mtty learns its IRQ count from VFIO_DEVICE_GET_INFO: before that call it refuses
    // GET_IRQ_INFO and SET_IRQS (EINVAL), as the kernel's sample does. A driver asks first.
    Check(uart.GetInfo().Info.NumIrqs == 5, "VFIO_DEVICE_GET_INFO: 5 IRQ indexes");
    Check(uart.ReadConfig16(0) == 0x4348 && uart.ReadConfig16(2) == 0x3253, "config space shows the mtty card (4348:3253)");
    uart.Write(VfioPciIndex.Bar0, Lcr, [0x03]);   // 8 data bits, no parity, 1 stop bit
    uart.Write(VfioPciIndex.Bar0, Fcr, [0x07]);   // FIFO on, both cleared
    foreach (byte b in "loop"u8)
    {
        uart.Write(VfioPciIndex.Bar0, Thr, [b]);
    }

    Check(ReadLine(4) == "loop", "without a cable the port loops \"loop\" back into its receive FIFO");

    // The cable: a modem at the far end answers AT commands. Interrupts come through MSI.
    int msi = driver.Eventfd(0, EventFdContext.EFD_NONBLOCK);
    uart.SetIrqEventfd(VfioPciIndex.IrqMsi, msi);
    uart.Write(VfioPciIndex.Bar0, Ier, [0x01]);   // receive-data interrupt
    using (MttyCable cable = sim.Mtty!.Attach(uuid, port: 0))
    {
        foreach (byte b in "AT\r"u8)
        {
            uart.Write(VfioPciIndex.Bar0, Thr, [b]);
        }

        // The modem reads the command from the pipe and writes its answer into it.
        PipeReader fromGuest = cable.FarEnd.Input;
        Check(fromGuest.TryRead(out ReadResult command), "the modem has bytes to read");
        string at = Encoding.ASCII.GetString(command.Buffer.ToArray());
        fromGuest.AdvanceTo(command.Buffer.End);
        Check(at == "AT\r", $"the modem received {at.TrimEnd('\r')}");
        cable.FarEnd.Output.Write("OK\r\n"u8);
        Check(cable.FarEnd.Output.FlushAsync().IsCompleted, "the line took the answer without pausing the modem");
        cable.Deliver();

        Span<byte> count = stackalloc byte[8];
        Check(driver.Read(msi, count) == 8, "the MSI eventfd fired for the answer");
        Check(ReadLine(4) == "OK\r\n", "the driver read OK from the receive FIFO");
    }

    uart.DisableIrqs(VfioPciIndex.IrqMsi);
    driver.Close(msi);

    // Removing an instance that is open waits for the user, as unbinding a device does.
    bool removed = false;
    SimProcess admin = sim.Spawn("admin");
    KTask remover = admin.SpawnThread("remove", () =>
    {
        sim.RemoveMdev(uuid, admin);
        Volatile.Write(ref removed, true);
    });
    KTask.Msleep(1000);
    Check(!Volatile.Read(ref removed), "a second after `echo 1 > remove` the instance is still there: the driver holds it open");
    session.Dispose();
    remover.Join();
    Check(Volatile.Read(ref removed) && !sim.Machine.Vfs.Exists($"/dev/vfio/{group}"), "once the driver closed its fds the removal finished and the group went");
    Check(sim.SysfsRead($"{Types}/mtty-1/available_instances") == "24", "mtty-1 has all 24 instances again");

    // Reads `n` bytes from port 0's receive FIFO, one RBR read each while LSR shows data.
    string ReadLine(int n)
    {
        var text = new StringBuilder();
        Span<byte> b = stackalloc byte[1];
        for (int i = 0; i < n; i++)
        {
            uart.Read(VfioPciIndex.Bar0, Lsr, b);
            if ((b[0] & 0x01) == 0)
            {
                break;
            }

            uart.Read(VfioPciIndex.Bar0, Rbr, b);
            text.Append((char)b[0]);
        }

        return text.ToString();
    }
});

Check(run.Passed, $"the run completed: {run.Outcome}{(run.Passed ? "" : "\n" + run.Describe())}");
IReadOnlyList<string> broken = sim.CheckInvariants();
Check(broken.Count == 0, $"invariants hold{string.Concat(broken.Select(b => "\n    " + b))}");
Check(sim.UnexpectedWarnings.Count == 0, $"{sim.UnexpectedWarnings.Count} kernel warnings");
Console.WriteLine(failed == 0 ? "all checks passed" : $"{failed} checks failed");
return failed == 0 ? 0 : 1;

void Check(bool ok, string what)
{
    Console.WriteLine($"  {(ok ? "ok  " : "FAIL")} {what}");
    failed += ok ? 0 : 1;
}
