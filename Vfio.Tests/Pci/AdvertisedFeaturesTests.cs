// Fidelity rule: vfio-pci advertises nothing that does not work. For every function of the
// default machine that vfio-pci can take, on both profiles, walk what GET_INFO,
// GET_REGION_INFO and GET_IRQ_INFO report and use each thing as a user would: a RESET flag
// resets, a READ/WRITE region reads and writes, an MMAP region maps and loads, a capability
// is one this driver builds for that region, an IRQ index with a count takes an eventfd and
// fires it, MASKABLE masks and unmasks, an index without NORESIZE grows while enabled; an
// index with count 0 refuses SET_IRQS.

using NUnit.Framework;
using Vfio.Core.Client;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Fs;
using Vfio.Platform.Proc;
using Vfio.Sim;

namespace Vfio.Tests.Pci;

public sealed class AdvertisedFeaturesTests
{
    // Every endpoint of the default machine vfio-pci binds (the host bridge and the bridges are not endpoints it takes).
    private static readonly string[] s_functions =
        ["0000:01:00.0", "0000:02:00.0", "0000:04:01.0", "0000:04:02.0", "0000:05:00.0", "0000:06:00.0", "0000:07:00.0", "0000:08:00.0", "0000:08:00.1"];

    private static readonly string[] s_profiles = ["linux-6.12", "linux-6.1"];

    [Test]
    public void EverythingVfioPciReports_WorksAsReported(
        [ValueSource(nameof(s_functions))] string bdf, [ValueSource(nameof(s_profiles))] string profile)
        => CheckFunction(bdf, profile);

    // The VGA function's address depends on the root ports before it, so it is found by its class.
    [Test]
    public void EverythingVfioPciReports_WorksAsReported_OnTheVgaFunction([ValueSource(nameof(s_profiles))] string profile)
    {
        VfioSim probe = VfioPciRig.Builder(SchedulerMode.Real).Build();
        string bdf = probe.Machine.Pci.Devices.OfType<Vfio.Platform.Pci.PciDevice>().Single(d => d.IsVga).Name;
        CheckFunction(bdf, profile);
    }

    private static void CheckFunction(string bdf, string profile)
    {
        VfioSim sim = VfioPciRig.Builder(SchedulerMode.Real).UseProfile(KernelProfile.Parse(profile)).AddVfioPci().Build();
        foreach (string member in sim.Machine.Pci.Find(bdf)!.IommuGroup!.Devices.Select(d => d.Name))
        {
            if (member != bdf && sim.DriverOf(member) is { } drv && drv != "pcieport")
            {
                sim.Bind(member);
            }
        }

        sim.Bind(bdf);
        Runs.AssertPassed(sim.Run(() =>
        {
            SimProcess p = sim.Spawn("user");
            using VfioSession s = sim.Open(p, bdf);
            VfioDeviceFd dev = s.Device;
            VfioDeviceInfo info = dev.GetInfo().Info;
            Assert.That(info.Flags & VfioDeviceFlags.Pci, Is.Not.Zero);
            if ((info.Flags & VfioDeviceFlags.Reset) != 0)
            {
                Assert.DoesNotThrow(dev.Reset, "GET_INFO reports RESET");
            }

            for (int i = 0; i < info.NumRegions; i++)
            {
                CheckRegion(dev, i);
            }

            for (int i = 0; i < info.NumIrqs; i++)
            {
                CheckIrq(p, dev, i);
            }
        }));
        Assert.That(sim.UnexpectedWarnings, Is.Empty);
    }

    private static void CheckRegion(VfioDeviceFd dev, int index)
    {
        VfioInfo<VfioRegionInfo> r;
        try
        {
            r = dev.GetRegionInfo(index);
        }
        catch (VfioException e) when (index == VfioPciIndex.Vga && e.Errno == Errno.EINVAL)
        {
            return;
        }

        VfioRegionInfo ri = r.Info;
        string what = $"region {index} (size 0x{ri.Size:x}, flags {ri.Flags})";
        if (ri.Size == 0)
        {
            Assert.That(ri.Flags, Is.EqualTo((VfioRegionFlags)0), $"{what}: an empty region advertises nothing");
            return;
        }

        int width = (int)Math.Min(4, ri.Size);
        byte[] buf = new byte[width];

        // The VGA region answers only at its legacy ranges: use the sequencer's index port.
        long first = index == VfioPciIndex.Vga ? 0x3c4 : 0;
        if ((ri.Flags & VfioRegionFlags.Read) != 0)
        {
            Assert.That(dev.Read(index, first, buf), Is.EqualTo(width), $"{what}: READ");
        }

        if ((ri.Flags & VfioRegionFlags.Write) != 0)
        {
            // Write back what was read, at a harmless place: the cache line size byte of
            // config space, offset 0 of a BAR, the sequencer index of VGA.
            long at = index == VfioPciIndex.Config ? 0x0c : first;
            int n = index == VfioPciIndex.Config ? 1 : width;
            Assert.That(dev.Read(index, at, buf.AsSpan(0, n)), Is.EqualTo(n));
            Assert.That(dev.Write(index, at, buf.AsSpan(0, n)), Is.EqualTo(n), $"{what}: WRITE");
        }

        foreach (VfioInfoCap cap in r.Caps)
        {
            Assert.That(cap.Id, Is.EqualTo(VfioCapId.RegionMsixMappable), $"{what}: vfio-pci builds only MSIX_MAPPABLE for BARs here");
            Assert.That(ri.Flags & VfioRegionFlags.Mmap, Is.Not.Zero, $"{what}: MSIX_MAPPABLE without MMAP");
        }

        if ((ri.Flags & VfioRegionFlags.Mmap) != 0)
        {
            CheckMmap(dev, index, ri);
        }
    }

