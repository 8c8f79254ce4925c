// EduDriver: for students writing their first VFIO user-space driver.
//
// It drives QEMU's edu device (0000:01:00.0 on the default machine; registers as in QEMU's
// docs/specs/edu.rst) from start to finish: bind edu to vfio-pci through sysfs, open the
// container, group and device, map a buffer for DMA, and program edu's DMA engine through
// BAR0 so that bytes go into the device and come back through the IOMMU. It also runs the
// liveness check and the factorial. Then it unmaps, closes, unbinds, and checks that
// nothing is left: no pinned page, no locked_vm, no broken invariant, no IOMMU fault.
// The exit code is 0 only when every check held.

using System.Text;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Mm;
using Vfio.Platform.Pci;
using Vfio.Platform.Proc;
using Vfio.Sim;

const string Edu = "0000:01:00.0";
const ulong Iova = 0x10_0000;          // edu's DMA engine sees 28 address bits: keep IOVAs below 256 MiB
const ulong BufferSize = 64 * 1024;
const ulong BackOffset = 0x1000;       // edu writes the bytes back one page further on
const int Bar0 = VfioPciIndex.Bar0;

VfioSim sim = VfioSim.CreateDefault(seed: 1);
long pinnedAtStart = sim.PinnedPages;
int failed = 0;
SimProcess? driver = null;

RunResult run = sim.Run(() =>
{
    string? hostDriver = sim.DriverOf(Edu);
    sim.Bind(Edu);
    Console.WriteLine($"bound {Edu} to vfio-pci (it was on {hostDriver ?? "no driver"}), IOMMU group {sim.GroupOf(Edu)}");

    driver = sim.Spawn("edu-driver");
    using (VfioSession edu = sim.Open(driver, Edu))
    {
        // A reset gives known register values; bus mastering lets edu start DMA.
        edu.Device.Reset();
        ushort command = edu.Device.ReadConfig16(PciRegs.Command);
        edu.Device.WriteConfig16(PciRegs.Command, (ushort)(command | PciRegs.CommandMemory | PciRegs.CommandMaster));

        uint id = edu.Device.ReadRegion32(Bar0, Reg.Identification);
        Check(id == 0x010000ed, $"identification register reads 0x{id:x8} (edu 1.0)");
        edu.Device.WriteRegion32(Bar0, Reg.Liveness, 0x12345678);
        uint inverted = edu.Device.ReadRegion32(Bar0, Reg.Liveness);
        Check(inverted == ~0x12345678u, $"liveness: wrote 0x12345678, read back 0x{inverted:x8}");

        edu.Device.WriteRegion32(Bar0, Reg.Factorial, 10);
        WaitWhile(() => (edu.Device.ReadRegion32(Bar0, Reg.Status) & Reg.StatusComputing) != 0);
        uint factorial = edu.Device.ReadRegion32(Bar0, Reg.Factorial);
        Check(factorial == 3628800, $"factorial: 10! = {factorial}");

        UserBuffer buffer = VfioSim.Allocate(driver, BufferSize, MapFlags.MAP_POPULATE);
        edu.Container.MapDma(buffer.Address, Iova, BufferSize);
        Console.WriteLine($"mapped {BufferSize / 1024} KiB at user va 0x{buffer.Address:x} to IOVA 0x{Iova:x}; locked_vm {driver.Mm.LockedVm} pages, {sim.PinnedPages - pinnedAtStart} pages pinned");

        byte[] message = Encoding.ASCII.GetBytes("Hello, edu! These bytes crossed the IOMMU twice.");
        buffer.Write(0, message);
        Dma(edu, source: Iova, destination: Reg.DmaBuffer, count: message.Length, Reg.DmaStart);
        Dma(edu, source: Reg.DmaBuffer, destination: Iova + BackOffset, count: message.Length, Reg.DmaStart | Reg.DmaToRam);
        byte[] back = buffer.Read(BackOffset, message.Length);
        Check(back.AsSpan().SequenceEqual(message), $"DMA to edu and back: \"{Encoding.ASCII.GetString(back)}\"");

        ulong unmapped = edu.Container.UnmapDma(Iova, BufferSize);
        Check(unmapped == BufferSize, $"unmapped {unmapped / 1024} KiB");
        buffer.Dispose();
    }

    Console.WriteLine("closed the device, group and container fds");
    sim.Reprobe(Edu);
    Console.WriteLine($"unbound {Edu} from vfio-pci; it is back on {sim.DriverOf(Edu) ?? "no driver"}");
});

Check(run.Passed, $"the run completed: {run.Outcome}{(run.Passed ? "" : "\n" + run.Describe())}");
Check(sim.PinnedPages == pinnedAtStart, $"pinned pages back to {pinnedAtStart} (now {sim.PinnedPages})");
Check(driver?.Mm.LockedVm == 0, $"the driver's locked_vm is {driver?.Mm.LockedVm} pages");
IReadOnlyList<string> broken = sim.CheckInvariants();
Check(broken.Count == 0, $"invariants hold{string.Concat(broken.Select(b => "\n    " + b))}");
Check(sim.IommuFaults.Count == 0, $"{sim.IommuFaults.Count} IOMMU faults");
Check(sim.UnexpectedWarnings.Count == 0, $"{sim.UnexpectedWarnings.Count} kernel warnings");
Console.WriteLine(failed == 0 ? "all checks passed" : $"{failed} checks failed");
return failed == 0 ? 0 : 1;

void Check(bool ok, string what)
{
    Console.WriteLine($"  {(ok ? "ok  " : "FAIL")} {what}");
    failed += ok ? 0 : 1;
}

// Programs one transfer and sleeps until edu clears the start bit. The sleep matters: the
// device runs on the simulated clock, which moves only while every task sleeps.
static void Dma(VfioSession edu, ulong source, ulong destination, int count, ulong command)
{
    edu.Device.WriteRegion64(Bar0, Reg.DmaSource, source);
    edu.Device.WriteRegion64(Bar0, Reg.DmaDestination, destination);
    edu.Device.WriteRegion64(Bar0, Reg.DmaCount, (ulong)count);
    edu.Device.WriteRegion64(Bar0, Reg.DmaCommand, command);
    WaitWhile(() => (edu.Device.ReadRegion64(Bar0, Reg.DmaCommand) & Reg.DmaStart) != 0);
}

static void WaitWhile(Func<bool> busy)
{
    for (int ms = 0; busy(); ms += 10)
    {
        if (ms > 10_000)
        {
            throw new TimeoutException("edu did not finish within 10 s");
        }

        KTask.Msleep(10);
    }
}

/// <summary>edu's BAR0 registers and bits, from QEMU's docs/specs/edu.rst.</summary>
internal static class Reg
{
    public const long Identification = 0x00;
    public const long Liveness = 0x04;
    public const long Factorial = 0x08;
    public const long Status = 0x20;
    public const long DmaSource = 0x80;
    public const long DmaDestination = 0x88;
    public const long DmaCount = 0x90;
    public const long DmaCommand = 0x98;
    public const uint StatusComputing = 0x01;
    public const ulong DmaStart = 0x01;
    public const ulong DmaToRam = 0x02;
    public const ulong DmaBuffer = 0x40000;
}
