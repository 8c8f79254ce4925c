// A BAR register read through an mmap of the BAR (one user CPU load: the page-table walk and
// one MMIO access) against a pread of the same register through the device fd (the syscall,
// vfio-pci's region decode, memory_lock, the device access and the copy to user). The
// default machine with vfio-pci, edu (0000:01:00.0) bound to it and opened by a root
// process; real mode on the benchmark thread, which the kernel adopts as a task on first use.
// Two more paths of the same device: a 4-byte config read (the permission-table lookup and
// the virtual/hardware merge of vfio_pci_config.c) and an ioeventfd (the user's eventfd
// write, the wake-up, memory_lock try-locked and the 4-byte BAR write, no vfio syscall).

using BenchmarkDotNet.Attributes;
using Vfio.Core.Client;
using Vfio.Kernel;
using Vfio.Pci;
using Vfio.Platform.Proc;
using Vfio.Sim;

namespace Vfio.Benchmarks.Pci;

[MemoryDiagnoser]
public class BarAccessBenchmarks
{
    private const string Edu = "0000:01:00.0";
    private const uint Identification = 0x010000ed;

    private VfioSim _sim = null!;
    private SimProcess _user = null!;
    private VfioSession _session = null!;
    private VfioRegionMapping _bar = null!;
    private readonly byte[] _buffer = new byte[4];
    private readonly byte[] _one = BitConverter.GetBytes(1UL);
    private int _doorbell;

    [GlobalSetup]
    public void Setup()
    {
        _sim = VfioSim.CreateBuilder().UseScheduler(SchedulerMode.Real).AddVfioPci().Build();
        _sim.Bind(Edu, VfioPciDriver.DriverName);
        _user = _sim.Spawn("user");
        _session = _sim.Open(_user, Edu);
        _bar = _session.Device.MmapRegion(0, 0, 4096);
        if (MmapRead() != Identification || PreadRead() != Identification || ConfigRead() != 0x11e81234)
        {
            throw new InvalidOperationException("edu's identification register did not read back through the mapping and the fd, or its ids through the config region");
        }

        // edu's liveness register (0x04) takes the ioeventfd's value; memory decode must be on.
        _session.Device.WriteConfig16(4, (ushort)(_session.Device.ReadConfig16(4) | 2));
        _doorbell = _user.Eventfd(0, Vfio.Platform.Fs.EventFdContext.EFD_NONBLOCK);
        _session.Device.SetIoeventfd(0, 4, 4, 0x12345678, _doorbell);
        IoeventfdWrite();
        if (PreadAt(4) != ~0x12345678u)
        {
            throw new InvalidOperationException("the ioeventfd did not write edu's liveness register");
        }
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _bar.Dispose();
        _session.Dispose();
    }

    [Benchmark(Baseline = true, Description = "edu register 0: 4-byte load through the BAR mmap")]
    public uint MmapRead()
    {
        _ = _user.CpuRead(_bar.Address, _buffer);
        return BitConverter.ToUInt32(_buffer);
    }

    [Benchmark(Description = "edu register 0: 4-byte pread of the device fd")]
    public uint PreadRead() => PreadAt(0);

    [Benchmark(Description = "edu config dword 0: 4-byte pread of the config region")]
    public uint ConfigRead()
    {
        _ = _user.Pread(_session.Device.Fd, _buffer, 7L << 40);
        return BitConverter.ToUInt32(_buffer);
    }

    [Benchmark(Description = "ioeventfd: 8-byte eventfd write, the kernel writes edu's register")]
    public long IoeventfdWrite() => _user.Write(_doorbell, _one);

    private uint PreadAt(long offset)
    {
        _ = _user.Pread(_session.Device.Fd, _buffer, offset);
        return BitConverter.ToUInt32(_buffer);
    }
}
