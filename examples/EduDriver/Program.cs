// EduDriver: for students writing their first VFIO user-space driver.
//
// It drives QEMU's edu device (0000:01:00.0 on the default machine; registers as in QEMU's
// docs/specs/edu.rst) from start to finish: bind edu to vfio-pci through sysfs, open the
// container, group and device, mmap BAR0 and reach edu's registers with loads and stores,
// give edu's MSI an eventfd, map a buffer for DMA, and program edu's DMA engine so that
// bytes go into the device and come back through the IOMMU, sleeping in poll() until edu's
// completion interrupt arrives. It also runs the liveness check and the factorial (with its
// interrupt). Then it unmaps, closes, unbinds, and checks that nothing is left: no pinned
// page, no locked_vm, no broken invariant, no IOMMU fault. On the way it draws the object
// graph while the device is open and prints the driver's VFIO syscalls as strace shows them.
// The exit code is 0 only when every check held.

using System.Text;
using Vfio.Core.Client;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Fs;
using Vfio.Platform.Mm;
using Vfio.Platform.Pci;
using Vfio.Platform.Proc;
using Vfio.Sim;
using Vfio.Sim.Graphs;

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
    sim.Strace.Start(driver);   // record every syscall of the driver, as strace -p would
    using (VfioSession edu = sim.Open(driver, Edu))
    {
        // A reset gives known register values; bus mastering lets edu start DMA.
        edu.Device.Reset();
        ushort command = edu.Device.ReadConfig16(PciRegs.Command);
        edu.Device.WriteConfig16(PciRegs.Command, (ushort)(command | PciRegs.CommandMemory | PciRegs.CommandMaster));

        // pread/pwrite of the region work too (edu.Device.ReadRegion32); a mapping is how
        // drivers usually reach their registers: one load or store per access, no syscall.
        uint id = edu.Device.ReadRegion32(Bar0, Reg.Identification);
        Check(id == 0x010000ed, $"identification register reads 0x{id:x8} (edu 1.0) through pread");
        using VfioRegionMapping bar = edu.Device.MmapRegion(Bar0, 0, 1 << 20);
        bar.Write32(Reg.Liveness, 0x12345678);
        uint inverted = bar.Read32(Reg.Liveness);
        Check(inverted == ~0x12345678u, $"liveness through the BAR0 mapping at 0x{bar.Address:x}: wrote 0x12345678, read back 0x{inverted:x8}");

        // One eventfd for edu's MSI: vfio-pci enables MSI and signals the eventfd from the interrupt.
        int irq = driver.Eventfd(0, EventFdContext.EFD_NONBLOCK);
        edu.Device.SetIrqEventfd(VfioPciIndex.IrqMsi, irq);

        bar.Write32(Reg.Status, Reg.StatusIrqFactorial);
        bar.Write32(Reg.Factorial, 10);
        uint why = WaitForInterrupt(driver, irq, bar);
        uint factorial = bar.Read32(Reg.Factorial);
        Check(why == Reg.IrqFactorial && factorial == 3628800, $"factorial: 10! = {factorial}, signalled by MSI (interrupt status 0x{why:x})");

        UserBuffer buffer = VfioSim.Allocate(driver, BufferSize, MapFlags.MAP_POPULATE);
        edu.Container.MapDma(buffer.Address, Iova, BufferSize);
        Console.WriteLine($"mapped {BufferSize / 1024} KiB at user va 0x{buffer.Address:x} to IOVA 0x{Iova:x}; locked_vm {driver.Mm.LockedVm} pages, {sim.PinnedPages - pinnedAtStart} pages pinned");

        // The objects the driver holds now, with their reference counts (vfio-sim graph draws the same).
        ObjectGraph graph = sim.Graph();
        GraphNode device = graph.Nodes.First(n => n.Kind == GraphNodeKind.Device);
        GraphNode mapping = graph.Nodes.First(n => n.Kind == GraphNodeKind.DmaMapping);
        Check(device.Properties["open_count"] == "1" && mapping.Properties["pinned_pages"] == $"{BufferSize / 4096}",
            $"object graph: {device.Label} open_count={device.Properties["open_count"]} refcount={device.RefCount}; {mapping.Label} pins {mapping.Properties["pinned_pages"]} pages");

        byte[] message = Encoding.ASCII.GetBytes("Hello, edu! These bytes crossed the IOMMU twice.");
        buffer.Write(0, message);
        Dma(bar, driver, irq, source: Iova, destination: Reg.DmaBuffer, count: message.Length, Reg.DmaStart | Reg.DmaIrq);
        Dma(bar, driver, irq, source: Reg.DmaBuffer, destination: Iova + BackOffset, count: message.Length, Reg.DmaStart | Reg.DmaToRam | Reg.DmaIrq);
        byte[] back = buffer.Read(BackOffset, message.Length);
        Check(back.AsSpan().SequenceEqual(message), $"DMA to edu and back: \"{Encoding.ASCII.GetString(back)}\"");

        ulong unmapped = edu.Container.UnmapDma(Iova, BufferSize);
        Check(unmapped == BufferSize, $"unmapped {unmapped / 1024} KiB");
        buffer.Dispose();
        edu.Device.DisableIrqs(VfioPciIndex.IrqMsi);
        driver.Close(irq);
    }

    Console.WriteLine("closed the device, group and container fds");
    sim.Reprobe(Edu);
    Console.WriteLine($"unbound {Edu} from vfio-pci; it is back on {sim.DriverOf(Edu) ?? "no driver"}");
});

