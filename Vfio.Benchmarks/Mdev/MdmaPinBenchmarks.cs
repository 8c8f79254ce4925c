// vfio_pin_pages + vfio_unpin_pages through a real mdev (the mdma sample, issue 15): an
// mdma-2 instance created through sysfs, opened by a root process in a TYPE1v2 container
// with 2 MiB mapped (no IOMMU domain: only emulated groups, so each pin is charged to the
// mapping owner's locked_vm). One page, and a full batch of 512 (per page). Real mode on the
// benchmark thread, with lockdep on (the default) and off (as performance studies run it;
// lockdep checks each of the lock round trips a call makes). Target: ≤ 50 ns per page, 0 B
// in steady state.

using BenchmarkDotNet.Attributes;
using Vfio.Core;
using Vfio.Core.Client;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Mdev.Samples.Mdma;
using Vfio.Platform.Mm;
using Vfio.Platform.Proc;
using Vfio.Sim;

namespace Vfio.Benchmarks.Mdev;

[MemoryDiagnoser]
public class MdmaPinBenchmarks
{
    private const ulong Iova = 1UL << 30;
    private const int Batch = VfioDevice.PinPagesMaxEntries;
    private const int RW = 3;

    private readonly ulong[] _pfns = new ulong[Batch];
    private VfioSim _sim = null!;
    private MdmaDevice _dev = null!;
    private VfioContainerFd _container = null!;
    private VfioGroupFd _group = null!;
    private VfioDeviceFd _device = null!;

    /// <summary>Lockdep on (the kernel default here) or off.</summary>
    [Params(true, false)]
    public bool Lockdep { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _sim = VfioSim.CreateBuilder().UseScheduler(SchedulerMode.Real).EnableLockdep(Lockdep).AddMdma().Build();
        var uuid = new Guid("6d646d61-0000-4000-8000-000000000001");
        _sim.SysfsWrite("/sys/devices/virtual/mdma/mdma/mdev_supported_types/mdma-2/create", uuid.ToString());
        _dev = _sim.Mdma!.DeviceOf(uuid) ?? throw new InvalidOperationException("no mdma device");
        string link = _sim.Machine.Sysfs.ReadLink($"/sys/bus/mdev/devices/{uuid}/iommu_group") ?? throw new InvalidOperationException("no iommu_group");
        SimProcess p = _sim.Spawn("qemu", Credentials.Root, new ResourceLimits { MemlockBytes = 64L << 20 });
        _container = new VfioContainerFd(p);
        _group = new VfioGroupFd(p, int.Parse(link.AsSpan(link.LastIndexOf('/') + 1), System.Globalization.CultureInfo.InvariantCulture));
        _group.SetContainer(_container);
        _container.SetIommu(VfioExtension.Type1v2);
        _device = _group.GetDeviceFd(uuid.ToString());
        UserBuffer buf = VfioSim.Allocate(p, 2 << 20, MapFlags.MAP_POPULATE);
        _container.MapDma(buf.Address, Iova, 2 << 20);
        PinUnpin1();
        PinUnpin512();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _device.Dispose();
        _group.Dispose();
        _container.Dispose();
    }

    [Benchmark(Baseline = true, Description = "mdma: vfio_pin_pages + vfio_unpin_pages, 1 page")]
    public int PinUnpin1()
    {
        int r = _dev.PinPages(Iova + 4096, RW, _pfns.AsSpan(0, 1));
        _dev.UnpinPages(Iova + 4096, 1);
        return r == 1 ? r : throw new InvalidOperationException($"pin: {r} ({ErrorReason.Current})");
    }

    [Benchmark(OperationsPerInvoke = Batch, Description = "mdma: vfio_pin_pages + vfio_unpin_pages, 512 pages (per page)")]
    public int PinUnpin512()
    {
        int r = _dev.PinPages(Iova, RW, _pfns);
        _dev.UnpinPages(Iova, Batch);
        return r == Batch ? r : throw new InvalidOperationException($"pin: {r} ({ErrorReason.Current})");
    }
}
