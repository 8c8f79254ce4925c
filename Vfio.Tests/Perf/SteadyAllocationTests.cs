// Tests that every syscall a user repeats on a steady path allocates nothing on the managed
// heap: the allocation census of the default machine (vfio, type1 and vfio-pci loaded, edu
// bound to vfio-pci, a root process holding container, group and device fds), through the
// syscall layer as a C program would call it (SimProcess.Ioctl/Read/Write/Pread/Pwrite/Poll
// with its arguments staged in user memory) and through the typed client's calls that
// return no object. Each call is made once to warm up, then in rounds of N; the least
// round's bytes must be 0 (the least, so a one-off allocation elsewhere on the thread, such
// as a tiered-JIT rejit, is not counted).

using System.Runtime.InteropServices;
using NUnit.Framework;
using Vfio.Core.Client;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Devices;
using Vfio.Platform.Fs;
using Vfio.Platform.Mm;
using Vfio.Platform.Pci;
using Vfio.Platform.Proc;
using Vfio.Sim;

namespace Vfio.Tests.Perf;

[TestFixture]
public sealed class SteadyAllocationTests
{
    private const string Edu = "0000:01:00.0";
    private const int Calls = 64;
    private const int Rounds = 3;

    /// <summary>Every steady call of the census, by name; each yields the call to repeat.</summary>
    private static readonly (string Name, Func<Host, Action> Make)[] s_census =
    [
        ("container GET_API_VERSION", h => () => h.Ok(h.P.Ioctl(h.C, VfioIoctl.GetApiVersion))),
        ("container CHECK_EXTENSION(TYPE1v2)", h => () => h.Ok(h.P.Ioctl(h.C, VfioIoctl.CheckExtension, VfioExtension.Type1v2))),
        ("container CHECK_EXTENSION(unknown)", h => () => h.Ok(h.P.Ioctl(h.C, VfioIoctl.CheckExtension, 77))),
        ("IOMMU_GET_INFO, argsz of the fixed struct (asks for the size)", h => () => h.IommuInfo(24)),
        ("IOMMU_GET_INFO with the capability chain", h => () => h.IommuInfo(256)),
        ("MAP_DMA + UNMAP_DMA 4 KiB", h => () => h.MapUnmap4K()),
        ("DIRTY_PAGES GET_BITMAP 4 KiB (tracking on)", h => h.DirtyGetBitmap()),
        ("group GET_STATUS", h => () => h.GroupStatus()),
        ("device GET_INFO", h => () => h.DeviceInfo()),
        ("device GET_REGION_INFO, every index", h => () => h.EveryRegionInfo()),
        ("device GET_IRQ_INFO, every index", h => () => h.EveryIrqInfo()),
        ("SET_IRQS INTx trigger, DATA_NONE (loopback)", h => h.IntxLoopback(VfioIrqSetFlags.DataNone)),
        ("SET_IRQS INTx trigger, DATA_BOOL (loopback)", h => h.IntxLoopback(VfioIrqSetFlags.DataBool)),
        ("SET_IRQS INTx mask + unmask, DATA_NONE", h => h.IntxMaskUnmask(VfioIrqSetFlags.DataNone)),
        ("SET_IRQS INTx mask + unmask, DATA_BOOL", h => h.IntxMaskUnmask(VfioIrqSetFlags.DataBool)),
        ("SET_IRQS INTx trigger, the same eventfd again", h => h.IntxSameEventfd()),
        ("SET_IRQS MSI trigger, DATA_NONE (loopback)", h => h.MsiLoopback()),
        ("DEVICE_FEATURE PROBE", h => () => h.FeatureProbe()),
        ("DEVICE_RESET (edu: a secondary bus reset)", h => () => h.Ok(h.P.Ioctl(h.D, VfioIoctl.DeviceReset))),
        ("config space pread 4 + pwrite 2", h => () => h.ConfigReadWrite()),
        ("BAR0 pread 4 + pwrite 4", h => () => h.BarReadWrite()),
        ("BAR0 4-byte load through the mmap", h => h.MmapLoad()),
        ("eventfd write + read", h => h.EventfdWriteRead()),
        ("poll of a ready eventfd, no wait", h => h.PollReady()),
        ("ioeventfd doorbell (eventfd write)", h => h.IoeventfdDoorbell()),
        ("read of the container fd (EINVAL)", h => () => h.P.Read(h.C, h.Buf, 8)),
        ("typed client: GetApiVersion, CheckExtension, GetStatus", h => () => h.ClientScalars()),
        ("typed client: MapDma + UnmapDma 4 KiB", h => () => h.ClientMapUnmap()),
        ("typed client: config and BAR reads and writes", h => () => h.ClientRegions()),
        ("typed client: TriggerIrq, MaskIrq, UnmaskIrq (INTx)", h => h.ClientIrqs()),
        ("typed client: ProbeFeature", h => () => h.Session.Device.ProbeFeature(VfioFeature.LowPowerEntry)),
    ];

