// Tests Vfio.Mdev/Samples/Mdma: the sample's sysfs types (core-counted instances), its vfio
// device as user space sees it (info, regions, IRQs, config space, BAR0), and the DMA
// engine: pins cached across commands (at most 512 per vfio_pin_pages call), copies through
// vfio_dma_rw, errnos in the status register, dma_unmap unpinning, close unpinning, and the
// misbehaving variant's kernel BUG — with mappings, locked_vm and pinned pages checked at
// every step.

using System.Runtime.InteropServices;
using NUnit.Framework;
using Vfio.Core.Client;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Mdev.Samples.Mdma;
using Vfio.Platform.Fs;
using Vfio.Platform.Proc;
using Vfio.Sim;
using static Vfio.Tests.Mdev.MdmaRig;

namespace Vfio.Tests.Mdev;

[TestFixture]
public sealed class MdmaDeviceTests
{

    [Test]
    public void TheParentOffersTwoTypes_AndTheCoreCountsInstancesAcrossThem([ValueSource(typeof(MdmaRig), nameof(Profiles))] KernelProfile profile)
    {
        var rig = new MdmaRig(profile, new MdmaOptions { MaxInstances = 2 });
        Assert.That(rig.Sim.SysfsRead($"{rig.TypeDir(Type1Name)}/device_api"), Is.EqualTo("vfio-pci"));
        Assert.That(rig.Sim.SysfsRead($"{rig.TypeDir(Type2Name)}/name"), Is.EqualTo("DMA engine, 1024 pages a command"));
        Assert.That(rig.Sim.SysfsRead($"{rig.TypeDir(Type1Name)}/available_instances"), Is.EqualTo("2"));
        Guid a = rig.Create(Type1Name);
        Guid b = rig.Create(Type2Name);
        Assert.That(rig.Sim.SysfsRead($"{rig.TypeDir(Type1Name)}/available_instances"), Is.EqualTo("0"), "one count per parent, shared by the types");
        var ex = Assert.Throws<VfioException>(() => rig.Create(Type1Name));
        Assert.That(ex!.Errno, Is.EqualTo(Errno.EUSERS));
        Assert.That(rig.Dev(b).Type.MaxPages, Is.EqualTo(1024));
        rig.Remove(a);
        Assert.That(rig.Sim.SysfsRead($"{rig.TypeDir(Type2Name)}/available_instances"), Is.EqualTo("1"));
        Assert.That(rig.Mdma.DeviceOf(a), Is.Null);
    }

