// Interrupt delivery through vfio-pci, end to end: the edu device raises (a write of its
// interrupt-raise register, as edu.c's raise path does), the machine's interrupt controller
// runs vfio-pci's handler, the handler signals the user's eventfd, and the user reads the
// count. MSI: one message per raise. INTx: the line is automasked by vfio-pci; the user
// acknowledges edu and unmasks with SET_IRQS, as a user-space driver does per interrupt.
// Floor: signalling the same eventfd from the kernel and reading it, with no device, no
// controller and no vfio in between.
//
// Everything runs in real mode on the benchmark thread (adopted as a task on first use).

using BenchmarkDotNet.Attributes;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Devices;
using Vfio.Platform.Fs;
using Vfio.Platform.Pci;
using Vfio.Platform.Proc;
using Vfio.Sim;

namespace Vfio.Benchmarks.Pci;

[MemoryDiagnoser]
public class InterruptBenchmarks
{
    private const string Edu = "0000:01:00.0";

    private readonly byte[] _count = new byte[8];
    private readonly byte[] _raise = BitConverter.GetBytes(1u);
    private VfioSim _msiSim = null!;
    private VfioSim _intxSim = null!;
    private Endpoint _msi = null!;
    private Endpoint _intx = null!;
    private EventFdContext _floorCtx = null!;

    [GlobalSetup]
    public void Setup()
    {
        _msiSim = Boot();
        _msi = new Endpoint(_msiSim, VfioPciIndex.IrqMsi);
        _intxSim = Boot();
        _intx = new Endpoint(_intxSim, VfioPciIndex.IrqIntx);
        SimFile f = _msi.User.Files.Get(_msi.FloorFd) ?? throw new InvalidOperationException("no floor eventfd");
        _floorCtx = EventFdContext.FromFile(f) ?? throw new InvalidOperationException("not an eventfd");
        f.Put();

        // Each path must deliver exactly one count per iteration.
        Check(Floor(), "floor");
        Check(MsiRaiseToEventfdRead(), "MSI");
        Check(IntxRaiseToEventfdReadAndUnmask(), "INTx");
    }

    private static VfioSim Boot()
    {
        VfioSim sim = VfioSim.CreateBuilder().UseScheduler(SchedulerMode.Real).AddVfioPci().Build();
        sim.Bind(Edu);
        return sim;
    }

    private static void Check(ulong count, string what)
    {
        if (count != 1)
        {
            throw new InvalidOperationException($"{what}: the eventfd read {count}, not 1: the interrupt path is broken");
        }
    }

    [Benchmark(Baseline = true, Description = "floor: kernel signals an eventfd, user reads it")]
    public ulong Floor()
    {
        _floorCtx.Signal();
        return ReadCount(_msi.User, _msi.FloorFd);
    }

    [Benchmark(Description = "edu raise -> MSI -> vfio-pci -> eventfd read")]
    public ulong MsiRaiseToEventfdRead()
    {
        _msiSim.Machine.Memory.Write(_msi.Bar0 + EduDevice.RegIrqRaise, _raise);
        ulong n = ReadCount(_msi.User, _msi.Eventfd);
        _msiSim.Machine.Memory.Write(_msi.Bar0 + EduDevice.RegIrqAck, _raise);
        return n;
    }

    [Benchmark(Description = "edu raise -> INTx (automasked) -> eventfd read, ack, SET_IRQS unmask")]
    public ulong IntxRaiseToEventfdReadAndUnmask()
    {
        _intxSim.Machine.Memory.Write(_intx.Bar0 + EduDevice.RegIrqRaise, _raise);
        ulong n = ReadCount(_intx.User, _intx.Eventfd);
        _intxSim.Machine.Memory.Write(_intx.Bar0 + EduDevice.RegIrqAck, _raise);
        _intx.Session.Device.UnmaskIrq(VfioPciIndex.IrqIntx);
        return n;
    }

    private ulong ReadCount(SimProcess p, int fd)
        => p.Read(fd, _count) == 8 ? BitConverter.ToUInt64(_count) : 0;

    /// <summary>edu opened by a user with bus mastering and memory decode on and one eventfd on <c>index</c>.</summary>
    private sealed class Endpoint
    {
        public Endpoint(VfioSim sim, int index)
        {
            User = sim.Spawn("driver");
            Session = sim.Open(User, Edu);
            ushort cmd = Session.Device.ReadConfig16(PciRegs.Command);
            Session.Device.WriteConfig16(PciRegs.Command, (ushort)(cmd | PciRegs.CommandMaster | PciRegs.CommandMemory));
            Eventfd = User.Eventfd(0, EventFdContext.EFD_NONBLOCK);
            FloorFd = User.Eventfd(0, EventFdContext.EFD_NONBLOCK);
            Session.Device.SetIrqEventfd(index, Eventfd);
            Bar0 = sim.Device(Edu).ResourceStart(0);
        }

        public SimProcess User { get; }

        public VfioSession Session { get; }

        public int Eventfd { get; }

        public int FloorFd { get; }

        public long Bar0 { get; }
    }
}
