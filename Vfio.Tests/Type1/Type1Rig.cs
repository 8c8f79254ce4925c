// Test rig for Vfio.Iommu.Type1: the core rig (VfioRig, on the host) with the real type1
// backend loaded instead of the mock, helpers for raw MAP/UNMAP/GET_INFO/DIRTY ioctls from
// its user process (returning the kernel's return value and the struct as written back),
// and a small emulated-IOMMU test device that pins guest pages through vfio_pin_pages and
// honours (or, on request, ignores) dma_unmap.

using System.Runtime.InteropServices;
using NUnit.Framework;
using Vfio.Core;
using Vfio.Core.Uapi;
using Vfio.Iommu.Type1;
using Vfio.Kernel;
using Vfio.Platform;
using Vfio.Platform.Fs;
using Vfio.Platform.Machine;
using Vfio.Platform.Mm;
using Vfio.Platform.Proc;
using Vfio.Tests.Core;

namespace Vfio.Tests.Type1;

internal sealed class Type1Rig
{
    public const ulong Page = 4096;

    public Type1Rig(SchedulerMode mode = SchedulerMode.Real, ulong seed = 1, KernelProfile? profile = null, VfioOptions? options = null, VfioIommuType1Options? type1 = null, MachineDescription? machine = null)
    {
        Core = new VfioRig(mode, seed, options, profile, backend: false, machine: machine, modules: b => b.AddType1(type1));
        Type1 = Core.Sim.Type1!;
    }

    public VfioRig Core { get; }

    public VfioIommuType1 Type1 { get; }

    public SimKernel Kernel => Core.Kernel;

    public SimMachine Machine => Core.Machine;

    public SimProcess User => Core.User;

    public PhysMem Memory => Machine.Memory;

    public void Run(Action body) => Core.Run(body);

    /// <summary>Binds the edu device to vfio-test and opens container, group and device with the given type (v2 default).</summary>
    public (int Container, int Group, int Device) OpenEdu(uint type = VfioExtension.Type1v2)
    {
        Core.Bind(VfioRig.Edu);
        return Core.OpenAll(VfioRig.Edu, type);
    }

    /// <summary>The type1 instance behind a container fd of <paramref name="p"/> (the user by default).</summary>
    public VfioIommu Iommu(int containerFd, SimProcess? p = null)
    {
        SimFile f = (p ?? User).Files.Get(containerFd) ?? throw new AssertionException($"fd {containerFd} is not open");
        VfioContainer c = VfioContainer.FromFile(f) ?? throw new AssertionException($"fd {containerFd} is not a container");
        return VfioIommuType1.Instance(c) ?? throw new AssertionException("the container's backend is not type1");
    }

    /// <summary>Anonymous populated read-write memory of <paramref name="bytes"/>.</summary>
    public ulong Buffer(ulong bytes, SimProcess? p = null, MapFlags extra = MapFlags.MAP_POPULATE)
    {
        long a = (p ?? User).Mmap(0, bytes, Prot.PROT_READ | Prot.PROT_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | extra);
        Assert.That(a, Is.GreaterThan(0), "mmap");
        return (ulong)a;
    }

    public static long Map(SimProcess p, int c, ulong vaddr, ulong iova, ulong size, uint flags = VfioType1Flags.MapRead | VfioType1Flags.MapWrite, uint argsz = 32)
    {
        var m = new VfioIommuType1DmaMap { Argsz = argsz, Flags = flags, Vaddr = vaddr, Iova = iova, Size = size };
        return p.Ioctl(c, VfioIoctl.IommuMapDma, MemoryMarshal.AsBytes(MemoryMarshal.CreateSpan(ref m, 1)));
    }

    public long Map(int c, ulong vaddr, ulong iova, ulong size, uint flags = VfioType1Flags.MapRead | VfioType1Flags.MapWrite, uint argsz = 32)
        => Map(User, c, vaddr, iova, size, flags, argsz);

    public static long Unmap(SimProcess p, int c, ulong iova, ulong size, out ulong unmapped, uint flags = 0, uint argsz = 24)
    {
        var u = new VfioIommuType1DmaUnmap { Argsz = argsz, Flags = flags, Iova = iova, Size = size };
        long r = p.Ioctl(c, VfioIoctl.IommuUnmapDma, MemoryMarshal.AsBytes(MemoryMarshal.CreateSpan(ref u, 1)));
        unmapped = u.Size;
        return r;
    }

    public long Unmap(int c, ulong iova, ulong size, out ulong unmapped, uint flags = 0, uint argsz = 24)
        => Unmap(User, c, iova, size, out unmapped, flags, argsz);