    [Test]
    public void TheDevice_DescribesASmallPciFunction_AndAdvertisesOnlyWhatItHas()
    {
        var rig = new MdmaRig();
        Guid u = rig.Create();
        using VfioContainerFd c = rig.Container();
        (VfioGroupFd g, VfioDeviceFd d) = rig.OpenMdev(c, u);
        using (g)
        using (d)
        {
            VfioDeviceInfo info = d.GetInfo().Info;
            Assert.That((info.Flags, info.NumRegions, info.NumIrqs), Is.EqualTo((VfioDeviceFlags.Pci | VfioDeviceFlags.Reset, 9u, 5u)));
            VfioRegionInfo cfg = d.GetRegionInfo(VfioPciIndex.Config).Info;
            Assert.That((cfg.Size, cfg.Flags, cfg.Offset), Is.EqualTo((256UL, VfioRegionFlags.Read | VfioRegionFlags.Write, 7UL << 40)));
            VfioRegionInfo bar0 = d.GetRegionInfo(VfioPciIndex.Bar0).Info;
            Assert.That((bar0.Size, bar0.Flags), Is.EqualTo(((ulong)MdmaRegs.Bar0Size, VfioRegionFlags.Read | VfioRegionFlags.Write)), "no mmap");
            Assert.That(d.GetRegionInfo(VfioPciIndex.Bar2).Info.Size, Is.Zero);
            Assert.That(() => d.GetRegionInfo(9), Throws.InstanceOf<VfioException>().With.Property(nameof(VfioException.Errno)).EqualTo(Errno.EINVAL));

            Assert.That(d.GetIrqInfo(VfioPciIndex.IrqMsi), Is.EqualTo(new VfioIrqInfo { Argsz = 16, Index = 1, Flags = VfioIrqInfoFlags.Eventfd | VfioIrqInfoFlags.NoResize, Count = 1 }));
            foreach (int idx in new[] { VfioPciIndex.IrqIntx, VfioPciIndex.IrqMsix, VfioPciIndex.IrqErr, VfioPciIndex.IrqReq })
            {
                VfioIrqInfo none = d.GetIrqInfo(idx);
                Assert.That((none.Count, none.Flags), Is.EqualTo((0u, VfioIrqInfoFlags.None)), $"index {idx}");
            }

            Assert.That(() => d.GetIrqInfo(5), Throws.InstanceOf<VfioException>().With.Property(nameof(VfioException.Errno)).EqualTo(Errno.EINVAL));

            Assert.That(d.ReadConfig16(0), Is.EqualTo(MdmaRegs.VendorId));
            Assert.That(d.ReadConfig16(2), Is.EqualTo(MdmaRegs.DeviceId));
            Assert.That(d.ReadConfig32(8) >> 8, Is.EqualTo(MdmaRegs.ClassCode));
            Assert.That(d.ReadConfig8(0x34), Is.EqualTo(MdmaRegs.MsiCap));
            Assert.That(d.ReadConfig8(MdmaRegs.MsiCap), Is.EqualTo(0x05), "an MSI capability backs the MSI index");
            Assert.That(d.ReadConfig8(0x3d), Is.Zero, "no INTx pin, as the INTx index has no vector");
            d.WriteConfig32(0x10, 0xffffffff);
            Assert.That(d.ReadConfig32(0x10), Is.EqualTo(~(uint)(MdmaRegs.Bar0Size - 1)), "BAR0 sizing");
            Assert.That(d.ReadRegion32(VfioPciIndex.Bar0, MdmaRegs.Id), Is.EqualTo(MdmaRegs.IdValue));
            Assert.That(d.ReadRegion32(VfioPciIndex.Bar0, MdmaRegs.MaxPages), Is.EqualTo(64u));
            Assert.That(() => d.Read(VfioPciIndex.Bar0, 2, new byte[4]), Throws.InstanceOf<VfioException>().With.Property(nameof(VfioException.Errno)).EqualTo(Errno.EINVAL), "unaligned");
            Assert.That(() => d.Read(VfioPciIndex.Bar0, MdmaRegs.Bar0Size, new byte[4]), Throws.InstanceOf<VfioException>().With.Property(nameof(VfioException.Errno)).EqualTo(Errno.EINVAL), "past BAR0");
            Assert.That(() => d.Read(VfioPciIndex.Bar2, 0, new byte[4]), Throws.InstanceOf<VfioException>().With.Property(nameof(VfioException.Errno)).EqualTo(Errno.EINVAL));

            // 8-byte accesses only at the 64-bit SRC and DST registers, read and written whole.
            d.WriteRegion64(VfioPciIndex.Bar0, MdmaRegs.Src, 0x1234_5678_9abc_d000);
            Assert.That(d.ReadRegion64(VfioPciIndex.Bar0, MdmaRegs.Src), Is.EqualTo(0x1234_5678_9abc_d000UL));
            Assert.That(d.ReadRegion32(VfioPciIndex.Bar0, MdmaRegs.Src + 4), Is.EqualTo(0x1234_5678u));
            Assert.That(() => d.Write(VfioPciIndex.Bar0, MdmaRegs.Len, new byte[8]), Throws.InstanceOf<VfioException>().With.Property(nameof(VfioException.Errno)).EqualTo(Errno.EINVAL), "LEN and CMD are two registers, not one");
            Assert.That(d.ReadRegion32(VfioPciIndex.Bar0, MdmaRegs.Completions), Is.Zero, "the refused write ran nothing");
        }
    }