    private static void CheckMmap(VfioDeviceFd dev, int index, VfioRegionInfo ri)
    {
        // Map the region's first pages (at most 2 MiB of a large BAR) and load through them.
        long len = (long)Math.Min((ri.Size + 4095) & ~4095UL, 2UL << 20);
        using VfioRegionMapping map = dev.MmapRegion(index, 0, len);
        Span<byte> b = stackalloc byte[4];
        Assert.That(map.TryRead(0, b), Is.Zero, $"region {index} advertises MMAP: a load through the mapping works");
        Assert.That(map.TryRead(len - 4, b), Is.Zero, $"region {index}: a load at the end of the mapping works");
    }

    private static void CheckIrq(SimProcess p, VfioDeviceFd dev, int index)
    {
        VfioIrqInfo irq;
        try
        {
            irq = dev.GetIrqInfo(index);
        }
        catch (VfioException e) when (index == VfioPciIndex.IrqErr && e.Errno == Errno.EINVAL)
        {
            return;
        }

        string what = $"IRQ index {index} (count {irq.Count}, flags {irq.Flags})";
        if (irq.Count == 0)
        {
            int efd0 = p.Eventfd(0, EventFdContext.EFD_NONBLOCK);
            var e0 = Assert.Throws<VfioException>(() => dev.SetIrqEventfd(index, efd0), $"{what}: nothing to enable");
            Assert.That(e0!.Errno, Is.EqualTo(Errno.EINVAL));
            Assert.That(p.Close(efd0), Is.Zero);
            return;
        }

        Assert.That(irq.Flags & VfioIrqInfoFlags.Eventfd, Is.Not.Zero, $"{what}: every vfio-pci index signals eventfds");
        int efd = p.Eventfd(0, EventFdContext.EFD_NONBLOCK);
        Assert.DoesNotThrow(() => dev.SetIrqEventfd(index, efd), $"{what}: EVENTFD");
        Assert.DoesNotThrow(() => dev.TriggerIrq(index), $"{what}: loopback trigger");
        Assert.That(ReadCount(p, efd), Is.EqualTo(1UL), $"{what}: the loopback trigger signals the eventfd");
        if ((irq.Flags & VfioIrqInfoFlags.Maskable) != 0)
        {
            Assert.DoesNotThrow(() => dev.MaskIrq(index), $"{what}: MASKABLE");
            Assert.DoesNotThrow(() => dev.UnmaskIrq(index), $"{what}: MASKABLE");
        }

        if ((irq.Flags & VfioIrqInfoFlags.NoResize) == 0 && index is VfioPciIndex.IrqMsi or VfioPciIndex.IrqMsix && irq.Count > 1)
        {
            int efd2 = p.Eventfd(0, EventFdContext.EFD_NONBLOCK);
            Assert.DoesNotThrow(() => dev.SetIrqEventfd(index, efd2, 1), $"{what}: no NORESIZE, so growing while enabled works");
            dev.TriggerIrq(index, 1);
            Assert.That(ReadCount(p, efd2), Is.EqualTo(1UL));
            Assert.That(p.Close(efd2), Is.Zero);
        }

        Assert.DoesNotThrow(() => dev.DisableIrqs(index), $"{what}: disable");
        Assert.That(p.Close(efd), Is.Zero);
    }

    private static ulong ReadCount(SimProcess p, int efd)
    {
        Span<byte> b = stackalloc byte[8];
        long n = p.Read(efd, b);
        return n == 8 ? BitConverter.ToUInt64(b) : 0;
    }
}