    /// <summary>UNMAP_DMA with GET_DIRTY_BITMAP: the bitmap lives at <paramref name="bitmapVa"/> in user memory.</summary>
    public long UnmapWithBitmap(int c, ulong iova, ulong size, ulong pgsize, ulong bitmapVa, ulong bitmapBytes, out ulong unmapped, uint argsz = 48)
    {
        byte[] buf = new byte[Math.Max(48, (int)argsz)];
        var u = new VfioIommuType1DmaUnmap { Argsz = argsz, Flags = VfioType1Flags.UnmapGetDirtyBitmap, Iova = iova, Size = size };
        MemoryMarshal.Write(buf, in u);
        var b = new VfioBitmap { Pgsize = pgsize, Size = bitmapBytes, Data = bitmapVa };
        MemoryMarshal.Write(buf.AsSpan(24), in b);
        long r = User.Ioctl(c, VfioIoctl.IommuUnmapDma, buf);
        unmapped = MemoryMarshal.Read<VfioIommuType1DmaUnmap>(buf).Size;
        return r;
    }

    public long DirtyPages(int c, uint flags, uint argsz = 8)
    {
        var d = new VfioIommuType1DirtyBitmap { Argsz = argsz, Flags = flags };
        return User.Ioctl(c, VfioIoctl.IommuDirtyPages, MemoryMarshal.AsBytes(MemoryMarshal.CreateSpan(ref d, 1)));
    }

    public long GetBitmap(int c, ulong iova, ulong size, ulong pgsize, ulong bitmapVa, ulong bitmapBytes, uint argsz = 48)
    {
        byte[] buf = new byte[Math.Max(48, (int)argsz)];
        var d = new VfioIommuType1DirtyBitmap { Argsz = argsz, Flags = VfioType1Flags.DirtyGetBitmap };
        MemoryMarshal.Write(buf, in d);
        var g = new VfioIommuType1DirtyBitmapGet { Iova = iova, Size = size, Bitmap = new VfioBitmap { Pgsize = pgsize, Size = bitmapBytes, Data = bitmapVa } };
        MemoryMarshal.Write(buf.AsSpan(8), in g);
        return User.Ioctl(c, VfioIoctl.IommuDirtyPages, buf);
    }

    /// <summary>Reads <paramref name="words"/> u64 words of user memory at <paramref name="va"/>.</summary>
    public ulong[] ReadWords(ulong va, int words)
    {
        byte[] b = new byte[words * 8];
        Assert.That(User.Mm.ReadUser(va, b), Is.Zero);
        return MemoryMarshal.Cast<byte, ulong>(b).ToArray();
    }

    /// <summary>Asserts the container's invariants hold.</summary>
    public void AssertInvariants(int containerFd, SimProcess? p = null)
        => Assert.That(Iommu(containerFd, p).CheckInvariants(Iommu(containerFd, p).EntryLimit), Is.Null);
}

/// <summary>
/// A test-only emulated-IOMMU device (the mdev path before real mdevs): it registers as an
/// emulated-IOMMU vfio_device and offers dma_unmap, which unpins what it pinned in the range
/// unless told to misbehave.
/// </summary>
internal sealed class PinningTestDevice : VfioDeviceOps
{
    private readonly Dictionary<ulong, int> _pinned = [];

    public override string Name => "vfio-pin-test";

    /// <summary>When true, dma_unmap is called but unpins nothing (a buggy driver).</summary>
    public bool IgnoreUnmap { get; set; }

    /// <summary>dma_unmap calls received: (iova, length).</summary>
    public List<(ulong Iova, ulong Length)> UnmapCalls { get; } = [];

    /// <summary>Pins held per IOVA page.</summary>
    public IReadOnlyDictionary<ulong, int> Pinned => _pinned;

    public int Pin(VfioDevice dev, ulong iova, int npage, int prot, ulong[]? pfns = null)
    {
        pfns ??= new ulong[npage];
        int r = dev.PinPages(iova, prot, pfns.AsSpan(0, npage));
        if (r > 0)
        {
            for (int i = 0; i < r; i++)
            {
                ulong a = iova + ((ulong)i * Type1Rig.Page);
                _pinned[a] = _pinned.GetValueOrDefault(a) + 1;
            }
        }

        return r;
    }

    public void Unpin(VfioDevice dev, ulong iova, int npage)
    {
        dev.UnpinPages(iova, npage);
        for (int i = 0; i < npage; i++)
        {
            ulong a = iova + ((ulong)i * Type1Rig.Page);
            if (_pinned.TryGetValue(a, out int n))
            {
                if (n <= 1)
                {
                    _pinned.Remove(a);
                }
                else
                {
                    _pinned[a] = n - 1;
                }
            }
        }
    }

    public override void DmaUnmap(VfioDevice device, ulong iova, ulong length)
    {
        UnmapCalls.Add((iova, length));
        if (IgnoreUnmap)
        {
            return;
        }

        foreach (ulong a in _pinned.Keys.Where(k => k >= iova && k - iova < length).ToList())
        {
            int n = _pinned[a];
            for (int i = 0; i < n; i++)
            {
                Unpin(device, a, 1);
            }
        }
    }
}
