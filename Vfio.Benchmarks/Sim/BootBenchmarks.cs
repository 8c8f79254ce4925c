// Boot through the public host: VfioSimBuilder.Build() of the embedded default machine
// (firmware, IOMMU, PCI enumeration, host drivers) with vfio, vfio_iommu_type1 and vfio-pci
// loaded, on a fresh kernel each time, under each scheduler. Build() runs on the calling
// thread in both modes (no scheduled run starts), so the two differ only in what the
// kernel sets up for its scheduler. Seed 1, lockdep on, trace off (the builder's defaults).
// Target (see the targets in RESULTS.md): ≤ 0.5 ms per boot.

using BenchmarkDotNet.Attributes;
using Vfio.Kernel;
using Vfio.Sim;

namespace Vfio.Benchmarks.Sim;

[MemoryDiagnoser]
public class BootBenchmarks
{
    private const ulong Seed = 1;

    private VfioSimBuilder _real = null!;
    private VfioSimBuilder _controlled = null!;

    [GlobalSetup]
    public void Setup()
    {
        _real = Builder(SchedulerMode.Real);
        _controlled = Builder(SchedulerMode.Controlled);
        Check(BootReal());
        Check(BootControlled());
    }

    private static VfioSimBuilder Builder(SchedulerMode mode)
        => VfioSim.CreateBuilder().UseScheduler(mode).UseSeed(Seed).AddVfio().AddType1().AddVfioPci();

    private static void Check(VfioSim sim)
    {
        if (sim.VfioPci is null || sim.Type1 is null || sim.Machine.Pci.Find("0000:01:00.0") is null)
        {
            throw new InvalidOperationException($"the boot did not load vfio-pci and type1 on the default machine: {sim}");
        }
    }

    [Benchmark(Baseline = true, Description = "boot: default machine + vfio, type1, vfio-pci (real)")]
    public VfioSim BootReal() => _real.Build();

    [Benchmark(Description = "boot: default machine + vfio, type1, vfio-pci (controlled)")]
    public VfioSim BootControlled() => _controlled.Build();
}