    [Test]
    public void Copy_PinsSourceAndDestination_CachesThePins_AndCloseUnpinsThem([ValueSource(typeof(MdmaRig), nameof(Profiles))] KernelProfile profile)
    {
        var rig = new MdmaRig(profile);
        Guid u = rig.Create();
        MdmaDevice dev = rig.Dev(u);
        using VfioContainerFd c = rig.Container();
        (VfioGroupFd g, VfioDeviceFd d) = rig.OpenMdev(c, u);
        using UserBuffer buf = rig.Buffer(16 * P);
        MdmaState s0 = rig.State(c, dev);
        c.MapDma(buf.Address, A, 16 * P);
        Assert.That(rig.State(c, dev) with { Mappings = "" }, Is.EqualTo(s0 with { Mappings = "" }), "MAP pins and charges nothing without an IOMMU domain");

        byte[] data = new byte[3 * P];
        new Random(3).NextBytes(data);
        buf.Write(0, data);
        Assert.That(Copy(d, A, A + (8 * P), (uint)data.Length), Is.EqualTo(Done), ErrorReason.Current);
        Assert.That(buf.Read(8 * P, data.Length), Is.EqualTo(data));
        MdmaState s1 = rig.State(c, dev);
        Assert.That((s1.DevicePins, s1.LockedVm, s1.PinnedPages - s0.PinnedPages), Is.EqualTo((6, 6L, 6L)), "three source and three destination pages, each charged once");
        Assert.That(d.ReadRegion32(VfioPciIndex.Bar0, MdmaRegs.Pinned), Is.EqualTo(6u));
        Assert.That(rig.Iommu(c).Mappings.Single().PinnedByDrivers, Is.EqualTo(6));

        // The same transfer again reuses the cache; a destination page used as a source needs no new pin.
        Assert.That(Copy(d, A + (8 * P), A, (uint)data.Length), Is.EqualTo(Done));
        MdmaState s2 = rig.State(c, dev);
        Assert.That(s2 with { Mappings = "" }, Is.EqualTo(s1 with { Mappings = "" }));
        Assert.That(d.ReadRegion32(VfioPciIndex.Bar0, MdmaRegs.Completions), Is.EqualTo(2u));

        // An unaligned transfer touches every page it overlaps.
        Assert.That(Copy(d, A + (3 * P) + 100, A + (12 * P) + 100, (uint)P), Is.EqualTo(Done));
        Assert.That(rig.State(c, dev).DevicePins, Is.EqualTo(10));
        Assert.That(rig.Qemu.Mm.LockedVm, Is.EqualTo(10));

        Assert.That(Command(d, MdmaRegs.CmdUnpin, A + (3 * P), 0, (uint)(2 * P)), Is.EqualTo(Done));
        Assert.That(rig.State(c, dev).DevicePins, Is.EqualTo(8));
        Assert.That(rig.Qemu.Mm.LockedVm, Is.EqualTo(8));
        rig.AssertInvariants(c);

        d.Dispose();
        Assert.That(rig.State(c, dev) with { Mappings = "" }, Is.EqualTo(s0 with { Mappings = "" }), "close_device unpinned everything");
        Assert.That(rig.Iommu(c).Mappings.Single().PinnedByDrivers, Is.Zero);
        Assert.That(c.UnmapDma(A, 16 * P), Is.EqualTo(16 * P));
        Assert.That(dev.DmaUnmapCalls, Is.Zero, "nothing was pinned any more: no notification");
        g.Dispose();
    }

    [Test]
    public void ALongTransfer_PinsInCallsOfAtMost512Pages()
    {
        var rig = new MdmaRig(limits: new ResourceLimits { MemlockBytes = 64L << 20 });
        Guid u = rig.Create(Type2Name);
        MdmaDevice dev = rig.Dev(u);
        using VfioContainerFd c = rig.Container();
        (VfioGroupFd g, VfioDeviceFd d) = rig.OpenMdev(c, u);
        using UserBuffer buf = rig.Buffer(2048 * P);
        c.MapDma(buf.Address, A, 2048 * P);
        buf.Fill(0x3c);
        long pinned0 = rig.Sim.PinnedPages;
        Assert.That(Copy(d, A, A + (1024 * P), (uint)(1024 * P)), Is.EqualTo(Done), ErrorReason.Current);
        Assert.That(dev.PinnedPages, Is.EqualTo(2048));
        Assert.That(dev.PinCalls, Is.EqualTo(4), "1024 source pages, then 1024 destination pages, 512 a call");
        Assert.That(rig.Qemu.Mm.LockedVm, Is.EqualTo(2048));
        Assert.That(rig.Sim.PinnedPages - pinned0, Is.EqualTo(2048));
        Assert.That(buf.Read(2047 * P, 16), Is.All.EqualTo((byte)0x3c));
        Assert.That(Copy(d, A, A + (1024 * P), (uint)((1024 * P) + 1)), Is.EqualTo(Failed(Errno.EINVAL)), "one byte more than the type allows");
        d.Dispose();
        g.Dispose();
        Assert.That(rig.Qemu.Mm.LockedVm, Is.Zero);
        Assert.That(rig.Sim.PinnedPages, Is.EqualTo(pinned0));
    }

