// A BAR register read through an mmap of the BAR (one user CPU load: the page-table walk and
// one MMIO access) against a pread of the same register through the device fd (the syscall,
// vfio-pci's region decode, memory_lock, the device access and the copy to user). The
// default machine with vfio-pci, edu (0000:01:00.0) bound to it and opened by a root
// process; real mode on the benchmark thread, which the kernel adopts as a task on first use.

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

    [GlobalSetup]
    public void Setup()
    {
        _sim = VfioSim.CreateBuilder().UseScheduler(SchedulerMode.Real).AddVfioPci().Build();
        _sim.Bind(Edu, VfioPciDriver.DriverName);
        _user = _sim.Spawn("user");
        _session = _sim.Open(_user, Edu);
        _bar = _session.Device.MmapRegion(0, 0, 4096);
        if (MmapRead() != Identification || PreadRead() != Identification)
        {
            throw new InvalidOperationException("edu's identification register did not read back through the mapping and the fd");
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
    public uint PreadRead()
    {
        _ = _user.Pread(_session.Device.Fd, _buffer, 0);
        return BitConverter.ToUInt32(_buffer);
    }
}
