// The type1 backend off the bulk path:
//  - churn: one 4 KiB map + unmap pair in a container already holding 65,535 mappings
//    (dma_entry_limit raised to 65,536 before SET_IOMMU);
//  - lookup: vfio_find_dma among those 65,535 mappings (target ≤ 100 ns);
//  - the ioctl path (copy-in from user memory, container dispatch, copy-out) against the
//    kernel-internal call, for a 4 KiB pair and a 1 GiB pair (per 4 KiB page);
//  - VFIO_IOMMU_GET_INFO through the ioctl;
//  - vfio_pin_pages / vfio_unpin_pages of an emulated-IOMMU device (no IOMMU domain).
// Target: 0 B allocated per steady-state map + unmap.

using BenchmarkDotNet.Attributes;
using System.Runtime.InteropServices;
using Vfio.Core;
using Vfio.Core.Uapi;
using Vfio.Platform.Mm;

namespace Vfio.Benchmarks.Type1;

[MemoryDiagnoser]
public class Type1PathBenchmarks
{
    private const long GiB = Type1Host.GiB;
    private const int Pages1G = (int)(GiB >> 12);
    private const int Existing = 65_535;
    private const int Lookups = 4096;
    private const ulong TreeIova = 1UL << 36;
    private const ulong Iova = 1UL << 38;
    private const int PinBatch = VfioDevice.PinPagesMaxEntries;

    private readonly ulong[] _lookupIovas = new ulong[Lookups];
    private readonly ulong[] _pfns = new ulong[PinBatch];
    private readonly byte[] _info = new byte[256];
    private Type1Host _tree = null!;
    private Type1Host _host = null!;
    private Type1Host _emulated = null!;
    private ulong _treeVa;
    private ulong _va;

    [GlobalSetup(Targets = [nameof(Churn), nameof(Lookup)])]
    public void SetupTree()
    {
        _tree = new Type1Host(new MemoryConfig { RamBytes = 4 * GiB }, dmaEntryLimit: Existing + 1);
        _treeVa = _tree.Buffer(Existing * 4096L + 4096);

        // Every other 4 KiB IOVA page holds a mapping; the churn pair uses a hole in the middle.
        for (int i = 0; i < Existing; i++)
        {
            Type1Host.Check(_tree.Map(_treeVa + ((ulong)i << 12), TreeIova + ((ulong)i << 13), 4096), "map");
        }

        var rng = new Random(42);
        for (int i = 0; i < Lookups; i++)
        {
            _lookupIovas[i] = TreeIova + ((ulong)rng.Next(Existing) << 13);
        }

        Churn();
        Lookup();
    }

    [GlobalSetup(Targets = [nameof(Pair4KInternal), nameof(Pair4KIoctl), nameof(Pair1GInternal), nameof(Pair1GIoctl), nameof(GetInfoIoctl)])]
    public void SetupHost()
    {
        _host = new Type1Host(new MemoryConfig { RamBytes = 4 * GiB });
        _va = _host.Buffer(GiB);
        Pair4KInternal();
        Pair4KIoctl();
        Pair1GInternal();
        Pair1GIoctl();
        GetInfoIoctl();
    }

    [GlobalSetup(Targets = [nameof(PinUnpin1), nameof(PinUnpin512)])]
    public void SetupEmulated()
    {
        _emulated = new Type1Host(new MemoryConfig { RamBytes = 4 * GiB }, emulatedOps: new UnpinningOps());
        _va = _emulated.Buffer(2 << 20);
        Type1Host.Check(_emulated.Map(_va, Iova, 2 << 20), "map for the emulated device");
        PinUnpin1();
        PinUnpin512();
    }

    // ---- 65,535 mappings

    [Benchmark(Description = "churn: 4 KiB map+unmap among 65,535")]
    public int Churn()
    {
        ulong iova = TreeIova + ((ulong)(Existing / 2) << 13) + 4096;
        int r = _tree.Map(_treeVa, iova, 4096);
        return r | _tree.Unmap(iova, 4096);
    }

    [Benchmark(OperationsPerInvoke = Lookups, Description = "lookup among 65,535 (vfio_find_dma)")]
    public int Lookup()
    {
        var iommu = _tree.Iommu;
        ulong[] iovas = _lookupIovas;
        int found = 0;
        for (int i = 0; i < iovas.Length; i++)
        {
            if (iommu.FindDmaUnlocked(iovas[i], 4096) is not null)
            {
                found++;
            }
        }

        return found == Lookups ? found : throw new InvalidOperationException($"found {found} of {Lookups}");
    }

    // ---- the ioctl path against the internal call

    [Benchmark(Description = "4 KiB map+unmap, internal")]
    public int Pair4KInternal() => _host.Map(_va, Iova, 4096) | _host.Unmap(Iova, 4096);

    [Benchmark(Description = "4 KiB map+unmap, ioctl")]
    public long Pair4KIoctl() => _host.MapIoctl(_va, Iova, 4096) | _host.UnmapIoctl(Iova, 4096);

    [Benchmark(OperationsPerInvoke = Pages1G, Description = "1 GiB map+unmap, internal (per page)")]
    public int Pair1GInternal() => _host.Map(_va, Iova, GiB) | _host.Unmap(Iova, GiB);

    [Benchmark(OperationsPerInvoke = Pages1G, Description = "1 GiB map+unmap, ioctl (per page)")]
    public long Pair1GIoctl() => _host.MapIoctl(_va, Iova, GiB) | _host.UnmapIoctl(Iova, GiB);

    [Benchmark(Description = "GET_INFO, ioctl")]
    public long GetInfoIoctl()
    {
        Span<byte> b = _info;
        b.Clear();
        MemoryMarshal.Write(b, new VfioIommuType1Info { Argsz = (uint)b.Length });
        long r = _host.User.Ioctl(_host.Container, VfioIoctl.IommuGetInfo, b);
        return r == 0 ? r : throw new InvalidOperationException($"GET_INFO: {r}");
    }

    // ---- emulated-IOMMU pinning

    [Benchmark(Description = "pin+unpin 1 page, emulated")]
    public int PinUnpin1()
    {
        VfioDevice d = _emulated.Device;
        int r = d.PinPages(Iova + 4096, 3, _pfns.AsSpan(0, 1));
        d.UnpinPages(Iova + 4096, 1);
        return r == 1 ? r : throw new InvalidOperationException($"pin: {r}");
    }

    [Benchmark(OperationsPerInvoke = PinBatch, Description = "pin+unpin 512 pages, emulated (per page)")]
    public int PinUnpin512()
    {
        VfioDevice d = _emulated.Device;
        int r = d.PinPages(Iova, 3, _pfns);
        d.UnpinPages(Iova, PinBatch);
        return r == PinBatch ? r : throw new InvalidOperationException($"pin: {r}");
    }

    /// <summary>An emulated-IOMMU device's ops: its dma_unmap has nothing to unpin (the benchmarks unpin at once).</summary>
    private sealed class UnpinningOps : VfioDeviceOps
    {
        public override string Name => Type1Host.DriverName;

        public override void DmaUnmap(VfioDevice device, ulong iova, ulong length)
        {
        }
    }
}