    [Test]
    public void TheMsiEventfdFiresOnEveryCompletion_AndOnATrigger_ButCannotBeMasked()
    {
        var rig = new MdmaRig();
        Guid u = rig.Create();
        using VfioContainerFd c = rig.Container();
        (VfioGroupFd g, VfioDeviceFd d) = rig.OpenMdev(c, u);
        using UserBuffer buf = rig.Buffer(4 * P);
        c.MapDma(buf.Address, A, 4 * P);
        int efd = (int)rig.Qemu.Eventfd(0, EventFdContext.EFD_NONBLOCK);
        Assert.That(efd, Is.GreaterThanOrEqualTo(0));
        d.SetIrqEventfd(VfioPciIndex.IrqMsi, efd);
        Assert.That(Command(d, MdmaRegs.CmdCopyRw, A, A + P, 64), Is.EqualTo(Done));
        Assert.That(Command(d, MdmaRegs.CmdCopyRw, A, A + (9 * P), 64), Is.EqualTo(Failed(Errno.EINVAL)), "an unmapped destination");
        d.TriggerIrq(VfioPciIndex.IrqMsi);
        Assert.That(ReadCounter(rig.Qemu, efd), Is.EqualTo(3UL));
        Assert.That(() => d.MaskIrq(VfioPciIndex.IrqMsi), Throws.InstanceOf<VfioException>().With.Property(nameof(VfioException.Errno)).EqualTo(Errno.ENOTTY));
        Assert.That(() => d.SetIrqEventfd(VfioPciIndex.IrqIntx, efd), Throws.InstanceOf<VfioException>().With.Property(nameof(VfioException.Errno)).EqualTo(Errno.EINVAL), "INTx has no vector");
        d.DisableIrqs(VfioPciIndex.IrqMsi);
        Assert.That(Command(d, MdmaRegs.CmdCopyRw, A, A + P, 64), Is.EqualTo(Done));
        Assert.That(ReadCounter(rig.Qemu, efd), Is.Zero, "no trigger, no signal");
        d.SetIrqEventfd(VfioPciIndex.IrqMsi, efd);
        d.Dispose();
        g.Dispose();
        SimFile f = rig.Qemu.Files.Get(efd)!;
        EventFdContext ctx = EventFdContext.FromFile(f)!;
        Assert.That(ctx.ReferenceCount, Is.EqualTo(2), "the file's and ours: close_device dropped the device's");
        ctx.Put();
        f.Put();
    }

    private static ulong ReadCounter(SimProcess p, int efd)
    {
        byte[] b = new byte[8];
        long r = p.Read(efd, b);
        return r == 8 ? MemoryMarshal.Read<ulong>(b) : 0;
    }

    [Test]
    public void DmaUnmap_UnpinsWhatTheDevicePinnedInTheRange_AndTheUnmapReportsTheFullSize([ValueSource(typeof(MdmaRig), nameof(Profiles))] KernelProfile profile)
    {
        var rig = new MdmaRig(profile);
        rig.ExpectDmaUnmapLockInversion();
        Guid u = rig.Create();
        MdmaDevice dev = rig.Dev(u);
        using VfioContainerFd c = rig.Container();
        (VfioGroupFd g, VfioDeviceFd d) = rig.OpenMdev(c, u);
        using UserBuffer buf = rig.Buffer(16 * P);
        long pinned0 = rig.Sim.PinnedPages;
        c.MapDma(buf.Address, A, 8 * P);
        c.MapDma(buf.Address + (8 * P), A + (8 * P), 8 * P);
        Assert.That(Copy(d, A, A + (8 * P), (uint)(2 * P)), Is.EqualTo(Done));
        Assert.That((dev.PinnedPages, rig.Qemu.Mm.LockedVm), Is.EqualTo((4, 4L)));

        Assert.That(c.UnmapDma(A + (8 * P), 8 * P), Is.EqualTo(8 * P));
        Assert.That(dev.DmaUnmapCalls, Is.EqualTo(1));
        Assert.That(dev.PinnedIovas, Is.EqualTo(new[] { A, A + P }), "only the pins inside the unmapped range went");
        Assert.That(rig.Qemu.Mm.LockedVm, Is.EqualTo(2));
        Assert.That(Copy(d, A, A + (8 * P), 64), Is.EqualTo(Failed(Errno.EINVAL)), "the destination is gone");
        Assert.That(c.UnmapDma(0, 0, VfioType1Flags.UnmapAll), Is.EqualTo(8 * P));
        Assert.That(dev.DmaUnmapCalls, Is.EqualTo(2));
        Assert.That((dev.PinnedPages, rig.Qemu.Mm.LockedVm, rig.Sim.PinnedPages), Is.EqualTo((0, 0L, pinned0)));
        rig.AssertInvariants(c);
        d.Dispose();
        g.Dispose();
    }