    private static IEnumerable<TestCaseData> Census()
    {
        foreach ((string name, Func<Host, Action> make) in s_census)
        {
            yield return new TestCaseData(make).SetArgDisplayNames(name);
        }
    }

    [TestCaseSource(nameof(Census))]
    public void ASteadyCall_AllocatesNothing(Func<Host, Action> make)
    {
        var host = new Host();
        Action call = make(host);
        double bytes = BytesPerCall(call);
        TestContext.Out.WriteLine($"{bytes} B per call");
        Assert.That(bytes, Is.Zero, "bytes per call after the warm-up");
    }

    [Test]
    public void MapAndUnmapWithTheDirtyBitmap_AllocateOnlyTheNewMappingsBitmap()
    {
        // vfio_dma_do_map kvzallocs a bitmap for a new mapping while tracking runs (one bit
        // per page plus a spare word: two ulongs for one page); the rest of map + unmap with
        // GET_DIRTY_BITMAP allocates nothing.
        var host = new Host();
        Action call = host.UnmapWithBitmap();
        Assert.That(BytesPerCall(call), Is.EqualTo(new ulong[2].Length * sizeof(ulong) + ArrayOverhead));
    }

    // The managed array header on a 64-bit runtime (method table, length with padding, object header).
    private const int ArrayOverhead = 24;

    /// <summary>The least round's allocation per call, after one warm-up call.</summary>
    internal static double BytesPerCall(Action call)
    {
        call();
        long least = long.MaxValue;
        for (int round = 0; round < Rounds; round++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < Calls; i++)
            {
                call();
            }

            least = Math.Min(least, GC.GetAllocatedBytesForCurrentThread() - before);
        }