Check(run.Passed, $"the run completed: {run.Outcome}{(run.Passed ? "" : "\n" + run.Describe())}");
SyscallRecord[] vfioCalls = [.. sim.Strace.Records.Where(r => r.Request?.StartsWith("VFIO_", StringComparison.Ordinal) == true)];
Console.WriteLine($"the driver's VFIO ioctls, as strace prints them ({vfioCalls.Length}):");
Console.Write(SyscallTracer.Format(vfioCalls.Take(8)));
Check(vfioCalls.Any(r => r.Request == "VFIO_IOMMU_MAP_DMA" && r.Return == 0 && r.Arguments.Contains("VFIO_DMA_MAP_FLAG_READ|VFIO_DMA_MAP_FLAG_WRITE", StringComparison.Ordinal)),
    "strace shows VFIO_IOMMU_MAP_DMA with its flags decoded");
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

// Programs one transfer and waits for its completion interrupt.
static void Dma(VfioRegionMapping bar, SimProcess driver, int irq, ulong source, ulong destination, int count, ulong command)
{
    bar.Write64(Reg.DmaSource, source);
    bar.Write64(Reg.DmaDestination, destination);
    bar.Write64(Reg.DmaCount, (ulong)count);
    bar.Write64(Reg.DmaCommand, command);
    uint why = WaitForInterrupt(driver, irq, bar);
    if (why != Reg.IrqDma)
    {
        throw new InvalidOperationException($"expected edu's DMA interrupt, got status 0x{why:x}");
    }
}

// Sleeps in poll() until the MSI eventfd is readable, consumes the count, then reads and
// acknowledges edu's interrupt status. The sleep matters: the device runs on the simulated
// clock, which moves only while every task sleeps.
static uint WaitForInterrupt(SimProcess driver, int irq, VfioRegionMapping bar)
{
    Span<PollFd> fds = [new PollFd(irq, PollEvents.POLLIN)];
    if (driver.Poll(fds, timeoutMs: 10_000) != 1)
    {
        throw new TimeoutException("no interrupt from edu within 10 s");
    }

    Span<byte> count = stackalloc byte[8];
    driver.Read(irq, count);
    uint status = bar.Read32(Reg.IrqStatus);
    bar.Write32(Reg.IrqAck, status);
    return status;
}

/// <summary>edu's BAR0 registers and bits, from QEMU's docs/specs/edu.rst.</summary>
internal static class Reg
{
    public const long Identification = 0x00;
    public const long Liveness = 0x04;
    public const long Factorial = 0x08;
    public const long Status = 0x20;
    public const long IrqStatus = 0x24;
    public const long IrqAck = 0x64;
    public const long DmaSource = 0x80;
    public const long DmaDestination = 0x88;
    public const long DmaCount = 0x90;
    public const long DmaCommand = 0x98;
    public const uint StatusIrqFactorial = 0x80;
    public const uint IrqFactorial = 0x001;
    public const uint IrqDma = 0x100;
    public const ulong DmaStart = 0x01;
    public const ulong DmaToRam = 0x02;
    public const ulong DmaIrq = 0x04;
    public const ulong DmaBuffer = 0x40000;
}