    [Test]
    public void TheMisbehavingVariant_KeepsItsPins_AndTheUnmapHitsTheKernelBugAfterTenRetries()
    {
        var rig = new MdmaRig(options: new MdmaOptions { IgnoreDmaUnmap = true });
        MdmaDevice? dev = null;
        RunResult r = rig.Sim.Run(() =>
        {
            Guid u = rig.Create();
            dev = rig.Dev(u);
            var c = rig.Container();
            (_, VfioDeviceFd d) = rig.OpenMdev(c, u);
            UserBuffer buf = rig.Buffer(4 * P);
            c.MapDma(buf.Address, A, 4 * P);
            Assert.That(Copy(d, A, A + P, 64), Is.EqualTo(Done));
            c.UnmapDma(A, 4 * P);
            Assert.Fail("UNMAP returned although the driver kept its pins");
        });
        Runs.AssertOutcome(r, RunOutcome.Panic);
        Assert.That(r.Exception, Is.InstanceOf<KernelPanicException>());
        Assert.That(r.Exception!.Message, Does.Contain("kernel BUG").And.Contain("vfio_dma_do_unmap"));
        Assert.That(dev!.DmaUnmapCalls, Is.EqualTo(11), "the first notification and ten retries");
    }

    [Test]
    public void CommandErrors_AreReportedInTheStatusRegister_AndChangeNothing()
    {
        var rig = new MdmaRig(limits: new ResourceLimits { MemlockBytes = 6 * (long)P });
        Guid u = rig.Create();
        MdmaDevice dev = rig.Dev(u);
        using VfioContainerFd c = rig.Container();
        (VfioGroupFd g, VfioDeviceFd d) = rig.OpenMdev(c, u);
        using UserBuffer buf = rig.Buffer(16 * P);
        c.MapDma(buf.Address, A, 8 * P);
        c.MapDma(buf.Address + (8 * P), A + (8 * P), 4 * P, VfioType1Flags.MapRead);
        Assert.That(Copy(d, A, A + P, 64), Is.EqualTo(Done));
        MdmaState before = rig.State(c, dev);

        Assert.That(Copy(d, A, A + P, 0), Is.EqualTo(Failed(Errno.EINVAL)), "length 0");
        Assert.That(Command(d, 9, A, A + P, 64), Is.EqualTo(Failed(Errno.EINVAL)), "unknown command");
        Assert.That(Copy(d, A + (12 * P), A + P, 64), Is.EqualTo(Failed(Errno.EINVAL)), "the source is not mapped");
        Assert.That(Copy(d, A, A + (8 * P), 64), Is.EqualTo(Failed(Errno.EPERM)), "the destination mapping is read-only");
        Assert.That(Command(d, MdmaRegs.CmdCopyRw, A, A + (8 * P), 64), Is.EqualTo(Failed(Errno.EPERM)), "vfio_dma_rw checks the protection too");
        Assert.That(rig.State(c, dev), Is.EqualTo(before));

        // Six pages may be locked: two are, three new source pages fit, the destination's three do not.
        Assert.That(Copy(d, A + (2 * P), A + (5 * P), (uint)(3 * P)), Is.EqualTo(Failed(Errno.ENOMEM)));
        Assert.That(rig.Kernel.Log.Contains("RLIMIT_MEMLOCK"), Is.True, rig.Kernel.Log.Dmesg());
        Assert.That((dev.PinnedPages, rig.Qemu.Mm.LockedVm), Is.EqualTo((5, 5L)), "the source pins stay cached; the failed call pinned nothing");
        rig.AssertInvariants(c);

        d.Reset();
        Assert.That(d.ReadRegion32(VfioPciIndex.Bar0, MdmaRegs.Status), Is.Zero);
        Assert.That(dev.PinnedPages, Is.EqualTo(5), "a reset clears the registers; the pins are the driver's");
        d.Dispose();
        g.Dispose();
        Assert.That(rig.Qemu.Mm.LockedVm, Is.Zero);
    }

    [Test]
    public void DmaRwThroughTheSample_FromAnotherProcess_IsEfault_AndWithTheOwnerGone_IsEperm()
    {
        var rig = new MdmaRig();
        Guid u = rig.Create();
        using VfioContainerFd c = rig.Container();
        (VfioGroupFd g, VfioDeviceFd d) = rig.OpenMdev(c, u);
        SimProcess other = rig.Sim.Spawn("other", Credentials.User);
        using UserBuffer buf = rig.Buffer(4 * P);
        c.MapDma(buf.Address, A, 4 * P);
        int dfd = rig.Qemu.SendFd(d.Fd, other);
        var d2 = new VfioDeviceFd(other, dfd);
        Assert.That(Command(d2, MdmaRegs.CmdCopyRw, A, A + P, 64), Is.EqualTo(Failed(Errno.EFAULT)), "the doorbell runs in the writer's context, whose mm is not the mapping's");
        Assert.That(Command(d, MdmaRegs.CmdCopyRw, A, A + P, 64), Is.EqualTo(Done));
        d2.Dispose();
        d.Dispose();
        g.Dispose();
    }
}