        return (double)least / Calls;
    }

    /// <summary>The default machine, edu bound to vfio-pci and opened by a root process; everything runs on the test thread (real mode).</summary>
    public sealed class Host
    {
        public Host()
        {
            Sim = VfioSim.CreateBuilder().UseScheduler(SchedulerMode.Real).AddVfioPci().Build();
            Sim.Bind(Edu);
            P = Sim.Spawn("census");
            Session = Sim.Open(P, Edu);
            long b = P.Mmap(0, 1 << 20, Prot.PROT_READ | Prot.PROT_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_POPULATE);
            Assert.That(b, Is.GreaterThan(0));
            Buf = (ulong)b;
            Dma = Buf + (64 << 10);
            Bitmap = Buf + (8 << 10);
        }

        public VfioSim Sim { get; }

        public SimProcess P { get; }

        public VfioSession Session { get; }

        public int C => Session.Container.Fd;

        public int G => Session.Group.Fd;

        public int D => Session.Device.Fd;

        /// <summary>Scratch user memory: the first 8 KiB for data, a bitmap at 8 KiB, DMA buffers from 64 KiB.</summary>
        public ulong Buf { get; }

        public ulong Dma { get; }

        public ulong Bitmap { get; }

        public void Ok(long ret)
        {
            if (ret < 0)
            {
                Assert.Fail($"the call failed: {ret} ({ErrorReason.Current})");
            }
        }

        public long Ioctl<T>(int fd, uint cmd, ref T arg)
            where T : unmanaged
            => P.Ioctl(fd, cmd, MemoryMarshal.AsBytes(MemoryMarshal.CreateSpan(ref arg, 1)));

        public void IommuInfo(uint argsz)
        {
            Span<byte> b = stackalloc byte[256];
            b.Clear();
            MemoryMarshal.Write(b, in argsz);
            Ok(P.Ioctl(C, VfioIoctl.IommuGetInfo, b[..(int)Math.Max(argsz, 24)]));
        }

        public void MapUnmap4K()
        {
            var m = new VfioIommuType1DmaMap { Argsz = 32, Flags = VfioType1Flags.MapRead | VfioType1Flags.MapWrite, Vaddr = Dma, Iova = 1 << 20, Size = 4096 };
            Ok(Ioctl(C, VfioIoctl.IommuMapDma, ref m));
            var u = new VfioIommuType1DmaUnmap { Argsz = 24, Iova = 1 << 20, Size = 4096 };
            Ok(Ioctl(C, VfioIoctl.IommuUnmapDma, ref u));
        }

        public Action DirtyGetBitmap()
        {
            var m = new VfioIommuType1DmaMap { Argsz = 32, Flags = VfioType1Flags.MapRead | VfioType1Flags.MapWrite, Vaddr = Dma, Iova = 1 << 20, Size = 4096 };
            Ok(Ioctl(C, VfioIoctl.IommuMapDma, ref m));
            DirtyStart();
            return () =>
            {
                Span<byte> b = stackalloc byte[8 + 48];
                MemoryMarshal.Write(b, new VfioIommuType1DirtyBitmap { Argsz = (uint)b.Length, Flags = VfioType1Flags.DirtyGetBitmap });
                MemoryMarshal.Write(b[8..], new VfioIommuType1DirtyBitmapGet { Iova = 1 << 20, Size = 4096, Bitmap = new VfioBitmap { Pgsize = 4096, Size = 8, Data = Bitmap } });
                Ok(P.Ioctl(C, VfioIoctl.IommuDirtyPages, b));
            };
        }

        public Action UnmapWithBitmap()
        {
            DirtyStart();
            return () =>
            {
                var m = new VfioIommuType1DmaMap { Argsz = 32, Flags = VfioType1Flags.MapRead | VfioType1Flags.MapWrite, Vaddr = Dma, Iova = 1 << 20, Size = 4096 };
                Ok(Ioctl(C, VfioIoctl.IommuMapDma, ref m));
                Span<byte> b = stackalloc byte[24 + 24];
                MemoryMarshal.Write(b, new VfioIommuType1DmaUnmap { Argsz = (uint)b.Length, Flags = VfioType1Flags.UnmapGetDirtyBitmap, Iova = 1 << 20, Size = 4096 });
                MemoryMarshal.Write(b[24..], new VfioBitmap { Pgsize = 4096, Size = 8, Data = Bitmap });
                Ok(P.Ioctl(C, VfioIoctl.IommuUnmapDma, b));
            };
        }

        private void DirtyStart()
        {
            var d = new VfioIommuType1DirtyBitmap { Argsz = 8, Flags = VfioType1Flags.DirtyStart };
            Ok(Ioctl(C, VfioIoctl.IommuDirtyPages, ref d));
        }

        public void GroupStatus()
        {
            var s = new VfioGroupStatus { Argsz = 8 };
            Ok(Ioctl(G, VfioIoctl.GroupGetStatus, ref s));
        }

        public void DeviceInfo()
        {
            Span<byte> b = stackalloc byte[128];
            b.Clear();
            MemoryMarshal.Write(b, (uint)b.Length);
            Ok(P.Ioctl(D, VfioIoctl.DeviceGetInfo, b));
        }

        public void EveryRegionInfo()
        {
            Span<byte> b = stackalloc byte[256];
            // Every region edu has (it is not a VGA device, so index 8 is EINVAL).
            for (uint i = 0; i < VfioPciIndex.Vga; i++)
            {
                b.Clear();
                MemoryMarshal.Write(b, new VfioRegionInfo { Argsz = (uint)b.Length, Index = i });
                Ok(P.Ioctl(D, VfioIoctl.DeviceGetRegionInfo, b));
            }
        }

        public void EveryIrqInfo()
        {
            // Every index but ERR, which edu (not PCI Express) does not have.
            for (uint i = 0; i < VfioPciIndex.NumIrqs; i++)
            {
                if (i == VfioPciIndex.IrqErr)
                {
                    continue;
                }

                var info = new VfioIrqInfo { Argsz = 16, Index = i };
                Ok(Ioctl(D, VfioIoctl.DeviceGetIrqInfo, ref info));
            }
        }

        private long SetIrqs(VfioIrqSetFlags flags, uint index, uint count, ReadOnlySpan<byte> data)
        {
            Span<byte> b = stackalloc byte[64];
            int argsz = 20 + data.Length;
            MemoryMarshal.Write(b, new VfioIrqSet { Argsz = (uint)argsz, Flags = flags, Index = index, Start = 0, Count = count });
            data.CopyTo(b[20..]);
            return P.Ioctl(D, VfioIoctl.DeviceSetIrqs, b[..argsz]);
        }

        private int Eventfd()
        {
            int e = P.Eventfd(0, EventFdContext.EFD_NONBLOCK);
            Assert.That(e, Is.GreaterThanOrEqualTo(0));
            return e;
        }

        private static ReadOnlySpan<byte> Bytes(ref int value) => MemoryMarshal.AsBytes(MemoryMarshal.CreateSpan(ref value, 1));

        private int IntxEventfd()
        {
            int e = Eventfd();
            Ok(SetIrqs(VfioIrqSetFlags.DataEventfd | VfioIrqSetFlags.ActionTrigger, VfioPciIndex.IrqIntx, 1, Bytes(ref e)));
            return e;
        }

        public Action IntxLoopback(VfioIrqSetFlags data)
        {
            int e = IntxEventfd();
            return () =>
            {
                ReadOnlySpan<byte> one = [1];
                Ok(SetIrqs(data | VfioIrqSetFlags.ActionUnmask, VfioPciIndex.IrqIntx, 1, data == VfioIrqSetFlags.DataBool ? one : default));
                Ok(SetIrqs(data | VfioIrqSetFlags.ActionTrigger, VfioPciIndex.IrqIntx, 1, data == VfioIrqSetFlags.DataBool ? one : default));
                Ok(P.Read(e, Buf, 8));
            };
        }

        public Action IntxMaskUnmask(VfioIrqSetFlags data)
        {
            IntxEventfd();
            return () =>
            {
                ReadOnlySpan<byte> one = [1];
                Ok(SetIrqs(data | VfioIrqSetFlags.ActionMask, VfioPciIndex.IrqIntx, 1, data == VfioIrqSetFlags.DataBool ? one : default));
                Ok(SetIrqs(data | VfioIrqSetFlags.ActionUnmask, VfioPciIndex.IrqIntx, 1, data == VfioIrqSetFlags.DataBool ? one : default));
            };
        }

        public Action IntxSameEventfd()
        {
            int e = IntxEventfd();
            return () => Ok(SetIrqs(VfioIrqSetFlags.DataEventfd | VfioIrqSetFlags.ActionTrigger, VfioPciIndex.IrqIntx, 1, Bytes(ref e)));
        }

        public Action MsiLoopback()
        {
            int e = Eventfd();
            Ok(SetIrqs(VfioIrqSetFlags.DataEventfd | VfioIrqSetFlags.ActionTrigger, VfioPciIndex.IrqMsi, 1, Bytes(ref e)));
            return () =>
            {
                Ok(SetIrqs(VfioIrqSetFlags.DataNone | VfioIrqSetFlags.ActionTrigger, VfioPciIndex.IrqMsi, 1, default));
                Ok(P.Read(e, Buf, 8));
            };
        }

        public void FeatureProbe()
        {
            var f = new VfioDeviceFeature { Argsz = 8, Flags = VfioFeature.Probe | VfioFeature.Set | VfioFeature.LowPowerEntry };
            Ok(Ioctl(D, VfioIoctl.DeviceFeature, ref f));
        }

        public void ConfigReadWrite()
        {
            long cfg = VfioPciIndex.IndexToOffset(VfioPciIndex.Config);
            Ok(P.Pread(D, Buf, 4, cfg));
            Ok(P.Pread(D, Buf, 2, cfg + PciRegs.Command));
            Ok(P.Pwrite(D, Buf, 2, cfg + PciRegs.Command));
        }

        public void BarReadWrite()
        {
            Span<byte> b = stackalloc byte[4];
            Ok(P.Pread(D, b, EduDevice.RegLiveness));
            Ok(P.Pwrite(D, b, EduDevice.RegLiveness));
        }

        public Action MmapLoad()
        {
            long a = P.Mmap(0, 4096, Prot.PROT_READ | Prot.PROT_WRITE, MapFlags.MAP_SHARED, D, 0);
            Assert.That(a, Is.GreaterThan(0), ErrorReason.Current);
            return () =>
            {
                Span<byte> b = stackalloc byte[4];
                Ok(P.CpuRead((ulong)a + EduDevice.RegLiveness, b));
            };
        }

        public Action EventfdWriteRead()
        {
            int e = Eventfd();
            return () =>
            {
                ulong one = 1;
                Ok(P.Write(e, MemoryMarshal.AsBytes(MemoryMarshal.CreateSpan(ref one, 1))));
                Ok(P.Read(e, Buf, 8));
            };
        }

        public Action PollReady()
        {
            int e = Eventfd();
            ulong one = 1;
            Ok(P.Write(e, MemoryMarshal.AsBytes(MemoryMarshal.CreateSpan(ref one, 1))));
            return () =>
            {
                Span<PollFd> fds = [new PollFd(e, PollEvents.POLLIN)];
                Ok(P.Poll(fds, 0) == 1 ? 0 : -1);
            };
        }

        public Action IoeventfdDoorbell()
        {
            int e = Eventfd();
            var req = new VfioDeviceIoeventfd { Argsz = 32, Flags = VfioPciFlags.Ioeventfd32, Offset = EduDevice.RegLiveness, Data = 7, Fd = e };
            Ok(Ioctl(D, VfioIoctl.DeviceIoeventfd, ref req));
            return () =>
            {
                ulong one = 1;
                Ok(P.Write(e, MemoryMarshal.AsBytes(MemoryMarshal.CreateSpan(ref one, 1))));
            };
        }

        public void ClientScalars()
        {
            Session.Container.GetApiVersion();
            Session.Container.CheckExtension(VfioExtension.Type1v2);
            Session.Group.GetStatus();
        }

        public void ClientMapUnmap()
        {
            Session.Container.MapDma(Dma, 1 << 20, 4096);
            Session.Container.UnmapDma(1 << 20, 4096);
        }

        public void ClientRegions()
        {
            VfioDeviceFd d = Session.Device;
            d.ReadConfig32(0);
            d.WriteConfig16(PciRegs.Command, d.ReadConfig16(PciRegs.Command));
            d.WriteConfig8(PciRegs.InterruptLine, d.ReadConfig8(PciRegs.InterruptLine));
            d.WriteRegion32(VfioPciIndex.Bar0, EduDevice.RegLiveness, d.ReadRegion32(VfioPciIndex.Bar0, EduDevice.RegLiveness));
        }

        public Action ClientIrqs()
        {
            int e = Eventfd();
            Session.Device.SetIrqEventfd(VfioPciIndex.IrqIntx, e);
            return () =>
            {
                Session.Device.MaskIrq(VfioPciIndex.IrqIntx);
                Session.Device.UnmaskIrq(VfioPciIndex.IrqIntx);
                Session.Device.TriggerIrq(VfioPciIndex.IrqIntx);
                P.Read(e, Buf, 8);
                Session.Device.UnmaskIrq(VfioPciIndex.IrqIntx);
            };
        }
    }
}
